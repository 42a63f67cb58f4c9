"""One exception tree; each foreign error is translated at the boundary, keeping its cause."""

from __future__ import annotations

import inspect
import sqlite3
import tomllib
from pathlib import Path

import pytest
from dulwich.errors import NotGitRepository

import blocksync
from blocksync import errors
from blocksync.text import decode_text


def test_every_error_is_a_blocksync_error_with_an_exit_code() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) > 10
    for cls in classes:
        assert issubclass(cls, errors.BlocksyncError)
        assert cls.exit_code in (1, 2, 3, 4, 5, 75)
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} missing from the drawn tree"


def test_sqlite_damage_becomes_index_corrupt(store_path: Path) -> None:
    (store_path / "index.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(errors.IndexCorrupt) as info:
        blocksync.open(store_path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_not_a_repository_becomes_repository_corrupt(tmp_path: Path) -> None:
    store = tmp_path / "s"
    blocksync.init(store).close()
    for child in sorted((store / "repo").rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    with pytest.raises(errors.RepositoryCorrupt) as info:
        blocksync.open(store)
    assert isinstance(info.value.__cause__, NotGitRepository)


def test_missing_object_becomes_repository_corrupt(ws: blocksync.Workspace) -> None:
    ws.blocks.create("a", "b", "unique content 1234\n")
    blob = ws.blocks.history("a", "b")[0]
    row = ws._index.get("a", "b", blob.version)
    assert row is not None and row.content_blob is not None
    path = ws.repo_path / "objects" / row.content_blob[:2] / row.content_blob[2:]
    data = path.read_bytes()
    path.unlink()
    try:
        with pytest.raises(errors.RepositoryCorrupt) as info:
            ws.blocks.read("a", "b")
        assert isinstance(info.value.__cause__, KeyError)
    finally:
        path.write_bytes(data)


def test_bad_utf8_becomes_invalid_content() -> None:
    with pytest.raises(errors.InvalidContent) as info:
        decode_text(b"ok\xff", "input")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_bad_toml_becomes_config_error(store_path: Path) -> None:
    (store_path / "blocksync.toml").write_text("x = [", encoding="utf-8")
    with pytest.raises(errors.ConfigError) as info:
        blocksync.open(store_path)
    assert isinstance(info.value.__cause__, tomllib.TOMLDecodeError)


def test_lone_surrogate_becomes_invalid_content(ws: blocksync.Workspace) -> None:
    with pytest.raises(errors.InvalidContent) as info:
        ws.blocks.create("a", "b", "bad \udc80 text")
    assert isinstance(info.value.__cause__, UnicodeEncodeError)
