"""Where blocksync's log goes: each plugin's lines to its file in the store, the terminal on request.

A plugin's ``host.log`` lines, its guest output and the host's notes about it (a host function
that failed, with its traceback) are logged under ``blocksync.plugin.<name>`` and filed in
``<store>/logs/plugins/<name>.log``, rotated at :data:`MAX_BYTES` with :data:`BACKUPS` older
files kept, so a cron user can read what a plugin said last night. They never reach the
terminal unless asked (``-v`` or ``BLOCKSYNC_LOG``, :func:`to_terminal`): a failing plugin is
one line of the command's report, not its traceback.

As a library blocksync prints nothing itself (a ``NullHandler``, as the logging HOWTO advises
libraries): an application that wants the log configures logging as usual.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from pathlib import Path
from typing import Any

PLUGIN_LOGGER = "blocksync.plugin"
MAX_BYTES = 1 << 20
BACKUPS = 3
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

logging.getLogger("blocksync").addHandler(logging.NullHandler())


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that never writes through a link planted at its path."""

    def _open(self) -> Any:
        fd = os.open(
            self.baseFilename,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
        )
        return os.fdopen(fd, "a", encoding="utf-8", errors="replace")


class PluginLogFiles(logging.Handler):
    """Files each plugin record in the log file its logger names (``record.plugin_log``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._files: dict[Path, _RotatingFile] = {}
        self._files_lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        path = getattr(record, "plugin_log", None)
        if path is None:
            return
        try:
            with self._files_lock:
                handler = self._files.get(path)
                if handler is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handler = self._files[path] = _RotatingFile(
                        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, delay=True
                    )
                    handler.setFormatter(self.formatter)
            handler.emit(record)
        except OSError:  # a read-only or full store loses the plugin's log, not the run
            pass


_files = PluginLogFiles()
logging.getLogger(PLUGIN_LOGGER).addHandler(_files)
logging.getLogger(PLUGIN_LOGGER).setLevel(logging.DEBUG)  # every line is filed; the terminal filters


def plugin_logger(name: str, log_folder: Path | None) -> logging.LoggerAdapter[logging.Logger]:
    """The logger of plugin ``name``: its records go to ``log_folder/<name>.log`` (None: none)."""
    log_file = None if log_folder is None else log_folder / f"{name}.log"
    return logging.LoggerAdapter(
        logging.getLogger(f"{PLUGIN_LOGGER}.{name}"), {"plugin_log": log_file, "plugin": name}
    )


class _Terminal(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        plugin = getattr(record, "plugin", None)
        prefix = f"plugin {plugin}" if plugin else "blocksync"
        text = super().format(record)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return "\n".join(f"{prefix}: {level}{line}" for line in text.splitlines())


def to_terminal(verbose: bool, env_level: str | None) -> None:
    """Show the log on standard error, for the CLI: warnings of blocksync's own always; with
    ``verbose`` (or ``BLOCKSYNC_LOG`` = debug, info, ...) everything down to that level,
    plugins' lines included, each prefixed with its plugin's name."""
    level = LEVELS.get((env_level or "").strip().lower(), logging.DEBUG if verbose else None)
    shown = level is not None and level <= logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Terminal())
    if not shown:
        handler.addFilter(lambda record: not record.name.startswith(PLUGIN_LOGGER + "."))
    handler.setLevel(level if level is not None else logging.WARNING)
    root = logging.getLogger("blocksync")
    root.addHandler(handler)
    root.setLevel(min(handler.level, logging.WARNING))
