"""The public surface changes only on purpose: update this list together with __all__."""

import blocksync

EXPECTED = [
    "AlreadyExists", "Block", "BlockExists", "BlockMeta", "BlockNotFound", "BlockStore",
    "BlockSummary", "BlockType", "BlocksyncError", "CommitResult", "ConcurrencyError",
    "ConcurrentUpdate", "ConfigError", "Diff", "FsckReport", "IndexCorrupt", "InvalidContent",
    "InvalidLabel", "NotFound", "Problem", "RepositoryCorrupt", "StaleVersion", "StoreCorrupt",
    "StoreExists", "StoreNotFound", "Transaction", "UsageError", "Version", "VersionNotFound",
    "Workspace", "fsck", "init", "open", "rebuild_index",
]


def test_all_is_pinned() -> None:
    assert sorted(blocksync.__all__) == sorted(EXPECTED)


def test_every_exported_name_exists() -> None:
    for name in blocksync.__all__:
        assert hasattr(blocksync, name), name
