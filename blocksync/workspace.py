"""Workspace: one store folder opened, everything below wired together; the public entry point.

A store folder holds::

    blocksync.toml   configuration
    repo/            bare git repository: the source of truth for block content
    index.db         SQLite: the version index (re-derivable from git)
    plugins/         .wasm files found by discovery
    cache/           compiled plugin artifacts (safe to delete)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from . import config as config_mod
from . import fsck as fsck_mod
from . import versions
from .blocks import BlockStore, Transaction
from .errors import StoreExists, StoreNotFound

DEFAULT_AUTHOR = "human:blocksync"


class Workspace(AbstractContextManager["Workspace"]):
    """An open store. Use :func:`open` or :func:`init` to get one."""

    def __init__(self, root: Path, *, author: str = DEFAULT_AUTHOR) -> None:
        self.root = Path(root)
        if not self.repo_path.is_dir():
            raise StoreNotFound(str(self.root))
        self.config = config_mod.load(self.root / config_mod.CONFIG_FILE)
        self._index = versions.VersionIndex.open(self.index_path)
        try:
            self.blocks = BlockStore(self.repo_path, self._index, author)
        except BaseException:
            self._index.close()
            raise

    # -- layout ---------------------------------------------------------------------------

    @property
    def repo_path(self) -> Path:
        return self.root / "repo"

    @property
    def index_path(self) -> Path:
        return self.root / "index.db"

    @property
    def plugins_path(self) -> Path:
        return self.root / "plugins"

    @property
    def cache_path(self) -> Path:
        return self.root / "cache"

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:
        """Create a store folder (the folder itself may exist, but not a store in it)."""
        root = Path(root)
        if (root / "repo").exists():
            raise StoreExists(str(root))
        root.mkdir(parents=True, exist_ok=True)
        for folder in ("plugins", "cache"):
            (root / folder).mkdir(exist_ok=True)
        toml = root / config_mod.CONFIG_FILE
        if not toml.exists():
            toml.write_text(config_mod.TEMPLATE, encoding="utf-8")
        versions.VersionIndex.open(root / "index.db", create=True).close()
        BlockStore.init_repo(root / "repo")  # last: its presence is what marks a store
        return cls(root, author=author)

    def close(self) -> None:
        self.blocks.close()
        self._index.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- operations across the store ------------------------------------------------------

    def transaction(self, message: str, author: str | None = None) -> AbstractContextManager[Transaction]:
        """``with ws.transaction("msg") as tx: tx.update(...)`` writes one commit."""
        return self.blocks.transaction(message, author)

    def fsck(self) -> fsck_mod.FsckReport:
        return fsck(self.root)


def open(path: str | Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:  # noqa: A001
    """Open the store at ``path``."""
    return Workspace(Path(path), author=author)


def init(path: str | Path, *, author: str = DEFAULT_AUTHOR) -> Workspace:
    """Create a store at ``path`` and open it."""
    return Workspace.init(Path(path), author=author)


@contextmanager
def _fresh_index(repo_path: Path, path: Path) -> Iterator[tuple[BlockStore, versions.VersionIndex]]:
    """A complete version index for ``repo_path`` built at ``path`` (a new file)."""
    versions.remove(path)
    index = versions.VersionIndex.open(path, create=True)
    try:
        store = BlockStore(repo_path, index, DEFAULT_AUTHOR)
        try:
            store.catch_up_index()
            yield store, index
        finally:
            store.close()
    finally:
        index.close()


def rebuild_index(path: str | Path) -> None:
    """Recreate ``index.db`` from the repository; works when the index is missing or damaged."""
    root = _existing_store(path)
    built = root / "index.db.rebuild"
    with _fresh_index(root / "repo", built):
        pass
    versions.install(built, root / "index.db")


def fsck(path: str | Path) -> fsck_mod.FsckReport:
    """Check the repository's objects and blocks, and the index against a fresh rebuild.

    Works on a store whose index is missing or damaged: that is one of the things it reports.
    """
    root = _existing_store(path)
    report = fsck_mod.FsckReport()
    fsck_mod.check_repository(root / "repo", report)
    if report.ok:
        with tempfile.TemporaryDirectory() as tmp, _fresh_index(root / "repo", Path(tmp) / "i.db") as (
            store,
            fresh,
        ):
            fsck_mod.check_index(
                root / "index.db",
                lambda index: index.catch_up(store.head(), store.read_commit_info),
                fresh.dump(),
                report,
            )
    return report


def _existing_store(path: str | Path) -> Path:
    root = Path(path)
    if not (root / "repo").is_dir():
        raise StoreNotFound(str(root))
    return root
