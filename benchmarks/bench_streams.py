"""Stream benchmarks (issue 6): notifications stored per second from a stream pulling batches
of 1,000. Prints medians.

    .venv/bin/python benchmarks/bench_streams.py [--pulls 5] [--batch 1000] [--tiny]

1. storing alone: ``NotificationLog.record_pull`` of a batch whose notifications each name one
   block (looked up in the block store: 1,000 different blocks, or one block for all),
   cursor and notifications in one transaction;
2. end to end, no block writes: the ``feed`` plugin (fixtures/plugins/feed, Python guest SDK)
   pulls a batch from a local JSON feed over the host's HTTP functions, each item naming one
   existing block; the host checks the batch and cursor, resolves and stores;
3. end to end with a block per item: the same, the plugin creating a block for each item
   (``host.memory-create-block``: one commit each), which is what a real feed plugin does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blocksync
from blocksync.index.notifications import PullCapture
from blocksync.shared.wit import BlockRef, Notification
from tests.feedserver import feed_server, feed_table
from tests.stores import make_store


def report(label: str, batch: int, times: list[float]) -> float:
    median = statistics.median(times)
    rate = batch / median
    print(
        f"{label}: median {median * 1e3:.1f} ms per batch of {batch:,} "
        f"-> {rate:,.0f} notifications/s (runs: {', '.join(f'{t * 1e3:.0f}' for t in times)} ms)"
    )
    return rate


def storing_alone(root: Path, pulls: int, batch: int, distinct: bool) -> float:
    with blocksync.init(root / ("distinct" if distinct else "shared"), author="bench") as ws:
        with ws.transaction("blocks the notifications name") as tx:
            for i in range(batch if distinct else 1):
                tx.create("alice", f"b{i}", f"block {i}\n")
        times = []
        cursor: str | None = None
        for n in range(pulls):
            items = [
                Notification(f"item {n}-{i}", (BlockRef("", f"b{i if distinct else 0}", "alice"),))
                for i in range(batch)
            ]
            start = time.perf_counter()
            ws.notifications.record_pull(
                "bench", "v", PullCapture("bench", "data-stream.pull"), items, cursor, str(n + 1)
            )
            times.append(time.perf_counter() - start)
            cursor = str(n + 1)
        assert len(ws.notifications.list()) == pulls * batch
    which = "each naming its own block" if distinct else "all naming one block"
    return report(f"storing alone (record_pull), {which}", batch, times)


def end_to_end(root: Path, pulls: int, batch: int, blocks: bool) -> float:
    with feed_server() as server:
        table = feed_table(
            server,
            limits={"timeout": 120.0, "pull_batch": batch},
            config={"blocks": "true" if blocks else "false"},
        )
        store = make_store(root / ("with-blocks" if blocks else "no-blocks"), {"feed": table})
        with blocksync.open(store, author="bench") as ws:
            ws.blocks.create("alice", "shared", "a block every notification names\n")
            server.add(batch * (pulls + 1), refs=["shared"])
            stream = ws.streams.get("feed")
            stream.pull(limit=1)  # load, compile (cached) and instantiate the plugin first
            stream.pull(limit=batch - 1)  # back to whole batches
            times = []
            for _ in range(pulls):
                start = time.perf_counter()
                result = stream.pull(limit=batch)
                times.append(time.perf_counter() - start)
                assert result.returned == batch
            assert stream.status().delivered == batch * (pulls + 1)
    label = "end to end, a block created per item" if blocks else "end to end, no block writes"
    return report(f"feed plugin pull, {label}", batch, times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--tiny", action="store_true", help="a smoke run (tests/test_benchmarks.py): 1 pull of 3"
    )
    args = parser.parse_args()
    if args.tiny:  # 3: the warm-up pulls 1, then batch - 1
        args.pulls, args.batch = 1, 3
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        storing_alone(root, args.pulls, args.batch, distinct=True)
        storing_alone(root, args.pulls, args.batch, distinct=False)
        end_to_end(root, args.pulls, args.batch, blocks=False)
        end_to_end(root, max(1, args.pulls // 2), args.batch, blocks=True)


if __name__ == "__main__":
    main()
