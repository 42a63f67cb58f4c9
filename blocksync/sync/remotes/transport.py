"""Talking to the other repository: the remotes there are, and main travelling between them.

Git is the whole wire protocol (dulwich's clients: file paths, ``git://``, ``http(s)://``, ssh).
What travels is ``refs/heads/main`` only (see :mod:`blocksync.sync.remotes.source` for why). A fetch
brings the remote's main and its objects into the object store and touches nothing else; a push
is a compare-and-swap through git's own protocol: the update names the remote main it replaces
(never a force). URLs may carry credentials: every error shown is scrubbed of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.client import LocalGitClient, get_transport_and_path
from dulwich.errors import HangupException, NotGitRepository, SendPackError
from dulwich.file import FileLocked
from dulwich.objects import ZERO_SHA, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from blocksync import config as config_mod
from blocksync.errors import (
    AlreadyExists,
    BlocksyncError,
    ConfigError,
    NotFound,
    RemoteError,
    RemoteRejected,
    RemoteUnreachable,
    UsageError,
)
from blocksync.fs.safefile import write_atomic
from blocksync.shared import progress
from blocksync.store.blocks import MAIN
from blocksync.store.gitstore import GitStore

#: Conflict rows (and report entries) of a remote are of the source ``remote:<name>``.
SOURCE_PREFIX = "remote:"
#: Compare-and-swaps of a local ref (a tracking ref here, main in a merge) before giving up.
MAX_MERGE_ATTEMPTS = 20
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


# -- names, URLs, credentials ---------------------------------------------------------------


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)


def _secrets(url: str) -> list[str]:
    m = _USERINFO.search(url)
    if m is None:
        return []
    return [part for part in re.split(r"[:]", m.group("userinfo")) if len(part) >= 3]


def scrub(text: str, url: str) -> str:
    """``text`` (an error from a transport) safe to show: no URL credentials, and not the
    password or token of ``url`` anywhere else either (some errors quote it bare)."""
    out = redact(text)
    for secret in _secrets(url):
        out = out.replace(secret, "***")
    return out


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(
            f"remote name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )


def tracking_ref(name: str) -> Ref:
    return Ref(f"refs/remotes/{name}/main".encode())


@dataclass(frozen=True)
class Remote:
    name: str
    url: str

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.name

    @property
    def shown_url(self) -> str:
        return redact(self.url)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.shown_url}


def parse_remotes(tables: dict[str, Any], where: str = "blocksync.toml") -> dict[str, Remote]:
    """The ``[remotes.<name>]`` tables, checked; in file order."""
    found: dict[str, Remote] = {}
    for name, table in dict(tables.get("remotes", {})).items():
        try:
            validate_name(name)
        except UsageError as exc:
            raise ConfigError(f"{where}: [remotes.{name}]: {exc}") from exc
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [remotes.{name}] must be a table with a url")
        unknown = sorted(set(table) - {"url"})
        if unknown:
            raise ConfigError(f"{where}: [remotes.{name}] has unknown key(s) {', '.join(unknown)}")
        url = table.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"{where}: [remotes.{name}] needs a url (text)")
        found[name] = Remote(name, url)
    return found


def _check_url(url: str) -> None:
    if not url or url != url.strip() or any(ord(c) < 0x20 for c in url):
        raise UsageError("a remote URL must be non-empty, without spaces around it or line breaks")


# -- blocksync.toml edits ----------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def add_remote(path: Path, name: str, url: str) -> Remote:
    """Append ``[remotes.<name>]`` to ``path``, every other byte of the file kept."""
    validate_name(name)
    _check_url(url)
    text = _read_text(path)
    doc = config_mod.read_toml(path) if text else {}
    if name in parse_remotes(doc, str(path)):
        raise AlreadyExists(f"remote {name!r} exists already: remove it first")
    sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    new = text + sep + config_mod.toml_table(("remotes", name), {"url": url})
    _check_edit(path, new, doc, name, {"url": url})
    write_atomic(path, new.encode("utf-8"))  # never through a link at blocksync.toml
    return Remote(name, url)


def remove_remote(path: Path, name: str) -> Remote:
    """Remove the ``[remotes.<name>]`` table from ``path``, every other byte of the file kept."""
    text = _read_text(path)
    doc = config_mod.read_toml(path) if text else {}
    remotes = parse_remotes(doc, str(path))
    if name not in remotes:
        raise NotFound(f"no remote named {name!r} (known: {', '.join(remotes) or 'none'})")
    key = re.escape(name)
    header = re.compile(
        rf"""^[ \t]*\[[ \t]*remotes[ \t]*\.[ \t]*(?:{key}|"{key}"|'{key}')[ \t]*\][ \t]*(?:#.*)?$"""
    )
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if header.match(line.rstrip("\r\n"))), None)
    if start is None:
        raise ConfigError(
            f"{path}: cannot find the [remotes.{name}] table to remove: edit the file"
        )
    end = start + 1
    while end < len(lines) and not re.match(r"^[ \t]*\[", lines[end]):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines before the next table stay
    if start > 0 and not lines[start - 1].strip():
        start -= 1  # the blank line `remote add` put before the table goes with it
    new = "".join(lines[:start] + lines[end:])
    _check_edit(path, new, doc, name, None)
    write_atomic(path, new.encode("utf-8"))  # never through a link at blocksync.toml
    return remotes[name]


def _check_edit(
    path: Path, new: str, doc: dict[str, Any], name: str, table: dict[str, Any] | None
) -> None:
    """Refuse an edit whose result is not exactly ``doc`` with the one remote changed."""
    import tomllib

    expected = json.loads(json.dumps(doc, default=str))
    remotes = dict(expected.get("remotes", {}))
    if table is None:
        remotes.pop(name, None)
    else:
        remotes[name] = table
    if remotes:
        expected["remotes"] = remotes
    else:
        expected.pop("remotes", None)
    try:
        got = json.loads(json.dumps(tomllib.loads(new), default=str))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot edit the remotes automatically ({exc}): edit the file"
        ) from exc
    if got.get("remotes") == {}:
        got.pop("remotes")
    if got != expected:
        raise ConfigError(f"{path}: cannot edit [remotes.{name}] automatically: edit the file")


# -- the other repository ------------------------------------------------------------------


class Transport:
    """Fetches from and pushes to remotes, for one git store."""

    def __init__(
        self, git: GitStore, client: Callable[[str], tuple[Any, str]] | None = None
    ) -> None:
        self.git = git
        self._client = client or (lambda url: get_transport_and_path(url))

    def _connect(self, remote: Remote) -> tuple[Any, str]:
        try:
            return self._client(remote.url)
        except Exception as exc:  # noqa: BLE001 -- dulwich raises anything on a bad URL
            raise RemoteError(
                remote.name, f"cannot use URL {remote.shown_url}: {scrub(str(exc), remote.url)}"
            ) from None

    def _failed(self, remote: Remote, what: str, exc: BaseException) -> RemoteError:
        detail = scrub(
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, remote.url
        )
        return RemoteUnreachable(remote.name, f"{what} {remote.shown_url} failed ({detail})")

    def fetch(self, remote: Remote) -> bytes | None:
        """Bring the remote's main and its objects here; its head (None: no main there)."""
        client, path = self._connect(remote)
        store = self.git.repo.object_store

        advertised: list[bytes | None] = []  # main as the fetch saw it (refs may move after)

        def wants(refs: dict[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            sha = refs.get(MAIN)
            advertised.append(None if sha is None or sha == ZERO_SHA else bytes(sha))
            if sha is None or sha == ZERO_SHA or sha in store:
                return []
            return [sha]

        try:
            with progress.current().task(f"fetching from {remote.name}"):
                result = client.fetch(path, self.git.repo, determine_wants=wants)
        except BlocksyncError:
            raise
        except Exception as exc:  # noqa: BLE001 -- socket, protocol, missing repository
            raise self._failed(remote, "fetch from", exc) from None
        head = advertised[-1] if advertised else result.refs.get(MAIN)
        if head is None or head == ZERO_SHA:
            return None
        if ObjectID(head) not in store:
            raise RemoteUnreachable(
                remote.name,
                f"fetch from {remote.shown_url} did not bring "
                f"main's commit {head.decode()}: nothing was applied",
            )
        return bytes(head)

    def track(self, remote: Remote, head: bytes) -> None:
        ref = tracking_ref(remote.name)
        for _ in range(MAX_MERGE_ATTEMPTS):
            old = self.git.ref(ref)
            if old == head or self.git.swap_ref(ref, old, head):
                return

    # -- history: what each side has ------------------------------------------------------

    def contains(self, descendant: bytes, ancestor: bytes) -> bool:
        return ancestor in self.ancestors(descendant, until=ancestor)

    def ancestors(self, start: bytes, until: bytes | None = None) -> set[bytes]:
        """``start`` and every commit it descends from (the walk ends early at ``until``).

        By parents alone: commit times (which dulwich's merge-base search orders by) are
        whole seconds, and many commits share one.
        """
        seen = {start}
        todo = [start]
        while todo:
            sha = todo.pop()
            if sha == until:
                break
            for parent in self.git.commit(sha).parents:
                if bytes(parent) not in seen:
                    seen.add(bytes(parent))
                    todo.append(bytes(parent))
        return seen

    def merge_bases(self, ours: bytes, theirs: bytes) -> list[bytes]:
        """The lowest common ancestors of two commits (``theirs`` itself when ``ours``
        contains it; ``ours`` itself when ``theirs`` contains it); empty when unrelated."""
        mine = self.ancestors(ours)
        if theirs in mine:
            return [theirs]
        frontier: list[bytes] = []
        seen = {theirs}
        todo = [theirs]
        while todo:
            sha = todo.pop()
            if sha in mine:
                frontier.append(sha)
                continue
            for parent in self.git.commit(sha).parents:
                if bytes(parent) not in seen:
                    seen.add(bytes(parent))
                    todo.append(bytes(parent))
        if len(frontier) <= 1:
            return frontier
        below = {c: self.ancestors(c) - {c} for c in frontier}
        return sorted(c for c in frontier if not any(c in below[d] for d in frontier))

    # -- push -----------------------------------------------------------------------------

    def send(self, remote: Remote, ours: bytes, seen: dict[str, Any]) -> str:
        client, path = self._connect(remote)
        if isinstance(client, LocalGitClient) and _checked_out_main(path):
            # git's receive.denyCurrentBranch, which dulwich's local transport does not apply
            raise RemoteRejected(
                remote.name,
                f"{remote.shown_url} has main checked out in a work tree: pushing "
                "there would change the branch under that work tree, so git refuses it, and so "
                "does blocksync. Push to a bare repository (git init --bare), or check out "
                "another branch there.",
            )
        repo = self.git.repo
        state = {"outcome": "pushed"}

        def update_refs(refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
            theirs = refs.get(MAIN)
            seen["old"] = theirs
            if theirs == ours:
                state["outcome"] = "up-to-date"
                return {}
            if theirs is not None and theirs != ZERO_SHA:  # noqa: SIM102 - narrows theirs for mypy
                if theirs not in repo.object_store or not self.contains(ours, theirs):
                    if theirs in repo.object_store and self.contains(theirs, ours):
                        state["outcome"] = "up-to-date"  # the remote has all of ours already
                    else:
                        state["outcome"] = "diverged"
                    return {}
            return {MAIN: ObjectID(ours)}

        try:
            with progress.current().task(f"pushing to {remote.name}"):
                result = client.send_pack(path, update_refs, repo.generate_pack_data)
        except FileLocked:
            return "raced"  # a file remote's main is mid-update by another pusher
        except SendPackError as exc:
            raise RemoteRejected(
                remote.name, f"{remote.shown_url} refused the push ({scrub(str(exc), remote.url)})"
            ) from None
        except (HangupException, Exception) as exc:
            if isinstance(exc, BlocksyncError):
                raise
            raise self._failed(remote, "push to", exc) from None
        if state["outcome"] != "pushed":
            return state["outcome"]
        status = (getattr(result, "ref_status", None) or {}).get(MAIN)
        if status is None:
            return "pushed"
        seen["message"] = scrub(str(status), remote.url).encode()
        try:
            now = client.get_refs(path)
            refs = getattr(now, "refs", now)
            seen["now"] = refs.get(MAIN)
        except Exception:  # noqa: BLE001 -- then count it as a race and pull
            seen["now"] = None
        return "rejected"


def _checked_out_main(path: str) -> bool:
    """Whether the repository at ``path`` has a work tree whose branch is main and does not
    allow pushes to it (``receive.denyCurrentBranch``: git refuses them by default)."""
    try:
        with Repo(path) as target:
            if target.bare or target.refs.get_symrefs().get(Ref(b"HEAD")) != MAIN:
                return False
            try:
                deny = target.get_config().get((b"receive",), b"denyCurrentBranch").lower()
            except KeyError:
                return True
    except (NotGitRepository, OSError):
        return False  # the push itself says what is wrong there
    return deny not in (b"false", b"ignore", b"warn", b"no", b"off", b"0")


__all__ = [
    "MAX_MERGE_ATTEMPTS",
    "SOURCE_PREFIX",
    "Remote",
    "Transport",
    "add_remote",
    "parse_remotes",
    "redact",
    "remove_remote",
    "scrub",
    "tracking_ref",
    "validate_name",
]
