"""The README cannot drift: it is run top to bottom, as a reader would, and compared.

Fenced blocks run in document order in one folder: ``console`` sessions (``$ `` lines run,
the lines after them compared, ``...`` standing for any text), ``python`` blocks, and blocks
whose info string names a file (```` ```python file=greet/app.py ````), which are written there
(or appended to, with ``append=PATH``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, body) for every fenced block, in order."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(README)]


def _matches(expected: list[str], actual: list[str]) -> bool:
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        if not re.fullmatch(pattern, got):
            return False
    return True


def _run_console(body: str, cwd: Path, env: dict[str, str]) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    for command, expected in steps:
        done = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        actual = (done.stdout + done.stderr).splitlines()
        assert _matches(expected, actual), f"$ {command}\nexpected:\n{expected}\ngot:\n{actual}"


@pytest.mark.slow  # three componentize-py builds and three compiles: nothing to share
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BLOCKSYNC_STORE", None)
    env["BLOCKSYNC_AUTHOR"] = "human:readme"
    ran = 0
    for language, info, body in _blocks():
        if info.startswith(("file=", "append=")):
            kind, _, name = info.partition("=")
            target = tmp_path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a" if kind == "append" else "w", encoding="utf-8") as f:
                f.write(body)
        elif language == "console":
            _run_console(body, tmp_path, env)
            ran += 1
        elif language == "python":
            subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env, check=True)
            ran += 1
    assert ran >= 4


def test_top_commands_are_the_two_commands() -> None:
    sh = [body for language, _, body in _blocks() if language == "sh"]
    first, second = sh[:2]
    assert README.index(first) < README.index("blocksync is a versioned")
    assert first.strip().endswith("blocksync demo"), "the first command runs the main job"
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second.strip() in ci, ".ci/run must run the README's test command"


def test_main_job_runs_on_the_default_store(tmp_path: Path) -> None:
    """The first command's last step, as run from a fresh checkout (store folder ./store)."""
    for _ in range(2):  # and again: the demo is safe to repeat on the same store
        done = subprocess.run(
            [BIN / "blocksync", "demo"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "BLOCKSYNC_STORE"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "fsck: ok" in done.stdout
    assert (tmp_path / "store" / "repo").is_dir()
