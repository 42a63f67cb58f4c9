"""What a canonical source path is (standard library only: plugins' paths are checked by it)."""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f]")


#: Longest source path accepted from a plugin (bytes of UTF-8).
MAX_PATH_BYTES = 4096


def source_path_problem(path: object) -> str | None:
    """Why ``path`` is no canonical source path (None: it is one): non-empty UTF-8 text of
    ``/``-separated parts, none empty, ``.`` or ``..``, no leading ``/``, no control character."""
    if not isinstance(path, str) or not path:
        return "is empty"
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid text (a lone surrogate)"
    if size > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if _CONTROL.search(path):
        return "contains a control character"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "is not canonical (a leading '/', an empty, '.' or '..' part)"
    return None
