"""The tool box: every tool an agent can call, plugin tools and blocksync's own, behind one check.

``ws.tools.list()`` describes them (name, description, JSON Schemas, usage rule, origin);
``ws.tools.call(name, params, agent=...)`` runs one::

    params ──▶ parameters schema ──▶ Tool.execute(params-json, meta-json) ──▶ output schema ──▶ dict

Every tool, a WASM plugin exporting ``tool`` (:class:`~blocksync.plugins.bridges.WasmTool`) or a
built-in (:mod:`blocksync.agents.agent_tools`), is a :class:`blocksync.sync.protocol.Tool`: JSON text both
ways. Its two schemas are checked to be valid JSON Schema when the tool is first loaded (again
after its plugin file changes) -- :class:`~blocksync.errors.ToolSchemaInvalid` refuses it before
any call. Params failing the parameters schema never reach the tool
(:class:`~blocksync.errors.ToolInputInvalid`, exit 2); output failing the output schema is
withheld (:class:`~blocksync.errors.ToolOutputInvalid`). Both name each offending field by JSON
Pointer with the failing keyword.

The meta each call passes (``meta-json``) is ``{"agent_id": ..., "call_id": ..., "tool": ...}``;
a call without a ``call_id`` gets a fresh one. Schemas may use ``$ref`` only within themselves:
no reference is ever fetched (a sandboxed plugin must not make the host open URLs).
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from jsonschema.exceptions import ValidationError, relevance
from jsonschema.validators import Draft202012Validator, validator_for
from referencing import Registry

from blocksync.errors import (
    AgentNotAllowed,
    BlocksyncError,
    PluginError,
    ToolInputInvalid,
    ToolNotFound,
    ToolOutputInvalid,
    ToolSchemaInvalid,
    UsageError,
)
from blocksync.plugins import PluginSet
from blocksync.sync.protocol import Tool
from blocksync.sync.reconciler import Locker
from blocksync.text import check_json_depth, parse_json

from .agent_tools import PREFIX, Grants, own_only

#: what the common LLM tool APIs accept as a tool name
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BUILTIN = "built-in"

Origin = Literal["builtin", "plugin"]


@dataclasses.dataclass(frozen=True)
class ToolEntry:
    """One tool as an agent framework needs it. ``plugin`` is the plugin's configured key
    (None for a built-in), ``version`` its file's version."""

    name: str
    description: str
    parameters_schema: dict[str, Any] | bool
    output_schema: dict[str, Any] | bool
    usage_rule: str | None
    origin: Origin
    plugin: str | None = None
    version: str | None = None

    def function_spec(self) -> dict[str, Any]:
        """The tool in the shape LLM APIs take (``{"type": "function", "function": {...}}``);
        the usage rule is appended to the description, where a model reads it."""
        text = self.description
        if self.usage_rule:
            text = f"{text}\n\nUsage: {self.usage_rule}"
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": text,
                "parameters": self.parameters_schema,
            },
        }


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One completed call: its validated output and who made it."""

    tool: str
    call_id: str
    agent: str | None
    output: Any
    origin: Origin
    plugin: str | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class ToolProblem:
    """A configured plugin the tool box could not offer, and why (listing never fails)."""

    plugin: str
    error: str


@dataclasses.dataclass(frozen=True)
class _Loaded:
    entry: ToolEntry
    tool: Tool
    params: Any  # jsonschema validators (untyped)
    output: Any


# -- JSON Schema helpers -------------------------------------------------------------------------


def _pointer(parts: Sequence[Any]) -> str:
    """A JSON Pointer (RFC 6901): ``""`` is the whole document."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _violation(error: ValidationError) -> dict[str, str]:
    parts = list(error.absolute_path)
    keyword = str(error.validator)
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        # point at the missing property itself: that is the field to fix
        missing = [n for n in error.validator_value if n not in instance]
        named = [n for n in missing if repr(n) in error.message]
        if named or missing:
            parts.append((named or missing)[0])
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = [k for k in instance if k not in known]
        if len(extra) == 1:
            parts.append(extra[0])
    return {
        "pointer": _pointer(parts),
        "keyword": keyword,
        "schema_path": _pointer(list(error.absolute_schema_path)),
        "message": error.message,
    }


def violations(validator: Any, instance: Any) -> builtins.list[dict[str, str]]:
    """Every failed check of ``instance``, most relevant first (as jsonschema's best_match)."""
    errors = sorted(validator.iter_errors(instance), key=relevance, reverse=True)
    return [_violation(e) for e in errors]


class _Problem(NamedTuple):
    """Why a schema text is no JSON Schema: where, which keyword, and what."""

    pointer: str
    keyword: str
    detail: str


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> tuple[dict[str, Any] | bool, Any] | _Problem:
    """(schema, validator) of a schema text, or the problem with it. Cached by the text:
    checking a schema against its meta-schema costs milliseconds, and a server building its
    tool box per call (``blocksync mcp``) would pay it for every schema on every call. A
    validator holds no state between validations, so one is shared safely."""
    try:
        schema = parse_json(text)
    except json.JSONDecodeError as exc:
        return _Problem("", "", f"not JSON: {exc}")
    except ValueError as exc:  # nested too deeply
        return _Problem("", "", str(exc))
    if not isinstance(schema, (dict, bool)):
        return _Problem(
            "", "type", f"a schema is an object or a boolean, not {type(schema).__name__}"
        )
    cls = validator_for(schema, default=None)
    if cls is None:
        if isinstance(schema, dict) and "$schema" in schema:
            return _Problem("/$schema", "$schema", f"unknown meta-schema {schema['$schema']!r}")
        cls = Draft202012Validator  # no $schema: the current draft
    error = next(
        iter(sorted(cls(cls.META_SCHEMA).iter_errors(schema), key=relevance, reverse=True)), None
    )
    if error is not None:
        v = _violation(error)
        return _Problem(v["pointer"], v["keyword"], v["message"])
    # an empty registry: a $ref outside the schema fails instead of being fetched
    return schema, cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)


def compile_schema(
    text: str, *, plugin: str, version: str, tool: str, which: str
) -> tuple[dict[str, Any] | bool, Any]:
    """(schema, validator) of a schema given as JSON text; ToolSchemaInvalid if it is not one."""
    found = _compiled(text)
    if isinstance(found, _Problem):
        raise ToolSchemaInvalid(plugin, version, tool, which, *found)
    schema, validator = found
    return copy.deepcopy(schema), validator  # the caller's own: the cached one stays as read


def params_from_json(text: str) -> Any:
    """Tool params given as JSON text (``blocksync tool run --params``); UsageError if not JSON,
    or nested too deeply."""
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the params are not JSON: {exc}") from exc
    except ValueError as exc:  # nested too deeply
        raise UsageError(f"the params are refused: {exc}") from exc


# -- the tool box --------------------------------------------------------------------------------


#: what a tool call waiting for the run lock writes into the lock's note
TOOL_RUN_COMMAND = "blocksync tool run"


class ToolBox:
    """``ws.tools``: the built-in tools and the tools of the configured plugins.

    Plugin tools are named by what their ``name()`` returns. A plugin tool whose name is not a
    valid LLM tool name, takes the built-ins' ``blocksync_`` prefix or repeats another tool's
    name is not offered: :meth:`problems` says why, as it does for plugins that fail to load.

    A plugin's tool belongs to the agent the plugin is attached to (``[agents.<agent>.
    data_sources.<key>]``): an agent's call of another agent's plugin tool is
    :class:`~blocksync.errors.AgentNotAllowed` unless ``grants`` (``may_act_for``) lets it act
    for that agent -- the owner rule of the built-in tools. A call naming no agent may call
    every tool.
    """

    def __init__(
        self,
        plugins: PluginSet | None,
        builtin_tools: Sequence[Tool],
        locked: Locker | None = None,
        grants: Grants = own_only,
    ) -> None:
        self._plugins = plugins
        self._locked = locked  # the run lock, for a call asked to wait for it
        self._grants = grants
        self._lock = threading.Lock()
        self._builtins: dict[str, _Loaded] = {}
        for tool in builtin_tools:
            loaded = self._load(tool, "builtin", None, BUILTIN)
            self._builtins[loaded.entry.name] = loaded
        self._by_plugin: dict[str, _Loaded] = {}  # plugin key -> its tool, checked
        self._problems: dict[str, BlocksyncError] = {}
        self._names: dict[str, str] = {}  # offered plugin tool -> its plugin key (last scan)

    # -- loading --------------------------------------------------------------------------

    def _load(self, tool: Tool, origin: Origin, key: str | None, version: str) -> _Loaded:
        name = tool.name()
        who = key or "blocksync"
        params_schema, params = compile_schema(
            tool.parameters_schema(), plugin=who, version=version, tool=name, which="parameters"
        )
        output_schema, output = compile_schema(
            tool.output_schema(), plugin=who, version=version, tool=name, which="output"
        )
        entry = ToolEntry(
            name,
            tool.description(),
            params_schema,
            output_schema,
            tool.usage_rule(),
            origin,
            key,
            None if key is None else version,
        )
        return _Loaded(entry, tool, params, output)

    def _plugin_keys(self) -> builtins.list[str]:
        return [] if self._plugins is None else builtins.list(self._plugins.specs)

    def _plugin_tool(self, key: str) -> _Loaded | None:
        """The checked tool of plugin ``key`` (None: it exports no tool); reloaded when the
        plugin's file changed. Raises what loading it raises."""
        assert self._plugins is not None
        plugin = self._plugins.get(key)
        if "tool" not in plugin.interfaces:
            return None
        wasm = self._plugins.tool(key)
        version = plugin.version
        with self._lock:
            cached = self._by_plugin.get(key)
        if cached is not None and cached.entry.version == version:
            return cached
        loaded = self._load(wasm, "plugin", key, version)
        name = loaded.entry.name
        if not TOOL_NAME.fullmatch(name) or name.startswith(PREFIX):
            raise PluginError(
                key,
                version,
                "tool.name",
                f"tool name {name!r} is not offered: it must match {TOOL_NAME.pattern} and not "
                f"start with {PREFIX!r}",
            )
        with self._lock:
            self._by_plugin[key] = loaded
        return loaded

    def _scan(self) -> dict[str, _Loaded]:
        """Every offered tool by name (loading each configured plugin to tell its exports)."""
        found = dict(self._builtins)
        problems: dict[str, BlocksyncError] = {}
        for key in self._plugin_keys():
            try:
                loaded = self._plugin_tool(key)
            except BlocksyncError as exc:
                problems[key] = exc
                continue
            if loaded is None:
                continue
            name = loaded.entry.name
            if name in found:
                other = found[name].entry.plugin
                taker = "a built-in tool" if other is None else f"plugin {other!r}"
                problems[key] = PluginError(
                    key,
                    loaded.entry.version or "",
                    "tool.name",
                    f"tool name {name!r} is taken by {taker}; not offered",
                )
                continue
            found[name] = loaded
        with self._lock:
            self._problems = problems
            self._names = {n: t.entry.plugin for n, t in found.items() if t.entry.plugin}
        return found

    def _find(self, name: str) -> _Loaded:
        loaded = self._builtins.get(name)
        if loaded is not None:
            return loaded
        keys = self._plugin_keys()
        with self._lock:
            known = self._names.get(name)
        # the common cases: a tool seen by an earlier scan, or a plugin keyed by its tool's name
        for key in dict.fromkeys(k for k in (known, name) if k is not None and k in keys):
            try:
                own = self._plugin_tool(key)
            except BlocksyncError:
                own = None
            if own is not None and own.entry.name == name:
                return own
        tools = self._scan()
        if name in tools:
            return tools[name]
        with self._lock:
            problem = self._problems.get(name)
            by_key = self._by_plugin.get(name)
        if problem is not None:  # the key of a plugin that is not offered: say why
            raise problem
        if by_key is not None and tools.get(by_key.entry.name) is by_key:
            return by_key  # a plugin's key names its tool too
        raise ToolNotFound(name, sorted(tools))

    # -- public ---------------------------------------------------------------------------

    def _may_use(self, agent: str | None, plugin: str | None) -> bool:
        """Whether ``agent`` may call the tools of plugin ``plugin`` (None: a built-in)."""
        if agent is None or plugin is None or self._plugins is None:
            return True
        return self._plugins.specs[plugin].agent in self._grants(agent)

    def list(self, agent: str | None = None) -> builtins.list[ToolEntry]:
        """Built-in tools first, then each plugin tool in configuration order; with ``agent``,
        only the plugin tools it may call."""
        return [
            loaded.entry
            for loaded in self._scan().values()
            if self._may_use(agent, loaded.entry.plugin)
        ]

    def problems(self, agent: str | None = None) -> builtins.list[ToolProblem]:
        """Configured plugins not offered by the last :meth:`list`, with the reason; with
        ``agent``, only those of plugins it may call."""
        with self._lock:
            found = builtins.list(self._problems.items())
        return [ToolProblem(k, str(e)) for k, e in found if self._may_use(agent, k)]

    def get(self, name: str) -> ToolEntry:
        return self._find(name).entry

    def run(
        self,
        name: str,
        params: Any,
        *,
        agent: str | None = None,
        call_id: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> ToolCall:
        """Validate ``params``, call the tool with the meta, validate its output. A tool that
        takes the run lock (``blocksync_conflict_resolve``) raises RunLockHeld while another
        run holds it; with ``wait`` the call holds the lock, waiting for it first (``timeout``
        seconds at most, None: no limit)."""
        if wait and self._locked is not None:
            with self._locked(TOOL_RUN_COMMAND, True, timeout):
                return self.run(name, params, agent=agent, call_id=call_id)
        loaded = self._find(name)
        entry = loaded.entry
        if not self._may_use(agent, entry.plugin):
            assert agent is not None and self._plugins is not None and entry.plugin is not None
            owner = self._plugins.specs[entry.plugin].agent
            raise AgentNotAllowed(
                agent, owner, f"call tool {entry.name!r} of plugin {entry.plugin!r}"
            )
        call_id = call_id or f"call-{uuid.uuid4().hex}"
        origin = BUILTIN if entry.plugin is None else f"plugin {entry.plugin!r}"
        try:
            check_json_depth(params)
            params_json = json.dumps(params, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ToolInputInvalid(
                entry.name,
                origin,
                call_id,
                [{"pointer": "", "keyword": "json", "schema_path": "", "message": str(exc)}],
            ) from exc
        found = violations(loaded.params, params)
        if found:
            raise ToolInputInvalid(entry.name, origin, call_id, found)
        meta = {"agent_id": agent, "call_id": call_id, "tool": entry.name}
        started = time.perf_counter()
        text = loaded.tool.execute(params_json, json.dumps(meta, ensure_ascii=False))
        seconds = time.perf_counter() - started
        plugin, version = entry.plugin or "blocksync", entry.version or BUILTIN
        try:
            output = parse_json(text)
        except ValueError as exc:
            what = "is not JSON" if isinstance(exc, json.JSONDecodeError) else "is refused"
            raise ToolOutputInvalid(
                plugin,
                version,
                entry.name,
                call_id,
                [
                    {
                        "pointer": "",
                        "keyword": "json",
                        "schema_path": "",
                        "message": f"the output {what}: {exc}",
                    }
                ],
            ) from exc
        found = violations(loaded.output, output)
        if found:
            raise ToolOutputInvalid(plugin, version, entry.name, call_id, found)
        return ToolCall(entry.name, call_id, agent, output, entry.origin, entry.plugin, seconds)

    def call(
        self,
        name: str,
        params: Any,
        *,
        agent: str | None = None,
        call_id: str | None = None,
    ) -> Any:
        """The validated output of one call (see :meth:`run` for the call's id and timing)."""
        return self.run(name, params, agent=agent, call_id=call_id).output


__all__ = [
    "TOOL_NAME",
    "ToolBox",
    "ToolCall",
    "ToolEntry",
    "ToolProblem",
    "compile_schema",
    "params_from_json",
    "violations",
]
