"""Start-up benchmark (issue 14): what a whole `blocksync` process costs before and around its
work, the way an agent calling the CLI pays it on every call. Prints medians, each as a ratio
against `sqlite-utils --version` measured in the same run (goal <= 1.5x for `block read` and
`--help`).

Both run as installed, with their bytecode compiled (a warm-up run writes it into a temporary
PYTHONPYCACHEPREFIX, also under PYTHONDONTWRITEBYTECODE): without it, every run would compile
blocksync's modules from source and time Python's compiler, not the start-up.

    .venv/bin/python benchmarks/bench_startup.py [--runs 15] [--tiny]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def as_installed(tmp: Path) -> dict[str, str]:
    """The environment of a process that runs as installed: bytecode kept (under ``tmp``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env.pop("BLOCKSYNC_STORE", None)
    return env


def against_reference(
    commands: dict[str, list[str]], runs: int, env: dict[str, str]
) -> tuple[float, dict[str, float]]:
    """The median seconds of ``sqlite-utils --version`` and of each command, in interleaved
    rounds (a machine that gets busier mid-run weighs on every command alike), after one
    warm-up run of each that writes its bytecode."""
    sqlite_utils = [str(BIN / "sqlite-utils"), "--version"]
    for argv in [sqlite_utils, *commands.values()]:
        seconds(argv, env)
    reference: list[float] = []
    ours: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        reference.append(seconds(sqlite_utils, env))
        for name, argv in commands.items():
            ours[name].append(seconds(argv, env))
    return statistics.median(reference), {n: statistics.median(t) for n, t in ours.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tiny", action="store_true", help="one run of each")
    args = parser.parse_args()
    runs = 1 if args.tiny else args.runs
    blocksync = str(BIN / "blocksync")
    with tempfile.TemporaryDirectory() as tmp:
        env = as_installed(Path(tmp))
        store = str(Path(tmp) / "store")
        seconds([blocksync, "init", store], env)
        create = ["block", "create", "agent", "notes", "--content", "hello"]
        seconds([blocksync, "--store", store, *create], env)
        commands = {
            "blocksync --version": [blocksync, "--version"],
            "blocksync --help": [blocksync, "--help"],
            "blocksync block read": [
                blocksync,
                "--store",
                store,
                "block",
                "read",
                "agent",
                "notes",
            ],
        }
        base, medians = against_reference(commands, runs, env)
    print(f"sqlite-utils --version (reference): median {base * 1000:.0f} ms over {runs} runs")
    for name, median in medians.items():
        print(f"{name}: median {median * 1000:.0f} ms = {median / base:.2f}x the reference")


if __name__ == "__main__":
    main()
