"""Stand in for Microsoft Graph's SharePoint drive API over HTTPS, with in-memory libraries.

It enforces what DESIGN.md lists under "Facts about the systems we talk to": bearer tokens
from the test identity provider, SharePoint's naming rules, case-insensitive names, no
implicit parent folders, upload-session chunk rules, no Authorization on `uploadUrl`. Tests
inspect the libraries through `FakeDrive`, count requests by kind, and inject faults
(`fail_next`, `drop_next`, `down`/`up`).
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote

from tests.support.httpserver import JSONHandler, ServerRunner, Service
from tests.support.idp import IdentityProvider
from tests.support.sharepoint_rules import name_violation, path_violation
from tests.support.tls import TestPKI

SIMPLE_UPLOAD_MAX_BYTES = 250 * 1024 * 1024
CHUNK_MULTIPLE = 327_680
CHUNK_LIMIT = 60 * 1024 * 1024
DEFAULT_PAGE_SIZE = 200
SESSION_LIFETIME = datetime.timedelta(hours=24)

KINDS = frozenset(
    {
        "site",
        "drive",
        "drives",
        "item",
        "children",
        "content",
        "create_session",
        "upload_chunk",
        "session_status",
        "session_cancel",
        "delete",
        "create_folder",
        "unknown",
    }
)
_ERROR_CODES = {
    400: "invalidRequest",
    401: "InvalidAuthenticationToken",
    403: "accessDenied",
    404: "itemNotFound",
    409: "nameAlreadyExists",
    412: "preconditionFailed",
    416: "invalidRange",
    423: "resourceLocked",
    429: "activityLimitReached",
    500: "generalException",
    502: "badGateway",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
    507: "quotaLimitReached",
}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class GraphError(Exception):
    """Carry one Graph error answer: status, Graph error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        """Describe the error the server answers with."""
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def payload(self) -> dict[str, object]:
        """Return Graph's error body."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": _iso(_now()),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }


@dataclass(frozen=True)
class Recorded:
    """Describe one request the fake Graph answered (status 0: dropped, no answer)."""

    method: str
    path: str
    kind: str
    status: int
    had_authorization: bool
    at: float = field(default_factory=time.monotonic)  # when it arrived (before its answer)


@dataclass
class _Node:
    id: str
    display: str  # display path below the library root, "" for the root itself
    folder: bool
    content: bytes | bytearray = b""
    version: int = 1
    # A lambda, because _now is defined further down this module.
    created: datetime.datetime = field(default_factory=lambda: _now())  # noqa: PLW0108
    modified: datetime.datetime = field(default_factory=lambda: _now())  # noqa: PLW0108
    # fileSystemInfo.lastModifiedDateTime a client set (rclone does, in createUploadSession)
    client_modified: str | None = None

    @property
    def name(self) -> str:
        return self.display.rpartition("/")[2] or "root"


@dataclass
class _Fault:
    kind: str | None
    remaining: int
    status: int = 0  # 0: drop the connection
    retry_after: str | None = None
    skip: int = 0  # requests of `kind` to let through before this fault applies
    hold: Hold | None = None  # park the request until released, then drop it


class Hold:
    """A request parked by `FakeGraph.hold_next`: wait for `reached`, then `release()` it."""

    def __init__(self, *, drop: bool) -> None:
        self.reached = threading.Event()
        self.drop = drop
        self._released = threading.Event()

    def release(self) -> None:
        """Let the parked request go on: dropped unapplied, or served as usual (`drop=False`)."""
        self._released.set()

    def park(self) -> None:
        self.reached.set()
        self._released.wait(timeout=300)


@dataclass
class _Session:
    id: str
    secret: str
    drive: FakeDrive
    segments: list[str]
    conflict: str
    expires: datetime.datetime
    client_modified: str | None = None
    total: int | None = None
    next_offset: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeDrive:
    """Hold one document library in memory; every method is thread-safe.

    Paths are library-relative display paths (`"dossier/rapports/2025.pdf"`); lookups
    compare each segment case-insensitively, as SharePoint does.
    """

    def __init__(self, *, drive_id: str, name: str, web_url: str) -> None:
        """Create an empty library."""
        self.id = drive_id
        self.name = name
        self.web_url = web_url
        self._lock = threading.RLock()
        self._nodes: dict[str, _Node] = {}
        self._locked: set[str] = set()
        self._recycled: list[str] = []
        self.clear()

    # Inspection and seeding, for tests.

    def files(self) -> dict[str, bytes]:
        """Return every file as display path -> content."""
        with self._lock:
            return {
                n.display: bytes(n.content)
                for n in self._nodes.values()
                if not n.folder
            }

    def folders(self) -> set[str]:
        """Return every folder's display path (the root excluded)."""
        with self._lock:
            return {n.display for n in self._nodes.values() if n.folder and n.display}

    def get(self, path: str) -> bytes | None:
        """Return the content of the file at `path` (any case), or None."""
        with self._lock:
            node = self._nodes.get(_key_of(path))
            return bytes(node.content) if node and not node.folder else None

    def size(self, path: str) -> int | None:
        """Return the size of the file at `path` (any case), or None."""
        with self._lock:
            node = self._nodes.get(_key_of(path))
            return len(node.content) if node and not node.folder else None

    def versions(self, path: str) -> int:
        """Return how many content writes the file at `path` has had (0 when absent)."""
        with self._lock:
            node = self._nodes.get(_key_of(path))
            return node.version if node and not node.folder else 0

    def recycled(self) -> list[str]:
        """Return the display paths sent to the recycle bin by DELETE, oldest first."""
        with self._lock:
            return list(self._recycled)

    def put(self, path: str, data: bytes) -> None:
        """Seed a file directly, creating missing parent folders; no request is recorded."""
        segments = _split(path)
        reason = _violation(segments)
        if reason:
            raise ValueError(reason)
        with self._lock:
            for depth in range(1, len(segments)):
                self._ensure_folder(segments[:depth])
            self.write(segments, bytes(data), conflict="replace", honour_locks=False)

    def mkdir(self, path: str) -> None:
        """Seed a folder and its missing parents directly."""
        segments = _split(path)
        with self._lock:
            for depth in range(1, len(segments) + 1):
                self._ensure_folder(segments[:depth])

    def clear(self) -> None:
        """Empty the library, its locks and its recycle bin."""
        with self._lock:
            self._nodes = {"": _Node(id=_item_id(), display="", folder=True)}
            self._locked.clear()
            self._recycled.clear()

    def lock(self, path: str) -> None:
        """Hold `path` open or checked out: DELETE and writes answer 423 until `unlock`."""
        with self._lock:
            self._locked.add(_key_of(path))

    def unlock(self, path: str) -> None:
        """Release a lock taken with `lock`."""
        with self._lock:
            self._locked.discard(_key_of(path))

    # Operations the server performs; they raise GraphError as Graph would answer.

    def node(self, segments: list[str]) -> _Node | None:
        """Return the item at `segments`, or None."""
        with self._lock:
            return self._nodes.get(_key(segments))

    def check_writable(self, segments: list[str], conflict: str) -> None:
        """Raise GraphError unless a file could be written at `segments` now."""
        with self._lock:
            parent = self._nodes.get(_key(segments[:-1]))
            if parent is None or not parent.folder:
                raise GraphError(
                    404, "itemNotFound", "The resource could not be found."
                )
            existing = self._nodes.get(_key(segments))
            if existing is not None and existing.folder:
                raise GraphError(
                    409, "nameAlreadyExists", "A folder with that name exists."
                )
            if existing is not None and conflict == "fail":
                raise GraphError(
                    409, "nameAlreadyExists", "The specified item name already exists."
                )
            if _key(segments) in self._locked:
                raise GraphError(
                    423,
                    "resourceLocked",
                    "The resource you are attempting to access is locked.",
                )

    def write(
        self,
        segments: list[str],
        data: bytes | bytearray,
        *,
        conflict: str,
        honour_locks: bool = True,
    ) -> tuple[bool, _Node]:
        """Write a file's content; return (created, item). Takes `data` without copying."""
        with self._lock:
            if honour_locks:
                self.check_writable(segments, conflict)
            key = _key(segments)
            existing = self._nodes.get(key)
            if existing is not None and existing.folder:
                raise GraphError(
                    409, "nameAlreadyExists", "A folder with that name exists."
                )
            if existing is not None:
                existing.content = data
                existing.version += 1
                existing.modified = _now()
                existing.client_modified = None
                return False, existing
            parent = self._nodes[_key(segments[:-1])]
            display = _join(parent.display, segments[-1])
            node = _Node(id=_item_id(), display=display, folder=False, content=data)
            self._nodes[key] = node
            return True, node

    def create_folder(
        self, parent_segments: list[str], name: str, conflict: str
    ) -> _Node:
        """Create folder `name` under an existing folder; answer as Graph's POST children."""
        with self._lock:
            parent = self._nodes.get(_key(parent_segments))
            if parent is None:
                raise GraphError(
                    404, "itemNotFound", "The resource could not be found."
                )
            if not parent.folder:
                raise GraphError(
                    400, "invalidRequest", "The parent item is not a folder."
                )
            segments = [*parent_segments, name]
            existing = self._nodes.get(_key(segments))
            if existing is not None and conflict == "rename":
                base, counter = name, 1
                while existing is not None:
                    name = f"{base} {counter}"
                    counter += 1
                    segments = [*parent_segments, name]
                    existing = self._nodes.get(_key(segments))
            if existing is not None:
                if conflict == "replace" and existing.folder:
                    return existing
                raise GraphError(
                    409, "nameAlreadyExists", "The specified item name already exists."
                )
            return self._ensure_folder(segments)

    def delete(self, segments: list[str], *, permanent: bool = False) -> None:
        """Delete the item at `segments`, a folder with all it holds."""
        with self._lock:
            key = _key(segments)
            node = self._nodes.get(key)
            if node is None or not key:
                raise GraphError(
                    404, "itemNotFound", "The resource could not be found."
                )
            doomed = [k for k in self._nodes if k == key or k.startswith(key + "/")]
            if any(k in self._locked for k in doomed):
                raise GraphError(
                    423,
                    "resourceLocked",
                    "The resource you are attempting to access is locked.",
                )
            for k in doomed:
                del self._nodes[k]
            if not permanent:
                self._recycled.append(node.display)

    def children(self, segments: list[str]) -> list[_Node]:
        """Return the items directly inside the folder at `segments`, sorted by name."""
        with self._lock:
            key = _key(segments)
            node = self._nodes.get(key)
            if node is None:
                raise GraphError(
                    404, "itemNotFound", "The resource could not be found."
                )
            prefix = key + "/" if key else ""
            found = [
                n
                for k, n in self._nodes.items()
                if k and k.startswith(prefix) and "/" not in k[len(prefix) :]
            ]
            return sorted(found, key=lambda n: n.name.casefold())

    def item_json(self, node: _Node) -> dict[str, object]:
        """Return the driveItem resource for `node`."""
        with self._lock:
            parent_display = node.display.rpartition("/")[0]
            parent = self._nodes.get(_key_of(parent_display))
            item: dict[str, object] = {
                "id": node.id,
                "name": node.name,
                "eTag": _etag(node),
                "cTag": _ctag(node),
                "createdDateTime": _iso(node.created),
                "lastModifiedDateTime": _iso(node.modified),
                "fileSystemInfo": {
                    "createdDateTime": _iso(node.created),
                    "lastModifiedDateTime": node.client_modified or _iso(node.modified),
                },
                "webUrl": self.web_url
                + ("/" + quote(node.display) if node.display else ""),
                "size": len(node.content),
            }
            if node.display:
                item["parentReference"] = {
                    "driveType": "documentLibrary",
                    "driveId": self.id,
                    "id": parent.id if parent else "",
                    "path": f"/drives/{self.id}/root:"
                    + (f"/{parent_display}" if parent_display else ""),
                }
            else:
                item["root"] = {}
            if node.folder:
                item["folder"] = {
                    "childCount": len(self.children(_split(node.display)))
                }
                prefix = _key_of(node.display) + "/" if node.display else ""
                item["size"] = sum(
                    len(n.content)
                    for k, n in self._nodes.items()
                    if k.startswith(prefix)
                )
            else:
                item["file"] = {"mimeType": "application/octet-stream"}
            return item

    def display_of(self, item_id: str) -> str | None:
        """Return the display path of the item with id `item_id` ("" for the root), or None."""
        with self._lock:
            for node in self._nodes.values():
                if node.id == item_id:
                    return node.display
            return None

    def drive_json(self) -> dict[str, object]:
        """Return the drive resource."""
        return {
            "id": self.id,
            "name": self.name,
            "driveType": "documentLibrary",
            "webUrl": self.web_url,
            "description": "",
            "quota": {
                "deleted": 0,
                "remaining": 1 << 40,
                "state": "normal",
                "total": 1 << 40,
            },
        }

    def _ensure_folder(self, segments: list[str]) -> _Node:
        key = _key(segments)
        node = self._nodes.get(key)
        if node is not None:
            if not node.folder:
                raise GraphError(
                    409, "nameAlreadyExists", "A file with that name exists."
                )
            return node
        parent = self._nodes[_key(segments[:-1])]
        node = _Node(
            id=_item_id(), display=_join(parent.display, segments[-1]), folder=True
        )
        self._nodes[key] = node
        return node


class FakeGraph(Service):
    """Serve Microsoft Graph's site, drive, item and upload-session endpoints on 127.0.0.1."""

    def __init__(
        self,
        pki: TestPKI,
        idp: IdentityProvider,
        *,
        hostname: str = "contoso.sharepoint.com",
        site_path: str = "/sites/mirror",
        tls_hostnames: tuple[str, ...] = (),
    ) -> None:
        """Create the site with its two libraries; call `start()` (or use `with`) to listen.

        `tls_hostnames` are extra names for the server certificate (`graph.microsoft.com`
        for a client reached through a tunnelling proxy, such as rclone in the benchmark).
        """
        self.idp = idp
        self.hostname = hostname
        self.site_path = site_path
        self.site_id = f"{hostname},{uuid.uuid4()},{uuid.uuid4()}"
        self.page_size = DEFAULT_PAGE_SIZE
        self.allow_auth_on_upload_url = False
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        site_url = f"https://{hostname}{site_path}"
        self.drives = [
            FakeDrive(
                drive_id=_drive_id(),
                name="Documents",
                web_url=f"{site_url}/Shared%20Documents",
            ),
            FakeDrive(
                drive_id=_drive_id(), name="Archiv", web_url=f"{site_url}/Archive"
            ),
        ]
        self._runner = ServerRunner(
            _Handler, pki.ssl_context(["127.0.0.1", "localhost", *tls_hostnames]), self
        )

    # Lifetime.

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._runner.start()

    def stop(self) -> None:
        """Stop listening and close open connections."""
        self._runner.stop()

    def down(self) -> None:
        """Refuse service: stop listening and cut every connection, keeping all state."""
        self._runner.stop()

    def up(self) -> None:
        """Serve again, on the same port, after `down()`."""
        self._runner.start()


    @property
    def origin(self) -> str:
        """Return `https://127.0.0.1:<port>`."""
        return f"https://127.0.0.1:{self._runner.port}"

    @property
    def base_url(self) -> str:
        """Return the Graph base URL, `https://127.0.0.1:<port>/v1.0`."""
        return f"{self.origin}/v1.0"

    @property
    def site_url(self) -> str:
        """Return the URL that resolves the site: `<base>/sites/<hostname>:<site_path>`."""
        return f"{self.base_url}/sites/{self.hostname}:{self.site_path}"

    def drive(self, name_or_id: str) -> FakeDrive:
        """Return the library with this name, URL name (`Shared Documents`) or id."""
        wanted = name_or_id.casefold()
        for drive in self.drives:
            url_name = unquote(drive.web_url.rpartition("/")[2])
            if wanted in {
                drive.name.casefold(),
                drive.id.casefold(),
                url_name.casefold(),
            }:
                return drive
        raise KeyError(name_or_id)

    # Observability and faults.

    def count(self, kind: str | None = None, method: str | None = None) -> int:
        """Return how many requests matched `kind` and `method` (None matches any)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (kind is None or r.kind == kind)
                and (method is None or r.method == method)
            )

    def reset_counters(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests = []

    def fail_next(
        self,
        kind: str | None,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        """Answer the next `times` requests of `kind` (None: any) with `status` and a Graph error."""
        _check_kind(kind)
        with self._lock:
            self._faults.append(_Fault(kind, times, status, retry_after))

    def drop_next(self, kind: str | None, *, times: int = 1) -> None:
        """Close the connection of the next `times` requests of `kind` without answering.

        An `upload_chunk` is dropped after reading part of its body: a mid-chunk failure.
        """
        _check_kind(kind)
        with self._lock:
            self._faults.append(_Fault(kind, times))

    def hold_next(self, kind: str, *, skip: int = 0, drop: bool = True) -> Hold:
        """Park the request of `kind` that comes after `skip` others, before reading its body.

        The returned `Hold` says when it is reached. Once released, the request's connection
        is closed without an answer and nothing of it is applied, or with `drop=False` it is
        served as usual. This puts a test's crash or race at a known point, whatever the
        machine's speed.
        """
        _check_kind(kind)
        hold = Hold(drop=drop)
        with self._lock:
            self._faults.append(_Fault(kind, 1, skip=skip, hold=hold))
        return hold

    def expire_upload_sessions(self) -> None:
        """Forget every upload session, as if they had expired (their URLs answer 404)."""
        with self._lock:
            self._sessions.clear()

    def upload_sessions(self) -> int:
        """Return how many upload sessions are open."""
        with self._lock:
            return len(self._sessions)

    def reset(self) -> None:
        """Clear faults, counters, sessions and every library, and serve again if down."""
        with self._lock:
            self._faults.clear()
            self._sessions.clear()
            self.requests = []
        self.page_size = DEFAULT_PAGE_SIZE
        self.allow_auth_on_upload_url = False
        for drive in self.drives:
            drive.clear()
        self.up()

    # Used by the request handler.

    def _take_fault(self, kind: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind is None or fault.kind == kind:
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def _drive_by_id(self, drive_id: str) -> FakeDrive:
        for drive in self.drives:
            if drive.id == drive_id:
                return drive
        raise GraphError(404, "itemNotFound", "The resource could not be found.")

    def _path_for_item(self, raw_drive_id: str, item_id: str, rest: str) -> str:
        """Rewrite `/drives/{d}/items/{id}{rest}` as the `/drives/{d}/root...` path it names."""
        root = f"/v1.0/drives/{raw_drive_id}/root"
        try:
            drive = self._drive_by_id(unquote(raw_drive_id))
        except GraphError:
            return root + rest
        display = "" if item_id == "root" else drive.display_of(item_id)
        if display is None:
            return f"/v1.0/drives/{raw_drive_id}/unknown-item"  # routed as "unknown": 400
        if not display:
            return root + rest
        quoted = "/".join(quote(s, safe="") for s in display.split("/"))
        if rest.startswith(":/"):  # a path relative to the item
            return f"{root}:/{quoted}/{rest[2:]}"
        return f"{root}:/{quoted}" + (f":{rest}" if rest else "")

    def _site_json(self) -> dict[str, object]:
        return {
            "id": self.site_id,
            "name": self.site_path.rpartition("/")[2],
            "displayName": self.site_path.rpartition("/")[2].capitalize(),
            "webUrl": f"https://{self.hostname}{self.site_path}",
            "siteCollection": {"hostname": self.hostname},
        }

    def _open_session(
        self, drive: FakeDrive, segments: list[str], conflict: str
    ) -> _Session:
        session = _Session(
            id=secrets.token_urlsafe(24),
            secret=secrets.token_urlsafe(24),
            drive=drive,
            segments=segments,
            conflict=conflict,
            expires=_now() + SESSION_LIFETIME,
        )
        with self._lock:
            self._sessions[session.id] = session
        return session

    def _session(self, session_id: str, secret: str) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or not secrets.compare_digest(session.secret, secret):
            raise GraphError(404, "itemNotFound", "The upload session was not found.")
        return session

    def _close_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


@dataclass
class _Answer:
    status: int
    payload: object = None
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(JSONHandler):
    """Route one Graph request, apply faults and authentication, answer, and record it."""

    _body_read = False
    _query = ""

    @property
    def graph(self) -> FakeGraph:
        app = self.server.app
        assert isinstance(app, FakeGraph)
        return app

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch("GET")

    def do_PUT(self) -> None:
        """Dispatch a PUT."""
        self._dispatch("PUT")

    def do_POST(self) -> None:
        """Dispatch a POST."""
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        """Dispatch a DELETE."""
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        """Dispatch a PATCH (no route takes one: 400)."""
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        graph = self.graph
        self._body_read = False
        raw_path, _, self._query = self.path.partition("?")
        kind, action = self._route(method, raw_path)
        had_authorization = "Authorization" in self.headers

        def record(status: int) -> None:
            # Before answering: a client that has its answer must find the request counted.
            graph._record(Recorded(method, unquote(raw_path), kind, status, had_authorization))

        try:
            fault = graph._take_fault(kind)
            if fault is not None and fault.hold is not None:
                hold, fault = fault.hold, None
                if hold.drop:
                    record(0)  # counted while parked: the request has arrived
                hold.park()
                if hold.drop:
                    self.drop_connection()
                    return
            if fault is not None and fault.status == 0:
                record(0)
                self._drop(kind)
                return
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                code = _ERROR_CODES.get(fault.status, "generalException")
                error = GraphError(fault.status, code, f"Injected fault {fault.status}.")
                answer = _Answer(fault.status, error.payload(), headers)
            else:
                try:
                    self._authenticate(kind, had_authorization)
                    answer = action()
                except GraphError as error:
                    answer = _Answer(error.status, error.payload(), _error_headers(error))
            if not self._body_read:
                self.discard_body()
        except ConnectionError:
            record(0)
            self.close_connection = True
            return
        record(answer.status)
        try:
            self.send_json(answer.status, answer.payload, answer.headers)
        except ConnectionError:
            self.close_connection = True

    def _drop(self, kind: str) -> None:
        if kind == "upload_chunk":
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1:
                self.read_exactly(length // 2)
        elif not self._body_read:
            self.discard_body()
        self.drop_connection()

    def _authenticate(self, kind: str, had_authorization: bool) -> None:
        if kind in {"upload_chunk", "session_status", "session_cancel"}:
            if had_authorization and not self.graph.allow_auth_on_upload_url:
                raise GraphError(
                    401,
                    "unauthenticated",
                    "An Authorization header must not be sent to an upload URL.",
                )
            return
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token is empty."
            )
        if scheme.lower() != "bearer" or not self.graph.idp.is_valid(token.strip()):
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )

    def _json_body(self) -> dict[str, object]:
        body = self.read_body(limit=1024 * 1024)
        self._body_read = True
        if not body.strip():
            return {}
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise GraphError(400, "invalidRequest", "Invalid JSON body.") from exc
        if not isinstance(parsed, dict):
            raise GraphError(400, "invalidRequest", "Invalid JSON body.")
        return parsed

    # Routing.

    def _route(self, method: str, raw_path: str) -> tuple[str, Callable[[], _Answer]]:
        """Return the request's kind and the function that answers it."""
        graph = self.graph
        if match := re.fullmatch(r"/upload/([^/]+)", raw_path):
            session_id = match.group(1)
            upload: dict[str, tuple[str, Callable[[], _Answer]]] = {
                "PUT": ("upload_chunk", lambda: self._upload_chunk(session_id)),
                "GET": ("session_status", lambda: self._session_status(session_id)),
                "DELETE": ("session_cancel", lambda: self._session_cancel(session_id)),
            }
            return upload.get(method, ("unknown", _not_understood))
        if method == "GET" and (
            match := re.fullmatch(r"/v1\.0/sites/([^/:]+):(/[^:]*):?", raw_path)
        ):
            host, site = unquote(match.group(1)), unquote(match.group(2)).rstrip("/")
            return "site", lambda: self._site(host, site)
        if match := re.fullmatch(r"/v1\.0/sites/([^/:]+)/(drive|drives)", raw_path):
            site_id, which = unquote(match.group(1)), match.group(2)
            if method != "GET":
                return which, _not_understood
            return which, lambda: self._drives(site_id, which)
        if method == "GET" and (
            match := re.fullmatch(r"/v1\.0/drives/([^/:]+)", raw_path)
        ):
            drive_id = unquote(match.group(1))
            return "drive", lambda: _Answer(
                200, graph._drive_by_id(drive_id).drive_json()
            )
        if match := re.fullmatch(r"/v1\.0/drives/([^/:]+)/items/([^/:]+)(.*)", raw_path):
            # Addressed by item id (rclone does): answer as the same request by path.
            raw_path = graph._path_for_item(match.group(1), unquote(match.group(2)), match.group(3))
        match = re.fullmatch(r"/v1\.0/drives/([^/:]+)/root(.*)", raw_path)
        if not match:
            return "unknown", _not_understood
        drive_id, rest = unquote(match.group(1)), match.group(2)
        if rest in {"", ":", "/children"}:
            raw_item, suffix = "", ("/children" if rest == "/children" else "")
        elif rest.startswith(":/"):
            raw_item, _, suffix = rest[1:].partition(":")
        else:
            return "unknown", _not_understood
        routes: dict[tuple[str, str], str] = {
            ("GET", ""): "item",
            ("DELETE", ""): "delete",
            ("GET", "/children"): "children",
            ("POST", "/children"): "create_folder",
            ("PUT", "/content"): "content",
            ("POST", "/createUploadSession"): "create_session",
            ("POST", "/permanentDelete"): "delete",
        }
        kind = routes.get((method, suffix))
        if kind is None:
            return "unknown", _not_understood

        def answer() -> _Answer:
            drive = graph._drive_by_id(drive_id)
            segments = _decode_segments(raw_item)
            return self._item_action(kind, suffix, drive, segments)

        return kind, answer

    # Answers.

    def _site(self, host: str, site: str) -> _Answer:
        graph = self.graph
        if (
            host.casefold() != graph.hostname.casefold()
            or site.casefold() != graph.site_path.casefold()
        ):
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        return _Answer(200, graph._site_json())

    def _drives(self, site_id: str, which: str) -> _Answer:
        graph = self.graph
        if (
            site_id not in {graph.site_id, "root"}
            and site_id.casefold() != graph.hostname.casefold()
        ):
            raise GraphError(404, "itemNotFound", "Requested site could not be found")
        if which == "drive":
            return _Answer(200, graph.drives[0].drive_json())
        return _Answer(200, {"value": [d.drive_json() for d in graph.drives]})

    def _item_action(
        self, kind: str, suffix: str, drive: FakeDrive, segments: list[str]
    ) -> _Answer:
        if kind == "item":
            node = drive.node(segments)
            if node is None:
                raise GraphError(
                    404, "itemNotFound", "The resource could not be found."
                )
            return _Answer(200, drive.item_json(node))
        if kind == "children":
            return self._children(drive, segments)
        if kind == "create_folder":
            return self._create_folder(drive, segments)
        if not segments:
            raise GraphError(400, "invalidRequest", "The operation needs an item path.")
        if kind == "delete":
            drive.delete(segments, permanent=suffix == "/permanentDelete")
            return _Answer(204)
        if kind == "content":
            return self._simple_upload(drive, segments)
        return self._create_session(drive, segments)

    def _children(self, drive: FakeDrive, segments: list[str]) -> _Answer:
        query = parse_qs(self._query)
        page_size = int(query.get("$top", [self.graph.page_size])[0])
        offset = int(query.get("$skiptoken", ["0"])[0])
        node = drive.node(segments)
        if node is None:
            raise GraphError(404, "itemNotFound", "The resource could not be found.")
        items = drive.children(segments) if node.folder else []
        page: dict[str, object] = {
            "value": [drive.item_json(n) for n in items[offset : offset + page_size]]
        }
        if offset + page_size < len(items):
            raw_path = self.path.partition("?")[0]
            top = f"&$top={page_size}" if "$top" in query else ""
            page["@odata.nextLink"] = (
                f"{self.graph.origin}{raw_path}?$skiptoken={offset + page_size}{top}"
            )
        return _Answer(200, page)

    def _create_folder(self, drive: FakeDrive, segments: list[str]) -> _Answer:
        body = self._json_body()
        name = body.get("name")
        if not isinstance(name, str) or "folder" not in body:
            raise GraphError(
                400, "invalidRequest", "A folder needs a name and a folder facet."
            )
        reason = name_violation(name) or path_violation("/".join([*segments, name]))
        if reason:
            raise GraphError(400, "invalidRequest", reason)
        conflict = str(body.get("@microsoft.graph.conflictBehavior", "fail"))
        node = drive.create_folder(segments, name, conflict)
        return _Answer(201, drive.item_json(node))

    def _simple_upload(self, drive: FakeDrive, segments: list[str]) -> _Answer:
        conflict = parse_qs(self._query).get(
            "@microsoft.graph.conflictBehavior", ["replace"]
        )[0]
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if "Content-Length" not in self.headers and not chunked:
            raise GraphError(411, "lengthRequired", "Content-Length is required.")
        if int(self.headers.get("Content-Length") or 0) > SIMPLE_UPLOAD_MAX_BYTES:
            raise GraphError(
                413, "requestTooLarge", "Simple upload is limited to 250 MB."
            )
        drive.check_writable(segments, conflict)
        data = self.read_body()
        self._body_read = True
        if len(data) > SIMPLE_UPLOAD_MAX_BYTES:
            raise GraphError(
                413, "requestTooLarge", "Simple upload is limited to 250 MB."
            )
        created, node = drive.write(segments, data, conflict=conflict)
        return _Answer(201 if created else 200, drive.item_json(node))

    def _create_session(self, drive: FakeDrive, segments: list[str]) -> _Answer:
        body = self._json_body()
        item = body.get("item", {})
        conflict = (
            "fail"  # Graph's default: the contract makes the client say "replace".
        )
        if isinstance(item, dict):
            conflict = str(item.get("@microsoft.graph.conflictBehavior", conflict))
        if conflict not in {"fail", "replace"}:
            raise GraphError(
                400, "invalidRequest", f"Unsupported conflictBehavior {conflict!r}."
            )
        drive.check_writable(segments, conflict)
        session = self.graph._open_session(drive, segments, conflict)
        info = item.get("fileSystemInfo") if isinstance(item, dict) else None
        if isinstance(info, dict) and isinstance(info.get("lastModifiedDateTime"), str):
            session.client_modified = info["lastModifiedDateTime"]
        upload_url = f"{self.graph.origin}/upload/{session.id}?token={session.secret}"
        return _Answer(
            200,
            {
                "uploadUrl": upload_url,
                "expirationDateTime": _iso(session.expires),
                "nextExpectedRanges": ["0-"],
            },
        )

    def _upload_session(self, session_id: str) -> _Session:
        secret = parse_qs(self._query).get("token", [""])[0]
        return self.graph._session(session_id, secret)

    def _upload_chunk(self, session_id: str) -> _Answer:
        session = self._upload_session(session_id)
        if "Content-Length" not in self.headers:
            raise GraphError(411, "lengthRequired", "Content-Length is required.")
        length = int(self.headers["Content-Length"])
        match = _CONTENT_RANGE.fullmatch(self.headers.get("Content-Range", "").strip())
        if not match:
            raise GraphError(
                400, "invalidRange", "Content-Range must be 'bytes a-b/total'."
            )
        first, last, total = (int(g) for g in match.groups())
        if last < first or last - first + 1 != length or last >= total:
            raise GraphError(
                400, "invalidRange", "Content-Range does not match the body."
            )
        if session.total is not None and total != session.total:
            raise GraphError(
                400, "invalidRange", "The total size changed within the session."
            )
        if length >= CHUNK_LIMIT:
            raise GraphError(
                400, "invalidRange", "A chunk must be smaller than 60 MiB."
            )
        if last + 1 != total and length % CHUNK_MULTIPLE:
            raise GraphError(
                400,
                "invalidRange",
                f"A chunk that is not the last must be a multiple of {CHUNK_MULTIPLE} bytes.",
            )
        if first != session.next_offset:
            raise GraphError(416, "invalidRange", _next_ranges_message(session))
        data = self.read_exactly(length)
        self._body_read = True
        with session.lock:
            if first != session.next_offset:
                raise GraphError(416, "invalidRange", _next_ranges_message(session))
            session.total = total
            session.buffer += data
            session.next_offset = last + 1
            if session.next_offset < total:
                return _Answer(202, _session_state(session))
            self.graph._close_session(session.id)
        created, node = session.drive.write(
            session.segments, session.buffer, conflict=session.conflict
        )
        node.client_modified = session.client_modified
        return _Answer(201 if created else 200, session.drive.item_json(node))

    def _session_status(self, session_id: str) -> _Answer:
        session = self._upload_session(session_id)
        with session.lock:
            return _Answer(200, _session_state(session))

    def _session_cancel(self, session_id: str) -> _Answer:
        session = self._upload_session(session_id)
        self.graph._close_session(session.id)
        return _Answer(204)


def _etag(node: _Node) -> str:
    return f'"{{{node.id}}},{node.version}"'


def _ctag(node: _Node) -> str:
    return f'"c:{{{node.id}}},{node.version}"'


def _not_understood() -> _Answer:
    raise GraphError(400, "invalidRequest", "Invalid request")


def _session_state(session: _Session) -> dict[str, object]:
    return {
        "expirationDateTime": _iso(session.expires),
        "nextExpectedRanges": [f"{session.next_offset}-"],
    }


def _next_ranges_message(session: _Session) -> str:
    return f"The uploaded fragment is out of order; next expected range: {session.next_offset}-"


def _error_headers(error: GraphError) -> dict[str, str]:
    if error.status == 401:
        return {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
    return {}


def _decode_segments(raw_item: str) -> list[str]:
    """Decode a percent-encoded item path once and check it against SharePoint's rules."""
    if not raw_item:
        return []
    try:
        segments = [
            unquote(s, errors="strict") for s in raw_item.lstrip("/").split("/")
        ]
    except UnicodeDecodeError as exc:
        raise GraphError(
            400, "invalidRequest", "Path is not valid percent-encoded UTF-8."
        ) from exc
    reason = _violation(segments)
    if reason:
        raise GraphError(400, "invalidRequest", reason)
    return segments


def _violation(segments: list[str]) -> str | None:
    for name in segments:
        reason = name_violation(name)
        if reason:
            return f"{reason} in {name!r}"
    return path_violation("/".join(segments))


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r}; one of {sorted(KINDS)}")


def _split(path: str) -> list[str]:
    return [s for s in path.strip("/").split("/") if s] if path.strip("/") else []


def _key(segments: list[str]) -> str:
    return "/".join(s.casefold() for s in segments)


def _key_of(path: str) -> str:
    return _key(_split(path))


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _item_id() -> str:
    return "01" + secrets.token_hex(16).upper()


def _drive_id() -> str:
    return "b!" + secrets.token_urlsafe(48)
