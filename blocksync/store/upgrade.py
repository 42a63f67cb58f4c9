"""Store formats: which layout a tree is written in, and the one upgrade from format 1 to 2.

Every commit's root says its own format (:data:`~blocksync.store.layout.FORMAT_FILE`; absent:
format 1), so a reader of history -- the version index rebuilt from scratch, a remote merge
whose base is an old commit -- reads each tree in its own layout, and a store written by a
newer blocksync is refused instead of misread.

:func:`upgrade_tree` is a pure function of a format-1 tree: the same tree on every machine
gives the same format-2 tree, with every block folder, conflict record and binding entry kept
as it was (same ids), only moved below its fan-out folders. So the upgrade commit changes no
block (:func:`diff_keys` sees none), and two machines that upgraded the same commit each on
their own hold equal trees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dulwich.objects import Blob, ShaFile
from dulwich.refs import Ref

from blocksync.errors import RepositoryCorrupt, StoreFormatError

from . import layout
from .gitstore import FILE_MODE, TREE_MODE, Entry, GitStore, TreeEditor, tree_of

#: The folders whose entries are keyed by block (and so fanned out by format 2).
KEYED = (layout.BLOCKS, layout.CONFLICTS)
#: The steps of :func:`upgrade_ref` a fault hook is called at (tests kill the process there);
#: :meth:`blocksync.store.blocks.BlockStore.upgrade` adds ``index-updated`` for main.
UPGRADE_FAULT_STEPS = ("objects-written", "ref-moved", "index-updated")

Fault = Callable[[str], None]


def format_blob(format_: int = layout.FORMAT) -> Blob:
    """The blob of the root ``format`` file."""
    return Blob.from_string(layout.format_text(format_))


def format_of(git: GitStore, root: bytes | None) -> int:
    """The store format of the tree ``root`` (None: no tree yet, the format this code writes)."""
    if root is None:
        return layout.FORMAT
    blob = git.lookup(root, layout.FORMAT_FILE)
    if blob is None:
        return layout.OLDEST_FORMAT
    if blob == _CURRENT:
        return layout.FORMAT  # the usual case, without reading the blob
    found = layout.parse_format(git.blob(blob))
    if found is None or found < 2:
        raise RepositoryCorrupt(str(git.path), f"tree {root.decode()} has no valid format file")
    return found


def check_readable(git: GitStore, root: bytes | None, ref: str) -> int:
    """:func:`format_of` ``root``; StoreFormatError if it is newer than this code."""
    found = format_of(git, root)
    if found > layout.FORMAT:
        raise StoreFormatError(
            str(git.path),
            ref,
            found,
            layout.FORMAT,
            f"this blocksync reads store formats up to {layout.FORMAT}: upgrade blocksync "
            "(`pip install -U blocksync`) to open it. Nothing was written.",
        )
    return found


def check_writable(git: GitStore, root: bytes | None, ref: str) -> None:
    """StoreFormatError unless ``root`` is of the format this code writes (writing format-2
    paths into a format-1 tree would mix two layouts)."""
    found = check_readable(git, root, ref)
    if found != layout.FORMAT:
        raise StoreFormatError(
            str(git.path),
            ref,
            found,
            layout.FORMAT,
            f"open the store with blocksync.open (or any blocksync command) to upgrade it to "
            f"format {layout.FORMAT} in place first. Nothing was written.",
        )


def format_entry(root: TreeEditor, objects: list[ShaFile]) -> None:
    """Make a tree being written (of the current format) say so, when it does not yet: the
    first commit of a ref."""
    if root.get(layout.FORMAT_FILE) is None:
        blob = format_blob()
        objects.append(blob)
        root.set(layout.FORMAT_FILE, FILE_MODE, blob.id)


_CURRENT = format_blob().id


# -- the upgrade ----------------------------------------------------------------------------


def upgrade_tree(git: GitStore, root: bytes | None) -> tuple[bytes, list[ShaFile]]:
    """The format-2 tree of the format-1 tree ``root`` and the objects it needs that ``root``
    does not hold (none written): ``blocks/`` and ``conflicts/`` fanned out, a ``format`` file
    added, everything else as it was. A format-2 tree is returned as it is."""
    if root is not None and format_of(git, root) == layout.FORMAT:
        return root, []
    objects: list[ShaFile] = [format_blob()]
    entries: dict[bytes, Entry] = {}
    if root is not None:
        entries = {e.path: (e.mode, bytes(e.sha)) for e in git.tree(root).items()}
    entries[layout.FORMAT_FILE] = (FILE_MODE, objects[0].id)
    for top in KEYED:
        if top in entries:
            folder = git.subtree((top,), entries[top])
            assert folder is not None
            entries[top] = (TREE_MODE, _fan_out(git, top, folder, objects))
    tree = tree_of(entries)
    objects.append(tree)
    return tree.id, objects


def _fan_out(git: GitStore, top: bytes, folder: bytes, objects: list[ShaFile]) -> bytes:
    """The format-2 tree of the format-1 folder ``top`` (``<owner>/<label>`` entries)."""
    owners: dict[bytes, Entry] = {}
    for owner in git.tree(folder).items():
        owner_sha = git.subtree((top, owner.path), (owner.mode, owner.sha))
        assert owner_sha is not None
        nested: dict[tuple[bytes, ...], dict[bytes, Entry]] = {}
        for entry in git.tree(owner_sha).items():
            nested.setdefault(layout.fanout(entry.path), {})[entry.path] = (entry.mode, entry.sha)
        owners[owner.path] = (TREE_MODE, _nest(nested, objects))
    tree = tree_of(owners)
    objects.append(tree)
    return tree.id


def _nest(leaves: dict[tuple[bytes, ...], dict[bytes, Entry]], objects: list[ShaFile]) -> bytes:
    """The tree holding each ``leaves[path]`` (entries by name) at ``path`` below it."""
    level: dict[tuple[bytes, ...], dict[bytes, Entry]] = leaves
    while True:
        up: dict[tuple[bytes, ...], dict[bytes, Entry]] = {}
        for path, entries in sorted(level.items()):
            tree = tree_of(entries)
            objects.append(tree)
            if not path:
                return tree.id
            up.setdefault(path[:-1], {})[path[-1]] = (TREE_MODE, tree.id)
        level = up


def upgrade_ref(git: GitStore, ref: Ref, fault: Fault | None = None) -> bool:
    """Move ``ref`` from a format-1 commit to ONE commit of its upgraded tree, by
    compare-and-swap while holding the ref's writer lock: of two processes upgrading at once
    one wins, the other finds format 2 and does nothing. Whether this call upgraded it."""
    step = fault or (lambda _: None)
    with git.writer_lock(ref):
        for _ in git.attempts(ref):
            head = git.ref(ref)
            root = git.commit_tree(head)
            if head is None or check_readable(git, root, ref.decode()) == layout.FORMAT:
                return False
            new_root, objects = upgrade_tree(git, root)
            commit, more = git.commit_objects(TreeEditor(git, new_root), head, AUTHOR, MESSAGE)
            git.write(objects + more)
            step("objects-written")
            if git.swap_ref(ref, head, commit.id):
                step("ref-moved")
                return True
    raise AssertionError("unreachable: attempts() raises when they run out")


def upgrade_refs(git: GitStore, refs: list[Ref], fault: Fault | None = None) -> list[Ref]:
    """:func:`upgrade_ref` each of ``refs`` (in order), after checking that none is newer than
    this code (then nothing is written at all); the refs this call upgraded."""
    formats = [check_readable(git, git.commit_tree(git.ref(ref)), ref.decode()) for ref in refs]
    # every open comes here: a current ref is read once and its writer lock left alone
    older = [ref for ref, found in zip(refs, formats, strict=True) if found < layout.FORMAT]
    return [ref for ref in older if upgrade_ref(git, ref, fault)]


def refs_under(git: GitStore, prefix: bytes) -> list[Ref]:
    """The refs whose names start with ``prefix`` (e.g. ``refs/sync/``), sorted."""
    return sorted(Ref(prefix + name) for name in git.repo.refs.keys(base=Ref(prefix.rstrip(b"/"))))


AUTHOR = "blocksync"
MESSAGE = (
    f"upgrade to store format {layout.FORMAT}: block folders fanned out by a hash of their "
    "label (blocks/<owner>/<f1>/<f2>/<label>/); no block changed"
)


# -- reading trees of either format ---------------------------------------------------------


def all_keys(git: GitStore, root: bytes | None, top: bytes) -> dict[layout.Key, Entry]:
    """Every entry a block key names below ``top`` of ``root`` (either format), by its
    format-2 key."""
    return {key: now for key, _, now in diff_keys(git, None, root, top) if now is not None}


def diff_keys(
    git: GitStore, old_root: bytes | None, new_root: bytes | None, top: bytes = layout.BLOCKS
) -> Iterator[tuple[layout.Key, Entry | None, Entry | None]]:
    """The block keys (format 2) whose entries below ``top`` differ between the trees
    ``old_root`` and ``new_root``, each of either format, with the entries (None: absent).

    O(what changed) between two trees of one format. Across formats (an upgrade commit), a
    tree that is exactly the upgrade of the other differs in nothing, which one in-memory
    upgrade tells; otherwise both are listed whole."""
    old_format = 1 if old_root is None else check_readable(git, old_root, "tree")
    new_format = 1 if new_root is None else check_readable(git, new_root, "tree")
    old, new = git.lookup(old_root, top), git.lookup(new_root, top)
    if old_root is None or new_root is None or old_format == new_format:
        same = new_format if old_root is None else old_format
        upgrade = layout.upgrade_key if same == 1 else None
        for key, was, now in git.diff_trees(old, new, layout.key_depth(same)):
            yield (upgrade(key) if upgrade else key), was, now
        return
    if (
        old_format == 1
        and new is not None
        and old is not None
        and _fan_out(git, top, old, []) == new
    ):
        return
    before, after = all_keys(git, old_root, top), all_keys(git, new_root, top)
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            yield key, before.get(key), after.get(key)
