"""Benchmark guest: reconcile(paths) answers one variant per path and logs its own time.

Built with WASI only so the guest can read a clock (stub-WASI builds have none); it touches
no files. The host's cost per element is the call's wall time minus the time logged here.
"""

import time

from pattern_extension_api import (
    BlockRef,
    BlockSchemaSpec,
    DataBlockExtension,
    NeedsResolution,
    NoChange,
    PermissionLevel,
    PermissionRule,
    Resolved,
    host,
    register_extension,
)


@register_extension
class BenchReconcile(DataBlockExtension):
    needs_filesystem = True  # for the clock only

    def source_id(self) -> str:
        return "bench"

    def name(self) -> str:
        return "reconcile benchmark"

    def block_schema(self) -> BlockSchemaSpec:
        return BlockSchemaSpec("text", "plain text", {"type": "string"})

    def permission_rules(self) -> list[PermissionRule]:
        return [PermissionRule("**", PermissionLevel.READ_ONLY)]

    def load(self, path: str, owner: str) -> BlockRef:
        raise NotImplementedError("benchmark only reconciles")

    def create(self, path: str, content: str | None, owner: str) -> BlockRef:
        raise NotImplementedError("benchmark only reconciles")

    def save(self, block: BlockRef) -> None:
        raise NotImplementedError("benchmark only reconciles")

    def delete(self, path: str) -> None:
        raise NotImplementedError("benchmark only reconciles")

    def history(self, block: BlockRef) -> list:
        return []

    def rollback(self, block: BlockRef, version: str) -> None:
        raise NotImplementedError("benchmark only reconciles")

    def diff(self, block: BlockRef, from_: str | None, to: str | None) -> str:
        return ""

    def reconcile(self, paths: list[str]) -> list:
        start = time.perf_counter()
        out = []
        for i, path in enumerate(paths):
            kind = i % 3
            if kind == 0:
                out.append(Resolved(path, "disk->agent"))
            elif kind == 1:
                out.append(NeedsResolution(path, "disk text", "agent text"))
            else:
                out.append(NoChange(path))
        host.log(2, f"guest-seconds {time.perf_counter() - start:.6f}")
        return out
