"""Keep accepted work and the mirror ledger in SQLite, safe for every worker of the process group.

Two tables in one WAL-mode database under STATE_DIR:

- `work`: one row per accepted record. `pending` until a worker claims it (`running`, with
  a lease that its worker renews); then `done`, or back to `pending` with a later
  `due_at` after a transient failure, or `dead` (a dead letter) after a permanent one.
  A lease that runs out (the worker died) makes the row claimable again.
- `ledger`: which key owns each SharePoint path (compared NFC + case-folded, as
  SharePoint compares names) and which ETag was last mirrored there.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JournalError
from .events import Record, classify
from .mirror import LedgerEntry

LEASE_SECONDS = 30.0
GIVE_UP_AFTER_SECONDS = 24 * 3600.0
MAX_BACKOFF_SECONDS = 300.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    due_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS work_due ON work (state, due_at);
CREATE TABLE IF NOT EXISTS ledger (
    identity TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    etag TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class WorkItem:
    """One journaled record and where it stands."""

    id: int
    record: Record
    state: str
    attempts: int
    received_at: float
    due_at: float
    last_error: str | None


def backoff_seconds(attempts: int, retry_after: float | None, *, jitter: float | None = None) -> float:
    """Return how long to wait before attempt `attempts + 1`: Retry-After if longer, capped growth."""
    spread = random.random() if jitter is None else jitter  # noqa: S311 - jitter, not security
    exponential = min(MAX_BACKOFF_SECONDS, 2.0 ** min(attempts, 12)) * (0.5 + spread / 2)
    return max(exponential, retry_after or 0.0)


def _encode(record: Record) -> str:
    return json.dumps(
        {
            "event_name": record.event_name,
            "bucket": record.bucket,
            "key": record.key,
            "version_id": record.version_id,
            "etag": record.etag,
            "size": record.size,
            "sequencer": record.sequencer,
        }
    )


def _decode(text: str) -> Record:
    fields = json.loads(text)
    return Record(action=classify(fields["event_name"]), **fields)


class Journal:
    """The durable queue of accepted work and the mirror ledger, in one SQLite file."""

    def __init__(self, path: Path, *, owner: str | None = None, busy_timeout_seconds: float = 30.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._local = threading.local()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal at {path}: {exc}") from exc

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != os.getpid():
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
            self._local.pid = os.getpid()
        return connection

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """Run the block in one IMMEDIATE transaction; SQLite and OS errors become JournalError.

        A `durable` transaction is synced to disk before it returns (it backs a 2xx answer:
        it must survive a power cut). Others need only survive a process crash, which WAL
        with synchronous=NORMAL guarantees; losing one would only repeat idempotent work.
        """
        try:
            db = self._connection()
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot write the journal: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            _rollback(db)
            raise JournalError(f"cannot write the journal: {exc}") from exc
        except BaseException:
            _rollback(db)
            raise

    # -- work ----------------------------------------------------------------------------------

    def add(self, records: list[Record], *, claim: bool = True, now: float | None = None) -> list[int]:
        """Write `records` durably (claimed by this process when `claim`); return their ids."""
        now = time.time() if now is None else now
        state = "running" if claim else "pending"
        lease_owner = self.owner if claim else None
        lease_until = now + LEASE_SECONDS if claim else None
        with self._write(durable=True) as db:
            return [
                int(
                    db.execute(
                        "INSERT INTO work (record, bucket, key, state, received_at, due_at,"
                        " lease_owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (_encode(r), r.bucket, r.key, state, now, now, lease_owner, lease_until),
                    ).lastrowid
                    or 0
                )
                for r in records
            ]

    def claim_due(self, *, limit: int = 8, now: float | None = None) -> list[WorkItem]:
        """Claim up to `limit` rows that are due, or whose worker's lease ran out."""
        now = time.time() if now is None else now
        with self._write() as db:
            rows = db.execute(
                "SELECT id FROM work WHERE (state = 'pending' AND due_at <= ?)"
                " OR (state = 'running' AND lease_until < ?) ORDER BY due_at, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            ids = [row[0] for row in rows]
            for item_id in ids:
                db.execute(
                    "UPDATE work SET state = 'running', lease_owner = ?, lease_until = ? WHERE id = ?",
                    (self.owner, now + LEASE_SECONDS, item_id),
                )
        return [item for item in (self.get(i) for i in ids) if item is not None]

    def renew_leases(self, item_ids: list[int], *, now: float | None = None) -> None:
        """Extend the leases of the rows this process is working on right now."""
        if not item_ids:
            return
        now = time.time() if now is None else now
        with self._write() as db:
            db.executemany(
                "UPDATE work SET lease_until = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
                [(now + LEASE_SECONDS, item_id, self.owner) for item_id in item_ids],
            )

    def finish(self, item_id: int) -> None:
        """Mark a row done: it was applied (or deliberately skipped)."""
        with self._write() as db:
            db.execute(
                "UPDATE work SET state = 'done', lease_owner = NULL, last_error = NULL WHERE id = ?",
                (item_id,),
            )

    def postpone(
        self, item_id: int, error: str, *, retry_after: float | None = None, now: float | None = None
    ) -> str:
        """Schedule another try after a transient failure, or dead-letter it after a day; return the state."""
        now = time.time() if now is None else now
        with self._write() as db:
            row = db.execute("SELECT attempts, received_at FROM work WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return "gone"
            attempts, received_at = row
            if now - received_at > GIVE_UP_AFTER_SECONDS:
                state, due_at = "dead", now
                error = f"gave up after {attempts + 1} attempts over a day: {error}"
            else:
                state, due_at = "pending", now + backoff_seconds(attempts, retry_after)
            db.execute(
                "UPDATE work SET state = ?, attempts = attempts + 1, due_at = ?, lease_owner = NULL,"
                " lease_until = NULL, last_error = ? WHERE id = ?",
                (state, due_at, error, item_id),
            )
            return state

    def bury(self, item_id: int, reason: str) -> None:
        """Keep a row as a dead letter: it failed permanently."""
        with self._write() as db:
            db.execute(
                "UPDATE work SET state = 'dead', attempts = attempts + 1, lease_owner = NULL, last_error = ?"
                " WHERE id = ?",
                (reason, item_id),
            )

    def retry(self, item_id: int | None = None) -> int:
        """Make dead letters (one, or all when `item_id` is None) pending again; return how many."""
        with self._write() as db:
            # received_at restarts too, so the day-long retry window starts again.
            now = time.time()
            if item_id is None:
                cursor = db.execute(
                    "UPDATE work SET state = 'pending', due_at = 0, received_at = ? WHERE state = 'dead'",
                    (now,),
                )
            else:
                cursor = db.execute(
                    "UPDATE work SET state = 'pending', due_at = 0, received_at = ?"
                    " WHERE id = ? AND state IN ('dead', 'pending')",
                    (now, item_id),
                )
            return cursor.rowcount

    def drop(self, item_id: int | None = None, *, dead_only: bool = True) -> int:
        """Delete a row (or all dead letters when `item_id` is None); return how many."""
        with self._write() as db:
            if item_id is None:
                cursor = db.execute("DELETE FROM work WHERE state = 'dead'")
            else:
                states = ("dead",) if dead_only else ("dead", "pending")
                cursor = db.execute(
                    f"DELETE FROM work WHERE id = ? AND state IN ({','.join('?' * len(states))})",  # noqa: S608
                    (item_id, *states),
                )
            return cursor.rowcount

    def purge_done(self, *, older_than: float = 3600.0, now: float | None = None) -> None:
        """Forget finished rows older than `older_than` seconds."""
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute("DELETE FROM work WHERE state = 'done' AND received_at < ?", (now - older_than,))

    def get(self, item_id: int) -> WorkItem | None:
        """Return one row, or None."""
        row = self._read(
            "SELECT id, record, state, attempts, received_at, due_at, last_error FROM work WHERE id = ?",
            (item_id,),
        )
        return _item(row[0]) if row else None

    def items(self, *states: str) -> list[WorkItem]:
        """Return the rows in `states` (all unfinished ones when none is given), oldest first."""
        wanted = states or ("pending", "running", "dead")
        rows = self._read(
            "SELECT id, record, state, attempts, received_at, due_at, last_error FROM work"  # noqa: S608 - only placeholders are interpolated
            f" WHERE state IN ({','.join('?' * len(wanted))}) ORDER BY id",
            wanted,
        )
        return [_item(row) for row in rows]

    def depth(self) -> int:
        """Return how many rows wait to be applied (pending or running)."""
        rows = self._read("SELECT COUNT(*) FROM work WHERE state IN ('pending', 'running')", ())
        return int(rows[0][0])

    def _read(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal: {exc}") from exc

    # -- ledger ---------------------------------------------------------------------------------

    def ledger_get(self, identity: str) -> LedgerEntry | None:
        """Return who owns the SharePoint path with this identity, and what was mirrored there."""
        rows = self._read("SELECT bucket, key, path, etag FROM ledger WHERE identity = ?", (identity,))
        if not rows:
            return None
        bucket, key, path, etag = rows[0]
        return LedgerEntry(str(bucket), str(key), str(path), str(etag))

    def ledger_put(self, identity: str, entry: LedgerEntry, *, now: float | None = None) -> None:
        """Record that `entry.key` owns the path and that `entry.etag` is mirrored there."""
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute(
                "INSERT INTO ledger (identity, bucket, key, path, etag, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (identity) DO UPDATE SET"
                " bucket = excluded.bucket, key = excluded.key,"
                " path = excluded.path, etag = excluded.etag, updated_at = excluded.updated_at",
                (identity, entry.bucket, entry.key, entry.path, entry.etag, now),
            )

    def ledger_forget(self, identity: str) -> None:
        """Forget the path: nothing is mirrored there any more."""
        with self._write() as db:
            db.execute("DELETE FROM ledger WHERE identity = ?", (identity,))

    def ledger_entries(self, bucket: str) -> dict[str, LedgerEntry]:
        """Return every ledger entry of `bucket`, by key."""
        rows = self._read("SELECT bucket, key, path, etag FROM ledger WHERE bucket = ?", (bucket,))
        return {str(r[1]): LedgerEntry(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows}


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _item(row: tuple[Any, ...]) -> WorkItem:
    item_id, record, state, attempts, received_at, due_at, last_error = row
    return WorkItem(
        id=int(item_id),
        record=_decode(str(record)),
        state=str(state),
        attempts=int(attempts),
        received_at=float(received_at),
        due_at=float(due_at),
        last_error=str(last_error) if last_error is not None else None,
    )
