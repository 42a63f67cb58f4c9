"""The reconcile truth table (blocksync/shared/truth.py): every row, every permission, and its laws."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocksync.shared import truth
from blocksync.shared.truth import (
    ADMIN,
    PERMISSIONS,
    READ_ONLY,
    READ_WRITE,
    Action,
    Decision,
    decide,
)
from blocksync.store.merge import merge3

from .conftest import examples

TRUTH_PY = Path(truth.__file__)


def merge(base: str, disk: str, agent: str) -> str | None:
    return merge3(base, disk, agent).text


def no_merge(base: str, disk: str, agent: str) -> str | None:
    raise AssertionError("merge must not be called for this row")


def apply(
    decision: Decision, disk: str | None, agent: str | None, base: str | None = None
) -> tuple[str | None, str | None, str | None]:
    """(base, disk, agent) after carrying the decision out, as the reconciler would."""
    a = decision.action
    if a in (Action.NO_CHANGE, Action.CONFLICT):
        return base, disk, agent
    if a in (Action.DELETE_AGENT, Action.DELETE_DISK, Action.FORGET):
        return None, None, None
    c = decision.content
    return c, c, c


# -- the table, row by row --------------------------------------------------------------------

B = "one\ntwo\nthree\nfour\n"
D = "ONE\ntwo\nthree\nfour\n"  # disk's edit (first line)
A = "one\ntwo\nthree\nFOUR\n"  # agent's edit (last line), disjoint from D's
M = "ONE\ntwo\nthree\nFOUR\n"  # their clean merge
X = "one\nTWO!\nthree\nfour\n"  # an edit overlapping ...
Y = "one\ntwo?\nthree\nfour\n"  # ... this one

C = Action.CONFLICT


def each(
    ro: tuple[Action, str | None], rw: tuple[Action, str | None], ad: tuple[Action, str | None]
) -> dict[str, tuple[Action, str | None]]:
    return {READ_ONLY: ro, READ_WRITE: rw, ADMIN: ad}


def same(outcome: tuple[Action, str | None]) -> dict[str, tuple[Action, str | None]]:
    return each(outcome, outcome, outcome)


# One line per row: (row name, base, disk, agent, expected (action, content) per permission as
# read-only / read-write / admin, a phrase the conflict reason must contain).
CX: tuple[Action, str | None] = (C, None)
Row = tuple[
    str, str | None, str | None, str | None, dict[str, tuple[Action, str | None]], str | None
]
# fmt: off
TABLE: list[Row] = [
    ("same/same",                   B,    B,    B,    same((Action.NO_CHANGE, B)),       None),
    ("changed/same",                B,    D,    B,    same((Action.TO_AGENT, D)),         None),
    ("same/changed",                B,    B,    A,    each(CX, (Action.TO_DISK, A), (Action.TO_DISK, A)), "read-only"),
    ("both changed, equal",         B,    D,    D,    same((Action.IDENTICAL, D)),        None),
    ("both changed, clean merge",   B,    D,    A,    each((Action.TO_AGENT, D), (Action.MERGED, M), (Action.MERGED, M)), None),
    ("both changed, overlap",       B,    X,    Y,    each((Action.TO_AGENT, X), CX, CX), "same lines"),
    ("disk deleted, agent same",    B,    None, B,    each(CX, CX, (Action.DELETE_AGENT, None)), "admin"),
    ("disk deleted, agent changed", B,    None, A,    same(CX),  "source was deleted but the block changed"),
    ("agent deleted, disk same",    B,    B,    None, each(CX, CX, (Action.DELETE_DISK, None)), "block was deleted"),
    ("agent deleted, disk changed", B,    D,    None, same(CX),  "block was deleted but the source changed"),
    ("both deleted",                B,    None, None, same((Action.FORGET, None)),        None),
    ("no base, both absent",        None, None, None, same((Action.NO_CHANGE, None)),    None),
    ("no base, only disk",          None, D,    None, same((Action.TO_AGENT, D)),         None),
    ("no base, only agent",         None, None, A,    each(CX, (Action.TO_DISK, A), (Action.TO_DISK, A)), "read-only"),
    ("no base, both equal",         None, D,    D,    same((Action.IDENTICAL, D)),        None),
    ("no base, both differ",        None, D,    A,    same(CX),  "no base yet and both sides differ"),
    # empty text is present, not absent
    ("empty base, agent writes",    "",   "",   "x",  each(CX, (Action.TO_DISK, "x"), (Action.TO_DISK, "x")), "read-only"),
    ("no base, both empty",         None, "",   "",   same((Action.IDENTICAL, "")),       None),
    ("no base, empty vs text",      None, "",   "x",  same(CX),  "no base yet"),
    ("base, disk emptied",          "x",  "",   "x",  same((Action.TO_AGENT, "")),        None),
    ("both changed, only EOL",      "a\n", "a\r\n", "a", each((Action.TO_AGENT, "a\r\n"), CX, CX), "same lines"),
]
# fmt: on

CASES = [
    pytest.param(base, disk, agent, perm, want, why, id=f"{name} [{perm}]")
    for name, base, disk, agent, expected, why in TABLE
    for perm, want in expected.items()
]


@pytest.mark.parametrize("base, disk, agent, permission, want, why", CASES)
def test_table_row(
    base: str | None,
    disk: str | None,
    agent: str | None,
    permission: str,
    want: tuple[Action, str | None],
    why: str | None,
) -> None:
    decision = decide(base, disk, agent, permission, merge)
    assert (decision.action, decision.content) == want
    assert decision.reason and decision.reason.strip() == decision.reason
    if decision.action is Action.CONFLICT and why:
        assert why in decision.reason


def test_merge_is_called_only_when_both_changed_differently_and_writable() -> None:
    for name, base, disk, agent, _, _ in TABLE:
        if name.startswith("both changed,") and disk != agent:
            continue
        for permission in PERMISSIONS:
            decide(base, disk, agent, permission, no_merge)
    for name, base, disk, agent, _, _ in TABLE:
        if name.startswith("both changed,"):
            decide(base, disk, agent, READ_ONLY, no_merge)  # disk wins without merging


def test_merge_receives_base_disk_agent_in_that_order() -> None:
    seen: list[tuple[str, str, str]] = []

    def spy(base: str, disk: str, agent: str) -> str | None:
        seen.append((base, disk, agent))
        return "merged"

    assert decide(B, D, A, READ_WRITE, spy) == Decision(
        Action.MERGED, "merged", decide(B, D, A, READ_WRITE, merge).reason
    )
    assert seen == [(B, D, A)]


def test_conflict_reasons_name_the_situation() -> None:
    reasons = {
        "both sides changed the same lines": (B, X, Y, READ_WRITE),
        "the source was deleted but the block changed": (B, None, A, ADMIN),
        "the block was deleted but the source changed": (B, D, None, ADMIN),
        "no base yet and both sides differ": (None, D, A, ADMIN),
        "the source is read-only for this agent": (B, B, A, READ_ONLY),
    }
    for phrase, (base, disk, agent, permission) in reasons.items():
        decision = decide(base, disk, agent, permission, merge)
        assert decision.action is Action.CONFLICT
        assert phrase in decision.reason, decision.reason


@pytest.mark.parametrize("permission", ["", "Admin", "write", "read_only", "rw"])
def test_unknown_permission_is_a_value_error(permission: str) -> None:
    with pytest.raises(ValueError, match="read-only, read-write, admin"):
        decide(B, B, B, permission, merge)


def test_outcome_maps_to_the_wit_result_cases() -> None:
    assert decide(B, B, B, ADMIN, merge).outcome == "no-change"
    assert decide(B, X, Y, ADMIN, merge).outcome == "needs-resolution"
    for base, disk, agent in [
        (B, D, B),
        (B, B, A),
        (B, D, D),
        (B, D, A),
        (B, None, B),
        (B, B, None),
        (B, None, None),
    ]:
        assert decide(base, disk, agent, ADMIN, merge).outcome == "resolved"
    assert str(Action.TO_AGENT) == "disk->agent" and Action("merged") is Action.MERGED


def test_content_hash_is_sha256_of_utf8() -> None:
    assert truth.content_hash("") == hashlib.sha256(b"").hexdigest()
    assert truth.content_hash("é\r\n\x00") == hashlib.sha256("é\r\n\x00".encode()).hexdigest()
    assert truth.content_hash("a\n") != truth.content_hash("a\r\n")
    assert truth.content_hash("\ud800")  # a lone surrogate hashes instead of raising


def test_module_is_pure_standard_library() -> None:
    tree = ast.parse(TRUTH_PY.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    imported.discard("__future__")
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert not {"os", "io", "pathlib", "time", "subprocess", "socket", "shutil"} & imported


def test_module_runs_where_blocksync_does_not_exist(tmp_path: Path) -> None:
    # as the guest SDK ships it: the bare file, with no blocksync importable (-I, elsewhere)
    (tmp_path / "truth.py").write_bytes(TRUTH_PY.read_bytes())
    script = (
        "import sys, truth\n"
        "assert 'blocksync' not in sys.modules\n"
        "d = truth.decide('a', 'b', 'a', 'read-only', lambda b, d, a: None)\n"
        "print(d.action.value, d.content)\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + script,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "disk->agent b"


# -- laws, with nasty texts ---------------------------------------------------------------------

LINES = [
    "",
    "\x00",
    "\r",
    "a",
    "b",
    "a\r",
    "<<<<<<<",
    "=======",
    ">>>>>>>",
    "<<<<<<< ours",
    "é",
    "日本",
    "\u2028",
    " ",
    "\t",
]
LINE = st.one_of(st.sampled_from(LINES), st.text(max_size=4).filter(lambda s: "\n" not in s))


@st.composite
def texts(draw: st.DrawFn, min_lines: int = 0, max_lines: int = 6) -> str:
    lines = draw(st.lists(LINE, min_size=min_lines, max_size=max_lines))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join(lines) + draw(st.sampled_from(["", sep]))


@st.composite
def edit_of(draw: st.DrawFn, base: str, tag: str | None = None) -> str:
    """A few line replacements, insertions and deletions of ``base`` (so merges are often clean).
    With a ``tag``, every new line is unique (see ``unique_lines``)."""
    lines = base.split("\n")
    for k in range(draw(st.integers(0, 3))):
        fresh = draw(LINE) if tag is None else f"{draw(LINE)}~{tag}{k}"
        i = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        if kind == "insert" or i == len(lines):
            lines.insert(i, fresh)
        elif kind == "replace":
            lines[i] = fresh
        else:
            del lines[i]
    return "\n".join(lines)


@st.composite
def side(draw: st.DrawFn, base: str | None) -> str | None:
    choices = ["absent", "text"] + (["base", "edit", "edit"] if base is not None else [])
    kind = draw(st.sampled_from(choices))
    if kind == "absent":
        return None
    if kind == "base":
        return base
    if kind == "edit":
        assert base is not None
        return draw(edit_of(base))
    return draw(texts())


@st.composite
def any_triple(draw: st.DrawFn) -> tuple[str | None, str | None, str | None]:
    base = draw(st.one_of(st.none(), texts(), texts(), texts()))
    disk = draw(side(base))
    same_change = draw(st.integers(0, 9)) == 0
    agent = disk if same_change else draw(side(base))
    return base, disk, agent


@st.composite
def both_edited(draw: st.DrawFn) -> tuple[str | None, str | None, str | None]:
    """Both sides edit one base of distinct lines with fresh lines: the cases that reach the merge."""
    lines = draw(st.lists(LINE, min_size=4, max_size=14, unique=True))
    base = "\n".join(lines) + draw(st.sampled_from(["", "\n"]))
    return base, draw(edit_of(base, "d")), draw(edit_of(base, "a"))


def unique_lines(*texts: str) -> bool:
    """No text repeats a line: then a line merge has one alignment, and containment is exact.
    (With repeated lines merge3 may align a re-merge differently from the first merge.)"""
    return all(len(t.split("\n")) == len(set(t.split("\n"))) for t in texts)


triples = st.one_of(any_triple(), both_edited())


PERMISSION = st.sampled_from(PERMISSIONS)
LAWS = settings(max_examples=examples(400), deadline=None)


@LAWS
@given(triples, PERMISSION)
def test_law_reconcile_twice_changes_nothing_the_second_time(
    t: tuple[str | None, str | None, str | None], permission: str
) -> None:
    base, disk, agent = t
    first = decide(base, disk, agent, permission, merge)
    after = apply(first, disk, agent, base)
    second = decide(*after, permission, merge)
    if first.action is Action.CONFLICT:
        assert second == first  # the same conflict again, not a new one
    else:
        assert second.action is Action.NO_CHANGE, (first, second)


@LAWS
@given(triples, PERMISSION)
def test_law_nothing_is_lost(t: tuple[str | None, str | None, str | None], permission: str) -> None:
    base, disk, agent = t
    decision = decide(base, disk, agent, permission, merge)
    if decision.action is Action.CONFLICT:
        assert decision.content is None
        assert apply(decision, disk, agent, base) == (base, disk, agent)
        return
    new_base, new_disk, new_agent = apply(decision, disk, agent, base)
    assert new_disk == new_agent == new_base  # both sides agree afterwards
    for name, text in (("disk", disk), ("agent", agent)):
        if text == base:
            continue  # this side made no edit to keep
        if text == decision.content:
            continue  # its text is the result (or both it and the result are deletions)
        if name == "agent" and permission == READ_ONLY and decision.action is Action.TO_AGENT:
            # the one designed loss: read-only, both changed, disk wins (the block's old
            # version stays in its history)
            assert base is not None and disk is not None and agent is not None
            assert disk != base and agent != base
            continue
        assert decision.action is Action.MERGED, (name, decision)
        assert base is not None and disk is not None and agent is not None
        assert text is not None and decision.content is not None
        assert decision.content == merge(base, disk, agent)  # the clean merge, unaltered
        if unique_lines(base, disk, agent, decision.content):
            # the side's edit is contained in the result: merging it in again adds nothing
            assert merge(base, text, decision.content) == decision.content, (name, decision)


@LAWS
@given(triples, PERMISSION)
def test_law_permissions(t: tuple[str | None, str | None, str | None], permission: str) -> None:
    decision = decide(*t, permission, merge)
    if permission == READ_ONLY:
        assert decision.action not in (Action.TO_DISK, Action.DELETE_DISK, Action.MERGED)
    if permission != ADMIN:
        assert decision.action not in (Action.DELETE_AGENT, Action.DELETE_DISK)
    # the content is what both sides hold afterwards: the new base, or the unchanged one
    base = t[0]
    lands = decision.action in (Action.TO_AGENT, Action.TO_DISK, Action.IDENTICAL, Action.MERGED)
    if decision.action is Action.NO_CHANGE:
        assert decision.content == base
    else:
        assert (decision.content is not None) == lands


MIRROR = {
    Action.TO_AGENT: Action.TO_DISK,
    Action.TO_DISK: Action.TO_AGENT,
    Action.DELETE_AGENT: Action.DELETE_DISK,
    Action.DELETE_DISK: Action.DELETE_AGENT,
}


@LAWS
@given(triples, st.sampled_from([READ_WRITE, ADMIN]))
def test_law_symmetry(t: tuple[str | None, str | None, str | None], permission: str) -> None:
    # read-only is asymmetric on purpose; read-write and admin treat both sides alike
    base, disk, agent = t
    there = decide(base, disk, agent, permission, merge)
    back = decide(base, agent, disk, permission, merge)
    assert back.action is MIRROR.get(there.action, there.action)
    assert back.content == there.content


@LAWS
@given(triples)
def test_law_read_only_is_read_write_with_the_source_fixed(
    t: tuple[str | None, str | None, str | None],
) -> None:
    # wherever read-write would leave the source untouched, read-only decides the same
    base, disk, agent = t
    rw = decide(base, disk, agent, READ_WRITE, merge)
    ro = decide(base, disk, agent, READ_ONLY, merge)
    if rw.action in (Action.NO_CHANGE, Action.TO_AGENT, Action.IDENTICAL, Action.FORGET):
        assert ro == rw
