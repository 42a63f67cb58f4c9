"""Scale benchmarks (issue 14). Prints medians, as ratios against references measured in the same run.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,10000,100000] [--commits 20000]
        [--files 10000,100000] [--changed 100] [--only SECTION,...] [--no-plugin] [--tiny]

Sections (``--only`` runs some of them; each builds what it needs):

update    single-block ``ws.blocks.update`` median at each of --sizes blocks of one owner, the
          largest/smallest ratio (goal <= 2 ms each, ratio <= 1.5), and git bytes added per
          update at the largest size (new loose objects, as stored; goal <= 16 KiB)
list      ``ws.blocks.list`` of the largest size through the library and ``blocksync block
          list`` as a whole process (goal <= 100 ms)
history   ``ws.blocks.history`` of one block at the smallest and the largest size (goal: flat)
gitlog    ``git log --format=%H -- <block path>`` after --commits single updates, against the
          same on a ``git gc``-ed copy of the store (goal <= 2x)
folder    a native folder source of the first --files: nothing changed (run after run, as
          the reference runs), and --changed files + --changed blocks changed, against ``git
          status --porcelain`` on a git work tree of the same files, timed beside each run
          (goals <= 3x, <= 12x); the ``files`` plugin the same (goal <= 2x native, each
          against its git status); and, for the record, nothing changed right after a
          changed run (the files it just wrote are racy: re-hashed)
bigfolder the last --files through the folder source in a child process: first sync,
          nothing changed right after it and once more, peak RSS (goals <= 40 s, <= 1 s,
          <= 1 GB); the ``files`` plugin the same, with default limits (goal <= 2x native)
startup   whole-process ``blocksync block read`` and ``blocksync --help`` against
          ``sqlite-utils --version`` of the same venv (goal <= 1.5x)

The stores are set up through the library (one transaction of all the creates).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_blocks import median_seconds
from bench_reconcile import build as make_files
from bench_reconcile import git_work_tree, rel, text
from bench_startup import against_reference, as_installed

import blocksync
from blocksync.index.statcache import RACY_NS
from tests.plugin_builds import built_plugin
from tests.stores import share_compile_cache

OWNER = "agent"
TRACKED = "tracked"
SOURCE = "files"
BIN = Path(sys.executable).parent
SECTIONS = ("update", "list", "history", "gitlog", "folder", "bigfolder", "startup")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def run(*argv: str | Path, cwd: Path | None = None) -> bytes:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, cwd=cwd).stdout


# -- block stores ----------------------------------------------------------------------------


class Stores:
    """One store per size of blocks of one owner, made when first asked for."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: dict[int, Path] = {}

    def get(self, blocks: int) -> Path:
        if blocks not in self.made:
            path = self.base / f"store-{blocks}"
            start = time.perf_counter()
            with blocksync.init(path) as ws:
                fill(ws, blocks)
            print(f"setup: a store of {blocks:,} blocks in {time.perf_counter() - start:.1f} s")
            self.made[blocks] = path
        return self.made[blocks]


def fill(ws: blocksync.Workspace, blocks: int) -> None:
    with ws.transaction("seed") as tx:
        for i in range(blocks - 1):
            tx.create(OWNER, f"note-{i:06d}", f"note {i}\n", description=f"note {i % 7}")
        tx.create(OWNER, TRACKED, "tracked\n")
    for i in range(9):  # the tracked block has ten versions for history
        ws.blocks.update(OWNER, TRACKED, f"tracked {i}\n")


def loose_objects(repo: Path) -> dict[str, int]:
    """Every loose object of ``repo``: its path and size as stored."""
    found = {}
    for folder in os.scandir(repo / "objects"):
        if len(folder.name) == 2 and folder.is_dir():
            for entry in os.scandir(folder.path):
                found[entry.path] = entry.stat().st_size
    return found


def update_section(stores: Stores, sizes: list[int], updates: int) -> None:
    medians = {}
    for size in sizes:
        with blocksync.open(stores.get(size)) as ws:
            labels = [
                f"note-{i:06d}"
                for i in random.Random(size).sample(range(size - 1), min(20, size - 1))
            ]
            for i, label in enumerate(labels):  # warm: caches, the folders git writes into
                ws.blocks.update(OWNER, label, f"warm {i}\n")
            counter = iter(range(10**9))

            def one(
                ws: blocksync.Workspace = ws,
                labels: list[str] = labels,
                counter: Iterator[int] = counter,
            ) -> None:
                i = next(counter)
                ws.blocks.update(OWNER, labels[i % len(labels)], f"update {i}\n")

            medians[size] = median_seconds(one, updates)
            print(f"single update, {size:,} blocks of one owner: median {ms(medians[size])}")
            if size == sizes[-1]:
                bytes_added = []
                for _ in range(min(updates, 30)):
                    before = loose_objects(ws.repo_path)
                    one()
                    after = loose_objects(ws.repo_path)
                    if set(before) <= set(after):  # else a pack swallowed them: not a sample
                        bytes_added.append(sum(after[p] for p in set(after) - set(before)))
                added = statistics.median(bytes_added) if bytes_added else float("nan")
                print(
                    f"git bytes added per single update, {size:,} blocks: median "
                    f"{added / 1024:.1f} KiB (loose objects, compressed as stored)"
                )
    small, large = sizes[0], sizes[-1]
    print(
        f"single update, {large:,} / {small:,} blocks: median ratio "
        f"{medians[large] / medians[small]:.2f} (goal <= 1.5)"
    )


def list_section(stores: Stores, size: int, runs: int) -> None:
    path = stores.get(size)
    with blocksync.open(path) as ws:
        assert len(ws.blocks.list(OWNER)) == size
        library = median_seconds(lambda: ws.blocks.list(OWNER), runs)
    cli = median_seconds(
        lambda: run(BIN / "blocksync", "--store", path, "block", "list", OWNER), max(3, runs // 2)
    )
    print(f"block list of {size:,} blocks: library median {ms(library)} (goal <= 100 ms)")
    print(f"block list of {size:,} blocks: `blocksync block list` process median {ms(cli)}")


def history_section(stores: Stores, sizes: list[int], runs: int) -> None:
    medians = {}
    for size in (sizes[0], sizes[-1]):
        with blocksync.open(stores.get(size)) as ws:
            assert len(ws.blocks.history(OWNER, TRACKED)) >= 10
            medians[size] = median_seconds(lambda: ws.blocks.history(OWNER, TRACKED), runs)
        print(f"history of one block (10 versions), {size:,} blocks: median {ms(medians[size])}")
    print(
        f"history, {sizes[-1]:,} / {sizes[0]:,} blocks: median ratio "
        f"{medians[sizes[-1]] / medians[sizes[0]]:.2f} (goal: flat)"
    )


def gitlog_section(base: Path, commits: int, runs: int) -> None:
    path = base / "store-gitlog"
    start = time.perf_counter()
    with blocksync.init(path) as ws:
        fill(ws, 1000)
        labels = [f"note-{i:06d}" for i in range(999)]
        for i in range(commits):
            label = TRACKED if i % 100 == 0 else labels[i % len(labels)]
            ws.blocks.update(OWNER, label, f"commit {i}\n")
        block_path = ws.blocks.git_path(OWNER, TRACKED)
    print(f"setup: {commits:,} single updates in {time.perf_counter() - start:.1f} s")
    packed = base / "gitlog-gc"
    shutil.copytree(path / "repo", packed, symlinks=True)
    run("git", "--git-dir", packed, "gc", "-q")

    def log(repo: Path) -> Callable[[], object]:
        return lambda: run("git", "--git-dir", repo, "log", "--format=%H", "--", block_path)

    ours, gced = median_seconds(log(path / "repo"), runs), median_seconds(log(packed), runs)
    print(
        f"git log -- <block path> after {commits:,} single updates: median {ms(ours)}; "
        f"on a git gc-ed copy {ms(gced)}: ratio {ours / gced:.2f} (goal <= 2)"
    )


# -- folder sources --------------------------------------------------------------------------


def source_store(path: Path, folder: Path, wasm: Path | None, limits: str = "") -> Path:
    """A store with one source over ``folder``: the native folder source, or the ``files``
    plugin (``wasm``)."""
    blocksync.init(path).close()
    if wasm is None:
        table = (
            f'type = "file"\npaths = ["{folder}"]\n'
            'permission_rules = [{ pattern = "**", permission = "read-write" }]\n'
        )
    else:
        share_compile_cache(path)
        table = (
            f'type = "wasm"\npath = "{wasm}"\ndir = "{folder}"\ndir_mode = "read-write"\n'
            f'config = {{ owner = "{OWNER}", tag = "{SOURCE}", permission = "read-write" }}\n'
            f"{limits}"
        )
    with (path / "blocksync.toml").open("a", encoding="utf-8") as config:
        config.write(f"\n[agents.{OWNER}.data_sources.{SOURCE}]\n{table}")
    return path


def reconcile(ws: blocksync.Workspace) -> tuple[int, int]:
    """One reconcile of the source: (paths resolved, paths unchanged); fails on an error."""
    (report,) = ws.reconcile([SOURCE]).sources
    if report.error is not None:
        raise RuntimeError(f"reconcile failed: {report.error}")
    return len(report.resolved), report.unchanged


class GitStatus:
    """The reference: ``git status --porcelain`` on two git work trees of the same files, one
    as committed and one with ``changed`` of them modified, timed once per call: each run of
    ours is measured beside a run of its reference. (Taken once at the start of the section,
    the reference was compared with runs minutes later, when a shared machine's load had
    drifted: its medians of the same command moved from 11.6 to 17 ms between sections.)"""

    def __init__(self, base: Path, files: int, changed: int) -> None:
        self.gits = (
            git_work_tree(base / "gitwork-clean", files, 0),
            git_work_tree(base / "gitwork-changed", files, changed),
        )
        for git in self.gits:  # its index refreshed once, as ours is by the runs before
            run(*git, "status", "--porcelain")

    def time(self, changed: bool) -> float:
        """Seconds of one ``git status --porcelain`` of the clean or the changed tree."""
        start = time.perf_counter()
        run(*self.gits[changed], "status", "--porcelain")
        return time.perf_counter() - start


class Timed:
    """Run times of ours and of the reference timed beside each; their medians' ratio."""

    def __init__(self) -> None:
        self.ours: list[float] = []
        self.reference: list[float] = []

    def add(self, seconds: float, reference: float) -> None:
        self.ours.append(seconds)
        self.reference.append(reference)

    @property
    def median(self) -> float:
        return statistics.median(self.ours)

    @property
    def ratio(self) -> float:
        return self.median / statistics.median(self.reference)


def folder_runs(
    base: Path,
    name: str,
    files: int,
    changed: int,
    runs: int,
    wasm: Path | None,
    reference: GitStatus,
) -> tuple[Timed, Timed, Timed]:
    """Reconciles of the source, each timed beside a ``git status`` of the same state: nothing
    changed, run after run (as the reference runs: its index, like our stat cache, past the
    racy window); a ``changed`` run (``changed`` files edited on disk and ``changed`` other
    blocks by the agent before each); and nothing changed right after a changed run, whose
    files just written or read are still racy, so re-hashed (git re-hashes its racily clean
    entries alike), for the record."""
    folder = base / f"{name}-folder"
    make_files(folder, files)
    limits = "limits = { timeout = 600.0 }\n"  # the ratio, not the first sync, is measured
    store = source_store(base / f"{name}-store", folder, wasm, limits)
    rng = random.Random(0)
    unchanged, changed_runs, after = Timed(), Timed(), Timed()
    with blocksync.open(store) as ws:
        start = time.perf_counter()
        assert reconcile(ws)[0] == files
        print(f"setup: {name}, first sync of {files:,} files: {time.perf_counter() - start:.1f} s")
        labels = {b.meta.description: b.label for b in ws.blocks.list(OWNER)}
        time.sleep(RACY_NS / 1e9 + 0.1)  # every file past the racy window of the next run
        assert reconcile(ws) == (0, files)  # stamps the rows of the files the sync found racy
        for _ in range(runs):
            start = time.perf_counter()
            assert reconcile(ws) == (0, files)
            unchanged.add(time.perf_counter() - start, reference.time(changed=False))
        for round_ in range(1, runs + 1):
            picked = rng.sample(range(files), 2 * changed)
            for i in picked[:changed]:
                (folder / rel(i)).write_text(text(i, round_))
            with ws.transaction("agent edits", "agent:bench") as tx:
                for i in picked[changed:]:
                    label = labels.get(rel(i)) or label_of(ws, rel(i))
                    tx.update(OWNER, label, text(i, round_))
            start = time.perf_counter()
            assert reconcile(ws)[0] == 2 * changed
            changed_runs.add(time.perf_counter() - start, reference.time(changed=True))
            start = time.perf_counter()
            assert reconcile(ws) == (0, files)
            after.add(time.perf_counter() - start, reference.time(changed=False))
    return unchanged, changed_runs, after


def label_of(ws: blocksync.Workspace, path: str) -> str:
    (label,) = [b.label for b in ws.blocks.list(OWNER) if b.label.endswith(":" + path)]
    return label


def folder_section(base: Path, files: int, changed: int, runs: int, plugin: bool) -> None:
    reference = GitStatus(base, files, changed)
    native = folder_runs(base, "native", files, changed, runs, None, reference)
    clean, dirty = (statistics.median(t.reference) for t in native[:2])
    print(
        f"reference: git status --porcelain of {files:,} files, timed beside each run: median "
        f"{ms(clean)} nothing changed, {ms(dirty)} with {changed} modified"
    )
    print(
        f"folder source, {files:,} files, nothing changed: median {ms(native[0].median)} = "
        f"{native[0].ratio:.1f}x git status (goal <= 3x)"
    )
    print(
        f"folder source, {files:,} files, {changed} files + {changed} blocks changed: median "
        f"{ms(native[1].median)} = {native[1].ratio:.1f}x git status (goal <= 12x)"
    )
    print(
        f"folder source, {files:,} files, nothing changed right after that (its racy files "
        f"re-hashed): median {ms(native[2].median)} = {native[2].ratio:.1f}x git status"
    )
    if not plugin:
        return
    wasm = built_plugin("files")
    ours = folder_runs(base, "plugin", files, changed, runs, wasm, reference)
    for what, figure, against in zip(
        ("nothing changed", f"{changed} files + {changed} blocks changed"),
        ours[:2],
        native[:2],
        strict=True,
    ):
        # each against the git status timed beside it, so the machine's drift between the
        # native and the plugin runs cancels out
        print(
            f"files plugin, {files:,} files, {what}: median {ms(figure.median)} = "
            f"{figure.ratio / against.ratio:.1f}x native (goal <= 2x; {figure.ratio:.1f}x git "
            f"status beside it, native {against.ratio:.1f}x)"
        )


#: the child of the big folder runs: first sync and two nothing-changed runs, timed (the first
#: of those knows only what the first sync read, the second what a nothing-changed run keeps)
CHILD = """
import json, resource, sys, time
import blocksync

def peak():
    # VmHWM: this address space's own peak. ru_maxrss is not: Linux carries into it the RSS
    # of the parent's copy the child was forked from (a benchmark holding a big store)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with blocksync.open(sys.argv[1]) as ws:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        (report,) = ws.reconcile([sys.argv[2]]).sources
        times.append(time.perf_counter() - start)
        if report.error is not None:
            print(json.dumps({"error": str(report.error), "seconds": times, "peak": peak()}))
            sys.exit(0)
    print(json.dumps({"seconds": times, "resolved": len(report.resolved), "peak": peak()}))
"""


def child_run(store: Path) -> tuple[dict[str, Any], int]:
    """The child's report and its peak RSS (bytes): its own, read by itself at the end."""
    out = run(sys.executable, "-c", CHILD, store, SOURCE)
    report: dict[str, Any] = json.loads(out)
    return report, int(report["peak"])


def bigfolder_section(base: Path, files: int, plugin: bool) -> None:
    folder = base / "big-folder"
    start = time.perf_counter()
    make_files(folder, files)
    print(f"setup: {files:,} files written in {time.perf_counter() - start:.1f} s")
    report, rss = child_run(source_store(base / "big-native", folder, None))
    first, again, steady = report["seconds"]
    print(
        f"folder source, {files:,} files: first sync {first:.1f} s (goal <= 40 s), nothing "
        f"changed {again:.2f} s then {steady:.2f} s (goal <= 1 s), peak RSS "
        f"{rss / 2**20:.0f} MB (goal <= 1 GB)"
    )
    if not plugin:
        return
    report, rss = child_run(source_store(base / "big-plugin", folder, built_plugin("files")))
    seconds = report["seconds"]
    if "error" in report:
        print(
            f"files plugin, {files:,} files, default limits: first sync FAILED after "
            f"{seconds[-1]:.1f} s: {report['error']}"
        )
        return
    first_p, again_p, steady_p = seconds
    print(
        f"files plugin, {files:,} files, default limits: first sync {first_p:.1f} s = "
        f"{first_p / first:.1f}x native, nothing changed {again_p:.2f} s = "
        f"{again_p / again:.1f}x native then {steady_p:.2f} s = {steady_p / steady:.1f}x "
        f"native (goal <= 2x), peak RSS {rss / 2**20:.0f} MB"
    )


# -- start-up --------------------------------------------------------------------------------


def startup_section(stores: Stores, size: int, runs: int) -> None:
    """As bench_startup.py measures it (bytecode kept, interleaved rounds), on this store."""
    store = str(stores.get(size))
    blocksync = str(BIN / "blocksync")
    commands = {
        "blocksync block read": [blocksync, "--store", store, "block", "read", OWNER, TRACKED],
        "blocksync --help": [blocksync, "--help"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        reference, medians = against_reference(commands, runs, as_installed(Path(tmp)))
    print(f"reference: sqlite-utils --version process median {ms(reference)}")
    for name, median in medians.items():
        print(
            f"{name} process: median {ms(median)} = {median / reference:.2f}x "
            "sqlite-utils --version (goal <= 1.5x)"
        )


def numbers(text: str) -> list[int]:
    return [int(n.replace("_", "")) for n in text.split(",") if n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=numbers, default=[1_000, 10_000, 100_000])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--files", type=numbers, default=[10_000, 100_000])
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--updates", type=int, default=200, help="timed updates per size")
    parser.add_argument("--runs", type=int, default=5, help="runs per median (processes, syncs)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=list(SECTIONS))
    parser.add_argument("--no-plugin", action="store_true", help="skip the files plugin runs")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): every section at the smallest sizes",
    )
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.commits, args.files = [20, 60], 30, [12, 30]
        args.changed, args.updates, args.runs = 2, 3, 1
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = Path(tmp)
        stores = Stores(base)
        plugin = not args.no_plugin
        sections: dict[str, Callable[[], None]] = {
            "update": lambda: update_section(stores, args.sizes, args.updates),
            "list": lambda: list_section(stores, args.sizes[-1], max(args.runs, 3)),
            "history": lambda: history_section(stores, args.sizes, 40 * args.runs),
            "gitlog": lambda: gitlog_section(base, args.commits, args.runs),
            "folder": lambda: folder_section(base, args.files[0], args.changed, args.runs, plugin),
            "bigfolder": lambda: bigfolder_section(base, args.files[-1], plugin),
            "startup": lambda: startup_section(stores, args.sizes[0], 2 * args.runs + 1),
        }
        for name in SECTIONS:
            if name in args.only:
                print(f"== {name}", flush=True)
                sections[name]()
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
