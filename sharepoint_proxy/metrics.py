"""Define the service's Prometheus metrics and render them, across gunicorn workers too."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .events import KNOWN_EVENTS

EVENTS = Counter(
    "sharepoint_proxy_events_total", "Records handled, by event type and outcome.", ["event", "outcome"]
)
BYTES_UPLOADED = Counter("sharepoint_proxy_uploaded_bytes_total", "Bytes uploaded to SharePoint.")
GRAPH_CALLS = Counter(
    "sharepoint_proxy_graph_requests_total",
    "Graph requests, by kind and HTTP status (0: no answer).",
    ["kind", "status"],
)
THROTTLED = Counter("sharepoint_proxy_throttled_total", "Graph answers of 429 or 503 (throttling).")
DEAD_LETTERS = Counter("sharepoint_proxy_dead_letters_total", "Records that failed permanently.", ["reason"])
JOURNAL_DEPTH = Gauge(
    "sharepoint_proxy_journal_depth", "Records waiting in the journal.", multiprocess_mode="livemax"
)
WEBHOOK_SECONDS = Histogram(
    "sharepoint_proxy_webhook_seconds",
    "Time to answer a webhook request.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TRANSFER_SECONDS = Histogram(
    "sharepoint_proxy_transfer_seconds",
    "Time to apply one record.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)


def event_label(event_name: str) -> str:
    """Return the metric label for an event name: known names as they are, anything else "other".

    Event names come from request bodies; labelling by them unchecked would let any sender
    with the token create unbounded series (or unencodable ones).
    """
    return event_name if event_name in KNOWN_EVENTS else "other"


def observe_graph(kind: str, status: int) -> None:
    """Count one Graph answer (status 0 when none came)."""
    GRAPH_CALLS.labels(kind, str(status)).inc()
    if status in (429, 503):
        THROTTLED.inc()


def render() -> tuple[bytes, str]:
    """Return the metrics text and its content type, merged over workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
