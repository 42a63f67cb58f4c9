"""The plugins a store's configuration attaches to its agents, loaded when first used, plus the
``.wasm`` files discovered in ``store/plugins/`` (see :mod:`.discovery` for their manifests).

``PluginSet.list()`` describes every configured or discovered plugin, one entry each (a
configured table whose ``path`` is a discovered file makes one entry); a broken plugin's entry
carries its error instead of failing the listing. Loaded plugins follow changes of their files
(hot reload, :mod:`.runtime`); ``PluginSet.watch()`` also notices changes without a call.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from blocksync.store.gitstore import GitStore

from ..errors import BlocksyncError, ConfigError, NotFound, PluginRefused
from .bridges import WasmDataBlock, WasmDataStream, WasmTool
from .discovery import Discovered, discover, parse_manifest, shortfalls
from .host import contract
from .host.hostfuncs import BasesFactory, HostContext, HostServices
from .host.runtime import Plugin, check, compile_component, load, runtime
from .source import PluginSource
from .spec import PluginSpec, check_kind, parse_limits, parse_trust, parse_wasm_source
from .syncbases import PluginBases
from .trust import trust_state

log = logging.getLogger("blocksync.plugins")

#: source_kind values that allow each interface to be used (None: not declared, see SourceKind)
_KINDS: dict[str, tuple[str | None, ...]] = {
    "data-block": (None, "block", "both"),
    "data-stream": ("stream", "both"),
    "tool": (None, "block", "stream", "both", "tool"),
}


def parse_specs(tables: Mapping[str, Any], store_root: Path) -> dict[str, PluginSpec]:
    """Every ``type = "wasm"`` data source of every agent, by its table key."""
    caps = parse_limits(tables.get("limits", {}), "[limits]")
    trust = parse_trust(tables.get("trust", {}))
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
                continue  # a native source, not a plugin (blocksync.sync.folder.source)
            if table.get("type") != "wasm":
                what = f"type {table['type']!r} is not supported" if "type" in table else "no type"
                raise ConfigError(f'{where}: {what}; use "file" or "wasm"')
            if key in specs:
                raise ConfigError(
                    f"data source {key!r} is configured for agents {specs[key].agent!r} and "
                    f"{agent!r}: table keys name sources, so they must be unique"
                )
            specs[key] = parse_wasm_source(agent, key, table, store_root, caps, trust)
    return specs


@dataclass(frozen=True)
class PluginEntry:
    """One plugin as ``blocksync plugin list`` shows it."""

    key: str  # the data source's table key; a discovered-only plugin's file stem
    name: str
    path: Path
    configured: bool
    discovered: bool
    agent: str | None  # the agent its table attaches it to (None: not attached)
    description: str | None
    interfaces: tuple[str, ...]
    version: str | None  # the manifest's version if it declares one, else sha256:<12 hex>
    sha256: str | None
    size: int | None
    trust: str
    loaded: bool
    last_error: str | None
    manifest: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "path": str(self.path),
            "configured": self.configured,
            "discovered": self.discovered,
            "agent": self.agent,
            "description": self.description,
            "interfaces": list(self.interfaces),
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "trust": self.trust,
            "loaded": self.loaded,
            "last_error": self.last_error,
            "manifest": None if self.manifest is None else str(self.manifest),
        }


def _file_facts(path: Path) -> tuple[str | None, int | None, str | None]:
    """(sha256, size, error) of a file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"cannot read {path}: {exc.strerror or exc}"
    return hashlib.sha256(data).hexdigest(), len(data), None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


class PluginSet:
    """Configured plugins by key; each is loaded (checked, compiled or read from the cache)
    the first time it is used, and stays loaded until :meth:`close`, following changes of its
    file. ``plugins_folder`` is where discovery looks (default: ``plugins/`` beside the cache
    folder, the store layout)."""

    def __init__(
        self,
        specs: Mapping[str, PluginSpec],
        services: HostServices,
        cache_folder: Path | None,
        plugins_folder: Path | None = None,
        *,
        hot_reload: bool = True,
    ) -> None:
        self.specs = dict(specs)
        self._services = services
        self._cache = cache_folder
        if plugins_folder is None and cache_folder is not None:
            plugins_folder = cache_folder.parent / "plugins"
        self.plugins_folder = plugins_folder
        self.hot_reload = hot_reload
        self._loaded: dict[str, Plugin] = {}
        self._errors: dict[str, str] = {}  # why the last load of a key failed
        self._bases: dict[str, PluginBases] = {}
        self._git: GitStore | None = None
        self._lock = threading.Lock()
        self._watch_stop: threading.Event | None = None
        self._watcher: threading.Thread | None = None

    # -- discovery ------------------------------------------------------------------------

    def discovered(self) -> dict[str, Discovered]:
        """The ``.wasm`` files of the plugins folder by stem, read now, with their manifests."""
        return discover(self.plugins_folder)

    def _manifest_path(self, spec: PluginSpec) -> Path | None:
        """The manifest beside a configured plugin's file, if that file is a discovered one."""
        folder = self.plugins_folder
        if folder is None or spec.path.suffix != ".wasm":
            return None
        path = _resolved(spec.path)
        if path.parent != _resolved(folder):
            return None
        manifest = path.with_suffix(".toml")
        return manifest if manifest.is_file() else None

    def check_manifest(self, spec: PluginSpec) -> None:
        """Refuse (PluginRefused) a configured plugin whose manifest asks for more than its
        table grants, naming each difference; ConfigError if the manifest is malformed."""
        found = self._manifest_path(spec)
        if found is None:
            return
        missing = shortfalls(parse_manifest(found).needs, spec)
        if missing:
            sha, _, _ = _file_facts(spec.path)
            raise PluginRefused(
                spec.key,
                "unknown" if sha is None else f"sha256:{sha[:12]}",
                "load",
                f"its manifest {found} asks for more than "
                f"[agents.{spec.agent}.data_sources.{spec.key}] grants: " + "; ".join(missing),
            )

    def _bases_factory(self, made: list[PluginBases]) -> BasesFactory | None:
        """What makes a plugin's sync bases (``refs/sync/<key>``) when a block store is
        attached; each one made goes into ``made``."""
        blocks = self._services.blocks
        if blocks is None:
            return None
        if self._git is None:
            self._git = GitStore(blocks.repo_path, durable=blocks.durable)
        git = self._git

        def make(host: HostContext, exports: tuple[str, ...]) -> PluginBases:
            made.append(
                PluginBases(host, git, enabled="data-block" in exports, index_db=blocks.index_db)
            )
            return made[-1]

        return make

    def get(self, key: str) -> Plugin:
        plugin = self._loaded.get(key)
        if plugin is None:
            spec = self.specs.get(key)
            if spec is None:
                known = ", ".join(sorted(self.specs)) or "none configured"
                if key in self.discovered():
                    raise NotFound(
                        f"plugin {key!r} was discovered in {self.plugins_folder} but no "
                        '[agents.<agent>.data_sources.<key>] table with type = "wasm" names '
                        f"its path, so it is attached to no agent (configured: {known})"
                    )
                raise NotFound(f"no plugin named {key!r} (known: {known})")
            made: list[PluginBases] = []
            try:
                self.check_manifest(spec)
                plugin = load(
                    spec,
                    self._services,
                    self._cache,
                    self._bases_factory(made),
                    vet=partial(self.check_manifest, spec),
                    hot_reload=self.hot_reload,
                )
            except BaseException as exc:
                for bases in made:
                    bases.close()
                if isinstance(exc, BlocksyncError):
                    self._errors[key] = str(exc)
                raise
            self._errors.pop(key, None)
            for bases in made:  # one: a reload swaps the component, never the host context
                self._bases[key] = bases
            with self._lock:
                self._loaded[key] = plugin
        return plugin

    def _exporting(self, key: str, interface: str) -> Plugin:
        plugin = self.get(key)
        if interface not in plugin.interfaces:
            raise PluginRefused(
                plugin.name,
                plugin.version,
                "",
                f"does not export {interface} (it exports {', '.join(plugin.interfaces)})",
            )
        if plugin.spec.source_kind not in _KINDS[interface]:
            raise PluginRefused(
                plugin.name,
                plugin.version,
                "",
                f"is configured with source_kind = {plugin.spec.source_kind!r}, not as a {interface}"
                if plugin.spec.source_kind is not None
                else f"declares no source_kind, so it is not used as a {interface}",
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
        """The plugins to reconcile: configured as a block source and exporting data-block
        (each is loaded to tell, see :meth:`reconciles`)."""
        return [key for key in self.block_source_keys() if self.reconciles(key)]

    def block_source_keys(self) -> list[str]:
        """The plugins configured as a block source, none loaded: the candidates of
        :meth:`data_block_keys`."""
        return [k for k, spec in self.specs.items() if spec.source_kind in _KINDS["data-block"]]

    def reconciles(self, key: str) -> bool:
        """Whether the block source ``key`` exports data-block: it is loaded to tell. One that
        fails to load does, so that reconciling it reports why (a source that cannot even load
        must not pass for a clean run)."""
        try:
            return "data-block" in self.get(key).interfaces
        except BlocksyncError:
            return True

    def data_stream(self, key: str) -> WasmDataStream:
        return WasmDataStream(self._exporting(key, "data-stream"))

    def tool(self, key: str) -> WasmTool:
        return WasmTool(self._exporting(key, "tool"))

    # -- hot reload -----------------------------------------------------------------------

    def refresh(self) -> builtins.list[str]:
        """Look at every loaded plugin's file now; the keys of those swapped to a new version."""
        with self._lock:
            loaded = tuple(self._loaded.items())
        return [key for key, plugin in loaded if plugin.refresh()]

    def watch(self, interval: float = 1.0) -> None:
        """Notice changed plugin files without waiting for a call: a thread polls each loaded
        plugin's file identity (one ``os.stat``) every ``interval`` seconds and queues a reload
        on the plugin's worker thread when it changed. For long-running hosts; idempotent."""
        if self._watcher is not None:
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval):
                with self._lock:
                    loaded = tuple(self._loaded.values())
                for plugin in loaded:
                    try:
                        plugin.refresh_soon()
                    except Exception:  # a watcher must outlive one bad plugin
                        log.exception("plugin %r: checking its file failed", plugin.name)

        self._watch_stop = stop
        self._watcher = threading.Thread(target=run, name="blocksync-plugin-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is None or self._watch_stop is None:
            return
        self._watch_stop.set()
        self._watcher.join()
        self._watcher = self._watch_stop = None

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    def close(self) -> None:
        self.stop_watching()
        with self._lock:
            loaded = tuple(self._loaded.values())
            self._loaded.clear()
        for plugin in loaded:
            plugin.close()
        for bases in self._bases.values():
            bases.close()
        self._bases.clear()
        if self._git is not None:
            self._git.close()
            self._git = None

    # -- listing --------------------------------------------------------------------------

    def list(self) -> builtins.list[PluginEntry]:
        """Every configured or discovered plugin, one entry each, configured ones first. Never
        fails because of one plugin: its entry carries the error. Unloaded plugins are
        compiled (through the cache) to tell their interfaces; none is instantiated."""
        found = self.discovered()
        by_path = {_resolved(d.path): d for d in found.values()}
        claimed: set[Path] = set()
        entries = []
        for key, spec in self.specs.items():
            disc = by_path.get(_resolved(spec.path))
            if disc is not None:
                claimed.add(_resolved(disc.path))
            entries.append(self._safe_entry(key, spec, disc, configured=True))
        for name, disc in found.items():
            if _resolved(disc.path) not in claimed:
                # granted nothing: the defaults, attached to no agent
                spec = PluginSpec(key=name, agent="", path=disc.path)
                entries.append(self._safe_entry(name, spec, disc, configured=False))
        return entries

    def _safe_entry(
        self, key: str, spec: PluginSpec, disc: Discovered | None, configured: bool
    ) -> PluginEntry:
        try:
            return self._entry(key, spec, disc, configured)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the list
            return PluginEntry(
                key,
                spec.name or key,
                spec.path,
                configured,
                disc is not None,
                spec.agent if configured else None,
                None,
                (),
                None,
                None,
                None,
                "unknown",
                key in self._loaded if configured else False,
                f"cannot describe it: {type(exc).__name__}: {exc}",
                None if disc is None else disc.manifest_path,
            )

    def _entry(
        self, key: str, spec: PluginSpec, disc: Discovered | None, configured: bool
    ) -> PluginEntry:
        errors: builtins.list[str] = []
        manifest = None if disc is None else disc.manifest
        if disc is not None and disc.manifest_error is not None:
            errors.append(disc.manifest_error)
        plugin = self._loaded.get(key) if configured else None
        interfaces: tuple[str, ...] = ()
        sha: str | None
        size: int | None
        if plugin is not None:
            info = plugin.info
            sha, size = info.sha256, info.size
            interfaces = plugin.interfaces
            if plugin.last_error is not None:
                errors.append(plugin.last_error)
        else:
            if configured and key in self._errors:
                errors.append(self._errors[key])
            sha, size, problem = _file_facts(spec.path)
            if problem is None:
                try:
                    _, info = compile_component(
                        spec.path, key, runtime().cache(self._cache), spec.sha256
                    )
                    interfaces = tuple(i for i in contract.INTERFACES if i in info.exports)
                    check(info, key)
                    if configured:
                        check_kind(spec, interfaces)
                except (PluginRefused, ConfigError) as exc:
                    problem = str(exc)
            if problem is not None:
                errors.append(problem)
            if configured and manifest is not None:
                missing = shortfalls(manifest.needs, spec)
                if missing:
                    errors.append(
                        f"its manifest {manifest.path} asks for more than the config grants: "
                        + "; ".join(missing)
                    )
        try:
            trust = trust_state(spec)
        except Exception as exc:  # noqa: BLE001 - a broken trust module: named in the entry
            trust = "unknown"
            errors.append(f"trust: {exc}")
        version = (
            manifest.version
            if manifest is not None and manifest.version
            else (None if sha is None else f"sha256:{sha[:12]}")
        )
        name = (
            spec.name
            if configured and spec.name
            else (manifest.name if manifest is not None and manifest.name else key)
        )
        return PluginEntry(
            key=key,
            name=name,
            path=spec.path,
            configured=configured,
            discovered=disc is not None,
            agent=spec.agent if configured else None,
            description=None if manifest is None else manifest.description,
            interfaces=interfaces,
            version=version,
            sha256=sha,
            size=size,
            trust=trust,
            loaded=plugin is not None,
            last_error="; ".join(dict.fromkeys(errors)) or None,
            manifest=None
            if disc is None or manifest is None and disc.manifest_error is None
            else disc.manifest_path,
        )
