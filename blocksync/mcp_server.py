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

Decisions:

* **Every failure is a tool result**, never the server's end: a bad param, an unknown block, a
  stale ``expected_version``, the run lock held, another owner's block -- each is a result with
  ``isError`` and the library's message; even a bug is reported that way (and logged).
* **One store open per call**: each call opens the store, acts and closes it, so it sees what
  other processes (a cron sync, the CLI) did in between, and a failed call leaves nothing open.
* **One call at a time, off the event loop**: calls run one after another on one worker
  thread, so the server keeps answering the protocol (pings, cancellations) during a long
  reconcile and two calls of one agent never race each other for the run lock.
* **The SDK is imported when the server starts** (``mcp`` and its web stack are heavy), so the
  rest of ``blocksync`` starts without it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import names, workspace
from .agents.agent_tools import builtin_tools
from .agents.store_tools import store_tools
from .agents.tools import ToolBox, ToolEntry
from .errors import BlocksyncError, NotFound, RunLockHeld

if TYPE_CHECKING:
    from mcp import types

log = logging.getLogger(__name__)

SERVER_NAME = "blocksync"
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


@dataclasses.dataclass(frozen=True)
class AgentSession:
    """The server's library side, without MCP: the tools agent ``agent`` has on ``store``."""

    store: Path
    agent: str

    def check(self) -> None:
        """Refuse a bad agent id, or a store that cannot be opened, before serving anything."""
        names.validate(self.agent, "agent")
        with self._tools():
            pass

    @contextmanager
    def _tools(self) -> Iterator[ToolBox]:
        with workspace.open(self.store, author=f"agent:{self.agent}") as ws:
            grants = ws.config.may_act_for
            yield ToolBox(
                None, [*builtin_tools(ws.conflicts, ws.blocks, grants), *store_tools(ws, grants)]
            )

    def tools(self) -> list[ToolEntry]:
        with self._tools() as box:
            return box.list()

    def call(self, name: str, params: Any) -> Any:
        """The tool's output, checked against its schema; raises what the library raises."""
        with self._tools() as box:
            return box.call(name, params, agent=self.agent)

    def read(self, uri: str) -> Any:
        """The resource ``uri``: the open conflicts, or one conflict; NotFound for any other."""
        if uri == CONFLICTS_URI:
            return self.call("blocksync_conflicts_list", {"status": "open"})
        if uri.startswith(CONFLICT_URI_PREFIX) and len(uri) > len(CONFLICT_URI_PREFIX):
            return self.call("blocksync_conflict_show", {"id": uri[len(CONFLICT_URI_PREFIX) :]})
        raise NotFound(f"no resource {uri!r} (there are {CONFLICTS_URI} and {CONFLICTS_URI}/ID)")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _tool(entry: ToolEntry) -> types.Tool:
    from mcp import types

    spec = entry.function_spec()["function"]  # the usage rule joins the description
    params = entry.parameters_schema
    schema = params if isinstance(params, dict) else {"type": "object"}  # MCP wants an object
    output = entry.output_schema if isinstance(entry.output_schema, dict) else None
    read_only = entry.name in READ_ONLY
    return types.Tool(
        name=entry.name,
        description=spec["description"],
        input_schema=schema,
        output_schema=output,
        annotations=types.ToolAnnotations(read_only_hint=read_only),
    )


def _failed(message: str) -> types.CallToolResult:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def call_result(session: AgentSession, name: str, params: Any) -> types.CallToolResult:
    """One tool call as MCP's result: the output as JSON text and structured content, or any
    failure as an error result (``isError``) with its message."""
    from mcp import types

    try:
        output = session.call(name, params)
    except RunLockHeld as exc:  # the CLI's "--wait" is no option here: the agent calls again
        return _failed(
            f"error: another run holds the store's run lock ({exc.who}): call the tool again "
            "once it is done"
        )
    except BlocksyncError as exc:
        return _failed(f"error: {exc}")
    except Exception as exc:  # a bug: the agent is told, the server goes on
        log.exception("tool %s failed", name)
        return _failed(
            f"internal error: {type(exc).__name__}: {exc} (a bug in blocksync; please report it)"
        )
    return types.CallToolResult(
        content=[types.TextContent(text=_json(output))], structured_content=output
    )


def serve(store: Path, agent: str) -> None:
    """Serve ``store``'s tools as ``agent`` over MCP on standard input and output, until the
    client closes standard input. The store and agent id are checked first."""
    import asyncio

    session = AgentSession(Path(store), agent)
    session.check()
    asyncio.run(_serve(session))


async def _serve(session: AgentSession) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mcp import types
    from mcp.server import Server
    from mcp.server.stdio import stdio_server
    from mcp.shared.exceptions import MCPError
    from mcp.types.jsonrpc import INVALID_PARAMS

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocksync-mcp")
    loop = asyncio.get_running_loop()

    async def run(fn: Any, *args: Any) -> Any:
        return await loop.run_in_executor(worker, fn, *args)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        entries: list[ToolEntry] = await run(session.tools)
        return types.ListToolsResult(tools=[_tool(e) for e in entries])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        result: types.CallToolResult = await run(
            call_result, session, params.name, params.arguments or {}
        )
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
            doc = await run(session.read, uri)
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
        worker.shutdown(wait=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("blocksync")
    except PackageNotFoundError:  # run from a source tree
        return "0"


__all__ = ["CONFLICTS_URI", "AgentSession", "call_result", "serve"]
