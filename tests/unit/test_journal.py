"""The journal's state machine and ledger, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharepoint_proxy.errors import JournalError
from sharepoint_proxy.events import Action, Record
from sharepoint_proxy.journal import GIVE_UP_AFTER_SECONDS, LEASE_SECONDS, Journal, backoff_seconds
from sharepoint_proxy.mirror import LedgerEntry

RECORD = Record("s3:ObjectCreated:Put", Action.UPLOAD, "bucket", "a/b.txt", etag="e")
NOW = 1_000_000.0


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3", owner="test")


def test_accepted_work_survives_a_new_process(tmp_path: Path) -> None:
    """A record added by one Journal object is there, intact, for the next one (a restart)."""
    Journal(tmp_path / "j.sqlite3").add([RECORD], now=NOW)
    [item] = Journal(tmp_path / "j.sqlite3").items()
    assert item.record == RECORD
    assert item.state == "running"


def test_a_dead_workers_lease_runs_out_and_the_work_is_claimed_again(journal: Journal) -> None:
    """Work claimed by a worker that died is claimable once its lease has run out, not before."""
    [item_id] = journal.add([RECORD], now=NOW)
    other = Journal(journal.path, owner="other")
    assert other.claim_due(now=NOW + LEASE_SECONDS - 1) == []
    [claimed] = other.claim_due(now=NOW + LEASE_SECONDS + 1)
    assert claimed.id == item_id


def test_renewed_leases_keep_work_with_its_worker(journal: Journal) -> None:
    """A worker that renews its lease keeps its work from others."""
    [item_id] = journal.add([RECORD], now=NOW)
    journal.renew_leases([item_id], now=NOW + LEASE_SECONDS)
    assert Journal(journal.path, owner="other").claim_due(now=NOW + LEASE_SECONDS + 1) == []


def test_postponed_work_waits_for_its_backoff_and_retry_after(journal: Journal) -> None:
    """A transient failure makes the work due again no sooner than Retry-After."""
    [item_id] = journal.add([RECORD], now=NOW)
    assert journal.postpone(item_id, "throttled", retry_after=120, now=NOW) == "pending"
    assert journal.claim_due(now=NOW + 119) == []
    assert [i.id for i in journal.claim_due(now=NOW + 121)] == [item_id]
    assert journal.get(item_id).attempts == 1  # type: ignore[union-attr]


def test_work_failing_for_a_day_becomes_a_dead_letter(journal: Journal) -> None:
    """Transient failures stop being retried after a day; the work is kept as a dead letter."""
    [item_id] = journal.add([RECORD], now=NOW)
    assert journal.postpone(item_id, "still down", now=NOW + GIVE_UP_AFTER_SECONDS + 1) == "dead"
    assert [i.id for i in journal.items("dead")] == [item_id]


def test_dead_letters_can_be_retried_and_dropped(journal: Journal) -> None:
    """An operator can send dead letters back to work, or drop them."""
    first, second = journal.add([RECORD, RECORD], now=NOW)
    journal.bury(first, "name_collision")
    journal.bury(second, "path_too_long")
    assert journal.retry(first) == 1
    assert [i.id for i in journal.items("pending")] == [first]
    assert journal.drop() == 1
    assert journal.items("dead") == []
    assert journal.depth() == 1


def test_finished_work_leaves_the_queue(journal: Journal) -> None:
    """Done work no longer counts in the depth and is purged later."""
    [item_id] = journal.add([RECORD], now=NOW)
    journal.finish(item_id)
    assert journal.depth() == 0
    journal.purge_done(older_than=0, now=NOW + 1)
    assert journal.get(item_id) is None


def test_the_ledger_remembers_owner_and_etag(journal: Journal) -> None:
    """The ledger stores, replaces and forgets the owner and mirrored ETag of a path."""
    entry = LedgerEntry("bucket", "A.pdf", "bucket/A.pdf", "e1")
    journal.ledger_put("bucket/a.pdf", entry)
    assert journal.ledger_get("bucket/a.pdf") == entry
    journal.ledger_put("bucket/a.pdf", LedgerEntry("bucket", "A.pdf", "bucket/A.pdf", "e2"))
    assert journal.ledger_get("bucket/a.pdf").etag == "e2"  # type: ignore[union-attr]
    assert set(journal.ledger_entries("bucket")) == {"A.pdf"}
    journal.ledger_forget("bucket/a.pdf")
    assert journal.ledger_get("bucket/a.pdf") is None


def test_an_unwritable_state_dir_is_a_journal_error(tmp_path: Path) -> None:
    """A journal that cannot be created raises JournalError (answered 503), not a crash."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError):
        Journal(blocker / "journal.sqlite3")


@pytest.mark.parametrize(
    ("attempts", "retry_after", "low", "high"),
    [(0, None, 0.5, 1.0), (3, None, 4.0, 8.0), (20, None, 150.0, 300.0), (0, 120.0, 120.0, 120.0)],
)
def test_backoff_grows_is_capped_and_honours_retry_after(
    attempts: int, retry_after: float | None, low: float, high: float
) -> None:
    """Backoff doubles per attempt with jitter, caps at five minutes, and never undercuts Retry-After."""
    for jitter in (0.0, 1.0):
        assert low <= backoff_seconds(attempts, retry_after, jitter=jitter) <= high
