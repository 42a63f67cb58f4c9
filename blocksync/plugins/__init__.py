"""Plugins: sandboxed WebAssembly components (wasmtime component model) as blocksync sources.

``host`` runs them (``host.runtime`` loads and calls components; ``host.hostfuncs`` is what
plugins may call); ``bridges`` adapt plugins to the Protocols of :mod:`blocksync.sync.protocol`;
``source`` makes a data-block plugin a source the reconciler drives (its writes staged per call
by ``batch``, its sync bases kept by ``syncbases``); ``registry`` holds a store's configured
plugins; ``tooling.build`` turns a guest source into a component.
"""

from .bridges import WasmDataBlock, WasmDataStream, WasmTool
from .discovery import Discovered
from .host.hostfuncs import HostServices
from .host.runtime import (
    ComponentInfo,
    Inspection,
    Plugin,
    check,
    compile_component,
    inspect_file,
    load,
    read_component,
    runtime,
)
from .registry import PluginEntry, PluginSet, parse_specs
from .source import PluginSource
from .spec import Limits, PluginSpec

__all__ = [
    "ComponentInfo",
    "Discovered",
    "HostServices",
    "Inspection",
    "Limits",
    "Plugin",
    "PluginEntry",
    "PluginSet",
    "PluginSource",
    "PluginSpec",
    "WasmDataBlock",
    "WasmDataStream",
    "WasmTool",
    "check",
    "compile_component",
    "inspect_file",
    "load",
    "parse_specs",
    "read_component",
    "runtime",
]
