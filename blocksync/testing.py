"""The data-block conformance suite, and ``blocksync plugin check`` which runs it on a plugin.

The reconcile truth table (DESIGN.md, "Reconcile semantics") as cases every file-like data-block
source must pass, written once against a small :class:`Subject`: edit the outside side (a folder,
an S3 bucket) and the blocks, reconcile some paths or all, read a block, a base and the outside
again. The test suite runs the cases against the native file source and the ``files`` plugin;
:func:`check_plugin` runs them against any plugin, each case in a throwaway store of its own.

The cases assume the conventions of the reference plugins: the source is configured with
permission ``admin`` for every path (deletions carry over), owns its blocks as agent ``alice``
and mirrors each outside path into one block. Which block: the one a path is bound to, else
the one the source's label namespace names (``paging.label-namespace``, or the table's
``label_namespace``), else the scheme learnt from a bound label containing its path.

The outside side is reached in the shape the table declares (``outside``): ``"folder"`` (the
default) a file per path in a folder granted to the plugin (``dir``, read-write, a fresh one
per case); ``"json:<file>"`` one JSON object path -> text in that file of the granted folder
(a plugin keeping every path in one file); and, when the plugin's ``config`` names an
``endpoint`` and a ``bucket``, that S3-compatible bucket under a fresh key ``prefix`` per case
(set in the plugin's config).

A plugin that keeps its state through the ``sync`` interface passes at the ``sync`` level; one
written against the seed's functions alone, whose bases and conflicts the host keeps for it by
seed means (:mod:`blocksync.plugins.seed`), at the ``seed`` level. A failing case says what the
suite did, what it expected and what it got.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree

from . import config as config_mod
from .agents.tools import ToolEntry
from .errors import BlockNotFound, BlocksyncError, ConfigError, PluginRefused, UsageError
from .plugins import inspect_file
from .plugins.source import PluginSource
from .shared import sigv4
from .shared.apply import Outside, sha256
from .store.bases import SyncBases
from .store.blocks import BlockStore
from .store.gitstore import GitStore
from .sync.protocol import NeedsResolution, NoChange, ReconcileResult, Resolved
from .workspace import Workspace

__all__ = [
    "CASES",
    "STREAM_CASES",
    "TOOL_CASES",
    "Case",
    "CaseResult",
    "CheckReport",
    "CheckedOutside",
    "FolderOutside",
    "JsonFileOutside",
    "Outside",
    "PluginCase",
    "S3Outside",
    "Subject",
    "check_plugin",
]

OWNER = "alice"
KEY = "checked"
#: what a plugin is configured with when ``plugin check`` is given no configuration
DEFAULT_TABLE: dict[str, Any] = {"config": {"owner": OWNER, "permission": "admin"}}


# -- the two sides under test -----------------------------------------------------------------


class CheckedOutside(Outside, Protocol):
    """The outside side under test: the :class:`blocksync.shared.apply.Outside` port (what a person or
    another program edits through), and what a write may leave behind."""

    def leftovers(self) -> list[str]:
        """Temporary objects an interrupted or finished write left behind."""
        ...


class FolderOutside:
    """Files under ``root``. Compare-and-swap by a read just before: the suite is the only
    other writer, and it waits for the source under test."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list_paths(self) -> list[str]:
        files = (p for p in self.root.rglob("*") if p.is_file() and p.suffix != ".tmp")
        return sorted(p.relative_to(self.root).as_posix() for p in files)

    def read(self, path: str) -> bytes | None:
        file = self.root / path
        return file.read_bytes() if file.exists() else None

    def write(self, path: str, data: bytes, expected: str | None) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return True

    def remove(self, path: str, expected: str) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        (self.root / path).unlink()
        return True

    def leftovers(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.tmp"))


def _digest(data: bytes | None) -> str | None:
    return None if data is None else sha256(data)


class JsonFileOutside:
    """Entries of the JSON object path -> text in the file ``name`` of ``root`` (a plugin
    keeping every path in one file). Compare-and-swap as :class:`FolderOutside`'s."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.file = root / name

    def _notes(self) -> dict[str, str]:
        if not self.file.exists():
            return {}
        text = self.file.read_bytes()
        try:
            found = json.loads(text)
        except ValueError as exc:  # not JSON, or not UTF-8: a failed case, not a crash
            raise AssertionError(
                f"{self.file.name} holds no JSON object ({exc}): {text[:80]!r}"
            ) from None
        if not isinstance(found, dict):
            raise AssertionError(f"{self.file.name} holds no JSON object: {found!r:.80}")  # noqa: TRY004 - a failed case, not a type error
        return {str(k): str(v) for k, v in found.items()}

    def _keep(self, notes: dict[str, str]) -> None:
        self.file.write_text(json.dumps(notes, ensure_ascii=False), encoding="utf-8")

    def list_paths(self) -> list[str]:
        return sorted(self._notes())

    def read(self, path: str) -> bytes | None:
        text = self._notes().get(path)
        return None if text is None else text.encode("utf-8")

    def write(self, path: str, data: bytes, expected: str | None) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        self._keep({**self._notes(), path: data.decode("utf-8")})
        return True

    def remove(self, path: str, expected: str) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        self._keep({k: v for k, v in self._notes().items() if k != path})
        return True

    def leftovers(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.tmp"))


class S3Outside:
    """Objects ``<prefix><path>`` of a bucket on an S3-compatible server, signed with SigV4
    (:mod:`blocksync.shared.sigv4`, the code the s3 plugin signs with) when keys are given.
    Compare-and-swap as :class:`FolderOutside`'s."""

    def __init__(self, config: Mapping[str, Any], prefix: str, timeout: float = 10.0) -> None:
        endpoint, bucket = str(config["endpoint"]), str(config["bucket"])
        self.base = f"{endpoint.rstrip('/')}/{sigv4.quote_path(bucket)}"
        self.prefix = prefix
        self.timeout = timeout
        self.region = str(config.get("region") or "us-east-1")
        self.keys = (config.get("access_key"), config.get("secret_key"))

    def _request(self, method: str, url: str, body: bytes | None = None) -> bytes | None:
        headers: list[tuple[str, str]] = []
        access, secret = self.keys
        if access and secret:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            headers = sigv4.sign(
                method,
                url,
                [],
                body,
                region=self.region,
                access_key=str(access),
                secret_key=str(secret),
                amz_date=stamp,
            )
        # an explicit type: urllib's default for a body (a form) gets it parsed away by servers
        headers.append(("Content-Type", "application/octet-stream"))
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or (method == "PUT" and exc.code == 409):
                return None  # no such object / the bucket exists already
            raise

    def _url(self, path: str) -> str:
        return f"{self.base}/{sigv4.quote_path(self.prefix + path)}"

    def create_bucket(self) -> None:
        self._request("PUT", self.base)

    def list_paths(self) -> list[str]:
        query = urllib.parse.urlencode({"list-type": "2", "prefix": self.prefix})
        listing = self._request("GET", f"{self.base}?{query}") or b"<none/>"
        keys = (
            e.text or "" for e in ElementTree.fromstring(listing).iter() if e.tag.endswith("Key")
        )
        return sorted(key[len(self.prefix) :] for key in keys)

    def read(self, path: str) -> bytes | None:
        return self._request("GET", self._url(path))

    def write(self, path: str, data: bytes, expected: str | None) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        self._request("PUT", self._url(path), data)
        return True

    def remove(self, path: str, expected: str) -> bool:
        if _digest(self.read(path)) != expected:
            return False
        self._request("DELETE", self._url(path))
        return True

    def leftovers(self) -> list[str]:
        return []


# -- the subject: one source with its two sides -----------------------------------------------


class Subject(ABC):
    """One data-block source under test: its outside side, its block store, its bases."""

    outside: CheckedOutside
    blocks: BlockStore

    @property
    def steps(self) -> list[str]:
        """What the case did so far (said when it fails)."""
        found: list[str] = self.__dict__.setdefault("_steps", [])
        return found

    def put(self, path: str, text: str) -> None:
        """Write ``path`` outside, as a person would: over whatever it holds."""
        self.steps.append(f"wrote {path!r} outside as {text!r}")
        self.outside.write(path, text.encode("utf-8"), _digest(self.outside.read(path)))

    def text(self, path: str) -> str | None:
        data = self.outside.read(path)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError(f"{path!r} outside is no UTF-8 text: {data[:80]!r}") from None

    def drop(self, path: str) -> None:
        """Delete ``path`` outside, as a person would."""
        self.steps.append(f"deleted {path!r} outside")
        data = self.outside.read(path)
        if data is not None:
            self.outside.remove(path, sha256(data))

    @abstractmethod
    def label(self, path: str) -> str:
        """The label of the block that mirrors ``path`` (before or after its first sync)."""

    @abstractmethod
    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        """Reconcile ``paths``; None: every candidate (bound paths and outside paths)."""

    @abstractmethod
    def base(self, path: str) -> str | None:
        """The path's sync base; None if it has none."""

    def block(self, path: str) -> str | None:
        try:
            return self.blocks.read(OWNER, self.label(path)).content
        except BlockNotFound:
            return None

    def create_block(self, path: str, text: str) -> None:
        label = self.label(path)
        self.steps.append(f"created block {label!r} as {text!r}")
        self.blocks.create(OWNER, label, text, author="agent:alice")

    def edit_block(self, path: str, text: str) -> None:
        label = self.label(path)
        self.steps.append(f"edited block {label!r} to {text!r}")
        self.blocks.update(OWNER, label, text, author="agent:alice")

    def delete_block(self, path: str) -> None:
        label = self.label(path)
        self.steps.append(f"deleted block {label!r}")
        self.blocks.delete(OWNER, label, author="agent:alice")

    def synced(self, path: str, text: str) -> None:
        """The outside path, its block and its base all holding ``text``."""
        self.put(path, text)
        _expect(self.reconcile([path]), [Resolved(path, "disk->agent")], f"first sync of {path}")
        _expect((self.block(path), self.base(path)), (text, text), f"block and base of {path}")


class PluginSubject(Subject):
    """A data-block plugin configured in ``ws`` under :data:`KEY`, driven as reconcile does."""

    def __init__(self, ws: Workspace, outside: CheckedOutside) -> None:
        self.ws = ws
        self.outside = outside
        self.blocks = ws.blocks
        self._git = GitStore(ws.repo_path)
        self._bases = SyncBases(self._git, KEY)
        self._scheme: tuple[str, str] | None = None  # a label is head + path + tail

    def close(self) -> None:
        self._git.close()

    @property
    def source(self) -> PluginSource:
        source = self.ws.reconciler.source(KEY)
        assert isinstance(source, PluginSource)
        return source

    def reconcile(self, paths: list[str] | None) -> list[ReconcileResult]:
        asked = "every path" if paths is None else paths
        try:
            outcome = self.source.reconcile_outcome(paths)
        except BlocksyncError:
            self.steps.append(f"reconciled {asked}: it raised the error above")
            raise
        said = ", ".join(f"{s.path!r}: {s.reason}" for s in outcome.skipped)
        self.steps.append(
            f"reconciled {asked}: {outcome.results!r}" + (f" (skipped {said})" if said else "")
        )
        return outcome.results

    @property
    def seed(self) -> bool:
        """Did the host keep a base or a conflict for the plugin by seed means?"""
        return self.source.seed.used

    def base(self, path: str) -> str | None:
        found = self._bases.get(path)
        return None if found is None else found[1]

    def label(self, path: str) -> str:
        """The bound label; else the source's label namespace and the path; else the scheme
        learnt from a bound path (its label with that path in it replaced), syncing a probe
        path to learn it if nothing was bound yet."""
        found = self._bases.get(path)
        if found is not None:
            self._learn(found[0].path, found[0].label)
            return found[0].label
        namespace = self.source.label_namespace()
        if namespace:
            return namespace + path
        if self._scheme is None:
            for binding in self._bases.bindings():
                self._learn(binding.path, binding.label)
        if self._scheme is None:
            probe = f"probe-{secrets.token_hex(4)}.md"
            self.put(probe, "probe\n")
            self.reconcile([probe])
            found = self._bases.get(probe)
            if found is not None:
                self._learn(probe, found[0].label)
        if self._scheme is None:
            raise AssertionError(
                "cannot tell which block mirrors a path: the source declares no label namespace"
                " and no bound block's label contains its path (a probe path written outside"
                " bound nothing: is `outside` in the table the plugin's shape?)"
            )
        head, tail = self._scheme
        return head + path + tail

    def _learn(self, path: str, label: str) -> None:
        if self._scheme is None and path in label:
            head, _, tail = label.rpartition(path)
            self._scheme = (head, tail)


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    doc: str
    run: Callable[[Subject], None]


CASES: list[Case] = []


def _case(fn: Callable[[Subject], None]) -> Callable[[Subject], None]:
    CASES.append(Case(fn.__name__, (fn.__doc__ or "").strip(), fn))
    return fn


def _expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _sorted(results: list[ReconcileResult]) -> list[ReconcileResult]:
    return sorted(results, key=lambda r: r.path)


@_case
def new_file_becomes_a_block(s: Subject) -> None:
    """A new outside path becomes a block and a base."""
    s.put("a.md", "one\n")
    s.put("sub/b.md", "two\n")
    _expect(
        _sorted(s.reconcile(None)),
        [Resolved("a.md", "disk->agent"), Resolved("sub/b.md", "disk->agent")],
        "results",
    )
    _expect((s.block("a.md"), s.block("sub/b.md")), ("one\n", "two\n"), "blocks")
    _expect((s.base("a.md"), s.base("sub/b.md")), ("one\n", "two\n"), "bases")


@_case
def outside_edit_goes_to_the_block(s: Subject) -> None:
    """An outside edit reaches the block; the base advances."""
    s.synced("a.md", "one\n")
    s.put("a.md", "two\n")
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "disk->agent")], "results")
    _expect((s.block("a.md"), s.base("a.md")), ("two\n", "two\n"), "block and base")


@_case
def block_edit_goes_outside(s: Subject) -> None:
    """A block edit reaches the outside, atomically (no temporary left behind)."""
    s.synced("a.md", "one\n")
    s.edit_block("a.md", "agent\n")
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "agent->disk")], "results")
    _expect((s.text("a.md"), s.base("a.md")), ("agent\n", "agent\n"), "outside and base")
    _expect(s.outside.leftovers(), [], "temporary files")


@_case
def disjoint_edits_are_merged(s: Subject) -> None:
    """Edits to different lines on both sides merge into both sides."""
    s.synced("a.md", "a\nb\nc\n")
    s.put("a.md", "A\nb\nc\n")
    s.edit_block("a.md", "a\nb\nC\n")
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "merged")], "results")
    merged = "A\nb\nC\n"
    _expect((s.text("a.md"), s.block("a.md"), s.base("a.md")), (merged,) * 3, "all sides")


@_case
def overlapping_edits_need_resolution(s: Subject) -> None:
    """Edits to the same line conflict and change nothing, run after run."""
    s.synced("a.md", "a\nb\nc\n")
    s.put("a.md", "X\nb\nc\n")
    s.edit_block("a.md", "Y\nb\nc\n")
    head = s.blocks.head()
    conflict = [NeedsResolution("a.md", "X\nb\nc\n", "Y\nb\nc\n")]
    _expect(s.reconcile(["a.md"]), conflict, "results")
    _expect(
        (s.text("a.md"), s.block("a.md"), s.base("a.md")),
        ("X\nb\nc\n", "Y\nb\nc\n", "a\nb\nc\n"),
        "outside, block and base",
    )
    _expect(s.blocks.head(), head, "block commits")
    _expect(s.reconcile(["a.md"]), conflict, "results of a second run")


@_case
def identical_edits_only_advance_the_base(s: Subject) -> None:
    """The same edit on both sides advances the base and writes no block version."""
    s.synced("a.md", "one\n")
    s.put("a.md", "same\n")
    s.edit_block("a.md", "same\n")
    head = s.blocks.head()
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "identical")], "results")
    _expect((s.base("a.md"), s.blocks.head()), ("same\n", head), "base and block commits")


@_case
def no_base_and_two_contents_is_a_conflict(s: Subject) -> None:
    """Without a base, two different contents are a conflict (never an empty base guessed)."""
    s.create_block("a.md", "agent\n")
    s.put("a.md", "disk\n")
    _expect(s.reconcile(["a.md"]), [NeedsResolution("a.md", "disk\n", "agent\n")], "results")
    _expect(s.base("a.md"), None, "base")


@_case
def outside_deletion_deletes_the_block(s: Subject) -> None:
    """With admin, a path deleted outside deletes its block and base."""
    s.synced("a.md", "one\n")
    s.drop("a.md")
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "delete-block")], "results")
    _expect((s.block("a.md"), s.base("a.md")), (None, None), "block and base")
    _expect(s.reconcile(None), [], "a run over nothing")


@_case
def block_deletion_deletes_outside(s: Subject) -> None:
    """With admin, a deleted block deletes the outside path and the base."""
    s.synced("a.md", "one\n")
    s.delete_block("a.md")
    _expect(s.reconcile(["a.md"]), [Resolved("a.md", "delete-source")], "results")
    _expect((s.text("a.md"), s.base("a.md")), (None, None), "outside and base")


@_case
def delete_versus_modify_is_a_conflict(s: Subject) -> None:
    """Deleted on one side and changed on the other is always a conflict."""
    s.synced("a.md", "one\n")
    s.drop("a.md")
    s.edit_block("a.md", "agent\n")
    _expect(s.reconcile(["a.md"]), [NeedsResolution("a.md", "", "agent\n")], "results")
    _expect(s.base("a.md"), "one\n", "base")


@_case
def a_second_run_reports_only_no_change(s: Subject) -> None:
    """After a run, a run with nothing changed reports no-change for every path."""
    s.put("a.md", "one\n")
    s.put("b.md", "b\n")
    s.reconcile(None)
    s.put("a.md", "disk\n")
    s.edit_block("b.md", "agent\n")
    s.put("c.md", "new\n")
    first = s.reconcile(None)
    _expect([r for r in first if isinstance(r, NoChange)], [], "no-change results of the run")
    head = s.blocks.head()
    _expect(
        _sorted(s.reconcile(None)),
        [NoChange("a.md"), NoChange("b.md"), NoChange("c.md")],
        "the second run",
    )
    _expect(s.blocks.head(), head, "block commits")


# -- plugin check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    detail: str  # why it failed ("" when it passed): what it did, expected, got
    seconds: float
    #: the host kept a base or a conflict for the plugin by seed means in this case
    seed: bool = False


@dataclass(frozen=True)
class CheckReport:
    plugin: str
    outside: str  # "folder", "json <file>", "s3 <endpoint>/<bucket>"; or "tool", "data-stream"
    results: list[CaseResult]
    data_block: bool = True  # the data-block cases ran (a level says something)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def level(self) -> str | None:
        """``sync``: the plugin kept its own bases and conflicts through ``sync``; ``seed``:
        the host kept some for it, the plugin using the seed's functions alone (None: no
        data-block cases ran)."""
        if not self.data_block:
            return None
        return "seed" if any(r.seed for r in self.results) else "sync"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "level": self.level}


def load_table(path: Path | None) -> dict[str, Any]:
    """The plugin's data-source table from a TOML file (``--config``): the keys a
    ``[agents.<agent>.data_sources.<key>]`` table of ``type = "wasm"`` holds (``path`` and
    ``type`` are set by the check)."""
    if path is None:
        return {k: dict(v) if isinstance(v, dict) else v for k, v in DEFAULT_TABLE.items()}
    table = config_mod.read_toml(path)
    for key in ("type", "path"):
        table.pop(key, None)
    if not isinstance(table.get("config", {}), dict):
        raise ConfigError(f"{path}: `config` must be a table")
    return table


def check_plugin(
    wasm: Path,
    table: Mapping[str, Any] | None = None,
    *,
    cache_folder: Path | None = None,
    progress: Callable[[CaseResult], None] | None = None,
) -> CheckReport:
    """Run every case against the plugin ``wasm`` configured with ``table`` (see
    :func:`load_table`; its ``outside`` says how the suite reaches the outside side, see the
    module docstring), each in a throwaway store; ``progress`` is told each result."""
    table = dict(DEFAULT_TABLE if table is None else table)
    shape = _shape(table.pop("outside", None), dict(table.get("config", {})))
    results = []
    with tempfile.TemporaryDirectory(prefix="blocksync-check-cache-") as scratch:
        cache = (cache_folder or Path(scratch)).resolve()  # the stores link to it
        found = inspect_file(wasm, cache)  # refuse once, before any case, what cannot load
        if found.problem is not None:
            raise PluginRefused(wasm.name, found.info.version, "load", found.problem)
        exports = found.info.exports
        runs: list[Callable[[], CaseResult]]
        if "data-block" in exports:
            runs = [partial(_run, case, wasm.resolve(), table, shape, cache) for case in CASES]
        elif "tool" in exports or "data-stream" in exports:
            kind_cases = list(TOOL_CASES) if "tool" in exports else []
            kind_cases += STREAM_CASES if "data-stream" in exports else []
            runs = [partial(_run_plugin_case, c, wasm.resolve(), table, cache) for c in kind_cases]
            shape = " and ".join(k for k in ("tool", "data-stream") if k in exports)
        else:
            raise UsageError(f"{wasm} exports no data-block, data-stream or tool: nothing to check")
        for run in runs:
            results.append(run())
            if progress is not None:
                progress(results[-1])
    return CheckReport(str(wasm), shape, results, "data-block" in exports)


def _shape(declared: object, plugin_config: Mapping[str, Any]) -> str:
    """The outside's shape: ``s3 <endpoint>/<bucket>``, ``json <file>`` or ``folder``."""
    if "endpoint" in plugin_config and "bucket" in plugin_config:
        return f"s3 {plugin_config['endpoint']}/{plugin_config['bucket']}"
    if declared is None or declared == "folder":
        return "folder"
    if isinstance(declared, str) and declared.startswith("json:") and declared[5:].strip():
        name = declared[5:].strip()
        if "/" not in name and name not in (".", ".."):
            return f"json {name}"
    raise UsageError(
        f'outside = {declared!r}: expected "folder" (a file per path) or "json:<file>" (one JSON'
        " object path -> text in that file of the granted folder)"
    )


def _run(
    case: Case, wasm: Path, table: Mapping[str, Any], shape: str, cache_folder: Path
) -> CaseResult:
    start = time.perf_counter()
    steps: list[str] = []
    seed = False
    try:
        with _subject(wasm, table, shape, cache_folder) as subject:
            steps = subject.steps
            try:
                case.run(subject)
            finally:
                seed = subject.seed
    except AssertionError as exc:
        return CaseResult(case.name, False, _failure(str(exc), steps), _since(start), seed)
    except (BlocksyncError, OSError, urllib.error.URLError) as exc:
        detail = _failure(f"{type(exc).__name__}: {exc}", steps)
        return CaseResult(case.name, False, detail, _since(start), seed)
    return CaseResult(case.name, True, "", _since(start), seed)


def _since(start: float) -> float:
    return time.perf_counter() - start


def _failure(what: str, steps: list[str]) -> str:
    """A failing case's detail: what it expected and got, then what the suite did."""
    did = "".join(f"\n  {n}. {step}" for n, step in enumerate(steps, 1))
    return what + ("\nthe suite did:" + did if steps else "")


def _timed(name: str, run: Callable[[], str]) -> CaseResult:
    """Run one case: failed with what it raised, or passed with the note it returned."""
    start = time.perf_counter()
    try:
        note = run()
    except AssertionError as exc:
        return CaseResult(name, False, str(exc), time.perf_counter() - start)
    except (BlocksyncError, OSError, urllib.error.URLError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return CaseResult(name, False, detail, time.perf_counter() - start)
    return CaseResult(name, True, note, time.perf_counter() - start)


@contextmanager
def _subject(
    wasm: Path, table: Mapping[str, Any], shape: str, cache_folder: Path
) -> Iterator[PluginSubject]:
    with tempfile.TemporaryDirectory(prefix="blocksync-check-") as tmp:
        folder = Path(tmp)
        source: dict[str, Any] = {**table, "type": "wasm", "path": str(wasm)}
        outside: CheckedOutside
        if shape.startswith("s3 "):
            prefix = f"blocksync-check-{secrets.token_hex(4)}/"
            source["config"] = {**table["config"], "prefix": prefix}
            s3_outside = S3Outside(table["config"], prefix)
            s3_outside.create_bucket()
            outside = s3_outside
        else:
            root = folder / "outside"
            root.mkdir()
            source.update(dir=str(root), dir_mode="read-write")
            json_file = shape.removeprefix("json ") if shape.startswith("json ") else None
            outside = FolderOutside(root) if json_file is None else JsonFileOutside(root, json_file)
        with _throwaway_store(folder / "store", source, cache_folder) as ws:
            subject = PluginSubject(ws, outside)
            try:
                yield subject
            finally:
                subject.close()


@contextmanager
def _throwaway_store(
    store: Path, source: Mapping[str, Any], cache_folder: Path
) -> Iterator[Workspace]:
    """A new store at ``store`` with the plugin configured as ``source`` (agent OWNER, key KEY)."""
    Workspace.init(store, author="human:check").close()
    (store / config_mod.CONFIG_FILE).write_text(
        config_mod.toml_table(("agents", OWNER, "data_sources", KEY), dict(source)),
        encoding="utf-8",
    )
    # one compile for every case: the stores share the check's compile cache
    (store / "cache").rmdir()
    (store / "cache").symlink_to(cache_folder, target_is_directory=True)
    with Workspace(store, author="human:check") as ws:
        yield ws


# -- tool and stream plugins: what `plugin check` runs when there is no data-block -------------


@dataclass(frozen=True)
class PluginCase:
    """A case run on a workspace where the plugin is configured as KEY of agent OWNER: it
    raises AssertionError (or a BlocksyncError) when it fails, and may return a note."""

    name: str
    run: Callable[[Workspace], str]


def _tool(ws: Workspace) -> ToolEntry:
    problems = [p.error for p in ws.tools.problems() if p.plugin == KEY]
    if problems:
        raise AssertionError(f"the tool cannot be offered: {problems[0]}")
    mine = [e for e in ws.tools.list() if e.plugin == KEY]
    _expect(len(mine), 1, "tools the plugin offers")
    return mine[0]


def tool_describes_itself(ws: Workspace) -> str:
    """It loads, its name is a tool name, its schemas are JSON Schemas (the host checks all of
    that when it offers the tool) and it has a description."""
    entry = _tool(ws)
    _expect(bool(entry.description.strip()), True, "a non-empty description")
    return ""


def tool_runs_its_examples(ws: Workspace) -> str:
    """Each of its parameters schema's ``examples`` is valid input, and the output of a call
    with it is valid output (the host checks both)."""
    entry = _tool(ws)
    schema = entry.parameters_schema
    examples = schema.get("examples") if isinstance(schema, dict) else None
    if not isinstance(examples, list) or not examples:
        return "not run: its parameters schema lists no `examples` to call it with"
    for example in examples:
        ws.tools.run(entry.name, example, agent=OWNER)
    return ""


def stream_moves_through_its_states(ws: Workspace) -> str:
    """start, pause, resume and stop each succeed and reach the state they name."""
    stream = ws.streams.get(KEY)
    for move, state in (
        (partial(stream.start, OWNER), "running"),
        (stream.pause, "paused"),
        (stream.resume, "running"),
        (stream.stop, "stopped"),
    ):
        _expect(move().state, state, "the state")
    return ""


def stream_pulls(ws: Workspace) -> str:
    """Started, a pull succeeds, and a second pull delivers nothing the first one did."""
    stream = ws.streams.get(KEY)
    stream.start(OWNER)
    if not stream.supports_pull():
        return "not run: it does not support pull"
    first = stream.pull()
    second = stream.pull()
    again = {n.id for n in first.notifications} & {n.id for n in second.notifications}
    _expect(sorted(again), [], "notifications the second pull delivered again")
    return f"{first.returned} notification(s), then {second.returned}"


TOOL_CASES = [PluginCase(f.__name__, f) for f in (tool_describes_itself, tool_runs_its_examples)]
STREAM_CASES = [PluginCase(f.__name__, f) for f in (stream_moves_through_its_states, stream_pulls)]


def _run_plugin_case(
    case: PluginCase, wasm: Path, table: Mapping[str, Any], cache_folder: Path
) -> CaseResult:
    source: dict[str, Any] = {**table, "type": "wasm", "path": str(wasm)}
    if case in STREAM_CASES:
        source.setdefault("source_kind", "stream")

    def run() -> str:
        with (
            tempfile.TemporaryDirectory(prefix="blocksync-check-") as tmp,
            _throwaway_store(Path(tmp) / "store", source, cache_folder) as ws,
        ):
            return case.run(ws)

    return _timed(case.name, run)
