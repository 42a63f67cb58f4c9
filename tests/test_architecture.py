"""The architecture, stated as rules: packages in layers, each outside library in its one package.

The picture (README "Architecture"): ``shared`` and a few standard-library helpers at the bottom,
then ``fs``, ``index``, ``store``, ``sync``, ``plugins``, ``agents``, the ``workspace`` that ties
them together, the jobs and tools above it (``runner``, ``demo``, ``testing``), and the ``cli``.
A module may import a module of a lower layer, or of its own package; the import graph has no
cycle, including imports hidden behind ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import blocksync

PACKAGE = Path(blocksync.__file__).parent
TESTS = Path(__file__).resolve().parent

#: Layer of each package or top-level module: imports go to strictly lower layers, or stay in
#: the package (a package's modules are ordered by the no-cycle rule instead).
LAYERS = {
    "errors": 0,  # the one exception tree
    "shared": 0,  # standard library only; shipped verbatim to Python guests (truth, apply, sigv4)
    "guest": 0,  # the guest SDK runs inside plugins: it imports nothing of blocksync
    "deadlines": 0,  # the time left to a plugin call, for waits inside its host functions
    "logs": 0,  # plugins' log files in the store, the terminal on request
    "interrupts": 1,  # SIGINT/SIGTERM during a locked run: recorded, acted on at safe points
    "text": 1,
    "names": 1,
    "config": 1,
    "fs": 2,  # files and folders opened without following links
    "index": 3,  # index.db
    "store": 4,  # the git repository
    "sync": 5,  # reconciling blocks with outside sources
    "plugins": 6,  # the WebAssembly host and the plugin sources, streams and tools
    "agents": 7,  # tools and streams as agents use them
    "workspace": 8,  # one store: everything above, wired together
    "runner": 9,  # locked runs with a run log: `blocksync sync` and the CLI's writing commands
    "watch": 9,  # `blocksync watch`: live sync, round after round under the run lock
    "demo": 9,
    "testing": 9,  # the data-block conformance suite (`blocksync plugin check`)
    "cli_progress": 9,  # the CLI's progress display (rich) of shared.progress
    "mcp_server": 9,  # `blocksync mcp`: the agent tools over MCP (the mcp SDK)
    "cli": 10,
    "__init__": 11,
}

#: outside libraries and the only packages (or modules) that may import them
CONFINED = {
    "dulwich": {"store", "sync.remotes", "sync.permissions"},
    "sqlite3": {"index"},
    "sqlite_utils": {"index"},
    "wasmtime": {"plugins.host"},
    "click": {"cli"},
    "rich": {"cli_progress"},
    "mcp": {"mcp_server"},
    "mcp_types": {"mcp_server"},
    "watchfiles": {"watch"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "guest" not in p.relative_to(PACKAGE).parts)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _unit(dotted: str) -> str:
    """The package or top-level module a module belongs to (the key of LAYERS)."""
    return dotted.split(".")[0]


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, dotted, relative to blocksync; third-party modules as given, prefixed
    with ':') for each import in a file, TYPE_CHECKING blocks and function bodies included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "blocksync":
                target = node.module.partition(".")[2]
            else:
                yield ":" + (node.module or ""), node.lineno
                continue
            for alias in node.names:  # `from . import x` imports the module x
                sub = f"{target}.{alias.name}" if target else alias.name
                is_module = (PACKAGE / sub.replace(".", "/")).is_dir() or (
                    PACKAGE / (sub.replace(".", "/") + ".py")
                ).exists()
                yield (sub if is_module else target), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "blocksync":
                    yield alias.name.partition(".")[2], node.lineno
                else:
                    yield ":" + alias.name, node.lineno


def test_every_package_and_module_has_a_layer() -> None:
    missing = {_unit(_dotted(p)) for p in _modules()} - set(LAYERS)
    assert not missing, f"give these a layer here and in the README's picture: {missing}"


def test_imports_point_down() -> None:
    wrong = []
    for path in _modules():
        here = _unit(_dotted(path))
        for target, line in _imports(path):
            if target.startswith(":") or not target or _unit(target) == here:
                continue
            if LAYERS.get(_unit(target), 99) >= LAYERS[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not wrong, "imports pointing up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Between modules, counting imports under TYPE_CHECKING: a cycle hidden there is still
    two modules that cannot be understood (or moved) one without the other."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        me = _dotted(path)
        graph[me] = {t for t, _ in _imports(path) if t and not t.startswith(":") and t != me}
    # a package's __init__ importing its own modules is how it exports them: not a cycle
    for name, targets in graph.items():
        graph[name] = {t for t in targets if t in graph and not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_outside_libraries_stay_in_their_package() -> None:
    offenders = []
    for path in _modules():
        me = _dotted(path)
        for target, line in _imports(path):
            library = target[1:].split(".")[0] if target.startswith(":") else None
            allowed = CONFINED.get(library or "")
            if allowed is not None and not any(me == a or me.startswith(a + ".") for a in allowed):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line} imports {library}")
    assert not offenders, "\n".join(offenders)


def test_shared_modules_need_only_the_standard_library() -> None:
    """They run unchanged inside Python guests, where neither blocksync nor its dependencies
    exist (a shipped module may import another shipped one, under its guest name)."""
    offenders = []
    for path in (PACKAGE / "shared").glob("*.py"):
        for target, line in _imports(path):
            top = target[1:].split(".")[0]
            if target.startswith(":") and (top in sys.stdlib_module_names or top == "__future__"):
                continue
            if target.startswith(":") and top.startswith("blocksync_"):
                continue  # a sibling shipped module, as guests import it
            if not target.startswith(":") and _unit(target) == "shared":
                continue
            offenders.append(f"shared/{path.name}:{line} imports {target.lstrip(':')}")
    assert not offenders, "\n".join(offenders)


def test_only_cli_tests_import_the_cli() -> None:
    """The library is tested through its API; the CLI through tests/cli/ (thin over it)."""
    offenders = []
    for path in TESTS.rglob("*.py"):
        if "cli" in path.relative_to(TESTS).parts[:-1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module in ("blocksync.cli", "click.testing")
                or (
                    isinstance(node, ast.ImportFrom)
                    and node.module == "blocksync"
                    and any(a.name == "cli" for a in node.names)
                )
            ):
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not offenders, "move these CLI tests to tests/cli/:\n" + "\n".join(offenders)


def test_only_errors_defines_exceptions() -> None:
    offenders = []
    for info in pkgutil.walk_packages(blocksync.__path__, "blocksync."):
        if info.name.startswith(("blocksync.guest", "blocksync.shared")):
            continue  # runs inside plugins too, where blocksync.errors does not exist
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and info.name != "blocksync.errors"
            ):
                offenders.append(f"{info.name}.{name}")
    assert not offenders


def test_the_guest_sdk_imports_nothing_of_blocksync() -> None:
    for path in (PACKAGE / "guest").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                assert node.module.split(".")[0] != "blocksync", path
            elif isinstance(node, ast.ImportFrom) and node.level > 1:
                raise AssertionError(f"{path} reaches out of the guest SDK")


def test_library_does_not_read_the_environment() -> None:
    """Configuration flows in: only the CLI layer may look at os.environ."""
    offenders = []
    for path in _modules():
        if _unit(_dotted(path)) == "cli":
            continue
        text = path.read_text(encoding="utf-8")
        if "os.environ" in text or "getenv(" in text:
            offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders
