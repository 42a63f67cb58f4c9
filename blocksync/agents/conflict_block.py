"""``blocksync:conflicts``: a block listing an agent's open conflicts, kept by the host.

An agent reads its memory blocks; a conflict sitting in ``index.db`` is invisible to it until
someone runs ``blocksync conflicts list``. With ``[agents.<id>] conflict_block = true`` the
agent has this block, which lists the open conflicts of the blocks it owns, one line each, and
how to resolve them -- the memory-native way to bring a conflict into its context.

Decisions:

* **Derived, rewritten, never merged.** The block is a view of the conflict index, rewritten in
  full whenever a run holding the store's run lock ends (:meth:`Workspace.locked
  <blocksync.workspace.Workspace.locked>`: reconcile, sync, conflicts resolve / undo, pull,
  push, the built-in resolve tool) and on demand (``ws.refresh_conflict_blocks()``, ``blocksync
  conflicts block``). A write is made only when the text differs from the block's, so a run
  with nothing new commits nothing.
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
* **Turned off, it says so.** When an agent's ``conflict_block`` is turned off, or its
  ``[agents.<id>]`` table removed, the block it had would go on listing conflicts long resolved
  as if they were open. So the refresh at the end of every locked run (and ``blocksync
  conflicts block`` without ``--agent``) *retires* it: its text becomes one line,
  :func:`not_kept`, saying blocksync no longer keeps it and how to remove it -- a new version
  through the ordinary write path, the listing kept in its history. Replaced, not deleted:
  an agent (or the framework that feeds its context) that reads the block finds a sentence
  that explains itself rather than a block gone without a word, and nothing is deleted that
  a person did not ask to delete (``blocksync block delete OWNER blocksync:conflicts`` does).
  Only a block whose newest version is a listing this store wrote (:data:`MESSAGE` on this
  machine, ``[store] machine``) is retired: a listing another machine keeps for its own agent
  arrives by pull and is that machine's to keep, and a block someone wrote into after the
  setting went off is theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from blocksync import names
from blocksync.config import Config
from blocksync.errors import BlockNotFound, NotFound, UsageError
from blocksync.index.conflicts import Conflict, ConflictIndex
from blocksync.store.blocks import BlockStore, BlockType
from blocksync.text import printable

LABEL = names.HOST_LABEL_PREFIX + "conflicts"
#: conflicts listed one per line; more are counted, with the command that lists them all
MAX_LISTED = 20
NONE_OPEN = "no open conflicts\n"
#: what the commit message of a refresh starts with (the agents follow): a retired block's mark
MESSAGE = f"update {LABEL} of "
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


def not_kept(agent: str, limit: int | None = None) -> str:
    """The one line a retired block holds (in at most ``limit`` characters when given)."""
    text = (
        f"blocksync no longer keeps this block ([agents.{printable(agent)}] has no "
        "conflict_block = true): `blocksync conflicts list` lists open conflicts; "
        f"`blocksync block delete {printable(agent)} {LABEL}` removes it\n"
    )
    return text if limit is None or len(text) <= limit else text[:limit]


def refresh(
    blocks: BlockStore,
    index: ConflictIndex,
    agents: Iterable[str],
    author: str | None = None,
    *,
    retire: bool = True,
) -> list[str]:
    """Bring the block of each of ``agents`` up to date with ``index`` and -- ``retire`` --
    retire the listings no agent of ``agents`` keeps any more (module docstring), in one
    commit if anything differs (none otherwise); the owners whose block was written."""
    kept = list(dict.fromkeys(agents))
    wanted: dict[str, tuple[str, bool]] = {}  # agent -> (text, the block exists)
    for agent in kept:
        try:
            block = blocks.read(agent, LABEL)
        except BlockNotFound:
            wanted[agent] = (text_for(index, agent), False)
            continue
        text = text_for(index, agent, block.meta.char_limit)
        if text != block.content:
            wanted[agent] = (text, True)
    if retire:
        wanted.update((owner, (text, True)) for owner, text in _stale(blocks, set(kept)).items())
    if not wanted:
        return []
    with blocks.transaction(MESSAGE + ", ".join(wanted), author) as tx:
        for agent, (text, exists) in wanted.items():
            if exists:
                tx.update(agent, LABEL, text)
            else:
                tx.create(agent, LABEL, text, description=DESCRIPTION, block_type=BlockType.CORE)
    return list(wanted)


def _stale(blocks: BlockStore, kept: set[str]) -> dict[str, str]:
    """owner -> :func:`not_kept` text, for each block of :data:`LABEL` outside ``kept`` whose
    newest version is a listing this machine wrote."""
    found: dict[str, str] = {}
    for owner in blocks.owners_with(LABEL):
        if owner in kept:
            continue
        block = blocks.read(owner, LABEL)
        newest = blocks.version(owner, LABEL, block.version)
        ours = newest.machine == blocks.git.machine and newest.message.startswith(MESSAGE)
        text = not_kept(owner, block.meta.char_limit)
        if ours and block.content != text:
            found[owner] = text
    return found


def check_agents(config: Config, agents: Sequence[str]) -> None:
    """Refuse ``agents`` (named by a caller) that keep no block: an agent with no
    ``[agents.<id>]`` table is :class:`NotFound` (exit 4), one whose table does not say
    ``conflict_block = true`` a :class:`UsageError` (exit 2); each names the file."""
    keeping = config.conflict_block_agents
    for agent in agents:
        names.validate(agent, "agent id")
        if agent in keeping:
            continue
        those = ", ".join(printable(a) for a in keeping) or "none"
        if agent not in config.agents:
            raise NotFound(
                f"no agent {agent!r} in {config.path} (agents with conflict_block = true: {those})"
            )
        raise UsageError(
            f"agent {agent!r} keeps no {LABEL} block: [agents.{printable(agent)}] in "
            f"{config.path} does not say conflict_block = true (agents that do: {those})"
        )


__all__ = [
    "LABEL",
    "MESSAGE",
    "check_agents",
    "not_kept",
    "refresh",
    "render",
    "text_for",
]
