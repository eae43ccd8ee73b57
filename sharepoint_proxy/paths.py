r"""Map S3 object keys to SharePoint library paths and back.

Bucket = folder, key = path below it: ``to_sharepoint_path("dossier", "rapports/2025.pdf")``
is ``"dossier/rapports/2025.pdf"``. Upload, delete and sync all call this module, so a
delete finds what its upload wrote.

Each ``/``-separated segment of the key is mapped on its own, in three steps:

1. Character by character, independent of position: a character SharePoint forbids
   (``" * : < > ? \ |``, control characters) becomes its stand-in from `STAND_INS`; a
   character that is itself a stand-in, or is `ESCAPE`, is written as `ESCAPE` followed by
   the character; every other character is kept.
2. At the edges: a leading space and a trailing space become `SPACE_STAND_IN`, a trailing
   period becomes `PERIOD_STAND_IN`. (``.`` and ``..`` need no rule of their own: their last
   period is a trailing period.)
3. Whole-name rules: a name SharePoint or Windows reserves (`is_reserved_name`), such as
   ``CON.txt`` or ``~$a``, gets `ESCAPE` in front, and every ``_vti_`` gets `ESCAPE` after
   its first underscore. The empty segment (``a//b``) is a lone `ESCAPE`.

Decoding reads left to right: `ESCAPE` followed by any character stands for that
character, a lone `ESCAPE` at the end stands for nothing, an unescaped stand-in stands for
its original, and every other character for itself. Every step above writes something this
reading turns back into the input, so decoding inverts encoding, and the mapping is
therefore injective. The encoder never emits ``/`` inside a segment, so paths split back
into the same segments.

A key ending in ``/`` is a folder marker: it maps to the folder's path without the slash
(``a/b/`` -> ``bucket/a/b``), which is also the path of the file key ``a/b``; SharePoint
cannot hold both, and the ledger treats them like any two keys meeting on one item. The
inverse is exact given the kind of item: ``to_s3_key(path, folder=True)`` adds the slash.

Lengths are counted in UTF-16 code units, as SharePoint (.NET) counts them; this is never
less than the number of code points, so it errs on the safe side.
"""

from __future__ import annotations

import re
import unicodedata
from types import MappingProxyType
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Mapping

ESCAPE: Final = "\u201b"  # SINGLE HIGH-REVERSED-9 QUOTATION MARK, rclone's quote rune
SPACE_STAND_IN: Final = "\u2420"  # SYMBOL FOR SPACE, for a leading or trailing space
PERIOD_STAND_IN: Final = "\uff0e"  # FULLWIDTH FULL STOP, for a trailing period
EMPTY_SEGMENT: Final = ESCAPE

_FULLWIDTH_OFFSET: Final = 0xFEE0
_CONTROL_PICTURES_START: Final = 0x2400

# The one table of substitutions, original -> what SharePoint shows. Space and period are
# replaced only where SharePoint forbids them (see the module docstring); all others always.
STAND_INS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{c: chr(ord(c) + _FULLWIDTH_OFFSET) for c in '"*:<>?\\|'},
        **{chr(code): chr(_CONTROL_PICTURES_START + code) for code in range(0x20)},
        "\x7f": "\u2421",  # SYMBOL FOR DELETE
        " ": SPACE_STAND_IN,
        ".": PERIOD_STAND_IN,
    },
)

MAX_PATH_LENGTH: Final = 400
MAX_NAME_LENGTH: Final = 255

_EDGE_ONLY: Final = frozenset(" .")
_ALWAYS: Final[Mapping[str, str]] = {k: v for k, v in STAND_INS.items() if k not in _EDGE_ONLY}
_ORIGINALS: Final[Mapping[str, str]] = {v: k for k, v in STAND_INS.items()}
_ESCAPED: Final = frozenset(_ORIGINALS) | {ESCAPE}

# IGNORECASE also matches the Kelvin sign, long s and dotted/dotless i, which SharePoint's
# case-insensitive comparison may equate with ASCII letters; escaping them too is harmless.
_RESERVED_NAME: Final = re.compile(
    r"(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\..*)?|\.lock|desktop\.ini|~\$.*",
    re.IGNORECASE | re.DOTALL,
)
_VTI: Final = re.compile(r"_(?=vti_)", re.IGNORECASE)


class UnrepresentableKeyError(ValueError):
    """Raised when a key has no path SharePoint can hold; a permanent failure.

    `reason` is machine-readable: ``empty_key``, ``invalid_bucket`` (empty or holding a
    ``/``), ``invalid_unicode``, ``segment_too_long`` or ``path_too_long``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        """Keep the machine-readable `reason` next to the human `message`."""
        super().__init__(message)
        self.reason = reason


class ForeignPathError(ValueError):
    """Raised when a library path is not one `to_sharepoint_path` produces.

    `reason` is machine-readable: ``outside_target_folder``, ``no_key`` or
    ``not_canonical`` (an item someone created in SharePoint by hand, for instance).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        """Keep the machine-readable `reason` next to the human `message`."""
        super().__init__(message)
        self.reason = reason


def to_sharepoint_path(bucket: str, key: str, *, target_folder: str = "") -> str:
    """Return the decoded library-relative path where `key` of `bucket` is mirrored.

    `target_folder` is made of already-legal names; slashes around it are ignored. Raise
    `UnrepresentableKeyError` when the key is empty or the result breaks a length limit.
    """
    if not bucket or "/" in bucket:
        msg = f"not an S3 bucket name: {bucket!r}"
        raise UnrepresentableKeyError(msg, reason="invalid_bucket")
    if not key:
        msg = "an empty key has no SharePoint path"
        raise UnrepresentableKeyError(msg, reason="empty_key")
    if has_lone_surrogate(bucket + key):
        msg = "the key holds a lone UTF-16 surrogate, which UTF-8 cannot carry"
        raise UnrepresentableKeyError(msg, reason="invalid_unicode")
    if is_folder_marker(key):
        key = key[:-1]
    names = [encode_name(bucket), *(encode_name(segment) for segment in key.split("/"))]
    for name in names:
        if _length(name) > MAX_NAME_LENGTH:
            msg = (
                f"a name would be {_length(name)} characters long once mapped; "
                f"SharePoint allows at most {MAX_NAME_LENGTH}"
            )
            raise UnrepresentableKeyError(msg, reason="segment_too_long")
    path = "/".join([*_folder_names(target_folder), *names])
    if _length(path) > MAX_PATH_LENGTH:
        msg = (
            f"the SharePoint path would be {_length(path)} characters long; "
            f"SharePoint allows at most {MAX_PATH_LENGTH}"
        )
        raise UnrepresentableKeyError(msg, reason="path_too_long")
    return path


def to_s3_key(path: str, *, target_folder: str = "", folder: bool = False) -> tuple[str, str]:
    """Return the (bucket, key) that `to_sharepoint_path` maps onto `path`.

    Pass ``folder=True`` for a folder item: its key is the folder marker, ending in ``/``.
    The target folder is compared case-insensitively, as SharePoint does. Raise
    `ForeignPathError` for a path `to_sharepoint_path` never produces.
    """
    prefix = _folder_names(target_folder)
    names = path.split("/")
    if path_identity("/".join(names[: len(prefix)])) != path_identity("/".join(prefix)):
        msg = f"{path!r} is not below the target folder {target_folder!r}"
        raise ForeignPathError(msg, reason="outside_target_folder")
    names = names[len(prefix) :]
    if not names[1:]:  # a bucket name and at least one key name
        msg = f"{path!r} names a bucket folder or less, not an object"
        raise ForeignPathError(msg, reason="no_key")
    decoded = [decode_name(name) for name in names]
    for name, original in zip(names, decoded, strict=True):
        if encode_name(original) != name:
            msg = f"{name!r} is not a name this mapping produces"
            raise ForeignPathError(msg, reason="not_canonical")
    bucket, *segments = decoded
    key = "/".join(segments) + ("/" if folder else "")
    if not key:
        msg = f"{path!r} would be the empty key, which S3 does not have"
        raise ForeignPathError(msg, reason="no_key")
    return bucket, key


def is_folder_marker(key: str) -> bool:
    """Tell whether `key` is a folder marker (ends in ``/``), mirrored as a folder."""
    return key.endswith("/")


def encode_name(segment: str) -> str:
    """Return the name SharePoint shows for one key segment (which holds no ``/``).

    Length limits are not checked here; `to_sharepoint_path` checks them.
    """
    if not segment:
        return EMPTY_SEGMENT
    pieces = [_ALWAYS.get(c) or (ESCAPE + c if c in _ESCAPED else c) for c in segment]
    if segment[0] == " ":
        pieces[0] = SPACE_STAND_IN
    if segment[-1] == " ":
        pieces[-1] = SPACE_STAND_IN
    elif segment[-1] == ".":
        pieces[-1] = PERIOD_STAND_IN
    name = "".join(pieces)
    if is_reserved_name(name):
        name = ESCAPE + name
    return _VTI.sub("_" + ESCAPE, name)


def decode_name(name: str) -> str:
    """Return the key segment that `encode_name` maps onto `name`."""
    out: list[str] = []
    chars = iter(name)
    for c in chars:
        if c == ESCAPE:
            out.append(next(chars, ""))
        else:
            out.append(_ORIGINALS.get(c, c))
    return "".join(out)


def is_reserved_name(name: str) -> bool:
    """Tell whether SharePoint or Windows reserves `name` as a whole.

    Device names count with any extension (``CON.txt``), as Windows forbids them too, so
    the OneDrive client can sync what we write. Case is ignored.
    """
    return _RESERVED_NAME.fullmatch(name) is not None


def is_legal_name(name: str) -> bool:
    """Tell whether SharePoint accepts `name` as it is (for names the operator writes, such as
    TARGET_FOLDER's; key segments are made legal by `encode_name` instead)."""
    return (
        bool(name)
        and name.strip(" ") == name
        and not name.endswith(".")
        and not any(c in _ALWAYS for c in name)
        and not is_reserved_name(name)
        and _VTI.search(name) is None
        and _length(name) <= MAX_NAME_LENGTH
    )


def quote_path(path: str) -> str:
    """Percent-encode each name of `path` once, as UTF-8, for a Graph URL."""
    return "/".join(quote(name, safe="") for name in path.split("/"))


def path_identity(path: str) -> str:
    """Return what SharePoint compares when it matches `path` to an item.

    Two paths meet on one item when their identities are equal: names differ only in case
    or Unicode normal form. Canonical caseless matching (Unicode D145), returned in NFC.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())


def _folder_names(target_folder: str) -> list[str]:
    stripped = target_folder.strip("/")
    return stripped.split("/") if stripped else []


def _length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def has_lone_surrogate(text: str) -> bool:
    """Tell whether `text` holds a lone UTF-16 surrogate, which UTF-8 (and so S3, Graph, SQLite) cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
