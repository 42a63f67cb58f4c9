"""Watch rounds in the run log: a round that changed something is a run of `blocksync watch`
(`blocksync runs`), its commits name it (`Blocksync-Run`, read with the real git CLI); a quiet
round -- the echo of the round before, an editor's temporary file -- leaves no row and no
records commit, so an idle watch does not grow the log."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blocksync
from blocksync.watch import WATCH_COMMAND, Event, Round, watch

from . import test_watch
from .test_sync import BLOCKSYNC, ENV
from .test_watch import PATIENCE, Watch, content, eventually, label_of

store = test_watch.store  # the fixture: a store with a folder source `notes`


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def run_trailers(repo: Path) -> list[tuple[str, str]]:
    """(commit, its Blocksync-Run trailer) of every commit of main, newest first."""
    out = git(repo, "log", "--format=%H %(trailers:key=Blocksync-Run,valueonly,separator=)", "main")
    return [tuple(line.split(" ", 1)) for line in out.splitlines()]  # type: ignore[misc]


def cli_json(store: Path, *args: str) -> Any:
    import json

    done = subprocess.run(
        [BLOCKSYNC, "--store", str(store), *args, "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PATIENCE,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_round_is_a_run_and_its_commits_name_it(store: Path) -> None:
    notes = store.parent / "notes"
    w = Watch(store, "--json")
    try:
        first = w.wait_for("round")
        label = eventually(lambda: label_of(store, "a.md"), "a block for a.md")
        seen = len(w.events())
        (notes / "a.md").write_text("edited\n", encoding="utf-8")
        edit = w.wait_for("round", since=seen)
        eventually(lambda: content(store, label) == "edited\n", "the edit in the block")
        head, trailer = run_trailers(store / "repo")[0]  # the edit's commit: main's newest
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0, err
    assert trailer == edit["run_id"]
    assert any(t == first["run_id"] for _, t in run_trailers(store / "repo"))

    rows = {r["id"]: r for r in cli_json(store, "runs")}
    row = rows[edit["run_id"]]
    assert (row["command"], row["status"], row["exit_code"]) == (WATCH_COMMAND, "finished", 0)
    assert (row["sources"], row["resolved"], row["failed_sources"]) == (1, 1, 0)
    assert row["started_at"] == edit["started_at"]
    assert row["report"]["sources"] == edit["sources"]
    reported = {e["run_id"] for e in w.events() if e["event"] == "round"}
    # every row of the watch is a reported round: the quiet ones (the echo of each round's
    # own commit) left none
    assert {i for i, r in rows.items() if r["command"] == WATCH_COMMAND} == reported

    shown = subprocess.run(
        [BLOCKSYNC, "--store", str(store), "runs", "show", edit["run_id"]],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=PATIENCE,
        check=True,
    ).stdout
    assert f"command: {WATCH_COMMAND}" in shown and "a.md" in shown
    assert head in git(store / "repo", "log", "--format=%H", "--grep", edit["run_id"], "main")


def test_quiet_rounds_leave_no_row_and_no_records_commit(store: Path) -> None:
    """From Python, with the calls of the real ``ws.reconcile`` counted (a spy that calls
    through, nothing replaced): the rounds that are not reported happen, and are not logged."""
    notes = store.parent / "notes"
    events: list[Event] = []
    calls: list[str] = []  # the run id of every ws.reconcile a round made
    stop = threading.Event()
    with blocksync.open(store) as ws:
        real: Callable[..., Any] = ws.reconcile

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs["run"].id)
            return real(*args, **kwargs)

        ws.reconcile = counted  # type: ignore[method-assign]
        thread = threading.Thread(target=watch, args=(ws, events.append), kwargs={"stop": stop})
        thread.start()
        try:
            eventually(lambda: any(isinstance(e, Round) for e in events), "the first round")
            records = git(store / "repo", "rev-list", "--count", "refs/blocksync/records")
            rows = len(ws.runs.list())
            before = len(calls)
            for name in (".a.md.swp", "4913"):  # what editors make and remove while saving
                (notes / name).write_bytes(b"editor state")
                (notes / name).unlink()
            eventually(lambda: len(calls) > before, "a round for the temporary files")
            (notes / "a.md").write_bytes(b"one\n")  # rewritten as it was: nothing to sync
            eventually(lambda: len(calls) > before + 1, "a round for the unchanged file")
            assert git(store / "repo", "rev-list", "--count", "refs/blocksync/records") == records
            assert len(ws.runs.list()) == rows
        finally:
            stop.set()
            thread.join(PATIENCE)
        assert not thread.is_alive()
        reported = {e.report.run_id for e in events if isinstance(e, Round)}
        logged = {r.id for r in ws.runs.list() if r.command == WATCH_COMMAND}
    assert logged == reported and len(reported) == 1
    assert set(calls) - reported  # quiet rounds ran, under run ids nobody logged
