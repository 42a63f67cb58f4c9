"""The block store against a plain in-memory model, driven by hypothesis.

The model is a dict of version lists per (owner, label); a version is the block's content and
metadata, or a deletion. Every rule runs the same operation on a real store (a fresh
``blocksync.init`` per example) and on the model, and the two must agree on the outcome: the
error the model predicts is raised exactly then (leaving main where it was), and otherwise the
store wrote exactly the versions the model added, in one commit. After every step every block,
every version and the block list are read back; at teardown the real git CLI must agree
(``git fsck --strict``, ``git log -- <block path>``) and a rebuilt index must equal the one kept
incrementally.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import blocksync
from blocksync import (
    BlockExists,
    BlockNotFound,
    BlockStore,
    BlockType,
    InvalidContent,
    InvalidLabel,
    StaleVersion,
    UsageError,
    VersionNotFound,
)
from blocksync.index.versions import VersionIndex
from blocksync.store.blocks import KEEP, Block, Transaction

from .conftest import assert_git_fsck, examples, git

OWNERS = ["alice", "agent:bob 😀"]
LABELS = ["file:3fa2c1d0:src/a.md", "with  spaces ", "ünïcødé ✓ 🐍", "%41", "A", ".hidden", "a/b/c"]
KEYS = [(o, lbl) for o in OWNERS for lbl in LABELS]

NASTY = [
    "",
    "\x00",
    "a\x00b\n",
    "one\r\ntwo\r\n",
    "no trailing newline",
    "\n",
    "\r",
    "\r\n",
    "x" * 10_000,
    "long " * 2_000 + "\n",
    "<<<<<<< ours\nmine\n=======\ntheirs\n>>>>>>> theirs\n",
    "=======\n",
    ">>>>>>>",
    "ünï 😀 ✓\n",
    "\\ No newline at end of file\n",
    "line\n" * 5,
    "tab\tvt\x0bff\x0cfs\x1c\n",
    "\u2028sep\u2029\n",
    "\ufeffbom\n",
]
contents = st.one_of(
    st.sampled_from(NASTY),
    st.lists(st.sampled_from([*NASTY, "x\n", "y\n", "x"]), max_size=4).map("".join),
    st.text(st.characters(codec="utf-8"), max_size=30),
)
descriptions = st.sampled_from(["", "a description", "ünï 😀\nsecond line"])
block_types = st.sampled_from([t.value for t in BlockType])
schemas = st.sampled_from(['{"type": "text"}', '{"type": "object", "properties": {}}'])
char_limits = st.sampled_from([None, 3, 50_000])
authors = st.sampled_from(["agent:alice", "plugin:file-source@1.0", "Jane Doe", "human:ü 😀"])
messages = st.sampled_from(["m", "ünï 😀 message", "subject\n\nbody line\n"])
# expected_version as the rule means it; resolved against the model when the rule runs
expectations = st.one_of(st.none(), st.sampled_from(["current", "previous"]), st.integers(0, 6))

# requests blocksync must refuse with exactly this error, before writing anything
BAD_COMMITS = [  # refused whatever the operation and the block: (keyword arguments, error)
    ({"message": "nul \x00 inside"}, UsageError),  # git fsck: nulInCommit
    ({"message": "lone \ud800 surrogate"}, UsageError),
    ({"author": "trailing space "}, UsageError),  # git log would show it trimmed
    ({"author": "a <b@c>"}, UsageError),
    ({"author": "two\nlines"}, UsageError),
    ({"author": "\udc80"}, UsageError),
]
BAD_META = [
    {"block_type": "nope"},
    {"description": "bad \ud800"},
    {"schema": "{not json"},
    {"schema": '"\udc80"'},
    {"char_limit": -1},
]
BAD_NAMES = ["", "../x", "a/../b", "/abs", "a\nb", "tab\t", "\x7f", "\ud800", "x" * 8193]
#: too long for an owner (one path component), fine for a label (kept whole beside its hash)
LONG_NAMES = ["x" * 256, "🐍" * 22]

Key = tuple[str, str]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@dataclass(frozen=True)
class State:
    """A block's content and metadata at one version."""

    content: str
    description: str
    block_type: str
    schema: str
    char_limit: int | None

    def fits(self) -> bool:
        return self.char_limit is None or len(self.content) <= self.char_limit


@dataclass(frozen=True)
class Ver:
    state: State | None  # None: the version is a deletion
    commit: str
    author: str
    message: str


class Boom(Exception):
    """Raised by the test inside a transaction: nothing of it may be written."""


# -- applying a unified diff, to check Diff.unified really turns old into new ---------------

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _lines(text: str) -> list[str]:
    """Lines split on "\\n" only (as blocksync's diffs do), each keeping its newline."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def apply_unified(old: str, patch: str) -> str:
    if not patch:
        return old
    plines = _lines(patch)
    assert plines[0].startswith("--- ") and plines[1].startswith("+++ "), patch[:200]
    hunks: list[tuple[int, list[tuple[str, str]]]] = []
    for line in plines[2:]:
        if line.startswith("@@"):
            m = _HUNK.match(line)
            assert m is not None, line
            start, count = int(m[1]), int(m[2] or 1)
            hunks.append((start if count == 0 else start - 1, []))
        elif line.startswith("\\"):
            tag, text = hunks[-1][1][-1]
            assert text.endswith("\n")
            hunks[-1][1][-1] = (tag, text[:-1])
        else:
            assert line[0] in " +-", line
            hunks[-1][1].append((line[0], line[1:]))
    src, out, pos = _lines(old), [], 0
    for start, body in hunks:
        assert start >= pos
        out += src[pos:start]
        pos = start
        for tag, text in body:
            if tag in " -":
                assert src[pos] == text, (src[pos], text)
                pos += 1
            if tag in " +":
                out.append(text)
    out += src[pos:]
    return "".join(out)


# -- the model's rules ----------------------------------------------------------------------


def plan(
    op: tuple[Any, ...], view: dict[Key, State | None], committed: dict[Key, list[Ver]]
) -> type[Exception] | None:
    """Apply ``op`` to ``view`` as blocksync should; return the error it must raise instead.

    ``committed`` is the history as of the transaction's start: ``expected_version`` and
    rollback targets refer to committed versions, never to changes staged in the transaction.
    """
    kind, key = op[0], op[1]
    versions = committed.get(key, [])
    if kind in ("update", "delete"):
        expected = op[-1]
        if expected is not None and not (
            versions and versions[-1].state is not None and len(versions) == expected
        ):
            return StaleVersion
    current = view.get(key)
    if kind == "create":
        if current is not None:
            return BlockExists
        new = State(op[2], *op[3])
    elif kind == "update":
        if current is None:
            return BlockNotFound
        content, description, block_type, schema, char_limit, _ = op[2:]
        new = State(
            current.content if content is None else content,
            current.description if description is None else description,
            current.block_type if block_type is None else block_type,
            current.schema if schema is None else schema,
            current.char_limit if char_limit is KEEP else char_limit,
        )
    elif kind == "delete":
        if current is None:
            return BlockNotFound
        view[key] = None
        return None
    else:
        assert kind == "rollback"
        number = op[2]
        if not versions:
            return BlockNotFound
        if number is None or not 1 <= number <= len(versions):
            return VersionNotFound
        target = versions[number - 1].state
        if target is None:
            return UsageError
        new = target
    if not new.fits():
        return InvalidContent
    view[key] = new
    return None


def state_of(block: Block) -> State:
    meta = block.meta
    return State(
        block.content, meta.description, meta.block_type.value, meta.schema, meta.char_limit
    )


class BlockStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="blocksync-model-"))
        self.path = self.tmp / "store"
        self.ws: blocksync.Workspace | None = blocksync.init(self.path, author="test:setup")
        self.versions: dict[Key, list[Ver]] = {}

    @property
    def store(self) -> BlockStore:
        assert self.ws is not None
        return self.ws.blocks

    # -- helpers ----------------------------------------------------------------------------

    def committed_view(self) -> dict[Key, State | None]:
        return {key: vs[-1].state for key, vs in self.versions.items()}

    def pick_key(self, data: st.DataObject, prefer: list[Key] | None = None) -> Key:
        """Mostly a block the model knows (so operations collide), sometimes any from the pool."""
        known = sorted(prefer if prefer is not None else self.versions)
        if known and data.draw(st.integers(0, 4), label="known?") > 0:
            return data.draw(st.sampled_from(known), label="key")
        return data.draw(st.sampled_from(KEYS), label="key")

    def resolve_expected(self, key: Key, spec: str | int | None) -> int | None:
        n = len(self.versions.get(key, []))
        if spec == "current":
            return n
        if spec == "previous":
            return n - 1
        return spec  # type: ignore[return-value]

    def draw_op(self, data: st.DataObject, prefer: list[Key] | None = None) -> tuple[Any, ...]:
        kind = data.draw(
            st.sampled_from(["create", "update", "update", "delete", "rollback"]), label="op"
        )
        key = self.pick_key(data, prefer)
        if kind == "create":
            meta = (
                data.draw(descriptions),
                data.draw(block_types),
                data.draw(schemas),
                data.draw(char_limits),
            )
            return ("create", key, data.draw(contents, label="content"), meta)
        if kind == "update":
            return (
                "update",
                key,
                data.draw(maybe(contents), label="content"),
                data.draw(maybe(descriptions)),
                data.draw(maybe(block_types)),
                data.draw(maybe(schemas)),
                data.draw(st.one_of(st.just(KEEP), char_limits)),  # None removes a limit
                self.resolve_expected(key, data.draw(expectations, label="expected")),
            )
        if kind == "delete":
            return (
                "delete",
                key,
                self.resolve_expected(key, data.draw(expectations, label="expected")),
            )
        number = data.draw(st.integers(1, len(self.versions.get(key, [])) + 1), label="version")
        return (
            "rollback",
            key,
            number,
            data.draw(st.sampled_from(["number", "v", "commit"]), label="spec"),
        )

    def version_spec(self, key: Key, number: int, form: str) -> str | int:
        versions = self.versions.get(key, [])
        if form == "v":
            return f"v{number}"
        if form == "commit":
            if number <= len(versions):
                return versions[number - 1].commit[:10]
            return "deadbeef0"  # a prefix no version of this block has
        return number

    def run_op(
        self, target: BlockStore | Transaction, op: tuple[Any, ...], author: str, message: str
    ) -> Any:
        """Run ``op`` on the store (one commit) or on an open transaction."""
        extra: dict[str, str] = (
            {} if isinstance(target, Transaction) else {"author": author, "message": message}
        )
        kind, (owner, label) = op[0], op[1]
        if kind == "create":
            description, block_type, schema, char_limit = op[3]
            return target.create(
                owner,
                label,
                op[2],
                description=description,
                block_type=block_type,
                schema=schema,
                char_limit=char_limit,
                **extra,
            )
        if kind == "update":
            content, description, block_type, schema, char_limit, expected = op[2:]
            return target.update(
                owner,
                label,
                content,
                description=description,
                block_type=block_type,
                schema=schema,
                char_limit=char_limit,
                expected_version=expected,
                **extra,
            )
        if kind == "delete":
            return target.delete(owner, label, expected_version=op[2], **extra)
        return target.rollback(owner, label, self.version_spec(op[1], op[2], op[3]), **extra)

    def model_op(self, op: tuple[Any, ...]) -> tuple[Any, ...]:
        """The op as :func:`plan` sees it: a rollback's version spec resolved to a number."""
        if op[0] != "rollback":
            return op
        key, number, form = op[1], op[2], op[3]
        exists = number <= len(self.versions.get(key, []))
        return ("rollback", key, number if exists or form != "commit" else None)

    def record(
        self,
        before: str | None,
        committed: dict[Key, State | None],
        final: dict[Key, State | None],
        author: str,
        message: str,
    ) -> str | None:
        """Add to the model what one commit changed; check the store wrote exactly that."""
        head = self.store.head()
        changed = sorted(
            k for k in final.keys() | committed.keys() if final.get(k) != committed.get(k)
        )
        if not changed:
            assert head == before, "a change that changed nothing must not commit"
            return None
        assert head is not None and head != before
        info = self.store.read_commit_info(head)
        assert info.parent == before
        assert sorted((c.owner, c.label) for c in info.changes) == changed
        assert info.author == author and info.message == message.rstrip("\n")
        for key in changed:
            self.versions.setdefault(key, []).append(
                Ver(final[key], head, author, message.rstrip("\n"))
            )
        return head

    def expect_error(self, error: type[Exception], act: Callable[[], Any]) -> None:
        before = self.store.head()
        dump = self.ws._index.dump() if self.ws else None
        with pytest.raises(error) as info:
            act()
        assert type(info.value) is error, f"expected exactly {error.__name__}, got {info.value!r}"
        assert self.store.head() == before, "a failed operation moved main"
        assert self.ws is not None and self.ws._index.dump() == dump, (
            "a failed operation changed the index"
        )

    # -- rules ------------------------------------------------------------------------------

    def single(self, op: tuple[Any, ...], author: str, message: str) -> None:
        committed = self.committed_view()
        final = dict(committed)
        error = plan(self.model_op(op), final, self.versions)
        event(f"{op[0]}: {'ok' if error is None else error.__name__}")
        if error is not None:
            self.expect_error(error, lambda: self.run_op(self.store, op, author, message))
            return
        before = self.store.head()
        result = self.run_op(self.store, op, author, message)
        head = self.record(before, committed, final, author, message)
        key = op[1]
        versions = self.versions[key]
        if op[0] == "delete":
            assert result.deleted and result.version == len(versions) and result.commit == head
        else:
            assert state_of(result) == final[key]
            assert result.version == len(versions)
            assert result.commit == versions[-1].commit

    @rule(data=st.data(), author=authors, message=messages)
    def create(self, data: st.DataObject, author: str, message: str) -> None:
        op = (
            "create",
            data.draw(st.sampled_from(KEYS), label="key"),
            data.draw(contents, label="content"),
            (
                data.draw(descriptions),
                data.draw(block_types),
                data.draw(schemas),
                data.draw(char_limits),
            ),
        )
        self.single(op, author, message)

    @rule(data=st.data(), author=authors, message=messages)
    def any_single_op(self, data: st.DataObject, author: str, message: str) -> None:
        self.single(self.draw_op(data), author, message)

    @rule(
        data=st.data(),
        author=authors,
        message=messages,
        size=st.integers(1, 5),
        fail_at=st.none() | st.integers(0, 5),
    )
    def transaction(
        self, data: st.DataObject, author: str, message: str, size: int, fail_at: int | None
    ) -> None:
        committed = self.committed_view()
        staged = dict(committed)
        before = self.store.head()
        dump = self.ws._index.dump() if self.ws else None
        touched: list[Key] = []
        try:
            with self.store.transaction(message, author) as tx:
                for i in range(size):
                    if i == fail_at:
                        raise Boom()
                    # mostly blocks this transaction already touched or the model knows
                    op = self.draw_op(data, prefer=sorted(set(touched) | set(self.versions)))
                    touched.append(op[1])
                    error = plan(self.model_op(op), staged, self.versions)
                    event(f"transaction {op[0]}: {'ok' if error is None else error.__name__}")
                    if error is None:
                        self.run_op(tx, op, author, message)
                    else:
                        with pytest.raises(error):
                            self.run_op(tx, op, author, message)
                    seen = staged.get(op[1])
                    assert tx.exists(*op[1]) == (seen is not None)
                    if seen is not None:
                        content, meta = tx.read(*op[1])
                        assert (
                            State(
                                content,
                                meta.description,
                                meta.block_type.value,
                                meta.schema,
                                meta.char_limit,
                            )
                            == seen
                        )
                if fail_at == size:
                    raise Boom()
        except Boom:
            event("transaction: raised mid-way")
            assert self.store.head() == before, "a transaction that raised wrote a commit"
            assert self.ws is not None and self.ws._index.dump() == dump
            return
        head = self.record(before, committed, staged, author, message)
        event(f"transaction: {'no-op' if head is None else 'committed'}")
        assert tx.result is not None and tx.result.commit == head
        assert tx.result.versions == (
            {}
            if head is None
            else {k: len(vs) for k, vs in self.versions.items() if vs[-1].commit == head}
        )

    @rule(
        data=st.data(),
        kind=st.sampled_from(["commit", "meta", "name", "content"]),
        update=st.booleans(),
    )
    def invalid_request(self, data: st.DataObject, kind: str, update: bool) -> None:
        key = self.pick_key(data)
        current = self.committed_view().get(key)
        store = self.store
        args: dict[str, Any] = {}
        error: type[Exception]
        if kind == "commit":
            args, error = data.draw(st.sampled_from(BAD_COMMITS), label="bad")
        elif kind == "meta":
            args = data.draw(st.sampled_from(BAD_META), label="bad")
            error = BlockNotFound if update and current is None else UsageError
        elif kind == "name":
            name = data.draw(st.sampled_from(BAD_NAMES + LONG_NAMES), label="bad")
            choices = [(name, key[1])] + ([] if name in LONG_NAMES else [(key[0], name)])
            key = data.draw(st.sampled_from(choices), label="which")
            error = InvalidLabel
        else:
            if update:
                error = InvalidContent if current is not None else BlockNotFound
            else:
                error = BlockExists if current is not None else InvalidContent
        content = "lone \udfff surrogate" if kind == "content" else "fine\n"
        event(f"invalid {kind} {'update' if update else 'create'}: {error.__name__}")
        if update:
            self.expect_error(error, lambda: store.update(*key, content, **args))
        else:
            self.expect_error(error, lambda: store.create(*key, content, **args))
        if kind == "name":  # reading a name no block can have is refused the same way
            for read in (store.read, store.history, store.exists, store.diff, store.delete):
                self.expect_error(InvalidLabel, lambda read=read: read(*key))  # type: ignore[misc]
            self.expect_error(InvalidLabel, lambda: store.rollback(*key, 1))
            self.expect_error(InvalidLabel, lambda: store.read(*key, version=1))

    @rule(data=st.data())
    def diff(self, data: st.DataObject) -> None:
        key = self.pick_key(data)
        if key not in self.versions:
            self.expect_error(BlockNotFound, lambda: self.store.diff(*key))
            return
        versions = self.versions[key]
        n = len(versions)
        text = ["" if v.state is None else v.state.content for v in versions]
        if data.draw(st.booleans(), label="defaults"):
            d = self.store.diff(*key)
            a, b = (n - 1 if n > 1 else None), n
        else:
            a, b = (
                data.draw(st.integers(1, n), label="from"),
                data.draw(st.integers(1, n), label="to"),
            )
            spec = data.draw(st.sampled_from(["number", "commit"]), label="spec")
            d = self.store.diff(
                *key,
                a if spec == "number" else versions[a - 1].commit,
                b if spec == "number" else versions[b - 1].commit[:7],
            )
        assert (d.from_version, d.to_version) == (a, b)
        assert d.old == ("" if a is None else text[a - 1])
        assert d.new == text[b - 1]
        assert apply_unified(d.old, d.unified) == d.new
        if len(d.old) + len(d.new) < 2_000:
            ops = d.chars
            assert "".join(s for op, s in ops if op != "insert") == d.old
            assert "".join(s for op, s in ops if op != "delete") == d.new

    # -- after every step -------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        store = self.store
        for key, versions in self.versions.items():
            history = store.history(*key)
            assert [(h.version, h.deleted, h.commit, h.author, h.message) for h in history] == [
                (i, v.state is None, v.commit, v.author, v.message)
                for i, v in enumerate(versions, 1)
            ]
            assert len({h.commit for h in history}) == len(history)
            current = versions[-1].state
            if current is None:
                with pytest.raises(BlockNotFound):
                    store.read(*key)
                assert not store.exists(*key)
            else:
                block = store.read(*key)
                assert state_of(block) == current
                assert (block.version, block.commit) == (len(versions), versions[-1].commit)
            for number, v in enumerate(versions, 1):
                if v.state is None:
                    with pytest.raises(VersionNotFound):
                        store.read(*key, version=number)
                else:
                    old = store.read(*key, version=number)
                    assert state_of(old) == v.state and (old.version, old.commit) == (
                        number,
                        v.commit,
                    )
            with pytest.raises(VersionNotFound):
                store.read(*key, version=len(versions) + 1)
        expected = sorted(
            (key, len(vs), vs[-1].state)
            for key, vs in self.versions.items()
            if vs[-1].state is not None
        )
        listed = [
            (
                (s.owner, s.label),
                s.version,
                s.meta.description,
                s.meta.block_type.value,
                s.meta.schema,
                s.meta.char_limit,
            )
            for s in store.list()
        ]
        assert listed == [
            (key, n, st_.description, st_.block_type, st_.schema, st_.char_limit)
            for key, n, st_ in expected
        ]
        for key in KEYS:
            if key not in self.versions:
                with pytest.raises(BlockNotFound):
                    store.history(*key)

    def teardown(self) -> None:
        try:
            if self.ws is None:
                return
            repo = self.path / "repo"
            assert_git_fsck(repo)
            for key, versions in self.versions.items():
                log = git(repo, "log", "--format=%H", "--", BlockStore.git_path(*key)).split()
                assert log == [v.commit for v in reversed(versions)], key
            report = self.ws.fsck()
            assert report.ok, report.problems
            incremental = self.ws._index.dump()
            self.ws.close()
            self.ws = None
            blocksync.rebuild_index(self.path)
            index = VersionIndex.open(self.path / "index.db")
            try:
                assert index.dump() == incremental
            finally:
                index.close()
        finally:
            if self.ws is not None:
                self.ws.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


BlockStoreMachine.TestCase.settings = settings(
    max_examples=examples(40),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_block_store_matches_model = BlockStoreMachine.TestCase


def test_a_char_limit_can_be_removed_and_is_kept_when_left_out(tmp_path: Path) -> None:
    """``char_limit=None`` is a value (no limit), not "keep": leaving the argument out keeps it."""
    with blocksync.init(tmp_path / "store") as ws:
        ws.blocks.create("alice", "a", "hi", char_limit=5)
        assert ws.blocks.update("alice", "a", "hey").meta.char_limit == 5
        assert ws.blocks.update("alice", "a", char_limit=None).meta.char_limit is None
        assert ws.blocks.update("alice", "a", "a text longer than five").content.startswith("a")
