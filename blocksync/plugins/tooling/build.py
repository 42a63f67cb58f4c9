"""Build a plugin source folder into a WebAssembly component: Python with componentize-py (here),
JavaScript with componentize-js (:mod:`.jsbuild`); either way the component records its source's
hash (:mod:`.provenance`). The toolchain is not installed with blocksync: componentize-py is the
`plugins` extra (`pip install 'blocksync[plugins]'`), componentize-js comes from npm.

A plugin source is a folder whose `app.py` subclasses the guest SDK's `DataBlockExtension`,
`DataStreamExtension` and/or `ToolExtension` and passes each class to `register_extension`
(`blocksync/guest/pattern_extension_api`). Before componentize-py runs (it takes ~10 s), the
source is read as text, never imported or executed, to:

* find the registered classes and which interfaces they implement, and refuse a class that lacks
  a required method, naming the class and the methods;
* pick the world: `data-block-plugin`, `data-stream-plugin`, `tool-plugin`, or `pattern-extension`
  for all three (two of three get a world generated for them, because componentize-py 0.25.1
  panics when asked to merge worlds with `-w a -w b`);
* decide on WASI: a component built with `--stub-wasi` imports no WASI at all, so it can reach
  nothing but the host's own functions. A class that needs files (or clocks, or randomness) says
  `needs_filesystem = True` in its body.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from blocksync.errors import BlocksyncError, PluginBuildError
from blocksync.plugins.host.runtime import compile_component, runtime
from blocksync.plugins.tooling import jsbuild, provenance
from blocksync.plugins.tooling.process import run_tool
from blocksync.plugins.tooling.scaffold import default_output
from blocksync.shared import progress

__all__ = [
    "WORLDS",
    "BuildResult",
    "ExtensionInfo",
    "SourceInfo",
    "build",
    "guest_sdk_dir",
    "inspect_source",
    "shipped_modules",
    "truth_source",
    "wit_dir",
]

APP_MODULE = "app"
SDK_PACKAGE = "pattern_extension_api"
#: the name under which every guest can `import` blocksync's truth table (blocksync/shared/truth.py)
TRUTH_MODULE = "blocksync_truth"
#: the name under which guests import the protocol that carries its decisions out (apply.py)
APPLY_MODULE = "blocksync_apply"
#: pure modules of blocksync (standard library only) every Python guest can import, by the
#: name it imports them under: one source file serves host and plugins alike
SHIPPED_MODULES = {
    TRUTH_MODULE: "shared/truth.py",
    APPLY_MODULE: "shared/apply.py",
    "blocksync_sigv4": "shared/sigv4.py",
}
REGISTER = "register_extension"
FILESYSTEM_FLAG = "needs_filesystem"

#: SDK base class -> the WIT interface it implements, in the WIT's order
BASE_INTERFACES = {
    "DataBlockExtension": "data-block",
    "DataStreamExtension": "data-stream",
    "ToolExtension": "tool",
    "SyncedSource": "data-block",  # a data-block source from four methods (synced.py)
}
#: the SDK modules defining those classes
SDK_BASE_MODULES = ("extensions.py", "synced.py")
INTERFACE_ORDER = tuple(dict.fromkeys(BASE_INTERFACES.values()))
#: the names register_extension() defines in app.py (componentize-py looks them up there)
EXPORT_CLASS_NAMES = ("DataBlock", "DataStream", "Tool")

#: the worlds of wit/pattern.wit -> the interfaces each exports
WORLDS: dict[str, frozenset[str]] = {
    "data-block-plugin": frozenset({"data-block"}),
    "data-stream-plugin": frozenset({"data-stream"}),
    "tool-plugin": frozenset({"tool"}),
    "pattern-extension": frozenset(INTERFACE_ORDER),
}

BUILD_TIMEOUT_SECONDS = 900


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def wit_dir() -> Path:
    """The WIT package plugins are built against: the one place that knows where it lives."""
    return _package_dir().parent / "wit"


def truth_source() -> Path:
    """blocksync/shared/truth.py: the one reconcile truth table, shipped to every Python guest as
    `blocksync_truth` (it imports only the standard library, so it runs there unchanged)."""
    return _package_dir() / "shared/truth.py"


def shipped_path(source: str) -> Path:
    """The file of a :data:`SHIPPED_MODULES` source (a path inside the blocksync package)."""
    return _package_dir() / source


@contextmanager
def shipped_modules() -> Iterator[Path]:
    """A temporary folder for the guest path holding the :data:`SHIPPED_MODULES`, copies made
    at build time (`blocksync_truth.py` of truth.py, ...): one source file, never copied by hand."""
    with tempfile.TemporaryDirectory(prefix="blocksync-shipped-") as tmp:
        for module, source in SHIPPED_MODULES.items():
            shutil.copyfile(shipped_path(source), Path(tmp) / f"{module}.py")
        yield Path(tmp)


def guest_sdk_dir() -> Path:
    """The folder put on every guest's Python path: it holds `pattern_extension_api`."""
    return _package_dir() / "guest"


# --------------------------------------------------------------------------------------------
# Reading the source


@dataclass(frozen=True)
class ExtensionInfo:
    """A class passed to `register_extension`, as read from the source."""

    name: str
    line: int
    #: WIT interfaces it implements, in WIT order
    interfaces: tuple[str, ...]
    needs_filesystem: bool
    #: required methods it does not define (empty when it derives from a class outside app.py,
    #: whose methods cannot be seen without running it)
    missing: tuple[str, ...]


@dataclass(frozen=True)
class SourceInfo:
    app: Path
    extensions: tuple[ExtensionInfo, ...]
    #: (line, module) of each import inside a function or method of app.py
    late_imports: tuple[tuple[int, str], ...] = ()

    @property
    def interfaces(self) -> tuple[str, ...]:
        found = {i for ext in self.extensions for i in ext.interfaces}
        return tuple(i for i in INTERFACE_ORDER if i in found)

    @property
    def needs_filesystem(self) -> bool:
        return any(ext.needs_filesystem for ext in self.extensions)

    @property
    def world(self) -> str | None:
        """The world exporting exactly these interfaces (generated for two of three); None when
        app.py registers nothing."""
        return world_for(self.interfaces) if self.interfaces else None


def world_for(interfaces: tuple[str, ...]) -> str:
    for name, exports in WORLDS.items():
        if exports == frozenset(interfaces):
            return name
    return "-".join(interfaces) + "-plugin"


@dataclass(frozen=True)
class _SdkBase:
    abstract: frozenset[str]
    methods: frozenset[str]


def _sdk_bases() -> dict[str, _SdkBase]:
    """The SDK base classes' methods, read from the SDK's source (the single source of truth).
    A class's abstract methods are the ones it marks itself: SyncedSource implements every
    data-block method and asks only for its own four."""
    bases = {}
    for module in SDK_BASE_MODULES:
        path = guest_sdk_dir() / SDK_PACKAGE / module
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in BASE_INTERFACES:
                functions = [n for n in node.body if isinstance(n, ast.FunctionDef)]
                abstract = {
                    f.name
                    for f in functions
                    if any(_name_of(d) == "abstractmethod" for d in f.decorator_list)
                }
                bases[node.name] = _SdkBase(
                    frozenset(abstract), frozenset(f.name for f in functions)
                )
    if set(bases) != set(BASE_INTERFACES):
        raise RuntimeError(f"the SDK no longer defines {sorted(set(BASE_INTERFACES) - set(bases))}")
    return bases


def _name_of(node: ast.expr) -> str | None:
    """`x` for `x` and `a.b.x`, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _defined_names(cls: ast.ClassDef) -> set[str]:
    names = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif (
            isinstance(node, ast.AnnAssign)
            and node.value is not None
            and isinstance(node.target, ast.Name)
        ):
            names.add(node.target.id)
    return names


def _filesystem_flag(cls: ast.ClassDef, source: str) -> bool | None:
    """The literal value of `needs_filesystem = ...` in the class body, None if absent."""
    for node in cls.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == FILESYSTEM_FLAG and value is not None:
            if isinstance(value, ast.Constant) and isinstance(value.value, bool):
                return value.value
            raise PluginBuildError(
                source,
                f"line {node.lineno}: {cls.name}.{FILESYSTEM_FLAG} must be a literal True or False "
                "(the build reads it without running the code)",
            )
    return None


class _Reader:
    """What one app.py says about its extensions."""

    def __init__(self, app: Path, source: str) -> None:
        self.app = app
        self.source = source
        try:
            text = app.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PluginBuildError(source, f"{app} is not UTF-8 text") from exc
        try:
            self.tree = ast.parse(text, filename=str(app))
        except SyntaxError as exc:
            where = f"{app}, line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
            code = f"\n    {exc.text.rstrip()}" if exc.text and exc.text.strip() else ""
            raise PluginBuildError(source, f"syntax error in {where}: {exc.msg}{code}") from exc
        self.sdk = _sdk_bases()
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.sdk_aliases = self._sdk_aliases()

    def _sdk_aliases(self) -> dict[str, str]:
        """Local name -> SDK base class name, from `from pattern_extension_api import ...`."""
        aliases = {}
        for node in ast.walk(self.tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and (node.module == SDK_PACKAGE or node.module.startswith(SDK_PACKAGE + "."))
            ):
                for alias in node.names:
                    if alias.name == "*":
                        aliases.update({name: name for name in BASE_INTERFACES})
                    elif alias.name in BASE_INTERFACES:
                        aliases[alias.asname or alias.name] = alias.name
        return aliases

    def top_level_names(self) -> set[str]:
        names = set(self.classes)
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        return names

    def late_imports(self) -> tuple[tuple[int, str], ...]:
        found = set()
        for function in ast.walk(self.tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        found |= {(node.lineno, alias.name) for alias in node.names}
                    elif isinstance(node, ast.ImportFrom):
                        found.add((node.lineno, "." * node.level + (node.module or "")))
        return tuple(sorted(found))

    def _sdk_base(self, base: ast.expr) -> str | None:
        if isinstance(base, ast.Name):
            return self.sdk_aliases.get(base.id)
        if isinstance(base, ast.Attribute) and base.attr in BASE_INTERFACES:
            return base.attr  # pattern_extension_api.ToolExtension, api.ToolExtension, ...
        return None

    def registered(self) -> list[tuple[str, int]]:
        """(class name, line) for each `register_extension(Cls)` or `@register_extension`."""
        found = []
        for node in self.tree.body:
            calls: list[ast.Call] = []
            if isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Call):
                calls.append(node.value)
            if isinstance(node, ast.ClassDef):
                for decorator in node.decorator_list:
                    if _name_of(decorator) == REGISTER:
                        found.append((node.name, node.lineno))
            for call in calls:
                if _name_of(call.func) != REGISTER:
                    continue
                arg = call.args[0] if len(call.args) == 1 and not call.keywords else None
                if not (isinstance(arg, ast.Name) and arg.id in self.classes):
                    raise PluginBuildError(
                        self.source,
                        f"{self.app}, line {call.lineno}: {REGISTER}() must be given one class "
                        "defined in app.py",
                    )
                found.append((arg.id, call.lineno))
        return found

    def extension(self, name: str, line: int) -> ExtensionInfo:
        interfaces: set[str] = set()
        abstract: set[str] = set()
        defined: set[str] = set()
        flag: bool | None = None
        opaque = False  # derives from something outside app.py and the SDK
        todo, seen = [self.classes[name]], set()
        while todo:  # the class and its in-file bases; the first flag found wins (MRO-ish)
            cls = todo.pop(0)
            if cls.name in seen:
                continue
            seen.add(cls.name)
            defined |= _defined_names(cls)
            if flag is None:
                flag = _filesystem_flag(cls, self.source)
            for base in cls.bases:
                sdk = self._sdk_base(base)
                if sdk is not None:
                    interfaces.add(BASE_INTERFACES[sdk])
                    abstract |= self.sdk[sdk].abstract
                elif isinstance(base, ast.Name) and base.id in self.classes:
                    todo.append(self.classes[base.id])
                elif _name_of(base) not in ("object", "ABC"):
                    opaque = True
        if not interfaces:
            hint = (
                f"; the build reads only app.py, so name the SDK base there too, e.g. "
                f"class {name}(YourBase, ToolExtension)"
                if opaque
                else ""
            )
            raise PluginBuildError(
                self.source,
                f"{self.app}, line {line}: class {name} is registered but does not derive from "
                f"{', '.join(BASE_INTERFACES)} (directly, or through classes defined in app.py)"
                + hint,
            )
        missing = () if opaque else tuple(sorted(abstract - defined))
        return ExtensionInfo(
            name=name,
            line=line,
            interfaces=tuple(i for i in INTERFACE_ORDER if i in interfaces),
            needs_filesystem=bool(flag),
            missing=missing,
        )


def inspect_source(source: Path) -> SourceInfo:
    """Read a plugin source folder's `app.py` (without running it) and check its extensions.

    Raises `PluginBuildError` for a missing or unparsable app.py, a registered class that lacks
    required methods (`missing_methods` names them), or two classes exporting one interface.
    An app.py that registers nothing yields no extensions (a raw componentize-py guest).
    """
    label = str(source)
    app = Path(source) / f"{APP_MODULE}.py"
    if not app.is_file():
        raise PluginBuildError(label, f"no {APP_MODULE}.py in it (the plugin's entry module)")
    reader = _Reader(app, label)
    registered = reader.registered()
    clashes = sorted(set(reader.top_level_names()) & set(EXPORT_CLASS_NAMES))
    if registered and clashes:
        raise PluginBuildError(
            label,
            f"{app} defines {', '.join(clashes)}: register_extension() defines "
            f"{', '.join(EXPORT_CLASS_NAMES)} there for componentize-py, rename yours",
        )
    extensions = tuple(reader.extension(name, line) for name, line in registered)
    incomplete = [ext for ext in extensions if ext.missing]
    if incomplete:
        raise PluginBuildError(
            label,
            "; ".join(
                f"class {ext.name} (line {ext.line}) does not implement required "
                f"{'/'.join(ext.interfaces)} methods: {', '.join(ext.missing)}"
                for ext in incomplete
            ),
            missing_methods={ext.name: list(ext.missing) for ext in incomplete},
        )
    owners: dict[str, str] = {}
    for ext in extensions:
        for interface in ext.interfaces:
            if interface in owners:
                raise PluginBuildError(
                    label,
                    f"classes {owners[interface]} and {ext.name} both implement {interface}; "
                    "a plugin exports each interface once",
                )
            owners[interface] = ext.name
    return SourceInfo(app=app, extensions=extensions, late_imports=reader.late_imports())


# --------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class BuildResult:
    path: Path
    world: str
    #: the exported interfaces, e.g. ("data-block",)
    interfaces: tuple[str, ...]
    size: int
    sha256: str
    #: True when built with WASI imports, False when built with --stub-wasi
    wasi: bool
    seconds: float
    #: what componentize-py printed
    log: str
    #: things that will probably go wrong at run time, e.g. late imports in a build without WASI
    warnings: tuple[str, ...] = ()


def _choose_world(info: SourceInfo, world: str | None, label: str) -> tuple[str, tuple[str, ...]]:
    if world is None:
        if not info.extensions:
            raise PluginBuildError(
                label,
                f"{info.app} does not call {REGISTER}(); register the extension class, or name "
                "the world to build a raw componentize-py guest",
            )
        return world_for(info.interfaces), info.interfaces
    if world not in WORLDS:
        raise PluginBuildError(
            label, f"unknown world {world!r}; the WIT package has {', '.join(WORLDS)}"
        )
    exports = tuple(i for i in INTERFACE_ORDER if i in WORLDS[world])
    lacking = [i for i in exports if i not in info.interfaces]
    if info.extensions and lacking:
        raise PluginBuildError(
            label,
            f"world {world} exports {', '.join(lacking)}, which no registered class implements",
        )
    return world, exports


def _componentize_py(explicit: str | None, label: str, beside: Path | None = None) -> str:
    """The componentize-py to run: `explicit`, else the one in the folder `beside` (default:
    this Python's, a venv's bin/), else the one on PATH."""
    if explicit is not None:
        return explicit
    near = (beside or Path(sys.executable).parent) / "componentize-py"
    if near.exists():
        return str(near)
    found = shutil.which("componentize-py")
    if found is None:
        raise PluginBuildError(
            label,
            "componentize-py is not installed: the plugin build toolchain is an extra, "
            "pip install 'blocksync[plugins]'",
        )
    return found


@contextmanager
def _wit_for(world: str, interfaces: tuple[str, ...]) -> Iterator[Path]:
    """The WIT folder to build with: the package itself, or a copy plus a generated world."""
    if world in WORLDS:
        yield wit_dir()
        return
    with tempfile.TemporaryDirectory(prefix="blocksync-wit-") as tmp:
        folder = Path(tmp) / "wit"
        shutil.copytree(wit_dir(), folder)
        package = _wit_package_line(folder)
        exports = "".join(f"    export {i};\n" for i in interfaces)
        (folder / "zz-generated-world.wit").write_text(
            f"{package}\n\nworld {world} {{\n    import host;\n    import sync;\n"
            f"    import http;\n\n{exports}}}\n",
            encoding="utf-8",
        )
        yield folder


def _wit_package_line(folder: Path) -> str:
    for path in sorted(folder.glob("*.wit")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("package "):
                return line.strip()
    raise RuntimeError(f"no `package` declaration in {folder}")


def _tool_message(output: str, mounts: dict[str, Path]) -> str:
    """componentize-py's own error, without its Rust backtrace, with real paths."""
    text = output
    marker = text.rfind("AssertionError: ")
    if marker != -1:
        text = text[marker + len("AssertionError: ") :]
    else:  # a panic or an error before the Python traceback
        text = text.split("stack backtrace:")[0].split("Stack backtrace:")[0]
    text = text.split("\n\nCaused by:")[0].split("\nStack backtrace:")[0].strip()
    for mount, real in mounts.items():
        text = text.replace(f'"{mount}/', f'"{real}/')
    return text or output.strip()[-4000:]


def build(
    source: Path,
    output: Path | None = None,
    *,
    world: str | None = None,
    wasi: bool | None = None,
    componentize_py: str | None = None,
    cache_folder: Path | None = None,
) -> BuildResult:
    """Build the plugin in folder `source` into the component file `output` (default:
    `NAME.wasm` beside the folder `NAME`): a Python plugin (its `app.py`) with componentize-py,
    a JavaScript one (`app.js` and `package.json`, see :mod:`.jsbuild`) with componentize-js.

    `world` overrides the world read from the source; `wasi` forces WASI imports on (True) or off
    (False) whatever a Python source's `needs_filesystem` says; `componentize_py` is the
    executable to run (default: the one installed beside this Python, else on PATH). The output
    is written atomically, with the source's hash in a custom section (:mod:`.provenance`: why
    not a reproducible build). Raises `PluginBuildError` with the toolchain's message when it
    fails, or naming what to install when a toolchain is missing.

    With `cache_folder` (a store's `cache/`) the new component is also compiled into it, so its
    first use in that store loads it instead of compiling for seconds to a minute.
    """
    source = Path(source).resolve()
    output = default_output(source) if output is None else Path(output)
    label = str(source)
    python = (source / f"{APP_MODULE}.py").is_file()
    if not python and (source / jsbuild.APP).is_file() and not jsbuild.is_javascript(source):
        raise PluginBuildError(
            label,
            f"{jsbuild.APP} without a {jsbuild.MANIFEST}: a JavaScript plugin names its world "
            "there (blocksync plugin new NAME --lang javascript writes one)",
        )
    made_folder = not output.parent.exists()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex}.partial")
    started = time.perf_counter()
    before = provenance.file_hashes(source)
    try:
        if not python and jsbuild.is_javascript(source):
            made = _build_javascript(source, partial, output.name, world, wasi, label)
        else:
            made = _build_python(source, partial, output.name, world, wasi, componentize_py, label)
        seconds = time.perf_counter() - started
        if not partial.is_file():
            raise PluginBuildError(label, f"the build wrote no component: {made.log[-4000:]}")
        # the source hash is taken now (with what the build added, a package-lock.json): an
        # edit made meanwhile would be recorded as what the component was built from
        changed = provenance.changed_since(source, before)
        if changed:
            raise PluginBuildError(
                label,
                f"{', '.join(changed)} changed while it was being built: nothing was written; "
                "build again",
            )
        record = {
            "source_sha256": provenance.source_sha256(source),
            "world": made.world,
            "toolchain": made.toolchain,
        }
        data = provenance.embed(partial.read_bytes(), record)
        partial.write_bytes(data)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        if made_folder:  # a failed build leaves nothing, not even the folder it made
            with suppress(OSError):
                output.parent.rmdir()
        raise
    warnings = made.warnings
    if cache_folder is not None:
        warnings += _compile_into(output, cache_folder)
    return BuildResult(
        path=output,
        world=made.world,
        interfaces=made.interfaces,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        wasi=made.wasi,
        seconds=seconds,
        log=made.log,
        warnings=warnings,
    )


@dataclass(frozen=True)
class _Made:
    """What one toolchain run made (in the partial file)."""

    world: str
    interfaces: tuple[str, ...]
    wasi: bool
    log: str
    toolchain: dict[str, str]
    warnings: tuple[str, ...] = ()


def _build_python(
    source: Path,
    partial: Path,
    shown: str,
    world: str | None,
    wasi: bool | None,
    componentize_py: str | None,
    label: str,
) -> _Made:
    """Build with componentize-py into `partial` (`shown` is the output's name, for progress)."""
    info = inspect_source(source)
    world_name, interfaces = _choose_world(info, world, label)
    use_wasi = info.needs_filesystem if wasi is None else wasi
    exe = _componentize_py(componentize_py, label)
    with _wit_for(world_name, interfaces) as wit, shipped_modules() as shipped:
        command = [exe, "-d", str(wit), "-w", world_name, "componentize"]
        command += ["-p", str(source), "-p", str(guest_sdk_dir()), "-p", str(shipped)]
        command += ["-o", str(partial)]
        command += [] if use_wasi else ["--stub-wasi"]
        command.append(APP_MODULE)
        with progress.current().task(f"building {shown} with componentize-py"):
            done = run_tool(
                command, label=label, what="componentize-py", timeout=BUILD_TIMEOUT_SECONDS
            )
    log = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or not partial.is_file():
        mounts = {"/0": source, "/1": guest_sdk_dir()}
        raise PluginBuildError(label, "componentize-py failed: " + _tool_message(log, mounts))
    toolchain = {"componentize-py": _version("componentize-py"), "blocksync": _version("blocksync")}
    warnings = () if use_wasi else _late_import_warnings(info)
    return _Made(world_name, interfaces, use_wasi, log, toolchain, warnings)


def _build_javascript(
    source: Path, partial: Path, shown: str, world: str | None, wasi: bool | None, label: str
) -> _Made:
    """Build with componentize-js into `partial` (`shown` is the output's name, for progress)."""
    if wasi is not None:
        raise PluginBuildError(
            label,
            "--wasi/--no-wasi is for Python plugins: a JavaScript plugin leaves WASI features "
            f'out with "disable" in {jsbuild.MANIFEST}\'s "blocksync" object',
        )
    manifest = jsbuild.read_manifest(source, label)
    world_name = world or manifest.world
    if world_name not in WORLDS:
        raise PluginBuildError(
            label, f"unknown world {world_name!r}; the WIT package has {', '.join(WORLDS)}"
        )
    with progress.current().task(f"building {shown} with componentize-js"):
        log = jsbuild.run(source, partial, wit_dir(), world_name, manifest, label)
    interfaces = tuple(i for i in INTERFACE_ORDER if i in WORLDS[world_name])
    return _Made(world_name, interfaces, manifest.wasi, log, jsbuild.toolchain(source))


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _compile_into(component: Path, cache_folder: Path) -> tuple[str, ...]:
    """Compile ``component`` into ``cache_folder``; a warning, not a failure, if it cannot be:
    the build itself succeeded."""
    try:
        compile_component(component, component.name, runtime().cache(cache_folder))
    except BlocksyncError as exc:
        return (f"built, but not compiled into {cache_folder}: {exc}",)
    return ()


def _late_import_warnings(info: SourceInfo) -> tuple[str, ...]:
    return tuple(
        f"{info.app}, line {line}: `{module}` is imported inside a function; built without WASI, "
        "a module first imported at run time traps (it is read from a file): import it at "
        "module level, which runs at build time"
        for line, module in info.late_imports
    )
