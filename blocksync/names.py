"""Reversible encoding of free-text owners and labels into single git path components.

Labels are free text (``file:3fa2c1d0:src/a.md``); a git tree entry name is one path component
that must stay portable when the repository is cloned onto any file system. Every byte of the
UTF-8 form outside ``[A-Za-z0-9_.-]`` becomes ``%XX`` (upper-case hex), and so does a leading
dot, so ``.``, ``..`` and ``.git`` can never appear. Decoding accepts only the canonical form,
which makes the mapping a bijection between valid names and path components.

A label may be as long as a file's path in a folder (:data:`MAX_LABEL_BYTES`), far longer
than one component may be (255 bytes on most file systems; 33 Japanese characters encode to
297). Such a label's component (:func:`component`) is a readable head of its encoding, ``~``
(never part of an encoding) and 40 hex digits of the label's sha256; the whole label is kept
beside it in the repository (a block folder's ``label`` file, a binding's ``binding.json``),
which is what makes the mapping reversible, and checked against the hash when read.
"""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidLabel

#: Longest encoded component; most file systems refuse longer names on checkout.
MAX_COMPONENT_BYTES = 255
#: Longest label, in UTF-8 bytes: a file's path in its folder fits (Linux: 4096 bytes) with
#: room for the ``file:<tag>:`` prefix.
MAX_LABEL_BYTES = 8192
#: Marks the component of a long label named by its hash (see :func:`component`).
HASHED = "~"
_HEAD_BYTES = 200

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ESCAPE = re.compile(rb"%([0-9A-F]{2})")


def validate(name: str, what: str = "label") -> None:
    """Refuse names that are empty, unprintable, or read like a path escaping its folder."""
    if not name:
        raise InvalidLabel(name, f"an empty {what} is not allowed")
    bad = next((c for c in name if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidLabel(name, f"{what} contains control character {bad!r}")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        raise InvalidLabel(name, f"{what} contains a lone surrogate and is not valid text")
    if name.startswith("/") or any(part in (".", "..") for part in name.split("/")):
        raise InvalidLabel(name, f"{what} would escape its folder ('.', '..' or a leading '/')")
    if what == "label":
        if len(name.encode("utf-8")) > MAX_LABEL_BYTES:
            raise InvalidLabel(name, f"label is too long (over {MAX_LABEL_BYTES} UTF-8 bytes)")
    elif len(encode(name)) > MAX_COMPONENT_BYTES:
        raise InvalidLabel(name, f"{what} is too long (over {MAX_COMPONENT_BYTES} encoded bytes)")


def component(name: str) -> str:
    """The one path component of label ``name``: its encoding when that fits in
    :data:`MAX_COMPONENT_BYTES`, else a head of it, ``~`` and 40 hex digits of its sha256 (the
    whole label is then stored beside it)."""
    encoded = encode(name)
    if len(encoded) <= MAX_COMPONENT_BYTES:
        return encoded
    head = encoded[:_HEAD_BYTES]
    escape = head.rfind("%", len(head) - 2)
    if escape != -1:
        head = head[:escape]  # never half an escape
    return f"{head}{HASHED}{hashlib.sha256(name.encode('utf-8')).hexdigest()[:40]}"


def is_hashed(component: str | bytes) -> bool:
    """Does ``component`` name a long label by its hash (the label is stored beside it)?"""
    if isinstance(component, bytes):
        return HASHED.encode() in component
    return HASHED in component


def encode(name: str) -> str:
    """Encode ``name`` as one safe path component (no validation: see :func:`validate`)."""
    out = []
    for i, byte in enumerate(name.encode("utf-8")):
        if byte in _SAFE and not (i == 0 and byte == ord(".")):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def decode(component: str | bytes) -> str:
    """Invert :func:`encode`; refuses anything :func:`encode` could not have produced (the
    component of a long label is decoded from the label stored beside it: see
    :func:`check_hashed`)."""
    raw = component.encode("ascii") if isinstance(component, str) else component
    decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    try:
        name = decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidLabel(repr(component), "path component is not encoded UTF-8") from exc
    if encode(name).encode("ascii") != raw:
        raise InvalidLabel(name, f"path component {raw!r} is not in canonical encoded form")
    return name


def check_hashed(found: str | bytes, label: str) -> str:
    """``label``, read from beside the hashed component ``found``, if it is the label that
    component names; InvalidLabel otherwise (a damaged or forged folder)."""
    expected = found.decode("ascii") if isinstance(found, bytes) else found
    validate(label, "label")
    if component(label) != expected:
        raise InvalidLabel(label, f"it is not the label path component {expected!r} names")
    return label
