"""The WASM host: one engine per process, components checked before they run, sandboxed calls.

``load(spec, ...)`` reads the .wasm, checks its sha256 pin, compiles it (or loads the compiled
artifact from the cache), and reads its exports *before instantiating*: which of ``data-block``,
``data-stream`` and ``tool`` it offers, at which interface version, with which signatures, and
what it imports. Anything wrong refuses the plugin before any of its code runs.

A :class:`Plugin` runs its calls one at a time on its own worker thread, each with a wall-clock
deadline (epoch interruption, ticked by a watchdog thread), optional fuel, a linear-memory cap
and a result-size cap. A trap or a limit discards the instance; the next call instantiates a
fresh one from the compiled component (about a millisecond).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from wasmtime import Config, Engine, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, ComponentInstanceType, FuncType, Instance, Linker

from ..errors import PluginCallFailed, PluginRefused, PluginTrapped
from . import contract, lift
from .bridges import permission_rule
from .cache import CompileCache
from .hostfuncs import HOST, HTTP, SYNC, HostContext, HostServices, define
from .spec import GUEST_DIR, MiB, PluginSpec

log = logging.getLogger("blocksync.plugins")

TICK_SECONDS = 0.01
#: Imports a plugin may have besides WASI: the host's own interfaces.
PROVIDED = frozenset({HOST, HTTP, SYNC, f"{contract.PACKAGE}/types@0.1.0"})
UNLIMITED_FUEL = 2**63 - 1


class Runtime:
    """The process's wasmtime engine and the watchdog that ticks its epoch."""

    def __init__(self) -> None:
        config = Config()
        config.epoch_interruption = True
        config.consume_fuel = True  # engine-wide; plugins without a fuel limit get all of it
        self.engine = Engine(config)
        self.engine_key = f"wasmtime {package_version('wasmtime')}; epoch; fuel"
        ticker = threading.Thread(target=self._tick, name="blocksync-wasm-watchdog", daemon=True)
        ticker.start()

    def _tick(self) -> None:
        stop = threading.Event()
        while not stop.wait(TICK_SECONDS):
            self.engine.increment_epoch()

    def cache(self, folder: Path | None) -> CompileCache:
        return CompileCache(folder, self.engine_key)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The one engine of this process (wasmtime wants a single engine shared by all stores)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


@dataclass(frozen=True)
class ComponentInfo:
    """What a component offers and needs, read before it is instantiated."""

    path: Path
    sha256: str
    size: int
    exports: dict[str, str]  # interface -> version, for pattern:extension interfaces
    imports: tuple[str, ...]
    signatures: dict[str, dict[str, str]] = field(repr=False)

    @property
    def wasi(self) -> bool:
        return any(name.startswith("wasi:") for name in self.imports)

    @property
    def version(self) -> str:
        return f"sha256:{self.sha256[:12]}"


def _refuse(name: str, version: str, detail: str) -> PluginRefused:
    return PluginRefused(name, version, "load", detail)


def read_component(
    path: Path, name: str, cache: CompileCache, pin: str | None = None
) -> tuple[Component, ComponentInfo]:
    """Read, pin-check, compile (cached) and inspect a component; PluginRefused if unfit."""
    component, info = compile_component(path, name, cache, pin)
    check(info, name)
    return component, info


def compile_component(
    path: Path, name: str, cache: CompileCache, pin: str | None = None
) -> tuple[Component, ComponentInfo]:
    """Read, pin-check, compile (cached) and inspect a component, without judging its exports."""
    engine = runtime().engine
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _refuse(name, str(path), f"cannot read {path}: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    version = f"sha256:{sha[:12]}"
    if pin is not None and pin != sha:
        raise _refuse(name, version, f"{path} has sha256 {sha}, but the config pins {pin}")
    if data[:4] != b"\0asm":
        raise _refuse(name, version, f"{path} is not a WebAssembly file")
    if data[4:8] == b"\x01\x00\x00\x00":
        raise _refuse(name, version, f"{path} is a core WebAssembly module, not a component")

    def compile() -> Component:
        try:
            return Component(engine, data)
        except WasmtimeError as exc:
            raise _refuse(name, version, f"{path} is not a valid component: {_last_line(exc)}") from exc

    component = cache.load(engine, sha, compile)
    return component, inspect(component, path, sha, len(data))


def inspect(component: Component, path: Path, sha: str, size: int) -> ComponentInfo:
    engine = runtime().engine
    ctype = component.type
    exports: dict[str, str] = {}
    signatures: dict[str, dict[str, str]] = {}
    for export, ext in ctype.exports(engine).items():
        parsed = contract.parse_export_name(export)
        if parsed is None or not isinstance(ext.ty, ComponentInstanceType):
            continue
        interface, version = parsed
        exports[interface] = version
        signatures[interface] = {
            fname: contract.render_func(f.ty)
            for fname, f in ext.ty.exports(engine).items()
            if isinstance(f.ty, FuncType)
        }
    return ComponentInfo(path, sha, size, exports, tuple(sorted(ctype.imports(engine))), signatures)


def check(info: ComponentInfo, name: str) -> None:
    """Refuse unsupported versions, wrong signatures and imports the host does not provide."""

    def refuse(detail: str) -> PluginRefused:
        return _refuse(name, info.version, detail)

    ours = {i: v for i, v in info.exports.items() if i in contract.INTERFACES}
    if not ours:
        raise refuse(
            "exports none of the pattern:extension interfaces "
            f"({', '.join(contract.INTERFACES)}); found {', '.join(info.exports) or 'none'}"
        )
    for interface, version in ours.items():
        if version not in contract.SUPPORTED_VERSIONS:
            raise refuse(
                f"exports {interface}@{version or '(unversioned)'}; this blocksync supports "
                f"{', '.join(f'{interface}@{v}' for v in contract.SUPPORTED_VERSIONS)}"
            )
        found = info.signatures[interface]
        for fname, expected in contract.SIGNATURES[interface].items():
            actual = found.get(fname)
            if actual is None:
                raise refuse(f"{interface} does not export function {fname!r}")
            if actual != expected:
                raise refuse(f"{interface}.{fname} has type {actual}; expected {expected}")
    unknown = [
        i for i in info.imports
        if i not in PROVIDED and not (i.startswith("wasi:") and not i.startswith("wasi:http/"))
    ]
    if unknown:
        raise refuse(f"imports what the host does not provide: {', '.join(unknown)}")


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _trap_reason(exc: WasmtimeError) -> str:
    text = str(exc)
    if "interrupt" in text:
        return "timeout"
    if "all fuel consumed" in text:
        return "fuel"
    if "memory" in text and ("limit" in text or "exceeds" in text):
        return "memory"
    return "trap"


class _LineLog:
    """Guest stdout/stderr as log lines under the plugin's logger."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self._logger, self._level, self._buffer = logger, level, b""

    def __call__(self, data: bytes) -> None:
        self._buffer += bytes(data)
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._logger.log(self._level, "%s", line.decode("utf-8", "replace"))

    def flush(self) -> None:
        """Log what is left without a newline (at the end of each call: it was lost before,
        or glued to the next call's output)."""
        if self._buffer:
            line, self._buffer = self._buffer, b""
            self._logger.log(self._level, "%s", line.decode("utf-8", "replace"))


@dataclass
class _Live:
    store: Store
    instance: Instance
    funcs: dict[tuple[str, str], Any]


class Plugin:
    """A loaded plugin: its component, grants, and (lazily) one live instance."""

    def __init__(
        self,
        spec: PluginSpec,
        component: Component,
        info: ComponentInfo,
        services: HostServices,
        sync_bases: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.spec = spec
        self.info = info
        self._component = component
        self.host = HostContext(spec, services)
        self._linker = Linker(runtime().engine)
        if info.wasi:
            self._linker.add_wasip2()
        with self._linker.root() as root:
            define(root, self.host, sync_bases or {})
        self._lifts: dict[tuple[str, str], tuple[lift.Lift, bool, list[lift.Lower]]] = {}
        self._live: _Live | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"plugin-{spec.key}")
        self._stdout = _LineLog(self.host.log, logging.INFO)
        self._stderr = _LineLog(self.host.log, logging.WARNING)

    @property
    def name(self) -> str:
        return self.spec.key

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def interfaces(self) -> tuple[str, ...]:
        return tuple(i for i in contract.INTERFACES if i in self.info.exports)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._live = None

    # -- calling --------------------------------------------------------------------------

    def call(self, interface: str, function: str, *args: Any) -> Any:
        """Call an export on the plugin's worker thread; the lifted result (see ``lift``)."""
        return self._executor.submit(self._call, interface, function, args).result()

    async def acall(self, interface: str, function: str, *args: Any) -> Any:
        """``call`` for asyncio code: the event loop keeps running while the plugin works."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, interface, function, args)

    def call_result(self, interface: str, function: str, *args: Any) -> Any:
        """Call a function returning a WIT ``result``: its ok value, or PluginCallFailed."""
        tag, value = self.call(interface, function, *args)
        if tag == "err":
            raise PluginCallFailed(self.name, self.version, f"{interface}.{function}", str(value))
        return value

    def _call(self, interface: str, function: str, args: tuple[Any, ...]) -> Any:
        where = f"{interface}.{function}"
        limits = self.spec.limits
        live = self._instance(where)
        func, lifted, has_result, lowers = (
            live.funcs.get((interface, function)) or self._func(live, interface, function)
        )
        live.store.set_epoch_deadline(max(1, round(limits.timeout / TICK_SECONDS)))
        live.store.set_fuel(limits.fuel or UNLIMITED_FUEL)
        try:
            value = lift.call(func, live.store, lifted, has_result, *args, lowers=lowers)
        except WasmtimeError as exc:
            self._live = None
            reason = _trap_reason(exc)
            detail = {
                "timeout": f"stopped after its time limit of {limits.timeout:g} s",
                "fuel": f"ran out of fuel ({limits.fuel})",
            }.get(reason, f"trapped: {_last_line(exc)}")
            if "unreachable" in detail:
                # how a guest dies on an uncaught error, a refused memory.grow included
                detail += (
                    f" (an uncaught guest error, or memory growth refused at its cap of "
                    f"{limits.memory_mb} MiB)"
                )
            raise PluginTrapped(self.name, self.version, where, reason, detail) from exc
        except Exception as exc:
            # A host function answered a value wasmtime-py could not lower (a host bug, e.g. a
            # record that is no Record): wasmtime-py re-raises it bare after abandoning the call
            # inside the instance, which then traps "cannot enter component instance" on every
            # later call. Discard it and name plugin and call, like any trap.
            self._live = None
            raise PluginTrapped(
                self.name, self.version, where, "trap",
                f"host-side error: {type(exc).__name__}: {exc}",
            ) from exc
        finally:
            self._stdout.flush()
            self._stderr.flush()
        size = _size(value)
        if size > limits.result_mb * MiB:
            self._live = None
            raise PluginTrapped(
                self.name, self.version, where, "result-size",
                f"result of {size} bytes is over the cap of {limits.result_mb} MiB",
            )
        return value

    def _func(
        self, live: _Live, interface: str, function: str
    ) -> tuple[Any, lift.Lift, bool, list[lift.Lower]]:
        export = live.instance.get_export_index(live.store, contract.export_name(interface))
        index = None if export is None else live.instance.get_export_index(live.store, function, export)
        func = None if index is None else live.instance.get_func(live.store, index)
        if func is None:
            raise PluginCallFailed(
                self.name, self.version, f"{interface}.{function}", "the plugin does not export it"
            )
        key = (interface, function)
        if key not in self._lifts:  # converters outlive instances: types never change
            ftype = func.type(live.store)
            self._lifts[key] = (
                lift.build_lift(ftype.result),
                ftype.result is not None,
                [lift.build_lower(t) for _name, t in ftype.params],
            )
        entry = (func, *self._lifts[key])
        live.funcs[key] = entry
        return entry

    def _instance(self, where: str) -> _Live:
        if self._live is not None:
            return self._live
        limits = self.spec.limits
        store = Store(runtime().engine)
        store.set_limits(memory_size=limits.memory_mb * MiB)
        store.set_fuel(limits.fuel or UNLIMITED_FUEL)
        store.set_epoch_deadline(max(1, round(limits.timeout / TICK_SECONDS)))
        if self.info.wasi:  # a linker with WASI and a store without it aborts the process
            store.set_wasi(self._wasi_config())
        try:
            instance = self._linker.instantiate(store, self._component)
        except WasmtimeError as exc:
            raise PluginTrapped(
                self.name, self.version, where, _trap_reason(exc),
                f"cannot instantiate: {_last_line(exc)}",
            ) from exc
        self._live = _Live(store, instance, {})
        return self._live

    def _wasi_config(self) -> WasiConfig:
        wasi = WasiConfig()
        wasi.stdout_custom = self._stdout
        wasi.stderr_custom = self._stderr
        if self.spec.dir is not None:
            wasi.preopen_dir(
                str(self.spec.dir), GUEST_DIR, fs_mutable=self.spec.dir_mode == "read-write"
            )
        return wasi


def _size(value: Any) -> int:
    """Bytes a lifted value holds, roughly: what the result-size cap measures."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value) + 8 * len(value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values()) + 8 * len(value)
    return 8


def load(
    spec: PluginSpec,
    services: HostServices | None = None,
    cache_folder: Path | None = None,
    sync_bases: dict[str, Callable[..., Any]] | None = None,
) -> Plugin:
    """Load the plugin ``spec`` names; PluginRefused before any of its code runs if unfit."""
    component, info = read_component(spec.path, spec.key, runtime().cache(cache_folder), spec.sha256)
    if spec.dir is not None and not spec.dir.is_dir():
        raise _refuse(spec.key, info.version, f"granted folder {spec.dir} does not exist")
    plugin = Plugin(spec, component, info, services or HostServices(), sync_bases)
    if "data-block" in plugin.interfaces:
        # its own rules bound what its host calls may do (the user's config narrows them)
        rules = plugin.call("data-block", "permission-rules")
        plugin.host.plugin_rules = tuple(permission_rule(r) for r in rules)
    return plugin


@dataclass(frozen=True)
class Inspection:
    """What ``blocksync plugin inspect`` shows: the component, and why it would be refused."""

    info: ComponentInfo
    problem: str | None


def inspect_file(path: Path, cache_folder: Path | None = None) -> Inspection:
    """Compile (cached) and describe a component; a file that is no component raises."""
    _, info = compile_component(path, path.name, runtime().cache(cache_folder))
    try:
        check(info, path.name)
    except PluginRefused as exc:
        return Inspection(info, exc.detail)
    return Inspection(info, None)
