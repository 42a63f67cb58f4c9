"""On-disk cache of compiled components (``store/cache/``), safe to delete at any time.

An entry is keyed by the sha256 of the .wasm, the wasmtime version and the engine's settings.
wasmtime deserializes native code without being able to check it, so only artifacts this
program wrote are loaded: beside each artifact a stamp records the file identity (inode, size,
mtime and ctime in nanoseconds) it had right after being written; a file replaced or modified
since (ctime cannot be set back) no longer matches and is rebuilt, as is one that fails to load.

Within a process, a component is compiled or loaded once and shared: sources configured with
the same file (seven ``files`` sources, say) share its compiled code, the largest part of a
plugin's resident memory after its instance's own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Callable
from pathlib import Path

from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

from ..errors import UnsafeFile
from ..safefile import write_atomic

log = logging.getLogger("blocksync.plugins.cache")

#: components alive in this process, by (engine settings, sha256 of the .wasm)
_loaded: weakref.WeakValueDictionary[tuple[str, str], Component] = weakref.WeakValueDictionary()


class CompileCache:
    def __init__(self, folder: Path | None, engine_key: str) -> None:
        self.folder = folder
        self._engine_key = engine_key

    def key(self, wasm_sha256: str) -> str:
        return hashlib.sha256(f"{wasm_sha256}\0{self._engine_key}".encode()).hexdigest()

    def load(self, engine: Engine, wasm_sha256: str, compile: Callable[[], Component]) -> Component:
        """The component already loaded in this process, else the cached one, else
        ``compile()``'s, which is then cached."""
        key = (self._engine_key, wasm_sha256)
        component = _loaded.get(key)
        if component is None:
            component = _loaded[key] = self._load(engine, wasm_sha256, compile)
        return component

    def _load(self, engine: Engine, wasm_sha256: str, compile: Callable[[], Component]) -> Component:
        if self.folder is None:
            return compile()
        artifact = self.folder / f"{self.key(wasm_sha256)}.cwasm"
        stamp = artifact.with_suffix(".stamp")
        cached = self._trusted(artifact, stamp)
        if cached:
            try:
                return Component.deserialize_file(engine, str(artifact))
            except WasmtimeError as exc:
                log.warning("discarding unusable compiled plugin %s: %s", artifact, exc)
        component = compile()
        self._store(component, artifact, stamp)
        return component

    @staticmethod
    def _identity(path: Path) -> list[int]:
        st = path.lstat()  # a link planted in the cache is never the artifact this program wrote
        return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def _trusted(self, artifact: Path, stamp: Path) -> bool:
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
            return bool(recorded == self._identity(artifact))
        except (OSError, ValueError):
            return False

    def _store(self, component: Component, artifact: Path, stamp: Path) -> None:
        try:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(artifact, component.serialize())
            write_atomic(stamp, json.dumps(self._identity(artifact)).encode("utf-8"))
        except (OSError, UnsafeFile) as exc:  # a read-only, full or tampered cache costs speed
            log.warning("cannot cache compiled plugin in %s: %s", artifact.parent, exc)
