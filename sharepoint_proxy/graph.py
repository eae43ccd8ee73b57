"""Talk to Microsoft Graph: resolve the library once, then upload, delete and list by path."""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests
import stamina
from requests.adapters import HTTPAdapter

from . import __version__
from .config import Config
from .errors import (
    ConfigError,
    PermanentError,
    ProxyError,
    ThrottledError,
    TransientError,
    UploadSessionLostError,
)
from .minio_source import Readable
from .paths import quote_path
from .tokens import TokenSource

if TYPE_CHECKING:
    from requests.sessions import _Settings

log = logging.getLogger(__name__)

USER_AGENT = f"NONISV|sharepoint-proxy|sharepoint-proxy/{__version__}"
TIMEOUT = (10, 60)  # (connect, read) seconds for ordinary calls
CHUNK_TIMEOUT = (10, 180)  # a 60 MiB chunk may take a while to be acknowledged
RETRY_ATTEMPTS = 6
# Graph asks for up to about 5 minutes; a longer (or broken) Retry-After is capped at this.
MAX_RETRY_AFTER_SECONDS = 600.0
RETRY_BUDGET_SECONDS = 30.0


@dataclass(frozen=True)
class DriveInfo:
    """The document library the mirror writes to."""

    id: str
    name: str
    web_url: str
    site_id: str


class Drive(Protocol):
    """What the mirror needs from the library."""

    def upload(self, path: str, stream: Readable, size: int) -> None:
        """Write `size` bytes read from `stream` to `path`, replacing what is there."""
        ...

    def delete(self, path: str) -> bool:
        """Delete the item at `path`; return False when it was already gone."""
        ...

    def delete_file(self, path: str) -> bool:
        """Delete the file at `path`; return False when there is no file there."""
        ...

    def ensure_folder(self, path: str) -> None:
        """Create the folder at `path` and any missing parents."""
        ...

    def delete_folder_if_empty(self, path: str) -> bool:
        """Delete the folder at `path` when it has no children; return whether it did."""
        ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" or "nan" is no usable answer; a day-long wait would hold everything back
        return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return min(max(0.0, moment.timestamp() - current), MAX_RETRY_AFTER_SECONDS)


class _Session(requests.Session):
    """A requests Session that reads proxy and CA settings from the environment once per origin.

    requests looks at the environment (proxies, NO_PROXY, REQUESTS_CA_BUNDLE) on every
    request, which walks `os.environ` several times (~0.18 ms per request on the benchmark
    machine, against ~2 µs from the cache).
    The environment does not change while the process runs, so the answer per origin is
    kept. Calls that pass their own proxies, verify or cert take requests' usual path.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, bool | None], _Settings] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: bool | None, verify: Any, cert: Any
    ) -> _Settings:
        """Return requests' merged settings for `url`, from a per-origin cache when the call adds none."""
        if proxies or verify not in (None, True) or cert is not None or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream)
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, stream, verify, cert)
            with self._environment_lock:
                self._environment[key] = settings
        fresh = settings.copy()
        fresh["proxies"] = dict(settings["proxies"])  # requests may add to it; keep ours intact
        return fresh


class ThrottleGate:
    """Hold every Graph request of this process until a `Retry-After` Graph gave has passed.

    Graph throttles per app and tenant: while one answer says to wait, the other requests
    would be refused too, and sending them keeps the throttling going (Microsoft's guidance;
    rclone's OneDrive backend paces all its requests the same way).
    """

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        """Keep requests back for `seconds` from now (a longer earlier wait still stands)."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def remaining(self) -> float:
        """Return how many seconds requests must still wait (0 when the gate is open)."""
        return max(0.0, self._until - time.monotonic())


def make_session() -> requests.Session:
    """Build the HTTP session Graph calls share: pooled connections and our User-Agent."""
    session = _Session()
    # Retries are ours (see GraphClient._call): they must honour Retry-After and tokens.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class GraphClient:
    """Upload, delete and list items of one SharePoint library through Microsoft Graph."""

    def __init__(
        self,
        config: Config,
        tokens: TokenSource,
        *,
        session: requests.Session | None = None,
        retry_budget_seconds: float = RETRY_BUDGET_SECONDS,
        on_response: Callable[[str, int], None] | None = None,
    ) -> None:
        self._base = config.graph_base_url
        self._tokens = tokens
        self._session = session or make_session()
        self._simple_max = config.simple_upload_max_bytes
        self._chunk_bytes = config.upload_chunk_bytes
        self._permanent_delete = config.delete_mode == "permanent"
        self._budget = retry_budget_seconds
        self._on_response = on_response or (lambda kind, status: None)
        self._site_hostname = config.site_hostname
        self._site_relative_path = config.site_relative_path
        self._library = config.document_library
        self._drive: DriveInfo | None = None
        self._drive_lock = threading.Lock()
        self.throttle = ThrottleGate()

    def close(self) -> None:
        """Close the pooled connections to Graph."""
        self._session.close()

    # -- the library ---------------------------------------------------------------------

    @property
    def drive(self) -> DriveInfo:
        """Return the library, resolving it first if that has not succeeded yet.

        It is resolved once at start; a process that started while Graph was away resolves
        it on first use instead, so it never stays without a library.
        """
        drive = self._drive
        if drive is None:
            with self._drive_lock:
                drive = self._drive or self.resolve_drive()
        return drive

    def resolve_drive(self) -> DriveInfo:
        """Find the configured site and library (default, or by name, URL name or id); keep it."""
        hostname, relative, library = self._site_hostname, self._site_relative_path, self._library
        site = self._call("GET", f"{self._base}/sites/{hostname}:{quote(relative, safe='/')}", kind="site")
        site_json = _json(site, 200, "site")
        site_id = site_json["id"]
        if library is None:
            response = self._call("GET", f"{self._base}/sites/{site_id}/drive", kind="drive")
            drive_json = _json(response, 200, "drive")
        else:
            drives = list(self._paged(f"{self._base}/sites/{site_id}/drives", kind="drives"))
            drive_json = _match_library(drives, library)
        self._drive = DriveInfo(
            id=drive_json["id"],
            name=drive_json.get("name", ""),
            web_url=drive_json.get("webUrl", ""),
            site_id=site_id,
        )
        return self._drive

    # -- items -------------------------------------------------------------------------------

    def _item_url(self, path: str, suffix: str = "") -> str:
        root = f"{self._base}/drives/{self.drive.id}/root"
        if not path:
            return root + (f"/{suffix}" if suffix else "")
        return f"{root}:/{quote_path(path)}" + (f":/{suffix}" if suffix else "")

    def upload(self, path: str, stream: Readable, size: int) -> None:
        """Write `size` bytes from `stream` to `path`: one PUT when small, else a session."""
        if size <= self._simple_max or size == 0:
            self._upload_simple(path, _read_exactly(stream, size))
        else:
            self._upload_in_session(path, stream, size)

    def _upload_simple(self, path: str, data: bytes) -> None:
        url = self._item_url(path, "content")
        response = self._call("PUT", url, kind="content", data=data, parent_of=path)
        _expect(response, (200, 201), path)

    def _upload_in_session(self, path: str, stream: Readable, size: int) -> None:
        url = self._item_url(path, "createUploadSession")
        body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        response = self._call("POST", url, kind="create_session", json=body, parent_of=path)
        upload_url = _json(response, 200, path)["uploadUrl"]
        done = False
        try:
            offset = 0
            while offset < size:
                chunk = _read_exactly(stream, min(self._chunk_bytes, size - offset))
                offset = self._put_chunk(upload_url, chunk, offset, size)
                # Drop this chunk before reading the next: otherwise both are alive while the
                # next one is read, and a transfer holds two chunks instead of one.
                del chunk
            done = True
        finally:
            if not done:
                self._cancel_session(upload_url)

    def _put_chunk(self, upload_url: str, chunk: bytes, offset: int, size: int) -> int:
        """Send one chunk held in memory, resuming where the server says; return the next offset."""
        end = offset + len(chunk)
        server_offset = offset
        for attempt in self._retrying():
            with attempt:
                if attempt.num > 1:
                    server_offset = self._next_expected(upload_url, default=offset)
                    if server_offset >= end:
                        return end  # the server kept the whole chunk before the failure
                    if server_offset < offset:
                        raise TransientError("upload session went backwards; starting over")
                # A view, not a copy, of the part the server still wants.
                body = chunk if server_offset == offset else memoryview(chunk)[server_offset - offset :]
                headers = {"Content-Range": f"bytes {server_offset}-{end - 1}/{size}"}
                # No Authorization header: the upload URL carries its own credential.
                response = self._send(
                    "PUT",
                    upload_url,
                    kind="upload_chunk",
                    data=body,
                    headers=headers,
                    authorize=False,
                    timeout=CHUNK_TIMEOUT,
                )
                if response.status_code == 404:
                    raise UploadSessionLostError("upload session expired or was cancelled")
                if response.status_code == 416:
                    raise TransientError("chunk out of range; asking the session where it stands")
                if response.status_code in (200, 201):
                    return size
                if response.status_code == 202:
                    return end
                raise _unexpected(response, "upload session")
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises

    def _next_expected(self, upload_url: str, *, default: int) -> int:
        response = self._send("GET", upload_url, kind="session_status", authorize=False)
        if response.status_code == 404:
            raise UploadSessionLostError("upload session expired or was cancelled")
        if response.status_code != 200:
            raise _unexpected(response, "upload session status")
        ranges = response.json().get("nextExpectedRanges") or []
        if not ranges:
            return default
        return int(str(ranges[0]).split("-", 1)[0])

    def _cancel_session(self, upload_url: str) -> None:
        """Cancel an abandoned session, best effort: its failure must not hide the first one."""
        try:
            self._send("DELETE", upload_url, kind="session_cancel", authorize=False)
        except ProxyError as exc:  # the session expires by itself anyway
            log.warning("upload.cancel_failed", extra={"detail": type(exc).__name__})

    def delete(self, path: str) -> bool:
        """Delete the item at `path` (recycle bin or permanently); False when already gone."""
        if self._permanent_delete:
            response = self._call("POST", self._item_url(path, "permanentDelete"), kind="delete")
        else:
            response = self._call("DELETE", self._item_url(path), kind="delete")
        if response.status_code == 404:
            return False
        _expect(response, (200, 204), path)
        return True

    def get_item(self, path: str) -> dict[str, Any] | None:
        """Return the driveItem at `path`, or None when there is none."""
        response = self._call("GET", self._item_url(path), kind="item")
        if response.status_code == 404:
            return None
        return _json(response, 200, path)

    def probe(self) -> None:
        """Ask Graph for the library's root once, without retrying: a cheap liveness check.

        While Graph has asked this process to wait, it has answered recently: that is enough.
        """
        if self.throttle.remaining() > 0:
            return
        _expect(self._send("GET", self._item_url(""), kind="item"), (200,), "the library's root")

    def list_children(self, path: str) -> Iterator[dict[str, Any]]:
        """Yield the children of the folder at `path` ("" is the library's root)."""
        url = self._item_url(path, "children")
        yield from self._paged(url, kind="children", missing_ok=True)

    def ensure_folder(self, path: str) -> None:
        """Create the folder at `path`, creating missing parents only when Graph says so."""
        if not path:
            return
        parent, _, name = path.rpartition("/")
        body = {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}
        for _ in range(2):
            response = self._call("POST", self._item_url(parent, "children"), kind="create_folder", json=body)
            if response.status_code in (200, 201):
                return
            if response.status_code == 409:  # the name is taken: what we want if by a folder
                item = self.get_item(path)
                if item is not None and "folder" in item:
                    return
                raise PermanentError("name_collision", f"a file holds the folder path {path!r}")
            if response.status_code == 404 and parent:
                self.ensure_folder(parent)
                continue
            raise _unexpected(response, path)
        raise TransientError(f"could not create folder {path!r}")

    def delete_folder_if_empty(self, path: str) -> bool:
        """Delete the folder at `path` if it has no children; return whether it was deleted."""
        item = self.get_item(path)
        if item is None or "folder" not in item:
            return False  # gone, or a file (another key's) at the folder's path
        for _child in self.list_children(path):
            return False
        # Graph deletes a folder with all it holds: the caller holds the folder's lock, so no
        # upload into it runs between the listing and this delete (KeyLocks.hold_path).
        return self.delete(path)

    def delete_file(self, path: str) -> bool:
        """Delete the file at `path`; False when there is none (a folder there is left alone)."""
        item = self.get_item(path)
        if item is None or "folder" in item:
            return False
        return self.delete(path)

    # -- transport ----------------------------------------------------------------------------

    def _retrying(self) -> Any:
        return stamina.retry_context(
            on=self._backoff_hook, attempts=RETRY_ATTEMPTS, timeout=self._budget, wait_max=5.0
        )

    def _backoff_hook(self, exc: Exception) -> bool | float:
        if isinstance(exc, UploadSessionLostError) or not isinstance(exc, TransientError):
            return False
        if exc.retry_after is not None:
            # A wait longer than our budget goes back to the caller (the journal waits instead).
            return exc.retry_after if exc.retry_after <= self._budget / 2 else False
        return True

    def _wait_for_throttle(self, kind: str) -> None:
        """Wait out a Retry-After another request met; a wait beyond our budget goes to the journal."""
        wait = self.throttle.remaining()
        if wait <= 0:
            return
        if wait > self._budget / 2:
            raise ThrottledError(f"Graph asked this process to wait before {kind}", retry_after=wait)
        time.sleep(wait)

    def _call(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        parent_of: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send an authorised, replayable request with retries; create parents on demand."""
        created_parent = False
        for attempt in self._retrying():
            with attempt:
                response = self._send(method, url, kind=kind, **kwargs)
                if (
                    parent_of is not None
                    and not created_parent
                    and response.status_code == 404
                    and "/" in parent_of
                ):
                    # Graph answers 404 itemNotFound when the parent folder is missing.
                    self.ensure_folder(parent_of.rsplit("/", 1)[0])
                    created_parent = True
                    response = self._send(method, url, kind=kind, **kwargs)
                return response
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises

    def _send(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        authorize: bool = True,
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request; turn transport failures and retryable statuses into our errors.

        Graph API calls wait out a Retry-After met by any request of the process; calls to an
        upload URL (`authorize=False`) do not, so sessions under way finish, and cancel.
        """
        if authorize:
            self._wait_for_throttle(kind)
        all_headers = dict(headers or {})
        for refreshed in (False, True):
            if authorize:
                all_headers["Authorization"] = f"Bearer {self._tokens.token()}"
            try:
                response = self._session.request(method, url, headers=all_headers, timeout=timeout, **kwargs)
            except requests.RequestException as exc:
                self._on_response(kind, 0)
                raise TransientError(f"Graph {kind} request failed: {type(exc).__name__}") from exc
            self._on_response(kind, response.status_code)
            if response.status_code == 401 and authorize and not refreshed:
                self._tokens.invalidate()
                continue
            break
        status = response.status_code
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after:
                self.throttle.close_for(retry_after)
            raise ThrottledError(f"Graph throttled {kind} ({status})", retry_after=retry_after)
        if status in (500, 502, 504):
            raise TransientError(f"Graph {kind} failed with {status}")
        if status == 423:
            raise TransientError(f"Graph {kind}: the item is locked (423)", retry_after=None)
        if status in (401, 403):
            refusal = f"Graph refused {kind} with {status}: {_error_code(response)}"
            raise PermanentError("graph_access_denied", refusal)
        if status == 507:
            raise PermanentError("quota_exceeded", "the SharePoint site is out of storage quota (507)")
        return response

    def _paged(self, url: str, *, kind: str, missing_ok: bool = False) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            response = self._call("GET", next_url, kind=kind)
            if response.status_code == 404 and missing_ok:
                return
            page = _json(response, 200, kind)
            yield from page.get("value", [])
            next_url = page.get("@odata.nextLink")


def _read_exactly(stream: Readable, size: int) -> bytes:
    """Read `size` bytes; one read (one buffer, no copy) unless the stream returns less."""
    data = stream.read(size) if size else b""
    if len(data) == size:
        return data
    parts = [data]
    received = len(data)
    while received < size:
        more = stream.read(size - received)
        if not more:
            raise TransientError(f"source ended after {received} of {size} bytes")
        parts.append(more)
        received += len(more)
    return b"".join(parts)


def _match_library(drives: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    folded = wanted.casefold()
    for drive in drives:
        if wanted == drive.get("id") or folded in (
            drive.get("name", "").casefold(),
            _url_name(drive).casefold(),
        ):
            return drive
    names = ", ".join(f"{d.get('name')!r} (URL name {_url_name(d)!r})" for d in drives)
    raise ConfigError([f"DOCUMENT_LIBRARY: no library {wanted!r} on the site; it has: {names}"])


def _url_name(drive: dict[str, Any]) -> str:
    """Return a library's URL name ("Shared Documents"): the last segment of its webUrl."""
    return unquote(urlsplit(drive.get("webUrl", "")).path.rstrip("/").rpartition("/")[2])


def _error_code(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return ""
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _json(response: requests.Response, status: int, what: str) -> dict[str, Any]:
    _expect(response, (status,), what)
    try:
        document = response.json()
    except ValueError as exc:
        raise TransientError(f"Graph answered {what} with something that is not JSON") from exc
    if not isinstance(document, dict):
        raise TransientError(f"Graph answered {what} with unexpected JSON")
    return document


def _expect(response: requests.Response, statuses: tuple[int, ...], what: str) -> None:
    if response.status_code not in statuses:
        raise _unexpected(response, what)


def _unexpected(response: requests.Response, what: str) -> Exception:
    status = response.status_code
    code = _error_code(response)
    if status in (400, 409) or (status == 404 and code == "itemNotFound"):
        return PermanentError(f"graph_{code or status}", f"Graph refused {what!r}: {status} {code}")
    return TransientError(f"Graph answered {what!r} with {status} {code}")
