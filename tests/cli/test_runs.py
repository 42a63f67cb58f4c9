"""`blocksync runs`, `runs show` and the provenance `block history` shows, from the command line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from .test_cli import run

MACHINE = "laptop-1"


@pytest.fixture
def notes(store_path: Path, tmp_path: Path) -> Path:
    """Source `notes` of agent alice (a folder with one file), on machine laptop-1."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("from disk\n")
    config = store_path / "blocksync.toml"
    text = config.read_text(encoding="utf-8").replace(
        "[store]\n", f'[store]\nmachine = "{MACHINE}"\n', 1
    )
    text += f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{folder}"]\n'
    config.write_text(text, encoding="utf-8")
    return folder


def runs_json(store: Path, *args: str) -> list[dict[str, object]]:
    done = run(store, "runs", "--json", *args)
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert isinstance(found, list)
    return found


def test_no_runs_yet(store_path: Path) -> None:
    done = run(store_path, "runs")
    assert (done.exit_code, done.output) == (0, "no runs recorded\n")
    assert runs_json(store_path) == []


def test_a_reconcile_and_a_sync_are_listed_newest_first(store_path: Path, notes: Path) -> None:
    assert run(store_path, "reconcile", "--dry-run").exit_code == 0  # writes no row
    assert run(store_path, "reconcile").exit_code == 0
    (notes / "b.md").write_text("more\n")
    assert run(store_path, "sync").exit_code == 0
    newest, oldest = runs_json(store_path)
    assert (newest["command"], oldest["command"]) == ("blocksync sync", "blocksync reconcile")
    for row in (newest, oldest):
        assert row["status"] == "finished" and row["exit_code"] == 0
        assert isinstance(row["seconds"], float) and isinstance(row["report"], dict)
    assert oldest["resolved"] == 1 and newest["resolved"] == 1
    lines = run(store_path, "runs").output.splitlines()
    assert [line.split("\t")[:4] for line in lines] == [
        [str(newest["id"]), "finished", "exit 0", "blocksync sync"],
        [str(oldest["id"]), "finished", "exit 0", "blocksync reconcile"],
    ]
    assert "1 source(s), 1 resolved, 0 need resolution, 0 failed" in lines[0]
    assert [r["id"] for r in runs_json(store_path, "--limit", "1")] == [newest["id"]]


def test_runs_show_tells_what_each_source_did(store_path: Path, notes: Path) -> None:
    assert run(store_path, "reconcile").exit_code == 0
    (row,) = runs_json(store_path)
    run_id = str(row["id"])
    shown = run(store_path, "runs", "show", run_id)
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert lines[0] == f"{run_id} (finished, exit 0)"
    assert "command: blocksync reconcile" in lines
    assert any(
        line.startswith("notes: 1 resolved, 0 need resolution, 0 unchanged") for line in lines
    )
    assert any(line.startswith("finished: ") and line.endswith(" s)") for line in lines)
    assert "  disk->agent  a.md" in lines
    assert lines[-1] == "open conflicts: 0"
    # a prefix names it too, "run-" left out or not
    for prefix in (run_id[:16], run_id[4:16]):
        doc = json.loads(run(store_path, "runs", "show", prefix, "--json").output)
        assert doc["id"] == run_id and doc["report"]["sources"][0]["source"] == "notes"


def test_a_failed_run_shows_its_error(store_path: Path, notes: Path) -> None:
    notes.rename(notes.with_name("gone"))  # the source's folder is missing: it fails
    assert run(store_path, "reconcile").exit_code == 1
    (row,) = runs_json(store_path)
    assert row["exit_code"] == 1 and row["failed_sources"] == 1
    shown = run(store_path, "runs", "show", str(row["id"])).output
    assert "notes: FAILED" in shown


def test_unknown_ambiguous_and_bad_arguments_are_clear_errors(
    store_path: Path, notes: Path
) -> None:
    for _ in range(2):
        assert run(store_path, "reconcile").exit_code == 0
    unknown = run(store_path, "runs", "show", "run-nope")
    assert unknown.exit_code == 4
    assert "no run 'run-nope': `blocksync runs` lists the recorded runs" in unknown.output
    assert run(store_path, "runs", "show", "run-").exit_code == 4  # no prefix at all
    ambiguous = run(store_path, "runs", "show", "run-2")  # both started this millennium
    assert ambiguous.exit_code == 2 and "is ambiguous: it matches run-" in ambiguous.output
    for limit in ("0", "-1", "many"):
        bad = run(store_path, "runs", "--limit", limit)
        assert bad.exit_code == 2 and "--limit" in bad.output
    assert "Traceback" not in unknown.output + ambiguous.output


def test_block_history_shows_who_where_and_which_run(store_path: Path, notes: Path) -> None:
    assert run(store_path, "reconcile").exit_code == 0
    (row,) = runs_json(store_path)
    listed = json.loads(run(store_path, "block", "list", "alice", "--json").output)
    label = listed[0]["label"]
    run(store_path, "block", "update", "alice", label, "--content", "by hand\n")
    history = json.loads(run(store_path, "block", "history", "alice", label, "--json").output)
    assert [(v["author"], v["made_by"], v["machine"], v["run_id"]) for v in history] == [
        ("source:notes", "source:notes", MACHINE, row["id"]),
        ("human:tester", "human:tester", MACHINE, None),
    ]
    first, second = run(store_path, "block", "history", "alice", label).output.splitlines()
    # the five fields as before (version, commit, time, author, message); provenance a sixth
    assert first.split("\t")[3:] == [
        "source:notes",
        "reconcile file source notes: 1 block(s) (a.md)",
        f"on {MACHINE} run {row['id']}",
    ]
    assert second.split("\t")[3:] == ["human:tester", f"update alice/{label}", f"on {MACHINE}"]


def test_history_names_the_maker_only_when_more_precise_than_the_author() -> None:
    from blocksync import Version
    from blocksync.cli import _made

    plain = Version("a", "b", 1, "c" * 40, "plugin:echo", "m", "t", False)
    assert _made(plain) == ""  # written before trailers: nothing shown
    made = dataclasses.replace(plain, made_by="plugin:echo@0123456789ab", machine="box\x1b")
    assert _made(made) == "by plugin:echo@0123456789ab on box\\x1b"  # shown, not obeyed
    assert _made(dataclasses.replace(made, made_by="plugin:echo", run_id="run-1")).startswith(
        "on box"
    )
