"""What a component was built from, recorded inside it: the `blocksync-source` custom section.

Why not reproducible builds instead: both toolchains snapshot a running interpreter into the
component (componentize-py pre-initializes CPython, componentize-js SpiderMonkey), and that
snapshot holds whatever the interpreter drew from WASI's random source while it started: Python's
str hash seed (which orders every dict and set, so the heap's layout) and its `random` state.
componentize-py 0.25.1 gives that pre-init run a fixed environment of its own (no
PYTHONHASHSEED or SOURCE_DATE_EPOCH reaches it) and the host's real randomness, with no option
to seed either; measured here, two builds of one source differ in millions of bytes of the
snapshot even with PYTHONHASHSEED=0 and SOURCE_DATE_EPOCH=0 set and inputs sorted. So the build
records a hash of its source in the component and `plugin verify --source FOLDER` checks a
component against a folder: a rebuild changes the file's sha256, not its source hash.

The section is appended at the end of the component (a custom section is allowed at any point
of a component's top level, and is ignored by wasmtime), so signing the file covers it. It is a
claim the builder makes, not a proof: anyone can write any hash into a component. Trust the
claim as far as you trust the component's signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SECTION",
    "SourceCheck",
    "changed_since",
    "embed",
    "file_hashes",
    "read",
    "source_files",
    "source_sha256",
    "tree_sha256",
    "verify_source",
]

SECTION = "blocksync-source"
RECORD_VERSION = 1
#: never part of a plugin's source: build outputs, caches, installed packages, dot files
SKIPPED_DIRS = {"node_modules", "__pycache__"}
SKIPPED_SUFFIXES = {".wasm", ".pyc", ".partial", ".cwasm"}
COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"


def source_files(folder: Path) -> Iterable[Path]:
    """The files of a plugin source folder that make its source, in a fixed order."""
    for path in sorted(Path(folder).rglob("*")):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") or p in SKIPPED_DIRS for p in parts):
            continue
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES:
            yield path


def tree_sha256(folder: Path, files: Iterable[Path] | None = None) -> str:
    """sha256 over the relative names and contents of ``files`` (default: :func:`source_files`)
    of ``folder``: the same for the same tree wherever it lies and whatever its timestamps."""
    digest = hashlib.sha256()
    for path in source_files(folder) if files is None else files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of each of the :func:`source_files` of ``folder``, by relative name."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in source_files(folder)
    }


def changed_since(folder: Path, before: Mapping[str, str]) -> list[str]:
    """The files of ``before`` (:func:`file_hashes`) changed or gone from ``folder`` since (files
    added meanwhile are not: a first JavaScript build writes its package-lock.json)."""
    now = file_hashes(folder)
    return [name for name, digest in before.items() if now.get(name) != digest]


def source_sha256(folder: Path) -> str:
    """The source hash of a plugin source folder, as the build records it."""
    return tree_sha256(Path(folder))


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_leb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 35:
            raise ValueError("truncated or oversized LEB128 number")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def embed(component: bytes, record: Mapping[str, Any]) -> bytes:
    """``component`` with a ``blocksync-source`` custom section holding ``record`` appended."""
    if not component.startswith(COMPONENT_HEADER):
        raise ValueError("not a WebAssembly component")
    name = SECTION.encode()
    payload = _leb(len(name)) + name + json.dumps({"format": RECORD_VERSION, **record}).encode()
    return component + b"\x00" + _leb(len(payload)) + payload


def read(component: bytes) -> dict[str, Any] | None:
    """The record of the last ``blocksync-source`` section at the component's top level, None
    when it has none (built before this, or by another tool). Raises ValueError for a file that
    is not a well-formed component at its top level."""
    if not component.startswith(COMPONENT_HEADER):
        raise ValueError("not a WebAssembly component")
    at, found = len(COMPONENT_HEADER), None
    while at < len(component):
        section = component[at]
        size, start = _read_leb(component, at + 1)
        end = start + size
        if end > len(component):
            raise ValueError("a section runs past the end of the file")
        if section == 0:
            length, name_at = _read_leb(component, start)
            if component[name_at : name_at + length] == SECTION.encode():
                found = component[name_at + length : end]
        at = end
    if found is None:
        return None
    record = json.loads(found)  # a JSONDecodeError is a ValueError
    if isinstance(record, dict):
        return record
    raise ValueError(f"the {SECTION} section is not a JSON object")


@dataclass(frozen=True)
class SourceCheck:
    """A component checked against a source folder."""

    ok: bool
    detail: str
    recorded: str | None  # the source hash the component records
    actual: str  # the folder's


def verify_source(component: Path, folder: Path) -> SourceCheck:
    """Whether ``component`` records the source hash of ``folder`` (see the module's doc for
    what that proves)."""
    actual = source_sha256(folder)
    try:
        record = read(Path(component).read_bytes())
    except ValueError as exc:
        return SourceCheck(False, f"{component}: {exc}", None, actual)
    if record is None:
        detail = f"{component} records no source (no {SECTION} section): rebuild it"
        return SourceCheck(False, detail, None, actual)
    recorded = record.get("source_sha256")
    recorded = recorded if isinstance(recorded, str) else None
    if recorded != actual:
        return SourceCheck(
            False,
            f"{component} was built from another source than {folder}: it records "
            f"{recorded}, the folder hashes to {actual}",
            recorded,
            actual,
        )
    tools = ", ".join(f"{k} {v}" for k, v in sorted(dict(record.get("toolchain", {})).items()))
    return SourceCheck(
        True, f"built from {folder} (source sha256 {actual}; {tools})", recorded, actual
    )
