"""The README cannot drift: its console sessions are run and compared, its commands checked."""

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


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _sessions() -> list[list[tuple[str, list[str]]]]:
    """Each ```console block as (command, expected output lines) pairs."""
    sessions = []
    for block in _blocks("console"):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        sessions.append(steps)
    return sessions


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; `...` in an expected line stands for any text."""
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        if not re.fullmatch(pattern, got):
            return False
    return True


@pytest.mark.parametrize("session", range(len(_sessions())))
def test_console_sessions_run_as_shown(session: int, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BLOCKSYNC_STORE", None)
    env["BLOCKSYNC_AUTHOR"] = "human:readme"
    for command, expected in _sessions()[session]:
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        actual = (done.stdout + done.stderr).splitlines()
        assert _matches(expected, actual), f"$ {command}\nexpected:\n{expected}\ngot:\n{actual}"


def test_python_examples_run(tmp_path: Path) -> None:
    subprocess.run([BIN / "blocksync", "init"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(
        [BIN / "blocksync", "block", "create", "alice", "persona", "--content", "x"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for code in _blocks("python"):
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_top_commands_are_the_two_commands() -> None:
    first, second = _blocks("sh")[:2]
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
        )
        assert done.returncode == 0, done.stderr
        assert "fsck: ok" in done.stdout
    assert (tmp_path / "store" / "repo").is_dir()
