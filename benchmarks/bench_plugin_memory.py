"""Resident memory per attached data-block plugin (issue 12 item 7). Prints medians.

    .venv/bin/python benchmarks/bench_plugin_memory.py [--tiny] [--runs N]

A fresh process opens a store with the first N of seven data-block sources attached (N = 0 .. 7),
calls one reconcile on each, and reports its peak RSS (VmHWM of /proc/self/status). Four of the
seven share a file with another source (hostile_block in mode ``ok`` three times, echo_block
and files twice each), so sharing the compiled code between sources of one file shows up in the
figures. Every figure is the median over several runs, a new process each time.

The same is measured for seven failing sources (hostile_block guests that trap, hit their
64 MiB memory cap or return too much; the issue's 1.1 GB ``sync`` had such plugins attached).

Printed for each: the peak with no plugin, the first plugin's cost (peak at N=1 minus N=0), the
median extra cost of each plugin beyond the first (the median of the steps N-1 -> N for
N = 2..7), and the peak with all seven, against the issue's goals: <= 60 MB per plugin beyond
the first and <= 400 MB for seven (MB = 10^6 bytes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugin_builds import built_plugins
from tests.stores import make_store

EXTRA_GOAL_MB = 60
SEVEN_GOAL_MB = 400
MB = 1_000_000

#: the child: open the store, one reconcile per source, print the peak RSS (KiB) and which
#: sources failed
CHILD = textwrap.dedent(
    """
    import json
    import sys

    import blocksync

    ws = blocksync.open(sys.argv[1], author="bench:memory")
    failed = []
    for key in sys.argv[2:]:
        failed += [s.source for s in ws.reconcile(sources=[key]).sources if s.error]
    ws.close()
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    print(json.dumps({"VmHWM": int(fields["VmHWM"].split()[0]), "failed": failed}))
    """
)


Source = tuple[str, dict[str, Any]]  # key, source table


def seven_sources(folder: Path) -> list[Source]:
    """The seven well-behaved sources in the order they are attached."""
    wasm = built_plugins(["hostile_block", "echo_block", "files"])

    def files(key: str) -> dict[str, Any]:
        notes = folder / key
        notes.mkdir()
        for name in ("a.md", "b.md"):
            (notes / name).write_text(f"{key} {name}\n", encoding="utf-8")
        return {
            "path": wasm["files"],
            "dir": notes,
            "dir_mode": "read-write",
            "config": {"owner": "alice", "tag": key, "permission": "read-write"},
        }

    def echo(key: str) -> dict[str, Any]:
        return {"path": wasm["echo_block"], "config": {"files": f"{key}-a=x;{key}-b=y"}}

    def ok() -> dict[str, Any]:
        return {"path": wasm["hostile_block"], "config": {"mode": "ok"}}

    return [
        ("ok1", ok()),
        ("echo1", echo("echo1")),
        ("files1", files("files1")),
        ("ok2", ok()),
        ("echo2", echo("echo2")),
        ("ok3", ok()),
        ("files2", files("files2")),
    ]


#: the failing seven: what the issue's 1.1 GB sync had attached (its guests trap, hit their
#: 64 MiB memory cap or return too much), one well-behaved source last
CHAOS_MODES = ("raise", "memory", "huge", "raise", "memory", "huge", "ok")


def chaos_sources() -> list[Source]:
    wasm = built_plugins(["hostile_block"])["hostile_block"]
    return [
        (f"{mode}{n}", {"path": wasm, "config": {"mode": mode}, "limits": {"memory_mb": 64}})
        for n, mode in enumerate(CHAOS_MODES, 1)
    ]


def peak_kib(store: Path, keys: list[str], failing: set[str]) -> int:
    """The peak RSS of a new process reconciling ``keys`` (each of ``failing`` must fail, and
    no other)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(store), *keys],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the measuring process exited {done.returncode}:\n{done.stderr}")
    result = json.loads(done.stdout.splitlines()[-1])
    if set(result["failed"]) != failing & set(keys):
        raise SystemExit(f"sources {result['failed']} failed, expected {sorted(failing)}")
    peak: int = result["VmHWM"]
    return peak


def mb(kib: float) -> float:
    return kib * 1024 / MB


def peaks(
    folder: Path, sources: list[Source], failing: set[str], most: int, runs: int
) -> dict[int, float]:
    """Median peak RSS (KiB) by number of sources attached (0 .. most), printed as a table."""
    keys = [key for key, _ in sources]
    found: dict[int, float] = {}
    print(f"{'N':>2} {'source added':14} {'file':14} {'peak MB':>9} {'step MB':>9}")
    for n in range(most + 1):
        store = make_store(folder / f"store{n}", dict(sources[:n]))
        found[n] = statistics.median(peak_kib(store, keys[:n], failing) for _ in range(runs))
        key, table = sources[n - 1] if n else ("(none)", {"path": ""})
        step = f"{mb(found[n] - found[n - 1]):9.1f}" if n else ""
        print(f"{n:>2} {key:14} {Path(table['path']).stem[:12]:14} {mb(found[n]):9.1f} {step}")
    return found


def verdict(figure: float, goal: float) -> str:
    return f"goal <= {goal} MB: {'met' if figure <= goal else 'NOT met'}"


def summary(found: dict[int, float], what: str) -> None:
    last = max(found)
    extra = statistics.median(mb(found[n] - found[n - 1]) for n in found if n >= 2)
    print(f"{what}: median peak RSS with no plugin {mb(found[0]):.1f} MB")
    print(f"{what}: median RSS of the first plugin {mb(found[1] - found[0]):.1f} MB")
    print(
        f"{what}: median extra RSS per plugin beyond the first {extra:.1f} MB "
        f"({verdict(extra, EXTRA_GOAL_MB)})"
    )
    if last == 7:
        print(
            f"{what}: median peak RSS with seven plugins {mb(found[7]):.1f} MB "
            f"({verdict(mb(found[7]), SEVEN_GOAL_MB)})"
        )
    else:
        print(
            f"{what}: median peak RSS with {last} plugins {mb(found[last]):.1f} MB "
            f"(the seven-plugin goal <= {SEVEN_GOAL_MB} MB is judged by a full run)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 0 to 2 plugins, 1 run",
    )
    parser.add_argument("--runs", type=int, default=5, help="processes per figure (default 5)")
    args = parser.parse_args()
    runs, most = (1, 2) if args.tiny else (args.runs, 7)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"peak RSS (VmHWM) of a process reconciling N data-block sources, "
            f"median of {runs} runs each"
        )
        print("\nwell-behaved sources (hostile_block mode ok, echo_block, files)")
        good = peaks(folder / "good", seven_sources(folder), set(), most, runs)
        print("\nfailing sources (hostile_block: trap, 64 MiB memory cap, result too large)")
        chaos = chaos_sources()
        failing = {key for key, table in chaos if table["config"]["mode"] != "ok"}
        bad = peaks(folder / "chaos", chaos, failing, most, runs)
    print()
    summary(good, "well-behaved")
    summary(bad, "failing")


if __name__ == "__main__":
    main()
