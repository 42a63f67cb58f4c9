"""The one exception tree of blocksync.

Every error the library raises is a :class:`BlocksyncError`; foreign errors (dulwich, sqlite3,
wasmtime, OS errors) are translated where they cross into blocksync, with ``raise ... from exc``
so the original stays attached. Each class carries the data a caller needs to act on it, and an
``exit_code`` the CLI uses::

    BlocksyncError                      1  something went wrong
    ├── UsageError                      2  the request itself is malformed
    │   ├── InvalidLabel                   empty label, or one that would escape the tree
    │   ├── InvalidContent                 not UTF-8, or over the block's char_limit
    │   └── ConfigError                    blocksync.toml is wrong
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
    └── StoreCorrupt                    1  the repository or index cannot be trusted
        ├── RepositoryCorrupt
        └── IndexCorrupt                   index.db missing, unreadable or out of sync

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
    def __init__(self, ref: str, attempts: int) -> None:
        super().__init__(
            f"{ref} kept moving under concurrent writers; gave up after {attempts} attempts"
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
