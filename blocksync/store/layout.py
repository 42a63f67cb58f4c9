"""Where blocks and sync bases sit in a commit's tree: the one module that encodes their folders.

The block store (``refs/heads/main``), store format 2::

    format                                  "2\n": the layout this tree is written in
    blocks/<owner>/<f1>/<f2>/<label>/content   the block's text
    blocks/<owner>/<f1>/<f2>/<label>/meta.json description, block_type, schema, char_limit
    blocks/<owner>/<f1>/<f2>/<label>/label     the whole label, when too long for a component
    conflicts/<owner>/<f1>/<f2>/<label>/       a remote's record of the block's open conflict

``<f1>/<f2>`` fan the blocks of an owner out (:func:`fanout`): the first two and the next two
hex digits of the sha256 of the ``<label>`` component. Without them every commit rewrote (and
every reader re-read) a tree with one entry per block of the owner -- ~0.5 MB per update at
20,000 blocks; with two levels of at most 256 entries a single update rewrites a handful of
small trees (~13 KiB at 100,000 blocks), whatever the owner's size.

The sync bases of one source (``refs/sync/<source>``)::

    format                                  as in main
    bases/<h[:2]>/<h>/base                  the base text, verbatim (h: sha256 of the path, hex)
    bases/<h[:2]>/<h>/binding.json          {"label": ..., "owner": ..., "path": ...}
    blocks/<owner>/<f1>/<f2>/<label>        the same binding.json blob: which path the block mirrors

``<owner>`` and ``<label>`` are encoded by :mod:`blocksync.names`, so ``git log --
<git_path(owner, label)>`` lists exactly a block's versions. A label may be as long as a file's
path in a folder (:data:`~blocksync.names.MAX_LABEL_BYTES`), far longer than one component may
be (255 bytes on most file systems; 33 Japanese characters encode to 297). Such a label's
component (:func:`label_component`) is a readable head of its encoding, ``~`` (never part of an
encoding) and 40 hex digits of the label's sha256; the whole label is kept beside it (a block
folder's ``label`` file, a binding's ``binding.json``), which keeps the mapping reversible, and
is checked against the hash when read (:func:`check_long_label`).

Format 1 (no ``format`` file at the root) had no fan-out: ``blocks/<owner>/<label>/``, the same
for ``conflicts/`` and a bases ref's ``blocks/``. Every commit says its own format, so history
written before an upgrade is read in its own layout (:func:`upgrade_key` maps its keys);
:mod:`blocksync.store.upgrade` turns a format-1 tree into a format-2 one.

Every other module asks this one for paths and names: a change of layout is a change of this
module (and of the upgrade that goes with it) only.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from dulwich.objects import ObjectID, Tree

from blocksync import names
from blocksync.errors import InvalidLabel

#: The folder of blocks (in main) and of the bindings by block (in a source's bases).
BLOCKS = b"blocks"
#: The one other folder main's tree holds: open conflicts between machines, recorded beside
#: the blocks (:mod:`blocksync.sync.remotes.conflicts`); no block, and never read as one.
CONFLICTS = b"conflicts"
#: The folder of a source's bases, by the hash of each path.
BASES = b"bases"
#: the mode of a file in a tree (git's 100644), as every folder here holds them
FILE_MODE = 0o100644
#: The files of a block folder.
CONTENT_FILE = b"content"
META_FILE = b"meta.json"
#: the whole label of a block whose label is too long for one path component
LABEL_FILE = b"label"
#: The files of a base folder.
BASE_FILE = b"base"
BINDING_FILE = b"binding.json"

#: The file at the root of a tree that names its layout (absent: format 1).
FORMAT_FILE = b"format"
#: The store format this code writes (and the newest it reads).
FORMAT = 2
#: The formats this code reads (and upgrades from).
OLDEST_FORMAT = 1

#: The names of one block's folder below ``blocks/`` (or its record's below ``conflicts/``):
#: ``(owner, f1, f2, label)``; ``key[0]`` is the owner's, ``key[-1]`` the label's component.
Key = tuple[bytes, ...]
#: How many names a :data:`Key` has: the depth of a block folder below ``blocks/``.
KEY_DEPTH = 4
#: The depth of a block folder below ``blocks/`` in a format-1 tree: ``(owner, label)``.
V1_KEY_DEPTH = 2
#: hex digits of each fan-out level (two levels of at most 16**2 = 256 entries)
_FANOUT = ((0, 2), (2, 4))
#: How many names a base folder sits below ``bases/``.
BASE_DEPTH = 2

#: Marks the component of a long label named by its hash (see :func:`label_component`).
HASHED = "~"
_HEAD_BYTES = 200


# -- blocks ---------------------------------------------------------------------------------


def label_component(label: str) -> str:
    """The one path component of ``label``: its encoding when that fits in
    :data:`~blocksync.names.MAX_COMPONENT_BYTES`, else a head of it, ``~`` and 40 hex digits of
    its sha256 (the whole label is then stored beside it)."""
    encoded = names.encode(label)
    if len(encoded) <= names.MAX_COMPONENT_BYTES:
        return encoded
    head = encoded[:_HEAD_BYTES]
    escape = head.rfind("%", len(head) - 2)
    if escape != -1:
        head = head[:escape]  # never half an escape
    return f"{head}{HASHED}{hashlib.sha256(label.encode('utf-8')).hexdigest()[:40]}"


def is_long(component: str | bytes) -> bool:
    """Does ``component`` name a long label by its hash (the label is stored beside it)?"""
    if isinstance(component, bytes):
        return HASHED.encode() in component
    return HASHED in component


def check_long_label(found: str | bytes, label: str) -> str:
    """``label``, read from beside the hashed component ``found``, if it is the label that
    component names; InvalidLabel otherwise (a damaged or forged folder)."""
    expected = found.decode("ascii", "replace") if isinstance(found, bytes) else found
    names.validate(label, "label")
    if label_component(label) != expected:
        raise InvalidLabel(label, f"it is not the label path component {expected!r} names")
    return label


def fanout(component: bytes) -> tuple[bytes, ...]:
    """The fan-out folders of a block whose label component is ``component``: hex digits of
    its sha256 (a component, not the label, so a folder's own name says where it belongs)."""
    digest = hashlib.sha256(component).hexdigest().encode("ascii")
    return tuple(digest[start:end] for start, end in _FANOUT)


@functools.lru_cache(maxsize=4096)  # a batch computes each block's key several times
def block_key(owner: str, label: str) -> Key:
    """The names of block (owner, label)'s folder below ``blocks/``."""
    component = label_component(label).encode()
    return names.encode(owner).encode(), *fanout(component), component


def upgrade_key(key: Key) -> Key:
    """The format-2 key of a format-1 key ``(owner, label)``."""
    owner, component = key
    return owner, *fanout(component), component


def key_depth(format_: int) -> int:
    """How many names a block folder sits below ``blocks/`` in a tree of format ``format_``."""
    return V1_KEY_DEPTH if format_ == 1 else KEY_DEPTH


def format_text(format_: int = FORMAT) -> bytes:
    """The content of the root ``format`` file of a tree of that format."""
    return b"%d\n" % format_


def parse_format(data: bytes) -> int | None:
    """The format a root ``format`` file's content names (None: no format number)."""
    text = data.decode("ascii", "replace")
    if not text.endswith("\n") or not text[:-1].isdigit() or len(text) > 8:
        return None
    return int(text[:-1])


def block_path(owner: str, label: str) -> tuple[bytes, ...]:
    """The block's folder from the root of a commit's tree (main), or its binding (bases)."""
    return (BLOCKS, *block_key(owner, label))


def record_path(owner: str, label: str) -> tuple[bytes, ...]:
    """Where the record of a block's open remote conflict sits: beside its folder, under
    ``conflicts/`` instead of ``blocks/``."""
    return (CONFLICTS, *block_key(owner, label))


def key_path(folder: bytes, key: Key) -> tuple[bytes, ...]:
    """The path of ``key`` below ``folder`` (:data:`BLOCKS` or :data:`CONFLICTS`)."""
    return (folder, *key)


def git_path(owner: str, label: str) -> str:
    """The block's folder in the repository, as ``git log -- <path>`` wants it."""
    return "/".join(name.decode("ascii") for name in block_path(owner, label))


def shown(path: tuple[bytes, ...]) -> str:
    """A path of the tree as messages show it."""
    return "/".join(name.decode("utf-8", "backslashreplace") for name in path)


def owner_of(key: tuple[bytes, ...]) -> str:
    """The owner a block folder's key (its names below ``blocks/``) names."""
    return names.decode(key[0])


def key_problem(key: Key) -> str | None:
    """Why ``key`` (names below ``blocks/`` or ``conflicts/`` of a format-2 tree) is not where
    its label component belongs (None: it is)."""
    if len(key) != KEY_DEPTH or tuple(key[1:-1]) != fanout(key[-1]):
        return f"is not in its fan-out folder {b'/'.join(fanout(key[-1])).decode()}"
    return None


def label_of(component: bytes, whole: Callable[[], str]) -> str:
    """The label a block folder's last name ``component`` names; a long label's is ``whole()``
    (its ``label`` file, read only then), checked against the component's hash."""
    if not is_long(component):
        return names.decode(component)
    return check_long_label(component, whole())


def block_folder(content: bytes, meta: bytes, label: bytes | None) -> Tree:
    """The folder of a block whose content, metadata and (a long label's) whole label are the
    blobs of those ids (``label``: None for a label its component spells out)."""
    folder = Tree()
    folder.add(CONTENT_FILE, FILE_MODE, ObjectID(content))
    folder.add(META_FILE, FILE_MODE, ObjectID(meta))
    if label is not None:
        folder.add(LABEL_FILE, FILE_MODE, ObjectID(label))
    return folder


def block_files(component: bytes) -> frozenset[bytes]:
    """The files the block folder named ``component`` holds, exactly."""
    return frozenset({CONTENT_FILE, META_FILE} | ({LABEL_FILE} if is_long(component) else set()))


def beside(component: bytes) -> frozenset[bytes]:
    """What a block's record of a conflict keeps beside its layers: the long label's file."""
    return frozenset({LABEL_FILE} if is_long(component) else set())


# -- bases ----------------------------------------------------------------------------------


def path_key(path: bytes) -> bytes:
    """The tree name of a source path (its UTF-8 bytes): its sha256, hex."""
    return hashlib.sha256(path).hexdigest().encode("ascii")


def base_path(path: bytes) -> tuple[bytes, bytes, bytes]:
    """The folder of a source path's base (its UTF-8 bytes) from the root of the tree."""
    key = path_key(path)
    return BASES, key[:2], key


def base_folder(base_blob: bytes, binding_blob: bytes) -> Tree:
    """The folder of a source path's base holding those two blobs (hex ids)."""
    tree = Tree.from_raw_string(Tree.type_num, base_folder_raw(base_blob, binding_blob))
    assert isinstance(tree, Tree)
    return tree


def base_folder_raw(base_blob: bytes, binding_blob: bytes) -> bytes:
    """The raw git tree of a base folder holding those two blobs (hex ids): ``base`` sorts
    before ``binding.json``."""
    return b"".join(
        [
            b"100644 ",
            BASE_FILE,
            b"\0",
            bytes.fromhex(base_blob.decode("ascii")),
            b"100644 ",
            BINDING_FILE,
            b"\0",
            bytes.fromhex(binding_blob.decode("ascii")),
        ]
    )
