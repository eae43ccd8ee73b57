"""Unit and property tests for `sharepoint_proxy.paths`, the key <-> library path mapping."""

from __future__ import annotations

import itertools
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sharepoint_proxy.paths import (
    ESCAPE,
    MAX_NAME_LENGTH,
    MAX_PATH_LENGTH,
    STAND_INS,
    ForeignPathError,
    UnrepresentableKeyError,
    decode_name,
    encode_name,
    is_folder_marker,
    is_reserved_name,
    path_identity,
    quote_path,
    to_s3_key,
    to_sharepoint_path,
)
from tests.support.sharepoint_rules import name_violation, path_violation

BUCKET = "dossier"
DOCS = Path(__file__).resolve().parent.parent / "README.md"

# Pieces that each touch a rule: separators, forbidden characters and their stand-ins, the
# escape, spaces and periods, reserved names and prefixes, controls, case and Unicode traps.
HOSTILE = [
    "/", "//", " ", ".", "..", ESCAPE, ESCAPE * 2, "~$", "~", "$", "_vti_", "_", "vti", "VtI",
    "CON", "con", "Com1", "LPT9", "nul", "desktop.ini", ".lock", "lock", "ini", "x", "é",
    "e\u0301", "\U0001f4c4", "\u212a", "\u0131", "\u0130", "\u017f", "\x00", "\t", "\x1f",
    "\x7f", "\u2400", "\u240a",
    *'"*:<>?\\|',
    *STAND_INS.values(),
]  # fmt: skip

hostile_keys = st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=14).map("".join)
any_keys = st.text(st.characters(codec="utf-8"), min_size=1)
long_keys = st.text(st.characters(codec="utf-8"), min_size=120, max_size=500)
keys = hostile_keys | any_keys | long_keys


def roundtrip_or_limit(key: str, *, target_folder: str = "") -> str | None:
    """Map `key`, check the result is legal and inverts; None when over a length limit."""
    try:
        path = to_sharepoint_path(BUCKET, key, target_folder=target_folder)
    except UnrepresentableKeyError as exc:
        reason = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason in {"segment_too_long", "path_too_long"}
        return None
    assert path_violation(path) is None, (key, path, path_violation(path))
    inverse = to_s3_key(path, target_folder=target_folder, folder=is_folder_marker(key))
    assert inverse == (BUCKET, key)
    return path


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("rapports/2025.pdf", "dossier/rapports/2025.pdf"),
        ("Q3: plan?.xlsx", "dossier/Q3\uff1a plan\uff1f.xlsx"),
        ('a"b*c<d>e\\f|g', "dossier/a\uff02b\uff0ac\uff1cd\uff1ee\uff3cf\uff5cg"),
        ("notes.", "dossier/notes\uff0e"),
        ("notes..", "dossier/notes.\uff0e"),
        ("aux.", "dossier/aux\uff0e"),
        (" lead", "dossier/\u2420lead"),
        ("trail ", "dossier/trail\u2420"),
        ("  both  ", "dossier/\u2420 both \u2420"),
        (" ", "dossier/\u2420"),
        ("dot. ", "dossier/dot.\u2420"),
        ("in side.x", "dossier/in side.x"),
        (".hidden", "dossier/.hidden"),
        (".", "dossier/\uff0e"),
        ("..", "dossier/.\uff0e"),
        ("a/../b", "dossier/a/.\uff0e/b"),
        ("a//b", f"dossier/a/{ESCAPE}/b"),
        ("/lead", f"dossier/{ESCAPE}/lead"),
    ],
)
def test_characters_and_edges_map_to_visible_stand_ins(key: str, path: str) -> None:
    """Forbidden characters, edge spaces and periods, dot names and empty names get stand-ins."""
    assert to_sharepoint_path(BUCKET, key) == path
    assert to_s3_key(path) == (BUCKET, key)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("con", f"{ESCAPE}con"),
        ("CON", f"{ESCAPE}CON"),
        ("CON.txt", f"{ESCAPE}CON.txt"),
        ("lpt9.tar.gz", f"{ESCAPE}lpt9.tar.gz"),
        ("Com0", f"{ESCAPE}Com0"),
        ("desktop.ini", f"{ESCAPE}desktop.ini"),
        ("Desktop.INI", f"{ESCAPE}Desktop.INI"),
        (".lock", f"{ESCAPE}.lock"),
        (".LOCK", f"{ESCAPE}.LOCK"),
        ("~$draft.docx", f"{ESCAPE}~$draft.docx"),
        ("_vti_x", f"_{ESCAPE}vti_x"),
        ("my_VTI_file_vti_", f"my_{ESCAPE}VTI_file_{ESCAPE}vti_"),
        ("_vti_vti_", f"_{ESCAPE}vti_{ESCAPE}vti_"),
    ],
)
def test_reserved_names_are_broken_by_the_escape(key: str, name: str) -> None:
    """A reserved name or pattern gets the escape inserted, which decoding drops again."""
    assert to_sharepoint_path(BUCKET, key) == f"{BUCKET}/{name}"
    assert name_violation(name) is None
    assert decode_name(name) == key


@pytest.mark.parametrize(
    "name", ["CONSOLE", "con_x", "com10", "lpt", "desktop.ini.bak", "x.lock", "a~$", "vti"]
)
def test_names_that_only_resemble_reserved_ones_are_kept(name: str) -> None:
    """Names that merely contain a reserved word are neither reserved nor changed."""
    assert not is_reserved_name(name)
    assert encode_name(name) == name


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("a\uff1ab", f"a{ESCAPE}\uff1ab"),
        ("\uff1f", f"{ESCAPE}\uff1f"),
        (ESCAPE, ESCAPE * 2),
        (f"{ESCAPE}CON", ESCAPE * 2 + "CON"),
        ("\u2420lead", f"{ESCAPE}\u2420lead"),
        ("mid\u2420dle", f"mid{ESCAPE}\u2420dle"),
        ("end\uff0e", f"end{ESCAPE}\uff0e"),
        ("\u2400\u2421", f"{ESCAPE}\u2400{ESCAPE}\u2421"),
    ],
)
def test_stand_ins_and_the_escape_already_in_a_key_are_escaped(key: str, name: str) -> None:
    """A look-alike or the escape present in the key is prefixed, so it decodes to itself."""
    assert encode_name(key) == name
    assert decode_name(name) == key


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("a\x00b", "a\u2400b"),
        ("tab\there", "tab\u2409here"),
        ("line\nbreak\r", "line\u240abreak\u240d"),
        ("\x1f", "\u241f"),
        ("del\x7f", "del\u2421"),
    ],
)
def test_control_characters_become_control_pictures(key: str, name: str) -> None:
    """Control characters 0x00-0x1F map to U+2400 + code, DEL to U+2421."""
    assert encode_name(key) == name
    assert decode_name(name) == key


@pytest.mark.parametrize(
    "key",
    [
        "\U0001f4c4 rapport.pdf",
        "caf\u00e9.txt",
        "cafe\u0301.txt",
        "\u65e5\u672c\u8a9e/\u0442\u0435\u043a\u0441\u0442/\u0639\u0631\u0628\u064a",
        "#100% sure & more+=,;@[]{}'`!",
    ],
)
def test_other_unicode_and_punctuation_pass_through_unchanged(key: str) -> None:
    """Characters SharePoint accepts are kept as they are, without Unicode normalisation."""
    assert to_sharepoint_path(BUCKET, key) == f"{BUCKET}/{key}"


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a/b/", "dossier/a/b"),
        ("/", f"dossier/{ESCAPE}"),
        ("a//", f"dossier/a/{ESCAPE}"),
        ("CON/", f"dossier/{ESCAPE}CON"),
    ],
)
def test_folder_marker_maps_to_the_folder_and_back(key: str, path: str) -> None:
    """A key ending in / names its folder; the inverse adds the slash back for a folder."""
    assert is_folder_marker(key)
    assert to_sharepoint_path(BUCKET, key) == path
    assert to_s3_key(path, folder=True) == (BUCKET, key)


def test_file_key_and_its_folder_marker_share_the_path() -> None:
    """The file a/b and the folder marker a/b/ name one item; only the kind tells them apart."""
    assert not is_folder_marker("a/b")
    assert to_sharepoint_path(BUCKET, "a/b") == to_sharepoint_path(BUCKET, "a/b/")
    assert to_s3_key("dossier/a/b") == (BUCKET, "a/b")


def test_target_folder_is_prefixed_and_matched_case_insensitively() -> None:
    """The target folder comes first, slashes around it ignored, and is stripped again."""
    path = to_sharepoint_path(BUCKET, "a?.txt", target_folder="/Mirror/S3/")
    assert path == "Mirror/S3/dossier/a\uff1f.txt"
    assert to_s3_key(path, target_folder="mirror/s3") == (BUCKET, "a?.txt")


@pytest.mark.parametrize(
    ("key", "target_folder", "reason"),
    [
        ("", "", "empty_key"),
        ("bad\ud800", "", "invalid_unicode"),
        ("a" * (MAX_NAME_LENGTH + 1), "", "segment_too_long"),
        ("\uff1a" * 128, "", "segment_too_long"),
        ("\U0001f4c4" * 128, "", "segment_too_long"),
        ("x" * 200 + "/" + "y" * 200, "", "path_too_long"),
        ("x" * 250 + "/" + "y" * 142, "", "path_too_long"),
        ("x" * 250 + "/" + "y" * 101, "f" * 40, "path_too_long"),
    ],
)
def test_unrepresentable_keys_raise_with_a_reason(
    key: str, target_folder: str, reason: str
) -> None:
    """Empty keys, broken Unicode and keys over the limits raise, naming the limit."""
    with pytest.raises(UnrepresentableKeyError) as caught:
        to_sharepoint_path(BUCKET, key, target_folder=target_folder)
    assert caught.value.reason == reason
    if reason == "segment_too_long":
        assert str(MAX_NAME_LENGTH) in str(caught.value)
    if reason == "path_too_long":
        assert str(MAX_PATH_LENGTH) in str(caught.value)


@pytest.mark.parametrize("bucket", ["", "a/b"])
def test_impossible_bucket_names_raise(bucket: str) -> None:
    """An empty bucket or one holding a slash would break the inverse, so it is refused."""
    with pytest.raises(UnrepresentableKeyError) as caught:
        to_sharepoint_path(bucket, "key")
    assert caught.value.reason == "invalid_bucket"


@pytest.mark.parametrize(
    "key",
    [
        "a" * MAX_NAME_LENGTH,
        "?" * MAX_NAME_LENGTH,
        "x" * 250 + "/" + "y" * (MAX_PATH_LENGTH - len(BUCKET) - 252),
    ],
)
def test_keys_exactly_at_the_limits_are_accepted(key: str) -> None:
    """A name of 255 and a path of 400 characters are still legal."""
    path = to_sharepoint_path(BUCKET, key)
    assert path_violation(path) is None
    assert to_s3_key(path) == (BUCKET, key)


@pytest.mark.parametrize(
    ("path", "target_folder", "reason"),
    [
        ("dossier", "", "no_key"),
        ("Other/dossier/a", "Mirror", "outside_target_folder"),
        ("Mirror", "Mirror", "no_key"),
        ("dossier/CON", "", "not_canonical"),
        ("dossier/a\u2420b", "", "not_canonical"),
        (f"dossier/a{ESCAPE}", "", "not_canonical"),
        ("dossier/a/", "", "not_canonical"),
        ("dossier/trail ", "", "not_canonical"),
        (f"dossier/{ESCAPE}", "", "no_key"),
    ],
)
def test_paths_the_mapping_never_produces_are_foreign(
    path: str, target_folder: str, reason: str
) -> None:
    """to_s3_key refuses items it did not write instead of guessing a key for them."""
    with pytest.raises(ForeignPathError) as caught:
        to_s3_key(path, target_folder=target_folder)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("path", "quoted"),
    [
        ("dossier/a b/#1 100%?.pdf", "dossier/a%20b/%231%20100%25%3F.pdf"),
        ("caf\u00e9/\u2420x", "caf%C3%A9/%E2%90%A0x"),
        (f"{ESCAPE}CON", "%E2%80%9BCON"),
        ("a+b&c=d", "a%2Bb%26c%3Dd"),
    ],
)
def test_quote_path_encodes_each_name_once(path: str, quoted: str) -> None:
    """Each name is percent-encoded once as UTF-8; the separating slashes stay."""
    assert quote_path(path) == quoted


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("dossier/A.pdf", "dossier/a.pdf"),
        ("dossier/caf\u00e9", "dossier/cafe\u0301"),
        ("dossier/CAF\u00c9", "dossier/cafe\u0301"),
        ("dossier/\u01f0", "dossier/J\u030c"),
    ],
)
def test_path_identity_equates_case_and_normal_form(first: str, second: str) -> None:
    """Paths differing only in case or Unicode normal form have one identity."""
    assert path_identity(first) == path_identity(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [("dossier/a.pdf", "dossier/b.pdf"), ("dossier/a.pdf", "dossier/a.pdf\u2420")],
)
def test_path_identity_keeps_other_paths_apart(first: str, second: str) -> None:
    """Paths that differ in more than case or normal form keep distinct identities."""
    assert path_identity(first) != path_identity(second)


def test_docs_show_every_stand_in_and_the_escape() -> None:
    """The README lists every character of the table, so it cannot drift from the code."""
    text = DOCS.read_text(encoding="utf-8")
    shown = [ESCAPE, *STAND_INS.values()]
    assert [c for c in shown if c not in text] == []
    assert f"{MAX_PATH_LENGTH}" in text
    assert f"{MAX_NAME_LENGTH}" in text


def test_short_strings_over_a_hostile_alphabet_map_injectively() -> None:
    """Every string of up to 3 characters from a hostile alphabet gets its own name."""
    alphabet = [" ", ".", ESCAPE, ":", "\uff1a", "\u2420", "\uff0e", "\x00", "\u2400", "~", "$",
                "_", "C", "a"]  # fmt: skip
    seen: dict[str, str] = {}
    for size in range(1, 4):
        for chars in itertools.product(alphabet, repeat=size):
            segment = "".join(chars)
            name = encode_name(segment)
            assert name_violation(name) is None, (segment, name)
            assert seen.setdefault(name, segment) == segment
            assert decode_name(name) == segment


@settings(max_examples=600)
@given(keys)
@example("CON.txt/~$a/_vti_/ . /.lock/desktop.ini/\u201b/\uff1a")
@example("/" * 5)
@example(".loc\u212a")
@example("deskt\u00f3p.\u0131n\u0131")
def test_property_every_key_roundtrips_to_a_legal_path(key: str) -> None:
    """Any key maps to a legal path that inverts exactly, or raises for a length limit."""
    roundtrip_or_limit(key)


@settings(max_examples=300)
@given(keys, st.sampled_from(["", "Mirror", "S3 Mirror/Archive"]))
def test_property_roundtrip_holds_below_a_target_folder(key: str, target_folder: str) -> None:
    """The target folder changes neither legality nor the inverse."""
    roundtrip_or_limit(key, target_folder=target_folder)


@settings(max_examples=600)
@given(hostile_keys | any_keys, hostile_keys | any_keys)
@example("a", "a/")
@example(" ", "\u2420")
@example(".", "\uff0e")
@example("\u201b\u201b", "\u201b")
def test_property_distinct_keys_never_share_a_path(first: str, second: str) -> None:
    """Two keys meet on one path only as a file and its own folder marker (a vs a/)."""
    paths = {}
    for key in (first, second):
        try:
            paths[key] = to_sharepoint_path(BUCKET, key)
        except UnrepresentableKeyError:
            return
    if first != second and paths[first] == paths[second]:
        assert {first, second} in ({first, first + "/"}, {second, second + "/"})


@settings(max_examples=600)
@given(hostile_keys)
def test_property_segment_encoding_is_injective(segment: str) -> None:
    """decode_name inverts encode_name on any single name, so no two names collide."""
    segment = segment.replace("/", "")
    name = encode_name(segment)
    assert decode_name(name) == segment
    assert "/" not in name


@settings(max_examples=600)
@given(hostile_keys, st.sampled_from(["file", "folder"]))
@example(ESCAPE, "file")
@example(ESCAPE, "folder")
def test_property_foreign_or_canonical(path: str, kind: str) -> None:
    """Any library path is either refused as foreign or is exactly where its key maps."""
    path, folder = f"{BUCKET}/{path}", kind == "folder"
    try:
        bucket, key = to_s3_key(path, folder=folder)
    except ForeignPathError:
        return
    assert is_folder_marker(key) is folder
    assert to_sharepoint_path(bucket, key) == path


@given(st.text(st.characters(codec="utf-8")))
def test_property_path_identity_ignores_normal_form(path: str) -> None:
    """Every normal form of a path has one identity, and an identity is its own identity."""
    identity = path_identity(path)
    assert path_identity(unicodedata.normalize("NFD", path)) == identity
    assert path_identity(unicodedata.normalize("NFC", path)) == identity
    assert path_identity(identity) == identity
