"""The folders ``blocksync watch`` watches: which exist (by identity), one ``watchfiles``
watcher over those that do (``watchfiles`` is imported here only), and the source paths of the
files that changed."""

from __future__ import annotations

import os
import threading
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..text import printable
from .events import Notice

if TYPE_CHECKING:
    from ..sync.folder.config import FileSourceSpec

__all__ = ["Changes", "Folders", "Pending", "Watched", "merge"]

#: the file events watchfiles yields, batch after batch: (its Change, the path)
Changes = Generator[set[tuple[Any, str]], None, None]
#: what a source has pending: its paths, or None for all of them
Pending = set[str] | None


@dataclass(frozen=True)
class Watched:
    """A source whose folders are watched: a file source (``spec``: a changed file is one of
    its paths) or a data-block plugin granted a ``dir`` (``spec`` None: the folder is the
    plugin's to read, so any change in it reconciles the plugin whole)."""

    key: str
    roots: tuple[Path, ...]
    spec: FileSourceSpec | None = None


class Folders:
    """The root folders of the file sources: which exist (by identity), and one ``watchfiles``
    watcher over those that do, made again whenever that set changes. A watcher the system
    refuses (inotify's watch limit, a folder it may not watch) is said once, and the folders
    are then polled every ``poll`` seconds (watchfiles' polling: it lists them)."""

    def __init__(
        self,
        watched: Mapping[str, Watched],
        stop: threading.Event,
        debounce: float,
        poll: float,
    ) -> None:
        self.watched = watched
        self.stop = stop
        self.debounce = debounce
        self.poll = poll
        self.missing: set[str] = set()  # sources with a root that is not there
        self._seen: dict[Path, tuple[int, int] | None] = {}
        self._changes: Changes | None = None
        self._polling = False
        self._said: list[Notice] = []  # a notice of the watcher's own, for the next check

    def replace(self, watched: Mapping[str, Watched]) -> None:
        """Watch the folders of ``watched`` from the next :meth:`check` on (a new
        configuration): a watcher is made again if the set of folders changed."""
        self.watched = watched
        self.missing &= set(watched)

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
            self._changes = None

    def check(self) -> list[tuple[Notice, str]]:
        """Look at every root; the notices of those that vanished or came back (with their
        source), and a new watcher when the set of roots changed."""
        notices = [(notice, "") for notice in self._said]
        self._said.clear()
        now = {root: _identity(root) for w in self.watched.values() for root in w.roots}
        for key, w in self.watched.items():
            gone = [root for root in w.roots if now[root] is None]
            if gone and key not in self.missing:
                self.missing.add(key)
                folder = str(gone[0])
                text = f"folder {printable(folder)} of source {key} is missing: waiting for it"
                notices.append((Notice("folder-missing", text, key, folder), key))
            elif not gone and key in self.missing:
                self.missing.discard(key)
                folder = str(w.roots[0])
                text = f"the folders of source {key} are back: watching them again"
                notices.append((Notice("folder-back", text, key, folder), key))
        if now != self._seen:
            self.close()
            self._seen = now
            roots = [root for root, known in now.items() if known is not None]
            if roots:
                self._changes = self._watch(roots)
        return notices

    def _watch(self, roots: list[Path]) -> Changes:
        import watchfiles

        return watchfiles.watch(
            *roots,
            watch_filter=None,  # what is synced is the source's to say (route)
            debounce=max(int(self.debounce * 1000), 1),
            step=max(min(int(self.debounce * 1000), 50), 1),
            stop_event=self.stop,
            rust_timeout=max(int(self.poll * 1000), 1),
            yield_on_timeout=True,
            raise_interrupt=False,
            force_polling=self._polling or None,  # None: polling only where watching cannot be
            poll_delay_ms=max(int(self.poll * 1000), 1),
        )

    def changes(self) -> set[tuple[Any, str]]:
        """The file events of the next ``poll`` seconds at most (after ``debounce`` of quiet)."""
        if self._changes is None:
            self.stop.wait(self.poll)
            return set()
        try:
            return next(self._changes)
        except StopIteration:  # stop was set
            self._changes = None
        except FileNotFoundError:  # a root went away as the watcher started: made again
            self.close()
            self._seen = {}
        except (OSError, RuntimeError) as exc:
            self.close()  # and no watcher until a root changes, if polling failed too
            if not self._polling:
                self._polling, self._seen = True, {}
                text = f"cannot watch the folders ({exc}): polling them every {self.poll} s"
                self._said.append(Notice("watch-failed", printable(text)))
        return set()

    def route(self, changes: Iterable[tuple[Any, str]]) -> dict[str, Pending]:
        """The source paths of the changed files, by source (None: all of them -- a root itself
        changed, or a plugin's folder)."""
        found: dict[str, Pending] = {}
        for _, raw in changes:
            changed = Path(raw)
            for key, w in self.watched.items():
                for index, root in enumerate(w.roots):
                    if changed == root or (w.spec is None and changed.is_relative_to(root)):
                        merge(found, key, None)
                    elif w.spec is not None and changed.is_relative_to(root):
                        rel = changed.relative_to(root).as_posix()
                        merge(found, key, [w.spec.source_path(index, rel)])
        return found


def merge(pending: dict[str, Pending], key: str, paths: Iterable[str] | None) -> None:
    """Add ``paths`` (None: all of them) to what ``key`` has pending."""
    if paths is None:
        pending[key] = None
        return
    current = pending.get(key, set())
    if current is not None:
        pending[key] = current | set(paths)


def _identity(root: Path) -> tuple[int, int] | None:
    """The device and inode of folder ``root``; None: it is not there (or not a folder)."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    if not os.path.isdir(root):
        return None
    return st.st_dev, st.st_ino
