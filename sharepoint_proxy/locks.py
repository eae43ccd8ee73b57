"""Serialise work on one SharePoint path across every thread and worker of the process group."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import JournalError

STRIPES = 1024


class KeyLocks:
    """Locks on SharePoint paths, shared by all processes that use the same directory.

    `flock` on a file opened anew for each hold excludes other threads of this process
    as well as other processes; the kernel drops the lock if a holder dies. Paths are
    hashed onto a fixed set of lock files, so two paths may share a lock (harmless:
    they only wait for each other) and the directory never grows.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._folders = directory / "folders"
        try:
            self._folders.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # it lives in STATE_DIR, beside the journal: the same failure
            raise JournalError(f"cannot create the lock directory {directory}: {exc}") from exc

    @contextmanager
    def hold_path(self, path: str, *, folder: bool = False) -> Iterator[None]:
        """Hold the lock of `path` (a path identity), and the folder locks that order its
        work against the removal of a folder above it.

        Graph deletes a folder with everything in it, so a folder is removed only while
        nothing is written inside it: work on a path holds each folder above it shared,
        and work on a folder (`folder=True`) holds that folder exclusive. Folder locks are
        taken first, in one global order, and a holder of a path lock never waits for
        another lock: no two holders can wait for each other.
        """
        modes = {_stripe(parent): fcntl.LOCK_SH for parent in _parents(path)}
        if folder:
            modes[_stripe(path)] = fcntl.LOCK_EX
        with contextlib.ExitStack() as held:
            for stripe in sorted(modes):
                held.enter_context(_flock(self._folders, stripe, modes[stripe]))
            held.enter_context(_flock(self._directory, _stripe(path), fcntl.LOCK_EX))
            yield


def _stripe(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % STRIPES


def _parents(path: str) -> list[str]:
    """Return the folders above `path`: "a/b/c" -> ["a", "a/b"]."""
    names = path.split("/")[:-1]
    return ["/".join(names[: i + 1]) for i in range(len(names))]


@contextmanager
def _flock(directory: Path, stripe: int, mode: int) -> Iterator[None]:
    fd = os.open(directory / f"{stripe:04d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
