"""Path and folder locks on real lock files, between threads (flock treats them like processes)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sharepoint_proxy.locks import KeyLocks, _parents


class Holder:
    """Hold a path's locks in a thread of its own, from `start()` until `finish()`."""

    def __init__(self, locks: KeyLocks, path: str, *, folder: bool = False) -> None:
        self.acquired = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(locks, path, folder), daemon=True)

    def start(self) -> Holder:
        self._thread.start()
        return self

    def finish(self) -> None:
        self._release.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self, locks: KeyLocks, path: str, folder: bool) -> None:
        with locks.hold_path(path, folder=folder):
            self.acquired.set()
            self._release.wait(timeout=60)


@pytest.fixture
def locks(tmp_path: Path) -> KeyLocks:
    return KeyLocks(tmp_path / "locks")


def test_parents_are_the_folders_above_a_path() -> None:
    assert _parents("bucket/a/b/file.txt") == ["bucket", "bucket/a", "bucket/a/b"]
    assert _parents("bucket") == []


@pytest.mark.parametrize(
    ("first", "second", "second_is_folder"),
    [
        ("bucket/reports/q1.pdf", "bucket/reports", True),  # a folder's removal waits for a write in it
        ("bucket/reports/2025/q1.pdf", "bucket/reports", True),  # ... deeper in it too
        ("bucket/reports/q1.pdf", "bucket/reports/q1.pdf", False),  # one holder per path
    ],
    ids=["folder-waits-for-file", "folder-waits-for-deeper-file", "same-path"],
)
def test_the_second_holder_waits_until_the_first_is_done(
    locks: KeyLocks, first: str, second: str, second_is_folder: bool
) -> None:
    holders = [Holder(locks, first), Holder(locks, second, folder=second_is_folder)]
    try:
        assert holders[0].start().acquired.wait(timeout=30)
        holders[1].start()
        assert not holders[1].acquired.wait(timeout=0.5)  # still waiting for the first
        holders[0].finish()
        assert holders[1].acquired.wait(timeout=30)
    finally:
        for holder in holders:
            holder.finish()


@pytest.mark.parametrize(
    ("first", "second"),
    [("bucket/reports/q1.pdf", "bucket/reports/q2.pdf"), ("bucket/a/x.txt", "bucket/b")],
    ids=["two-files-of-one-folder", "a-file-and-an-unrelated-folder"],
)
def test_independent_work_does_not_wait(locks: KeyLocks, first: str, second: str) -> None:
    """Files of one folder hold it shared, and an unrelated folder is another lock: both
    holders proceed at once (unless their paths happen to share a stripe, not the case here)."""
    holders = [Holder(locks, first), Holder(locks, second, folder=not second.endswith(".pdf"))]
    try:
        assert holders[0].start().acquired.wait(timeout=30)
        assert holders[1].start().acquired.wait(timeout=30)
    finally:
        for holder in holders:
            holder.finish()
