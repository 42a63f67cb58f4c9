"""Packing benchmark (issue 14, item 3): ``git log -- <block path>`` on a store as blocksync
leaves it, against the same on a ``git gc``-ed copy (the goal: at most 2x). Prints medians.

    .venv/bin/python benchmarks/bench_gc.py [--updates 20000] [--blocks 1000] [--runs 5] [--tiny]

One process writes --updates single-block updates (``ws.blocks.update``, round robin over
--blocks blocks of one owner) through the library API: blocksync packs as it goes (git's
``gc.auto`` limit, checked every few hundred loose objects) and when the workspace closes. Then,
timed: ``git log --format=%H -- <block path>`` of one block on that store, on a copy after
``git gc``, and on a copy after ``blocksync gc``; and the bytes of each repository's objects.
Needs the ``git`` CLI (the reference is git's own gc).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import blocksync

OWNER = "bench"


def write(store: Path, updates: int, blocks: int) -> float:
    start = time.perf_counter()
    with blocksync.init(store) as ws:
        for i in range(updates):
            label, content = f"b{i % blocks}", f"block {i % blocks}\nversion {i}\n"
            if i < blocks:
                ws.blocks.create(OWNER, label, content)
            else:
                ws.blocks.update(OWNER, label, content)
        path = ws.blocks.git_path(OWNER, "b7" if blocks > 7 else "b0")
    (store / "block-path").write_text(path)
    return time.perf_counter() - start


def log_times(repos: dict[str, Path], path: str, runs: int) -> dict[str, float]:
    """The median time of ``git log`` on each repository, the runs interleaved (a machine
    that gets busier mid-way slows every one alike)."""
    times: dict[str, list[float]] = {name: [] for name in repos}
    for _ in range(runs):
        for name, repo in repos.items():
            start = time.perf_counter()
            subprocess.run(
                ["git", "--git-dir", str(repo), "log", "--format=%H", "--", path],
                check=True,
                capture_output=True,
            )
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def objects_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "objects").rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--tiny", action="store_true", help="a smoke run: 300 updates of 20 blocks, 1 run"
    )
    args = parser.parse_args()
    if args.tiny:
        args.updates, args.blocks, args.runs = 300, 20, 1
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        store = Path(tmp) / "store"
        seconds = write(store, args.updates, args.blocks)
        path = (store / "block-path").read_text()
        print(f"wrote {args.updates:,} single updates in {seconds:.1f} s")
        git_gc = Path(tmp) / "git-gc"
        shutil.copytree(store / "repo", git_gc, symlinks=True)
        subprocess.run(["git", "--git-dir", str(git_gc), "gc", "-q"], check=True)
        ours = Path(tmp) / "store-gc"
        shutil.copytree(store, ours, symlinks=True)
        with blocksync.open(ours) as ws:
            ws.gc()
        repos = {
            "as blocksync left it": store / "repo",
            "after blocksync gc": ours / "repo",
            "after git gc (reference)": git_gc,
        }
        medians = log_times(repos, path, args.runs)
        reference = medians["after git gc (reference)"]
        print(f"git log --format=%H -- {path} ({args.runs} runs, medians):")
        for name, repo in repos.items():
            print(
                f"  {name}: {medians[name] * 1e3:.0f} ms, {medians[name] / reference:.2f}x the "
                f"reference; objects {objects_bytes(repo) / 2**20:.1f} MiB"
            )


if __name__ == "__main__":
    main()
