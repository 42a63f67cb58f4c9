"""Laws of reconcile through the whole stack (folder, blocks, bases, conflict index)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blocksync

from .conftest import examples

LINES = st.sampled_from(["", "\x00", "x\r", "<<<<<<< ours", "=======", "é ü", "same", "tail"])


def _store(tmp: Path) -> Path:
    notes = tmp / "notes"
    notes.mkdir()
    store = tmp / "store"
    blocksync.init(store).close()
    with (store / "blocksync.toml").open("a") as f:
        f.write(
            f'\n[agents.a.data_sources.n]\ntype = "file"\npaths = ["{notes}"]\n'
            'permission_rules = [{ pattern = "**", permission = "admin" }]\n'
        )
    return store


def _edit(lines: list[str], data: st.DataObject, tag: str) -> list[str]:
    out = list(lines)
    for k in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(out)))
        fresh = f"{data.draw(LINES)}~{tag}{k}"
        if out and i < len(out) and data.draw(st.booleans()):
            out[i] = fresh
        else:
            out.insert(i, fresh)
    return out


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINES, max_size=5), st.data(), st.booleans())
def test_nothing_is_ever_lost(base_lines: list[str], data: st.DataObject, newline: bool) -> None:
    """After reconcile either both sides hold one text containing both edits, or an open
    conflict holds both sides exactly; and a second reconcile changes nothing."""
    end = "\n" if newline else ""
    base_lines = [f"{line}~{i}" for i, line in enumerate(base_lines)]
    base = "\n".join(base_lines) + end
    disk = "\n".join(_edit(base_lines, data, "d")) + end
    agent = "\n".join(_edit(base_lines, data, "a")) + end
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp))
        file = Path(tmp) / "notes" / "f.md"
        file.write_bytes(base.encode())
        with blocksync.open(store, author="agent:a") as ws:
            ws.reconcile()
            (block,) = ws.blocks.list("a")
            file.write_bytes(disk.encode())
            if agent != base:
                ws.blocks.update("a", block.label, agent)
            report = ws.reconcile()
            on_disk = file.read_bytes().decode()
            in_block = ws.blocks.read("a", block.label).content
            if report.sources[0].needs_resolution:
                (conflict,) = ws.conflicts.list()
                assert (conflict.disk, conflict.agent, conflict.base) == (disk, agent, base)
                assert (on_disk, in_block) == (disk, agent)  # nothing written
            else:
                assert on_disk == in_block
                for side in (disk, agent):
                    for line in set(side.split("\n")) - set(base.split("\n")):
                        assert line in on_disk.split("\n")  # every added line survived
            head = ws.blocks.head()
            again = ws.reconcile()
            assert not again.sources[0].resolved and ws.blocks.head() == head
            assert file.read_bytes().decode() == on_disk
