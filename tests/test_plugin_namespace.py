"""Blocks an agent creates reach a plugin source (issue 15, item 1): each data-block source owns
a label namespace (the plugin's ``paging.label-namespace``, or the source table's
``label_namespace``), and the attached agents' unbound blocks under it are offered to the plugin
as candidate paths, so the next reconcile carries them to the source (``agent->disk``), as the
native folder source does. Every shipped data-block plugin: ``files`` (paged, mirroring its
folder), ``s3`` (unpaged: one ``reconcile([])``, then the candidates by name), and a seed-era
plugin without ``paging`` through the table's namespace. Real wasmtime, git, SQLite, S3 server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.errors import ConfigError
from blocksync.plugins.source import PluginSource

from .conftest import assert_git_fsck
from .plugin_builds import built_plugins
from .s3server import S3Server, plugin_config, s3_server
from .stores import base_of, make_store

OWNER = "alice"


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return built_plugins(["files", "s3", "seed_files"])


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def _source(ws: blocksync.Workspace, key: str) -> PluginSource:
    source = ws.reconciler.source(key)
    assert isinstance(source, PluginSource)
    return source


def _created_blocks_reach_the_source(ws: blocksync.Workspace, key: str, namespace: str) -> None:
    """Create blocks under ``namespace`` (and one outside it) and reconcile: both reach the
    source (the caller reads it), and a second run finds nothing more to do."""
    assert _source(ws, key).label_namespace() == namespace
    ws.blocks.create(OWNER, namespace + "fromagent.md", "from the agent\n")
    ws.blocks.create(OWNER, namespace + "deep/er.md", "deeper\n")
    ws.blocks.create(OWNER, "unrelated:" + "x.md", "not this source's\n")
    report = ws.reconcile().sources[0]
    assert report.error is None, report.error
    assert sorted(report.resolved) == [
        ("deep/er.md", "agent->disk"),
        ("fromagent.md", "agent->disk"),
    ]
    assert base_of(ws, key, "fromagent.md") == "from the agent\n"
    again = ws.reconcile().sources[0]  # in sync now: nothing more to do
    assert again.error is None and not again.resolved and not again.needs_resolution


def files_store(tmp_path: Path, wasm: Path, **config: str) -> tuple[Path, Path]:
    """A store whose source ``notes`` is the files plugin on a new folder: (store, folder)."""
    root = tmp_path / "notes"
    root.mkdir()
    table = {"path": wasm, "dir": root, "dir_mode": "read-write", "config": config}
    return make_store(tmp_path / "store", {"notes": table}), root


def test_agent_created_blocks_reach_the_files_plugins_folder(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    store, root = files_store(
        tmp_path, built["files"], owner=OWNER, tag="notes", permission="admin"
    )
    (root / "there.md").write_text("already\n", encoding="utf-8")
    with blocksync.open(store, author="human:test") as ws:
        assert ws.reconcile().sources[0].error is None  # there.md bound first
        _created_blocks_reach_the_source(ws, "notes", "file:notes:")
        assert (root / "fromagent.md").read_text(encoding="utf-8") == "from the agent\n"
        assert (root / "deep" / "er.md").read_text(encoding="utf-8") == "deeper\n"
        assert not (root / "x.md").exists()
    assert_git_fsck(store / "repo")


def test_agent_created_blocks_reach_the_s3_plugins_bucket(
    tmp_path: Path, built: dict[str, Path], s3: S3Server
) -> None:
    bucket = s3.new_bucket()
    store = make_store(
        tmp_path / "store",
        {
            "docs": {
                "path": built["s3"],
                "allowed_hosts": [s3.hostport],
                "config": plugin_config(s3, bucket, owner=OWNER, tag="docs", permission="admin"),
            }
        },
    )
    with blocksync.open(store, author="human:test") as ws:
        assert not _source(ws, "docs").bridge.paged()  # the unpaged way: candidates by name
        _created_blocks_reach_the_source(ws, "docs", "s3:docs:")
        assert s3.get(bucket, "fromagent.md") == "from the agent\n"
        assert s3.get(bucket, "deep/er.md") == "deeper\n"
    assert_git_fsck(store / "repo")


def test_a_plugin_without_paging_takes_its_namespace_from_the_sources_table(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    table = {"path": built["seed_files"], "dir": root, "dir_mode": "read-write"}
    config = {"owner": OWNER, "permission": "admin"}
    store = make_store(tmp_path / "store", {"notes": {**table, "config": config}})
    with blocksync.open(store, author="human:test") as ws:
        assert _source(ws, "notes").label_namespace() is None  # declares none: nothing offered
        ws.blocks.create(OWNER, "file:default:fromagent.md", "from the agent\n")
        assert not ws.reconcile().sources[0].resolved
    named = make_store(
        tmp_path / "named",
        {"notes": {**table, "config": config, "label_namespace": "file:default:"}},
    )
    with blocksync.open(named, author="human:test") as ws:
        ws.blocks.create(OWNER, "file:default:fromagent.md", "from the agent\n")
        report = ws.reconcile().sources[0]
        assert report.resolved == [("fromagent.md", "agent->disk")]
        assert (root / "fromagent.md").read_text(encoding="utf-8") == "from the agent\n"


def test_the_cli_carries_a_created_block_to_the_plugin_source(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    """The issue's steps: `block create` then `reconcile` writes the file."""
    store, root = files_store(tmp_path, built["files"], owner=OWNER, tag="notes")
    cli = [str(Path(sys.executable).with_name("blocksync")), "--store", str(store)]
    for args in (
        ["block", "create", OWNER, "file:notes:fromagent.md", "--content", "hi\n"],
        ["reconcile"],
    ):
        done = subprocess.run(cli + args, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    assert (root / "fromagent.md").read_text(encoding="utf-8") == "hi\n"
    assert "1 resolved" in done.stdout, done.stdout


def test_plugin_inspect_says_where_the_namespace_comes_from(built: dict[str, Path]) -> None:
    exe = str(Path(sys.executable).with_name("blocksync"))
    said = {}
    for name in ("files", "seed_files"):
        done = subprocess.run(
            [exe, "plugin", "inspect", str(built[name]), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        said[name] = json.loads(done.stdout)["label_namespace"]
    assert said["files"].startswith("declared by the plugin")
    assert "label_namespace" in said["seed_files"]


@pytest.mark.parametrize(
    ("namespace", "why"),
    [
        ("note\t", "contains control character"),
        ("blocksync:", "blocksync's own"),
        ("../", "would escape its folder"),
    ],
)
def test_a_label_namespace_no_label_can_start_with_is_refused_in_the_config(
    tmp_path: Path, built: dict[str, Path], namespace: str, why: str
) -> None:
    # refused before any run: a bad one made every seed plugin's run fail after the plugin's
    # own call (a label read under it is refused), discarding its block writes each time
    table = {"path": built["seed_files"], "label_namespace": namespace}
    store = make_store(tmp_path / "store", {"notes": table})
    with blocksync.open(store, author="human:test") as ws, pytest.raises(ConfigError) as info:
        ws.plugins.specs  # noqa: B018 - parsing is what is checked
    assert "[agents.alice.data_sources.notes].label_namespace" in str(info.value)
    assert why in str(info.value)


def test_a_namespace_the_plugin_declares_that_no_label_starts_is_refused_before_any_call(
    tmp_path: Path, built: dict[str, Path]
) -> None:
    # the files plugin's namespace is file:<tag>: -- a tag with a tab starts no valid label
    store, root = files_store(
        tmp_path, built["files"], owner=OWNER, tag="no\ttabs", permission="admin"
    )
    (root / "a.md").write_text("one\n", encoding="utf-8")
    with blocksync.open(store, author="human:test") as ws:
        report = ws.reconcile().sources[0]
        assert report.error is not None and "paging.label-namespace" in report.error
        assert "starts no valid label" in report.error
        assert ws.blocks.list(OWNER) == [] and report.resolved == []
    assert (root / "a.md").read_text(encoding="utf-8") == "one\n"
