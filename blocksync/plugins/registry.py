"""The plugins a store's configuration attaches to its agents, loaded when first used."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BlocksyncError, ConfigError, NotFound, PluginRefused
from ..gitstore import GitStore
from .bridges import WasmDataBlock, WasmDataStream, WasmTool
from .hostfuncs import HostServices
from .runtime import Plugin, load
from .source import PluginSource
from .spec import PluginSpec, parse_limits, parse_wasm_source
from .syncbases import PluginBases

log = logging.getLogger("blocksync.plugins")

#: source_kind values that allow each interface to be used
_KINDS = {"data-block": ("block", "both"), "data-stream": ("stream", "both"), "tool": ("block", "stream", "both")}


def parse_specs(tables: Mapping[str, Any], store_root: Path) -> dict[str, PluginSpec]:
    """Every ``type = "wasm"`` data source of every agent, by its table key."""
    caps = parse_limits(tables.get("limits", {}), "[limits]")
    specs: dict[str, PluginSpec] = {}
    for agent, agent_table in tables.get("agents", {}).items():
        if not isinstance(agent_table, dict):
            raise ConfigError(f"[agents.{agent}] must be a table")
        sources = agent_table.get("data_sources", {})
        if not isinstance(sources, dict):
            raise ConfigError(f"[agents.{agent}.data_sources] must be a table of tables")
        for key, table in sources.items():
            where = f"[agents.{agent}.data_sources.{key}]"
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table")
            if table.get("type") == "file":
                continue  # a native source, not a plugin (blocksync.filesource)
            if table.get("type") != "wasm":
                raise ConfigError(
                    f"{where}: type {table.get('type')!r} is not supported; use \"file\" or \"wasm\""
                )
            if key in specs:
                raise ConfigError(
                    f"data source {key!r} is configured for agents {specs[key].agent!r} and "
                    f"{agent!r}: table keys name sources, so they must be unique"
                )
            specs[key] = parse_wasm_source(agent, key, table, store_root, caps)
    return specs


class PluginSet:
    """Configured plugins by key; each is loaded (checked, compiled or read from the cache)
    the first time it is used, and stays loaded until :meth:`close`."""

    def __init__(
        self, specs: Mapping[str, PluginSpec], services: HostServices, cache_folder: Path | None
    ) -> None:
        self.specs = dict(specs)
        self._services = services
        self._cache = cache_folder
        self._loaded: dict[str, Plugin] = {}
        self._bases: dict[str, PluginBases] = {}
        self._git: GitStore | None = None

    def _new_bases(self, spec: PluginSpec) -> PluginBases | None:
        """The plugin's sync bases (``refs/sync/<key>``) when a block store is attached."""
        blocks = self._services.blocks
        if blocks is None:
            return None
        if self._git is None:
            self._git = GitStore(blocks.repo_path, durable=blocks.durable)
        return PluginBases(
            self._git, spec.key, spec.owners, f"plugin:{spec.key}", blocks.index_path
        )

    def get(self, key: str) -> Plugin:
        plugin = self._loaded.get(key)
        if plugin is None:
            spec = self.specs.get(key)
            if spec is None:
                known = ", ".join(sorted(self.specs)) or "none configured"
                raise NotFound(f"no plugin named {key!r} (known: {known})")
            bases = self._new_bases(spec)
            plugin = load(
                spec, self._services, self._cache, None if bases is None else bases.functions()
            )
            if bases is not None:
                bases.enabled = "data-block" in plugin.interfaces
                bases.host = plugin.host
                self._bases[key] = bases
            self._loaded[key] = plugin
        return plugin

    def _exporting(self, key: str, interface: str) -> Plugin:
        plugin = self.get(key)
        if interface not in plugin.interfaces:
            raise PluginRefused(
                plugin.name, plugin.version, "", f"does not export {interface} "
                f"(it exports {', '.join(plugin.interfaces)})"
            )
        if plugin.spec.source_kind not in _KINDS[interface]:
            raise PluginRefused(
                plugin.name, plugin.version, "",
                f"is configured with source_kind = {plugin.spec.source_kind!r}, not as a {interface}",
            )
        return plugin

    def data_block(self, key: str) -> WasmDataBlock:
        return WasmDataBlock(self._exporting(key, "data-block"))

    def source(self, key: str) -> PluginSource:
        """The data-block plugin ``key`` as the reconciler drives it."""
        plugin = self._exporting(key, "data-block")
        blocks = self._services.blocks
        if blocks is None or key not in self._bases:
            raise PluginRefused(plugin.name, plugin.version, "", "has no block store to reconcile")
        return PluginSource(plugin, self._bases[key], blocks)

    def data_block_keys(self) -> list[str]:
        """The plugins to reconcile: configured as a block source and exporting data-block.
        Each is loaded to tell; one that fails to load is listed, so that reconciling it
        reports why (a source that cannot even load must not pass for a clean run)."""
        keys = []
        for key, spec in self.specs.items():
            if spec.source_kind not in _KINDS["data-block"]:
                continue
            try:
                exports = self.get(key).interfaces
            except BlocksyncError:
                exports = ("data-block",)
            if "data-block" in exports:
                keys.append(key)
        return keys

    def data_stream(self, key: str) -> WasmDataStream:
        return WasmDataStream(self._exporting(key, "data-stream"))

    def tool(self, key: str) -> WasmTool:
        return WasmTool(self._exporting(key, "tool"))

    def close(self) -> None:
        for plugin in self._loaded.values():
            plugin.close()
        self._loaded.clear()
        for bases in self._bases.values():
            bases.close()
        self._bases.clear()
        if self._git is not None:
            self._git.close()
            self._git = None
