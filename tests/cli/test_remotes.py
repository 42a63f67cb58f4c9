"""The CLI side of tests/test_remotes.py: the same behaviour through `blocksync` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import blocksync
from blocksync.cli import cli
from blocksync.index.runs import RunLog
from blocksync.runner import run_sync
from tests import test_remotes as base

# fixtures and helpers of the library tests, shared (assigned: a fixture is found by name)
_free_port = base._free_port
daemon = base.daemon
pair = base.pair


def test_remote_add_list_remove_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    ws = blocksync.init(tmp_path / "s")
    toml = tmp_path / "s" / "blocksync.toml"
    toml.write_text(toml.read_text() + "\n[limits]\n# a comment kept\n", encoding="utf-8")
    before = toml.read_bytes()
    ws.add_remote("origin", "https://bob:s3cret-token@example.com/x.git")
    ws.add_remote("backup", "/srv/backup.git")
    assert list(ws.remotes) == ["origin", "backup"]
    runner = CliRunner()
    listed = runner.invoke(cli, ["--store", str(tmp_path / "s"), "remote", "list", "--json"])
    assert listed.exit_code == 0 and "s3cret" not in listed.output
    assert json.loads(listed.output)[0]["url"] == "https://***@example.com/x.git"
    with pytest.raises(blocksync.AlreadyExists):
        ws.add_remote("origin", "/elsewhere")
    with pytest.raises(blocksync.UsageError):
        ws.add_remote("-bad name", "/x")
    ws.remove_remote("origin")
    ws.remove_remote("backup")
    assert toml.read_bytes() == before
    with pytest.raises(blocksync.NotFound):
        ws.remove_remote("origin")
    ws.close()


def test_cli_push_pull_and_conflict_exit_codes(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, _ = pair
    runner = CliRunner()
    a.blocks.create("alice", "notes", "base\n")
    done = runner.invoke(cli, ["--store", str(a.root), "push", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)[0]["action"] == "pushed"
    assert runner.invoke(cli, ["--store", str(b.root), "pull"]).exit_code == 0
    a.blocks.update("alice", "notes", "A\n")
    b.blocks.update("alice", "notes", "B\n")
    assert runner.invoke(cli, ["--store", str(a.root), "push", "hub"]).exit_code == 0
    done = runner.invoke(cli, ["--store", str(b.root), "pull", "hub"])
    assert done.exit_code == 3 and "CONFLICT alice/notes" in done.output
    done = runner.invoke(cli, ["--store", str(b.root), "conflicts", "list"])
    assert "remote:hub" in done.output


def test_unreachable_remote_fails_its_entry_only_and_hides_credentials(tmp_path: Path) -> None:
    ws = blocksync.init(tmp_path / "s", author="agent:a")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("hello\n")
    toml = tmp_path / "s" / "blocksync.toml"
    toml.write_text(
        toml.read_text()
        + f"""
[agents.alice.data_sources.notes]
type = "file"
paths = ["{notes}"]
permission_rules = [{{ pattern = "**", permission = "read-write" }}]
"""
    )
    ws.close()
    ws = blocksync.open(tmp_path / "s")
    port = _free_port()  # nothing listens there
    ws.add_remote("hub", f"http://bob:hunter2pass@127.0.0.1:{port}/hub.git")
    report = run_sync(ws)
    assert report.exit_code == 1
    by_source = {s.source: s for s in report.sources}
    assert by_source["notes"].error is None and by_source["notes"].resolved  # local run completed
    assert by_source["remote:hub"].error is not None
    text = json.dumps(report.to_json())
    assert "hunter2pass" not in text and "bob" not in by_source["remote:hub"].error
    with RunLog(ws.index_path) as log:
        assert "hunter2pass" not in json.dumps(vars(log.get(report.run_id)), default=str)
    done = CliRunner().invoke(cli, ["--store", str(ws.root), "sync", "--json"])
    assert done.exit_code == 1 and "hunter2pass" not in done.output
    done = CliRunner().invoke(cli, ["--store", str(ws.root), "pull"])
    assert (
        done.exit_code == 1 and "hunter2pass" not in done.output and "***@127.0.0.1" in done.output
    )
    with pytest.raises(blocksync.RemoteUnreachable):
        ws.pull("hub")
    ws.close()
