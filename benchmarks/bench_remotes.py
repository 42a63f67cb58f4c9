"""Remotes: pull + merge of 1,000 changed blocks, and push of 1,000 new versions, against
`git fetch` / `git push` of the same repositories in the same run. Medians of a few rounds.

    .venv/bin/python benchmarks/bench_remotes.py [--rounds N] [--blocks N] [--tiny]
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


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def _round(root: Path, blocks: int) -> dict[str, float]:
    hub = root / "hub.git"
    _git("init", "-q", "--bare", "--initial-branch=main", str(hub))
    a = blocksync.init(root / "a", author="agent:a")
    b = blocksync.init(root / "b", author="agent:b")
    for ws in (a, b):
        ws.add_remote("hub", str(hub))
    with a.transaction("seed") as tx:
        for i in range(blocks):
            tx.create("alice", f"b{i}", f"line one\nline two {i}\nline three\n")
    a.push("hub")
    b.pull("hub")
    out: dict[str, float] = {}

    # push of 1,000 new versions: one commit per version on a, then one push
    for i in range(blocks):
        a.blocks.update("alice", f"b{i}", f"LINE ONE\nline two {i}\nline three\n")
    snapshot = root / "hub-before.git"
    shutil.copytree(hub, snapshot)
    t = time.perf_counter()
    a.push("hub")
    out[f"blocksync push ({blocks} versions)"] = time.perf_counter() - t
    # reference: git push of the same commits into the same starting hub
    head = a.blocks.head()
    assert head is not None
    t = time.perf_counter()
    _git(
        "--git-dir",
        str(root / "a" / "repo"),
        "push",
        "-q",
        str(snapshot),
        f"{head}:refs/heads/main",
    )
    out["git push (same commits)"] = time.perf_counter() - t

    # pull + merge of 1,000 changed blocks: b changed the third line of each meanwhile
    with b.transaction("local edits") as tx:
        for i in range(blocks):
            tx.update("alice", f"b{i}", f"line one\nline two {i}\nLINE THREE\n")
    ref_repo = root / "ref.git"
    shutil.copytree(root / "b" / "repo", ref_repo)
    t = time.perf_counter()
    result = b.pull("hub")
    out[f"blocksync pull + merge ({blocks} blocks)"] = time.perf_counter() - t
    assert result.action == "merged" and len(result.merged) == blocks and not result.conflicts
    t = time.perf_counter()
    _git("--git-dir", str(ref_repo), "fetch", "-q", str(hub), "main:refs/remotes/hub/main")
    out["git fetch (same objects, no merge)"] = time.perf_counter() - t
    assert b.blocks.read("alice", "b7").content == "LINE ONE\nline two 7\nLINE THREE\n"
    a.close()
    b.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 1 round of 10 blocks",
    )
    args = parser.parse_args()
    if args.tiny:  # 10: the round reads block b7 back
        args.rounds, args.blocks = 1, 10
    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            for name, seconds in _round(Path(tmp), args.blocks).items():
                runs.setdefault(name, []).append(seconds)
    print(f"remotes, {args.blocks} blocks, median of {args.rounds} rounds")
    for name, values in runs.items():
        print(f"  {name:40} {statistics.median(values) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
