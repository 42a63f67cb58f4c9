"""blocksync's own operations as tools an agent can call: conflicts and block history.

Each is a :class:`blocksync.sync.protocol.Tool` (JSON text in and out, JSON Schemas for both), exactly
what a plugin tool is, so :class:`blocksync.agents.tools.ToolBox` lists and validates them the same way
and an agent framework can hand them to a model as they are. Their names fit the common LLM
tool-name rule ``^[a-zA-Z0-9_-]{1,64}$`` and share the ``blocksync_`` prefix, which plugin tools
may not use.

The calling agent (``agent_id`` of the call's meta) is who a resolution or rollback is recorded
as: the commit author ``agent:<agent_id>`` (the workspace's author when the call names no agent).

Who may act on what: an agent's call reads and changes only blocks and conflicts it owns (the
block's owner, the conflict's ``owner`` column), or those of the owners the store grants it
(``[agents.<id>] may_act_for = ["bob"]``, see :meth:`blocksync.config.Config.may_act_for`);
anything else is :class:`~blocksync.errors.AgentNotAllowed`, before the tool does anything, and
the conflict listing shows only conflicts the agent may act on. A call that names no agent -- a
human at the command line, a program using the library without ``agent=`` -- acts as the
workspace's author always did, on everything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from typing import Any, Protocol

from blocksync.errors import AgentNotAllowed
from blocksync.index.conflicts import STATUSES, Conflict, Take
from blocksync.store.blocks import BlockStore

#: every built-in tool's name starts with it; plugin tools may not
PREFIX = "blocksync_"

JSON = dict[str, Any]
#: the owners an agent may act for (itself included): ``ws.config.may_act_for``
Grants = Callable[[str], Collection[str]]


def own_only(agent: str) -> Collection[str]:
    """The default grant: an agent acts on its own blocks and conflicts only."""
    return (agent,)


class ConflictOps(Protocol):
    """What the conflict tools need of ``ws.conflicts`` (:class:`blocksync.sync.reconciler.Conflicts`)."""

    def list(self, status: str = "open", source: str | None = None) -> list[Conflict]: ...
    def get(self, conflict_id: str) -> Conflict: ...
    def resolve(
        self,
        conflict_id: str,
        take: Take | None = None,
        content: str | None = None,
        resolver: str | None = None,
    ) -> Conflict: ...


@dataclasses.dataclass(frozen=True)
class BuiltinTool:
    """A tool implemented by blocksync itself, seen through the :class:`~blocksync.sync.protocol.Tool`
    protocol. ``run(params, meta)`` gets decoded, already validated params."""

    tool_name: str
    summary: str
    parameters: JSON
    output: JSON
    rule: str | None
    run: Callable[[JSON, JSON], Any]

    def name(self) -> str:
        return self.tool_name

    def description(self) -> str:
        return self.summary

    def parameters_schema(self) -> str:
        return json.dumps(self.parameters)

    def output_schema(self) -> str:
        return json.dumps(self.output)

    def usage_rule(self) -> str | None:
        return self.rule

    def execute(self, params_json: str, meta_json: str) -> str:
        meta = json.loads(meta_json) if meta_json.strip() else {}
        return json.dumps(self.run(json.loads(params_json), meta), ensure_ascii=False)


# -- schemas -------------------------------------------------------------------------------------

_ID = {"type": "string", "minLength": 1, "description": "A conflict id, or a unique prefix of one."}
_OWNER = {"type": "string", "minLength": 1, "description": "The agent owning the block."}
_LABEL = {"type": "string", "minLength": 1, "description": "The block's label."}
_TEXT_OR_NULL = {"type": ["string", "null"]}
#: a version as a caller names it: its number, or its commit id (a prefix)
_VERSION_SPEC = {"type": ["integer", "string"], "minimum": 1, "minLength": 1}

#: a conflict without its three contents (what a listing shows)
_SUMMARY_PROPS: JSON = {
    "id": {"type": "string"},
    "source": {"type": "string"},
    "path": {"type": "string"},
    "owner": {"type": "string"},
    "label": {"type": "string"},
    "status": {"enum": list(STATUSES)},
    "reason": {"type": "string"},
    "detected_at": {"type": "string"},
    "resolution": _TEXT_OR_NULL,
    "resolved_by": _TEXT_OR_NULL,
    "resolved_at": _TEXT_OR_NULL,
    "result_version": {"type": ["integer", "null"]},
    "superseded_by": _TEXT_OR_NULL,
}
_SUMMARY: JSON = {
    "type": "object",
    "properties": _SUMMARY_PROPS,
    "required": ["id", "source", "path", "owner", "label", "status", "reason"],
}
_FULL: JSON = {
    "type": "object",
    "properties": {
        **_SUMMARY_PROPS,
        "base": {**_TEXT_OR_NULL, "description": "What both sides held at the last sync."},
        "disk": {**_TEXT_OR_NULL, "description": "What the source holds (null: absent)."},
        "agent": {**_TEXT_OR_NULL, "description": "What the block holds (null: absent)."},
    },
    "required": [*_SUMMARY["required"], "base", "disk", "agent"],
}
_VERSION: JSON = {
    "type": "object",
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "commit": {"type": "string"},
        "author": {"type": "string"},
        "message": {"type": "string"},
        "timestamp": {"type": "string"},
        "deleted": {"type": "boolean"},
        "made_by": {**_TEXT_OR_NULL, "description": "Who made it (null: not recorded)."},
        "machine": {**_TEXT_OR_NULL, "description": "The machine it was made on."},
        "run_id": {**_TEXT_OR_NULL, "description": "The run it was made in."},
    },
    "required": ["version", "commit", "author", "message", "timestamp", "deleted"],
}


def _object(properties: JSON, required: list[str]) -> JSON:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# -- operations ----------------------------------------------------------------------------------


def author_of(meta: JSON) -> str | None:
    """The commit author a call's meta names: ``agent:<agent_id>`` (None: the workspace's)."""
    agent = meta.get("agent_id")
    if not agent:
        return None
    agent = str(agent)
    return agent if ":" in agent else f"agent:{agent}"


def _caller(meta: JSON) -> str | None:
    agent = meta.get("agent_id")
    return str(agent) if agent else None


def _check(grants: Grants, meta: JSON, owner: str, action: str) -> None:
    """AgentNotAllowed unless the calling agent (if any) may ``action`` of ``owner``."""
    agent = _caller(meta)
    if agent is not None and owner not in grants(agent):
        raise AgentNotAllowed(agent, owner, action)


def _summary(c: Conflict) -> JSON:
    return {k: getattr(c, k) for k in _SUMMARY_PROPS}


def _full(c: Conflict) -> JSON:
    return {**_summary(c), "base": c.base, "disk": c.disk, "agent": c.agent}


def conflict_tools(conflicts: ConflictOps, grants: Grants = own_only) -> list[BuiltinTool]:
    """``blocksync_conflicts_list``, ``blocksync_conflict_show``, ``blocksync_conflict_resolve``
    over ``conflicts`` (``ws.conflicts``), for the owners ``grants`` allows the caller."""

    def list_(params: JSON, meta: JSON) -> JSON:
        found = conflicts.list(params.get("status", "open"), params.get("source"))
        agent = _caller(meta)
        if agent is not None:
            allowed = grants(agent)
            found = [c for c in found if c.owner in allowed]
        return {"conflicts": [_summary(c) for c in found]}

    def show(params: JSON, meta: JSON) -> JSON:
        c = conflicts.get(params["id"])
        _check(grants, meta, c.owner, f"read conflict {c.id}")
        return _full(c)

    def resolve(params: JSON, meta: JSON) -> JSON:
        c = conflicts.get(params["id"])
        _check(grants, meta, c.owner, f"resolve conflict {c.id}")
        c = conflicts.resolve(c.id, params.get("take"), params.get("content"), author_of(meta))
        return _summary(c)

    return [
        BuiltinTool(
            PREFIX + "conflicts_list",
            "List sync conflicts: paths where a data source and a memory block both changed "
            "and blocksync could not merge them.",
            _object(
                {
                    "status": {
                        "enum": [*STATUSES, "all"],
                        "default": "open",
                        "description": "Which conflicts to list (default: open).",
                    },
                    "source": {"type": "string", "description": "Only this data source's."},
                },
                [],
            ),
            _object({"conflicts": {"type": "array", "items": _SUMMARY}}, ["conflicts"]),
            "Call it before editing a block bound to a data source, and after a sync reports "
            "conflicts.",
            list_,
        ),
        BuiltinTool(
            PREFIX + "conflict_show",
            "Show one conflict with its three sides: base (last synced), disk (the source) "
            "and agent (the block).",
            _object({"id": _ID}, ["id"]),
            _FULL,
            "Read a conflict with it before resolving it.",
            show,
        ),
        BuiltinTool(
            PREFIX + "conflict_resolve",
            "Resolve an open conflict: keep the disk side, the agent side, their clean "
            "three-way merge, or give the resolved content. The choice becomes a new block "
            "version and is written to the source.",
            {
                **_object(
                    {
                        "id": _ID,
                        "take": {
                            "enum": ["disk", "agent", "merged"],
                            "description": "Which side to keep; 'merged' fails when the sides "
                            "overlap.",
                        },
                        "content": {
                            "type": "string",
                            "description": "The resolved content (with take, only 'merged').",
                        },
                    },
                    ["id"],
                ),
                "anyOf": [{"required": ["take"]}, {"required": ["content"]}],
            },
            _SUMMARY,
            "Resolve only conflicts of blocks you own, after reading them with "
            "blocksync_conflict_show; prefer take='merged', else write the content yourself.",
            resolve,
        ),
    ]


def block_tools(blocks: BlockStore, grants: Grants = own_only) -> list[BuiltinTool]:
    """``blocksync_block_history`` and ``blocksync_block_rollback``, for the owners ``grants``
    allows the caller."""

    def history(params: JSON, meta: JSON) -> JSON:
        _check(grants, meta, params["owner"], f"read the history of block {params['label']!r}")
        versions = blocks.history(params["owner"], params["label"])
        limit = params.get("limit")
        if limit is not None:
            versions = versions[-limit:]
        return {
            "owner": params["owner"],
            "label": params["label"],
            "versions": [{f: getattr(v, f) for f in _VERSION["properties"]} for v in versions],
        }

    def rollback(params: JSON, meta: JSON) -> JSON:
        _check(grants, meta, params["owner"], f"roll back block {params['label']!r}")
        block = blocks.rollback(
            params["owner"], params["label"], params["version"], author=author_of(meta)
        )
        return {
            "owner": block.owner,
            "label": block.label,
            "version": block.version,
            "commit": block.commit,
            "content": block.content,
        }

    return [
        BuiltinTool(
            PREFIX + "block_history",
            "The versions of a memory block, oldest first (deletions included): number, "
            "commit, author, message and time of each.",
            _object(
                {
                    "owner": _OWNER,
                    "label": _LABEL,
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Only the newest LIMIT versions.",
                    },
                },
                ["owner", "label"],
            ),
            _object(
                {
                    "owner": {"type": "string"},
                    "label": {"type": "string"},
                    "versions": {"type": "array", "items": _VERSION},
                },
                ["owner", "label", "versions"],
            ),
            None,
            history,
        ),
        BuiltinTool(
            PREFIX + "block_rollback",
            "Roll a memory block back to an earlier version: that version's content becomes "
            "a new version (history is never rewritten).",
            _object(
                {
                    "owner": _OWNER,
                    "label": _LABEL,
                    "version": {
                        **_VERSION_SPEC,
                        "description": "A version number, or a commit id (prefix).",
                    },
                },
                ["owner", "label", "version"],
            ),
            _object(
                {
                    "owner": {"type": "string"},
                    "label": {"type": "string"},
                    "version": {"type": "integer", "minimum": 1},
                    "commit": {"type": "string"},
                    "content": {"type": "string"},
                },
                ["owner", "label", "version", "commit", "content"],
            ),
            "Look at blocksync_block_history first; roll back only blocks you own.",
            rollback,
        ),
    ]


def builtin_tools(
    conflicts: ConflictOps, blocks: BlockStore, grants: Grants = own_only
) -> list[BuiltinTool]:
    """Every built-in tool, in listing order; ``grants`` says whose blocks and conflicts each
    agent may act on (default: its own)."""
    return [*conflict_tools(conflicts, grants), *block_tools(blocks, grants)]


__all__ = [
    "PREFIX",
    "BuiltinTool",
    "ConflictOps",
    "Grants",
    "author_of",
    "block_tools",
    "builtin_tools",
    "conflict_tools",
    "own_only",
]
