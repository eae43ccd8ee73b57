"""Reconcile SharePoint with MinIO: upload what is missing or changed, find (and delete) what is stale.

One pass per bucket:

1. List the bucket (`list_objects`, recursive: key, ETag, size) and the library below
   ``<TARGET_FOLDER>/<bucket>`` (`GraphClient.list_children`, one request per folder per
   page of 200; empty folders are not listed at all).
2. Decide per key, without touching MinIO or Graph again: *unchanged* when the ledger says
   this ETag of this key is mirrored at its path and SharePoint holds a file of the same
   size there; otherwise *upload*. A SharePoint file no key maps onto is *stale*; one whose
   name `to_sharepoint_path` never produces is *foreign* and is never touched.
3. Apply the uploads (and, with ``delete``, the deletions) through `Mirror.apply`, as the
   webhook does: per-key lock, ownership check, streaming, ledger. For an upload the
   listing stands in for the stat; the read names the listed ETag, so a change since is seen.

A re-run with nothing changed therefore costs one Graph request per folder and one MinIO
listing request per 1000 keys, and no per-file request at all.

The delete guard: when the stale files exceed `max_delete_share` of the files found
below the buckets, nothing is deleted unless `force` is given (a wrong endpoint or an
empty bucket must not empty the library). Uploads still happen: they lose nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from minio.error import MinioException
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs in requirements
from urllib3.exceptions import HTTPError as Urllib3Error

from . import metrics
from .errors import ProxyError
from .events import Action, Record
from .minio_source import ObjectInfo
from .mirror import LedgerEntry, Outcome
from .paths import (
    ForeignPathError,
    UnrepresentableKeyError,
    is_folder_marker,
    path_identity,
    to_s3_key,
    to_sharepoint_path,
)

if TYPE_CHECKING:
    from .app import Services

log = logging.getLogger(__name__)

UPLOAD_EVENT = "s3:ObjectCreated:Put"
DELETE_EVENT = "s3:ObjectRemoved:Delete"
SHOWN_PER_LIST = 10  # stale paths and failures the summary names before "and N more"


@dataclass(frozen=True)
class RemoteItem:
    """A file or folder found in SharePoint below a bucket's folder."""

    path: str  # library-relative, as SharePoint displays it
    folder: bool
    size: int
    empty: bool = False  # a folder Graph says has no children: no need to list it


@dataclass(frozen=True)
class Change:
    """One change the sync decided on: upload a key, or delete a stale path."""

    bucket: str
    key: str
    path: str
    upload: bool
    size: int = 0
    forget_ledger: bool = False  # the ledger claims this ETag, but SharePoint lost the file
    listed: ObjectInfo | None = None  # what the bucket listing said: spares the upload a stat


@dataclass
class SyncReport:
    """What a sync found, did (or, in a dry run, would do), and what failed."""

    buckets: list[str]
    dry_run: bool = False
    delete: bool = False
    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    stale: list[str] = field(default_factory=list)  # stale paths found (deleted or not)
    foreign: list[str] = field(default_factory=list)  # paths no key maps onto; left alone
    failures: list[tuple[str, str]] = field(default_factory=list)  # (bucket/key or path, reason)
    bytes: int = 0
    graph_requests: int = 0
    folders: int = 0  # folders listed in SharePoint
    remote_files: int = 0  # files found in SharePoint below the buckets
    refused: str | None = None  # why the deletions were refused (the guard)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Return how many keys or paths failed."""
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """Tell whether everything was reconciled as asked (no failure, no refused deletion)."""
        return not self.failures and self.refused is None

    def summary(self) -> str:
        """Return the human summary: counts, then the refusal, stale paths kept and failures."""
        verb = "would upload" if self.dry_run else "uploaded"
        if self.delete:
            gone = f"{'would delete' if self.dry_run else 'deleted'} {self.deleted}"
        else:
            gone = f"stale {len(self.stale)} (kept; --delete removes them)" if self.stale else "stale 0"
        lines = [
            f"sync {', '.join(self.buckets)}{' (dry run)' if self.dry_run else ''}: "
            f"{verb} {self.uploaded} ({_human_bytes(self.bytes)}), unchanged {self.unchanged}, "
            f"{gone}, foreign {len(self.foreign)} (left alone), failed {self.failed}",
            f"  {self.remote_files} files in {self.folders} folders in SharePoint; "
            f"{self.graph_requests} Graph requests; {self.seconds:.1f} s",
        ]
        if self.refused:
            lines.append(f"  REFUSED: {self.refused}")
        if self.stale and not (self.delete and not self.refused):
            lines.extend(_listed("stale", self.stale))
        lines.extend(_listed("failed", [f"{what}: {reason}" for what, reason in self.failures]))
        return "\n".join(lines)


def run_sync(
    services: Services,
    buckets: list[str],
    *,
    delete: bool = False,
    dry_run: bool = False,
    force: bool = False,
    transfers: int = 4,
    progress: bool = True,
    max_delete_share: float = 0.1,
    out: TextIO | None = None,
) -> SyncReport:
    """Make the library below each bucket's folder equal to the bucket; return what happened.

    `delete` removes stale files (subject to the `max_delete_share` guard unless `force`);
    `dry_run` decides and prints every change (to `out`, stdout by default) and makes none.
    Uploads and deletions run on `transfers` threads through `Mirror.apply`.
    """
    started = time.monotonic()
    requests_before = _graph_requests()
    report = SyncReport(buckets=list(buckets), dry_run=dry_run, delete=delete)
    services.graph.drive  # noqa: B018 - resolves the library now, so its errors come first
    target = services.config.target_folder
    uploads: list[Change] = []
    stale: list[Change] = []
    folders: set[str] = set()  # identities of the folders SharePoint has below the buckets
    with ThreadPoolExecutor(max_workers=max(1, transfers), thread_name_prefix="sync") as pool:
        for bucket in buckets:
            plan = _plan_bucket(services, bucket, target_folder=target, pool=pool, report=report)
            uploads.extend(plan.uploads)
            stale.extend(plan.stale)
            folders |= plan.folders
        report.stale = [a.path for a in stale]
        deletions = stale if delete else []
        if deletions and not force and len(deletions) > max_delete_share * report.remote_files:
            report.refused = (
                f"{len(deletions)} of {report.remote_files} files in SharePoint would be deleted, "
                f"more than {max_delete_share:.0%}; check the buckets and endpoint, then run again "
                "with --force to delete them"
            )
            log.warning("sync.delete_refused", extra={"stale": len(deletions), "files": report.remote_files})
            deletions = []
        work = uploads + deletions
        if dry_run:
            _print_plan(work, report, out or sys.stdout)
        else:
            _create_folders(services, uploads, folders, pool=pool)
            _apply(services, work, report, pool=pool, progress=progress)
    report.graph_requests = _graph_requests() - requests_before
    report.seconds = time.monotonic() - started
    log.info(
        "sync.done",
        extra={"uploaded": report.uploaded, "unchanged": report.unchanged, "deleted": report.deleted,
               "stale": len(report.stale), "failed": report.failed, "dry_run": dry_run},
    )
    return report


# -- deciding ------------------------------------------------------------------------------------


@dataclass
class _Plan:
    uploads: list[Change] = field(default_factory=list)
    stale: list[Change] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)


def _plan_bucket(
    services: Services, bucket: str, *, target_folder: str, pool: ThreadPoolExecutor, report: SyncReport
) -> _Plan:
    """Decide, for one bucket, what to upload and what is stale; count unchanged and foreign."""
    plan = _Plan()
    try:
        objects = list(services.source.client.list_objects(bucket, recursive=True))
    except (MinioException, Urllib3Error, OSError) as exc:
        report.failures.append((bucket, f"cannot list the bucket: {_describe(exc)}"))
        return plan
    root = to_sharepoint_path(bucket, "x", target_folder=target_folder).rpartition("/")[0]
    try:
        remote = {path_identity(item.path): item for item in _walk(services, root, pool)}
    except ProxyError as exc:
        report.failures.append((bucket, f"cannot list SharePoint below {root!r}: {exc}"))
        return plan
    plan.folders = {identity for identity, item in remote.items() if item.folder}
    if remote:  # the bucket's folder exists, and so do the folders above it
        parts = root.split("/")
        plan.folders |= {path_identity("/".join(parts[:depth])) for depth in range(1, len(parts) + 1)}
    report.folders += 1 + sum(1 for item in remote.values() if item.folder)
    report.remote_files += sum(1 for item in remote.values() if not item.folder)
    ledger = {path_identity(e.path): e for e in services.journal.ledger_entries(bucket).values()}
    wanted: set[str] = set()
    for obj in objects:
        key = obj.object_name or ""
        try:
            path = to_sharepoint_path(bucket, key, target_folder=target_folder)
        except UnrepresentableKeyError as exc:
            report.failures.append((f"{bucket}/{key}", exc.reason))
            continue
        identity = path_identity(path)
        wanted.add(identity)
        info = ObjectInfo(bucket, key, etag=obj.etag or "", size=int(obj.size or 0))
        action = _decide(info, path, remote.get(identity), ledger.get(identity))
        if action is None:
            report.unchanged += 1
        else:
            plan.uploads.append(action)
    for identity, item in remote.items():
        # Folders are left in place: they hold what is wanted, or may hold foreign items.
        if identity in wanted or item.folder:
            continue
        try:
            stale_bucket, key = to_s3_key(item.path, target_folder=target_folder)
        except ForeignPathError:
            report.foreign.append(item.path)
            continue
        plan.stale.append(Change(stale_bucket, key, item.path, upload=False, size=item.size))
    return plan


def _decide(info: ObjectInfo, path: str, item: RemoteItem | None, entry: LedgerEntry | None) -> Change | None:
    """Return the upload the object needs, or None when SharePoint already holds it."""
    bucket, key, size, etag = info.bucket, info.key, info.size, info.etag
    if is_folder_marker(key):
        return None if item is not None and item.folder else Change(bucket, key, path, upload=True)
    owned = entry is not None and (entry.bucket, entry.key) == (bucket, key)
    mirrored = owned and entry is not None and entry.etag == etag
    if mirrored and item is not None and not item.folder and item.size == size:
        return None
    # Mirror.apply trusts the ledger; when SharePoint lost or changed the file, forget the
    # ETag first so that the upload happens.
    return Change(bucket, key, path, upload=True, size=size, forget_ledger=mirrored, listed=info)



def _walk(services: Services, root: str, pool: ThreadPoolExecutor) -> Iterator[RemoteItem]:
    """Yield every item below the folder `root`, listing the folders of one level in parallel."""
    level = [root]
    while level:
        next_level: list[str] = []
        for listing in pool.map(lambda folder: list(_children(services, folder)), level):
            for item in listing:
                yield item
                if item.folder and not item.empty:
                    next_level.append(item.path)
        level = next_level


def _children(services: Services, folder: str) -> Iterator[RemoteItem]:
    for child in services.graph.list_children(folder):
        path = f"{folder}/{child['name']}" if folder else str(child["name"])
        facet: dict[str, Any] | None = child.get("folder")
        size = int(child.get("size") or 0)
        if facet is not None:
            yield RemoteItem(path, folder=True, size=size, empty=facet.get("childCount") == 0)
        else:
            yield RemoteItem(path, folder=False, size=size)


# -- applying ------------------------------------------------------------------------------------


def _apply(
    services: Services, work: list[Change], report: SyncReport, *, pool: ThreadPoolExecutor, progress: bool
) -> None:
    """Run every action through the mirror on the pool, with a progress bar on a terminal."""
    if not work:
        return
    bar = tqdm(
        total=len(work),
        unit="file",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
        desc="sync",
    )
    with bar:
        for action, result in zip(work, pool.map(_runner(services), work), strict=True):
            _count(action, result, report)
            bar.update(1)


def _create_folders(
    services: Services, uploads: list[Change], present: set[str], *, pool: ThreadPoolExecutor
) -> None:
    """Create the missing parent folders once, parents first, before the uploads need them.

    Without this, concurrent uploads into a new folder each meet a 404, and each creates
    the folder; with it, every upload is one PUT. A failure here is left to the upload,
    which creates its parents on demand.
    """
    missing: dict[str, str] = {}
    for change in uploads:
        parts = change.path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            identity = path_identity(folder)
            if identity not in present:
                missing.setdefault(identity, folder)
    by_depth: dict[int, list[str]] = {}
    for folder in missing.values():
        by_depth.setdefault(folder.count("/"), []).append(folder)
    for depth in sorted(by_depth):
        for failure in pool.map(lambda folder: _try_ensure_folder(services, folder), by_depth[depth]):
            if failure:
                log.warning("sync.folder_failed", extra={"detail": failure})


def _try_ensure_folder(services: Services, folder: str) -> str | None:
    try:
        services.graph.ensure_folder(folder)
    except ProxyError as exc:
        return f"{folder}: {exc}"
    return None


def _runner(services: Services) -> Callable[[Change], Outcome | str]:
    def run(action: Change) -> Outcome | str:
        event = UPLOAD_EVENT if action.upload else DELETE_EVENT
        record = Record(event, Action.UPLOAD if action.upload else Action.DELETE, action.bucket, action.key)
        try:
            if action.forget_ledger:
                services.journal.ledger_forget(path_identity(action.path))
            return services.mirror.apply(record, listed=action.listed)
        except ProxyError as exc:  # transient: a later sync (or the webhook) will finish it
            return f"{type(exc).__name__}: {exc}"

    return run


def _count(action: Change, result: Outcome | str, report: SyncReport) -> None:
    what = f"{action.bucket}/{action.key}" if action.upload else action.path
    if isinstance(result, str):
        report.failures.append((what, result))
    elif result.outcome == "uploaded":
        report.uploaded += 1
        report.bytes += result.size or 0
    elif result.outcome == "deleted":
        report.deleted += 1
    elif result.outcome == "failed":
        report.failures.append((what, result.reason or "failed"))
    elif result.outcome == "unchanged":
        report.unchanged += 1
    # "absent": a stale file someone else removed meanwhile; nothing to count.


def _print_plan(work: Iterable[Change], report: SyncReport, out: TextIO) -> None:
    """Print the changes a run would make, one a line, and count them as if made."""
    for action in work:
        if action.upload:
            report.uploaded += 1
            report.bytes += action.size
            print(f"upload  {action.bucket}/{action.key} -> {action.path} ({action.size} B)", file=out)
        else:
            report.deleted += 1
            print(f"delete  {action.path}", file=out)
    for path in report.foreign:
        print(f"foreign {path} (left alone)", file=out)


# -- helpers -------------------------------------------------------------------------------------


def _graph_requests() -> int:
    """Return how many Graph requests this process has sent (from the metrics counter)."""
    return int(
        sum(
            sample.value
            for family in metrics.GRAPH_CALLS.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


def _listed(label: str, entries: list[str]) -> list[str]:
    shown = [f"  {label}: {entry}" for entry in entries[:SHOWN_PER_LIST]]
    if len(entries) > SHOWN_PER_LIST:
        shown.append(f"  {label}: ... and {len(entries) - SHOWN_PER_LIST} more")
    return shown
