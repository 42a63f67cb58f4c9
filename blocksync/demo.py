"""``blocksync demo``: the main job on a store, shown step by step; safe to run again and again.

An agent gets a folder source; the folder and the agent's blocks are edited on both sides;
reconcile merges what it can and records the rest as a conflict, which is then resolved.

Where it runs: a store the demo creates (none at the path yet) is the demo's own, and keeps the
demo source in its blocksync.toml, so the walk-through can be repeated and explored there. A
store that exists without that source is somebody's real store: the demo then runs in a
temporary store and removes it afterwards, leaving the real one -- its configuration, blocks and
history -- untouched. The demo's folder lies beside its store, never inside it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from . import workspace
from .fs.safefile import write_atomic
from .sync.reconciler import SourceReport
from .text import char_diff, render_char_diff

AGENT = "demo-agent"
SOURCE = "demo-notes"
PERSONA = "I am a helpful agent.\nI keep notes in memory blocks.\n"
TODO = "- read the README\n- run the tests\n"


def _folder(store: Path) -> Path:
    """The demo's notes folder: beside the store (``./store`` -> ``./store-demo-notes``)."""
    store = store.absolute()
    return store.parent / f"{store.name}-{SOURCE}"


def _config(store: Path) -> str:
    return f"""
# added by `blocksync demo`: the demo agent's folder source
[agents.{AGENT}.data_sources.{SOURCE}]
type = "file"
name = "Demo notes"
paths = ["../{_folder(store).name}"]
include_patterns = ["**/*.md"]
permission_rules = [{{ pattern = "**", permission = "admin" }}]
"""


def run(store: Path, author: str, say: Callable[[str], None]) -> None:
    """Walk through reconcile with a folder source: in ``store`` if the demo creates it (or
    made it before), else in a temporary store that leaves ``store`` untouched."""
    if not (store / "repo").exists():
        _create(store, author)
        say(
            f"created a store in {store}, with the demo's folder {_folder(store)} attached to "
            f"agent {AGENT} in {store / 'blocksync.toml'}"
        )
    elif _config(store) not in _read(store / "blocksync.toml"):
        say(
            f"{store} is a store of yours: the demo runs in a temporary store and leaves "
            "yours untouched"
        )
        with tempfile.TemporaryDirectory(prefix="blocksync-demo-") as tmp:
            temporary = Path(tmp) / "store"
            _create(temporary, author)
            _walk_through(temporary, author, say, keep=False)
        return
    _walk_through(store, author, say, keep=True)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # not the demo's own store, whatever it is
        return ""


def _create(store: Path, author: str) -> None:
    """A new store whose blocksync.toml attaches the demo's folder to the demo agent."""
    workspace.init(store, author=author).close()
    toml = store / "blocksync.toml"
    write_atomic(toml, toml.read_bytes() + _config(store).encode("utf-8"))


def _walk_through(store: Path, author: str, say: Callable[[str], None], keep: bool) -> None:
    folder = _folder(store)
    folder.mkdir(exist_ok=True)
    with workspace.open(store, author=author) as ws:
        for stale in ws.conflicts.list(source=SOURCE):  # left by an interrupted earlier demo
            ws.conflicts.resolve(stale.id, take="disk")
        (folder / "persona.md").write_text(PERSONA, encoding="utf-8")
        (folder / "todo.md").write_text(TODO, encoding="utf-8")
        report = ws.reconcile([SOURCE])
        say(f"1. reconcile: {_summary(report.sources[0])}")
        persona, todo = (_label(ws, "persona.md"), _label(ws, "todo.md"))

        say(
            "2. the agent adds a task at the end of its block; someone adds one at the top of the file"
        )
        ws.blocks.update(
            AGENT, todo, TODO + "- water the plants\n", message="demo: agent adds a task"
        )
        (folder / "todo.md").write_text("- buy tea\n" + TODO, encoding="utf-8")
        say("3. both change the same line of persona.md")
        # numbered, so that each demo run makes a new conflict rather than one decided before
        stamp = f"edit {ws.blocks.read(AGENT, persona).version}"
        ws.blocks.update(
            AGENT,
            persona,
            PERSONA.replace("helpful", f"cheerful ({stamp})"),
            message="demo: agent edits",
        )
        (folder / "persona.md").write_text(
            PERSONA.replace("helpful", f"careful ({stamp})"), encoding="utf-8"
        )

        report = ws.reconcile([SOURCE])
        say(f"4. reconcile: {_summary(report.sources[0])}")
        say("   todo.md merged on both sides:")
        say(_indent((folder / "todo.md").read_text(encoding="utf-8")))
        (conflict,) = ws.conflicts.list(source=SOURCE)
        say(f"   conflict {conflict.id} on {conflict.path}: {conflict.reason}")
        say(
            "   disk -> agent: "
            + render_char_diff(
                char_diff(conflict.disk or "", conflict.agent or ""), color=False
            ).split("\n")[0]
        )

        resolved = ws.conflicts.resolve(conflict.id, take="agent", resolver=author)
        say(
            f"5. resolved {resolved.id} by taking the agent's side: block version "
            f"{resolved.result_version}, and the file now reads:"
        )
        say(_indent((folder / "persona.md").read_text(encoding="utf-8")))
        report = ws.reconcile([SOURCE])
        say(
            f"6. reconcile again: {_summary(report.sources[0])}; open conflicts: "
            f"{report.open_conflicts}"
        )
        say(f"   history of {AGENT}/{persona}:")
        for v in ws.blocks.history(AGENT, persona)[-4:]:
            say(f"     v{v.version}  {v.commit[:10]}  {v.author}  {v.message}")
        check = ws.fsck()
        say(f"fsck: {'ok' if check.ok else check.problems}")
        if keep:
            say(f"try: blocksync --store {store} conflicts list --status all")


def _label(ws: workspace.Workspace, name: str) -> str:
    (label,) = [b.label for b in ws.blocks.list(AGENT) if b.label.endswith(":" + name)]
    return label


def _summary(source: SourceReport) -> str:
    if source.error:
        return f"FAILED: {source.error}"
    done = ", ".join(f"{p} {r}" for p, r in source.resolved) or "nothing to carry over"
    if source.needs_resolution:
        done += f"; needs resolution: {', '.join(source.needs_resolution)}"
    return done


def _indent(text: str) -> str:
    return "\n".join("     " + line for line in text.rstrip("\n").split("\n"))
