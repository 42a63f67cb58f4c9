"""``blocksync mcp``: the agent tools over the Model Context Protocol, on standard input and output.

A server acts as ONE agent (``--agent ID``): every tool call is a call of the built-in tools
(:mod:`blocksync.agents.agent_tools`, :mod:`blocksync.agents.store_tools`) through one
:class:`~blocksync.agents.tools.ToolBox`, with that agent in the call's meta. So the params are
checked against each tool's JSON Schema before the call and its output after it, the agent acts
only on its own blocks, conflicts, sources and notifications (or those ``may_act_for`` grants it),
and what it writes is recorded as ``agent:<id>``. The writers that need the run lock (resolve,
undo, reconcile) take it as the CLI does, in the library.

Open conflicts are a resource too: ``blocksync://conflicts`` (the listing), and
``blocksync://conflicts/{id}`` (one conflict with its three sides).

The tools of the plugins the agent may call (its own plugins', and those of the owners
``may_act_for`` grants it) are offered too, as ``plugin_<name>``: the prefix keeps them apart
from the built-in ``blocksync_*`` tools whatever a plugin calls its tool. A plugin that cannot
offer its tool (it fails to load, its schema is no JSON Schema) is left out, with a warning.

Decisions:

* **Every failure is a tool result**, never the server's end: a bad param, an unknown block, a
  stale ``expected_version``, the run lock held, another owner's block -- each is a result with
  ``isError`` and the library's message; even a bug is reported that way (and logged).
* **One store open per call**: each call opens the store, acts and closes it, so it sees what
  other processes (a cron sync, the CLI) did in between, and a failed call leaves nothing open.
* **Writes wait a little for the run lock** (``lock_wait`` seconds, ``--lock-wait``): a call
  that meets the lock held by another run (a cron ``blocksync sync``) is made again holding it,
  once the lock is free, or fails naming the holder when the wait is over -- measured from the
  call's arrival, so a call queued behind a waiting one waits no longer in all. The first try
  takes the lock before writing anything (every writer of the library does), so trying again
  repeats nothing; a tool that takes no lock (a block update) never waits, and neither does a
  read. The client sees why a call is slow: a progress notification names the holder.
* **Two worker threads, off the event loop**: the calls that may write run one after another
  on one thread, so two calls of one agent never race each other for the run lock; reads
  (listings, reads, resources) run on another, so they answer while a write waits. The server
  keeps answering the protocol (pings, cancellations) meanwhile.
* **A call given up is not finished later**: a cancelled call (the client's
  ``notifications/cancelled``, its timeout), or any call still running when the client goes
  away, stops waiting for the lock at once -- nothing was written yet. A call that holds the
  lock finishes its write (each write is atomic) and its result goes nowhere. A server killed
  while waiting leaves nothing behind either: the lock is an ``flock``, gone with the process.
* **The SDK is imported when the server starts** (``mcp`` and its web stack are heavy), so the
  rest of ``blocksync`` starts without it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import names, workspace
from .agents.agent_tools import builtin_tools
from .agents.store_tools import store_tools
from .agents.tools import ToolBox, ToolEntry
from .errors import BlocksyncError, ConfigError, NotFound, RunLockHeld, ToolNotFound, WaitAbandoned

if TYPE_CHECKING:
    from mcp import types

    from .plugins import PluginSet

log = logging.getLogger(__name__)

SERVER_NAME = "blocksync"
#: how long a write waits for the run lock by default, in seconds: a short cron run ends
#: within it, and it stays below the request timeouts of MCP clients (a minute, often)
LOCK_WAIT = 10.0
#: what a call waiting for the run lock writes into the lock's note once it holds it
MCP_COMMAND = "blocksync mcp"
#: the MCP names of plugin tools: ``plugin_<the tool's name>``
PLUGIN_PREFIX = "plugin_"
CONFLICTS_URI = "blocksync://conflicts"
CONFLICT_URI_PREFIX = CONFLICTS_URI + "/"
#: the tools that change nothing (MCP's readOnlyHint: a client may call them without asking)
READ_ONLY = frozenset(
    {
        "blocksync_block_read",
        "blocksync_block_list",
        "blocksync_block_history",
        "blocksync_conflicts_list",
        "blocksync_conflict_show",
        "blocksync_notifications_list",
    }
)


@dataclasses.dataclass
class CallControl:
    """One call's link to the server: when it arrived, how it hears that it was given up
    (``abandoned``), and whom to tell when it starts waiting for the run lock (``waiting``:
    the holder in words, and the seconds it will wait at most)."""

    arrived: float = dataclasses.field(default_factory=time.monotonic)
    abandoned: threading.Event = dataclasses.field(default_factory=threading.Event)
    waiting: Callable[[str, float], None] = lambda who, seconds: None

    def pause(self, seconds: float) -> None:
        """The pause between attempts to take the lock: ends early, raising, once abandoned."""
        if self.abandoned.wait(seconds):
            raise WaitAbandoned


def _plugins(ws: workspace.Workspace) -> PluginSet | ConfigError:
    """The store's plugins, or why their tables in blocksync.toml are wrong: then the built-in
    tools still serve (the listing warns), as a broken plugin never ends the server."""
    try:
        return ws.plugins
    except ConfigError as exc:
        return exc


def mcp_name(entry: ToolEntry) -> str:
    """A tool's name over MCP: a built-in's own, ``plugin_<name>`` for a plugin's."""
    return entry.name if entry.plugin is None else PLUGIN_PREFIX + entry.name


@dataclasses.dataclass(frozen=True)
class AgentSession:
    """The server's library side, without MCP: the tools agent ``agent`` has on ``store``;
    a write waits up to ``lock_wait`` seconds for the run lock (0: fails at once)."""

    store: Path
    agent: str
    lock_wait: float = LOCK_WAIT

    def check(self) -> None:
        """Refuse a bad agent id, or a store that cannot be opened, before serving anything."""
        names.validate(self.agent, "agent")
        with self._tools():
            pass

    @contextmanager
    def _tools(self) -> Iterator[tuple[workspace.Workspace, ToolBox]]:
        with workspace.open(self.store, author=f"agent:{self.agent}") as ws:
            grants = ws.config.may_act_for
            builtins = [*builtin_tools(ws.conflicts, ws.blocks, grants), *store_tools(ws, grants)]
            plugins = _plugins(ws)
            usable = None if isinstance(plugins, ConfigError) else plugins
            yield ws, ToolBox(usable, builtins, grants=grants)

    def tools(self, warn: Callable[[str], None] = lambda line: None) -> list[ToolEntry]:
        """The tools the agent may call; ``warn`` hears of each plugin that offers none."""
        with self._tools() as (ws, box):
            plugins = _plugins(ws)
            if isinstance(plugins, ConfigError):
                warn(f"no plugin tool is offered: {plugins}")
            entries = box.list(self.agent)
            for problem in box.problems(self.agent):
                warn(f"plugin {problem.plugin!r} offers no tool: {problem.error}")
            return entries

    def call(self, name: str, params: Any, control: CallControl | None = None) -> Any:
        """Tool ``name``'s output (its MCP name), checked against its schema; raises what the
        library raises. Meeting the run lock held, the call waits for it (see the module's
        decisions), telling ``control``."""
        control = control or CallControl()
        with self._tools() as (ws, box):
            tool = self._tool_name(box, name)
            try:
                return box.call(tool, params, agent=self.agent)
            except RunLockHeld as exc:
                left = self.lock_wait - (time.monotonic() - control.arrived)
                if self.lock_wait <= 0 or left <= 0:
                    raise
                control.waiting(exc.who, left)
            command = f"{MCP_COMMAND} {name}"
            with ws.locked(command, wait=True, timeout=left, sleep=control.pause):
                return box.call(tool, params, agent=self.agent)

    def _tool_name(self, box: ToolBox, name: str) -> str:
        """The tool box's name of the tool MCP calls ``name``: a built-in by its own name, a
        plugin tool by ``plugin_<name>`` only (whose it is, the tool box checks). Not found,
        the error names the tools this agent is offered, as MCP names them."""
        with suppress(ToolNotFound):
            entry = box.get(name.removeprefix(PLUGIN_PREFIX))
            if mcp_name(entry) == name:
                return entry.name
        raise ToolNotFound(name, sorted(mcp_name(e) for e in box.list(self.agent)))

    def read(self, uri: str) -> Any:
        """The resource ``uri``: the open conflicts, or one conflict; NotFound for any other."""
        if uri == CONFLICTS_URI:
            return self.call("blocksync_conflicts_list", {"status": "open"})
        if uri.startswith(CONFLICT_URI_PREFIX) and len(uri) > len(CONFLICT_URI_PREFIX):
            return self.call("blocksync_conflict_show", {"id": uri[len(CONFLICT_URI_PREFIX) :]})
        raise NotFound(f"no resource {uri!r} (there are {CONFLICTS_URI} and {CONFLICTS_URI}/ID)")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _object_schema(schema: dict[str, Any] | bool) -> dict[str, Any] | None:
    """``schema`` if it describes an object (MCP's structured content is one), else None."""
    return schema if isinstance(schema, dict) and schema.get("type") == "object" else None


def _tool(entry: ToolEntry) -> types.Tool:
    from mcp import types

    spec = entry.function_spec()["function"]  # the usage rule joins the description
    params = entry.parameters_schema
    schema = params if isinstance(params, dict) else {"type": "object"}  # MCP wants an object
    output = _object_schema(entry.output_schema)
    read_only = entry.name in READ_ONLY
    return types.Tool(
        name=mcp_name(entry),
        description=spec["description"],
        input_schema=schema,
        output_schema=output,
        annotations=types.ToolAnnotations(read_only_hint=read_only),
    )


def _failed(message: str) -> types.CallToolResult:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def call_result(
    session: AgentSession, name: str, params: Any, control: CallControl | None = None
) -> types.CallToolResult:
    """One tool call as MCP's result: the output as JSON text and structured content (an
    object's), or any failure as an error result (``isError``) with its message."""
    from mcp import types

    try:
        output = session.call(name, params, control)
    except RunLockHeld as exc:  # the CLI's "--wait" is no option here: the agent calls again
        waited = f"; waited {exc.waited:.1f} s for it" if exc.waited > 0 else ""
        return _failed(
            f"error: another run holds the store's run lock ({exc.who}){waited}: call the "
            "tool again once it is done"
        )
    except BlocksyncError as exc:
        return _failed(f"error: {exc}")
    except Exception as exc:  # a bug: the agent is told, the server goes on
        log.exception("tool %s failed", name)
        return _failed(
            f"internal error: {type(exc).__name__}: {exc} (a bug in blocksync; please report it)"
        )
    structured = output if isinstance(output, dict) else None  # MCP's is an object
    return types.CallToolResult(
        content=[types.TextContent(text=_json(output))], structured_content=structured
    )


def serve(
    store: Path,
    agent: str,
    lock_wait: float = LOCK_WAIT,
    warn: Callable[[str], None] = lambda line: None,
) -> None:
    """Serve ``store``'s tools as ``agent`` over MCP on standard input and output, until the
    client closes standard input. The store and agent id are checked first. A write waits up
    to ``lock_wait`` seconds for the run lock; ``warn`` hears of each plugin that offers no
    tool (once per plugin and reason)."""
    import asyncio

    session = AgentSession(Path(store), agent, lock_wait)
    session.check()
    asyncio.run(_serve(session, _once(warn)))


def _once(warn: Callable[[str], None]) -> Callable[[str], None]:
    """``warn``, saying each line once: a client may list the tools often."""
    said: set[str] = set()

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            warn(line)

    return once


async def _serve(session: AgentSession, warn: Callable[[str], None]) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mcp import types
    from mcp.server import Server
    from mcp.server.stdio import stdio_server
    from mcp.shared.exceptions import MCPError
    from mcp.types.jsonrpc import INVALID_PARAMS

    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocksync-mcp-write")
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocksync-mcp-read")
    loop = asyncio.get_running_loop()

    async def read(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(reader, fn, *args)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        entries: list[ToolEntry] = await read(session.tools, warn)
        return types.ListToolsResult(tools=[_tool(e) for e in entries])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        def waiting(who: str, seconds: float) -> None:  # on a worker thread
            said = f"waiting up to {seconds:.1f} s for the store's run lock, held by {who}"
            with suppress(RuntimeError):  # the loop closed: the server is ending, nobody hears
                asyncio.run_coroutine_threadsafe(ctx.session.report_progress(0, None, said), loop)

        control = CallControl(waiting=waiting)
        worker = reader if params.name in READ_ONLY else writer
        try:
            result: types.CallToolResult = await loop.run_in_executor(
                worker, call_result, session, params.name, params.arguments or {}, control
            )
        finally:  # cancelled, or the server is ending: a call still waiting stops
            control.abandoned.set()
        return result

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=CONFLICTS_URI,
                    name="conflicts",
                    title="Open sync conflicts",
                    description=f"The open conflicts agent {session.agent!r} may resolve: "
                    "paths where a data source and a memory block both changed.",
                    mime_type="application/json",
                )
            ]
        )

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=CONFLICTS_URI + "/{id}",
                    name="conflict",
                    title="One sync conflict",
                    description="A conflict with its three sides: base, disk and agent.",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            doc = await read(session.read, uri)
        except BlocksyncError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from exc
        text = types.TextResourceContents(uri=uri, text=_json(doc), mime_type="application/json")
        return types.ReadResourceResult(contents=[text])

    server: Server[Any] = Server(
        SERVER_NAME,
        version=_version(),
        instructions=(
            f"Memory blocks of agent {session.agent!r}, versioned in git and synced with outside "
            "sources. Read a block before writing it and pass its version as expected_version. "
            "A conflict (listed in blocksync://conflicts) is resolved with "
            "blocksync_conflict_show, then blocksync_conflict_resolve, then blocksync_reconcile."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        for worker in (writer, reader):
            worker.shutdown(wait=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("blocksync")
    except PackageNotFoundError:  # run from a source tree
        return "0"


__all__ = [
    "CONFLICTS_URI",
    "LOCK_WAIT",
    "PLUGIN_PREFIX",
    "AgentSession",
    "CallControl",
    "call_result",
    "mcp_name",
    "serve",
]
