"""`blocksync watch` follows edits of blocksync.toml: a real store, the installed `blocksync
watch --json` in a subprocess, the configuration file rewritten by this process as a user's
editor would. A valid configuration takes effect for the next round (sources added, removed,
re-pointed); an invalid one is said once, naming what and where, and the old one runs on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync

from .test_watch import Watch, content, eventually, label_of

CONFIG = "blocksync.toml"


def source_table(key: str, *folders: Path) -> str:
    paths = ", ".join(f'"{f}"' for f in folders)
    return f'\n[agents.alice.data_sources.{key}]\ntype = "file"\npaths = [{paths}]\n'


def write_config(store: Path, text: str) -> None:
    """Rewrite the file as an editor saving it does: a new file renamed over the old one."""
    new = store / (CONFIG + ".new")
    new.write_text(text, encoding="utf-8")
    new.replace(store / CONFIG)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    blocksync.init(root, author="test:setup").close()
    for name in ("notes", "more", "elsewhere"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes" / "a.md").write_text("one\n", encoding="utf-8")
    write_config(root, source_table("notes", tmp_path / "notes"))
    return root


@pytest.fixture
def watching(store: Path) -> Iterator[Watch]:
    w = Watch(store, "--json")
    try:
        w.wait_for("round")
        yield w
    finally:
        w.close()


def config_events(w: Watch) -> list[dict[str, object]]:
    return [e for e in w.events() if str(e["event"]).startswith("config-")]


def test_a_source_added_removed_and_moved_takes_effect(store: Path, watching: Watch) -> None:
    tmp = store.parent
    (tmp / "more" / "b.md").write_text("bee\n", encoding="utf-8")
    base = source_table("notes", tmp / "notes")

    # added: its folder is watched and reconciled whole from the next round
    write_config(store, base + source_table("more", tmp / "more"))
    added = watching.wait_for("config-reloaded")
    assert (added["added"], added["removed"], added["changed"]) == (["more"], [], [])
    assert added["file"] == str(store / CONFIG)
    assert "2 source(s) watched" in str(added["message"])
    label_b = eventually(lambda: label_of(store, "b.md"), "a block for the added source's file")
    (tmp / "more" / "b.md").write_text("bee, edited\n", encoding="utf-8")
    eventually(lambda: content(store, label_b) == "bee, edited\n", "an edit in the new folder")

    # removed: its folder is no longer reconciled; the other source still is
    seen = len(watching.events())
    write_config(store, source_table("more", tmp / "more"))
    removed = watching.wait_for("config-reloaded", since=seen)
    assert (removed["added"], removed["removed"], removed["changed"]) == ([], ["notes"], [])
    label_a = eventually(lambda: label_of(store, "a.md"), "a.md's block")
    (tmp / "notes" / "a.md").write_text("not synced any more\n", encoding="utf-8")
    (tmp / "more" / "b.md").write_text("bee, after\n", encoding="utf-8")
    eventually(lambda: content(store, label_b) == "bee, after\n", "the kept source's edit")
    assert content(store, label_a) == "one\n"  # edited first, in a folder no longer watched

    # changed: `more` now reads another folder, watched instead of the old one
    seen = len(watching.events())
    (tmp / "elsewhere" / "c.md").write_text("sea\n", encoding="utf-8")
    write_config(store, source_table("more", tmp / "elsewhere"))
    moved = watching.wait_for("config-reloaded", since=seen)
    assert (moved["added"], moved["removed"], moved["changed"]) == ([], [], ["more"])
    label_c = eventually(lambda: label_of(store, "c.md"), "a block for the new folder's file")
    (tmp / "elsewhere" / "c.md").write_text("sea, edited\n", encoding="utf-8")
    eventually(lambda: content(store, label_c) == "sea, edited\n", "an edit in the new folder")

    code, err = watching.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert [e["event"] for e in config_events(watching)] == ["config-reloaded"] * 3
    rounds = [e for e in watching.events() if e["event"] == "round"]
    assert all(not r["errors"] for r in rounds)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("[agents.alice.data_sources.half\ntype = 'file'\n", ["is not valid TOML", "(at line 5"]),
        (
            '[agents.alice.data_sources.odd]\ntype = "ftp"\n',
            ["[agents.alice.data_sources.odd]", "'ftp' is not supported"],
        ),
        ("MISSING", ["[agents.alice.data_sources.more].paths", "does not exist"]),
        ("[nonsense]\nx = 1\n", ["unknown top-level key(s) nonsense"]),
    ],
    ids=["bad-toml", "unknown-type", "missing-folder", "unknown-table"],
)
def test_an_invalid_configuration_is_said_once_and_the_old_one_runs_on(
    store: Path, watching: Watch, bad: str, says: list[str]
) -> None:
    tmp = store.parent
    before = (store / CONFIG).read_text(encoding="utf-8")
    if bad == "MISSING":
        bad = before + source_table("more", tmp / "no-such-folder")
    else:
        bad = before + bad
    write_config(store, bad)
    said = watching.wait_for("config-invalid")
    assert said["file"] == str(store / CONFIG)
    for part in says:
        assert part in str(said["error"]), said
    assert "the configuration from before runs on" in str(said["message"])

    # the old configuration still syncs (read from the watch's lines: the library, like a
    # restart, refuses to open the store while its configuration is invalid)
    seen = len(watching.events())
    (tmp / "notes" / "a.md").write_text("still watched\n", encoding="utf-8")
    done = watching.wait_for("round", since=seen)
    assert done["sources"][0]["resolved"] == [{"path": "a.md", "resolution": "disk->agent"}]

    # fixed: used from the next round
    (tmp / "more" / "d.md").write_text("dee\n", encoding="utf-8")
    write_config(store, before + source_table("more", tmp / "more"))
    watching.wait_for("config-reloaded")
    eventually(lambda: label_of(store, "d.md"), "the fixed configuration's new source")
    label = eventually(lambda: label_of(store, "a.md"), "a.md's block")
    assert content(store, label) == "still watched\n"

    code, err = watching.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert [e["event"] for e in config_events(watching)] == ["config-invalid", "config-reloaded"]


def test_a_deleted_configuration_is_refused_and_a_resave_is_nothing(
    store: Path, watching: Watch
) -> None:
    """Deleting the file would read as "no source": refused. Saving it unchanged says nothing."""
    text = (store / CONFIG).read_text(encoding="utf-8")
    (store / CONFIG).unlink()
    gone = watching.wait_for("config-invalid")
    assert "is gone" in str(gone["error"])
    seen = len(watching.events())
    (store.parent / "notes" / "a.md").write_text("meanwhile\n", encoding="utf-8")
    assert watching.wait_for("round", since=seen)["summary"]["resolved"] == 1  # still syncing
    write_config(store, text)  # back as it was: the configuration in use, nothing to say
    label = eventually(lambda: label_of(store, "a.md"), "a.md's block")
    (store.parent / "notes" / "a.md").write_text("after\n", encoding="utf-8")
    eventually(lambda: content(store, label) == "after\n", "an edit")
    code, err = watching.stop()
    assert code == 0, err
    assert [e["event"] for e in config_events(watching)] == ["config-invalid"]


def test_text_mode_says_a_reload_in_one_line(store: Path) -> None:
    w = Watch(store)
    try:
        eventually(lambda: any(line.startswith("round 1 ") for line in w.lines), "round 1")
        write_config(store, "[agents.alice.data_sources.x]\ntype = 1\n")
        eventually(lambda: any("cannot be used" in line for line in w.lines), "the invalid line")
        code, err = w.stop()
    finally:
        w.close()
    assert code == 0 and "Traceback" not in err
    said = [line for line in w.lines if "blocksync.toml" in line]
    assert len(said) == 1 and "[agents.alice.data_sources.x]" in said[0], w.lines
