"""blocksync.store.layout alone encodes where blocks and bases sit in git: round trips, long labels,
base folders, and a check that no other module builds those paths itself."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from dulwich.objects import Blob
from hypothesis import given
from hypothesis import strategies as st

import blocksync
from blocksync import names
from blocksync.errors import InvalidLabel
from blocksync.store import layout

PACKAGE = Path(blocksync.__file__).parent

owners = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda o: _valid(o, "owner")
)
labels = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=400).filter(
    lambda label: _valid(label, "label")
)


def _valid(name: str, what: str) -> bool:
    try:
        names.validate(name, what)
    except InvalidLabel:
        return False
    return True


def _back(path: tuple[bytes, ...], label: str) -> tuple[str, str]:
    """(owner, label) from a block path, reading a long label from "beside" (``label``)."""
    assert path[0] == layout.BLOCKS
    key = path[1:]
    assert len(key) == layout.KEY_DEPTH
    return layout.owner_of(key), layout.label_of(key[-1], lambda: label)


@given(owners, labels)
def test_block_path_round_trips(owner: str, label: str) -> None:
    path = layout.block_path(owner, label)
    assert _back(path, label) == (owner, label)
    assert layout.git_path(owner, label) == "/".join(p.decode() for p in path)
    assert layout.record_path(owner, label) == (layout.CONFLICTS, *path[1:])
    assert all(0 < len(name) <= names.MAX_COMPONENT_BYTES for name in path)


@given(owners, labels)
def test_block_folders_fan_out_by_the_hash_of_their_label_component(owner: str, label: str) -> None:
    """Format 2: blocks/<owner>/<f1>/<f2>/<label>/, f1 f2 the first 2+2 hex digits of the
    sha256 of the label's component, so one update rewrites two trees of <= 256 entries."""
    key = layout.block_key(owner, label)
    digest = hashlib.sha256(key[-1]).hexdigest().encode()
    assert key == (names.encode(owner).encode(), digest[:2], digest[2:4], key[-1])
    assert layout.key_problem(key) is None
    assert layout.upgrade_key((key[0], key[-1])) == key  # a format-1 key, fanned out
    misplaced = (key[0], b"00", b"00", key[-1])
    assert (layout.key_problem(misplaced) is None) == (digest[:4] == b"0000")


def test_format_file_round_trips_and_refuses_what_is_no_number() -> None:
    assert layout.format_text() == b"2\n" and layout.FORMAT == 2
    assert layout.parse_format(layout.format_text(7)) == 7
    for bad in (b"", b"2", b"two\n", b"-1\n", b"2\n\n", b"\xff\n"):
        assert layout.parse_format(bad) is None, bad
    assert layout.key_depth(1) == layout.V1_KEY_DEPTH == 2
    assert layout.key_depth(2) == layout.KEY_DEPTH == 4


def test_long_labels_are_named_by_their_hash_and_read_from_beside() -> None:
    label = "file:3fa2c1d0:" + "日本語" * 40  # 33+ such characters: over 255 encoded bytes
    component = layout.label_component(label)
    assert len(component.encode()) <= names.MAX_COMPONENT_BYTES
    assert layout.is_long(component) and layout.is_long(component.encode())
    assert component.endswith(layout.HASHED + hashlib.sha256(label.encode()).hexdigest()[:40])
    assert layout.block_files(component.encode()) == {
        layout.CONTENT_FILE,
        layout.META_FILE,
        layout.LABEL_FILE,
    }
    assert layout.beside(component.encode()) == {layout.LABEL_FILE}
    # the whole label kept beside is checked against the hash: a forged one is refused
    assert layout.label_of(component.encode(), lambda: label) == label
    with pytest.raises(InvalidLabel):
        layout.label_of(component.encode(), lambda: label + "x")
    # a short label is spelled out: nothing is read from beside
    short = layout.label_component("notes")
    assert not layout.is_long(short) and layout.block_files(short.encode()) == {
        layout.CONTENT_FILE,
        layout.META_FILE,
    }
    assert layout.label_of(short.encode(), lambda: pytest.fail("read beside")) == "notes"


def test_a_long_label_never_ends_in_half_an_escape() -> None:
    for pad in range(3):
        label = "a" * pad + "é" * 200
        head = layout.label_component(label).split(layout.HASHED)[0]
        assert names.decode(head)  # a whole encoding: decodes


def test_block_folder_is_what_block_files_names() -> None:
    content, meta, whole = (Blob.from_string(t).id for t in (b"text", b"{}", b"long"))
    folder = layout.block_folder(content, meta, whole)
    assert {e.path for e in folder.items()} == {
        layout.CONTENT_FILE,
        layout.META_FILE,
        layout.LABEL_FILE,
    }
    assert {e.path for e in layout.block_folder(content, meta, None).items()} == {
        layout.CONTENT_FILE,
        layout.META_FILE,
    }


def test_base_folders_are_keyed_by_the_paths_hash() -> None:
    path = "sub/ノート.md".encode()
    digest = hashlib.sha256(path).hexdigest().encode()
    assert layout.base_path(path) == (layout.BASES, digest[:2], digest)
    assert len(layout.base_path(path)) == 1 + layout.BASE_DEPTH
    base, binding = (Blob.from_string(t).id for t in (b"base text", b"{}"))
    folder = layout.base_folder(base, binding)
    assert [e.path for e in folder.items()] == [layout.BASE_FILE, layout.BINDING_FILE]
    assert folder.as_raw_string() == layout.base_folder_raw(base, binding)


# -- no other module encodes the layout -------------------------------------------------------

#: What only layout.py may spell: the names of its folders and files.
LAYOUT_NAMES = {
    layout.BLOCKS,
    layout.CONFLICTS,
    layout.BASES,
    layout.CONTENT_FILE,
    layout.META_FILE,
    layout.LABEL_FILE,
    layout.BINDING_FILE,
    layout.FORMAT_FILE,
}
#: Constants layout.py defines that no other module may define again (under any old name).
OLD_CONSTANTS = {
    "BLOCKS_DIR",
    "BASES_DIR",
    "CONTENT_FILE",
    "META_FILE",
    "LABEL_FILE",
    "BASE_FILE",
    "BINDING_FILE",
    "KEY_DEPTH",
    "V1_KEY_DEPTH",
    "BASE_DEPTH",
    "FORMAT",
    "HASHED",
}


def _offences(path: Path, root: Path = PACKAGE) -> list[str]:
    """Where the module ``path`` spells a layout name, builds a block path or redefines a
    layout constant."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, bytes)
            and (node.value in LAYOUT_NAMES or node.value.startswith(b"blocks/"))
            or isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (node.value in {"meta.json", "binding.json"} or node.value.startswith("blocks/"))
        ):
            found.append(f"{where} spells {node.value!r}")
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [
                f"{where} defines {t.id}"
                for t in targets
                if isinstance(t, ast.Name) and t.id in OLD_CONSTANTS
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (
                node.value.id == "names" and node.attr in {"component", "is_hashed", "check_hashed"}
            )
        ):
            found.append(f"{where} uses names.{node.attr}: the long-label scheme is layout's")
    return found


def test_no_module_but_layout_builds_block_or_base_paths() -> None:
    offences = [
        offence
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "layout.py" and "guest" not in path.relative_to(PACKAGE).parts
        for offence in _offences(path)
    ]
    assert not offences, "\n".join(offences)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The check above is not vacuous: the code this change replaced is what it reports."""
    old = tmp_path / "old.py"
    old.write_text(
        'BLOCKS_DIR = "blocks"\nMETA = b"meta.json"\n'
        'def git_path(o, l):\n    return f"blocks/{o}/{names.component(l)}"\n'
    )
    assert len(_offences(old, tmp_path)) == 4
