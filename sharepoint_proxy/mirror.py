"""Apply one MinIO record to SharePoint: converge the item on the object's current state."""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from .errors import PermanentError, SourceChangedError, TransientError, UploadSessionLostError
from .events import Action, Record
from .graph import Drive
from .locks import KeyLocks
from .minio_source import ObjectInfo, Source
from .paths import UnrepresentableKeyError, is_folder_marker, path_identity, to_sharepoint_path

log = logging.getLogger(__name__)

STAT_ATTEMPTS = 3
MAX_FILE_BYTES = 250 * 1000**3  # SharePoint's limit per file (250 GB)


@dataclass(frozen=True)
class Outcome:
    """What became of one record.

    `outcome` is one of: uploaded, unchanged (this ETag is already there), deleted, absent
    (nothing to delete), skipped (not a change of bytes), failed (permanent; a dead letter)
    or pending (journaled; it will complete in the background).
    """

    bucket: str
    key: str
    event: str
    outcome: str
    path: str | None = None
    reason: str | None = None
    size: int | None = None

    def as_json(self) -> dict[str, str | int | None]:
        """Return the outcome as the webhook answer shows it."""
        return asdict(self)


@dataclass(frozen=True)
class LedgerEntry:
    """The key that owns a SharePoint path, and the ETag last mirrored there."""

    bucket: str
    key: str
    path: str
    etag: str


class Ledger(Protocol):
    """Which key owns each SharePoint path, and which ETag was mirrored there."""

    def ledger_get(self, identity: str) -> LedgerEntry | None:
        """Return the entry for a path identity, or None."""
        ...

    def ledger_put(self, identity: str, entry: LedgerEntry) -> None:
        """Record `entry` for a path identity."""
        ...

    def ledger_forget(self, identity: str) -> None:
        """Forget a path identity."""
        ...


class Decision(enum.Enum):
    """What converging one key on MinIO's state asks of SharePoint."""

    UPLOAD = "upload"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    KEEP_OWNERS_FILE = "keep_owners_file"
    COLLISION = "collision"


def decide(info: ObjectInfo | None, entry: LedgerEntry | None, *, owned_by_other: bool) -> Decision:
    """Decide what to do for a key, from its stat (None: absent) and the ledger entry of its path.

    `owned_by_other` says that `entry` belongs to another key that still exists in MinIO:
    SharePoint would see both keys as one item, so the first keeps it and the second is
    refused; its delete must never remove the owner's file.
    """
    if owned_by_other:
        return Decision.KEEP_OWNERS_FILE if info is None else Decision.COLLISION
    if info is None:
        return Decision.DELETE
    if entry is not None and entry.etag == info.etag:
        return Decision.UNCHANGED
    return Decision.UPLOAD


def outcome_for(
    record: Record, name: str, path: str | None = None, reason: str | None = None, *, size: int | None = None
) -> Outcome:
    """Return the outcome `name` for `record`."""
    return Outcome(record.bucket, record.key, record.event_name, name, path, reason, size)


class Mirror:
    """Make the SharePoint item for a key equal to the MinIO object, whatever the event said."""

    def __init__(
        self, source: Source, drive: Drive, *, target_folder: str, locks: KeyLocks, ledger: Ledger
    ) -> None:
        self._source = source
        self._drive = drive
        self._target_folder = target_folder
        self._locks = locks
        self._ledger = ledger

    def apply(self, record: Record, *, listed: ObjectInfo | None = None) -> Outcome:
        """Apply `record`; return its outcome, or raise TransientError to be tried again.

        `listed` is what a bucket listing just said of the object (sync passes it): it
        stands in for the first stat. The read still names that ETag, so an object that
        changed since is stat'ed again, as after any stat.
        """
        if record.action is Action.SKIP:
            return outcome_for(record, "skipped", reason="not a change of the object's bytes")
        path: str | None = None
        try:
            try:
                path = to_sharepoint_path(record.bucket, record.key, target_folder=self._target_folder)
            except UnrepresentableKeyError as exc:
                raise PermanentError(exc.reason, str(exc)) from exc
            identity = path_identity(path)
            with self._locks.hold_path(identity, folder=is_folder_marker(record.key)):
                if is_folder_marker(record.key):
                    return outcome_for(record, self._converge_folder(record, path), path)
                name, size = self._converge(record, path, identity, listed)
                return outcome_for(record, name, path, size=size)
        except PermanentError as exc:
            log.error(
                "mirror.failed",
                extra={"bucket": record.bucket, "key": record.key, "reason": exc.reason, "detail": str(exc)},
            )
            return outcome_for(record, "failed", path, exc.reason)

    def _converge(
        self, record: Record, path: str, identity: str, listed: ObjectInfo | None
    ) -> tuple[str, int | None]:
        for attempt in range(STAT_ATTEMPTS):
            fresh = attempt == 0 and listed is not None
            info = listed if fresh else self._source.stat(record.bucket, record.key)
            entry = self._ledger.ledger_get(identity)
            mine = (record.bucket, record.key)
            if (
                entry is not None
                and (entry.bucket, entry.key) != mine
                and not self._owner_still_exists(entry)
            ):
                entry = None  # the key that owned the path left MinIO: the path is free
            owned_by_other = entry is not None and (entry.bucket, entry.key) != mine
            action = decide(info, entry, owned_by_other=owned_by_other)
            if action is Decision.KEEP_OWNERS_FILE:
                return "absent", None
            if action is Decision.COLLISION:
                assert entry is not None
                raise PermanentError(
                    "name_collision",
                    f"SharePoint compares names case-insensitively: {entry.bucket}/{entry.key} "
                    f"already owns {entry.path!r}",
                )
            if action is Decision.DELETE:
                # A path this key wrote is its file; any other may be a folder of the same name.
                deleted = self._drive.delete(path) if entry is not None else self._drive.delete_file(path)
                self._ledger.ledger_forget(identity)
                return ("deleted" if deleted else "absent"), None
            if action is Decision.UNCHANGED:
                return "unchanged", None
            assert info is not None
            if info.size > MAX_FILE_BYTES:
                raise PermanentError("file_too_large", f"{info.size} bytes is over SharePoint's 250 GB limit")
            try:
                self._upload(path, info)
            except (SourceChangedError, UploadSessionLostError):
                continue  # a newer version arrived, or Graph lost the session: read again
            self._ledger.ledger_put(identity, LedgerEntry(record.bucket, record.key, path, info.etag))
            return "uploaded", info.size
        raise TransientError(f"{record.bucket}/{record.key} kept changing while being read")

    def _upload(self, path: str, info: ObjectInfo) -> None:
        with self._source.open(info) as stream:
            self._drive.upload(path, stream, info.size)

    def _owner_still_exists(self, entry: LedgerEntry) -> bool:
        return self._source.stat(entry.bucket, entry.key) is not None

    def _converge_folder(self, record: Record, path: str) -> str:
        info = self._source.stat(record.bucket, record.key)
        if info is not None:
            self._drive.ensure_folder(path)
            return "uploaded"
        return "deleted" if self._drive.delete_folder_if_empty(path) else "absent"
