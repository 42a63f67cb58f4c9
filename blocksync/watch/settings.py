"""``blocksync.toml`` edited while ``blocksync watch`` runs: noticed, checked, used or refused.

The file is looked at with one ``stat`` at every look of the watch (``poll``): its identity,
size and times. A change is taken once the file has stayed as it is for one look, so an editor
that writes it in steps is read once it is done. The new configuration is then checked as a
restart would check it -- TOML, tables, the data sources' keys (:meth:`Workspace.read_config
<blocksync.workspace.Workspace.read_config>`) -- and one more thing a watch needs: every folder
(and plugin file) a source gains must exist, since a path typed wrong would otherwise be
waited for in silence. A folder a source already had is not asked about: it may be away for a
while (``folder-missing``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..plugins.spec import PluginSpec
from ..sync.folder.config import FileSourceSpec
from ..text import printable
from .events import ConfigChange

__all__ = ["ConfigFile", "Spec", "changes", "check_new_paths", "invalid", "reloaded"]

#: what a source the watch takes is configured as
Spec = FileSourceSpec | PluginSpec
#: what a stat of the file tells apart: None when it is not there
_Stat = tuple[int, int, int, int, int] | None


def _stat(path: Path) -> _Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ConfigFile:
    """The store's ``blocksync.toml``, as the watch last took it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._taken = self._seen = _stat(path)

    def changed(self) -> bool:
        """Has the file changed since it was last taken, and stayed so since the last look?
        (Then it is taken: the next call says False until it changes again.)"""
        now = _stat(self.path)
        settled = now == self._seen
        self._seen = now
        if now == self._taken or not settled:
            return False
        self._taken = now
        return True


def check_new_paths(before: Mapping[str, Spec], after: Mapping[str, Spec]) -> None:
    """ConfigError naming the table and the path when a source of ``after`` has a folder (or,
    a plugin, a ``.wasm`` file) that it did not have ``before`` and that does not exist."""
    for key, spec in after.items():
        old = before.get(key)
        where = f"[agents.{spec.agent}.data_sources.{key}]"
        if isinstance(spec, FileSourceSpec):
            known = old.paths if isinstance(old, FileSourceSpec) else ()
            for root in spec.paths:
                if root not in known and not root.is_dir():
                    raise ConfigError(f"{where}.paths: {root} does not exist (or is no folder)")
            continue
        had = old if isinstance(old, PluginSpec) else None
        if (had is None or had.path != spec.path) and not spec.path.is_file():
            raise ConfigError(f"{where}.path: {spec.path} does not exist (or is no file)")
        if spec.dir is not None and (had is None or had.dir != spec.dir) and not spec.dir.is_dir():
            raise ConfigError(f"{where}.dir: {spec.dir} does not exist (or is no folder)")


def changes(
    before: Mapping[str, Spec], after: Mapping[str, Spec]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The keys of the sources ``after`` adds, removes and configures differently."""
    added = tuple(k for k in after if k not in before)
    removed = tuple(k for k in before if k not in after)
    changed = tuple(k for k in after if k in before and before[k] != after[k])
    return added, removed, changed


def reloaded(
    path: Path, before: Mapping[str, Spec], after: Mapping[str, Spec], polled: list[str]
) -> ConfigChange:
    """The ``config-reloaded`` event: what changed among the sources the watch takes."""
    added, removed, changed = changes(before, after)
    parts = [
        f"{what}: {', '.join(printable(k) for k in keys)}"
        for what, keys in (("added", added), ("removed", removed), ("changed", changed))
        if keys
    ]
    taking = f"{len(after) - len(polled)} source(s) watched, {len(polled)} polled"
    text = f"{path.name} reloaded ({'; '.join(parts) or 'no source changed'}): {taking}"
    return ConfigChange("config-reloaded", text, str(path), added, removed, changed)


def invalid(path: Path, error: str) -> ConfigChange:
    """The ``config-invalid`` event: ``error`` says what is wrong and where."""
    text = f"{path.name} changed but cannot be used, the configuration from before runs on: {error}"
    return ConfigChange("config-invalid", printable(text), str(path), error=error)
