"""What a pull accepts: every commit it would bring must hold what this store can read.

A remote is another machine's word, not ours: a commit whose block is not UTF-8, whose
``meta.json`` is no block's metadata, whose folder name is not canonical (or decodes to
``..``), whose root holds anything but ``blocks/``, ``conflicts/`` and the ``format`` file, or
whose block sits outside its fan-out folder would, once main moved
onto it, fail ``block list`` for the whole store (or worse). :func:`fetched_problems` checks
every commit the fetch brought -- each against its first parent, so a commit costs what it
changed, and a folder checked once is not checked again -- before anything is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from dulwich.objects import Blob, ObjectID, ShaFile, Tree

from blocksync.errors import RepositoryCorrupt
from blocksync.store import layout
from blocksync.store.gitstore import FILE_MODE, TREE_MODE, GitStore

#: Problems listed before the check stops (one is enough to refuse; a few help to see why).
MAX_PROBLEMS = 5

#: Why the entry ``<folder>/<owner>/.../<name>`` (its mode and id) is not what that folder holds
#: (None: it is): ``check(get, owner, name, mode, id)``, ``get`` reading an object by id.
Check = Callable[[Callable[[ObjectID], ShaFile], bytes, bytes, int, ObjectID], str | None]


def fetched_problems(
    git: GitStore, head: bytes, known: set[bytes], folders: Mapping[bytes, Check]
) -> list[str]:
    """Why the commits reachable from ``head`` but not in ``known`` (the local history) must not
    be applied: one ``<path> <problem> (commit <id>)`` per problem; empty when they may.
    ``folders``: the folders a commit may hold at its root, each with the check of what is in
    its ``<owner>/`` folders."""
    problems: list[str] = []
    checked: set[tuple[bytes, bytes]] = set()  # (folder kind, tree id) found sound
    todo, seen = [head], {head}
    while todo and len(problems) < MAX_PROBLEMS:
        sha = todo.pop()
        if sha in known:
            continue
        where = f"(commit {sha.decode()[:12]})"
        try:
            commit = git.commit(sha)
            parent = git.commit_tree(bytes(commit.parents[0])) if commit.parents else None
            found = list(_commit_problems(git, parent, bytes(commit.tree), folders, checked))
        except RepositoryCorrupt as exc:  # a pack without every object it names
            found = [("", f"cannot be read: {exc}")]
            commit = None
        problems += [f"{path} {why} {where}".lstrip() for path, why in found]
        for p in commit.parents if commit is not None else ():
            if bytes(p) not in seen:
                seen.add(bytes(p))
                todo.append(bytes(p))
    return problems[:MAX_PROBLEMS]


def _commit_problems(
    git: GitStore,
    old: bytes | None,
    new: bytes,
    folders: Mapping[bytes, Check],
    checked: set[tuple[bytes, bytes]],
) -> Iterator[tuple[str, str]]:
    before, after = _entries(git, old), _entries(git, new)
    format_, problem = _format(git, after)
    if problem is not None:
        yield shown(layout.FORMAT_FILE), problem
        return
    for name, (mode, sha) in _changed(before, after):
        if name == layout.FORMAT_FILE:
            continue  # checked above
        if name not in folders:
            known = " and ".join(f"{shown(f)}/" for f in folders)
            yield shown(name), f"is not part of a blocksync store (only {known} are)"
        elif mode != TREE_MODE:
            yield shown(name), "is not a folder"
        else:
            old_folder = before.get(name, (0, None))[1]
            check = _Walk(git, folders[name], format_, checked)
            yield from check.folder((name,), old_folder, sha)


def _format(git: GitStore, root: Entries) -> tuple[int, str | None]:
    """The store format a commit's root entries say, and why it is no format this code reads
    (None: it is one)."""
    if layout.FORMAT_FILE not in root:
        return layout.OLDEST_FORMAT, None
    mode, sha = root[layout.FORMAT_FILE]
    blob = None if sha is None else git.object(sha)
    found = layout.parse_format(blob.as_raw_string()) if isinstance(blob, Blob) else None
    if mode != FILE_MODE or found is None or not layout.OLDEST_FORMAT < found <= layout.FORMAT:
        return 0, f"names no store format this blocksync reads (up to {layout.FORMAT})"
    return found, None


class _Walk:
    """Checks the entries below one folder of a commit (``blocks/``, ``conflicts/``) down to
    the depth of its store format, against the same folder of its parent."""

    def __init__(
        self, git: GitStore, check: Check, format_: int, checked: set[tuple[bytes, bytes]]
    ) -> None:
        self.git, self.check, self.checked = git, check, checked
        self.format, self.depth = format_, layout.key_depth(format_)

    def folder(
        self, path: tuple[bytes, ...], old: bytes | None, new: bytes
    ) -> Iterator[tuple[str, str]]:
        before = _entries(self.git, old)
        for name, (mode, sha) in _changed(before, _entries(self.git, new)):
            where = (*path, name)
            if len(where) > self.depth:
                yield from self.entry(where, mode, sha)
            elif mode != TREE_MODE or not isinstance(self.git.object(sha), Tree):
                yield "/".join(map(shown, where)), "is not a folder"
            else:
                yield from self.folder(where, before.get(name, (0, None))[1], sha)

    def entry(self, where: tuple[bytes, ...], mode: int, sha: bytes) -> Iterator[tuple[str, str]]:
        """The entry of a block folder (or record) at ``where``, whose names below its
        folder are its key."""
        kind, key = where[0], where[1:]
        if (kind, sha) in self.checked:
            return
        problem = None if self.format == 1 else layout.key_problem(key)
        if problem is None:
            problem = self.check(self.git.object, key[0], key[-1], mode, ObjectID(sha))
        if problem is None:
            self.checked.add((kind, sha))
        else:
            yield "/".join(map(shown, where)), problem


Entries = dict[bytes, tuple[int, bytes | None]]


def _entries(git: GitStore, sha: bytes | None) -> Entries:
    """name -> (mode, id) of the tree ``sha`` (empty when None, or not a tree)."""
    if sha is None or not isinstance(tree := git.object(sha), Tree):
        return {}
    return {bytes(e.path): (e.mode, bytes(e.sha)) for e in tree.items()}


def _changed(before: Entries, after: Entries) -> Iterator[tuple[bytes, tuple[int, bytes]]]:
    """The entries of ``after`` that ``before`` lacks or holds otherwise."""
    for name, (mode, sha) in after.items():
        if before.get(name) != (mode, sha) and sha is not None:
            yield name, (mode, sha)


def shown(name: bytes) -> str:
    """A path component as text safe to print on one line: control characters escaped."""
    text = name.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
