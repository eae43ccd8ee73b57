"""Reading Graph's Retry-After header."""

from __future__ import annotations

import pytest

from sharepoint_proxy.graph import parse_retry_after

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 00:05:00 GMT", 300.0),
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("86400", 600.0),  # capped: a day-long wait would hold every request back
        ("Fri, 02 Jan 2026 00:00:00 GMT", 600.0),
        ("inf", None),
        ("1e400", None),
        ("nan", None),
    ],
)
def test_delta_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    """Seconds or an HTTP date both become a wait in seconds; a date in the past waits 0."""
    assert parse_retry_after(value, now=NOW) == seconds
