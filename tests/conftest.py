"""Shared fixtures: real stores in temporary folders, checked by the real git CLI afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync

ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    """Run the real git CLI on a bare repository and return its standard output."""
    done = subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def assert_git_fsck(repo: Path) -> None:
    git(repo, "fsck", "--strict", "--no-progress")


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    """A fresh store folder; after the test, real `git fsck --strict` must find it clean."""
    path = tmp_path / "store"
    blocksync.init(path, author="test:setup").close()
    yield path
    assert_git_fsck(path / "repo")


@pytest.fixture
def ws(store_path: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store_path, author="test:author") as workspace:
        yield workspace
