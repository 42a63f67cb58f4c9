"""The ``blocksync`` command: each command parses, makes one library call, and renders.

Exit codes: 0 success; 1 failure; 2 usage (bad arguments or input); 4 not found; 5 a concurrent
change won (stale ``--expected-version``); 3 belongs to reconcile/sync (open conflicts); 75 to the
commands that take ``store/run.lock`` -- sync, reconcile (not ``--dry-run``), conflicts resolve
and undo -- when another run holds it; 130 and 143 to those commands (and pull, push) stopped by
SIGINT or SIGTERM (:class:`~blocksync.errors.Interrupted`). No traceback reaches the user: library errors print as
``error: <message>``.

Text output never hands a terminal raw control characters from what it did not write itself --
file names, labels, reasons, plugin output, error messages: each such field goes through
:func:`blocksync.text.printable` (``\x1b`` for ESC, ``\n`` for a newline, ...) where it is
rendered. Block content (``block read``, ``block diff``) is printed exactly, as is ``--json``.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from . import cli_progress, interrupts, logs
from .errors import BlocksyncError, UsageError
from .shared import progress
from .text import char_diff, decode_text, printable, render_char_diff

if TYPE_CHECKING:
    from . import demo as demo_mod
    from . import plugins, workspace
    from . import runner as sync_mod
    from . import testing as conformance
    from .agents import tools as tools_mod
    from .agents.streams import StreamReport
    from .index.conflicts import Take
    from .index.notifications import StoredNotification
    from .index.runs import Run
    from .plugins import trust
    from .plugins.tooling import build as build_mod
    from .plugins.tooling import provenance
    from .plugins.tooling import scaffold as scaffold_mod
    from .store import blocks as blocks_mod
    from .store.blocks import Block, Keep, Version
    from .sync.reconciler import ReconcileReport
else:

    class _OnFirstUse(ModuleType):
        """A module imported when a command first reads an attribute of it: each command pays
        only for what it uses (wasmtime, jsonschema, cryptography, dulwich...), so `--version`,
        `--help` and `block read` start fast."""

        def __getattr__(self, name: str) -> Any:
            # read through on every use, never copied: the module stays the one truth
            return getattr(importlib.import_module(self.__name__), name)

    demo_mod = _OnFirstUse("blocksync.demo")
    plugins = _OnFirstUse("blocksync.plugins")
    workspace = _OnFirstUse("blocksync.workspace")
    sync_mod = _OnFirstUse("blocksync.runner")
    conformance = _OnFirstUse("blocksync.testing")
    tools_mod = _OnFirstUse("blocksync.agents.tools")
    trust = _OnFirstUse("blocksync.plugins.trust")
    build_mod = _OnFirstUse("blocksync.plugins.tooling.build")
    provenance = _OnFirstUse("blocksync.plugins.tooling.provenance")
    scaffold_mod = _OnFirstUse("blocksync.plugins.tooling.scaffold")
    blocks_mod = _OnFirstUse("blocksync.store.blocks")

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns every blocksync error into a one-line message and its documented exit code, and
    shows long operations' progress on a terminal (:mod:`blocksync.cli_progress`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # -v / --verbose is accepted after the subcommand too: moved in front of it
        end = args.index("--") if "--" in args else len(args)
        # --json output gets nothing extra, not even on standard error
        ctx.meta["blocksync.json"] = "--json" in args[:end]
        verbose = [a for a in args[:end] if a in ("-v", "--verbose")]
        if verbose:
            args = ["--verbose"] + [a for a in args[:end] if a not in verbose] + args[end:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        json_output = ctx.meta.get("blocksync.json", False)
        shown = cli_progress.for_command(json_output, os.environ, sys.stdout, sys.stderr)
        try:
            with progress.reporting(shown):
                return super().invoke(ctx)
        except BlocksyncError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): main() ends quietly
        except OSError as exc:
            text = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            click.echo(f"error: {printable(text)}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so plainly, show the traceback only on request
            if os.environ.get("BLOCKSYNC_TRACEBACK"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {printable(str(exc))} (a bug in blocksync; run again "
                "with BLOCKSYNC_TRACEBACK=1 to see where, and please report it)",
                err=True,
            )
            ctx.exit(1)


@dataclasses.dataclass
class _Context:
    store: Path
    author: str

    @contextmanager
    def open(self) -> Iterator[workspace.Workspace]:
        with workspace.open(self.store, author=self.author) as ws:
            yield ws


def _default_author() -> str:
    try:
        return f"human:{getpass.getuser()}"
    except (KeyError, OSError):
        return workspace.DEFAULT_AUTHOR


@click.group(cls=_Group)
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BLOCKSYNC_STORE",
    default="store",
    show_default="$BLOCKSYNC_STORE, else ./store",
    help="The store folder.",
)
@click.option(
    "--author",
    envvar="BLOCKSYNC_AUTHOR",
    default=_default_author,
    show_default="$BLOCKSYNC_AUTHOR, else human:<login>",
    help="Who the commits name as their author.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show blocksync's log and every plugin's log lines and output on standard error "
    "(also: BLOCKSYNC_LOG=debug|info|warning|error). Plugins' lines are always kept in "
    "STORE/logs/plugins/NAME.log.",
)
@click.version_option(package_name="blocksync")
@click.pass_context
def cli(ctx: click.Context, store: Path, author: str, verbose: bool) -> None:
    """Versioned memory blocks in git, synced to outside sources through WASM plugins."""
    logs.to_terminal(verbose, os.environ.get("BLOCKSYNC_LOG"))
    ctx.obj = _Context(store, author)


pass_ctx = click.make_pass_decorator(_Context)


def _plain(value: Any) -> Any:
    record = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if record or (isinstance(value, tuple) and hasattr(value, "_fields")):  # or a named tuple
        names = [f.name for f in dataclasses.fields(value)] if record else value._fields
        out = {name: _plain(getattr(value, name)) for name in names}
        if "meta" in out:  # flatten metadata for readers of the JSON
            out.update(out.pop("meta"))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def lock_options(bounds_run: bool = False) -> Callable[[F], F]:
    """``--wait`` and ``--timeout`` of every command that takes the run lock, with one
    meaning: wait for the lock (up to SECONDS) instead of exiting 75 at once. ``bounds_run``:
    sync and reconcile, whose SECONDS also bound the run (sources not started by then fail)."""
    also = (
        " The same SECONDS bound the whole run: sources not started by then are reported failed."
        if bounds_run
        else ""
    )

    def decorate(f: F) -> F:
        f = click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="With --wait: give up (exit 75) after waiting SECONDS for the run lock." + also,
        )(f)
        return click.option(
            "--wait",
            is_flag=True,
            help="Wait for the run lock while another run holds it, instead of exiting 75.",
        )(f)

    return decorate


allow_mass_delete_option = click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Confirm deletions of more than half of a source's synced paths at once (from the "
    "disk, the agent or a remote side); without it such a source is refused (exit 1).",
)


def _content_options(f: F) -> F:
    f = click.option(
        "--file",
        "content_file",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
        help="Read the content from this file ('-' for standard input).",
    )(f)
    return click.option("--content", help="The content as an argument.")(f)


def _meta_options(f: F) -> F:
    f = click.option("--char-limit", type=click.IntRange(min=0), help="Most characters allowed.")(f)
    f = click.option("--schema", help="JSON schema of the content.")(f)
    f = click.option(
        "--type",
        "block_type",
        type=click.Choice(["core", "working", "archival", "log"]),
        help="Block type.",
    )(f)
    return click.option("--description", help="What the block is for.")(f)


def _read_content(
    content: str | None, content_file: Path | None, stdin_fallback: bool
) -> str | None:
    """--content, else --file, else standard input when it is not a terminal (and allowed)."""
    if content is not None and content_file is not None:
        raise UsageError("give the content with --content or --file, not both")
    if content is not None:
        return content
    if content_file is not None and str(content_file) != "-":
        return decode_text(content_file.read_bytes(), str(content_file))
    if content_file is not None or (stdin_fallback and not sys.stdin.isatty()):
        return decode_text(sys.stdin.buffer.read(), "standard input")
    return None


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@pass_ctx
def init(obj: _Context, path: Path | None) -> None:
    """Create a store folder at PATH (default: --store)."""
    store = path or obj.store
    workspace.init(store, author=obj.author).close()
    click.echo(f"created a blocksync store in {printable(str(store))}")


@cli.group()
def block() -> None:
    """Create, read and change memory blocks."""


def _block_name(owner: str, label: str) -> str:
    return printable(f"{owner}/{label}")


def _render_block(b: Block, as_json: bool, verb: str) -> None:
    if as_json:
        _print_json(b)
    else:
        click.echo(f"{verb} {_block_name(b.owner, b.label)} version {b.version} ({b.commit[:12]})")


@block.command("create")
@click.argument("owner")
@click.argument("label")
@_content_options
@_meta_options
@click.option("--message", "-m", help="Commit message.")
@json_option
@pass_ctx
def block_create(
    obj: _Context,
    owner: str,
    label: str,
    content: str | None,
    content_file: Path | None,
    description: str | None,
    block_type: str | None,
    schema: str | None,
    char_limit: int | None,
    message: str | None,
    as_json: bool,
) -> None:
    """Create block LABEL of OWNER (content: --content, --file or standard input)."""
    text = _read_content(content, content_file, stdin_fallback=True) or ""
    with obj.open() as ws:
        b = ws.blocks.create(
            owner,
            label,
            text,
            description=description or "",
            block_type=block_type or "working",
            schema=schema or '{"type": "text"}',
            char_limit=char_limit,
            message=message,
        )
    _render_block(b, as_json, "created")


@block.command("read")
@click.argument("owner")
@click.argument("label")
@click.option("--version", "version", help="A version number or commit id (default: newest).")
@json_option
@pass_ctx
def block_read(obj: _Context, owner: str, label: str, version: str | None, as_json: bool) -> None:
    """Print a block's content (exactly, with no newline added)."""
    with obj.open() as ws:
        b = ws.blocks.read(owner, label, version)
    if as_json:
        _print_json(b)
    else:
        click.echo(b.content, nl=False)


@block.command("update")
@click.argument("owner")
@click.argument("label")
@_content_options
@_meta_options
@click.option("--no-char-limit", is_flag=True, help="Remove the block's char limit.")
@click.option("--expected-version", type=int, help="Fail unless the block is at this version.")
@click.option("--message", "-m", help="Commit message.")
@json_option
@pass_ctx
def block_update(
    obj: _Context,
    owner: str,
    label: str,
    content: str | None,
    content_file: Path | None,
    description: str | None,
    block_type: str | None,
    schema: str | None,
    char_limit: int | None,
    no_char_limit: bool,
    expected_version: int | None,
    message: str | None,
    as_json: bool,
) -> None:
    """Write a new version. Without --content/--file, content comes from standard input unless
    only metadata options are given."""
    if no_char_limit and char_limit is not None:
        raise UsageError("give --char-limit or --no-char-limit, not both")
    limit: int | None | Keep = (
        None if no_char_limit else blocks_mod.KEEP if char_limit is None else char_limit
    )
    meta_only = no_char_limit or any(
        v is not None for v in (description, block_type, schema, char_limit)
    )
    text = _read_content(content, content_file, stdin_fallback=not meta_only)
    if text is None and not meta_only:
        raise UsageError("no content: give --content, --file, or pipe it on standard input")
    with obj.open() as ws:
        b = ws.blocks.update(
            owner,
            label,
            text,
            description=description,
            block_type=block_type,
            schema=schema,
            char_limit=limit,
            expected_version=expected_version,
            message=message,
        )
    _render_block(b, as_json, "updated")


@block.command("delete")
@click.argument("owner")
@click.argument("label")
@click.option("--expected-version", type=int, help="Fail unless the block is at this version.")
@click.option("--message", "-m", help="Commit message.")
@json_option
@pass_ctx
def block_delete(
    obj: _Context,
    owner: str,
    label: str,
    expected_version: int | None,
    message: str | None,
    as_json: bool,
) -> None:
    """Delete a block (its history stays; rollback brings it back)."""
    with obj.open() as ws:
        v = ws.blocks.delete(owner, label, expected_version=expected_version, message=message)
    if as_json:
        _print_json(v)
    else:
        click.echo(f"deleted {_block_name(owner, label)} at version {v.version} ({v.commit[:12]})")


@block.command("list")
@click.argument("owner", required=False)
@json_option
@pass_ctx
def block_list(obj: _Context, owner: str | None, as_json: bool) -> None:
    """List the blocks of OWNER, or of everyone."""
    with obj.open() as ws:
        blocks = ws.blocks.list(owner)
    if as_json:
        _print_json(blocks)
        return
    lines = (
        f"{printable(b.owner)}\t{printable(b.label)}\tv{b.version}\t{b.meta.block_type.value}"
        + (f"  {printable(b.meta.description)}" if b.meta.description else "")
        for b in blocks
    )
    if blocks:  # one write: 100,000 lines echoed one by one take seconds
        click.echo("\n".join(lines))


@block.command("path")
@click.argument("owner")
@click.argument("label")
@json_option
@pass_ctx
def block_path(obj: _Context, owner: str, label: str, as_json: bool) -> None:
    """Print the block's folder in the store's git repository (for `git log -- PATH`)."""
    with obj.open() as ws:
        path = ws.blocks.git_path(owner, label)
    if as_json:
        _print_json({"owner": owner, "label": label, "path": path})
    else:
        click.echo(path)


@block.command("history")
@click.argument("owner")
@click.argument("label")
@json_option
@pass_ctx
def block_history(obj: _Context, owner: str, label: str, as_json: bool) -> None:
    """List every version of a block, oldest first."""
    with obj.open() as ws:
        history = ws.blocks.history(owner, label)
    if as_json:
        _print_json(history)
        return
    for v in history:
        mark = " (deleted)" if v.deleted else ""
        made = _made(v)
        click.echo(
            f"v{v.version}\t{v.commit[:12]}\t{v.timestamp}\t{printable(v.author)}\t"
            f"{printable(v.message)}{mark}" + (f"\t{made}" if made else "")
        )


def _made(v: Version) -> str:
    """A version's provenance as a history line ends in (nothing before trailers existed):
    ``by WHO`` when more precise than its author, ``on MACHINE``, ``run RUN_ID``."""
    parts = [] if v.made_by in (None, v.author) else [f"by {v.made_by}"]
    parts += [] if v.machine is None else [f"on {v.machine}"]
    parts += [] if v.run_id is None else [f"run {v.run_id}"]
    return printable(" ".join(parts))


@block.command("diff")
@click.argument("owner")
@click.argument("label")
@click.option("--from", "from_version", help="Old version (default: the one before --to).")
@click.option("--to", "to_version", help="New version (default: newest).")
@click.option("--chars", is_flag=True, help="Character-level view instead of a unified diff.")
@json_option
@pass_ctx
def block_diff(
    obj: _Context,
    owner: str,
    label: str,
    from_version: str | None,
    to_version: str | None,
    chars: bool,
    as_json: bool,
) -> None:
    """Show what changed between two versions of a block."""
    with obj.open() as ws:
        d = ws.blocks.diff(owner, label, from_version, to_version)
    if as_json:
        doc: dict[str, object] = {
            "owner": owner,
            "label": label,
            "from": d.from_version,
            "to": d.to_version,
        }
        doc.update({"chars": d.chars} if chars else {"unified": d.unified})
        _print_json(doc)
    elif chars:
        click.echo(render_char_diff(d.chars, color=sys.stdout.isatty()))
    else:
        click.echo(d.unified, nl=False)


@block.command("rollback")
@click.argument("owner")
@click.argument("label")
@click.argument("version")
@click.option("--message", "-m", help="Commit message.")
@json_option
@pass_ctx
def block_rollback(
    obj: _Context, owner: str, label: str, version: str, message: str | None, as_json: bool
) -> None:
    """Make an old VERSION current again, as a new version (history is never rewritten)."""
    with obj.open() as ws:
        b = ws.blocks.rollback(owner, label, version, message=message)
    _render_block(b, as_json, "rolled back")


@cli.group()
def index() -> None:
    """index.db: versions, conflicts, runs, notifications, streams (all re-derivable from git)."""


@index.command("rebuild")
@pass_ctx
def index_rebuild(obj: _Context) -> None:
    """Recreate index.db from the repository."""
    workspace.rebuild_index(obj.store)
    click.echo(f"rebuilt {obj.store / 'index.db'}")


@cli.command()
@json_option
@pass_ctx
def fsck(obj: _Context, as_json: bool) -> None:
    """Check the repository and the index; exit 1 if anything is wrong."""
    report = workspace.fsck(obj.store)
    if as_json:
        _print_json({**_plain(report), "ok": report.ok})
    else:
        for p in report.problems:
            click.echo(f"{p.area}: {printable(p.message)}")
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(
            f"{state}: {report.commits} commits, {report.objects_checked} objects, "
            f"{report.blocks} blocks checked"
        )
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=workspace.GC_GRACE / 60,
    show_default=True,
    metavar="MINUTES",
    help="Keep unreferenced objects younger than this (a writer may not have moved its ref yet).",
)
@lock_options()
@json_option
@pass_ctx
def gc(obj: _Context, grace: float, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Pack the repository into one pack and prune what no ref references (never history).

    Takes the run lock: exit 75 if another run (a sync, a reconcile) holds it.
    """
    with obj.open() as ws, _writing():
        result = ws.gc(grace=grace * 60, wait=wait, timeout=timeout)
    if as_json:
        _print_json(result.to_json())
    else:
        click.echo(
            f"gc ({result.engine}): {result.packed} objects packed, {result.pruned} pruned, "
            f"{result.kept_young} unreferenced kept (younger than {grace:g} min); "
            f"{result.bytes_before} -> {result.bytes_after} bytes"
        )


@cli.group()
def plugin() -> None:
    """Build, inspect, check, sign and list WebAssembly component plugins."""


@plugin.command("new")
@click.argument("name", type=click.Path(path_type=Path))
@click.option(
    "--lang",
    "language",
    default="python",
    show_default=True,
    help="python or javascript.",
)
@click.option(
    "--kind",
    help="data-block, data-stream or tool (default: data-block in Python, tool in JavaScript).",
)
def plugin_new(name: Path, language: str, kind: str | None) -> None:
    """Make the folder NAME: a commented plugin skeleton that `plugin build NAME` and
    `plugin check NAME.wasm` pass unchanged, with a README showing its blocksync.toml table."""
    made = scaffold_mod.new_plugin(name, language=language, kind=kind)
    click.echo(f"made {made.folder}/ ({made.language} {made.kind}: {', '.join(made.files)})")
    click.echo(f"next: blocksync plugin build {name} && blocksync plugin check {made.output.name}")


@plugin.command("build")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .wasm file to write (default: SOURCE.wasm beside the folder).",
)
@click.option("--world", help="WIT world (default: from what the source implements).")
@click.option(
    "--wasi/--no-wasi",
    default=None,
    help="Force WASI imports on or off (default: only if the plugin needs files).",
)
@json_option
@pass_ctx
def plugin_build(
    obj: _Context,
    source: Path,
    output: Path | None,
    world: str | None,
    wasi: bool | None,
    as_json: bool,
) -> None:
    """Build the plugin in folder SOURCE (Python: its app.py; JavaScript: app.js and
    package.json) into a component; inside a store (--store), also compile it into the store's
    cache, so its first use there starts at once."""
    cache = obj.store / "cache" if (obj.store / "repo").is_dir() else None
    result = build_mod.build(source, output, world=world, wasi=wasi, cache_folder=cache)
    if as_json:
        _print_json({k: v for k, v in _plain(result).items() if k != "log"})
        return
    for warning in result.warnings:
        click.echo(f"warning: {printable(warning)}", err=True)
    click.echo(
        f"built {result.path} ({result.world}, {result.size / 1e6:.1f} MB, "
        f"{'with' if result.wasi else 'no'} WASI, {result.seconds:.1f} s) sha256 {result.sha256}"
    )


@plugin.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_ctx
def plugin_inspect(obj: _Context, path: Path, as_json: bool) -> None:
    """Show a component's exports, versions, imports, size and sha256, and whether blocksync
    would load it (exit 1 if not)."""
    cache = obj.store / "cache" if (obj.store / "cache").is_dir() else None
    found = plugins.inspect_file(path, cache)
    info = found.info
    namespace = found.label_namespace
    if as_json:
        _print_json(
            {
                "path": str(info.path),
                "sha256": info.sha256,
                "size": info.size,
                "exports": info.exports,
                "imports": list(info.imports),
                "wasi": info.wasi,
                "label_namespace": namespace,
                "loadable": found.problem is None,
                "problem": found.problem,
            }
        )
    else:
        click.echo(f"{info.path}: {info.size:,} bytes, sha256 {info.sha256}")
        exports = ", ".join(f"{i}@{v}" for i, v in info.exports.items()) or "none"
        click.echo(f"exports: {printable(exports)}")
        wasi = [i for i in info.imports if i.startswith("wasi:")]
        other = [i for i in info.imports if not i.startswith("wasi:")]
        click.echo(
            f"imports: {printable(', '.join(other)) or 'none'}"
            + (f"; {len(wasi)} WASI interfaces" if wasi else "; no WASI")
        )
        if namespace is not None:
            click.echo(f"label namespace: {printable(namespace)}")
        click.echo(
            "loadable: yes" if found.problem is None else f"refused: {printable(found.problem)}"
        )
    if found.problem is not None:
        sys.exit(1)


@plugin.command("list")
@json_option
@pass_ctx
def plugin_list(obj: _Context, as_json: bool) -> None:
    """Configured and discovered plugins (store/plugins/*.wasm): interfaces, version, sha256,
    trust and last error."""
    with obj.open() as ws:
        entries = ws.plugins.list()
    if as_json:
        _print_json([e.to_json() for e in entries])
        return
    for e in entries:
        where = f"attached to {e.agent}" if e.agent else "not attached"
        how = " + ".join(
            w for w, on in (("configured", e.configured), ("discovered", e.discovered)) if on
        )
        click.echo(f"{printable(e.key)}: {printable(str(e.path))} ({how}, {printable(where)})")
        click.echo(
            f"  exports {printable(', '.join(e.interfaces)) or 'unknown'}; "
            f"version {printable(str(e.version))}; "
            f"sha256 {e.sha256 or '-'}"
        )
        click.echo(
            f"  trust: {printable(e.trust)}"
            + (f"\n  last error: {printable(e.last_error)}" if e.last_error else "")
        )


@plugin.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def plugin_keygen(path: Path) -> None:
    """Make an Ed25519 key pair: the private key in PATH (mode 0600), the public one in
    PATH.pub, printed for blocksync.toml ([trust] keys)."""
    public = trust.generate_key(path)
    click.echo(f"private key {path}, public key {trust.public_key_path(path)}:")
    click.echo(public)


@plugin.command("sign")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The private key file (from plugin keygen).",
)
def plugin_sign(path: Path, key_path: Path) -> None:
    """Sign the plugin PATH: a detached signature in PATH.sig."""
    sig = trust.sign(path, key_path)
    verdict = trust.verify(path)
    click.echo(f"signed {path} (sha256 {verdict.sha256}) with {verdict.key}: {sig}")


@plugin.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "keys",
    multiple=True,
    help="A trusted public key (ed25519:... or a .pub file; repeatable). Without one: "
    "checked against the key the signature names.",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also check that PATH was built from this source folder (the source hash the build "
    "records in it); the signature is then checked only if there is one or --key is given.",
)
@json_option
def plugin_verify(path: Path, keys: tuple[str, ...], source: Path | None, as_json: bool) -> None:
    """Check the plugin PATH against its signature PATH.sig (exit 1 unless it is good), and
    with --source against the folder it was built from."""
    checked = None if source is None else provenance.verify_source(path, source)
    verdict = None
    if source is None or keys or trust.signature_path(path).exists():
        trusted = [trust.load_public_key(k) for k in keys] or None
        verdict = trust.verify(path, trusted)
    if as_json:
        out: dict[str, Any] = {}
        if verdict is not None:
            out.update({**_plain(verdict), "ok": verdict.ok})
        if checked is not None:
            out.update(source=_plain(checked), ok=checked.ok and out.get("ok", True))
        _print_json(out)
    else:
        if verdict is not None:
            click.echo(f"{verdict.state}: {printable(verdict.detail)}")
        if checked is not None:
            click.echo(f"source {'ok' if checked.ok else 'MISMATCH'}: {printable(checked.detail)}")
    if (verdict is not None and not verdict.ok) or (checked is not None and not checked.ok):
        sys.exit(1)


@plugin.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file with the plugin's data-source table (config, allowed_hosts, "
    'limits...; default: config = { owner = "alice", permission = "admin" }).',
)
@json_option
@pass_ctx
def plugin_check(obj: _Context, path: Path, config_file: Path | None, as_json: bool) -> None:
    """Run the data-block conformance suite against the plugin PATH, each case in a throwaway
    store, and print a pass/fail table (exit 1 if a case fails). Compiles into the store's
    cache when there is a store (a second check starts at once)."""
    table = conformance.load_table(config_file)
    cache = obj.store / "cache" if (obj.store / "cache").is_dir() else None

    def progress(result: conformance.CaseResult) -> None:
        if not as_json:
            mark = "pass" if result.passed else "FAIL"
            click.echo(
                f"{mark}  {result.name:40} {result.seconds:6.2f} s"
                + "".join(f"\n      {printable(line)}" for line in result.detail.splitlines())
            )

    report = conformance.check_plugin(path, table, cache_folder=cache, progress=progress)
    if as_json:
        _print_json(report.to_json())
    else:
        failed = sum(not r.passed for r in report.results)
        click.echo(
            f"{len(report.results) - failed} of {len(report.results)} cases passed "
            f"({report.outside}{'' if report.level is None else f'; {report.level} level'})"
        )
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--source", "sources", multiple=True, help="Reconcile only this source (repeatable).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Decide every path, write nothing; takes no run lock, so it runs beside a sync.",
)
@lock_options(bounds_run=True)
@allow_mass_delete_option
@json_option
@pass_ctx
def reconcile(
    obj: _Context,
    paths: tuple[str, ...],
    sources: tuple[str, ...],
    dry_run: bool,
    wait: bool,
    timeout: float | None,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Reconcile the data sources with their blocks, under the run lock like sync.

    Exit 0 clean, 3 open conflicts, 1 a source failed (wins over 3), 75 another run holds the lock.
    """
    # a dry run writes nothing: no lock, and no signal handling of its own either
    with obj.open() as ws, _writing(not dry_run):
        report = ws.reconcile(
            list(sources),
            list(paths) or None,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            allow_mass_delete=allow_mass_delete,
        )
        if not dry_run and (stop := report.interruption()) is not None:
            raise stop
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(render_report(report))
    sys.exit(report.exit_code)


def _writing(writes: bool = True) -> AbstractContextManager[None]:
    """A writer command records SIGINT/SIGTERM and stops at its next safe point
    (:mod:`blocksync.interrupts`); the library itself installs no handler."""
    return interrupts.handling() if writes else nullcontext()


def render_report(report: ReconcileReport) -> str:
    lines = [f"{report.run_id}{' (dry run: nothing written)' if report.dry_run else ''}"]
    for s in report.sources:
        source = printable(s.source)
        if s.error is not None:
            lines.append(f"{source}: FAILED: {printable(s.error)}")
            continue
        lines.append(
            f"{source}: {len(s.resolved)} resolved, {len(s.needs_resolution)} need resolution, "
            f"{s.unchanged} unchanged, {len(s.skipped)} skipped"
        )
        lines += [f"  {printable(how):12} {printable(path)}" for path, how in s.resolved]
        lines += [f"  {'CONFLICT':12} {printable(path)}" for path in s.needs_resolution]
        lines += [
            f"  {'skipped':12} {printable(path)}: {printable(reason)}" for path, reason in s.skipped
        ]
        lines += [
            f"  {'decided':12} {printable(path)}: as conflict {printable(cid)} (still differs)"
            for path, cid in s.held
        ]
    lines.append(f"open conflicts: {report.open_conflicts}")
    return "\n".join(lines)


@cli.group()
def conflicts() -> None:
    """List, show, resolve and undo conflicts."""


@conflicts.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "resolved", "superseded", "vanished", "all"]),
    default="open",
    show_default=True,
)
@click.option("--source", help="Only this source's conflicts.")
@json_option
@pass_ctx
def conflicts_list(obj: _Context, status: str, source: str | None, as_json: bool) -> None:
    """List conflicts (default: open ones)."""
    with obj.open() as ws:
        found = ws.conflicts.list(status, source)
    if as_json:
        _print_json(found)
        return
    for c in found:
        fields = (c.id, c.status, c.source, c.path, f"{c.owner}/{c.label}", c.reason)
        click.echo("\t".join(printable(f) for f in fields))


@conflicts.command("show")
@click.argument("conflict_id")
@json_option
@pass_ctx
def conflicts_show(obj: _Context, conflict_id: str, as_json: bool) -> None:
    """Show a conflict: its base, disk and agent contents, and how the sides differ."""
    with obj.open() as ws:
        c = ws.conflicts.get(conflict_id)
    if as_json:
        _print_json(c)
        return
    click.echo(
        f"{printable(c.id)} ({c.status}) {printable(c.source)}:{printable(c.path)} <-> "
        f"{_block_name(c.owner, c.label)}"
    )
    click.echo(f"reason: {printable(c.reason)}")
    color = sys.stdout.isatty()
    for side, text in (("base", c.base), ("disk", c.disk), ("agent", c.agent)):
        click.echo(f"--- {side}" + (" (absent)" if text is None else ""))
        if text is not None:  # contents, shown: lines and tabs kept, no escape sequence of theirs
            click.echo(printable(text, keep="\n\t"), nl=not text.endswith("\n"))
    click.echo("--- disk -> agent")
    click.echo(render_char_diff(char_diff(c.disk or "", c.agent or ""), color=color))


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option(
    "--take",
    type=click.Choice(["disk", "agent", "merged"]),
    help="Keep one side, or their clean three-way merge.",
)
@click.option(
    "--content-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Resolve with this file's content ('-': standard input).",
)
@lock_options()
@json_option
@pass_ctx
def conflicts_resolve(
    obj: _Context,
    conflict_id: str,
    take: str | None,
    content_file: Path | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Resolve a conflict: the choice becomes a block version, the file and the base follow.

    Takes the run lock: exit 75 if another run (a sync, a reconcile) holds it.
    """
    if (take is None) == (content_file is None):
        raise UsageError("give exactly one of --take or --content-file")
    content = None if content_file is None else _read_content(None, content_file, False)
    with obj.open() as ws, _writing():
        c = ws.conflicts.resolve(
            conflict_id,
            cast("Take | None", take),
            content,
            resolver=obj.author,
            wait=wait,
            timeout=timeout,
        )
    if as_json:
        _print_json(c)
    else:
        click.echo(
            f"resolved {printable(c.id)} ({c.resolution}): {_block_name(c.owner, c.label)} "
            f"version {c.result_version}"
        )


@conflicts.command("undo")
@click.argument("conflict_id")
@lock_options()
@pass_ctx
def conflicts_undo(obj: _Context, conflict_id: str, wait: bool, timeout: float | None) -> None:
    """Undo a resolution: both sides and the base go back to what they were, the conflict reopens.

    Takes the run lock: exit 75 if another run (a sync, a reconcile) holds it.
    """
    with obj.open() as ws, _writing():
        c = ws.conflicts.undo(conflict_id, resolver=obj.author, wait=wait, timeout=timeout)
    click.echo(f"reopened {c.id}")


@cli.command()
@pass_ctx
def demo(obj: _Context) -> None:
    """Walk through blocksync on the store (created if missing)."""
    demo_mod.run(obj.store, obj.author, click.echo)


@cli.command("sync")
@lock_options(bounds_run=True)
@allow_mass_delete_option
@json_option
@pass_ctx
def sync_command(
    obj: _Context, wait: bool, timeout: float | None, allow_mass_delete: bool, as_json: bool
) -> None:
    """The cron job: reconcile every source under the run lock, record the run, report.

    Exit 0 clean, 3 open conflicts, 1 a source failed (wins over 3), 75 another run holds the lock.
    """
    report = sync_mod.sync_store(
        obj.store,
        author=obj.author,
        wait=wait,
        timeout=timeout,
        allow_mass_delete=allow_mass_delete,
    )
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(
            f"sync: {len(report.sources)} source(s) in {report.seconds:.1f} s"
            + (f", after waiting {report.lock_waited:.1f} s for the run lock" if wait else "")
        )
        click.echo(render_report(report.reconcile))
        for s in report.streams:
            click.echo(render_stream(s))
    sys.exit(report.exit_code)


@cli.group(invoke_without_command=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many runs, newest first.",
)
@json_option
@click.pass_context
def runs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List the recorded runs (sync, reconcile), newest first; `runs show RUN_ID` for one.

    Example: blocksync runs --limit 5
    """
    if ctx.invoked_subcommand is not None:
        return
    obj = ctx.find_object(_Context)
    assert obj is not None
    with obj.open() as ws:
        found = ws.runs.list(limit)
    if as_json:
        _print_json([r.to_json() for r in found])
        return
    if not found:
        click.echo("no runs recorded")
        return
    click.echo("\n".join(_run_line(r) for r in found))


def _run_line(r: Run) -> str:
    code = "-" if r.exit_code is None else str(r.exit_code)
    took = "-" if r.seconds is None else f"{r.seconds:.1f} s"
    counts = (
        ""
        if r.sources is None
        else f"{r.sources} source(s), {r.resolved} resolved, {r.needs_resolution} need "
        f"resolution, {r.failed_sources} failed"
    )
    fields = (r.id, r.status, f"exit {code}", r.command, r.started_at, took, counts)
    return "\t".join(printable(f) for f in fields).rstrip("\t")


@runs.command("show")
@click.argument("run_id")
@json_option
@pass_ctx
def runs_show(obj: _Context, run_id: str, as_json: bool) -> None:
    """Show one run (an id, or a unique prefix of one): what it did per source, its errors.

    Example: blocksync runs show run-20261204T1530
    """
    with obj.open() as ws:
        r = ws.runs.get(run_id)
    if as_json:
        _print_json(r.to_json())
        return
    code = "" if r.exit_code is None else f", exit {r.exit_code}"
    lines = [f"{printable(r.id)} ({r.status}{code})", f"command: {printable(r.command)}"]
    lines.append(f"started: {r.started_at} (pid {r.pid})")
    took = "" if r.seconds is None else f" ({r.seconds:.3f} s)"
    lines.append(f"finished: {r.finished_at or '-'}{took}")
    lines += _report_lines(r.report or {})
    click.echo("\n".join(lines))


def _report_lines(report: dict[str, Any]) -> list[str]:
    """A run row's report (a sync's or reconcile's ``to_json()``, or a failure's) as lines."""
    lines: list[str] = []
    for s in report.get("sources", []):
        source = printable(str(s.get("source")))
        took = "" if s.get("seconds") is None else f" in {s['seconds']:.3f} s"
        if s.get("error") is not None:
            lines.append(f"{source}: FAILED{took}: {printable(str(s['error']))}")
            continue
        lines.append(
            f"{source}: {len(s.get('resolved', []))} resolved, "
            f"{len(s.get('needs_resolution', []))} need resolution, {s.get('unchanged', 0)} "
            f"unchanged, {len(s.get('skipped', []))} skipped{took}"
        )
        lines += [
            f"  {printable(str(e['resolution'])):12} {printable(str(e['path']))}"
            for e in s.get("resolved", [])
        ]
        lines += [f"  {'CONFLICT':12} {printable(str(p))}" for p in s.get("needs_resolution", [])]
        lines += [
            f"  {'skipped':12} {printable(str(e['path']))}: {printable(str(e['reason']))}"
            for e in s.get("skipped", [])
        ]
    for stream in report.get("streams", []):
        if stream.get("error") is not None:
            lines.append(
                f"stream {printable(str(stream.get('stream')))}: FAILED: "
                f"{printable(str(stream['error']))}"
            )
    if report.get("error") is not None:
        lines.append(f"error: {printable(str(report['error']))}")
    if "open_conflicts" in report:
        lines.append(f"open conflicts: {report['open_conflicts']}")
    return lines


def render_stream(s: StreamReport) -> str:
    stream = printable(s.stream)
    if s.error is not None:
        return f"stream {stream}: FAILED: {printable(s.error)}"
    if s.skipped is not None:
        return f"stream {stream}: skipped ({printable(s.skipped)})"
    emitted = f" (+{s.emitted} emitted)" if s.emitted else ""
    return (
        f"stream {stream}: {s.pulled} notification(s){emitted} in {s.pulls} pull(s), "
        f"cursor {printable(str(s.cursor))}"
    )


def render_notification(n: StoredNotification) -> str:
    acked = "  (acked)" if n.acked else ""
    lines = [f"{n.id:>4}  {printable(n.source)}  {printable(n.text)}{acked}"]
    for ref, version in zip(n.blocks, n.block_versions or (None,) * len(n.blocks)):
        if version is None:
            lines.append(f"      MISSING block {_block_name(ref.agent_id, ref.label)}")
        else:
            lines.append(f"      block {_block_name(ref.agent_id, ref.label)} v{version}")
    return "\n".join(lines)


@cli.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Acknowledged ones too.")
@click.option("--source", help="Only this plugin's notifications.")
@json_option
@click.pass_context
def notifications(ctx: click.Context, show_all: bool, source: str | None, as_json: bool) -> None:
    """Notifications plugins emitted or streams delivered (default: not acknowledged yet).

    A reference to a block that does not exist is shown as MISSING (JSON: missing_blocks).
    """
    if ctx.invoked_subcommand is not None:
        return
    with ctx.ensure_object(_Context).open() as ws:
        found = ws.notifications.list(unacked=not show_all, source=source)
    if as_json:
        _print_json([n.to_json() for n in found])
        return
    for n in found:
        click.echo(render_notification(n))


@notifications.command("ack")
@click.argument("ids", nargs=-1, type=int, required=True)
@json_option
@pass_ctx
def notifications_ack(obj: _Context, ids: tuple[int, ...], as_json: bool) -> None:
    """Acknowledge notifications by id (exit 4, and none acknowledged, if an id is unknown)."""
    with obj.open() as ws:
        done = ws.notifications.ack(ids)
    if as_json:
        _print_json([n.to_json() for n in done])
    else:
        click.echo(f"acknowledged {len(done)} notification(s)")


@cli.group()
def stream() -> None:
    """Data streams: lifecycle (start, stop, pause, resume), status and pulls."""


@stream.command("list")
@json_option
@pass_ctx
def stream_list(obj: _Context, as_json: bool) -> None:
    """Every configured stream: state, owner, cursor, notifications delivered, last error."""
    with obj.open() as ws:
        found = ws.streams.list()
    if as_json:
        _print_json([s.to_json() for s in found])
        return
    for s in found:
        error = f"  last error: {printable(s.last_error)}" if s.last_error else ""
        click.echo(
            f"{printable(s.key)}\t{s.state}\tcursor {printable(str(s.cursor))}\t{s.delivered} delivered "
            f"in {s.pulls} pull(s){error}"
        )


def _lifecycle(action: str, helptext: str) -> None:
    @stream.command(action, help=helptext)
    @click.argument("key")
    @json_option
    @pass_ctx
    def command(obj: _Context, key: str, as_json: bool) -> None:
        with obj.open() as ws:
            status = getattr(ws.streams.get(key), action)()
        if as_json:
            _print_json(status.to_json())
        else:
            click.echo(f"{status.key}: {status.state}")


_lifecycle("start", "Start stream KEY for the agent it is attached to (stopped -> running).")
_lifecycle("stop", "Stop stream KEY (running or paused -> stopped).")
_lifecycle("pause", "Pause stream KEY (running -> paused): sync does not pull it.")
_lifecycle("resume", "Resume stream KEY (paused -> running).")


@stream.command("pull")
@click.argument("key")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many (default: the cap).")
@lock_options()
@json_option
@pass_ctx
def stream_pull(
    obj: _Context, key: str, limit: int | None, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Pull stream KEY once, under the run lock; store what it delivers with its new cursor."""
    with obj.open() as ws, _writing():
        result = ws.streams.pull(key, limit, wait=wait, timeout=timeout)
    if as_json:
        _print_json(result.to_json())
        return
    click.echo(
        f"{printable(result.stream)}: {result.returned} notification(s), cursor "
        f"{result.previous_cursor} -> {result.cursor}"
    )
    for n in result.notifications:
        click.echo(render_notification(n))


@cli.group()
def remote() -> None:
    """Git remotes this store pulls from and pushes to ([remotes.<name>] in blocksync.toml)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@pass_ctx
def remote_add(obj: _Context, name: str, url: str) -> None:
    """Add remote NAME at URL (a path, git://, http(s):// or ssh URL) to blocksync.toml."""
    with obj.open() as ws:
        r = ws.add_remote(name, url)
    click.echo(f"added remote {printable(r.name)}: {printable(r.shown_url)}")


@remote.command("list")
@json_option
@pass_ctx
def remote_list(obj: _Context, as_json: bool) -> None:
    """List the remotes (credentials in URLs shown as ***)."""
    with obj.open() as ws:
        remotes = list(ws.remotes.values())
    if as_json:
        _print_json([r.to_json() for r in remotes])
    else:
        for r in remotes:
            click.echo(f"{printable(r.name)}\t{printable(r.shown_url)}")


@remote.command("remove")
@click.argument("name")
@pass_ctx
def remote_remove(obj: _Context, name: str) -> None:
    """Remove remote NAME from blocksync.toml (its open conflicts stay resolvable)."""
    with obj.open() as ws:
        r = ws.remove_remote(name)
    click.echo(f"removed remote {r.name}")


@cli.command()
@click.argument("name", required=False)
@lock_options()
@allow_mass_delete_option
@json_option
@pass_ctx
def pull(
    obj: _Context,
    name: str | None,
    wait: bool,
    timeout: float | None,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Fetch main from remote NAME (default: every remote) and merge it, block by block.

    Exit 0, or 3 when the merge left conflicts open (see `blocksync conflicts list`).
    """
    with obj.open() as ws:
        results = sync_mod.run_pull(
            ws, name, wait=wait, timeout=timeout, allow_mass_delete=allow_mass_delete
        )
        still_open = ws.reconciler.conflicts.open_count()
    if as_json:
        _print_json({"pulls": [r.to_json() for r in results], "open_conflicts": still_open})
    else:
        for r in results:
            click.echo(
                f"{r.remote}: {r.action}"
                + (f" -> {r.after[:12]}" if r.after else "")
                + f", {len(r.merged)} block(s) from the remote, {len(r.conflicts)} conflict(s)"
            )
            click.echo(
                "".join(f"  CONFLICT {printable(path)} ({cid})\n" for path, cid in r.conflicts),
                nl=False,
            )
    sys.exit(3 if any(r.conflicts for r in results) else 0)


@cli.command()
@click.argument("name", required=False)
@lock_options()
@allow_mass_delete_option
@json_option
@pass_ctx
def push(
    obj: _Context,
    name: str | None,
    wait: bool,
    timeout: float | None,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Push main to remote NAME (default: every remote) by compare-and-swap, never forced;
    a remote that moved on is pulled and merged first."""
    with obj.open() as ws:
        results = sync_mod.run_push(
            ws, name, wait=wait, timeout=timeout, allow_mass_delete=allow_mass_delete
        )
    if as_json:
        _print_json([r.to_json() for r in results])
    else:
        for r in results:
            click.echo(
                f"{r.remote}: {r.action}"
                + (f" {r.commit[:12]}" if r.commit else "")
                + (f" after {len(r.pulls)} merge(s)" if r.pulls else "")
            )


@cli.group()
def tool() -> None:
    """Tools an agent can call: those of plugins and blocksync's own (conflicts, history)."""


@tool.command("list")
@json_option
@pass_ctx
def tool_list(obj: _Context, as_json: bool) -> None:
    """List every tool: built-in ones, then plugin tools (plugins that cannot offer theirs are
    named on standard error, or under "problems" with --json)."""
    with obj.open() as ws:
        entries = ws.tools.list()
        problems = ws.tools.problems()
    if as_json:
        _print_json({"tools": entries, "problems": problems})
        return
    for e in entries:
        origin = "built-in" if e.plugin is None else f"plugin:{e.plugin}"
        click.echo("\t".join(printable(f) for f in (e.name, origin, e.description)))
    for p in problems:
        click.echo(f"warning: plugin {p.plugin!r} offers no tool: {printable(p.error)}", err=True)


@tool.command("run")
@click.argument("name")
@click.option(
    "--params",
    "params_text",
    default="{}",
    show_default=True,
    help="The params, a JSON object ('-': read it from standard input).",
)
@click.option("--agent", help="The calling agent (agent_id in the call's meta).")
@click.option("--call-id", help="The call's id (default: a new one).")
@lock_options()
@json_option
@pass_ctx
def tool_run(
    obj: _Context,
    name: str,
    params_text: str,
    agent: str | None,
    call_id: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Call a tool: params checked against its schema (exit 2 naming the field), its output
    printed as JSON (--json: with the call's id, agent and origin). A failing tool exits 1.
    blocksync_conflict_resolve takes the run lock (exit 75; --wait: the call holds it)."""
    if params_text == "-":
        params_text = decode_text(sys.stdin.buffer.read(), "standard input")
    params = tools_mod.params_from_json(params_text)
    with obj.open() as ws:
        call = ws.tools.run(name, params, agent=agent, call_id=call_id, wait=wait, timeout=timeout)
    if as_json:
        _print_json(call)
    else:
        click.echo(json.dumps(call.output, indent=2, ensure_ascii=False))


def main() -> None:
    # Python's default SIGPIPE handling turns `blocksync ... | head` into a traceback
    try:
        cli(prog_name="blocksync")
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
