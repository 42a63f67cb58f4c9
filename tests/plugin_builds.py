"""Build the fixture plugins once and reuse them: `built_plugin("echo_tool")` -> a .wasm path.

Everything the suite builds or compiles lives in one cache folder, ``.test-cache/`` (or
``$BLOCKSYNC_TEST_CACHE``: a CI restores it there), shared by every test, every run and every
worktree, and keyed by CONTENT only, never by a file's identity, so a copied or restored cache
is used as it is:

- ``plugins/``: components. A componentize-py build takes ~10 s, so a component is cached
  under the sha256 of everything that goes into it: the fixture's files, the guest SDK, the WIT
  package, the build arguments and the componentize-py version. Each build writes a temporary
  file and renames it into place, so two pytest processes racing on one fixture both succeed
  (the loser just did the work twice).
- ``host-compiled/``: compiled components (~6 s to compile an 18 MB one, ~30 ms to load), written
  by blocksync's own compile cache (blocksync.plugins.host.cache: keyed by the .wasm's sha256 and the
  engine, trusted by the artifact's sha256). Test stores' ``cache/`` folders link to it
  (tests/stores.py ``share_compile_cache``), so in-process loads and ``blocksync`` subprocesses
  alike compile each component once per suite, not once per test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from importlib.metadata import version
from pathlib import Path
from typing import Any

from wasmtime import wat2wasm
from wasmtime.component import Component

from blocksync.errors import PluginBuildError
from blocksync.plugins.host.runtime import runtime
from blocksync.plugins.tooling.build import (
    SHIPPED_MODULES,
    build,
    guest_sdk_dir,
    shipped_path,
    wit_dir,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "plugins"
TEST_CACHE = Path(os.environ.get("BLOCKSYNC_TEST_CACHE") or ROOT / ".test-cache")
CACHE = TEST_CACHE / "plugins"
HOST_CACHE = TEST_CACHE / "host-compiled"


def _files(folder: Path) -> Iterable[Path]:
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        hidden = any(part.startswith(".") or part == "__pycache__" for part in parts)
        if path.is_file() and not hidden and path.suffix != ".pyc":
            yield path


def source_folder(name: str | Path) -> Path:
    """``fixtures/plugins/<name>``, or the folder itself when given one (a benchmark's plugin)."""
    return name if isinstance(name, Path) else FIXTURES / name


#: one lock per cache entry, so a test needing a component the warm-up is building waits for it
_entry_locks: dict[str, threading.Lock] = {}
_entry_locks_guard = threading.Lock()


@contextmanager
def _entry(target: Path) -> Iterator[None]:
    """Hold ``target``'s cache entry: against this process's other threads (the warm-up), and
    through a lock file against other processes (pytest-xdist workers) building it too."""
    import fcntl

    with _entry_locks_guard:
        lock = _entry_locks.setdefault(target.name, threading.Lock())
    locks = target.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with lock, open(locks / f"{target.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield


def cache_key(name: str | Path, **build_kwargs: Any) -> str:
    digest = hashlib.sha256()
    for label, folder in (
        ("source", source_folder(name)),
        ("sdk", guest_sdk_dir()),
        ("wit", wit_dir()),
    ):
        for path in _files(folder):
            digest.update(f"{label}:{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for module, source in sorted(SHIPPED_MODULES.items()):  # copied into every build
        shipped = shipped_path(source).read_bytes()
        digest.update(f"{module}\0".encode() + hashlib.sha256(shipped).digest())
    extra = {"args": build_kwargs, "componentize-py": version("componentize-py")}
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def built_plugin(name: str | Path, **build_kwargs: Any) -> Path:
    """The component built from `fixtures/plugins/<name>` (or the folder `name`), from the cache
    when it is there."""
    target = CACHE / f"{cache_key(name, **build_kwargs)}.wasm"
    with _entry(target):
        if not target.is_file():
            _build_into(target, name, build_kwargs)
    return target


def _build_into(target: Path, name: str | Path, build_kwargs: dict[str, Any]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f".{target.stem}.{uuid.uuid4().hex}.wasm"
    result = build(source_folder(name), partial, **build_kwargs)
    info = {
        "fixture": source_folder(name).name,
        "args": json.dumps(build_kwargs, sort_keys=True, default=str),
        "world": result.world,
        "interfaces": list(result.interfaces),
        "size": result.size,
        "sha256": result.sha256,
        "wasi": result.wasi,
        "seconds": round(result.seconds, 2),
    }
    info_partial = partial.with_suffix(".json")
    info_partial.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.replace(info_partial, target.with_suffix(".json"))  # before the .wasm: it marks completion
    os.replace(partial, target)
    _forget_older_builds(target, info)


#: builds of other sources of a fixture are kept this long: several checkouts (git worktrees,
#: branches) may share one cache, each with its own version of the guest SDK
KEEP_OTHER_BUILDS = 7 * 24 * 3600


def _forget_older_builds(current: Path, info: dict[str, Any]) -> None:
    """Delete what earlier sources of the same fixture and arguments left in the cache, once
    unused for a week."""
    for other in CACHE.glob("*.json"):
        if other.stem == current.stem or other.name.startswith("."):
            continue
        try:
            if time.time() - other.stat().st_mtime < KEEP_OTHER_BUILDS:
                continue
        except OSError:
            continue
        try:
            old = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (old.get("fixture"), old.get("args")) == (info["fixture"], info["args"]):
            for stale in CACHE.glob(f"{other.stem}*"):
                stale.unlink(missing_ok=True)


#: what stands for this checkout's folder in a cached build failure
CHECKOUT = "<checkout>"


def build_failure(name: str, **build_kwargs: Any) -> str:
    """The message of the PluginBuildError building a broken fixture raises (cached too: a
    failing componentize-py run still takes ~8 s). The message names files of this checkout;
    the record names them relative to it, so another checkout sharing the cache gets its own."""
    record = CACHE / f"{cache_key(name, **build_kwargs)}.failed.txt"
    if record.is_file():
        return record.read_text(encoding="utf-8").replace(CHECKOUT, str(ROOT))
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            build(FIXTURES / name, Path(tmp) / "out.wasm", **build_kwargs)
        except PluginBuildError as exc:
            message = str(exc)
        else:
            raise AssertionError(f"fixture {name} built, but it should not")
        leftovers = list(Path(tmp).iterdir())
    assert leftovers == [], f"a failed build left {leftovers}"
    partial = CACHE / f".{record.name}.{uuid.uuid4().hex}"
    partial.write_text(message.replace(str(ROOT), CHECKOUT), encoding="utf-8")
    os.replace(partial, record)
    return message


def build_info(wasm: Path) -> dict[str, Any]:
    """What `build()` reported for a cached component (world, interfaces, size, sha256, ...)."""
    info: dict[str, Any] = json.loads(wasm.with_suffix(".json").read_text(encoding="utf-8"))
    return info


def built_plugins(names: Iterable[str], workers: int | None = None) -> dict[str, Path]:
    """Several fixtures at once, cold builds in parallel (componentize-py uses ~1 core each)."""
    names = list(names)
    with ThreadPoolExecutor(
        max_workers=workers or max(1, min(len(names), os.cpu_count() or 1))
    ) as pool:
        return dict(zip(names, pool.map(built_plugin, names)))


def compiled_component(wasm: Path) -> Component:
    """`wasm` compiled for blocksync's engine (~6 s), or read from the suite's compile cache
    (~30 ms) through blocksync's own CompileCache: the artifact every test store shares."""
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()
    engine = runtime().engine
    return (
        runtime()
        .cache(HOST_CACHE)
        .load(engine, digest, lambda: Component.from_file(engine, str(wasm)))
    )


def wat_fixture(name: str, folder: Path) -> Path:
    """``fixtures/wat/<name>.wat`` compiled into ``folder`` (milliseconds: never cached)."""
    text = (ROOT / "fixtures" / "wat" / f"{name}.wat").read_text(encoding="utf-8")
    out = folder / f"{name}.wasm"
    out.write_bytes(wat2wasm(text))
    return out


# -- JavaScript plugins (componentize-js) --------------------------------------------------------

#: the world a JavaScript fixture targets is in its package.json's "build" script
JS_CACHE_FILES = ("app.js", "package.json", "package-lock.json")


def js_cache_key(name: str) -> str:
    """sha256 of what goes into a JavaScript fixture's component: its sources, its lock file
    (the exact componentize-js), the WIT package and node's major version."""
    import subprocess

    digest = hashlib.sha256()
    folder = FIXTURES / name
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            digest.update(f"source:{path.name}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for path in _files(wit_dir()):
        digest.update(f"wit:{path.relative_to(wit_dir()).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    digest.update(f"node:{node.stdout.strip().split('.')[0]}".encode())
    return digest.hexdigest()


def _npm_ci(folder: Path) -> None:
    """``npm ci`` in ``folder`` unless its node_modules already hold what package-lock.json
    pins (a stamp records the lock's hash); serialized across processes by a lock file."""
    import fcntl
    import subprocess

    lock_sha = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest()
    stamp = folder / "node_modules" / ".blocksync-lock-sha256"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".npm-{folder.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == lock_sha:
            return
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {folder} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(lock_sha, encoding="utf-8")


def built_js_plugin(name: str) -> Path:
    """The component built from the JavaScript fixture ``fixtures/plugins/<name>`` with
    componentize-js (``npm ci``, then ``npm run build -- --out ...``), cached by source hash
    like :func:`built_plugin` (a cold build takes ~40 s, plus ~15 s for ``npm ci``)."""
    target = CACHE / f"js-{js_cache_key(name)}.wasm"
    with _entry(target):
        if not target.is_file():
            _build_js_into(target, name)
    return target


def _build_js_into(target: Path, name: str) -> None:
    import subprocess
    import time

    folder = FIXTURES / name
    _npm_ci(folder)
    partial = CACHE / f".{target.stem}.{uuid.uuid4().hex}.wasm"
    started = time.monotonic()
    done = subprocess.run(
        ["npm", "run", "--silent", "build", "--", "--out", str(partial)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"componentize-js build of {name} failed:\n{done.stdout}\n{done.stderr}")
    data = partial.read_bytes()
    lock = json.loads((folder / "package-lock.json").read_text(encoding="utf-8"))
    info = {
        "fixture": name,
        "args": "js",
        "componentize-js": lock["packages"]["node_modules/@bytecodealliance/componentize-js"][
            "version"
        ],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": round(time.monotonic() - started, 2),
    }
    info_partial = partial.with_suffix(".json")
    info_partial.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.replace(info_partial, target.with_suffix(".json"))
    os.replace(partial, target)
    _forget_older_builds(target, info)


def built_js_source(folder: Path) -> Path:
    """The component ``blocksync plugin build`` makes of the JavaScript source ``folder`` (e.g. a
    ``plugin new`` skeleton: npm installs what its package.json pins, then componentize-js), cached
    by its sources, the WIT package and node's major version like :func:`built_js_plugin`."""
    import subprocess

    digest = hashlib.sha256()
    for label, root in (("source", folder), ("wit", wit_dir())):
        for path in _files(root):
            if "node_modules" not in path.relative_to(root).parts:
                digest.update(f"{label}:{path.relative_to(root).as_posix()}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    digest.update(f"node:{node.stdout.strip().split('.')[0]}".encode())
    target = CACHE / f"js-source-{digest.hexdigest()}.wasm"
    with _entry(target):
        if not target.is_file():
            _build_into(target, folder, {})
    return target


# -- warming a cold cache while the first tests run ----------------------------------------------

#: every component the suite builds from fixtures/plugins, roughly in the order tests first need
#: them (the broken fixtures are build_failure's, the benchmarks' plugins their own)
SUITE_BUILDS: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    (name, {})
    for name in (
        "echo_block",
        "echo_stream",
        "echo_tool",
        "kitchen_sink",
        "stream_tool",
        "echo_files",
        "files",
        "feed",
        "hostile_block",
        "hostile_bigresult",
        "hostile_delete",
        "hostile_http",
        "hostile_membomb",
        "hostile_other_agent",
        "hostile_paths",
        "hostile_readonly",
        "s3",
        "truth_tool",
    )
) + (("hostile_block", {"wasi": True}),)


class WarmUp:
    """Builds and compiles, on one background thread, every fixture component the cache lacks.

    On a cold cache (a clean clone) each component costs ~10 s of componentize-py and ~6 s of
    compiling; the tests run on one core, so the other builds meanwhile, and a test that needs a
    component being built waits for it (the per-entry lock) instead of building it twice. On a
    warm cache it finds nothing to do and starts no thread. A failed build is left for the test
    that needs it to report."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        todo = [(name, kwargs) for name, kwargs in SUITE_BUILDS if not _warm(name, kwargs)]
        javascript = bool(shutil.which("npm")) and shutil.which("node") is not None
        js = javascript and not (CACHE / f"js-{js_cache_key('js_tool')}.wasm").is_file()
        if todo or js:
            self._thread = threading.Thread(
                target=self._run, args=(todo, js), name="plugin-warm-up", daemon=True
            )
            self._thread.start()

    def _run(self, todo: list[tuple[str, dict[str, Any]]], js: bool) -> None:
        for name, kwargs in todo:
            if self._stop.is_set():
                return
            try:
                compiled_component(built_plugin(name, **kwargs))
            except Exception:  # noqa: BLE001, S112 - the test that needs it reports the failure
                continue
        if js and not self._stop.is_set():
            with suppress(Exception):
                built_js_plugin("js_tool")

    def stop(self) -> None:
        """Let the build under way finish (no half-written entry, no orphan process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _warm(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether ``name`` is built and compiled for blocksync's engine in the cache."""
    wasm = CACHE / f"{cache_key(name, **kwargs)}.wasm"
    if not wasm.is_file():
        return False
    key = runtime().cache(HOST_CACHE).key(build_info(wasm)["sha256"])  # what build() hashed
    return (HOST_CACHE / f"{key}.cwasm").is_file()
