"""``blocksync.toml``: the store's configuration, parsed and checked once when a store opens."""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_FILE = "blocksync.toml"

#: Top-level tables the configuration may hold (a table nothing reads is refused as a typo).
KNOWN_TABLES = ("store", "agents", "limits", "remotes", "trust")
#: The keys of ``[store]`` that are true or false.
STORE_FLAGS = ("allow_mass_delete", "durable")
#: Every key of ``[store]``: the flags, and ``machine`` (text: the name commits give the
#: machine they were made on, in their ``Blocksync-Machine`` trailer; default the host name).
STORE_KEYS = (*STORE_FLAGS, "machine")
#: The keys of an ``[agents.<id>]`` table: its data sources (each a table with a ``type``,
#: checked when the sources are first used) and the owners it may act for through the
#: built-in tools besides itself, and whether blocksync keeps a block listing its open
#: conflicts (``blocksync:conflicts``, :mod:`blocksync.agents.conflict_block`).
AGENT_KEYS = ("data_sources", "may_act_for", "conflict_block")

TEMPLATE = """\
# blocksync configuration. Blocks live in repo/ (git); index.db indexes them.

[store]
# fsync every commit: nothing committed is lost even on a power cut (slower). Without it a
# killed process still loses nothing; the OS may drop the last commits on a power cut.
durable = false
# the name commits give this machine (their Blocksync-Machine trailer); default: the host name
# machine = "laptop"

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

    def may_act_for(self, agent: str) -> frozenset[str]:
        """The owners agent ``agent`` may act for through the built-in tools: itself, and
        those its ``may_act_for`` lists."""
        table = self.agents.get(agent, {})
        return frozenset([agent, *table.get("may_act_for", ())])

    def source_owners(self) -> dict[str, str]:
        """The agent each data source (``[agents.<agent>.data_sources.<key>]``) is attached to,
        by source key: the owner of what it syncs and of the notifications it emits."""
        return {
            key: agent
            for agent, table in self.agents.items()
            for key in table.get("data_sources", {})
        }

    @property
    def conflict_block_agents(self) -> list[str]:
        """The agents whose ``[agents.<id>]`` says ``conflict_block = true``, in file order."""
        return [
            agent
            for agent, table in self.agents.items()
            if isinstance(table, dict) and table.get("conflict_block", False) is True
        ]

    @property
    def durable(self) -> bool:
        return bool(self.tables.get("store", {}).get("durable", False))

    @property
    def allow_mass_delete(self) -> bool:
        """Whether runs may delete more than the mass-deletion threshold of a source's paths
        without ``--allow-mass-delete`` (see :func:`blocksync.sync.protocol.mass_deletion`)."""
        return bool(self.tables.get("store", {}).get("allow_mass_delete", False))

    @property
    def machine(self) -> str:
        """``[store] machine``, else this host's name (checked to be one printable line)."""
        found = self.tables.get("store", {}).get("machine")
        return found if found is not None else machine_name(socket.gethostname())


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses per level of nested arrays and inline tables
        raise ConfigError(f"{path}: arrays or tables nest too deeply to read") from None


def toml_value(value: Any) -> str:
    """``value`` (text or a path, bool, number, list, table) as a TOML value; tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        escaped = "".join(
            {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c)
            or (f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127 else c)
            for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} as TOML")


def toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else toml_value(key)


def toml_table(header: tuple[str, ...], table: dict[str, Any]) -> str:
    """``[a.b.c]`` and its keys, one per line: what a command appends to blocksync.toml."""
    lines = ["[" + ".".join(toml_key(part) for part in header) + "]"]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def load(path: Path) -> Config:
    """Parse and check ``path``; a missing file is an empty configuration."""
    if not path.exists():
        return Config(path)
    doc = read_toml(path)
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
    unknown = sorted(set(store) - set(STORE_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: [store] has unknown key(s) {', '.join(unknown)}; known: {', '.join(STORE_KEYS)}"
        )
    for key in STORE_FLAGS:
        if not isinstance(store.get(key, False), bool):
            raise ConfigError(f"{path}: [store] {key} must be true or false")
    machine = store.get("machine")
    if machine is not None and (not isinstance(machine, str) or machine_name(machine) != machine):
        raise ConfigError(
            f"{path}: [store] machine must be one line of printable text without surrounding "
            f"spaces (the name commits give this machine), not {_shown(machine)}"
        )
    for agent, table in doc.get("agents", {}).items():
        _check_agent(path, agent, table)
    return Config(path, doc)


def machine_name(name: str) -> str:
    """``name`` as a commit trailer can carry it: one line of printable text, trimmed
    (``"unknown"`` if nothing is left: a host without a name)."""
    kept = "".join(c for c in name if c.isprintable()).strip()
    return kept or "unknown"


def _check_agent(path: Path, agent: str, table: Any) -> None:
    """The shape of one ``[agents.<agent>]`` table (its data sources' own keys are checked
    where they are used: a file source by the folder source, a plugin by the plugin set)."""
    where = f"[agents.{toml_key(agent)}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table, not {_shown(table)}")
    unknown = sorted(set(table) - set(AGENT_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: {where} has unknown key(s) {', '.join(unknown)}; known: {', '.join(AGENT_KEYS)}"
        )
    sources = table.get("data_sources", {})
    if not isinstance(sources, dict):
        raise ConfigError(
            f"{path}: {where} data_sources must be a table of data sources "
            f"([agents.{toml_key(agent)}.data_sources.<key>] tables), not {_shown(sources)}"
        )
    for key, source in sources.items():
        if not isinstance(source, dict):
            raise ConfigError(
                f"{path}: [agents.{toml_key(agent)}.data_sources.{toml_key(key)}] must be a "
                f"table, not {_shown(source)}"
            )
    owners = table.get("may_act_for", [])
    if not isinstance(owners, list) or not all(
        isinstance(o, str) and o and o.isprintable() for o in owners
    ):
        raise ConfigError(
            f'{path}: {where} may_act_for must be a list of agent ids (e.g. ["bob"]), '
            f"not {_shown(owners)}"
        )
    block = table.get("conflict_block", False)
    if not isinstance(block, bool):
        raise ConfigError(
            f"{path}: {where} conflict_block must be true or false, not {_shown(block)}"
        )
    if block and not (agent and agent.isprintable()):
        # the agent id becomes the block's owner: refused here, not at the end of every run
        raise ConfigError(f"{path}: {where} conflict_block: the agent id cannot own a block")


def _shown(value: Any) -> str:
    """A TOML value for a message: its type and, when short, itself."""
    kind = {dict: "a table", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
    text = repr(value)
    return f"{kind} ({text})" if len(text) <= 40 else kind
