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

import functools
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logging.handlers import RotatingFileHandler

PLUGIN_LOGGER = "blocksync.plugin"
MAX_BYTES = 1 << 20
BACKUPS = 3
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

logging.getLogger("blocksync").addHandler(logging.NullHandler())


@functools.cache
def _rotating_file() -> type[RotatingFileHandler]:
    """A RotatingFileHandler that never writes through a link planted at its path (made when a
    plugin first logs: logging.handlers is not paid by commands that load no plugin)."""
    from logging.handlers import RotatingFileHandler

    class _RotatingFile(RotatingFileHandler):
        def _open(self) -> Any:
            fd = os.open(
                self.baseFilename,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
            return os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    return _RotatingFile


class _PluginLogFiles:
    """The open log files of plugins, by path (one rotating handler each, shared by threads)."""

    def __init__(self) -> None:
        self._files: dict[Path, RotatingFileHandler] = {}
        self._lock = threading.Lock()
        self._format = logging.Formatter("%(asctime)s %(levelname)s %(message)s")

    def emit(self, path: Path, record: logging.LogRecord) -> None:
        try:
            with self._lock:
                handler = self._files.get(path)
                if handler is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handler = self._files[path] = _rotating_file()(
                        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, delay=True
                    )
                    handler.setFormatter(self._format)
            handler.emit(record)
        except OSError:  # a read-only or full store loses the plugin's log, not the run
            pass


_files = _PluginLogFiles()


class PluginLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A plugin's logger: every line is filed in its log file whatever the logging levels
    (what a plugin said last night is there in the morning), and goes on to the logger
    ``blocksync.plugin.<name>`` as usual, for the terminal or an application's handlers."""

    def __init__(self, name: str, log_file: Path | None) -> None:
        super().__init__(logging.getLogger(f"{PLUGIN_LOGGER}.{name}"), {"plugin": name})
        self.log_file = log_file

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.log_file is not None:
            exc_info = kwargs.get("exc_info")
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            elif exc_info is True:
                exc_info = sys.exc_info()
            record = self.logger.makeRecord(
                self.logger.name,
                level,
                "(plugin)",
                0,
                msg,
                args,
                exc_info or None,
                extra=self.extra,
            )
            _files.emit(self.log_file, record)
        super().log(level, msg, *args, **kwargs)


def plugin_logger(name: str, log_folder: Path | None) -> PluginLog:
    """The logger of plugin ``name``, filing in ``log_folder/<name>.log`` (None: no file)."""
    return PluginLog(name, None if log_folder is None else log_folder / f"{name}.log")


class _Terminal(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        plugin = getattr(record, "plugin", None)
        prefix = f"plugin {plugin}" if plugin else "blocksync"
        text = super().format(record)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return "\n".join(f"{prefix}: {level}{line}" for line in text.splitlines())


_terminal: logging.Handler | None = None


def to_terminal(verbose: bool, env_level: str | None) -> None:
    """Show the log on standard error, for the CLI: warnings of blocksync's own always; with
    ``verbose`` (or ``BLOCKSYNC_LOG`` = debug, info, ...) everything down to that level,
    plugins' lines included, each prefixed with its plugin's name. Called again (a CLI run
    in-process, in tests), it replaces what it set before."""
    global _terminal
    level = LEVELS.get((env_level or "").strip().lower(), logging.DEBUG if verbose else None)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Terminal())
    if level is None or level > logging.INFO:
        handler.addFilter(lambda record: not record.name.startswith(PLUGIN_LOGGER + "."))
    handler.setLevel(logging.WARNING if level is None else level)
    logger = logging.getLogger("blocksync")
    if _terminal is not None:
        logger.removeHandler(_terminal)
    logger.addHandler(handler)
    _terminal = handler
    # NOTSET: levels as the application (or Python's default, warnings) has them
    logger.setLevel(logging.NOTSET if level is None else level)
