"""On-disk cache of compiled components (``store/cache/``), safe to delete at any time.

An entry is keyed by the sha256 of the .wasm, the wasmtime version and the engine's settings.
wasmtime deserializes native code without being able to check it, so only artifacts this
program wrote are loaded: beside each artifact a stamp records the sha256 of the bytes it wrote;
an artifact replaced or modified since (even in place, with its mtime restored) no longer hashes
to its stamp and is rebuilt, as is one that fails to load. The stamp names content, not a file
identity (inode, ctime), so a cache copied or restored elsewhere (a CI cache, a backup, a test
suite's shared folder) is used as it is; hashing a 40 MB artifact costs tens of milliseconds,
compiling it seconds.

Within a process, a component is compiled or loaded once and shared: sources configured with
the same file (seven ``files`` sources, say) share its compiled code, the largest part of a
plugin's resident memory after its instance's own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import weakref
from collections.abc import Callable
from pathlib import Path

from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

from blocksync.errors import UnsafeFile
from blocksync.fs.safefile import write_atomic
from blocksync.shared import progress

log = logging.getLogger("blocksync.plugins.host.cache")

#: components alive in this process, by (engine settings, sha256 of the .wasm)
_loaded: weakref.WeakValueDictionary[tuple[str, str], Component] = weakref.WeakValueDictionary()


#: what a stamp records (see the module docstring); part of every key
STAMP_FORMAT = "content-sha256"


def content_stamp(artifact: Path) -> dict[str, object]:
    """What the stamp of ``artifact`` must say for it to be trusted: its size and sha256. A link
    planted in the cache is never the artifact this program wrote (OSError)."""
    fd = os.open(artifact, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{artifact} is not a regular file")
        digest = hashlib.file_digest(file, "sha256")
        return {"sha256": digest.hexdigest(), "size": file.tell()}


class CompileCache:
    def __init__(self, folder: Path | None, engine_key: str) -> None:
        self.folder = folder
        self._engine_key = engine_key

    def key(self, wasm_sha256: str) -> str:
        # the stamp's format is part of the key: a cache shared with an older blocksync (whose
        # stamps held a file identity) neither trusts nor overwrites that version's entries
        return hashlib.sha256(
            f"{wasm_sha256}\0{self._engine_key}\0{STAMP_FORMAT}".encode()
        ).hexdigest()

    def load(
        self,
        engine: Engine,
        wasm_sha256: str,
        compile: Callable[[], Component],
        what: str = "a plugin",
    ) -> Component:
        """The component already loaded in this process, else the cached one, else
        ``compile()``'s, which is then cached. Compiling takes seconds to a minute: it is
        reported as a task (:mod:`blocksync.shared.progress`) naming ``what`` is compiled."""
        key = (self._engine_key, wasm_sha256)
        component = _loaded.get(key)
        if component is None:
            component = _loaded[key] = self._load(engine, wasm_sha256, compile, what)
        return component

    def _load(
        self, engine: Engine, wasm_sha256: str, compile: Callable[[], Component], what: str
    ) -> Component:
        if self.folder is None:
            with progress.current().task(f"compiling {what}"):
                return compile()
        artifact = self.folder / f"{self.key(wasm_sha256)}.cwasm"
        stamp = artifact.with_suffix(".stamp")
        cached = self._trusted(artifact, stamp)
        if cached:
            try:
                return Component.deserialize_file(engine, str(artifact))
            except WasmtimeError as exc:
                log.warning("discarding unusable compiled plugin %s: %s", artifact, exc)
        with progress.current().task(f"compiling {what}, first use only"):
            component = compile()
            self._store(component, artifact, stamp)
        return component

    @staticmethod
    def _trusted(artifact: Path, stamp: Path) -> bool:
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
            return bool(recorded == content_stamp(artifact))
        except (OSError, ValueError):
            return False

    def _store(self, component: Component, artifact: Path, stamp: Path) -> None:
        try:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            data = component.serialize()
            write_atomic(artifact, data)
            written = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            write_atomic(stamp, json.dumps(written).encode("utf-8"))
        except (OSError, UnsafeFile) as exc:  # a read-only, full or tampered cache costs speed
            log.warning("cannot cache compiled plugin in %s: %s", artifact.parent, exc)
