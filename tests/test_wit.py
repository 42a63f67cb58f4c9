"""The WIT package `wit/pattern.wit` is valid and keeps the seed's signatures.

* Every world generates Python guest bindings with componentize-py, and the bindings hold the
  exported interface's protocol class with exactly the seed's methods.
* A text check: each seed interface declares exactly the seed's functions with the seed's
  signatures, and the shared types keep the seed's shape, so the API never drifts from the seed
  (seed/wasm-extension-system.md; `from` is a WIT keyword and is spelled `%from`).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
WIT_DIR = ROOT / "wit"
WIT_FILE = WIT_DIR / "pattern.wit"

# --------------------------------------------------------------------------------------------
# The seed, verbatim (only `from` -> `%from`).

SEED_FUNCS: dict[str, list[str]] = {
    "data-block": [
        "source-id: func() -> string;",
        "name: func() -> string;",
        "block-schema: func() -> block-schema-spec;",
        "permission-rules: func() -> list<permission-rule>;",
        "load: func(path: string, owner: string) -> result<block-ref, string>;",
        (
            "create: func(path: string, content: option<string>, owner: string)"
            " -> result<block-ref, string>;"
        ),
        "save: func(block: block-ref) -> result<_, string>;",
        "delete: func(path: string) -> result<_, string>;",
        "history: func(block: block-ref) -> result<list<version-info>, string>;",
        "rollback: func(block: block-ref, version: string) -> result<_, string>;",
        (
            "diff: func(block: block-ref, %from: option<string>, to: option<string>)"
            " -> result<string, string>;"
        ),
        "reconcile: func(paths: list<string>) -> result<list<reconcile-result>, string>;",
    ],
    "data-stream": [
        "source-id: func() -> string;",
        "name: func() -> string;",
        "block-schemas: func() -> list<block-schema-spec>;",
        "start: func(owner: string) -> result<_, string>;",
        "stop: func() -> result<_, string>;",
        "pause: func();",
        "resume: func();",
        "status: func() -> source-status;",
        "supports-pull: func() -> bool;",
        "pull: func(limit: u32, cursor: option<string>) -> result<list<notification>, string>;",
    ],
    "tool": [
        "name: func() -> string;",
        "description: func() -> string;",
        "parameters-schema: func() -> string;",
        "output-schema: func() -> string;",
        "usage-rule: func() -> option<string>;",
        "execute: func(params-json: string, meta-json: string) -> result<string, string>;",
    ],
    "host": [
        (
            "memory-create-block: func(owner: string, label: string, description: string,"
            " content: string) -> result<string, string>;"
        ),
        "memory-read-block: func(owner: string, label: string) -> result<string, string>;",
        (
            "memory-update-block: func(owner: string, label: string, content: string)"
            " -> result<_, string>;"
        ),
        "memory-delete-block: func(owner: string, label: string) -> result<_, string>;",
        "log: func(level: u8, message: string);",
        "http-get: func(url: string, headers-json: string) -> result<string, string>;",
        (
            "http-post: func(url: string, headers-json: string, body: string)"
            " -> result<string, string>;"
        ),
        "get-config: func(key: string) -> option<string>;",
        "emit-notification: func(notification: notification);",
    ],
}

SEED_TYPES: dict[str, tuple[str, str]] = {
    "block-ref": ("record", "block-id: string, label: string, agent-id: string"),
    "notification": ("record", "text: string, blocks: list<block-ref>"),
    "permission-rule": ("record", "pattern: string, permission: permission-level"),
    "permission-level": ("enum", "read-only, read-write, admin"),
    "source-status": ("variant", "stopped, running, paused"),
    "block-schema-spec": ("record", "name: string, description: string, schema-json: string"),
    "version-info": (
        "record",
        "version-id: string, timestamp: string, description: option<string>",
    ),
    "reconcile-result": (
        "variant",
        (
            "resolved(tuple<string, string>), needs-resolution(tuple<string, string, string>),"
            " no-change(string)"
        ),
    ),
}

# world -> exported interfaces (the seed's, and `paging` beside `data-block`); every world
# imports host, sync and http.
WORLDS: dict[str, list[str]] = {
    "data-block-plugin": ["data-block", "paging"],
    "data-stream-plugin": ["data-stream"],
    "tool-plugin": ["tool"],
    "pattern-extension": ["data-block", "paging", "data-stream", "tool"],
}
#: functions of the exported interfaces the seed lacks
ADDED_FUNCS: dict[str, list[str]] = {
    "paging": [
        "paged: func() -> bool;",
        (
            "list-paths: func(cursor: option<string>) -> "
            "result<tuple<list<string>, option<string>>, string>;"
        ),
        "mirrors-folder: func() -> bool;",
        "label-namespace: func() -> option<string>;",
        "honours-dry-run: func() -> bool;",
    ],
}
WORLD_IMPORTS = ["host", "sync", "http"]

# --------------------------------------------------------------------------------------------
# A small WIT reader: enough to pull interfaces, worlds, functions and type bodies out of text.

_COMMENT = re.compile(r"//[^\n]*")
_FUNC = re.compile(r"(%?[a-z][a-z0-9-]*)\s*:\s*func\s*\(([^)]*)\)\s*(?:->\s*([^;]+?))?\s*;")
_TYPE = re.compile(r"\b(record|enum|variant)\s+([a-z][a-z0-9-]*)\s*\{([^{}]*)\}")


def _strip_comments(text: str) -> str:
    return _COMMENT.sub("", text)


def _blocks(text: str, keyword: str) -> dict[str, str]:
    """`keyword NAME { ... }` at any depth -> {NAME: body}, with balanced braces."""
    out: dict[str, str] = {}
    for m in re.finditer(rf"\b{keyword}\s+([a-z][a-z0-9-]*)\s*\{{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out[m.group(1)] = text[m.end() : i - 1]
    return out


def _norm(s: str) -> str:
    """Whitespace-insensitive form: no spaces at all, no trailing comma."""
    return re.sub(r"\s+", "", s).rstrip(",")


def _funcs(body: str) -> dict[str, str]:
    """{function name: normalized `(params)->result`} of one interface body."""
    funcs: dict[str, str] = {}
    for m in _FUNC.finditer(body):
        name = m.group(1)
        assert name not in funcs, f"function {name} declared twice"
        funcs[name] = _norm(f"({m.group(2)})->{m.group(3) or ''}")
    return funcs


@pytest.fixture(scope="module")
def wit_text() -> str:
    return _strip_comments(WIT_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def interfaces(wit_text: str) -> dict[str, str]:
    return _blocks(wit_text, "interface")


def test_package_is_versioned(wit_text: str) -> None:
    assert re.search(r"^\s*package\s+pattern:extension@0\.1\.0\s*;", wit_text, re.MULTILINE)


@pytest.mark.parametrize("iface", sorted(SEED_FUNCS))
def test_seed_interface_signatures_unchanged(interfaces: dict[str, str], iface: str) -> None:
    assert iface in interfaces, f"interface {iface} missing"
    expected = _funcs(" ".join(SEED_FUNCS[iface]))
    assert len(expected) == len(SEED_FUNCS[iface])  # the reader saw every seed line
    actual = _funcs(interfaces[iface])
    for name, sig in expected.items():
        assert name in actual, f"{iface}.{name} missing"
        assert actual[name] == sig, f"{iface}.{name} drifted from the seed"
    assert set(actual) == set(expected), f"{iface} has functions the seed lacks"


def test_host_keeps_the_seed_order(interfaces: dict[str, str]) -> None:
    order = [m.group(1) for m in _FUNC.finditer(interfaces["host"])]
    assert order == list(_funcs(" ".join(SEED_FUNCS["host"]))), "host is not in seed order"


def test_shared_types_live_in_types_and_keep_the_seed_shape(
    interfaces: dict[str, str],
) -> None:
    assert "types" in interfaces
    declared = {
        m.group(2): (m.group(1), _norm(m.group(3))) for m in _TYPE.finditer(interfaces["types"])
    }
    for name, (kind, body) in SEED_TYPES.items():
        assert name in declared, f"type {name} missing from interface types"
        assert declared[name] == (kind, _norm(body)), f"type {name} drifted from the seed"


def test_additions_are_separate_interfaces(interfaces: dict[str, str]) -> None:
    sync = _funcs(interfaces["sync"])
    assert set(sync) >= {
        "base",
        "set-base",
        "forget",
        "merge3",
        "block-history",
        "block-read-at",
    }
    assert sync["merge3"] == _norm(
        "(base: string, disk: string, agent: string) -> result<string, string>"
    )
    http = _funcs(interfaces["http"])
    assert http == {
        "request": _norm(
            "(method: string, url: string, headers: list<tuple<string, string>>,"
            " body: option<list<u8>>) -> result<response, string>"
        )
    }
    declared = {m.group(2): _norm(m.group(3)) for m in _TYPE.finditer(interfaces["http"])}
    assert declared["response"] == _norm(
        "status: u16, headers: list<tuple<string, string>>, body: list<u8>"
    )


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_world_declares_imports_and_exports(wit_text: str, world: str) -> None:
    worlds = _blocks(wit_text, "world")
    assert world in worlds
    body = worlds[world]
    assert sorted(re.findall(r"\bimport\s+([a-z][a-z0-9-]*)\s*;", body)) == sorted(WORLD_IMPORTS)
    assert sorted(re.findall(r"\bexport\s+([a-z][a-z0-9-]*)\s*;", body)) == sorted(WORLDS[world])


# --------------------------------------------------------------------------------------------
# componentize-py: every world must produce guest bindings.


def _componentize_py() -> list[str]:
    """How to run componentize-py: the venv's script, else PATH, else its entry point."""
    exe = shutil.which("componentize-py", path=os.path.dirname(sys.executable))
    exe = exe or shutil.which("componentize-py")
    if exe:
        return [exe]
    import componentize_py  # noqa: F401  (a test dependency: missing is a failure, not a skip)

    # The package has no __main__; call the console-script entry point directly.
    return [
        sys.executable,
        "-c",
        (
            "import sys; sys.argv[0] = 'componentize-py'; "
            "from componentize_py import script; sys.exit(script())"
        ),
    ]


def _snake(name: str) -> str:
    return name.lstrip("%").replace("-", "_")


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_world_generates_python_bindings(world: str, tmp_path: Path) -> None:
    out = tmp_path / "bindings"
    proc = subprocess.run(
        [*_componentize_py(), "-d", str(WIT_DIR), "-w", world, "bindings", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"componentize-py failed for {world}:\n{proc.stderr}"

    pkg = out / "wit_world"
    for imp in [*WORLD_IMPORTS, "types"]:
        assert (pkg / "imports" / f"{_snake(imp)}.py").is_file(), f"no import module {imp}"

    exports_dir = pkg / "exports"
    generated = {p.stem for p in exports_dir.glob("*.py")} - {"__init__"}
    assert generated == {_snake(e) for e in WORLDS[world]}

    for iface in WORLDS[world]:
        # componentize-py 0.25: wit_world/exports/__init__.py holds one Protocol class per
        # exported interface (`DataBlock`, `DataStream`, `Tool`), methods in snake_case.
        tree = ast.parse((exports_dir / "__init__.py").read_text(encoding="utf-8"))
        classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        cls = classes.get(_pascal(iface))
        assert cls is not None, f"no protocol class {_pascal(iface)} for {iface}"
        assert any(ast.unparse(b) == "Protocol" for b in cls.bases)
        methods = [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]
        funcs = SEED_FUNCS.get(iface) or ADDED_FUNCS[iface]
        assert methods == [_snake(n) for n in _funcs(" ".join(funcs))]

    # The host functions the seed defines are importable, snake_case, in seed order.
    host = ast.parse((pkg / "imports" / "host.py").read_text(encoding="utf-8"))
    host_funcs = [n.name for n in host.body if isinstance(n, ast.FunctionDef)]
    assert host_funcs == [_snake(n) for n in _funcs(" ".join(SEED_FUNCS["host"]))]
