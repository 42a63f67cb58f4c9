"""Merging two mains' trees per block, through the truth table (:func:`blocksync.shared.truth.decide`).

A pull whose remote main cannot be fast-forwarded to makes a merge commit, parents ``[local,
remote]``, whose tree merges PER BLOCK with reconcile's three-way rules, base = the block in the
merge base commit: one side changed -> that side; both changed -> identical, or a clean ``merge3``
line merge, else a conflict (overlap, delete vs modify, both created without a base) that keeps
the local side in the block and records the remote side beside it, in the merge commit
(:mod:`blocksync.sync.remotes.conflicts`). Records merge three-way as well (see
:mod:`blocksync.sync.remotes.source`, "Conflicts travel"). A host block (label under
``blocksync:``, such as an agent's ``blocksync:conflicts``) both sides changed keeps the local
one, never a conflict: it is a view of this machine's state, rewritten right after the pull.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from dulwich.objects import Blob, Commit, ShaFile

from blocksync import names
from blocksync.errors import RepositoryCorrupt
from blocksync.shared.truth import READ_WRITE, Action, decide
from blocksync.store import layout, provenance
from blocksync.store.blocks import BlockMeta
from blocksync.store.gitstore import TREE_MODE, GitStore, TreeEditor
from blocksync.store.merge import merge3
from blocksync.store.upgrade import check_readable, diff_keys

from . import conflicts as records

Key = layout.Key

BLOCKS_KEY = layout.BLOCKS


class Value(NamedTuple):
    """A block's state in one commit: its folder and its conflict record (None: absent)."""

    folder: bytes | None
    record: bytes | None


class Folder(NamedTuple):
    """The blobs of a block folder."""

    content: bytes
    meta: bytes


@dataclass(frozen=True)
class BlockSides:
    """A block's folder in the merge base, here and on the remote (None: no block there)."""

    base: Folder | None
    mine: Folder | None
    yours: Folder | None


def _content(folder: Folder | None) -> bytes | None:
    return None if folder is None else folder.content


def _id(folder: Folder | None) -> str | None:
    """A side's content as the truth table compares it: its blob id."""
    return None if folder is None else folder.content.decode()


@dataclass
class Plan:
    """What a merge changes: new block folders and records by block, the objects they need, and
    (path, "remote"/"merged") of every block that came from the remote."""

    edits: dict[Key, Value] = field(default_factory=dict)
    objects: list[ShaFile] = field(default_factory=list)
    merged: list[tuple[str, str]] = field(default_factory=list)


class TreeMerge:
    """Merges commits of one git store block by block."""

    def __init__(self, git: GitStore, author: str) -> None:
        self.git = git
        self.author = author

    def value(self, commit: bytes | None, key: Key) -> Value:
        """The block ``key`` (format 2) in ``commit``, which may be of format 1 (a merge base
        from before both sides upgraded): read in its own layout."""
        root = self.git.commit_tree(commit)
        if root is not None and check_readable(self.git, root, "merge base") == 1:
            key = (key[0], key[-1])
        block = self.git.lookup(root, *layout.key_path(BLOCKS_KEY, key))
        return Value(block, self.git.lookup(root, *records.path_of(key)))

    def diff(self, old: bytes | None, new: bytes | None, top: bytes = BLOCKS_KEY) -> Iterator[Key]:
        """The keys (format 2) of every block folder (or record, ``top``: conflicts/) that
        differs between commits ``old`` and ``new`` (either of either format: a merge base
        from before an upgrade is compared as the upgrade would have it)."""
        git = self.git
        for key, _, _ in diff_keys(git, git.commit_tree(old), git.commit_tree(new), top):
            yield key

    def plan(self, ours: bytes, theirs: bytes, bases: list[bytes]) -> Plan:
        """What merging ``theirs`` into ``ours`` changes, over their merge ``bases``: a block
        only one side changed takes that side; one both changed is merged."""
        candidates: set[Key] = set()
        for commit in bases:
            for name in (BLOCKS_KEY, records.CONFLICTS_DIR):
                candidates.update(self.diff(commit, theirs, name))
        plan = Plan()
        for key in sorted(candidates):
            mine, yours = self.value(ours, key), self.value(theirs, key)
            if mine == yours:
                continue
            base = _pick_base([self.value(commit, key) for commit in bases], mine, yours)
            if mine == base:
                plan.edits[key] = yours
                if yours.record is None:
                    plan.merged.append((key_path(key), "remote"))
            elif yours != base and not _host_block(key):
                self._merge_path(key, base, mine, yours, plan)
            # a host block both changed keeps this machine's: a view of this machine's
            # conflict index (blocksync.agents.conflict_block), rewritten after the pull
        return plan

    def _merge_path(self, key: Key, base: Value, mine: Value, yours: Value, plan: Plan) -> None:
        """Both sides changed the block or its record: merge the block, and stack every side
        still waiting (a new conflict on top) in the record (see :mod:`remote_conflicts`)."""
        waiting, settled = records.merge(
            *(records.read(self.git, v.record) for v in (base, mine, yours))
        )
        mine_content, yours_content = self.content(mine.folder), self.content(yours.folder)
        if settled and mine_content != yours_content:
            # both resolved a conflict, each its own way: the choices are a conflict in turn
            folder, held = mine.folder, mine_content
            new: records.Layer | None = records.Layer(
                settled[0].base, yours_content, "resolved differently here and on the remote"
            )
        else:
            folder, held, new = self._merge_block(base.folder, mine.folder, yours.folder, plan)
        layers = records.stack(([new] if new else []) + waiting, held)
        record, objects = records.write(layers, self._label_blob(key, (base, mine, yours)))
        plan.objects += objects
        if Value(folder, record) == mine:
            return
        plan.edits[key] = Value(folder, record)
        if not layers and folder != mine.folder:
            plan.merged.append((key_path(key), "merged"))

    def _merge_block(
        self,
        base: bytes | None,
        mine: bytes | None,
        yours: bytes | None,
        plan: Plan,
    ) -> tuple[bytes | None, bytes | None, records.Layer | None]:
        """The block folder a merge keeps, its content blob, and the conflict it found (None: a
        clean merge). A conflict keeps the local side; the remote's waits in the record.

        The contents go through the truth table as their blob ids (equal ids, equal texts), the
        remote as its "disk" and this store as its "agent", under read-write: a deletion is
        never taken from either side here, and only overlapping edits need resolution."""
        sides = BlockSides(self._folder(base), self._folder(mine), self._folder(yours))
        held = None if sides.mine is None else sides.mine.content

        def conflict(reason: str) -> tuple[bytes | None, bytes | None, records.Layer]:
            return mine, held, records.Layer(_content(sides.base), _content(sides.yours), reason)

        if (sides.mine is None) != (sides.yours is None):
            # both sides changed the path (block or record), one by deleting the block: even
            # with no block in the base (the table's creation) that is delete against change
            return conflict(
                "deleted here, changed on the remote"
                if sides.mine is None
                else "deleted on the remote, changed here"
            )
        overlaps: list[int] = []

        def merge(base_id: str, yours_id: str, mine_id: str) -> str | None:
            merged = merge3(*(self._text(sha.encode()) for sha in (base_id, mine_id, yours_id)))
            if merged.text is None:
                overlaps.append(merged.conflicts)
                return None
            blob = Blob.from_string(merged.text.encode("utf-8"))
            plan.objects.append(blob)
            return blob.id.decode()

        decision = decide(_id(sides.base), _id(sides.yours), _id(sides.mine), READ_WRITE, merge)
        if decision.action is Action.CONFLICT:
            return conflict(
                "created here and on the remote with different content"
                if sides.base is None
                else f"both changed, {overlaps[0]} overlapping region(s)"
            )
        if decision.content is None or sides.mine is None or sides.yours is None:
            return None, None, None  # deleted on both sides
        content = decision.content.encode()
        # the merged metadata may be a blob not written yet: its limit comes from the merge
        meta, merged_meta = self._merge_meta(
            None if sides.base is None else sides.base.meta, sides.mine.meta, sides.yours.meta, plan
        )
        limit = merged_meta.char_limit
        if limit is not None and len(self._text(content)) > limit:
            return conflict(f"the merged content is over the block's char_limit of {limit}")
        assert mine is not None
        kept = self.git.tree(mine)  # a long label's, kept whole beside
        label = kept[layout.LABEL_FILE][1] if layout.LABEL_FILE in kept else None
        folder = layout.block_folder(content, meta, label)
        if folder.id != mine:
            plan.objects.append(folder)
        return bytes(folder.id), content, None

    def _merge_meta(
        self, base: bytes | None, mine: bytes, yours: bytes, plan: Plan
    ) -> tuple[bytes, BlockMeta]:
        """Metadata merged field by field (a field both sides changed differently keeps ours):
        its blob, maybe a new one only in ``plan.objects`` yet, and what it says."""
        if mine == yours or yours == base or mine == base:
            kept = yours if mine == base else mine
            return kept, BlockMeta.from_json(self.git.blob(kept))
        docs = [json.loads(self.git.blob(s)) if s is not None else {} for s in (base, mine, yours)]
        out = dict(docs[1])
        for name, value in docs[2].items():
            if docs[1].get(name) == docs[0].get(name):
                out[name] = value
        meta = BlockMeta.from_json(json.dumps(out).encode())
        blob = Blob.from_string(meta.to_json())
        plan.objects.append(blob)
        return bytes(blob.id), meta

    def _folder(self, sha: bytes | None) -> Folder | None:
        if sha is None:
            return None
        tree = self.git.tree(sha)
        return Folder(bytes(tree[layout.CONTENT_FILE][1]), bytes(tree[layout.META_FILE][1]))

    def _label_blob(self, key: Key, values: Iterable[Value]) -> bytes | None:
        """The blob of a long label's whole text (None: the label is not long), from a block
        folder or record that keeps it beside."""
        if not layout.is_long(key[-1]):
            return None
        for sha in (sha for value in values for sha in value if sha is not None):
            if layout.LABEL_FILE in (tree := self.git.tree(sha)):
                return bytes(tree[layout.LABEL_FILE][1])
        raise RepositoryCorrupt(str(self.git.path), f"no folder keeps the label of {key_path(key)}")

    def content(self, folder: bytes | None) -> bytes | None:
        """The content blob of a block folder (None: no block)."""
        return _content(self._folder(folder))

    def _text(self, blob: bytes) -> str:
        return self.git.blob(blob).decode("utf-8", "surrogateescape")

    def maybe_text(self, blob: bytes | None) -> str | None:
        return None if blob is None else self._text(blob)

    def commit(self, remote: str, ours: bytes, theirs: bytes, plan: Plan) -> Commit:
        """The merge commit of ``plan``, parents ``[ours, theirs]``, written."""
        root = TreeEditor(self.git, self.git.commit_tree(ours))
        for key, (folder, record) in plan.edits.items():
            for top, sha in ((BLOCKS_KEY, folder), (layout.CONFLICTS, record)):
                root.put(layout.key_path(top, key), None if sha is None else (TREE_MODE, sha))
        waiting = sum(1 for _, record in plan.edits.values() if record is not None)
        counts = f"{len(plan.merged)} block(s) from the remote, {waiting} in conflict"
        message = f"merge remote {remote} ({counts})"
        commit, objects = self.git.commit_objects(
            root, [ours, theirs], self.author, message, provenance.remote(remote)
        )
        self.git.write(plan.objects + objects)
        return commit


V = TypeVar("V")


def _pick_base(candidates: list[V], mine: V, yours: V) -> V:
    """The base of a block when there are several merge bases: the one all agree on, else one
    a side still holds (the other side changed it), else the first."""
    if len(set(candidates)) == 1:
        return candidates[0]
    for sha in candidates:
        if sha == mine or sha == yours:
            return sha
    return candidates[0]


_HOST_COMPONENT = names.encode(names.HOST_LABEL_PREFIX).encode()


def _host_block(key: Key) -> bool:
    """Whether ``key`` is a block of the host's own (its label under ``blocksync:``)."""
    return key[-1].startswith(_HOST_COMPONENT)


def key_path(key: Key) -> str:
    """A block as conflict rows name it: ``<owner>/<label>`` (components encoded as in git,
    without the fan-out folders)."""
    return f"{key[0].decode()}/{key[-1].decode()}"


__all__ = ["BLOCKS_KEY", "BlockSides", "Folder", "Plan", "TreeMerge", "Value", "key_path"]
