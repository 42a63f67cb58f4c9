"""``blocksync.toml``: the store's configuration, parsed and checked once when a store opens."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_FILE = "blocksync.toml"

#: Top-level tables the configuration may hold; later parts of blocksync read each of them.
KNOWN_TABLES = ("store", "agents", "plugins", "limits", "remotes")

TEMPLATE = """\
# blocksync configuration. Blocks live in repo/ (git); index.db indexes them.

[store]
# fsync every commit: nothing committed is lost even on a power cut (slower). Without it a
# killed process still loses nothing; the OS may drop the last commits on a power cut.
durable = false

#
# Agents and the data sources attached to them, for example:
#
# [agents.alice.data_sources.notes]
# type = "file"
# name = "Alice's notes"
# paths = ["/home/alice/notes"]
# permission_rules = [{ pattern = "**", permission = "read-write" }]
"""


@dataclass(frozen=True)
class Config:
    """The parsed configuration; tables are kept as plain data for the parts that read them."""

    path: Path
    tables: dict[str, Any] = field(default_factory=dict)

    @property
    def agents(self) -> dict[str, Any]:
        return dict(self.tables.get("agents", {}))

    @property
    def durable(self) -> bool:
        return bool(self.tables.get("store", {}).get("durable", False))


def load(path: Path) -> Config:
    """Parse and check ``path``; a missing file is an empty configuration."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - set(KNOWN_TABLES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
            f"expected only {', '.join(KNOWN_TABLES)}"
        )
    for key, value in doc.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] must be a table")
    store = doc.get("store", {})
    unknown = sorted(set(store) - {"durable"})
    if unknown:
        raise ConfigError(f"{path}: [store] has unknown key(s) {', '.join(unknown)}")
    if not isinstance(store.get("durable", False), bool):
        raise ConfigError(f"{path}: [store] durable must be true or false")
    return Config(path, doc)
