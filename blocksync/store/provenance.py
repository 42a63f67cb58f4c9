"""Who made a commit, on which machine, in which run: git trailers, written and read here only.

Every commit blocksync writes ends in one paragraph of trailers, after a blank line, the way
``git interpret-trailers`` reads them::

    update alice/notes

    Blocksync-Author: plugin:s3-notes@3fa2c1d09e8b
    Blocksync-Machine: laptop
    Blocksync-Run: run-20261204T153000Z-a1b2c3

* ``Blocksync-Author`` -- who made the version: ``agent:<id>``, ``human:<login>``,
  ``plugin:<key>@<sha256 prefix>`` for writes a plugin caused (:func:`plugin`),
  ``remote:<name>`` for merges of a git remote (:func:`remote`), ``source:<key>`` for what a
  folder source read from its files. Always written: the commit's git author when the writer
  names nobody more precise.
* ``Blocksync-Machine`` -- ``[store] machine`` of the store that wrote it (default: the host
  name); absent when the writer runs without a workspace.
* ``Blocksync-Run`` -- the id of the run the commit was made in (a ``reconcile`` or a ``sync``
  and the pulls and pushes of its remotes, a standalone ``blocksync pull`` or ``push``: the
  runs the run log records), as ``blocksync runs show`` takes it; absent outside one. It is a property of the open store while the run goes
  on (:meth:`~blocksync.store.gitstore.GitStore.in_run`), not of a call chain: what another
  thread commits through that store meanwhile names the run too.

Decisions:

* **Our own last paragraph.** The trailers are always a paragraph of their own, so the message
  a writer gave comes back byte for byte (:func:`split`), and a message that ends in trailers
  of its own (``Signed-off-by: ...``) keeps them as its text. Since every commit written since
  ends in that paragraph, a message that tries to forge one is never the last paragraph.
* **Reading is forgiving.** A commit from before trailers, or whose last paragraph is anything
  but ``Blocksync-*`` lines, has no provenance (every field None), never an error.
* **Values are one line.** A value with a line break would end the trailer early, so it is
  refused where it enters: the author as git's identity is (``gitstore.identity``), who made
  it by :func:`check_value`, the machine name by the configuration (printable text only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from blocksync.errors import UsageError

__all__ = ["AUTHOR", "MACHINE", "RUN", "Provenance", "check_value", "plugin", "remote", "split"]

AUTHOR = "Blocksync-Author"
MACHINE = "Blocksync-Machine"
RUN = "Blocksync-Run"
#: hex digits of a plugin's sha256 its provenance names (git's short ids are about as long)
SHA_PREFIX = 12

_TRAILER = re.compile(r"(Blocksync-[A-Za-z-]+): (.*)")


def check_value(value: str, what: str) -> str:
    """``value`` if a trailer can carry it and give it back (one line, as a git author name
    must be: no line break or NUL, no surrounding whitespace); else UsageError naming ``what``."""
    if not value or value != value.strip() or any(c in value for c in "\n\r\0"):
        raise UsageError(f"{what} {value!r} must be one line without surrounding spaces")
    return value


def plugin(key: str, sha256: str) -> str:
    """The author of a write plugin ``key`` caused, running the file with ``sha256``."""
    return f"plugin:{key}@{sha256[:SHA_PREFIX]}"


def remote(name: str) -> str:
    """The author of a merge of git remote ``name``."""
    return f"remote:{name}"


@dataclass(frozen=True)
class Provenance:
    """Who made a commit (``made_by``), on which ``machine``, in which ``run``; None: unknown."""

    made_by: str | None = None
    machine: str | None = None
    run: str | None = None

    def trailers(self) -> list[tuple[str, str]]:
        found = ((AUTHOR, self.made_by), (MACHINE, self.machine), (RUN, self.run))
        return [(key, value) for key, value in found if value is not None]

    def message(self, text: str) -> str:
        """``text`` with these trailers as its last paragraph (just ``text`` without any)."""
        lines = [f"{key}: {value}" for key, value in self.trailers()]
        body = text.rstrip("\n")
        return body if not lines else body + "\n\n" + "\n".join(lines)


def split(message: str) -> tuple[str, Provenance]:
    """A commit message as its writer gave it, and the provenance its trailers hold."""
    body, sep, last = message.rstrip("\n").rpartition("\n\n")
    if not sep:
        return message, Provenance()
    found: dict[str, str] = {}
    for line in last.split("\n"):
        match = _TRAILER.fullmatch(line)
        if match is None:
            return message, Provenance()
        found[match.group(1)] = match.group(2)
    return body, Provenance(found.get(AUTHOR), found.get(MACHINE), found.get(RUN))
