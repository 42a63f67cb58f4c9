"""``blocksync:conflicts``: a block listing an agent's open conflicts, kept by the host.

An agent reads its memory blocks; a conflict sitting in ``index.db`` is invisible to it until
someone runs ``blocksync conflicts list``. With ``[agents.<id>] conflict_block = true`` the
agent has this block, which lists the open conflicts of the blocks it owns, one line each, and
how to resolve them -- the memory-native way to bring a conflict into its context.

Decisions:

* **Derived, rewritten, never merged.** The block is a view of the conflict index, rewritten in
  full whenever a run holding the store's run lock ends (:meth:`Workspace.locked
  <blocksync.workspace.Workspace.locked>`: reconcile, sync, conflicts resolve / undo, pull,
  push, the built-in resolve tool) and on demand (``ws.refresh_conflict_blocks()``). A write is
  made only when the text differs from the block's, so a run with nothing new commits nothing.
* **An agent's edit is overwritten, not refused.** The block store has no notion of who calls
  it (the library, the command line, tools and plugins' host calls all write through it), and
  a guard there would also stop rollbacks and merges that must work for every block. The
  view converges on the next run instead, and the agent's text stays in the block's history.
* **Its own namespace.** Its label is under :data:`blocksync.names.HOST_LABEL_PREFIX`: no data
  source binds such a label (a folder source's labels start ``file:``; a plugin's label
  namespace and the blocks its ``load`` names skip host labels), and a pull keeps this
  machine's version of it without a conflict, as it is rewritten right after.
* **Stable text.** Only what changes with the conflicts is shown (ids, sources, paths, what each
  side did, the reason; no timestamps), newest first, at most :data:`MAX_LISTED` lines.
* **Only content is rewritten.** A block type, description or limit someone gave the block is
  kept; a ``char_limit`` too small for the list gets the count and where to look instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from blocksync import names
from blocksync.errors import BlockNotFound
from blocksync.index.conflicts import Conflict, ConflictIndex
from blocksync.store.blocks import BlockStore, BlockType
from blocksync.text import printable

LABEL = names.HOST_LABEL_PREFIX + "conflicts"
#: conflicts listed one per line; more are counted, with the command that lists them all
MAX_LISTED = 20
NONE_OPEN = "no open conflicts\n"
DESCRIPTION = (
    "Open conflicts of this agent's blocks and how to resolve them; kept current by blocksync "
    "(an edit here is overwritten by the next run)."
)


def render(agent: str, conflicts: Sequence[Conflict], total: int, limit: int | None = None) -> str:
    """The block's text for ``agent``: ``conflicts`` (its newest open ones) of ``total``, in at
    most ``limit`` characters when given."""
    if total == 0:
        return NONE_OPEN
    head = (
        f"{total} open conflict(s) in blocks of {printable(agent)} "
        "(kept by blocksync; an edit here is overwritten by the next run)\n"
    )
    listed = [_line(c) for c in conflicts[:MAX_LISTED]]
    if total > len(listed):
        listed.append(f"- ... and {total - len(listed)} more: blocksync conflicts list\n")
    text = head + "".join(listed) + _how(conflicts[0].id if conflicts else "ID")
    if limit is None or len(text) <= limit:
        return text
    short = head + "list them: blocksync conflicts list\n"
    return short if len(short) <= limit else short[:limit]


def _line(c: Conflict) -> str:
    where = f"{printable(c.source)} {printable(c.path)} [{printable(c.label)}]"
    sides = f"disk {_did(c.base_hash, c.disk_hash)}, agent {_did(c.base_hash, c.agent_hash)}"
    return f"- {c.id} {where}: {sides} ({printable(c.reason)})\n"


def _did(base: str | None, side: str | None) -> str:
    """What one side did since the base, from the hashes the conflict recorded."""
    if base is None:
        return "created" if side is not None else "absent"
    if side is None:
        return "deleted"
    return "unchanged" if side == base else "changed"


def _how(example: str) -> str:
    return (
        "Resolve one (disk: the source's side, agent: the block's side):\n"
        f"  blocksync conflicts show {example}   (the three sides)\n"
        f"  blocksync conflicts resolve {example} --take disk|agent|merged   "
        "(or --content-file FILE)\n"
        f'  Python: ws.conflicts.resolve("{example}", take="disk")   '
        '(or "agent", "merged", content="...")\n'
        f'  tool: blocksync_conflict_resolve {{"id": "{example}", "take": "disk"}}\n'
        f"Undo a resolution: blocksync conflicts undo {example}\n"
    )


def text_for(index: ConflictIndex, agent: str, limit: int | None = None) -> str:
    """The text ``agent``'s block should hold now (see :func:`render`)."""
    total = index.open_count(owner=agent)
    newest = index.list("open", owner=agent, limit=MAX_LISTED) if total else []
    return render(agent, newest, total, limit)


def refresh(
    blocks: BlockStore, index: ConflictIndex, agents: Iterable[str], author: str | None = None
) -> list[str]:
    """Bring the block of each of ``agents`` up to date with ``index``, in one commit if any
    differs (none otherwise); the agents whose block was written."""
    wanted: dict[str, tuple[str, bool]] = {}  # agent -> (text, the block exists)
    for agent in agents:
        try:
            block = blocks.read(agent, LABEL)
        except BlockNotFound:
            wanted[agent] = (text_for(index, agent), False)
            continue
        text = text_for(index, agent, block.meta.char_limit)
        if text != block.content:
            wanted[agent] = (text, True)
    if not wanted:
        return []
    with blocks.transaction(f"update {LABEL} of {', '.join(wanted)}", author) as tx:
        for agent, (text, exists) in wanted.items():
            if exists:
                tx.update(agent, LABEL, text)
            else:
                tx.create(agent, LABEL, text, description=DESCRIPTION, block_type=BlockType.CORE)
    return list(wanted)


__all__ = ["LABEL", "refresh", "render", "text_for"]
