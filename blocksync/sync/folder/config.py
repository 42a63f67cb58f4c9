"""The configuration of a file source: one ``[agents.<agent>.data_sources.<key>]`` table of
``type = "file"`` (see :mod:`blocksync.sync.folder.source` for what it means), checked, and the
selection it makes (recursive, include and exclude patterns, gitignore-style).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocksync import names
from blocksync.errors import ConfigError, UsageError
from blocksync.fs.disk import store_overlap
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.store.bases import ref_name
from blocksync.sync import permissions

__all__ = ["FileSourceSpec", "parse_file_source"]


@dataclass(frozen=True)
class FileSourceSpec:
    """One ``[agents.<agent>.data_sources.<key>]`` table of ``type = "file"``."""

    key: str  # the table key: the source's name (its bases live in refs/sync/<key>)
    agent: str  # owner of the blocks
    name: str
    paths: tuple[Path, ...]  # root folders, absolute
    recursive: bool = True
    include_patterns: tuple[str, ...] = ("**",)
    exclude_patterns: tuple[str, ...] = ()
    permission_rules: tuple[PermissionRule, ...] = permissions.DEFAULT_RULES

    @property
    def selects_all(self) -> bool:
        """Does the configuration select every file (so no path need be asked)?"""
        return self.recursive and self.include_patterns == ("**",) and not self.exclude_patterns

    def selects(self, rel: str) -> bool:
        """Does the configuration select the file ``rel`` (recursive, include, exclude)?"""
        if not self.recursive and "/" in rel:
            return False
        if self.include_patterns == ("**",) and not self.exclude_patterns:
            return True  # the default: "**" matches every path (spares a regex per file)
        if not any(permissions.matches(p, rel) for p in self.include_patterns):
            return False
        return not self._excluded(rel)

    def _excluded(self, rel: str) -> bool:
        """As in .gitignore: a pattern excludes a file it matches, or any folder above it
        (``build/`` with its trailing slash matches folders only)."""
        if not self.exclude_patterns:
            return False
        parts = rel.split("/")
        if any(permissions.matches(p, rel) for p in self.exclude_patterns if not p.endswith("/")):
            return True
        return any(self.folder_excluded("/".join(parts[:i])) for i in range(1, len(parts)))

    def folder_excluded(self, folder: str) -> bool:
        """Is the folder ``folder`` (relative to its root) excluded, with everything in it?"""
        if not self.exclude_patterns:
            return False
        return any(permissions.matches(p.rstrip("/"), folder) for p in self.exclude_patterns)

    def source_path(self, index: int, rel: str) -> str:
        """The source path of ``rel`` in root ``index``: prefixed by the index when there are
        several roots (``1:src/a.md``), so two roots may hold the same relative path."""
        return f"{index}:{rel}" if len(self.paths) > 1 else rel


_FILE_KEYS = {
    "type",
    "name",
    "paths",
    "recursive",
    "include_patterns",
    "exclude_patterns",
    "permission_rules",
}


def parse_file_source(
    agent: str, key: str, table: Mapping[str, Any], store_root: Path
) -> FileSourceSpec:
    """Check one ``type = "file"`` table; every error names the table and the key at fault."""
    where = f"[agents.{agent}.data_sources.{key}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    try:
        names.validate(agent, "agent")
        ref_name(key)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    unknown = sorted(set(table) - _FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_FILE_KEYS))}"
        )
    if table.get("type") != "file":
        raise ConfigError(f'{where}.type must be "file", not {table.get("type")!r}')
    name = table.get("name", key)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string")
    raw_paths = table.get("paths")
    if (
        not isinstance(raw_paths, list)
        or not raw_paths
        or not all(isinstance(p, str) and p for p in raw_paths)
    ):
        raise ConfigError(f"{where}.paths must be a non-empty list of folder paths")
    roots = tuple(_resolve(store_root, p) for p in raw_paths)
    for i, root in enumerate(roots):
        for j, other in enumerate(roots[:i]):
            if root == other or root.is_relative_to(other) or other.is_relative_to(root):
                raise ConfigError(
                    f"{where}.paths: {raw_paths[j]!r} and {raw_paths[i]!r} overlap ({other} and "
                    f"{root}); a file must belong to one root only"
                )
    recursive = table.get("recursive", True)
    if not isinstance(recursive, bool):
        raise ConfigError(f"{where}.recursive must be true or false")
    include = _patterns(table.get("include_patterns", ["**"]), f"{where}.include_patterns")
    exclude = _patterns(table.get("exclude_patterns", []), f"{where}.exclude_patterns")
    rules = _rules(table.get("permission_rules"), f"{where}.permission_rules")
    for raw, root in zip(raw_paths, roots):
        problem = store_overlap(root, store_root)
        if problem is not None:
            raise ConfigError(f"{where}.paths: {raw!r} ({root}) {problem}")
    return FileSourceSpec(
        key=key,
        agent=agent,
        name=name,
        paths=roots,
        recursive=recursive,
        include_patterns=include,
        exclude_patterns=exclude,
        permission_rules=rules,
    )


def _resolve(store_root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else Path(store_root) / p).resolve()


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where} must be a list of glob patterns (strings)")
    for pattern in value:
        try:
            permissions.matches(pattern, "x")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return tuple(value)


def _rules(value: Any, where: str) -> tuple[PermissionRule, ...]:
    if value is None:
        return permissions.DEFAULT_RULES
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of {{ pattern, permission }} tables")
    rules = []
    levels = ", ".join(p.value for p in PermissionLevel)
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"pattern", "permission"}:
            raise ConfigError(f'{where}[{i}] must be {{ pattern = "…", permission = "…" }}')
        if not isinstance(item["pattern"], str) or not item["pattern"]:
            raise ConfigError(f"{where}[{i}].pattern must be a glob pattern (a string)")
        try:
            level = PermissionLevel(item["permission"])
        except ValueError:
            raise ConfigError(f"{where}[{i}].permission must be one of {levels}") from None
        try:
            permissions.matches(item["pattern"], "x")
        except ConfigError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from exc
        rules.append(PermissionRule(item["pattern"], level))
    return tuple(rules)
