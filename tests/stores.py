"""Stores with plugins configured in blocksync.toml, for tests: one helper, written with the
library's own TOML writer (blocksync.config.toml_table), every store's cache/ pointing at the
compile cache shared by test runs (an 18 MB component compiles once, not once per test)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import blocksync
from blocksync.config import toml_table

ROOT = Path(__file__).resolve().parent.parent
HOST_CACHE = ROOT / ".test-cache" / "host-compiled"


def make_store_for(
    root: Path,
    agents: dict[str, dict[str, dict[str, Any]]],
    caps: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A new store; ``agents`` maps agent -> source key -> table (``type = "wasm"`` unless the
    table says otherwise); ``caps`` is its ``[limits]`` table, ``extra`` more TOML."""
    blocksync.init(root, author="test:setup").close()
    shutil.rmtree(root / "cache")
    HOST_CACHE.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(HOST_CACHE, target_is_directory=True)
    parts = [extra] if extra else []
    if caps:
        parts.append(toml_table(("limits",), caps))
    for agent, sources in agents.items():
        for key, table in sources.items():
            parts.append(toml_table(("agents", agent, "data_sources", key), {"type": "wasm", **table}))
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
