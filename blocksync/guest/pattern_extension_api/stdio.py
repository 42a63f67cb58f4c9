"""`print()` in a plugin goes to the host's log: stdout at INFO, stderr at WARN, and so do
tracebacks.

Installed by the export adapters on the first call from the host, never at import: the module top
level runs at build time inside componentize-py's snapshot, where there is no host to log to (what
is printed there is dropped by componentize-py). A component built with `--stub-wasi` has no WASI
stdout at all, so without this a `print()` would trap.

Tracebacks are formatted here without source lines: Python's own formatting reads the source files
(linecache), and in a component without WASI any file access traps, hiding the real error.
"""

from __future__ import annotations

import io
import sys

from wit_world.imports import host as _host

INFO, WARN, ERROR = 2, 3, 4


class HostLogStream(io.TextIOBase):
    """A text stream that sends each completed line (or a flushed fragment) to `host.log`."""

    def __init__(self, level: int, name: str) -> None:
        super().__init__()
        self._level = level
        self._name = name
        self._pending: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only in io.TextIOBase too
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending.append(text)
        if "\n" in text:
            done, _, rest = "".join(self._pending).rpartition("\n")
            self._pending = [rest] if rest else []
            self._emit(done)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._emit(text)

    def _emit(self, text: str) -> None:
        if text:
            _host.log(self._level, text)


def format_exception(exc: BaseException) -> str:
    """A traceback like Python's, without source lines (and so without touching any file)."""
    lines = ["Traceback (most recent call last):"]
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}')
        tb = tb.tb_next
    message = str(exc)
    lines.append(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return "\n".join(lines)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    _host.log(ERROR, format_exception(exc))


_installed = False


def install() -> None:
    """Point sys.stdout / sys.stderr at the host log (once; call only at run time)."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.stdout = HostLogStream(INFO, "<host log: stdout>")
    sys.stderr = HostLogStream(WARN, "<host log: stderr>")
    sys.excepthook = _excepthook


def flush() -> None:
    """Send what is pending (a `print(..., end="")`) before control returns to the host."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, HostLogStream):
            stream.flush()
