"""``blocksync demo``: a short walk through blocks on a store, safe to run again and again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import workspace
from .errors import BlockNotFound

OWNER = "demo-agent"
LABEL = "persona"
FIRST = "I am a helpful agent.\nI keep notes in memory blocks.\n"
SECOND = "I am a helpful agent.\nI keep notes in memory blocks, versioned in git.\n"


def run(store: Path, author: str, say: Callable[[str], None]) -> None:
    """Create the store if needed, then write, change, diff and roll back one block."""
    if not (store / "repo").exists():
        workspace.init(store, author=author).close()
        say(f"created a store in {store}")
    with workspace.open(store, author=author) as ws:
        blocks = ws.blocks
        try:
            blocks.read(OWNER, LABEL)
            start = blocks.update(OWNER, LABEL, FIRST, message="demo: start over")
        except BlockNotFound:
            start = blocks.create(OWNER, LABEL, FIRST, description="who the demo agent is")
        say(f"{OWNER}/{LABEL} is at version {start.version}:")
        say(_indent(start.content))
        edited = blocks.update(
            OWNER, LABEL, SECOND, expected_version=start.version, message="demo: mention git"
        )
        say(f"edited it (version {edited.version}); the change:")
        say(_indent(blocks.diff(OWNER, LABEL).unified))
        back = blocks.rollback(OWNER, LABEL, start.version)
        say(f"rolled back to version {start.version}'s text as a new version {back.version}")
        say("its history (every version is a git commit on refs/heads/main):")
        for v in blocks.history(OWNER, LABEL)[-4:]:
            say(f"  v{v.version}  {v.commit[:10]}  {v.author}  {v.message}")
        report = ws.fsck()
        say(f"fsck: {'ok' if report.ok else report.problems}")
        say(f"try: git --git-dir {ws.repo_path} log --stat -- {blocks.git_path(OWNER, LABEL)}")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))
