"""The pure decision at the heart of the mirror."""

from __future__ import annotations

import pytest

from sharepoint_proxy.minio_source import ObjectInfo
from sharepoint_proxy.mirror import Decision, LedgerEntry, decide

PRESENT = ObjectInfo("b", "k", etag="e1", size=3)
CHANGED = ObjectInfo("b", "k", etag="e2", size=4)
MIRRORED = LedgerEntry("b", "k", "b/k", "e1")


@pytest.mark.parametrize(
    ("info", "entry", "owned_by_other", "expected"),
    [
        (PRESENT, None, False, Decision.UPLOAD),
        (PRESENT, MIRRORED, False, Decision.UNCHANGED),
        (CHANGED, MIRRORED, False, Decision.UPLOAD),
        (None, MIRRORED, False, Decision.DELETE),
        (None, None, False, Decision.DELETE),
        (PRESENT, LedgerEntry("b", "K", "b/K", "e1"), True, Decision.COLLISION),
        (None, LedgerEntry("b", "K", "b/K", "e1"), True, Decision.KEEP_OWNERS_FILE),
    ],
    ids=["new", "same-etag", "new-etag", "gone", "gone-unknown", "collision", "collision-delete"],
)
def test_decide(
    info: ObjectInfo | None, entry: LedgerEntry | None, owned_by_other: bool, expected: Decision
) -> None:
    """Upload unless this ETag is mirrored; delete when absent; never touch another key's file."""
    assert decide(info, entry, owned_by_other=owned_by_other) is expected
