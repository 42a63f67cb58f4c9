"""Calling a component function with a result converter built once per WIT type.

wasmtime-py's generic conversion re-reads the type through FFI for every element, and tags a
``result``/``variant`` only when its cases' Python types happen to differ (so an error string
of ``result<string, string>`` would be indistinguishable from success without the tag). The
converters here are built once from the function's type and always tag: a ``result`` becomes
``("ok" | "err", payload)``, a variant ``(case, payload)``, a record a ``dict`` keyed by field
name, an enum its case name, an option its payload or None. They read wasmtime's C value tree
directly, which is ~10x faster per element, and the tree is freed with one call afterwards.

This uses wasmtime-py internals (``_ffi``, ``Func._func``); the dependency is pinned below the
next major version for that reason, and the test suite exercises every converter.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import byref, string_at
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime._store import Storelike
from wasmtime.component import (
    F32,
    F64,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    Char,
    EnumType,
    Func,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    String,
    TupleType,
    ValType,
    VariantType,
)
from wasmtime.component._enter import enter_wasm

Lift = Callable[[Any], Any]

_NUMBERS: tuple[tuple[type[ValType], str], ...] = (
    (U8, "u8"),
    (U16, "u16"),
    (U32, "u32"),
    (U64, "u64"),
    (S8, "s8"),
    (S16, "s16"),
    (S32, "s32"),
    (S64, "s64"),
    (F32, "f32"),
    (F64, "f64"),
)


def _text(vec: Any) -> str:
    return string_at(vec.data, vec.size).decode("utf-8") if vec.size else ""


def _number(field: str) -> Lift:
    return lambda v: getattr(v.of, field)


def build_lift(ty: ValType | None) -> Lift:
    """A converter from a ``wasmtime_component_val_t`` of type ``ty`` to plain Python."""
    if ty is None:
        return lambda v: None
    if isinstance(ty, String):
        return lambda v: _text(v.of.string)
    if isinstance(ty, Bool):
        return lambda v: bool(v.of.boolean)
    for cls, field in _NUMBERS:
        if isinstance(ty, cls):
            return _number(field)
    if isinstance(ty, Char):
        return lambda v: chr(v.of.character)
    if isinstance(ty, EnumType):
        return lambda v: _text(v.of.enumeration)
    if isinstance(ty, ListType):
        if isinstance(ty.element, U8):
            return lambda v: bytes(v.of.list.data[i].of.u8 for i in range(v.of.list.size))
        element = build_lift(ty.element)

        def lift_list(v: Any) -> list[Any]:
            items = v.of.list
            data = items.data
            return [element(data[i]) for i in range(items.size)]

        return lift_list
    if isinstance(ty, TupleType):
        parts = [build_lift(t) for t in ty.elements]

        def lift_tuple(v: Any) -> tuple[Any, ...]:
            data = v.of.tuple.data
            return tuple(f(data[i]) for i, f in enumerate(parts))

        return lift_tuple
    if isinstance(ty, RecordType):
        fields = [(name, build_lift(t)) for name, t in ty.fields]

        def lift_record(v: Any) -> dict[str, Any]:
            data = v.of.record.data
            return {name: f(data[i].val) for i, (name, f) in enumerate(fields)}

        return lift_record
    if isinstance(ty, OptionType):
        payload = build_lift(ty.payload)

        def lift_option(v: Any) -> Any:
            ptr = v.of.option
            return payload(ptr.contents) if ptr else None

        return lift_option
    if isinstance(ty, ResultType):
        ok, err = build_lift(ty.ok), build_lift(ty.err)

        def lift_result(v: Any) -> tuple[str, Any]:
            r = v.of.result
            if r.is_ok:
                return ("ok", ok(r.val.contents) if r.val else None)
            return ("err", err(r.val.contents) if r.val else None)

        return lift_result
    if isinstance(ty, VariantType):
        # keyed by the raw case name: no decoding per element
        cases = {name.encode(): (name, build_lift(t)) for name, t in ty.cases}

        def lift_variant(v: Any) -> tuple[str, Any]:
            var = v.of.variant
            name = var.discriminant
            tag, payload = cases[string_at(name.data, name.size)]
            return (tag, payload(var.val.contents) if var.val else None)

        return lift_variant
    raise TypeError(f"no converter for WIT type {ty!r}")


Lower = Callable[[Storelike, Any, Any], None]


def build_lower(ty: ValType) -> Lower:
    """A converter from Python to a ``wasmtime_component_val_t`` of type ``ty``.

    ``list<string>`` (the paths of a ``reconcile``, thousands at a time) gets its own loop;
    everything else, small by nature, goes through wasmtime-py's generic conversion.
    """
    if isinstance(ty, ListType) and isinstance(ty.element, String):
        return _lower_strings
    return lambda store, value, slot: ty.convert_to_c(store, value, ctypes.pointer(slot))


def check_lowers(lower: Lower, store: Storelike, value: Any) -> None:
    """Lower ``value`` into a scratch slot and free it: raises where wasmtime-py would fail.

    A host function's result is lowered by wasmtime-py after the function returned, outside
    anything the host function can catch; a failure there lands in wasmtime-py's process-wide
    exception slot (see :mod:`blocksync.plugins.host.hostfuncs`). Lowering it once here first turns
    a host bug into an error of the call that made it."""
    slot = ffi.wasmtime_component_val_t()
    lower(store, value, slot)
    ffi.wasmtime_component_val_delete(byref(slot))


def _lower_strings(store: Storelike, values: Any, slot: Any) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError("expected a list of strings")
    items = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(items, len(values))
    data, kind, to_capi = items.data, ffi.WASMTIME_COMPONENT_STRING, ffi.str_to_capi
    for i, value in enumerate(values):
        item = data[i]
        item.kind = kind
        item.of.string = to_capi(value)
    slot.kind = ffi.WASMTIME_COMPONENT_LIST
    slot.of.list = items


def call(
    func: Func,
    store: Storelike,
    lift: Lift,
    has_result: bool,
    *params: Any,
    lowers: list[Lower] | None = None,
) -> Any:
    """Call ``func`` like ``Func.__call__`` does, converting the result with ``lift`` (and the
    parameters with ``lowers``, built once per function by :func:`build_lower`)."""
    if lowers is None:
        lowers = [build_lower(ty) for _name, ty in func.type(store).params]
    if len(params) != len(lowers):
        raise TypeError(f"{len(lowers)} parameters expected, {len(params)} given")
    lowered = (ffi.wasmtime_component_val_t * len(params))()
    n = 0
    try:
        for lower, value in zip(lowers, params):
            lower(store, value, lowered[n])
            n += 1
        result = ffi.wasmtime_component_val_t()
        enter_wasm(
            lambda: ffi.wasmtime_component_func_call(
                byref(func._func),
                store._context(),
                lowered,
                n,
                byref(result) if has_result else None,
                1 if has_result else 0,
            )
        )
        if not has_result:
            return None
        try:
            return lift(result)
        finally:
            ffi.wasmtime_component_val_delete(byref(result))
    finally:
        for i in range(n):
            ffi.wasmtime_component_val_delete(byref(lowered[i]))
