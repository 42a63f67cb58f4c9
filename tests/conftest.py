"""Shared fixtures: real stores in temporary folders, checked by the real git CLI afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import blocksync

from .plugin_builds import WarmUp
from .stores import share_compile_cache

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis profiles: "ci", the default, runs each property with the example count its test
# names and no deadline (on a shared 2-core machine a per-example deadline only measures the
# neighbours); HYPOTHESIS_PROFILE=thorough runs ten times as many examples of every property.
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(count: int) -> int:
    """The example count for a property whose test asks for ``count`` under the ci profile,
    scaled as the loaded profile scales hypothesis' default of 100 (explicit settings would
    otherwise override any profile)."""
    return max(1, count * settings.default.max_examples // 100)


#: a run collecting at least this many test files is (most of) the suite: worth warming the
#: plugin cache in the background for; a run of a few files builds only what they need
WARM_UP_FROM_FILES = 10
_warm_up = WarmUp()


def pytest_collection_finish(session: pytest.Session) -> None:
    if len({item.path for item in session.items}) >= WARM_UP_FROM_FILES:
        _warm_up.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _warm_up.stop()


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
    """A fresh store folder (its cache/ the suite's compile cache); after the test, real
    `git fsck --strict` must find it clean."""
    path = tmp_path / "store"
    blocksync.init(path, author="test:setup").close()
    share_compile_cache(path)
    yield path
    assert_git_fsck(path / "repo")


@pytest.fixture
def ws(store_path: Path) -> Iterator[blocksync.Workspace]:
    with blocksync.open(store_path, author="test:author") as workspace:
        yield workspace
