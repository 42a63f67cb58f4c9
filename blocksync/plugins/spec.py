"""How a plugin is configured: limits, grants and pins, parsed from ``blocksync.toml``.

The seed's form attaches a plugin to an agent as a data source::

    [limits]                          # caps for every plugin (optional)
    timeout = 10.0                    # seconds of wall-clock time per call
    memory_mb = 256                   # linear memory
    fuel = 5_000_000_000              # instructions-ish per call (absent: unlimited)
    result_mb = 16                    # size of one call's result
    http_timeout = 10.0
    http_response_mb = 8
    pull_batch = 1000                 # notifications one data-stream pull may return

    [agents.alice.data_sources.notes]
    type = "wasm"
    name = "Alice's notes"
    path = "plugins/files.wasm"       # relative to the store folder
    source_kind = "block"             # "block" | "stream" | "both" | "tool" (see SourceKind)
    config = { root = "/data" }       # what the plugin reads with get-config
    limits = { timeout = 2.0 }        # asks; [limits] caps
    allowed_hosts = ["127.0.0.1:9000"]
    dir = "/home/alice/notes"         # preopened for the plugin as /data
    dir_mode = "read-only"            # or "read-write"
    sha256 = "…"                      # refuse the plugin if the file changed
    require_signature = true          # refuse it unless files.wasm.sig is a good signature
    trusted_keys = ["ed25519:…"]      # ... by one of these keys (replaces [trust] keys)
    permission_rules = [{ pattern = "**", permission = "read-write" }]  # narrows the plugin's own

Trust for every plugin (see :mod:`.trust` for keys and signature files)::

    [trust]
    keys = ["ed25519:…"]              # public keys whose signatures are trusted
    require_signature = false         # the default for plugins that do not say
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from blocksync import names
from blocksync.fs.disk import store_overlap
from blocksync.shared.wit import PermissionLevel, PermissionRule

from ..errors import ConfigError, InvalidLabel
from .trust import TrustPolicy, parse_public_key

MiB = 1 << 20
#: What a configured plugin is used as: a data-block source (``block``), a data stream
#: (``stream``), both, or only for its tool (``tool``). A plugin exporting ``tool`` offers it
#: whatever its kind. Not declared (None): as its exports say -- a block source if it exports
#: data-block, else a tool; never a stream (a stream has a lifecycle: it is declared).
SourceKind = Literal["block", "stream", "both", "tool"]
#: the exported interfaces each declared kind needs
KIND_NEEDS: dict[str, tuple[str, ...]] = {
    "block": ("data-block",),
    "stream": ("data-stream",),
    "both": ("data-block", "data-stream"),
    "tool": ("tool",),
}
DirMode = Literal["read-only", "read-write"]
GUEST_DIR = "/data"  # where a granted folder appears inside the plugin


@dataclass(frozen=True)
class Limits:
    """Per-call sandbox limits. ``fuel`` None means no fuel limit."""

    timeout: float = 10.0
    memory_mb: int = 256
    fuel: int | None = None
    result_mb: int = 16
    http_timeout: float = 10.0
    http_response_mb: int = 8
    pull_batch: int = 1000  # notifications one data-stream pull may return

    def capped_by(self, caps: Mapping[str, Any]) -> Limits:
        """The smaller of each limit and the user's cap for it."""
        out = self
        for key, cap in caps.items():
            mine = getattr(self, key)
            out = replace(out, **{key: cap if mine is None else min(mine, cap)})
        return out


@dataclass(frozen=True)
class PluginSpec:
    """One configured plugin instance: a .wasm attached to an agent under a table key."""

    key: str
    agent: str
    path: Path
    name: str = ""
    source_kind: SourceKind | None = None  # None: not declared (see SourceKind)
    config: Mapping[str, Any] | None = None
    limits: Limits = Limits()
    allowed_hosts: tuple[str, ...] = ()
    dir: Path | None = None
    dir_mode: DirMode = "read-only"
    sha256: str | None = None
    permission_rules: tuple[PermissionRule, ...] | None = None  # None: the plugin's own
    trust: TrustPolicy = field(default_factory=TrustPolicy)  # signature required? by which keys?
    #: the label prefix this source owns when the plugin declares none (``label_namespace``)
    label_namespace: str | None = None

    @property
    def owners(self) -> frozenset[str]:
        return frozenset({self.agent})

    def config_value(self, key: str) -> str | None:
        """``get-config``: strings as they are, other TOML values as JSON."""
        value = (self.config or {}).get(key)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)


#: The largest value of each limit: past it a number stops meaning anything to the sandbox
#: (wasmtime takes fuel and memory sizes as 64-bit integers, timers overflow) -- a day, a TiB,
#: a million notifications, the fuel wasmtime can count.
_LIMIT_MAX: dict[str, int] = {
    "timeout": 86_400,
    "http_timeout": 86_400,
    "memory_mb": 1 << 20,
    "result_mb": 1 << 20,
    "http_response_mb": 1 << 20,
    "fuel": (1 << 63) - 1,
    "pull_batch": 1_000_000,
}
_LIMIT_TYPES = {f.name: (float if f.name.endswith("timeout") else int) for f in fields(Limits)}
assert set(_LIMIT_MAX) == set(_LIMIT_TYPES)


def parse_limits(table: Any, where: str) -> dict[str, Any]:
    """Limits as asked for: a timeout is a number of seconds, the others whole numbers, each
    above zero and at most its :data:`_LIMIT_MAX` (``nan`` and ``inf`` are neither)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        kind = _LIMIT_TYPES.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown limit {key!r}; known: {', '.join(_LIMIT_TYPES)}")
        top = _LIMIT_MAX[key]
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if number and isinstance(value, float) and kind is int and not value.is_integer():
            number = False
        if not number or not 0 < value <= top:  # also false for nan
            what = "number of seconds" if kind is float else "whole number"
            raise ConfigError(
                f"{where}.{key} must be a positive {what} up to {top:,}, not {value!r}"
            )
        out[key] = kind(value)
    return out


def parse_rules(value: Any, where: str) -> tuple[PermissionRule, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of {{ pattern, permission }} tables")
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"pattern", "permission"}:
            raise ConfigError(f'{where}[{i}] must be {{ pattern = "…", permission = "…" }}')
        if not isinstance(item["pattern"], str):
            raise ConfigError(f"{where}[{i}].pattern must be a glob pattern (a string)")
        try:
            level = PermissionLevel(item["permission"])
        except ValueError:
            levels = ", ".join(p.value for p in PermissionLevel)
            raise ConfigError(f"{where}[{i}].permission must be one of {levels}") from None
        rules.append(PermissionRule(str(item["pattern"]), level))
    return tuple(rules)


def parse_keys(value: Any, where: str) -> tuple[str, ...]:
    """A list of Ed25519 public keys (``ed25519:<base64>``), normalised, without repeats."""
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be a list of "ed25519:<base64>" public keys')
    keys: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f'{where}[{i}] must be a "ed25519:<base64>" string, not {item!r}')
        try:
            key = parse_public_key(item)
        except ValueError as exc:
            raise ConfigError(f"{where}[{i}] is not an Ed25519 public key: {exc}") from None
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value


_TRUST_KEYS = {"keys", "require_signature"}


def parse_trust(table: Any, where: str = "[trust]") -> TrustPolicy:
    """The global ``[trust]`` table: the default policy of every plugin."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _TRUST_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TRUST_KEYS))}"
        )
    required = _flag(table.get("require_signature", False), f"{where}.require_signature")
    return TrustPolicy(required, parse_keys(table.get("keys", []), f"{where}.keys"))


def _plugin_trust(table: Mapping[str, Any], where: str, default: TrustPolicy) -> TrustPolicy:
    """A plugin's policy: its own ``require_signature`` and ``trusted_keys`` (which replaces
    the global list) over the global ``[trust]``."""
    required = default.require_signature
    if "require_signature" in table:
        required = _flag(table["require_signature"], f"{where}.require_signature")
    keys = default.keys
    if "trusted_keys" in table:
        keys = parse_keys(table["trusted_keys"], f"{where}.trusted_keys")
    if required and not keys:
        raise ConfigError(
            f"{where}: require_signature = true, but no key is trusted: list the signers' "
            "public keys in trusted_keys here, or in keys of [trust]"
        )
    return TrustPolicy(required, keys)


_WASM_KEYS = {
    "type",
    "name",
    "path",
    "source_kind",
    "config",
    "limits",
    "allowed_hosts",
    "dir",
    "dir_mode",
    "sha256",
    "permission_rules",
    "require_signature",
    "trusted_keys",
    "label_namespace",
}


def parse_wasm_source(
    agent: str,
    key: str,
    table: Mapping[str, Any],
    store_root: Path,
    caps: Mapping[str, Any],
    trust: TrustPolicy | None = None,
) -> PluginSpec:
    """One ``[agents.<agent>.data_sources.<key>]`` table of ``type = "wasm"``; ``trust`` is
    the global ``[trust]`` policy (:func:`parse_trust`), which the table may override."""
    where = f"[agents.{agent}.data_sources.{key}]"
    unknown = sorted(set(table) - _WASM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(table.get("path"), str):
        raise ConfigError(f"{where}: `path` (the .wasm file) is required")
    for text in ("name", "dir", "label_namespace"):
        if not isinstance(table.get(text, ""), str):
            raise ConfigError(f"{where}.{text} must be a string, not {table[text]!r}")
    kind = table.get("source_kind")
    if kind is not None and kind not in KIND_NEEDS:
        raise ConfigError(f'{where}.source_kind must be "block", "stream", "both" or "tool"')
    dir_mode = table.get("dir_mode", "read-only")
    if dir_mode not in ("read-only", "read-write"):
        raise ConfigError(f'{where}.dir_mode must be "read-only" or "read-write"')
    config = table.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"{where}.config must be a table")
    hosts = table.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"{where}.allowed_hosts must be a list of host or host:port strings")
    sha = table.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ConfigError(f"{where}.sha256 must be 64 hex digits")
    asked = parse_limits(table.get("limits", {}), f"{where}.limits")
    folder = None if table.get("dir") is None else _resolve(store_root, str(table["dir"]))
    problem = None if folder is None else store_overlap(folder, store_root)
    if problem is not None:
        raise ConfigError(f"{where}.dir: {table['dir']!r} ({folder}) {problem}")
    namespace = table.get("label_namespace") or None
    if namespace is not None:
        _check_namespace(namespace, f"{where}.label_namespace")
    rules = table.get("permission_rules")
    policy = _plugin_trust(table, where, trust or TrustPolicy())
    return PluginSpec(
        key=key,
        agent=agent,
        path=_resolve(store_root, table["path"]),
        name=str(table.get("name", key)),
        source_kind=kind,
        config=config,
        limits=replace(Limits(), **asked).capped_by(caps),
        allowed_hosts=tuple(h.lower() for h in hosts),
        dir=folder,
        dir_mode=dir_mode,
        sha256=None if sha is None else sha.lower(),
        permission_rules=None if rules is None else parse_rules(rules, f"{where}.permission_rules"),
        trust=policy,
        label_namespace=namespace,
    )


def namespace_problem(namespace: str) -> str | None:
    """Why no label of a source's can start with ``namespace`` (each label read under it would
    be refused in the middle of a run, after the plugin's own call); None: it can."""
    if names.is_host_label(namespace):
        return (
            f"{namespace!r} is under {names.HOST_LABEL_PREFIX!r}, blocksync's own blocks: no "
            "data source binds one"
        )
    try:
        names.validate(namespace)
    except InvalidLabel as exc:
        return f"{namespace!r} starts no valid label ({exc.reason})"
    return None


def _check_namespace(namespace: str, where: str) -> None:
    problem = namespace_problem(namespace)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")


def check_kind(spec: PluginSpec, exports: tuple[str, ...]) -> None:
    """Refuse (ConfigError) a plugin whose exports lack what its configured ``source_kind``
    uses it as, naming the table, the kind and the exports -- before any of its code runs, so
    a tool declared a stream is not listed as one and then fails to start."""
    where = f"[agents.{spec.agent}.data_sources.{spec.key}]"
    exported = " and ".join(exports) or "none of the pattern:extension interfaces"
    fix = _kind_for(exports)
    hint = f'; declare source_kind = "{fix}"' if fix else ""
    if spec.source_kind is None:
        if "data-block" not in exports and "tool" not in exports:
            raise ConfigError(
                f"{where}: {spec.path.name} exports {exported} only, and a data stream must be "
                f"declared{hint}"
            )
        return
    missing = [i for i in KIND_NEEDS[spec.source_kind] if i not in exports]
    if missing:
        raise ConfigError(
            f'{where}: source_kind = "{spec.source_kind}" uses the plugin as '
            f"{' and '.join(KIND_NEEDS[spec.source_kind])}, but {spec.path.name} exports "
            f"{exported} (not {' nor '.join(missing)}){hint}"
        )


def _kind_for(exports: tuple[str, ...]) -> str | None:
    """The kind that uses everything a plugin exports (None: it exports none of them)."""
    if "data-block" in exports:
        return "both" if "data-stream" in exports else "block"
    if "data-stream" in exports:
        return "stream"
    return "tool" if "tool" in exports else None


def _resolve(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p
