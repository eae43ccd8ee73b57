"""Serialise work on one SharePoint path across every thread and worker of the process group."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import JournalError

STRIPES = 1024


class KeyLocks:
    """Exclusive locks keyed by a string, shared by all processes that use the same directory.

    `flock` on a file opened anew for each hold excludes other threads of this process
    as well as other processes; the kernel drops the lock if a holder dies. Keys are
    hashed onto a fixed set of lock files, so two keys may share a lock (harmless:
    they only wait for each other) and the directory never grows.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # it lives in STATE_DIR, beside the journal: the same failure
            raise JournalError(f"cannot create the lock directory {directory}: {exc}") from exc

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock for `key` for the duration of the `with` block."""
        stripe = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % STRIPES
        fd = os.open(self._directory / f"{stripe:04d}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
