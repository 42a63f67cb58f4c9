"""Reversible encoding of free-text owners and labels into single git path components.

Labels are free text (``file:3fa2c1d0:src/a.md``); a git tree entry name is one path component
that must stay portable when the repository is cloned onto any file system. Every byte of the
UTF-8 form outside ``[A-Za-z0-9_.-]`` becomes ``%XX`` (upper-case hex), and so does a leading
dot, so ``.``, ``..`` and ``.git`` can never appear. Decoding accepts only the canonical form,
which makes the mapping a bijection between valid names and path components.

A label may be longer than one component may be: :mod:`blocksync.store.layout` names such a label's
folder by its hash and keeps the whole label beside it.
"""

from __future__ import annotations

import re

from .errors import InvalidLabel

#: Longest encoded component; most file systems refuse longer names on checkout.
MAX_COMPONENT_BYTES = 255
#: Longest label, in UTF-8 bytes: a file's path in its folder fits (Linux: 4096 bytes) with
#: room for the ``file:<tag>:`` prefix.
MAX_LABEL_BYTES = 8192

#: Labels under this prefix are the host's own blocks (``blocksync:conflicts``): derived from
#: the store's state and rewritten by it, so no data source binds one and no merge asks about one.
HOST_LABEL_PREFIX = "blocksync:"

_ESCAPE = re.compile(rb"%([0-9A-F]{2})")
_UNSAFE = re.compile(rb"[^A-Za-z0-9_.-]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def validate(name: str, what: str = "label") -> None:
    """Refuse names that are empty, unprintable, or read like a path escaping its folder."""
    if not name:
        raise InvalidLabel(name, f"an empty {what} is not allowed")
    bad = _CONTROL.search(name)  # one scan in C: every write checks every name it touches
    if bad is not None:
        raise InvalidLabel(name, f"{what} contains control character {bad[0]!r}")
    if _SURROGATE.search(name):
        raise InvalidLabel(name, f"{what} contains a lone surrogate and is not valid text")
    framed = f"/{name}/"  # a "." or ".." part, wherever it is
    if name.startswith("/") or "/./" in framed or "/../" in framed:
        raise InvalidLabel(name, f"{what} would escape its folder ('.', '..' or a leading '/')")
    if what == "label":
        if len(name.encode("utf-8")) > MAX_LABEL_BYTES:
            raise InvalidLabel(name, f"label is too long (over {MAX_LABEL_BYTES} UTF-8 bytes)")
    elif len(encode(name)) > MAX_COMPONENT_BYTES:
        raise InvalidLabel(name, f"{what} is too long (over {MAX_COMPONENT_BYTES} encoded bytes)")


def is_host_label(label: str) -> bool:
    """Whether ``label`` names one of the host's own blocks (see :data:`HOST_LABEL_PREFIX`)."""
    return label.startswith(HOST_LABEL_PREFIX)


def encode(name: str) -> str:
    """Encode ``name`` as one safe path component (no validation: see :func:`validate`)."""
    data = name.encode("utf-8")
    # one regex pass in C, a call per escaped byte only (a label has a few: ':' and '/')
    out = _UNSAFE.sub(_escape, data)
    if out[:1] == b".":
        out = b"%2E" + out[1:]
    return out.decode("ascii")


def _escape(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def decode(component: str | bytes) -> str:
    """Invert :func:`encode`; refuses anything :func:`encode` could not have produced (the
    component of a long label is decoded from the label stored beside it: see
    :func:`blocksync.store.layout.label_of`)."""
    raw = component.encode("ascii") if isinstance(component, str) else component
    decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    try:
        name = decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidLabel(repr(component), "path component is not encoded UTF-8") from exc
    if encode(name).encode("ascii") != raw:
        raise InvalidLabel(name, f"path component {raw!r} is not in canonical encoded form")
    return name
