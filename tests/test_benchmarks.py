"""Benchmarks are code too: every script in benchmarks/ runs here in its tiny mode (``--tiny``:
the same code paths at the smallest sizes, one run each), so that none rots unnoticed.

The scripts are found, not listed: a new one is covered by being there, and fails here until it
has a ``--tiny`` mode. Each runs as a user runs it (the venv's Python, a subprocess) from an
empty working directory; it must exit 0, print its figures (medians), and leave nothing in
benchmarks/. Plugins come from the test runs' build and compile caches (tests/plugin_builds.py),
so a warm run takes seconds per script; a cold one builds and compiles once (~25 s).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
#: generous: a cold componentize-py build (~10 s) and compile (~12 s) on a busy machine
TIMEOUT = 600


def _contents(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_the_benchmarks_are_found() -> None:
    assert len(SCRIPTS) >= 8, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_in_tiny_mode(script: Path, tmp_path: Path) -> None:
    assert "--tiny" in script.read_text(encoding="utf-8"), (
        f"{script.name} has no --tiny mode (the same code paths at the smallest sizes)"
    )
    before = _contents(BENCHMARKS)
    done = subprocess.run(
        [sys.executable, str(script), "--tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"{script.name} --tiny exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    figures = [
        line
        for line in done.stdout.splitlines()
        if "median" in line.lower() and any(c.isdigit() for c in line)
    ]
    assert figures, f"{script.name} --tiny printed no median:\n{done.stdout}"
    assert _contents(BENCHMARKS) == before, f"{script.name} left files in benchmarks/"
    assert list(tmp_path.iterdir()) == [], f"{script.name} left files in its working directory"
