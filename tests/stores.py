"""Stores with plugins configured in blocksync.toml, for tests: one helper, written with the
library's own TOML writer (blocksync.config.toml_table), every store's cache/ pointing at the
compile cache shared by test runs (an 18 MB component compiles once, not once per test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import blocksync
from blocksync.config import toml_table
from blocksync.store.bases import SyncBases
from blocksync.store.gitstore import GitStore

from .plugin_builds import HOST_CACHE

ROOT = Path(__file__).resolve().parent.parent


def share_compile_cache(store: Path) -> Path:
    """Point ``store``'s cache/ (made if there is no store yet) at the compile cache shared by
    the suite: what a test or its ``blocksync`` subprocesses compile, the next one reads."""
    shutil.rmtree(store / "cache", ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    HOST_CACHE.mkdir(parents=True, exist_ok=True)
    (store / "cache").symlink_to(HOST_CACHE, target_is_directory=True)
    return store


def make_store_for(
    root: Path,
    agents: dict[str, dict[str, dict[str, Any]]],
    caps: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A new store; ``agents`` maps agent -> source key -> table (``type = "wasm"`` unless the
    table says otherwise); ``caps`` is its ``[limits]`` table, ``extra`` more TOML."""
    blocksync.init(root, author="test:setup").close()
    share_compile_cache(root)
    parts = [extra] if extra else []
    if caps:
        parts.append(toml_table(("limits",), caps))
    for agent, sources in agents.items():
        for key, table in sources.items():
            parts.append(
                toml_table(("agents", agent, "data_sources", key), {"type": "wasm", **table})
            )
    (root / "blocksync.toml").write_text("\n".join(parts), encoding="utf-8")
    return root


def make_store(
    root: Path,
    sources: dict[str, dict[str, Any]],
    agent: str = "alice",
    caps: dict[str, Any] | None = None,
) -> Path:
    """A new store whose blocksync.toml attaches ``sources`` (key -> table) to ``agent``."""
    return make_store_for(root, {agent: sources}, caps)


def base_of(ws: blocksync.Workspace, source: str, path: str) -> str | None:
    """The sync base of ``path`` of ``source``, as git holds it now (None: no base)."""
    git = GitStore(ws.repo_path)
    try:
        found = SyncBases(git, source).get(path)
    finally:
        git.close()
    return None if found is None else found[1]


def refs_of(repo: Path, *, records: bool = True) -> dict[str, str]:
    """Every ref of ``repo`` and its commit, as the real git lists them (none: {}).
    ``records=False`` leaves out ``refs/blocksync/records``: a run that changes no block or
    base still records itself in the run log there."""
    out = subprocess.run(
        ["git", "-C", str(repo), "show-ref"], capture_output=True, text=True, check=False
    ).stdout  # exit status 1 when there is no ref yet
    found = {name: sha for sha, name in (line.split() for line in out.splitlines())}
    if not records:
        found.pop("refs/blocksync/records", None)
    return found
