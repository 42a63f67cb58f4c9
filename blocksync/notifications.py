"""Notifications emitted by plugins, stored durably in ``index.db`` (table ``notifications``).

Unlike the version index, notifications cannot be re-derived from git, so they are written in
their own transaction the moment a plugin emits them, before its call returns.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import IndexCorrupt
from .sources import BlockRef


@dataclass(frozen=True)
class StoredNotification:
    id: int
    source: str
    text: str
    blocks: tuple[BlockRef, ...]
    created_at: str
    acked: bool


class NotificationLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS notifications ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, text TEXT NOT NULL,"
                " blocks TEXT NOT NULL, created_at TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0)"
            )
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(path), f"cannot store notifications ({exc})") from exc

    def close(self) -> None:
        self._conn.close()

    def add(self, source: str, text: str, blocks: tuple[BlockRef, ...]) -> int:
        doc = json.dumps([[b.block_id, b.label, b.agent_id] for b in blocks])
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            cur = self._conn.execute(
                "INSERT INTO notifications (source, text, blocks, created_at) VALUES (?, ?, ?, ?)",
                [source, text, doc, now],
            )
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(str(self.path), f"cannot store a notification ({exc})") from exc
        return int(cur.lastrowid or 0)

    def list(self, unacked: bool = False) -> list[StoredNotification]:
        where = "WHERE acked = 0" if unacked else ""
        rows = self._conn.execute(
            f"SELECT id, source, text, blocks, created_at, acked FROM notifications {where} ORDER BY id"
        ).fetchall()
        return [
            StoredNotification(
                r[0], r[1], r[2], tuple(BlockRef(*b) for b in json.loads(r[3])), r[4], bool(r[5])
            )
            for r in rows
        ]
