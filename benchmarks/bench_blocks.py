"""Block store benchmarks (issue 2). Prints medians; `git log` on the same repository is the reference.

    .venv/bin/python benchmarks/bench_blocks.py [--commits 20000] [--blocks 1000] [--tiny]

1. single-block update latency, median over the last 1,000 updates of a repository growing to
   --commits commits (goal <= 2 ms);
2. 1,000 updates in one transaction, block writes per second (goal >= 3,000/s);
3. history of one block (10 versions) when the repository has 1,000 and --commits commits,
   against `git log --format=%H -- <path>` on the same repository (goal: flat, >= 20x faster).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blocksync

OWNERS = 10
TRACKED = ("owner-0", "tracked")


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def git_log(repo: Path, path: str) -> None:
    subprocess.run(
        ["git", "--git-dir", str(repo), "log", "--format=%H", "--", path],
        check=True,
        capture_output=True,
    )


def history_figures(ws: blocksync.Workspace, label: str) -> tuple[float, float]:
    ours = median_seconds(lambda: ws.blocks.history(*TRACKED), 200)
    path = ws.blocks.git_path(*TRACKED)
    theirs = median_seconds(lambda: git_log(ws.repo_path, path), 5)
    print(
        f"history of one block, {label}: blocksync {ours * 1e3:.3f} ms, "
        f"git log {theirs * 1e3:.1f} ms ({theirs / ours:.0f}x faster)"
    )
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=1_000)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 120 commits, 10 blocks",
    )
    args = parser.parse_args()
    if args.tiny:  # past commit 100, so the tracked block has a second version
        args.commits, args.blocks = 120, 10
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp, blocksync.init(Path(tmp) / "store") as ws:
        labels = [(f"owner-{i % OWNERS}", f"block-{i}") for i in range(args.blocks)]
        with ws.transaction("seed") as tx:
            for owner, label in [*labels, TRACKED]:
                tx.create(owner, label, f"{label}\nfirst version\n")
        commits = 1
        latencies: list[float] = []
        history_small = None

        def step() -> None:
            nonlocal commits
            # the tracked block gets 9 more versions, all among the first 1,000 commits
            if commits % 100 == 0 and commits < 1000:
                target = TRACKED
            else:
                target = rng.choice(labels)
            text = f"{target[1]}\nedit {commits}\n" + "a line of memory\n" * rng.randint(0, 20)
            start = time.perf_counter()
            ws.blocks.update(*target, text)
            latencies.append(time.perf_counter() - start)
            commits += 1

        while commits < min(1000, args.commits):
            step()
        history_small, small_at = history_figures(ws, f"at {commits} commits"), commits
        while commits < args.commits:
            step()
            if commits % 5000 == 0:
                print(f"  ... {commits} commits", flush=True)
        tail = latencies[-1000:]
        print(
            f"single-block update at {commits} commits: median {statistics.median(tail) * 1e3:.2f} ms "
            f"(p90 {sorted(tail)[int(len(tail) * 0.9)] * 1e3:.2f} ms, last {len(tail)} updates)"
        )
        history_large = history_figures(ws, f"at {commits} commits")
        print(
            f"history flatness: {history_large[0] / history_small[0]:.2f}x time for "
            f"{commits / small_at:.0f}x commits"
        )

        def big_transaction() -> None:
            with ws.transaction("bulk") as tx:
                for owner, label in labels[:1000]:
                    tx.update(owner, label, f"{label}\nbulk {rng.random()}\n")

        tx_time = median_seconds(big_transaction, 3)
        writes = min(1000, len(labels))
        print(
            f"{writes} updates in one transaction: median {tx_time * 1e3:.0f} ms "
            f"= {writes / tx_time:.0f} block writes/s"
        )


if __name__ == "__main__":
    main()
