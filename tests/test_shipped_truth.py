"""The truth table shipped to Python guests: `blocksync plugin build` puts a copy of
blocksync/shared/truth.py on the guest path as `blocksync_truth`, so a plugin decides exactly as the
native file source does (one source file, never copied by hand).

The truth_tool fixture answers `decide()` from inside a real component; every case of the table
is compared with the host's own :func:`blocksync.shared.truth.decide`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.plugins.tooling.build import (
    SHIPPED_MODULES,
    TRUTH_MODULE,
    shipped_modules,
    truth_source,
)
from blocksync.shared import sigv4, truth
from blocksync.store.merge import merge3

from .plugin_builds import built_plugin
from .stores import make_store


def test_the_build_ships_truth_py_itself() -> None:
    with shipped_modules() as folder:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{module}.py" for module in SHIPPED_MODULES
        )
        assert (folder / f"{TRUTH_MODULE}.py").read_bytes() == truth_source().read_bytes()
        assert (folder / "blocksync_sigv4.py").read_bytes() == Path(sigv4.__file__).read_bytes()
    assert not folder.exists()  # temporary: nothing is left beside the sources
    assert truth_source() == Path(truth.__file__).resolve()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[blocksync.Workspace]:
    store = make_store(tmp_path / "store", {"truth": {"path": built_plugin("truth_tool")}})
    with blocksync.open(store, author="human:test") as workspace:
        yield workspace


def test_a_guest_decides_as_the_host(ws: blocksync.Workspace) -> None:
    tool = ws.plugins.tool("truth")
    assert json.loads(tool.execute(json.dumps({"module": True}), "{}")) == {
        "module": "blocksync_truth",
        "all": sorted(truth.__all__),
    }
    texts = [None, "a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n", "X\nb\nc\n"]
    checked = 0
    for base, disk, agent in itertools.product(texts, repeat=3):
        for permission in truth.PERMISSIONS:
            params = {"base": base, "disk": disk, "agent": agent, "permission": permission}
            got = json.loads(tool.execute(json.dumps(params), "{}"))
            want = truth.decide(base, disk, agent, permission, lambda b, d, a: merge3(b, d, a).text)
            assert got == {
                "action": want.action.value,
                "content": want.content,
                "reason": want.reason,
            }, params
            checked += 1
    assert checked == 5**3 * 3
