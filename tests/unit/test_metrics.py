"""Metric labels stay bounded whatever senders put in their bodies."""

from __future__ import annotations

import pytest

from sharepoint_proxy.metrics import event_label


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("s3:ObjectCreated:Put", "s3:ObjectCreated:Put"),
        ("s3:ObjectRemoved:DeleteMarkerCreated", "s3:ObjectRemoved:DeleteMarkerCreated"),
        ("s3:ObjectCreated:PutTagging", "s3:ObjectCreated:PutTagging"),
        ("s3:Made:Up", "other"),
        ("\ud800", "other"),
        ("x" * 10_000, "other"),
    ],
)
def test_unknown_event_names_share_one_label(name: str, label: str) -> None:
    """Known event names label their series; anything else, even unencodable text, is "other"."""
    assert event_label(name) == label
