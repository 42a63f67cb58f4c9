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
    │   └── PluginBuildError               a plugin source cannot be built into a component
    ├── NotFound                        4  something named does not exist
    │   ├── StoreNotFound                  no store folder: run `blocksync init`
    │   ├── BlockNotFound
    │   └── VersionNotFound
    ├── AlreadyExists                   1
    │   ├── StoreExists
    │   └── BlockExists
    ├── ConcurrencyError                5  someone else moved first
    │   ├── StaleVersion                   expected_version no longer current
    │   └── ConcurrentUpdate               compare-and-swap retries exhausted
    ├── StoreCorrupt                    1  the repository or index cannot be trusted
    │   ├── RepositoryCorrupt
    │   └── IndexCorrupt                   index.db missing, unreadable or out of sync
    ├── MergeConflict                   1  a three-way merge found overlapping changes
    ├── AccessDenied                    1  a plugin asked for more than it was granted
    ├── TransportError                  1  an HTTP request made for a plugin failed
    └── PluginError                     1  a plugin failed; names plugin, version and call
        ├── PluginRefused                  refused before any of its code ran (not a
        │                                  component, wrong interface version, bad
        │                                  exports, changed file)
        ├── PluginCallFailed               the call returned its WIT error
        └── PluginTrapped                  trap or limit (time, fuel, memory, result size):
                                           the instance was discarded

Exit codes 3 (completed with open conflicts) and 75 (run lock held) are reserved for the
reconcile and sync commands.
"""

from __future__ import annotations


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


class AlreadyExists(BlocksyncError):
    """Something to be created exists already."""


class StoreExists(AlreadyExists):
    def __init__(self, path: str) -> None:
        super().__init__(f"a blocksync store already exists at {path}")
        self.path = path


class BlockExists(AlreadyExists):
    def __init__(self, owner: str, label: str) -> None:
        super().__init__(f"block {label!r} for owner {owner!r} already exists")
        self.owner = owner
        self.label = label


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


class StoreCorrupt(BlocksyncError):
    """The store's repository or index cannot be trusted."""


class RepositoryCorrupt(StoreCorrupt):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"repository {path} is damaged: {detail}")
        self.path = path
        self.detail = detail


class IndexCorrupt(StoreCorrupt):
    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"index {path} {detail}: run `blocksync index rebuild` to recreate it")
        self.path = path
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


class MergeConflict(BlocksyncError):
    """Both sides changed the same region differently: no clean three-way merge."""


class AccessDenied(BlocksyncError):
    """A plugin asked for something its grants do not allow (an owner, a path, a host)."""


class TransportError(BlocksyncError):
    """An HTTP request made on a plugin's behalf failed (refused, timed out, too large)."""


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
