"""Reconcile benchmark (issue 4). Prints medians; `git status --porcelain` is the reference.

    .venv/bin/python benchmarks/bench_reconcile.py [--files 10000] [--changed 100] [--runs 5]
                                                   [--no-plugin] [--tiny]

A folder of --files small text files and a store with a native file source bound to all of
them (the first reconcile, not timed). Then, per run: --changed files edited on disk and
--changed other blocks edited by the agent, and one reconcile of the whole source timed (every
run applies fresh edits, so every run has the same amount of work). Also timed: a reconcile
with nothing changed, and `git status --porcelain` on a git work tree of the same files with
--changed of them modified, in the same run (goal: native <= 0.5 s). The same runs through the
`files` WASM plugin (built here; goal <= 3x native), as the reconciler drives it. Also the floor the
changed run cannot go under while each file it writes is made durable on its own: --changed
atomic writes (temp file, fsync, rename, fsync of the folder) and nothing else.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blocksync
from blocksync.fs.disk import Folder
from blocksync.plugins.tooling import build as plugin_build
from blocksync.shared.wit import PermissionLevel, PermissionRule
from blocksync.sync.folder.config import FileSourceSpec
from blocksync.sync.folder.source import FileSource
from blocksync.sync.protocol import NoChange, Resolved
from tests.plugin_builds import built_plugin
from tests.stores import share_compile_cache

AGENT = "bench"
KEY = "files"


def text(i: int, round_: int = 0) -> str:
    return "".join(f"file {i} line {n} round {round_ if n == 3 else 0}\n" for n in range(8))


def rel(i: int) -> str:
    return f"d{i % 100:02d}/f{i:05d}.md"


def build(root: Path, files: int) -> None:
    for i in range(files):
        path = root / rel(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(i))


def git_work_tree(tree: Path, files: int, changed: int) -> list[str]:
    """A git work tree of ``files`` files as :func:`build` makes them, committed, then
    ``changed`` of them modified; the git command line that works in it."""
    tree.mkdir()
    build(tree, files)
    git = ["git", "-C", str(tree), "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "all"], check=True)
    for i in random.Random(1).sample(range(files), changed):
        (tree / rel(i)).write_text(text(i, 1))
    return git


def git_status_reference(base: Path, files: int, changed: int, runs: int) -> float:
    git = git_work_tree(base / "gitwork", files, changed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([*git, "status", "--porcelain"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        assert len(out.stdout.splitlines()) == changed, out.stdout[:200]
    return statistics.median(times)


def write_floor(base: Path, files: int, changed: int, runs: int) -> float:
    """The durable file writes alone: --changed atomic writes (temp file, fsync, rename, fsync
    of the folder), spread over the folders as reconcile's are: a floor for the changed run."""
    folder = base / "floor"
    folder.mkdir()
    build(folder, files)
    times = []
    for run in range(1, runs + 1):
        picked = random.Random(run).sample(range(files), changed)
        start = time.perf_counter()
        with Folder(folder) as disk:
            for i in picked:
                assert disk.write(rel(i), text(i, run).encode(), disk.digest(rel(i)))
            disk.sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


FILES_PLUGIN = ROOT / "fixtures" / "plugins" / "files"


def plugin_runs(base: Path, files: int, changed: int, runs: int, tiny: bool) -> tuple[float, float]:
    """The same workload through the `files` WASM plugin, as `blocksync reconcile` drives it
    (PluginSource: one reconcile call, its writes committed as one batch). Medians of the
    changed and the unchanged run; the plugin stays loaded between runs, as in a long-lived
    host (a cron run adds its cached load, ~25 ms: see bench_plugins.py). Tiny: the build and
    the compiled component of the test runs' caches, not ~25 s of fresh ones."""
    if tiny:
        wasm = built_plugin("files")
    else:
        wasm = base / "files.wasm"
        start = time.perf_counter()
        result = plugin_build.build(FILES_PLUGIN, wasm)
        print(
            f"setup: built the files plugin in {time.perf_counter() - start:.1f} s "
            f"({result.size / 1e6:.1f} MB)"
        )
    folder = base / "plugin-folder"
    folder.mkdir()
    build(folder, files)
    store = base / "plugin-store"
    blocksync.init(store).close()
    if tiny:
        share_compile_cache(store)
    (store / "blocksync.toml").write_text(
        f"[agents.{AGENT}.data_sources.{KEY}]\n"
        f'type = "wasm"\npath = "{wasm}"\ndir = "{folder}"\ndir_mode = "read-write"\n'
        f'config = {{ owner = "{AGENT}", tag = "{KEY}", permission = "read-write" }}\n'
        "limits = { timeout = 600.0 }\n",
        encoding="utf-8",
    )
    rng = random.Random(0)
    changed_times, unchanged_times = [], []
    with blocksync.open(store) as ws:
        source = ws.reconciler.source(KEY)
        start = time.perf_counter()
        first = source.reconcile_outcome()
        print(
            f"setup: first reconcile of {files} files through the plugin: "
            f"{time.perf_counter() - start:.2f} s (not timed below)"
        )
        assert len(first.results) == files and not first.skipped, first.skipped[:3]
        for run in range(1, runs + 1):
            picked = rng.sample(range(files), 2 * changed)
            for i in picked[:changed]:
                (folder / rel(i)).write_text(text(i, run))
            with ws.blocks.transaction("agent edits", "agent:bench") as tx:
                for i in picked[changed:]:
                    tx.update(AGENT, f"file:{KEY}:{rel(i)}", text(i, run))
            start = time.perf_counter()
            outcome = source.reconcile_outcome()
            changed_times.append(time.perf_counter() - start)
            resolved = sum(isinstance(r, Resolved) for r in outcome.results)
            assert resolved == 2 * changed and not outcome.skipped, (resolved, outcome.skipped[:3])
            start = time.perf_counter()
            outcome = source.reconcile_outcome()
            unchanged_times.append(time.perf_counter() - start)
            assert len(outcome.results) == files
            assert all(isinstance(r, NoChange) for r in outcome.results)
    return statistics.median(changed_times), statistics.median(unchanged_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-plugin", action="store_true", help="Skip the files plugin part.")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 10 files, 2 changed, 1 run",
    )
    args = parser.parse_args()
    if args.tiny:
        args.files, args.changed, args.runs = 10, 2, 1
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        base = Path(tmp)
        folder = base / "folder"
        folder.mkdir()
        build(folder, args.files)
        ws = blocksync.init(base / "store")
        spec = FileSourceSpec(
            KEY,
            AGENT,
            "bench",
            (folder,),
            permission_rules=(PermissionRule("**", PermissionLevel.READ_WRITE),),
        )
        start = time.perf_counter()
        with FileSource(spec, ws.blocks) as fs:
            first = fs.reconcile_outcome()
        setup = time.perf_counter() - start
        assert len(first.results) == args.files and not first.skipped
        print(f"setup: first reconcile of {args.files} files: {setup:.2f} s (not timed below)")

        changed_times, unchanged_times = [], []
        for run in range(1, args.runs + 1):
            picked = rng.sample(range(args.files), 2 * args.changed)
            on_disk, on_blocks = picked[: args.changed], picked[args.changed :]
            for i in on_disk:
                (folder / rel(i)).write_text(text(i, run))
            with (
                FileSource(spec, ws.blocks) as fs,
                ws.blocks.transaction("agent edits", "agent:bench") as tx,
            ):
                for i in on_blocks:
                    tx.update(AGENT, fs.target(rel(i)).label, text(i, run))
            with FileSource(spec, ws.blocks) as fs:  # a fresh source: no warm caches of its own
                start = time.perf_counter()
                outcome = fs.reconcile_outcome()
                changed_times.append(time.perf_counter() - start)
            resolved = sum(isinstance(r, Resolved) for r in outcome.results)
            assert resolved == 2 * args.changed and not outcome.skipped, (
                resolved,
                outcome.skipped[:3],
            )
            with FileSource(spec, ws.blocks) as fs:
                start = time.perf_counter()
                outcome = fs.reconcile_outcome()
                unchanged_times.append(time.perf_counter() - start)
            assert all(isinstance(r, NoChange) for r in outcome.results)
            assert len(outcome.results) == args.files
        ws.close()
        plugin = (
            None
            if args.no_plugin
            else plugin_runs(base, args.files, args.changed, args.runs, args.tiny)
        )
        reference = git_status_reference(base, args.files, args.changed, args.runs)
        floor = write_floor(base, args.files, args.changed, args.runs)
        changed, unchanged = statistics.median(changed_times), statistics.median(unchanged_times)
        print(
            f"reconcile, {args.changed} files + {args.changed} blocks changed of {args.files}: "
            f"median {changed:.3f} s over {args.runs} runs (goal <= 0.5 s) "
            f"= {changed / reference:.1f}x git status"
        )
        print(
            f"reconcile, nothing changed: median {unchanged:.3f} s "
            f"= {unchanged / reference:.1f}x git status"
        )
        if plugin is not None:
            p_changed, p_unchanged = plugin
            print(
                f"files plugin, the same changed run: median {p_changed:.3f} s "
                f"= {p_changed / changed:.1f}x native (goal <= 3x)"
            )
            print(
                f"files plugin, nothing changed: median {p_unchanged:.3f} s "
                f"= {p_unchanged / unchanged:.1f}x native"
            )
        print(
            f"reference: git status --porcelain, {args.changed} of {args.files} modified: "
            f"median {reference:.3f} s"
        )
        print(
            f"floor: {args.changed} durable atomic file writes alone (2 fsyncs each): median "
            f"{floor:.3f} s; the changed run less that: {changed - floor:.3f} s"
        )
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
