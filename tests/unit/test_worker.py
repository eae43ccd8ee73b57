"""The dispatcher's bookkeeping around one record, with a real journal on disk."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import REGISTRY

from sharepoint_proxy.errors import TransientError
from sharepoint_proxy.events import Action, Record
from sharepoint_proxy.journal import GIVE_UP_AFTER_SECONDS, Journal
from sharepoint_proxy.mirror import Outcome
from sharepoint_proxy.worker import Dispatcher

RECORD = Record("s3:ObjectCreated:Put", Action.UPLOAD, "bucket", "open.docx", etag="e")


class StillLocked:
    """An applier whose every attempt meets a file that stays locked."""

    def apply(self, record: Record) -> Outcome:
        raise TransientError("Graph content: the item is locked (423)")


def dead_letters(reason: str) -> float:
    return REGISTRY.get_sample_value("sharepoint_proxy_dead_letters_total", {"reason": reason}) or 0.0


def test_a_record_still_failing_after_a_day_becomes_a_counted_dead_letter(tmp_path: Path) -> None:
    """A transient failure that lasts past GIVE_UP_AFTER_SECONDS ends as a dead letter, and the
    dead-letter metric counts it (reason gave_up), as it counts permanent failures."""
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.add([RECORD], claim=False, now=time.time() - GIVE_UP_AFTER_SECONDS - 60)
    before = dead_letters("gave_up")
    dispatcher = Dispatcher(journal, StillLocked(), deadline_seconds=1.0, poll_seconds=0.05)
    dispatcher.start()
    try:
        deadline = time.monotonic() + 30
        while not journal.items("dead") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dispatcher.close()
    [dead] = journal.items("dead")
    assert dead.record == RECORD
    assert "locked" in (dead.last_error or "")
    assert dead_letters("gave_up") == before + 1
