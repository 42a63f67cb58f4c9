"""Bridges: a WASM plugin seen through the host-side Protocols of :mod:`blocksync.sync.protocol`.

WIT values arrive lifted by :mod:`blocksync.plugins.host.lift` (results and variants always tagged) and
leave here as the typed values the rest of blocksync uses; a WIT ``result`` error becomes a
:class:`~blocksync.errors.PluginCallFailed` naming plugin, version and call.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from blocksync.shared.wit import (
    BlockRef,
    BlockSchemaSpec,
    Notification,
    PermissionRule,
    SourceStatus,
    VersionInfo,
)
from blocksync.sync.protocol import NeedsResolution, NoChange, ReconcileResult, Resolved

from .host.runtime import Plugin, permission_rule

#: the optional interface a data-block plugin lists its paths with (``wit/pattern.wit``)
PAGING = "paging"


def block_ref(record: dict[str, Any]) -> BlockRef:
    return BlockRef(record["block-id"], record["label"], record["agent-id"])


def block_ref_arg(ref: BlockRef) -> SimpleNamespace:
    return SimpleNamespace(
        **{"block-id": ref.block_id, "label": ref.label, "agent-id": ref.agent_id}
    )


def _schema(record: dict[str, Any]) -> BlockSchemaSpec:
    return BlockSchemaSpec(record["name"], record["description"], record["schema-json"])


def _reconcile_result(case: tuple[str, Any]) -> ReconcileResult:
    tag, payload = case
    if tag == "resolved":
        return Resolved(*payload)
    if tag == "needs-resolution":
        return NeedsResolution(*payload)
    return NoChange(payload)


def _notification(record: dict[str, Any]) -> Notification:
    return Notification(record["text"], tuple(block_ref(b) for b in record["blocks"]))


class _Bridge:
    interface = ""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin

    def _value(self, function: str, *args: Any) -> Any:
        return self.plugin.call(self.interface, function, *args)

    def _result(self, function: str, *args: Any) -> Any:
        return self.plugin.call_result(self.interface, function, *args)


class WasmDataBlock(_Bridge):
    """A ``data-block`` plugin as a :class:`blocksync.sync.protocol.DataBlock`."""

    interface = "data-block"

    def source_id(self) -> str:
        return str(self._value("source-id"))

    def name(self) -> str:
        return str(self._value("name"))

    def block_schema(self) -> BlockSchemaSpec:
        return _schema(self._value("block-schema"))

    def permission_rules(self) -> list[PermissionRule]:
        return [permission_rule(r) for r in self._value("permission-rules")]

    def load(self, path: str, owner: str) -> BlockRef:
        return block_ref(self._result("load", path, owner))

    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        return block_ref(self._result("create", path, content, owner))

    def save(self, block: BlockRef) -> None:
        self._result("save", block_ref_arg(block))

    def delete(self, path: str) -> None:
        self._result("delete", path)

    def history(self, block: BlockRef) -> list[VersionInfo]:
        return [
            VersionInfo(v["version-id"], v["timestamp"], v["description"])
            for v in self._result("history", block_ref_arg(block))
        ]

    def rollback(self, block: BlockRef, version: str) -> None:
        self._result("rollback", block_ref_arg(block), version)

    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        return str(self._result("diff", block_ref_arg(block), from_, to))

    def reconcile(self, paths: list[str]) -> list[ReconcileResult]:
        return [_reconcile_result(case) for case in self._result("reconcile", paths)]

    # -- the optional ``paging`` interface ------------------------------------------------

    def paged(self) -> bool:
        """Does the plugin list its paths (``paging.paged``)? False when it lacks ``paging``."""
        if PAGING not in self.plugin.info.exports:
            return False
        return bool(self.plugin.call(PAGING, "paged"))

    def mirrors_folder(self) -> bool:
        """Does the plugin declare that it mirrors its granted folder one to one
        (``paging.mirrors-folder``)? False when it lacks the function (built before it)."""
        if "mirrors-folder" not in self.plugin.info.signatures.get(PAGING, {}):
            return False
        return bool(self.plugin.call(PAGING, "mirrors-folder"))

    def label_namespace(self) -> str | None:
        """The label prefix the plugin declares its own (``paging.label-namespace``); None
        when it declares none, or lacks the function (built before it, or without ``paging``)."""
        if "label-namespace" not in self.plugin.info.signatures.get(PAGING, {}):
            return None
        found = self.plugin.call(PAGING, "label-namespace")
        return found if isinstance(found, str) and found else None

    def honours_dry_run(self) -> bool:
        """Does the plugin declare that a dry run writes nothing of its own
        (``paging.honours-dry-run``)? False when it lacks the function: the seed has no dry run."""
        if "honours-dry-run" not in self.plugin.info.signatures.get(PAGING, {}):
            return False
        return bool(self.plugin.call(PAGING, "honours-dry-run"))

    def list_paths(self, cursor: str | None) -> tuple[list[str], str | None]:
        """One page of the plugin's paths and the cursor of the next (None: the last)."""
        paths, after = self.plugin.call_result(PAGING, "list-paths", cursor)
        return list(paths), after


class WasmDataStream(_Bridge):
    """A ``data-stream`` plugin as a :class:`blocksync.sync.protocol.DataStream`."""

    interface = "data-stream"

    def source_id(self) -> str:
        return str(self._value("source-id"))

    def name(self) -> str:
        return str(self._value("name"))

    def block_schemas(self) -> list[BlockSchemaSpec]:
        return [_schema(s) for s in self._value("block-schemas")]

    def start(self, owner: str) -> None:
        self._result("start", owner)

    def stop(self) -> None:
        self._result("stop")

    def pause(self) -> None:
        self._value("pause")

    def resume(self) -> None:
        self._value("resume")

    def status(self) -> SourceStatus:
        tag, _ = self._value("status")
        return SourceStatus(tag)

    def supports_pull(self) -> bool:
        return bool(self._value("supports-pull"))

    def pull(self, limit: int, cursor: str | None) -> list[Notification]:
        return [_notification(n) for n in self._result("pull", limit, cursor)]


class WasmTool(_Bridge):
    """A ``tool`` plugin as a :class:`blocksync.sync.protocol.Tool` (JSON strings on both sides)."""

    interface = "tool"

    def name(self) -> str:
        return str(self._value("name"))

    def description(self) -> str:
        return str(self._value("description"))

    def parameters_schema(self) -> str:
        return str(self._value("parameters-schema"))

    def output_schema(self) -> str:
        return str(self._value("output-schema"))

    def usage_rule(self) -> str | None:
        rule = self._value("usage-rule")
        return None if rule is None else str(rule)

    def execute(self, params_json: str, meta_json: str) -> str:
        return str(self._result("execute", params_json, meta_json))
