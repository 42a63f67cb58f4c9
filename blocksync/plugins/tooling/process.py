"""Running a build tool (componentize-py, npm, componentize-js) with one set of failure messages."""

from __future__ import annotations

import subprocess
from pathlib import Path

from blocksync.errors import PluginBuildError

__all__ = ["run_tool"]


def run_tool(
    command: list[str], *, label: str, what: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (the tool ``what``) for the plugin ``label``, its output captured; a tool
    that cannot start or outlives ``timeout`` seconds is a :class:`PluginBuildError`, a failing
    one is left to the caller (each tool says why in its own way)."""
    try:
        return subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except OSError as exc:
        raise PluginBuildError(label, f"cannot run {what} ({command[0]}): {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PluginBuildError(label, f"{what} took more than {timeout:g} s") from exc
