"""blocksync: versioned memory blocks in git, synced to outside sources through WASM plugins."""

from .blocks import Block, BlockMeta, BlockStore, BlockSummary, BlockType, CommitResult, Diff, Transaction, Version
from .errors import (
    AlreadyExists,
    BlockExists,
    BlockNotFound,
    BlocksyncError,
    ConcurrencyError,
    ConcurrentUpdate,
    ConfigError,
    IndexCorrupt,
    InvalidContent,
    InvalidLabel,
    NotFound,
    RepositoryCorrupt,
    StaleVersion,
    StoreCorrupt,
    StoreExists,
    StoreNotFound,
    UsageError,
    VersionNotFound,
)
from .fsck import FsckReport, Problem
from .workspace import Workspace, fsck, init, open, rebuild_index

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "Block",
    "BlockExists",
    "BlockMeta",
    "BlockNotFound",
    "BlockStore",
    "BlockSummary",
    "BlockType",
    "BlocksyncError",
    "CommitResult",
    "ConcurrencyError",
    "ConcurrentUpdate",
    "ConfigError",
    "Diff",
    "FsckReport",
    "IndexCorrupt",
    "InvalidContent",
    "InvalidLabel",
    "NotFound",
    "Problem",
    "RepositoryCorrupt",
    "StaleVersion",
    "StoreCorrupt",
    "StoreExists",
    "StoreNotFound",
    "Transaction",
    "UsageError",
    "Version",
    "VersionNotFound",
    "Workspace",
    "fsck",
    "init",
    "open",
    "rebuild_index",
]
