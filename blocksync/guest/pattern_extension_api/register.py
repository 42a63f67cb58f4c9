"""`register_extension`: the seed's `register_extension!` macro, in Python.

componentize-py looks in the app module for one class per exported WIT interface (`DataBlock`,
`DataStream`, `Tool`) and creates its own instance of it for each exported function. The classes
defined here are thin adapters: every method delegates to ONE instance of the user's class, made
on the first call from the host (module top level runs at build time, in a snapshot, where the host
cannot be called), and converts between friendly Python values and the WIT's.

For functions returning a WIT `result`, any exception from user code becomes the `err` string
"<ExceptionType>: <message>" (an `Err` raised on purpose passes through), so a plugin bug is a clear
error rather than a trap; MemoryError still traps. The other functions have no error channel: an
exception traps (after its traceback went to the host log at ERROR).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from componentize_py_types import Err

from . import stdio
from .extensions import DataBlockExtension, DataStreamExtension, ToolExtension
from .host import LogLevel, log
from .model import (
    RECONCILE_RESULT_TYPES,
    BlockRef,
    BlockSchemaSpec,
    ExecutionMeta,
    Notification,
    PermissionRule,
    ReconcileResult,
    SourceStatus,
    SourceStatusValue,
    VersionInfo,
)

__all__ = ["register_extension"]

E = TypeVar("E")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound=type)

_instances: dict[type, Any] = {}


def _extension(cls: type[E]) -> E:
    """The one instance of `cls`, created on first use (at run time, never at build time)."""
    try:
        return _instances[cls]  # type: ignore[no-any-return]
    except KeyError:
        instance = _instances[cls] = cls()
        return instance


def _plain(cls: type[E], call: Callable[[E], R]) -> R:
    """Run a non-`result` export: an exception traps (its traceback goes to the host log)."""
    stdio.install()
    try:
        return call(_extension(cls))
    finally:
        stdio.flush()


def _fallible(cls: type[E], call: Callable[[E], R]) -> R:
    """Run a `result` export: any exception becomes its `err` string, except MemoryError, which
    traps: an instance that ran out of memory is not worth keeping, and a trap makes the host
    discard it."""
    stdio.install()
    try:
        return call(_extension(cls))
    except MemoryError:
        raise
    except Err as exc:
        if isinstance(exc.value, str):
            raise
        raise Err(str(exc.value)) from None
    except Exception as exc:  # noqa: BLE001 - any bug in user code becomes the err string
        log(LogLevel.DEBUG, stdio.format_exception(exc))
        message = str(exc)
        raise Err(f"{type(exc).__name__}: {message}" if message else type(exc).__name__) from None
    finally:
        stdio.flush()


# -- checks and conversions of what user code returns


def _expect(value: object, kind: type[T], what: str) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"{what} must return {kind.__name__}, not {type(value).__name__}")
    return value


def _optional_str(value: object, what: str) -> str | None:
    return None if value is None else _expect(value, str, what)


def _list(value: object, kind: type[T], what: str) -> list[T]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{what} must return a list, not {type(value).__name__}")
    return [_expect(item, kind, f"{what} (each item)") for item in value]


def _reconcile_results(value: object) -> list[ReconcileResult]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"reconcile() must return a list, not {type(value).__name__}")
    for item in value:
        if not isinstance(item, RECONCILE_RESULT_TYPES):
            raise TypeError(
                "reconcile() results must be made with Resolved(), NeedsResolution() or "
                f"NoChange(), not {type(item).__name__}"
            )
    return list(value)


def _schema_spec(value: object, what: str) -> BlockSchemaSpec:
    spec = _expect(value, BlockSchemaSpec, what)
    if isinstance(spec.schema_json, str):
        return spec
    return BlockSchemaSpec(spec.name, spec.description, json.dumps(spec.schema_json))


def _schema_specs(value: object, what: str) -> list[BlockSchemaSpec]:
    return [_schema_spec(spec, f"{what} (each item)") for spec in _list(value, object, what)]


def _permission_rules(value: object) -> list[PermissionRule]:
    rules = []
    for item in _list(value, object, "permission_rules()"):
        if isinstance(item, tuple) and len(item) == 2:
            item = PermissionRule(*item)
        rules.append(_expect(item, PermissionRule, "permission_rules() (each item)"))
    return rules


# -- the export classes componentize-py instantiates (one per exported function: all state
#    lives in the one extension instance)


class _Export:
    extension_class: ClassVar[type]


class _DataBlockExport(_Export):
    extension_class: ClassVar[type[DataBlockExtension]]

    def source_id(self) -> str:
        return _plain(self.extension_class, lambda e: _expect(e.source_id(), str, "source_id()"))

    def name(self) -> str:
        return _plain(self.extension_class, lambda e: _expect(e.name(), str, "name()"))

    def block_schema(self) -> BlockSchemaSpec:
        return _plain(
            self.extension_class, lambda e: _schema_spec(e.block_schema(), "block_schema()")
        )

    def permission_rules(self) -> list[PermissionRule]:
        return _plain(self.extension_class, lambda e: _permission_rules(e.permission_rules()))

    def load(self, path: str, owner: str) -> BlockRef:
        return _fallible(
            self.extension_class, lambda e: _expect(e.load(path, owner), BlockRef, "load()")
        )

    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        return _fallible(
            self.extension_class,
            lambda e: _expect(e.create(path, content, owner), BlockRef, "create()"),
        )

    def save(self, block: BlockRef) -> None:
        _fallible(self.extension_class, lambda e: e.save(block))

    def delete(self, path: str) -> None:
        _fallible(self.extension_class, lambda e: e.delete(path))

    def history(self, block: BlockRef) -> list[VersionInfo]:
        return _fallible(
            self.extension_class, lambda e: _list(e.history(block), VersionInfo, "history()")
        )

    def rollback(self, block: BlockRef, version: str) -> None:
        _fallible(self.extension_class, lambda e: e.rollback(block, version))

    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        return _fallible(
            self.extension_class, lambda e: _expect(e.diff(block, from_, to), str, "diff()")
        )

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        return _fallible(self.extension_class, lambda e: _reconcile_results(e.reconcile(paths)))


class _PagingExport(_Export):
    """The `paging` interface of a data-block plugin (see `DataBlockExtension.paged`)."""

    extension_class: ClassVar[type[DataBlockExtension]]

    def paged(self) -> bool:
        return bool(self.extension_class.paged)

    def list_paths(self, cursor: str | None) -> tuple[list[str], str | None]:
        return _fallible(self.extension_class, lambda e: _page(e.list_page(cursor)))

    def mirrors_folder(self) -> bool:
        return bool(self.extension_class.mirrors_folder)

    def honours_dry_run(self) -> bool:
        return bool(self.extension_class.honours_dry_run)

    def label_namespace(self) -> str | None:
        return _plain(
            self.extension_class,
            lambda e: _optional_str(e.label_namespace(), "label_namespace()"),
        )


def _page(value: object) -> tuple[list[str], str | None]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError("list_page() must return (paths, next cursor or None)")
    paths, after = value
    return _list(paths, str, "list_page()"), _optional_str(after, "list_page() (the cursor)")


class _DataStreamExport(_Export):
    extension_class: ClassVar[type[DataStreamExtension]]

    def source_id(self) -> str:
        return _plain(self.extension_class, lambda e: _expect(e.source_id(), str, "source_id()"))

    def name(self) -> str:
        return _plain(self.extension_class, lambda e: _expect(e.name(), str, "name()"))

    def block_schemas(self) -> list[BlockSchemaSpec]:
        return _plain(
            self.extension_class, lambda e: _schema_specs(e.block_schemas(), "block_schemas()")
        )

    def start(self, owner: str) -> None:
        _fallible(self.extension_class, lambda e: e.start(owner))

    def stop(self) -> None:
        _fallible(self.extension_class, lambda e: e.stop())

    def pause(self) -> None:
        _plain(self.extension_class, lambda e: e.pause())

    def resume(self) -> None:
        _plain(self.extension_class, lambda e: e.resume())

    def status(self) -> SourceStatusValue:
        return _plain(self.extension_class, lambda e: SourceStatus.coerce(e.status()))

    def supports_pull(self) -> bool:
        return _plain(self.extension_class, lambda e: bool(e.supports_pull()))

    def pull(self, limit: int, cursor: str | None) -> list[Notification]:
        return _fallible(
            self.extension_class, lambda e: _list(e.pull(limit, cursor), Notification, "pull()")
        )


class _ToolExport(_Export):
    extension_class: ClassVar[type[ToolExtension]]

    def name(self) -> str:
        return _plain(self.extension_class, lambda e: _expect(e.name(), str, "name()"))

    def description(self) -> str:
        return _plain(
            self.extension_class, lambda e: _expect(e.description(), str, "description()")
        )

    def parameters_schema(self) -> str:
        return _plain(self.extension_class, lambda e: json.dumps(e.parameters_schema()))

    def output_schema(self) -> str:
        return _plain(self.extension_class, lambda e: json.dumps(e.output_schema()))

    def usage_rule(self) -> str | None:
        return _plain(self.extension_class, lambda e: _optional_str(e.usage_rule(), "usage_rule()"))

    def execute(self, params_json: str, meta_json: str) -> str:
        def run(extension: ToolExtension) -> str:
            params = json.loads(params_json) if params_json.strip() else None
            meta = ExecutionMeta.from_json(meta_json)
            return json.dumps(extension.execute(params, meta))

        return _fallible(self.extension_class, run)


#: (export class name componentize-py looks for, SDK base class, adapter)
INTERFACES: tuple[tuple[str, type, type[_Export]], ...] = (
    ("DataBlock", DataBlockExtension, _DataBlockExport),
    # exported beside `data-block` (a world without `paging` ignores the class)
    ("Paging", DataBlockExtension, _PagingExport),
    ("DataStream", DataStreamExtension, _DataStreamExport),
    ("Tool", ToolExtension, _ToolExport),
)


def register_extension(cls: C) -> C:
    """Export `cls` from the calling plugin module (call once per class, at module level).

    Defines `DataBlock`, `DataStream` and/or `Tool` in the caller's module, one per SDK base class
    `cls` derives from. Returns `cls`, so it also works as a class decorator.
    """
    if not isinstance(cls, type) or not any(issubclass(cls, base) for _, base, _ in INTERFACES):
        raise TypeError(
            f"register_extension() needs a class derived from DataBlockExtension, "
            f"DataStreamExtension or ToolExtension, not {cls!r}"
        )
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"class {cls.__name__} does not implement: {', '.join(missing)}")
    module = sys._getframe(1).f_globals
    for export_name, base, adapter in INTERFACES:
        if not issubclass(cls, base):
            continue
        existing = module.get(export_name)
        if isinstance(existing, type) and issubclass(existing, _Export):
            raise TypeError(
                f"{export_name} is already exported by {existing.extension_class.__name__}; "
                f"a plugin exports each interface once"
            )
        if existing is not None:
            raise TypeError(
                f"the plugin module already defines {export_name}, the name register_extension() "
                f"gives the export class componentize-py looks for: rename it"
            )
        module[export_name] = type(
            export_name,
            (adapter,),
            {"extension_class": cls, "__module__": module.get("__name__", "app")},
        )
    return cls
