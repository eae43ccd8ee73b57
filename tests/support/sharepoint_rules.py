"""Check names and paths against SharePoint Online's rules, as the test Graph server enforces them.

The rules are those DESIGN.md lists (Microsoft's "Restrictions and limitations in OneDrive
and SharePoint"). Both the test Graph server and the property tests of
`sharepoint_proxy.paths` call these functions, so "legal" means one thing in the tests.
"""

from __future__ import annotations

import re

FORBIDDEN_CHARACTERS = frozenset('"*:<>?/\\|')
RESERVED_NAMES = frozenset(
    {".lock", "con", "prn", "aux", "nul", "desktop.ini"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
MAX_PATH_CHARACTERS = 400
MAX_NAME_CHARACTERS = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_violation(name: str) -> str | None:
    """Return why SharePoint refuses `name` as one item's name, or None when it is legal."""
    if not name:
        return "empty name"
    if name in {".", ".."}:
        return "dot segment"
    if len(name) > MAX_NAME_CHARACTERS:
        return "name longer than 255 characters"
    bad = sorted(set(name) & FORBIDDEN_CHARACTERS)
    if bad:
        return f"forbidden character {bad[0]!r}"
    if _CONTROL.search(name):
        return "control character"
    if name != name.strip(" "):
        return "leading or trailing space"
    if name.endswith("."):
        return "trailing period"
    if name.lower() in RESERVED_NAMES:
        return "reserved name"
    if name.startswith("~$"):
        return "starts with ~$"
    if "_vti_" in name.lower():
        return "contains _vti_"
    return None


def path_violation(path: str) -> str | None:
    """Return why SharePoint refuses the decoded library-relative `path`, or None when legal."""
    if len(path) > MAX_PATH_CHARACTERS:
        return "path longer than 400 characters"
    for name in path.split("/"):
        reason = name_violation(name)
        if reason:
            return f"{reason} in {name!r}"
    return None
