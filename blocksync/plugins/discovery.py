"""Plugins found in ``store/plugins/``, and the manifests that say what each one needs.

Every ``*.wasm`` file in the folder is *discovered*. Beside ``<name>.wasm`` an optional
``<name>.toml`` manifest describes it and says what it NEEDS to work::

    name = "notes"                  # shown by `blocksync plugin list` (default: the file's stem)
    description = "Notes in a folder"
    version = "1.2.0"               # the author's version, shown; the sha256 identifies the file
    agent = "alice"                 # a hint for the user: a manifest never attaches a plugin

    [needs]
    dir = true                      # a folder preopened as /data (default false)
    dir_mode = "read-write"         # "read-only" (default) or "read-write"
    hosts = ["api.example.com", "s3.example.com:9000"]  # for the host's http functions
    limits = { timeout = 5, memory_mb = 128 }           # any limit of [limits]

Every key is optional; unknown keys are errors (a typo must not silently ask for nothing).

The user's ``blocksync.toml`` GRANTS; a manifest only ASKS. A discovered plugin is used only
when a ``type = "wasm"`` data source's ``path`` resolves to its file, and then with exactly that
table's grants: a manifest asking for more (a folder the table does not give, read-write where
it says read-only, a host its ``allowed_hosts`` does not cover, a limit above the effective
one) refuses the plugin, naming every difference (:func:`shortfalls`). A discovered plugin no
table names is listed and can be inspected, but is attached to no agent and is never loaded.

A manifest that is no valid TOML, or has a wrong key or value, is a :class:`ConfigError` naming
the file and the line (TOML syntax) or the key; the plugin is listed with it as its last error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import read_toml
from ..errors import ConfigError
from .spec import PluginSpec, parse_limits

__all__ = ["Discovered", "Manifest", "Needs", "discover", "parse_manifest", "shortfalls"]

_TOP_KEYS = {"name", "description", "version", "agent", "needs"}
_NEEDS_KEYS = {"dir", "dir_mode", "hosts", "limits"}


@dataclass(frozen=True)
class Needs:
    """What a manifest asks for; every default asks for nothing."""

    dir: bool = False
    dir_mode: str = "read-only"
    hosts: tuple[str, ...] = ()
    limits: Mapping[str, float | int] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str | None = None
    description: str | None = None
    version: str | None = None
    agent: str | None = None
    needs: Needs = Needs()


@dataclass(frozen=True)
class Discovered:
    """A ``.wasm`` file of the plugins folder, with its manifest or why it could not be read."""

    name: str  # the file's stem
    path: Path
    manifest: Manifest | None = None
    manifest_error: str | None = None

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".toml")


def _string(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: `{key}` must be a string, not {value!r}")
    return value


def parse_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; ConfigError naming the file and the line or key if malformed."""
    where = f"plugin manifest {path}"
    try:
        table = read_toml(path)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    unknown = sorted(set(table) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}"
        )
    needs_table = table.get("needs", {})
    if not isinstance(needs_table, dict):
        raise ConfigError(f"{where}: `needs` must be a table ([needs])")
    return Manifest(
        path=path,
        name=_string(table, "name", where),
        description=_string(table, "description", where),
        version=_string(table, "version", where),
        agent=_string(table, "agent", where),
        needs=_parse_needs(needs_table, f"{where}: [needs]"),
    )


def _parse_needs(table: Mapping[str, Any], where: str) -> Needs:
    unknown = sorted(set(table) - _NEEDS_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_NEEDS_KEYS))}"
        )
    wants_dir = table.get("dir", False)
    if not isinstance(wants_dir, bool):
        raise ConfigError(f"{where}.dir must be true or false, not {wants_dir!r}")
    dir_mode = table.get("dir_mode", "read-only")
    if dir_mode not in ("read-only", "read-write"):
        raise ConfigError(f'{where}.dir_mode must be "read-only" or "read-write", not {dir_mode!r}')
    hosts = table.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"{where}.hosts must be a list of host or host:port strings")
    limits = parse_limits(table.get("limits", {}), f"{where}.limits")
    return Needs(
        dir=wants_dir,
        dir_mode=dir_mode,
        hosts=tuple(h.lower() for h in hosts),
        limits=limits,
    )


def discover(folder: Path | None) -> dict[str, Discovered]:
    """Every ``*.wasm`` of ``folder`` by file stem, sorted, each with its manifest (if any)."""
    found: dict[str, Discovered] = {}
    if folder is None or not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.wasm")):
        if path.name.startswith(".") or not path.is_file():
            continue  # a temporary file being written (how atomic replaces are made)
        manifest_path = path.with_suffix(".toml")
        manifest, error = None, None
        if manifest_path.is_file():
            try:
                manifest = parse_manifest(manifest_path)
            except ConfigError as exc:
                error = str(exc)
        found[path.stem] = Discovered(path.stem, path, manifest, error)
    return found


def _split(entry: str) -> tuple[str, str]:
    """(host, port) of ``host``, ``host:port`` or ``*.domain``; port '' means any."""
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def host_covered(needed: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``allowed_hosts`` lets the plugin reach everything ``needed`` names."""
    want_host, want_port = _split(needed)
    for entry in allowed:
        host, port = _split(entry)
        if port and port != want_port:
            continue
        if host == want_host or host.startswith("*.") and want_host.endswith(host[1:]):
            return True
    return False


def shortfalls(needs: Needs, spec: PluginSpec) -> list[str]:
    """Each thing the manifest asks for that the config (``spec``) does not grant."""
    out = []
    if needs.dir and spec.dir is None:
        out.append("it needs a folder (needs.dir), but the config grants none (no `dir`)")
    if needs.dir_mode == "read-write" and spec.dir_mode != "read-write":
        out.append(
            "it needs its folder read-write (needs.dir_mode), but the config grants "
            f'{"no folder" if spec.dir is None else "it read-only"} (dir_mode = "{spec.dir_mode}")'
        )
    for host in needs.hosts:
        if not host_covered(host, spec.allowed_hosts):
            granted = ", ".join(spec.allowed_hosts) or "none"
            out.append(f"it needs host {host} (needs.hosts), not in allowed_hosts ({granted})")
    for key, asked in needs.limits.items():
        granted = getattr(spec.limits, key)
        if granted is not None and asked > granted:
            out.append(
                f"it needs limits.{key} = {asked:g}, above the {granted:g} the config grants"
            )
    return out
