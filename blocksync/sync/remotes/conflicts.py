"""Open remote conflicts recorded in the tree that travels: ``conflicts/<owner>/<label>/``.

A conflict a pull finds is written into the merge commit's tree beside the blocks, so every
machine that pulls that commit sees it open too, and none takes the side the block holds as
settled (jj keeps conflicts inside commits the same way). A record is a stack of *layers*,
each one side still waiting to be chosen against what the block holds::

    conflicts/<owner>/<f1>/<f2>/<label>/1/base     the content both sides came from (absent: none)
    conflicts/<owner>/<f1>/<f2>/<label>/1/other    the side the block does not hold (absent: deleted)
    conflicts/<owner>/<f1>/<f2>/<label>/1/reason   why it is a conflict, one line of text
    conflicts/<owner>/<f1>/<f2>/<label>/2/...      a further waiting side, raised once 1 is resolved

``base`` and ``other`` are the blobs of block contents already in history: nothing is copied.
The side the block holds is the block folder of the same commit, and is not stored again: a
copy would go stale as soon as someone edits the block while it is in conflict. Names are the
block's own path components, fan-out folders included (:func:`blocksync.store.layout.record_path`),
so a record sits where its
block does; the record of a long label keeps the whole label beside its layers (``label``), as
the block folder does, since the block may be absent on the side that holds it.

Merging records (:func:`merge`) treats the layers of a record as a set, three-way: a layer both
sides still hold stays, one a side dropped (resolved) goes, one new on either side comes in. A
new conflict is put on top of what is left, so no waiting side is ever lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dulwich.objects import Blob, ObjectID, ShaFile, Tree

from blocksync.store import blocks, layout
from blocksync.store.gitstore import FILE_MODE, TREE_MODE, GitStore
from blocksync.store.upgrade import all_keys

CONFLICTS_DIR = layout.CONFLICTS
BASE_FILE, OTHER_FILE, REASON_FILE = b"base", b"other", b"reason"
_LAYER_FILES = frozenset({BASE_FILE, OTHER_FILE, REASON_FILE})

Key = layout.Key  # a block's names below conflicts/ (and blocks/): owner, fan-out, label


@dataclass(frozen=True)
class Layer:
    """One waiting side: the blob ids of its base and its content (None: absent)."""

    base: bytes | None
    other: bytes | None
    reason: str = field(compare=False)


def path_of(key: Key) -> tuple[bytes, ...]:
    return layout.key_path(CONFLICTS_DIR, key)


def read(git: GitStore, record: bytes | None) -> list[Layer]:
    """The layers of the record tree ``record`` (none: no record), first to resolve first."""
    if record is None:
        return []
    layers = []
    tree = git.tree(record)
    for number in range(1, len(tree) + 1 - (layout.LABEL_FILE in tree)):
        files = {e.path: bytes(e.sha) for e in git.tree(tree[str(number).encode()][1]).items()}
        reason = git.blob(files[REASON_FILE]).decode("utf-8", "replace")
        layers.append(Layer(files.get(BASE_FILE), files.get(OTHER_FILE), reason))
    return layers


def write(layers: Iterable[Layer], label: bytes | None) -> tuple[bytes | None, list[ShaFile]]:
    """The record tree of ``layers`` (None when there are none) and the new objects it needs
    (the base and other blobs, and ``label``, the blob of a long label kept beside the layers,
    are in the repository already)."""
    objects: list[ShaFile] = []
    record = Tree()
    for number, layer in enumerate(layers, start=1):
        reason = Blob.from_string(layer.reason.encode("utf-8"))
        folder = Tree()
        folder.add(REASON_FILE, FILE_MODE, reason.id)
        for name, blob in ((BASE_FILE, layer.base), (OTHER_FILE, layer.other)):
            if blob is not None:
                folder.add(name, FILE_MODE, ObjectID(blob))
        record.add(str(number).encode(), TREE_MODE, folder.id)
        objects += [reason, folder]
    if not objects:
        return None, []
    if label is not None:
        record.add(layout.LABEL_FILE, FILE_MODE, ObjectID(label))
    objects.append(record)
    return bytes(record.id), objects


def all_records(git: GitStore, root: bytes | None) -> dict[Key, bytes]:
    """Every record in the commit tree ``root``, by block key."""
    return {key: entry[1] for key, entry in all_keys(git, root, CONFLICTS_DIR).items()}


def merge(
    base: list[Layer], ours: list[Layer], theirs: list[Layer]
) -> tuple[list[Layer], list[Layer]]:
    """(the layers still waiting, the base layers both sides resolved) of a three-way merge."""
    waiting = [
        layer for layer in ours + theirs if layer not in base or (layer in ours and layer in theirs)
    ]
    settled = [layer for layer in base if layer not in ours and layer not in theirs]
    return waiting, settled


def stack(layers: Iterable[Layer], held: bytes | None) -> list[Layer]:
    """``layers`` without repeats of one waiting side, nor the side the block holds (``held``,
    the blob of its content; None: the block is absent)."""
    out: list[Layer] = []
    for layer in layers:
        if layer.other != held and all(layer.other != kept.other for kept in out):
            out.append(layer)
    return out


def record_problem(
    get: Callable[[ObjectID], ShaFile], owner: bytes, label: bytes, mode: int, sha: ObjectID
) -> str | None:
    """Why the entry ``label`` of ``conflicts/<owner>/`` is no record (None: it is one)."""
    record = get(sha)
    if mode != TREE_MODE or not isinstance(record, Tree):
        return "is not a folder of layers"
    problem = blocks.name_problem(get, owner, label, record)
    if problem is not None:
        return problem
    beside = layout.beside(label)
    numbered = {str(n).encode() for n in range(1, len(record) + 1 - len(beside))}
    if not numbered or {e.path for e in record.items()} != numbered | beside:
        return "must hold layers numbered 1, 2, ..."
    for layer in record.items():
        if layer.path in beside:
            continue
        folder = get(layer.sha)
        if layer.mode != TREE_MODE or not isinstance(folder, Tree):
            return f"layer {layer.path.decode()} is not a folder"
        files = {e.path: e for e in folder.items()}
        if REASON_FILE not in files or not set(files) <= _LAYER_FILES:
            return f"layer {layer.path.decode()} must hold a reason, and a base and other at most"
        for entry in files.values():
            blob = get(entry.sha)
            if entry.mode != FILE_MODE or not isinstance(blob, Blob):
                return f"layer {layer.path.decode()}: {entry.path.decode()} is not a plain file"
            try:
                blob.as_raw_string().decode("utf-8")
            except UnicodeDecodeError:
                return f"layer {layer.path.decode()}: {entry.path.decode()} is not UTF-8 text"
    return None
