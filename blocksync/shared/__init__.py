"""Pure modules (standard library only) that run both in blocksync and inside plugins."""
