"""Conflict-heavy reconcile benchmark (issue 11, item 16: records kept in git). Prints medians.

    .venv/bin/python benchmarks/bench_records.py [--files 2000] [--conflicts 500] [--runs 3]
                                                 [--tiny]

A folder of --files small text files bound to blocks by a native file source (the first
reconcile, not timed). Per run, timed:

1. detect: --conflicts files edited on disk and their blocks edited differently by the agent
   (both on line 1), then one reconcile of the source: every one of them recorded as a conflict;
2. again: the same reconcile with nothing changed (the conflicts are found as they are);
3. close: every conflicting file set to what its block holds, then one reconcile: each
   conflict closed as resolved (identical);
4. resolve one: ``conflicts.resolve`` of single conflicts, 20 of them, per call.

Then ``index rebuild`` of the store (which, with the records ref, restores every conflict).
Uses the public API only, so the same script measures an older checkout (PYTHONPATH=...).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import blocksync

AGENT = "bench"
KEY = "notes"


def text(i: int, first: str = "line 0") -> str:
    return first + "\n" + "".join(f"file {i} line {n}\n" for n in range(1, 8))


def rel(i: int) -> str:
    return f"d{i % 50:02d}/f{i:05d}.md"


def timed(label: str, times: list[float], per: int) -> None:
    median = statistics.median(times)
    print(
        f"{label}: median {median * 1e3:.1f} ms ({median / per * 1e6:.0f} us each of {per:,}; "
        f"runs: {', '.join(f'{t * 1e3:.0f}' for t in times)} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--conflicts", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 30 files, 21 conflicts, 1 run",
    )
    args = parser.parse_args()
    if args.tiny:  # more conflicts than the 20 resolved one by one: some are left to close
        args.files, args.conflicts, args.runs = 30, 21, 1
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        folder = base / "notes"
        for i in range(args.files):
            path = folder / rel(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(i))
        store = base / "store"
        blocksync.init(store, author="bench").close()
        with (store / "blocksync.toml").open("a") as f:
            f.write(
                f'\n[agents.{AGENT}.data_sources.{KEY}]\ntype = "file"\npaths = ["{folder}"]\n'
                'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
            )
        detect, again, close, resolve = [], [], [], []
        with blocksync.open(store, author="bench") as ws:
            ws.reconcile()
            labels = {b.label.rsplit(":", 1)[-1]: b.label for b in ws.blocks.list(AGENT)}
            for run in range(args.runs):
                picked = range(run * args.conflicts, (run + 1) * args.conflicts)
                picked = [i % args.files for i in picked]
                for i in picked:
                    (folder / rel(i)).write_text(text(i, f"disk {run}"))
                with ws.transaction("agent edits", "agent:bench") as tx:
                    for i in picked:
                        tx.update(AGENT, labels[rel(i)], text(i, f"agent {run}"))
                start = time.perf_counter()
                report = ws.reconcile()
                detect.append(time.perf_counter() - start)
                assert len(report.sources[0].needs_resolution) == len(picked), report.sources[0]
                start = time.perf_counter()
                ws.reconcile()
                again.append(time.perf_counter() - start)
                singles = ws.conflicts.list()[:20]
                start = time.perf_counter()
                for conflict in singles:
                    ws.conflicts.resolve(conflict.id, take="agent")
                resolve.append(time.perf_counter() - start)
                for i in picked:
                    (folder / rel(i)).write_text(text(i, f"agent {run}"))
                start = time.perf_counter()
                report = ws.reconcile()
                close.append(time.perf_counter() - start)
                assert not ws.conflicts.list(), report.sources[0].needs_resolution[:3]
        timed(
            f"detect: reconcile of {args.files:,} files recording conflicts", detect, args.conflicts
        )
        timed("again: the same reconcile, nothing changed", again, args.conflicts)
        timed("close: reconcile closing every conflict", close, args.conflicts - 20)
        timed("resolve: conflicts.resolve, one call each", resolve, 20)
        start = time.perf_counter()
        blocksync.rebuild_index(store)
        print(f"index rebuild: {(time.perf_counter() - start) * 1e3:.0f} ms")
        with blocksync.open(store) as ws:
            print(f"conflicts after the rebuild: {len(ws.conflicts.list('all')):,}")


if __name__ == "__main__":
    main()
