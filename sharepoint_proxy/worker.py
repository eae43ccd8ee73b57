"""Run journaled work: answer within the deadline, finish the rest in the background."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol

from . import metrics
from .errors import JournalError, TransientError
from .events import Action, Record
from .journal import Journal
from .mirror import Outcome, outcome_for

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
PURGE_EVERY_POLLS = 600


class Applier(Protocol):
    """What the dispatcher runs for each record (the Mirror)."""

    def apply(self, record: Record) -> Outcome:
        """Apply one record; raise TransientError to be tried again later."""
        ...


class Dispatcher:
    """Journal records before work starts, run them on a pool, and retry what is left over."""

    def __init__(
        self,
        journal: Journal,
        mirror: Applier,
        *,
        deadline_seconds: float,
        threads: int = 8,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._journal = journal
        self._mirror = mirror
        self._deadline = deadline_seconds
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mirror")
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._background: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread that renews leases and retries due work."""
        if self._background is None:
            self._background = threading.Thread(target=self._loop, name="journal", daemon=True)
            self._background.start()

    def close(self) -> None:
        """Stop taking work; wait for what is running (queued work stays journaled)."""
        self._stop.set()
        if self._background is not None:
            self._background.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, records: list[Record]) -> list[Outcome]:
        """Journal `records`, apply them, and return their outcomes once done or at the deadline."""
        skipped = {
            i: outcome_for(r, "skipped", reason="not a change of the object's bytes")
            for i, r in enumerate(records)
            if r.action is Action.SKIP
        }
        actionable = [(i, r) for i, r in enumerate(records) if i not in skipped]
        ids = self._journal.add([r for _, r in actionable])  # JournalError propagates: 503
        futures: dict[int, Future[Outcome]] = {
            index: self._start(item_id, record)
            for (index, record), item_id in zip(actionable, ids, strict=True)
        }
        wait(futures.values(), timeout=self._deadline)
        outcomes = []
        for index, record in enumerate(records):
            if index in skipped:
                outcome = skipped[index]
                metrics.EVENTS.labels(metrics.event_label(record.event_name), outcome.outcome).inc()
            elif futures[index].done() and not futures[index].cancelled():
                outcome = futures[index].result()
            else:
                outcome = outcome_for(record, "pending", reason="still running at the response deadline")
            outcomes.append(outcome)
        return outcomes

    def _start(self, item_id: int, record: Record) -> Future[Outcome]:
        with self._lock:
            self._in_flight.add(item_id)
        return self._pool.submit(self._run, item_id, record)

    def _run(self, item_id: int, record: Record) -> Outcome:
        """Apply one journaled record and write down how it ended; never raise.

        If even the journal cannot be written, the row keeps its lease until this process
        stops renewing it, and then any worker takes it up again: nothing is lost.
        """
        try:
            outcome = self._apply_and_record(item_id, record)
        except Exception:  # a bug or an unwritable journal: leave the row for its lease to expire
            log.exception("work.unrecorded", extra={"id": item_id, "key": record.key})
            outcome = outcome_for(record, "pending", reason="internal error; will retry")
        finally:
            with self._lock:
                self._in_flight.discard(item_id)
        metrics.EVENTS.labels(metrics.event_label(record.event_name), outcome.outcome).inc()
        if outcome.outcome == "uploaded" and outcome.size:
            metrics.BYTES_UPLOADED.inc(outcome.size)
        return outcome

    def _apply_and_record(self, item_id: int, record: Record) -> Outcome:
        try:
            with metrics.TRANSFER_SECONDS.time():
                outcome = self._mirror.apply(record)
        except TransientError as exc:
            state = self._journal.postpone(item_id, str(exc), retry_after=exc.retry_after)
            log.warning(
                "work.postponed",
                extra={"id": item_id, "key": record.key, "detail": str(exc), "state": state},
            )
            if state == "dead":  # still failing a day after it arrived: a dead letter like the rest
                metrics.DEAD_LETTERS.labels("gave_up").inc()
            return outcome_for(record, "pending" if state == "pending" else "failed", reason=str(exc))
        except JournalError:
            raise
        except Exception as exc:  # a bug must not lose the record: keep it for a retry
            log.exception("work.crashed", extra={"id": item_id, "key": record.key})
            self._journal.postpone(item_id, f"internal error: {type(exc).__name__}")
            return outcome_for(record, "pending", reason="internal error; will retry")
        if outcome.outcome == "failed":  # the mirror has logged why
            self._journal.bury(item_id, outcome.reason or "failed")
            metrics.DEAD_LETTERS.labels(outcome.reason or "unknown").inc()
        else:
            self._journal.finish(item_id)
            log.info(
                "work.done",
                extra={"bucket": record.bucket, "key": record.key, "outcome": outcome.outcome,
                       "path": outcome.path, "size": outcome.size},
            )
        return outcome

    def _loop(self) -> None:
        polls = 0
        while not self._stop.wait(self._poll_seconds):
            try:
                with self._lock:
                    in_flight = list(self._in_flight)
                    free = self._threads - len(in_flight)
                self._journal.renew_leases(in_flight)
                if free > 0:
                    for item in self._journal.claim_due(limit=free):
                        self._start(item.id, item.record)
                metrics.JOURNAL_DEPTH.set(self._journal.depth())
                polls += 1
                if polls % PURGE_EVERY_POLLS == 0:
                    self._journal.purge_done()
            except Exception:  # keep the loop alive whatever happens; the journal keeps the work
                log.exception("journal.loop_failed")
