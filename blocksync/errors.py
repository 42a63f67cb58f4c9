"""The one exception tree of blocksync.

Every error the library raises is a :class:`BlocksyncError`; foreign errors (dulwich, sqlite3,
wasmtime, OS errors) are translated where they cross into blocksync, with ``raise ... from exc``
so the original stays attached. Each class carries the data a caller needs to act on it, and an
``exit_code`` the CLI uses::

    BlocksyncError                      1  something went wrong
    ├── UsageError                      2  the request itself is malformed
    │   ├── InvalidLabel                   empty label, or one that would escape the tree
    │   ├── InvalidContent                 not UTF-8, or over the block's char_limit
    │   ├── ConfigError                    blocksync.toml is wrong
    │   ├── PluginBuildError               a plugin source cannot be built into a component
    │   ├── InvalidTransition              a stream asked to start/stop/pause/resume from a
    │   │                                  state that does not allow it (the plugin is not called)
    │   ├── AmbiguousConflictId            a conflict id prefix matches several conflicts
    │   ├── AmbiguousRunId                 a run id prefix matches several runs
    │   └── ToolInputInvalid               tool params fail the tool's parameters schema
    ├── NotFound                        4  something named does not exist
    │   ├── StoreNotFound                  no store folder: run `blocksync init`
    │   ├── BlockNotFound
    │   ├── VersionNotFound
    │   ├── ConflictNotFound               no conflict has that id (or id prefix)
    │   ├── RunNotFound                    no run in the run log has that id (or id prefix)
    │   ├── NotificationNotFound           acking an id no notification has
    │   └── ToolNotFound                   no tool has that name
    ├── AlreadyExists                   2  asked to create what exists (a usage error)
    │   ├── StoreExists
    │   ├── BlockExists
    │   └── AlreadyBound                   a source path or block bound elsewhere: forget it first
    ├── ConcurrencyError                5  someone else moved first
    │   ├── StaleVersion                   expected_version no longer current
    │   ├── ConcurrentUpdate               compare-and-swap retries exhausted
    │   ├── SourceChanged                  a source's side is not what was expected
    │   ├── StaleResolution                a side of the conflict changed since detection
    │   ├── ConflictNotOpen                resolving a superseded or vanished conflict
    │   │   └── AlreadyResolved            ... or one resolved already
    │   ├── CannotUndo                     undoing what was not resolved, or a path that
    │   │                                  has moved on since the resolution
    │   └── RunLockHeld                75  another run holds store/run.lock (names it)
    ├── StoreCorrupt                    1  the repository or index cannot be trusted
    │   ├── RepositoryCorrupt              an object cannot be read (names it, says how to
    │   │                                  recover)
    │   ├── IndexCorrupt                   index.db missing, unreadable or out of sync
    │   └── UnsafeFile                     a file blocksync writes is a symbolic link (or
    │                                      not a regular file): refused, never followed
    ├── StoreFormatError                1  the store's layout is newer than this blocksync (or
    │                                      an old one reached a writer): names the upgrade
    ├── MergeConflict                   1  a three-way merge found overlapping changes
    ├── Interrupted               130, 143  SIGINT, SIGTERM stopped a run at a safe point
    │                                      (128 + the signal's number; blocksync.interrupts)
    ├── WaitAbandoned                   1  the caller gave up on a call while it waited for
    │                                      the run lock (an MCP client cancelled it): nothing
    │                                      was written
    ├── MassDeletionRefused             1  a run would delete more than the threshold of a
    │                                      source's paths (from disk, agent or remote side)
    ├── AccessDenied                    1  a plugin asked for more than it was granted
    │   └── AgentNotAllowed                an agent's tool call on another owner's block or
    │                                      conflict ([agents.<id>] may_act_for grants it)
    ├── TransportError                  1  an HTTP request made for a plugin failed
    ├── RemoteError                     1  a git remote failed (credentials never in messages)
    │   ├── RemoteUnreachable              cannot connect, or the transfer broke off
    │   ├── RemoteRejected                 the remote refused the push (or would have to:
    │   │                                  its main is checked out in a work tree)
    │   ├── UnrelatedHistories             the remote's main shares no history with ours
    │   ├── RemoteFormatError              the remote's main is of another store format
    │   │                                  (an old blocksync pushed it, or a newer one)
    │   └── MalformedRemote                the remote's main brings what is no block of a
    │                                      blocksync store: the pull is refused, nothing applied
    └── PluginError                     1  a plugin failed; names plugin, version and call
        ├── PluginRefused                  refused before any of its code ran (not a
        │                                  component, wrong interface version, bad
        │                                  exports, changed file)
        ├── PluginCallFailed               the call returned its WIT error
        ├── ToolSchemaInvalid              a tool's parameters or output schema is not
        │                                  JSON, or not a valid JSON Schema
        ├── ToolOutputInvalid              a tool's output fails its output schema
        ├── PullRefused                    a stream's pull answered a cursor going backwards
        │                                  or a batch over its cap: nothing of it is stored
        └── PluginTrapped                  trap or limit (time, fuel, memory, result size):
                                           the instance was discarded

Exit codes 3 (completed with open conflicts) and 75 (run lock held, ``EX_TEMPFAIL``: try again
later) are reserved for the reconcile and sync commands; 130 and 143 (the shell's codes for a
process ended by SIGINT and SIGTERM) for the commands that take the run lock.
"""

from __future__ import annotations

import signal


class BlocksyncError(Exception):
    """Base of every error blocksync raises."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BlocksyncError):
    """The request is malformed: a bad argument, name or input."""

    exit_code = 2


class InvalidLabel(UsageError):
    """A block owner or label that cannot be stored."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"invalid name {label!r}: {reason}")
        self.label = label
        self.reason = reason


class InvalidContent(UsageError):
    """Block content that is not acceptable text."""


class ConfigError(UsageError):
    """The store's configuration file is wrong."""


class NotFound(BlocksyncError):
    """Something named does not exist."""

    exit_code = 4


class StoreNotFound(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(f"no blocksync store at {path}: run `blocksync init` to create one")
        self.path = path


class BlockNotFound(NotFound):
    def __init__(self, owner: str, label: str) -> None:
        super().__init__(f"no block {label!r} for owner {owner!r}")
        self.owner = owner
        self.label = label


class VersionNotFound(NotFound):
    def __init__(self, owner: str, label: str, version: str) -> None:
        super().__init__(f"block {owner}/{label} has no version {version}")
        self.owner = owner
        self.label = label
        self.version = version


class ConflictNotFound(NotFound):
    """No conflict in the index has this id, nor an id starting with it."""

    def __init__(self, conflict_id: str) -> None:
        super().__init__(
            f"no conflict {conflict_id!r}: `blocksync conflicts list --status all` shows them all"
        )
        self.conflict_id = conflict_id


class AlreadyExists(BlocksyncError):
    """Something to be created exists already: the request is at fault, not the store (2)."""

    exit_code = 2


class StoreExists(AlreadyExists):
    def __init__(self, path: str) -> None:
        super().__init__(f"a blocksync store already exists at {path}")
        self.path = path


class BlockExists(AlreadyExists):
    def __init__(self, owner: str, label: str) -> None:
        super().__init__(f"block {label!r} for owner {owner!r} already exists")
        self.owner = owner
        self.label = label


class AlreadyBound(AlreadyExists):
    """A source's path is bound to another block, or the block to another path.

    Sync bases bind each path of a source to one block and each block to one path; moving a
    binding takes an explicit ``forget`` first, so a mix-up never silently redirects a file.
    """

    def __init__(
        self,
        source: str,
        path: str,
        owner: str,
        label: str,
        bound_path: str,
        bound_owner: str,
        bound_label: str,
    ) -> None:
        if bound_path == path:
            what = f"path {path!r} is bound to block {bound_owner}/{bound_label}"
        else:
            what = f"block {owner}/{label} is bound to path {bound_path!r}"
        super().__init__(
            f"source {source!r}: cannot bind path {path!r} to block {owner}/{label}: {what}; "
            "forget the old binding first"
        )
        self.source = source
        self.path = path
        self.owner = owner
        self.label = label
        self.bound_path = bound_path
        self.bound_owner = bound_owner
        self.bound_label = bound_label


class ConcurrencyError(BlocksyncError):
    """Another writer changed what this one relied on."""

    exit_code = 5


class StaleVersion(ConcurrencyError):
    def __init__(self, owner: str, label: str, expected: int, actual: int | None) -> None:
        now = "deleted" if actual is None else f"at version {actual}"
        super().__init__(
            f"block {owner}/{label} is {now}, not at the expected version {expected}: "
            "read it again and retry"
        )
        self.owner = owner
        self.label = label
        self.expected = expected
        self.actual = actual


class ConcurrentUpdate(ConcurrencyError):
    def __init__(self, ref: str, attempts: int, hint: str = "") -> None:
        super().__init__(
            f"{ref} kept moving under concurrent writers; gave up after {attempts} attempts"
            + (f" ({hint})" if hint else "")
        )
        self.ref = ref
        self.attempts = attempts


class SourceChanged(ConcurrencyError):
    """A source's side of a path is not what the caller expected (a plugin would not write it
    as asked, or it changed since it was read): nothing was written."""

    def __init__(self, source: str, path: str, detail: str) -> None:
        super().__init__(f"source {source!r}, path {path!r}: {detail}")
        self.source = source
        self.path = path


class StaleResolution(ConcurrencyError):
    """A side of the conflict no longer holds what it held when the conflict was detected."""

    def __init__(self, conflict_id: str, sides: tuple[str, ...]) -> None:
        changed = " and ".join(sides)
        super().__init__(
            f"conflict {conflict_id} is stale: {changed} changed since it was detected; "
            "run reconcile again and resolve the conflict it reports"
        )
        self.conflict_id = conflict_id
        #: the sides that moved: "disk", "agent" or both
        self.sides = sides


class ConflictNotOpen(ConcurrencyError):
    """A resolution of a conflict that is no longer open (superseded, vanished or resolved)."""

    def __init__(
        self, conflict_id: str, status: str, detail: str = "", *, superseded_by: str | None = None
    ) -> None:
        if not detail:
            detail = (
                f"it was superseded by {superseded_by}: resolve that one"
                if superseded_by
                else f"it is {status}: there is nothing to resolve"
            )
        super().__init__(f"conflict {conflict_id} is not open: {detail}")
        self.conflict_id = conflict_id
        self.status = status
        self.superseded_by = superseded_by


class AlreadyResolved(ConflictNotOpen):
    """A resolution of a conflict that was resolved already."""

    def __init__(
        self,
        conflict_id: str,
        resolution: str | None,
        resolved_by: str | None,
        resolved_at: str | None,
    ) -> None:
        by = f" by {resolved_by}" if resolved_by else ""
        super().__init__(
            conflict_id,
            "resolved",
            f"it was resolved already ({resolution}){by} at {resolved_at}; undo it first to "
            "resolve it differently",
        )
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = resolved_at


class CannotUndo(ConcurrencyError):
    """An undo of a conflict that was not resolved by a resolution, or whose path moved on."""

    def __init__(self, conflict_id: str, detail: str) -> None:
        super().__init__(f"cannot undo conflict {conflict_id}: {detail}")
        self.conflict_id = conflict_id
        self.detail = detail


class RunLockHeld(ConcurrencyError):
    """Another writer run holds ``store/run.lock``: this one did not start (or gave up waiting).

    ``holder`` describes the run holding it, as it wrote itself into the lock file (pid, command,
    start time); it is empty when the holder had not written that yet. ``waited`` is how long
    this run waited, in seconds (0 when it did not wait).
    """

    exit_code = 75

    def __init__(self, path: str, holder: dict[str, object], waited: float) -> None:
        who = _describe_holder(holder)
        tail = f" (waited {waited:.1f} s)" if waited > 0 else ": try again later, or pass --wait"
        super().__init__(f"another run holds the run lock {path}: {who}{tail}")
        self.path = path
        self.holder = dict(holder)
        self.waited = waited
        #: the holder in words (pid, command, run id, start time)
        self.who = who


def _describe_holder(holder: dict[str, object]) -> str:
    if not holder.get("pid"):
        return "a process that has not said who it is yet"
    parts = [f"pid {holder['pid']}"]
    if holder.get("command"):
        parts.append(f"running {holder['command']!r}")
    if holder.get("run_id"):
        parts.append(f"run {holder['run_id']}")
    if holder.get("started_at"):
        parts.append(f"since {holder['started_at']}")
    return ", ".join(parts)


class StoreCorrupt(BlocksyncError):
    """The store's repository or index cannot be trusted."""


class RepositoryCorrupt(StoreCorrupt):
    """The repository at ``path`` is damaged; ``object_id`` names the object that could not be
    read, when one could not."""

    def __init__(self, path: str, detail: str, *, object_id: str | None = None) -> None:
        super().__init__(f"repository {path} is damaged: {detail}")
        self.path = path
        self.detail = detail
        self.object_id = object_id


class IndexCorrupt(StoreCorrupt):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"index {path} {detail}: run `blocksync index rebuild` to recreate it")
        self.path = path
        self.detail = detail


class StoreFormatError(BlocksyncError):
    """The store (``path``; ``ref``, the ref whose tree says so) is of store format ``found``,
    which this blocksync cannot use as it is: a newer one (upgrade blocksync), or format 1
    reaching a writer that did not open the store through :func:`blocksync.open` (which
    upgrades it in place). Nothing was written."""

    def __init__(self, path: str, ref: str, found: int, supported: int, detail: str) -> None:
        super().__init__(f"store {path} ({ref}) is store format {found}: {detail}")
        self.path = path
        self.ref = ref
        self.found = found
        self.supported = supported
        self.detail = detail


class PluginBuildError(UsageError):
    """A plugin source folder cannot be built into a WebAssembly component."""

    def __init__(
        self, source: str, detail: str, *, missing_methods: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(f"cannot build plugin {source}: {detail}")
        self.source = source
        self.detail = detail
        #: class name -> required methods it lacks (empty unless that is the problem)
        self.missing_methods = dict(missing_methods or {})


class RunNotFound(NotFound):
    """No run in the run log has this id, nor an id starting with it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}: `blocksync runs` lists the recorded runs")
        self.run_id = run_id


def _ambiguous(noun: str, prefix: str, matches: list[str]) -> str:
    """The message of an id prefix that names several rows (the first five shown)."""
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    return f"{noun} id {prefix!r} is ambiguous: it matches {shown}"


class AmbiguousRunId(UsageError):
    """A run id prefix that matches more than one run."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(_ambiguous("run", prefix, matches))
        self.prefix, self.matches = prefix, list(matches)


class AmbiguousConflictId(UsageError):
    """A conflict id prefix that matches more than one conflict."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(_ambiguous("conflict", prefix, matches))
        self.prefix, self.matches = prefix, list(matches)


class UnsafeFile(StoreCorrupt):
    """A file blocksync creates or rewrites (``run.lock``, ``blocksync.toml``, ``index.db``,
    a key file) is a symbolic link, a folder, a FIFO or another non-regular file, or a lock file
    with other hard links: blocksync refuses it rather than write through it to wherever it
    points. ``kind`` says what it is."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(
            f"refusing to open {path}: it is {kind}, not a regular file of its own; blocksync "
            "never writes through links: remove it (blocksync makes a new one) and run again"
        )
        self.path = path
        self.kind = kind


class MergeConflict(BlocksyncError):
    """Both sides changed the same region differently: no clean three-way merge."""


class Interrupted(BlocksyncError):
    """SIGINT or SIGTERM (``signum``) asked a run to stop, and it did, at a safe point: what it
    had started is complete, what it had not is left for the next run. ``detail`` says how far
    it got. Raised only inside :func:`blocksync.interrupts.handling`."""

    def __init__(self, signum: int, detail: str) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}: {detail}; nothing half-done was written")
        self.signum = signum
        self.signal = name
        self.detail = detail
        self.exit_code = 128 + signum


class WaitAbandoned(BlocksyncError):
    """A call waiting for the run lock was given up by its caller (``blocksync mcp``: the
    client cancelled it, or went away) before it took the lock: nothing was written."""

    def __init__(self) -> None:
        super().__init__("the call was given up while it waited for the run lock; nothing written")


class MassDeletionRefused(BlocksyncError):
    """A run would delete more than the mass-deletion threshold of a source's synced paths at
    once, from one ``side`` (``disk``: gone from the source, ``agent``: blocks deleted,
    ``remote``: blocks a remote deleted). Nothing of that source was changed; the user confirms
    with ``--allow-mass-delete`` (``allow_mass_delete=True``) or ``[store] allow_mass_delete``."""

    def __init__(self, source: str, side: str, count: int, total: int, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.side = side
        self.count = count
        self.total = total


class AccessDenied(BlocksyncError):
    """A plugin asked for something its grants do not allow (an owner, a path, a host)."""


class AgentNotAllowed(AccessDenied):
    """An agent's call of a built-in tool on a block or conflict of another ``owner``: an agent
    acts for itself only, unless ``[agents.<agent>] may_act_for`` lists the owner."""

    def __init__(self, agent: str, owner: str, action: str) -> None:
        super().__init__(
            f"agent {agent!r} may not {action} of {owner!r}: an agent acts on its own blocks "
            f"and conflicts only; to let it act for {owner!r}, add {owner!r} to "
            f"`may_act_for` of [agents.{agent}] in blocksync.toml"
        )
        self.agent = agent
        self.owner = owner
        self.action = action


class TransportError(BlocksyncError):
    """An HTTP request made on a plugin's behalf failed (refused, timed out, too large)."""


class RemoteError(BlocksyncError):
    """A git remote failed; ``remote`` is its configured name. Messages never hold credentials
    (URLs are shown with their user and password replaced by ``***``)."""

    def __init__(self, remote: str, detail: str) -> None:
        super().__init__(f"remote {remote!r}: {detail}")
        self.remote = remote
        self.detail = detail


class RemoteUnreachable(RemoteError):
    """The remote could not be reached, or the transfer broke off (nothing was applied)."""


class RemoteRejected(RemoteError):
    """The remote refused the push (a hook, permissions, a protected branch)."""


class UnrelatedHistories(RemoteError):
    """The remote's main and the local main share no commit: refused, nothing changed."""


class RemoteFormatError(RemoteError):
    """The remote's main is of store format ``found``, not the one this blocksync writes
    (``supported``): format 1 was pushed by a machine running an older blocksync, a newer one by
    a newer blocksync. Refused before anything was applied; the message names the upgrade."""

    def __init__(self, remote: str, detail: str, found: int, supported: int) -> None:
        super().__init__(remote, detail)
        self.found = found
        self.supported = supported


class MalformedRemote(RemoteError):
    """Commits the remote's main brings hold what is no block of a blocksync store (content that
    is not UTF-8, metadata that is not a block's, a name that is not canonical, files at the
    root): refused before main moved, nothing applied. ``problems`` names each path and why."""

    def __init__(self, remote: str, detail: str, problems: list[str]) -> None:
        super().__init__(remote, detail)
        self.problems = list(problems)


class PluginError(BlocksyncError):
    """A plugin failed. ``plugin`` is its configured name, ``version`` identifies the file."""

    def __init__(self, plugin: str, version: str, call: str, detail: str) -> None:
        where = f"plugin {plugin!r} ({version})" + (f" {call}" if call else "")
        super().__init__(f"{where}: {detail}")
        self.plugin = plugin
        self.version = version
        self.call = call
        self.detail = detail


class PluginRefused(PluginError):
    """The plugin was refused before any of its code ran."""


class PluginCallFailed(PluginError):
    """The plugin's function returned an error (the ``err`` of its WIT ``result``)."""


class PluginTrapped(PluginError):
    """The plugin trapped or hit a limit; its instance was discarded.

    ``reason`` is one of ``timeout``, ``fuel``, ``memory``, ``result-size`` or ``trap``.
    """

    def __init__(self, plugin: str, version: str, call: str, reason: str, detail: str) -> None:
        super().__init__(plugin, version, call, detail)
        self.reason = reason


class InvalidTransition(UsageError):
    """A stream lifecycle call its current state does not allow; the plugin was not called."""

    def __init__(self, stream: str, action: str, state: str, allowed: str) -> None:
        super().__init__(f"stream {stream!r} is {state}: cannot {action} it ({allowed})")
        self.stream = stream
        self.action = action
        self.state = state


class NotificationNotFound(NotFound):
    """No stored notification has these ids."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"no notification with id {', '.join(map(str, ids))}")
        self.ids = list(ids)


class PullRefused(PluginError):
    """A data stream's pull answered something the host refuses (``reason``: ``cursor-backwards``
    or ``batch-too-large``); nothing of that pull was stored and the cursor did not move."""

    def __init__(self, plugin: str, version: str, call: str, reason: str, detail: str) -> None:
        super().__init__(plugin, version, call, detail)
        self.reason = reason


# -- tools (blocksync.agents.tools) ---------------------------------------------------------------------


def _violations_text(violations: list[dict[str, str]]) -> str:
    """``at /times (minimum): 0 is less than the minimum of 1; ...`` (at most three)."""
    shown = [f"at {v['pointer'] or '/'} ({v['keyword']}): {v['message']}" for v in violations[:3]]
    more = len(violations) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


class ToolNotFound(NotFound):
    """No tool of the workspace's tool box has this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no tool named {name!r} (known: {', '.join(known) or 'none'}); "
            "`blocksync tool list` shows them"
        )
        self.name = name
        self.known = list(known)


class ToolInputInvalid(UsageError):
    """Tool params that fail the tool's parameters schema: nothing was called.

    ``violations`` holds one dict per failed check: ``pointer`` (a JSON Pointer into the params,
    ``""`` for the whole object; for a missing required property, where it should be),
    ``keyword`` (the failing JSON Schema keyword), ``schema_path`` and ``message``. ``pointer``,
    ``keyword`` and ``detail`` repeat the most relevant one.
    """

    def __init__(
        self, tool: str, origin: str, call_id: str, violations: list[dict[str, str]]
    ) -> None:
        super().__init__(
            f"tool {tool!r} ({origin}) call {call_id}: params do not match its parameters "
            f"schema: {_violations_text(violations)}"
        )
        self.tool = tool
        self.origin = origin
        self.call_id = call_id
        self.violations = [dict(v) for v in violations]
        first = violations[0] if violations else {}
        self.pointer = first.get("pointer", "")
        self.keyword = first.get("keyword", "")
        self.detail = first.get("message", "")


class ToolSchemaInvalid(PluginError):
    """A tool's ``parameters-schema`` or ``output-schema`` is not JSON, or not a valid JSON
    Schema; the tool is refused before any call. ``schema`` is ``"parameters"`` or ``"output"``;
    ``pointer`` and ``keyword`` locate the fault inside the schema."""

    def __init__(
        self,
        plugin: str,
        version: str,
        tool: str,
        schema: str,
        pointer: str,
        keyword: str,
        detail: str,
    ) -> None:
        where = f" at {pointer or '/'}" + (f" ({keyword})" if keyword else "")
        super().__init__(
            plugin,
            version,
            f"tool.{schema}-schema",
            f"tool {tool!r}: its {schema} schema is not a valid JSON Schema{where}: {detail}",
        )
        self.tool = tool
        self.schema = schema
        self.pointer = pointer
        self.keyword = keyword


class ToolOutputInvalid(PluginError):
    """A tool's output is not JSON or fails its output schema (the call ran; its output is
    withheld). ``violations`` as for :class:`ToolInputInvalid`, pointing into the output."""

    def __init__(
        self,
        plugin: str,
        version: str,
        tool: str,
        call_id: str,
        violations: list[dict[str, str]],
    ) -> None:
        super().__init__(
            plugin,
            version,
            "tool.execute",
            f"tool {tool!r} call {call_id}: its output does not match its output schema: "
            f"{_violations_text(violations)}",
        )
        self.tool = tool
        self.call_id = call_id
        self.violations = [dict(v) for v in violations]
        first = violations[0] if violations else {}
        self.pointer = first.get("pointer", "")
        self.keyword = first.get("keyword", "")
