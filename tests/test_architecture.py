"""Imports point down the layers (DESIGN.md), click stays in the CLI, errors live in errors.py."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import blocksync

PACKAGE = Path(blocksync.__file__).parent

#: A module may import only modules of a strictly lower layer (subpackages count as one module).
LAYERS = {
    "errors": 0,
    "guest": 0,  # the guest SDK runs inside plugins: it imports nothing of blocksync
    "truth": 0,  # pure: the same module runs inside plugins (guest SDK)
    "sigv4": 0,  # pure: shipped into plugins too
    "apply": 1,  # pure: carries truth's decisions out over an Outside port; shipped too
    "linediff": 0,  # pure: git's line diff algorithms, stdlib only
    "deadlines": 0,
    "logs": 0,  # plugins' log files in the store, the terminal on request  # the time left to a plugin call, for waits inside its host functions
    "names": 1,
    "text": 1,
    "merge": 1,
    "config": 1,
    "disk": 2,  # I/O confined to one folder (directory descriptors, no links followed)
    "versions": 2,  # above safefile: index.db is never opened through a link
    "sources": 1,
    "gitstore": 2,
    "layout": 2,  # the one place block and base folders are encoded (names, files, paths)
    "permissions": 2,
    "notifications": 2,
    # fractions: index.db's one handle sits between safefile and the tables that take it, and
    # the base index between bases and its users (the package move, item 8, renumbers these)
    "index_db": 1.5,  # the one connection to index.db, atomic(), migrations
    "sqlitetable": 1.6,
    "safefile": 1,  # files blocksync writes, opened without following links
    "conflicts": 2,
    "runs": 2,
    "runlock": 2,
    "run": 2,  # one run of the reconcile loop: id, deadline, clock, why a step was not started
    "interrupts": 1,  # SIGINT/SIGTERM during a locked run: recorded, acted on at safe points
    "blocks": 3,
    "bases": 3,
    "base_index": 3.5,  # sync bases' hashes in index.db (bases' SQL side)
    "records": 3,  # refs/blocksync/records: the record tables (conflicts, runs, ...) in git
    "remote_checks": 3,  # what a pull accepts
    "fsck": 4,
    "remote_conflicts": 4,  # conflicts recorded in the tree that travels to other machines
    "folder_config": 4,  # a file source's configuration and selection
    "folder_disk": 3,  # a file source's roots, their survey, the Outside port over them
    "folder_source": 5,  # the file source: plan, apply (through apply), settle, DataBlock
    "plugins": 4,
    "agent_tools": 4,  # blocksync's own tools: conflicts, history, rollback
    "reconcile": 5,
    "tools": 5,  # the tool box: plugin tools and agent_tools, schema-checked
    "streams": 5,
    "outcome": 3,  # conflict rows from what a sync found: the reconciler's and remote pulls'
    "remotes_transport": 4,  # fetch and push of main, the remotes configured
    "remotes_treemerge": 5,  # two mains' trees merged per block by the truth table
    "remotes_source": 6,  # the remotes API: pull, push, their results and conflicts
    "workspace": 7,
    "sync": 8,
    "demo": 8,
    "conformance": 8,
    "cli": 9,
    "__init__": 10,
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported top-level blocksync module, line) for each import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth_of_file = len(path.relative_to(PACKAGE).parts) - 1
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                up = node.level - 1
                if up > depth_of_file:
                    continue
                base = list(path.relative_to(PACKAGE).parts[: depth_of_file - up])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "blocksync":
                parts = node.module.split(".")[1:]
                names = [parts[0]] if parts else [a.name for a in node.names]
            else:
                continue
            found += [(n, node.lineno) for n in names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "blocksync" and len(parts) > 1:
                    found.append((parts[1], node.lineno))
    return found


def test_every_module_has_a_layer() -> None:
    missing = {_top(p) for p in _modules()} - set(LAYERS)
    assert not missing, f"give these modules a layer in this test and DESIGN's picture: {missing}"


def test_imports_point_down() -> None:
    wrong = []
    for path in _modules():
        here = _top(path)
        for target, line in _imports(path):
            if target == here:
                continue  # inside one subpackage
            if LAYERS.get(target, 99) >= LAYERS[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not wrong, "imports pointing up or sideways:\n" + "\n".join(wrong)


def test_only_the_cli_imports_click() -> None:
    offenders = []
    for path in _modules():
        if _top(path) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if any(n.split(".")[0] == "click" for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders


#: modules shipped verbatim into plugins (plugins/build.py): their exceptions are the protocol's,
#: which the host translates into blocksync.errors at its boundary
SHIPPED = {"blocksync.apply"}


def test_only_errors_defines_exceptions() -> None:
    offenders = []
    for info in pkgutil.walk_packages(blocksync.__path__, "blocksync."):
        if info.name.startswith("blocksync.guest") or info.name in SHIPPED:
            continue  # runs inside plugins, where blocksync.errors does not exist
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
        assert not _imports(path) or all(t == "guest" for t, _ in _imports(path)), path


def test_library_does_not_read_the_environment() -> None:
    """Configuration flows in: only the CLI layer may look at os.environ."""
    offenders = []
    for path in _modules():
        if _top(path) == "cli":
            continue
        text = path.read_text(encoding="utf-8")
        if "os.environ" in text or "getenv(" in text:
            offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders
