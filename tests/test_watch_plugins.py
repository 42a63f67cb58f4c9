"""A data-block plugin with no `dir` -- the `s3` reference plugin (a real component built with
componentize-py) on a real S3-compatible server (moto, 127.0.0.1, tests/s3server.py) -- is
polled by `blocksync watch`: reconciled whole every `--poll-plugins` seconds, and at once when
a block bound to it changes on main. The watch runs as a user runs it, in a subprocess."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.config import toml_table
from blocksync.watch import WATCH_COMMAND

from .plugin_builds import built_plugin
from .s3server import S3Server, plugin_config, s3_server
from .stores import make_store
from .test_sync import BLOCKSYNC, ENV
from .test_watch import PATIENCE, Watch, eventually

OWNER = "alice"
LABEL = "s3:docs:a.md"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(tmp_path: Path, s3: S3Server) -> tuple[Path, str]:
    """A store whose only source, `docs`, is the s3 plugin (no dir) on a fresh bucket."""
    name = s3.new_bucket()
    s3.put(name, "a.md", "one\n")
    table = {
        "path": built_plugin("s3"),
        "allowed_hosts": [s3.hostport],
        "config": plugin_config(s3, name, tag="docs", permission="admin"),
    }
    return make_store(tmp_path / "store", {"docs": table}), name


def block(store: Path) -> str | None:
    with blocksync.open(store) as ws:
        if not ws.blocks.exists(OWNER, LABEL):
            return None
        return ws.blocks.read(OWNER, LABEL).content


def watch_rows(store: Path) -> set[str]:
    with blocksync.open(store) as ws:
        return {r.id for r in ws.runs.list() if r.command == WATCH_COMMAND}


def test_a_plugin_without_a_folder_is_polled(bucket: tuple[Path, str], s3: S3Server) -> None:
    store, name = bucket
    with blocksync.open(store) as ws:  # synced before: the watch's first round is quiet, and
        assert not ws.reconcile().failed  # no commit of it can start a round of its own
    assert block(store) == "one\n"
    w = Watch(store, "--json", "--poll-plugins", "1")
    try:
        polling = w.wait_for("polling")
        assert polling["source"] == "docs" and "every 1 s" in polling["message"]
        assert set(polling) == {"format", "event", "message", "source"}  # the README's row
        assert w.events()[0]["message"] == "no folder"  # nothing is watched, docs is polled
        s3.put(name, "a.md", "two, written in the bucket\n")
        eventually(lambda: block(store) == "two, written in the bucket\n", "a poll's round")
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0 and "Traceback" not in err, err
    rounds = [e for e in w.events() if e["event"] == "round"]
    assert all(not r["errors"] for r in rounds)
    # the only round: a poll (no file event, no block change led to it)
    assert [r["changed"] for r in rounds] == [{"files": 0, "blocks": 0}]
    assert rounds[0]["sources"][0]["resolved"] == [{"path": "a.md", "resolution": "disk->agent"}]
    # polls that found nothing new (one a second meanwhile) are quiet: no line, no row
    assert watch_rows(store) == {r["run_id"] for r in rounds}


def test_a_block_edit_reaches_the_plugin_without_waiting_for_the_poll(
    bucket: tuple[Path, str], s3: S3Server
) -> None:
    store, name = bucket
    w = Watch(store, "--json", "--poll-plugins", "3600")  # no poll during the test
    try:
        w.wait_for("round")  # the first round: every source whole
        assert block(store) == "one\n"
        with blocksync.open(store, author="agent:alice") as ws:
            ws.blocks.update(OWNER, LABEL, "three, from the agent\n")
        eventually(lambda: s3.get(name, "a.md") == "three, from the agent\n", "the object")
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0, err
    rounds = [e for e in w.events() if e["event"] == "round"]
    assert rounds[-1]["changed"]["blocks"] >= 1  # a round the block's change led to
    assert rounds[-1]["sources"][0]["resolved"] == [{"path": "a.md", "resolution": "agent->disk"}]


@pytest.mark.parametrize("bad", ["0", "0.5", "-3", "soon", "nan", "inf"])
def test_a_bad_poll_interval_is_refused(bucket: tuple[Path, str], bad: str) -> None:
    store, _ = bucket
    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), "watch", "--poll-plugins", bad],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 2, done
    assert "--poll-plugins" in done.stderr and "Traceback" not in done.stderr


def test_a_plugin_source_added_to_the_configuration_is_polled(tmp_path: Path, s3: S3Server) -> None:
    """blocksync.toml edited while the watch runs: the s3 plugin's table appended (as a user
    adds a source) is polled from the next round; removing it again stops that."""
    notes = tmp_path / "notes"
    notes.mkdir()
    store = make_store(tmp_path / "store", {"notes": {"type": "file", "paths": [str(notes)]}})
    name = s3.new_bucket()
    s3.put(name, "a.md", "one\n")
    config = store / "blocksync.toml"
    before = config.read_text(encoding="utf-8")
    table = {
        "type": "wasm",
        "path": built_plugin("s3"),
        "allowed_hosts": [s3.hostport],
        "config": plugin_config(s3, name, tag="docs", permission="admin"),
    }
    w = Watch(store, "--json", "--poll-plugins", "1")
    try:
        config.write_text(
            before + "\n" + toml_table(("agents", OWNER, "data_sources", "docs"), table),
            encoding="utf-8",
        )
        added = w.wait_for("config-reloaded")
        assert added["added"] == ["docs"] and "1 polled" in added["message"]
        eventually(lambda: block(store) == "one\n", "the added plugin's first round")
        s3.put(name, "a.md", "two\n")
        eventually(lambda: block(store) == "two\n", "a poll of the added plugin")

        seen = len(w.events())
        config.write_text(before, encoding="utf-8")
        removed = w.wait_for("config-reloaded", since=seen)
        assert removed["removed"] == ["docs"] and "0 polled" in removed["message"]
        (notes / "n.md").write_text("note\n", encoding="utf-8")
        w.wait_for("round", since=seen)  # the file source still syncs
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0 and "Traceback" not in err, err
    assert all(not r["errors"] for r in w.events() if r["event"] == "round")
