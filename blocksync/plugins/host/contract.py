"""The plugin contract as the host checks it: every export's function signatures, from the WIT.

``wit/pattern.wit`` is the contract; this module renders a component's actual export types in
WIT-like text and compares them with the signatures below, so a component with a missing or
wrongly typed export is refused at load, naming the function, before any of its code runs.
(``tests/test_wit_coverage.py`` checks this table against the WIT's functions.)
"""

from __future__ import annotations

from wasmtime.component import (
    EnumType,
    FlagsType,
    FuncType,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    TupleType,
    ValType,
    VariantType,
)

PACKAGE = "pattern:extension"
#: Interface versions this host implements; a plugin exporting another is refused.
SUPPORTED_VERSIONS = ("0.1.0",)
INTERFACES = ("data-block", "data-stream", "tool")
#: Interfaces a plugin may export beside those, each serving one of them (``paging``: listing a
#: data-block source's paths, so the host reconciles it in pages)
OPTIONAL_INTERFACES = ("paging",)
#: Functions an exported interface may lack (added after components exporting it were built):
#: checked when present, treated by the host as answering "no" when absent
OPTIONAL_FUNCTIONS = {
    ("paging", "mirrors-folder"),
    ("paging", "label-namespace"),
    ("paging", "honours-dry-run"),
}

_BLOCK_REF = "record{block-id: string, label: string, agent-id: string}"
_NOTIFICATION = f"record{{text: string, blocks: list<{_BLOCK_REF}>}}"
_RULE = "record{pattern: string, permission: enum{read-only, read-write, admin}}"
_STATUS = "variant{stopped, running, paused}"
_SCHEMA = "record{name: string, description: string, schema-json: string}"
_VERSION = "record{version-id: string, timestamp: string, description: option<string>}"
_RECONCILE = (
    "variant{resolved(tuple<string, string>), needs-resolution(tuple<string, string, string>), "
    "no-change(string)}"
)

SIGNATURES: dict[str, dict[str, str]] = {
    "data-block": {
        "source-id": "() -> string",
        "name": "() -> string",
        "block-schema": f"() -> {_SCHEMA}",
        "permission-rules": f"() -> list<{_RULE}>",
        "load": f"(path: string, owner: string) -> result<{_BLOCK_REF}, string>",
        "create": f"(path: string, content: option<string>, owner: string) -> result<{_BLOCK_REF}, string>",
        "save": f"(block: {_BLOCK_REF}) -> result<_, string>",
        "delete": "(path: string) -> result<_, string>",
        "history": f"(block: {_BLOCK_REF}) -> result<list<{_VERSION}>, string>",
        "rollback": f"(block: {_BLOCK_REF}, version: string) -> result<_, string>",
        "diff": f"(block: {_BLOCK_REF}, from: option<string>, to: option<string>) -> result<string, string>",
        "reconcile": f"(paths: list<string>) -> result<list<{_RECONCILE}>, string>",
    },
    "data-stream": {
        "source-id": "() -> string",
        "name": "() -> string",
        "block-schemas": f"() -> list<{_SCHEMA}>",
        "start": "(owner: string) -> result<_, string>",
        "stop": "() -> result<_, string>",
        "pause": "() -> ()",
        "resume": "() -> ()",
        "status": f"() -> {_STATUS}",
        "supports-pull": "() -> bool",
        "pull": f"(limit: u32, cursor: option<string>) -> result<list<{_NOTIFICATION}>, string>",
    },
    "paging": {
        "paged": "() -> bool",
        "list-paths": (
            "(cursor: option<string>) -> result<tuple<list<string>, option<string>>, string>"
        ),
        "mirrors-folder": "() -> bool",
        "label-namespace": "() -> option<string>",
        "honours-dry-run": "() -> bool",
    },
    "tool": {
        "name": "() -> string",
        "description": "() -> string",
        "parameters-schema": "() -> string",
        "output-schema": "() -> string",
        "usage-rule": "() -> option<string>",
        "execute": "(params-json: string, meta-json: string) -> result<string, string>",
    },
}


def export_name(interface: str, version: str = SUPPORTED_VERSIONS[0]) -> str:
    return f"{PACKAGE}/{interface}@{version}"


def parse_export_name(name: str) -> tuple[str, str] | None:
    """``pattern:extension/data-block@0.1.0`` → ``("data-block", "0.1.0")``; None if foreign."""
    prefix = PACKAGE + "/"
    if not name.startswith(prefix):
        return None
    interface, _, version = name[len(prefix) :].partition("@")
    return interface, version


def render(ty: ValType | None) -> str:
    """A value type in WIT-like text (records, variants and enums spelled out structurally)."""
    if ty is None:
        return "_"
    if isinstance(ty, ListType):
        return f"list<{render(ty.element)}>"
    if isinstance(ty, OptionType):
        return f"option<{render(ty.payload)}>"
    if isinstance(ty, ResultType):
        return f"result<{render(ty.ok)}, {render(ty.err)}>"
    if isinstance(ty, TupleType):
        return f"tuple<{', '.join(render(t) for t in ty.elements)}>"
    if isinstance(ty, RecordType):
        return "record{" + ", ".join(f"{n}: {render(t)}" for n, t in ty.fields) + "}"
    if isinstance(ty, VariantType):
        cases = (n if t is None else f"{n}({render(t)})" for n, t in ty.cases)
        return "variant{" + ", ".join(cases) + "}"
    if isinstance(ty, EnumType):
        return "enum{" + ", ".join(ty.names) + "}"
    if isinstance(ty, FlagsType):
        return "flags{" + ", ".join(ty.names) + "}"
    return type(ty).__name__.lower()  # String, Bool, U32, ...: the WIT spelling


def render_func(ty: FuncType) -> str:
    params = ", ".join(f"{n}: {render(t)}" for n, t in ty.params)
    return f"({params}) -> {'()' if ty.result is None else render(ty.result)}"
