"""The WASM host: one engine per process, components checked before they run, sandboxed calls.

``load(spec, ...)`` reads the .wasm, checks its sha256 pin, compiles it (or loads the compiled
artifact from the cache), and reads its exports *before instantiating*: which of ``data-block``,
``data-stream`` and ``tool`` it offers, at which interface version, with which signatures, and
what it imports. Anything wrong refuses the plugin before any of its code runs.

A :class:`Plugin` runs its calls one at a time on its own worker thread, each with a wall-clock
deadline (epoch interruption, ticked by a watchdog thread), optional fuel, a linear-memory cap
and a result-size cap. A trap or a limit discards the instance; the next call instantiates a
fresh one from the compiled component (about a millisecond).

Keeping the process alive around a hostile guest:

* No Python code runs on wasmtime's own threads. A guest's WASI stdout and stderr go to files
  wasmtime writes, read back into the plugin's log after each call: Python callbacks for them
  ran on tokio worker threads, and one running while the interpreter shut down (a store
  collected at exit, after a trap) could not take the GIL, unwound through Rust and aborted the
  process (SIGABRT, exit 134).
* Instances and stores are dropped on the plugin's own thread, between calls: after a trap,
  after :data:`IDLE_SECONDS` unused (a stream's excepted) or on :meth:`Plugin.release`, and at
  :meth:`Plugin.close`, which an ``atexit`` hook calls for every plugin still open, before the
  interpreter starts to shut down. Instances hold tens of MB; the next call makes a new one
  from the compiled component, which sources of the same file share (see :mod:`.cache`).
* Host functions never raise into wasmtime-py (see :mod:`.hostfuncs`).
* Host functions are bounded by the call's time limit (:mod:`blocksync.deadlines`). A WASI
  call the guest makes (a FIFO opened in its granted folder) cannot be: when a call runs
  :data:`STUCK_GRACE` seconds past its limit, the first waiter to see it (its own caller, or
  the caller of a call queued behind it) fails that call with reason ``timeout``; the worker
  thread, a daemon, is abandoned with its instance, and a new one serves the queued calls.

Hot reload: before each call, on the worker thread, a plugin compares its file's identity
(``os.stat``: device, inode, size, mtime_ns) with the one it last looked at. When it differs the
file is read again; the same sha256 only updates the identity, a new one is loaded like at
first (pin, compile through the cache, exports checked, ``vet`` hook, a data-block's
``permission-rules`` asked of the new instance) and swapped in before the call runs. Calls are
serialised on that thread, so a swap never happens during a call. A new version that fails any
of this is not used: the old one keeps serving, the reason is logged as a warning under
``blocksync.plugins`` and kept as :attr:`Plugin.last_error`, and that same file is not tried
again (a later change is). A new version must export the same interfaces as the one serving.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import os
import queue
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from wasmtime import Config, Engine, Store, WasiConfig, WasmtimeError
from wasmtime.component import Component, ComponentInstanceType, FuncType, Instance, Linker

from blocksync import deadlines
from blocksync.errors import BlocksyncError, PluginCallFailed, PluginRefused, PluginTrapped
from blocksync.logs import PluginLog
from blocksync.plugins.spec import GUEST_DIR, MiB, PluginSpec, check_kind
from blocksync.plugins.trust import TrustPolicy, enforce, signature_path
from blocksync.shared.progress import size_text
from blocksync.shared.wit import PermissionLevel, PermissionRule

from . import contract, lift
from .cache import CompileCache
from .hostfuncs import (
    HOST,
    HTTP,
    SYNC,
    BasesFactory,
    HostContext,
    HostServices,
    SyncBaseFunctions,
    define,
)

log = logging.getLogger("blocksync.plugins")

TICK_SECONDS = 0.01
#: how long past its time limit a call stuck outside the guest's code (in a WASI call) is waited for
STUCK_GRACE = 2.0
#: an instance unused this long is dropped (streams excepted: their lifecycle lives in the guest)
IDLE_SECONDS = 60.0
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


def permission_rule(record: dict[str, Any]) -> PermissionRule:
    """A WIT ``permission-rule`` record as the host's value."""
    return PermissionRule(record["pattern"], PermissionLevel(record["permission"]))


def _refuse(name: str, version: str, detail: str) -> PluginRefused:
    return PluginRefused(name, version, "load", detail)


def read_component(
    path: Path,
    name: str,
    cache: CompileCache,
    pin: str | None = None,
    trust: TrustPolicy | None = None,
) -> tuple[Component, ComponentInfo]:
    """Read, pin-check, compile (cached) and inspect a component; PluginRefused if unfit."""
    component, info = compile_component(path, name, cache, pin, trust)
    check(info, name)
    return component, info


def compile_component(
    path: Path,
    name: str,
    cache: CompileCache,
    pin: str | None = None,
    trust: TrustPolicy | None = None,
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
    if trust is not None:  # signature check on these very bytes, before compiling (trust.py)
        enforce(trust, name, version, path, sha, len(data))
    if data[:4] != b"\0asm":
        raise _refuse(name, version, f"{path} is not a WebAssembly file")
    if data[4:8] == b"\x01\x00\x00\x00":
        raise _refuse(name, version, f"{path} is a core WebAssembly module, not a component")

    def compile() -> Component:
        try:
            return Component(engine, data)
        except WasmtimeError as exc:
            raise _refuse(
                name, version, f"{path} is not a valid component: {_last_line(exc)}"
            ) from exc

    component = cache.load(engine, sha, compile, f"{path.name} ({size_text(len(data))})")
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
    optional = {i: v for i, v in info.exports.items() if i in contract.OPTIONAL_INTERFACES}
    for interface, version in (ours | optional).items():
        if version not in contract.SUPPORTED_VERSIONS:
            raise refuse(
                f"exports {interface}@{version or '(unversioned)'}; this blocksync supports "
                f"{', '.join(f'{interface}@{v}' for v in contract.SUPPORTED_VERSIONS)}"
            )
        found = info.signatures[interface]
        for fname, expected in contract.SIGNATURES[interface].items():
            actual = found.get(fname)
            if actual is None and (interface, fname) in contract.OPTIONAL_FUNCTIONS:
                continue
            if actual is None:
                raise refuse(f"{interface} does not export function {fname!r}")
            if actual != expected:
                raise refuse(f"{interface}.{fname} has type {actual}; expected {expected}")
    unknown = [
        i
        for i in info.imports
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


class _Capture:
    """A guest's WASI stdout or stderr: a file wasmtime writes (no Python code runs on wasmtime's
    threads; see the module docstring), read back as lines of the plugin's log after each call.
    wasmtime truncates the file for each new instance (:meth:`attach`)."""

    def __init__(self, logger: PluginLog, level: int, name: str) -> None:
        self._logger, self._level = logger, level
        fd, self.path = tempfile.mkstemp(prefix=f"blocksync-plugin-{name}-", suffix=".log")
        os.close(fd)
        self._offset = 0

    def attach(self) -> str:
        self.drain()
        self._offset = 0
        return self.path

    def drain(self) -> None:
        """Log what the guest wrote since the last drain, line by line (a last line without its
        newline too: it was lost before, or glued to the next call's output)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        self._offset += len(data)
        for line in data.decode("utf-8", "replace").splitlines():
            self._logger.log(self._level, "%s", line)

    def close(self) -> None:
        self.drain()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _Worker(Executor):
    """One daemon thread running a plugin's work in order (a ThreadPoolExecutor's threads are
    joined at exit: one stuck in a WASI call would keep the process from ever exiting)."""

    def __init__(self, name: str, on_idle: Callable[[], None] | None = None) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._on_idle = on_idle
        self._closed = False
        #: the future of the work running now (None: idle)
        self.running: Future[Any] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("the plugin is closed")
        future: Future[Any] = Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _next(self) -> tuple[Future[Any], Callable[[], Any]] | None:
        """The next work, after calling ``on_idle`` once if none came for IDLE_SECONDS."""
        if self._on_idle is None:
            return self._queue.get()
        try:
            return self._queue.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            self._on_idle()
            return self._queue.get()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            future, work = item
            if not future.set_running_or_notify_cancel():
                continue
            self.running = future
            # a call abandoned as stuck has failed already: its thread may come back later
            with suppress(InvalidStateError):
                try:
                    future.set_result(work())
                except BaseException as exc:  # noqa: BLE001 - the waiting caller gets it
                    future.set_exception(exc)
            self.running = None
            del item, future, work  # not kept by the error's traceback (see Plugin._wait)

    def hand_over(self, successor: _Worker) -> None:
        """Give the work still queued to ``successor`` and stop (this thread is stuck)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                successor._queue.put(item)
        self.shutdown(wait=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


@dataclass
class _Live:
    store: Store
    instance: Instance
    funcs: dict[tuple[str, str], Any]


#: (device, inode, size, mtime_ns) of a plugin's file; None when it cannot be stat'ed
FileIdentity = tuple[int, int, int, int, tuple[int, int, int] | None] | None


def file_identity(path: Path) -> FileIdentity:
    """What tells cheaply that a file was replaced or rewritten (two ``os.stat``): the file's
    and its signature's (a version refused as unsigned is tried again once its .sig arrives)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    try:
        sig = os.stat(signature_path(path))
        signed: tuple[int, int, int] | None = (sig.st_ino, sig.st_size, sig.st_mtime_ns)
    except OSError:
        signed = None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, signed)


@dataclass
class _Version:
    """One loaded version of a plugin's file: its component, linker and (lazily) instance."""

    component: Component
    info: ComponentInfo
    linker: Linker
    lifts: dict[tuple[str, str], tuple[lift.Lift, bool, list[lift.Lower]]] = field(
        default_factory=dict
    )
    live: _Live | None = None

    def drop_live(self) -> None:
        """Forget the instance and free its store now, the guest's memory with it (up to its
        cap): a trapped call's traceback holds the instance in a reference cycle, which would
        keep that memory until a collection comes."""
        live, self.live = self.live, None
        if live is not None:
            live.store.close()


class Plugin:
    """A loaded plugin: its component, grants, and (lazily) one live instance. Its file is
    watched: a changed file is loaded and swapped in between calls (see the module docstring).

    ``vet`` is called before a changed file is loaded; raising a BlocksyncError refuses it (the
    registry checks the plugin's manifest there)."""

    def __init__(
        self,
        spec: PluginSpec,
        component: Component,
        info: ComponentInfo,
        services: HostServices,
        sync_bases: BasesFactory | None = None,
        *,
        cache_folder: Path | None = None,
        identity: FileIdentity = None,
        vet: Callable[[], None] | None = None,
        hot_reload: bool = True,
    ) -> None:
        self.spec = spec
        #: one host context for the plugin's whole life: swaps keep it (and what points to it)
        self.host = HostContext(spec, services)
        #: its sync bases, built once with that context: every version's linker gets them
        self.sync_bases: SyncBaseFunctions | None = (
            None if sync_bases is None else sync_bases(self.host, _interfaces(info))
        )
        self._cache_folder = cache_folder
        self._vet = vet
        self.hot_reload = hot_reload
        self._version = self._new_version(component, info)
        self.host.sha256 = info.sha256  # what its writes name as their maker
        #: identity of the file now serving, and of the file last looked at
        self._identity = identity if identity is not None else file_identity(spec.path)
        self._seen = self._identity
        self._pending = False
        #: why the newest file is not serving (None when it is)
        self.last_error: str | None = None
        self.reloads = 0
        self._worker = self._new_worker()
        #: when the call running on the worker started (``time.monotonic()``), None between calls
        self._call_started: float | None = None
        self._call_where = ""  # the function of the call started last
        self._abandoning = threading.Lock()  # one waiter at a time looks for a stuck call
        self._stdout = _Capture(self.host.log, logging.INFO, spec.key)
        self._stderr = _Capture(self.host.log, logging.WARNING, spec.key)
        self._closed = False
        _open_plugins.add(self)
        self._finalizer = self._finish_with_worker()

    def _new_version(self, component: Component, info: ComponentInfo) -> _Version:
        linker = Linker(runtime().engine)
        if info.wasi:
            linker.add_wasip2()
        with linker.root() as root:
            define(root, self.host, self.sync_bases, _result_lowers(component))
        return _Version(component, info, linker)

    @property
    def info(self) -> ComponentInfo:
        return self._version.info

    @property
    def _live(self) -> _Live | None:
        return self._version.live

    @property
    def name(self) -> str:
        return self.spec.key

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def interfaces(self) -> tuple[str, ...]:
        return _interfaces(self.info)

    def close(self) -> None:
        """Drop the instance on the plugin's thread and stop the thread (waiting for a call in
        progress, within its time limit). Idempotent; called at exit for plugins left open."""
        if self._closed:
            return
        try:
            self.release()
        except PluginTrapped:  # stuck in a WASI call: the abandoned thread keeps its instance
            pass
        self._closed = True
        _open_plugins.discard(self)
        self._finalizer()

    def _new_worker(self) -> _Worker:
        """The thread running the calls; it drops an idle instance (weakly: an open plugin's
        thread must not keep the plugin alive), except a stream's."""
        drop = weakref.WeakMethod(self._drop_instance)

        def idle() -> None:
            method = drop()
            if method is not None:
                method()

        stream = "data-stream" in self.interfaces
        return _Worker(f"plugin-{self.spec.key}", None if stream else idle)

    def _finish_with_worker(self) -> weakref.finalize[Any, Any]:
        """A plugin dropped without close(): its thread and capture files go with it. Not at
        exit: the exit hook closes open plugins properly, instance dropped on its thread."""
        finalizer = weakref.finalize(self, _finish, self._worker, self._stdout, self._stderr)
        finalizer.atexit = False
        return finalizer

    def release(self) -> None:
        """Drop the live instance now, between calls (its memory with it); the next call makes
        a new one. For a source whose run is over: an idle instance holds tens of MB."""
        if not self._closed:
            self._wait(self._worker.submit(self._drop_instance), "release")

    def _drop_instance(self) -> None:
        self._version.drop_live()

    # -- hot reload -----------------------------------------------------------------------

    def changed(self) -> bool:
        """Whether the file differs from the one last looked at (one ``os.stat``)."""
        return file_identity(self.spec.path) != self._seen

    def refresh(self) -> bool:
        """Look at the file now, between calls; True if a new version was swapped in."""
        return bool(self._worker.submit(self._check_file).result())

    def refresh_soon(self) -> None:
        """``refresh`` without waiting (for a watcher): queued behind the running call."""
        if self._pending or not self.changed():
            return
        self._pending = True
        try:
            self._worker.submit(self._check_file)
        except RuntimeError:  # closed
            self._pending = False

    def _check_file(self) -> bool:
        """On the worker thread: load and swap in a changed file (see the module docstring)."""
        self._pending = False
        identity = file_identity(self.spec.path)
        if identity == self._seen:
            return False
        self._seen = identity
        try:
            return self._reload(identity)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong, the old version serves
            self.last_error = (
                str(exc) if isinstance(exc, BlocksyncError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning(
                "plugin %r: keeping version %s: the changed file %s is not used: %s",
                self.name,
                self.version,
                self.spec.path,
                exc,
            )
            return False

    def _reload(self, identity: FileIdentity) -> bool:
        name, old = self.name, self._version
        if identity is None:
            raise _refuse(name, old.info.version, f"cannot read {self.spec.path}: it is gone")
        if self._vet is not None:
            self._vet()
        cache = runtime().cache(self._cache_folder)
        component, info = read_component(
            self.spec.path, name, cache, self.spec.sha256, self.spec.trust
        )
        if info.sha256 == old.info.sha256:
            self._identity = identity  # touched, or back to the version serving
            self.last_error = None
            return False
        if _interfaces(info) != _interfaces(old.info):
            raise _refuse(
                name,
                info.version,
                f"exports {', '.join(_interfaces(info))}, but the version serving exports "
                f"{', '.join(_interfaces(old.info))}: a new version must keep the same "
                "interfaces (restart the host to change them)",
            )
        candidate = self._new_version(component, info)
        rules = None
        if "data-block" in _interfaces(info):
            try:
                found = self._call_on(candidate, "data-block", "permission-rules", ())
                rules = tuple(permission_rule(r) for r in found)
            except (ValueError, TypeError, AttributeError) as exc:
                raise _refuse(name, info.version, f"bad permission-rules: {exc}") from exc
        self._version = candidate
        self.host.sha256 = info.sha256
        if rules is not None:
            self.host.plugin_rules = rules
        self._identity = identity
        self.last_error = None
        self.reloads += 1
        log.info(
            "plugin %r: now %s (was %s), from %s",
            name,
            info.version,
            old.info.version,
            self.spec.path,
        )
        return True

    # -- calling --------------------------------------------------------------------------

    def call(self, interface: str, function: str, *args: Any) -> Any:
        """Call an export on the plugin's worker thread; the lifted result (see ``lift``)."""
        # no local for the future: see _wait
        return self._wait(
            self._worker.submit(self._call, interface, function, args), f"{interface}.{function}"
        )

    async def acall(self, interface: str, function: str, *args: Any) -> Any:
        """``call`` for asyncio code: the event loop keeps running while the plugin works."""
        return await asyncio.to_thread(self.call, interface, function, *args)

    def _wait(self, future: Future[Any], where: str) -> Any:
        """The future's result; PluginTrapped when it is the call found stuck past its limit
        (by this waiter or another: see :meth:`_abandon_if_stuck`)."""
        limit = self.spec.limits.timeout + STUCK_GRACE
        try:
            while True:
                try:
                    return future.result(timeout=min(limit, 1.0))
                except FutureTimeout:
                    self._abandon_if_stuck(limit)
        finally:
            # An error's traceback keeps this frame, and the future keeps the error: a cycle
            # only the collector frees, rarely, holding the failed call's store (and a huge
            # result) meanwhile; 200 failing calls held gigabytes.
            del future

    def _abandon_if_stuck(self, limit: float) -> None:
        """If the call running has run past ``limit`` (stuck where the epoch deadline never
        looks), fail it as a timeout and abandon its thread. Any waiter may find it, the one
        of a call queued behind it too: the stuck call's own future gets the error, never the
        finder's (whose call, queued, runs on the new thread)."""
        with self._abandoning:
            # the future first: a start read after it is its call's, or a later call's
            stuck = self._worker.running
            started = self._call_started
            if stuck is None or started is None or time.monotonic() - started <= limit:
                return
            self._abandon_worker()
            with suppress(InvalidStateError):  # it ended at this very moment
                stuck.set_exception(
                    PluginTrapped(
                        self.name,
                        self.version,
                        self._call_where,
                        "timeout",
                        f"stopped after its time limit of {self.spec.limits.timeout:g} s: "
                        f"stuck in {self.host.host_call or 'a WASI call (file, clock or stdio)'}"
                        ", which the limit cannot interrupt; its thread was abandoned",
                    )
                )

    def _abandon_worker(self) -> None:
        """Leave a stuck call's thread (a daemon) with its instance; a new thread serves on."""
        stuck, self._worker = self._worker, self._new_worker()
        self._call_started = None
        self._version.live = None
        stuck.hand_over(self._worker)  # calls queued behind the stuck one run on the new thread
        self._finalizer.detach()
        self._finalizer = self._finish_with_worker()
        log.warning(
            "plugin %r: a call is stuck outside the guest's code; its thread is abandoned",
            self.name,
        )

    def call_result(self, interface: str, function: str, *args: Any) -> Any:
        """Call a function returning a WIT ``result``: its ok value, or PluginCallFailed."""
        tag, value = self.call(interface, function, *args)
        if tag == "err":
            raise PluginCallFailed(self.name, self.version, f"{interface}.{function}", str(value))
        return value

    def _call(self, interface: str, function: str, args: tuple[Any, ...]) -> Any:
        if self.hot_reload:
            self._check_file()
        return self._call_on(self._version, interface, function, args)

    def _call_on(self, v: _Version, interface: str, function: str, args: tuple[Any, ...]) -> Any:
        where = f"{interface}.{function}"
        version = v.info.version
        limits = self.spec.limits
        live = self._instance(v, where)
        func, lifted, has_result, lowers = live.funcs.get((interface, function)) or self._func(
            v, live, interface, function
        )
        live.store.set_epoch_deadline(max(1, round(limits.timeout / TICK_SECONDS)))
        live.store.set_fuel(limits.fuel or UNLIMITED_FUEL)
        self.host.fault = None
        self._call_where = where
        self._call_started = time.monotonic()
        self.host.deadline = self._call_started + limits.timeout
        try:
            value = lift.call(func, live.store, lifted, has_result, *args, lowers=lowers)
        except WasmtimeError as exc:
            v.drop_live()
            raise self._trapped(where, version, exc) from exc
        except Exception as exc:
            # wasmtime-py re-raised an exception bare (its process-wide slot; host functions
            # never put one there, see hostfuncs): the call was abandoned inside the instance,
            # which would trap "cannot enter component instance" on every later call.
            v.drop_live()
            raise PluginTrapped(
                self.name,
                version,
                where,
                "trap",
                f"host-side error: {type(exc).__name__}: {exc}",
            ) from exc
        finally:
            self._call_started = self.host.deadline = None
            self._stdout.drain()
            self._stderr.drain()
        size = _size(value)
        if size > limits.result_mb * MiB:
            v.drop_live()
            del value  # not kept by the error's traceback (see _wait)
            raise PluginTrapped(
                self.name,
                version,
                where,
                "result-size",
                f"result of {size} bytes is over the cap of {limits.result_mb} MiB",
            )
        return value

    def _trapped(self, where: str, version: str, exc: WasmtimeError) -> PluginTrapped:
        """The error of a call that trapped: why, in the user's terms. A ``BaseException`` a
        host function caught (``KeyboardInterrupt``, ``SystemExit``) is raised again here,
        now that the plugin call is over."""
        limits = self.spec.limits
        fault = self.host.take_fault()
        if fault is not None:
            error, function = fault
            if not isinstance(error, Exception):
                raise error
            if isinstance(error, TimeoutError) and deadlines.expired_at(self.host.deadline):
                return PluginTrapped(
                    self.name,
                    version,
                    where,
                    "timeout",
                    f"stopped after its time limit of {limits.timeout:g} s, in host function "
                    f"{function}",
                )
            self.host.log.error("host function %s failed", function, exc_info=error)
            trapped = PluginTrapped(
                self.name,
                version,
                where,
                "trap",
                f"host function {function} failed: {type(error).__name__}: {error}",
            )
            trapped.__cause__ = error
            return trapped
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
        return PluginTrapped(self.name, version, where, reason, detail)

    def _func(
        self, v: _Version, live: _Live, interface: str, function: str
    ) -> tuple[Any, lift.Lift, bool, list[lift.Lower]]:
        export = live.instance.get_export_index(live.store, contract.export_name(interface))
        index = (
            None if export is None else live.instance.get_export_index(live.store, function, export)
        )
        func = None if index is None else live.instance.get_func(live.store, index)
        if func is None:
            raise PluginCallFailed(
                self.name,
                v.info.version,
                f"{interface}.{function}",
                "the plugin does not export it",
            )
        key = (interface, function)
        if key not in v.lifts:  # converters outlive instances: a version's types never change
            ftype = func.type(live.store)
            v.lifts[key] = (
                lift.build_lift(ftype.result),
                ftype.result is not None,
                [lift.build_lower(t) for _name, t in ftype.params],
            )
        entry = (func, *v.lifts[key])
        live.funcs[key] = entry
        return entry

    def _instance(self, v: _Version, where: str) -> _Live:
        if v.live is not None:
            return v.live
        limits = self.spec.limits
        store = Store(runtime().engine)
        store.set_limits(memory_size=limits.memory_mb * MiB)
        store.set_fuel(limits.fuel or UNLIMITED_FUEL)
        store.set_epoch_deadline(max(1, round(limits.timeout / TICK_SECONDS)))
        if v.info.wasi:  # a linker with WASI and a store without it aborts the process
            store.set_wasi(self._wasi_config())
        try:
            instance = v.linker.instantiate(store, v.component)
        except WasmtimeError as exc:
            raise PluginTrapped(
                self.name,
                v.info.version,
                where,
                _trap_reason(exc),
                f"cannot instantiate: {_last_line(exc)}",
            ) from exc
        v.live = _Live(store, instance, {})
        return v.live

    def _wasi_config(self) -> WasiConfig:
        wasi = WasiConfig()
        wasi.stdout_file = self._stdout.attach()
        wasi.stderr_file = self._stderr.attach()
        if self.spec.dir is not None:
            wasi.preopen_dir(
                str(self.spec.dir), GUEST_DIR, fs_mutable=self.spec.dir_mode == "read-write"
            )
        return wasi


def _result_lowers(component: Component) -> dict[tuple[str, str], lift.Lower]:
    """(interface, function) -> the lowering of the result, for each host function the
    component imports that returns one (checked by the host function's guard)."""
    engine = runtime().engine
    lowers: dict[tuple[str, str], lift.Lower] = {}
    for interface, item in component.type.imports(engine).items():
        if not isinstance(item.ty, ComponentInstanceType):
            continue
        for function, f in item.ty.exports(engine).items():
            if isinstance(f.ty, FuncType) and f.ty.result is not None:
                lowers[(interface, function)] = lift.build_lower(f.ty.result)
    return lowers


def _finish(worker: _Worker, *captures: _Capture) -> None:
    worker.shutdown(wait=False)
    for capture in captures:
        capture.close()


#: plugins not yet closed, closed at exit (see the module docstring)
_open_plugins: weakref.WeakSet[Plugin] = weakref.WeakSet()


@atexit.register
def _close_open_plugins() -> None:
    for plugin in list(_open_plugins):
        plugin.close()


def _interfaces(info: ComponentInfo) -> tuple[str, ...]:
    return tuple(i for i in contract.INTERFACES if i in info.exports)


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
    sync_bases: BasesFactory | None = None,
    *,
    vet: Callable[[], None] | None = None,
    hot_reload: bool = True,
) -> Plugin:
    """Load the plugin ``spec`` names; PluginRefused before any of its code runs if unfit.
    With ``hot_reload`` the plugin follows changes of its file (see the module docstring).
    ``sync_bases(host, exports)`` makes the plugin's sync bases once its host context exists
    (without: it sees none, :class:`~blocksync.plugins.host.hostfuncs.NoBases`)."""
    identity = file_identity(spec.path)  # before reading: a change while reading is seen later
    component, info = read_component(
        spec.path, spec.key, runtime().cache(cache_folder), spec.sha256, spec.trust
    )
    check_kind(spec, _interfaces(info))  # before its code runs: a kind it cannot serve
    if spec.dir is not None and not spec.dir.is_dir():
        raise _refuse(spec.key, info.version, f"granted folder {spec.dir} does not exist")
    plugin = Plugin(
        spec,
        component,
        info,
        services or HostServices(),
        sync_bases,
        cache_folder=cache_folder,
        identity=identity,
        vet=vet,
        hot_reload=hot_reload,
    )
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

    @property
    def label_namespace(self) -> str | None:
        """Where the label namespace of a data-block source of this plugin comes from (its
        value depends on the plugin's configuration, e.g. the SDK's `tag`); None: the plugin
        is no data-block source."""
        if "data-block" not in self.info.exports:
            return None
        if "label-namespace" in self.info.signatures.get("paging", {}):
            return "declared by the plugin (paging.label-namespace; it may depend on its config)"
        return "none declared: give `label_namespace` in the source's table"


def inspect_file(path: Path, cache_folder: Path | None = None) -> Inspection:
    """Compile (cached) and describe a component; a file that is no component raises."""
    _, info = compile_component(path, path.name, runtime().cache(cache_folder))
    try:
        check(info, path.name)
    except PluginRefused as exc:
        return Inspection(info, exc.detail)
    return Inspection(info, None)
