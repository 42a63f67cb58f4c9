"""The ``blocksync`` command: each command parses, makes one library call, and renders.

Exit codes: 0 success; 1 failure; 2 usage (bad arguments or input); 4 not found; 5 a concurrent
change won (stale ``--expected-version``); 3 belongs to reconcile/sync/pull (open conflicts); 75
to the commands that take ``store/run.lock`` -- sync, reconcile (not ``--dry-run``), conflicts
resolve, undo and block, pull, push, gc, stream pull -- when another run holds it; 130 and 143 to
those commands stopped by SIGINT or SIGTERM (:class:`~blocksync.errors.Interrupted`). No traceback reaches the user: library errors print as
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
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
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
    from . import mcp_server, plugins, workspace
    from . import runner as sync_mod
    from . import testing as conformance
    from . import watch as watch_mod
    from .agents import conflict_block as conflict_block_mod
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
    mcp_server = _OnFirstUse("blocksync.mcp_server")
    plugins = _OnFirstUse("blocksync.plugins")
    workspace = _OnFirstUse("blocksync.workspace")
    sync_mod = _OnFirstUse("blocksync.runner")
    conformance = _OnFirstUse("blocksync.testing")
    watch_mod = _OnFirstUse("blocksync.watch")
    tools_mod = _OnFirstUse("blocksync.agents.tools")
    conflict_block_mod = _OnFirstUse("blocksync.agents.conflict_block")
    trust = _OnFirstUse("blocksync.plugins.trust")
    build_mod = _OnFirstUse("blocksync.plugins.tooling.build")
    provenance = _OnFirstUse("blocksync.plugins.tooling.provenance")
    scaffold_mod = _OnFirstUse("blocksync.plugins.tooling.scaffold")
    blocks_mod = _OnFirstUse("blocksync.store.blocks")

F = TypeVar("F", bound=Callable[..., Any])


#: the version of every ``--json`` shape: a ``"format"`` field of each top-level object
JSON_FORMAT = 1

#: where the root's own ``--json`` (given before the command) is kept for the command
_GLOBAL_JSON = "blocksync.json.global"


def _set_global(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback of ``--store`` / ``--author`` given after the command: it overrides the value
    the root took (from before the command, the environment or the default)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        found = ctx.find_object(_Context)
        if value is not None and found is not None:
            setattr(found, name, value)

    return callback


def _refuse_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value or ctx.meta.get(_GLOBAL_JSON):
        raise click.UsageError(f"`{ctx.command_path}` prints no JSON", ctx)


def _after_command_options(command: click.Command) -> list[click.Parameter]:
    """The root's options, accepted after any command too (``blocksync push --store laptop``),
    but for those the command declares itself."""
    params: list[click.Parameter] = [
        click.Option(
            ["--store"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_set_global("store"),
            help="The store folder (as `blocksync --store PATH ...`).",
        ),
        click.Option(
            ["--author"],
            expose_value=False,
            callback=_set_global("author"),
            help="Who the commits name as their author (as `blocksync --author ...`).",
        ),
    ]
    if not isinstance(command, click.Group):
        params.append(
            click.Option(
                ["--json"], is_flag=True, hidden=True, expose_value=False, callback=_refuse_json
            )
        )
    taken = {flag for p in command.params for flag in p.opts}
    return [p for p in params if not taken.intersection(p.opts)]


class _Commands(click.Group):
    """A group each of whose commands also takes the root's options after its name, once for
    all commands (those added later included)."""

    group_class: type[click.Group | type] | None = type  # its subgroups do the same

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(_after_command_options(cmd))
        super().add_command(cmd, name)


def _error_json(kind: str, message: str, exit_code: int) -> None:
    """An error under ``--json``: one JSON line on standard error."""
    doc = {
        "format": JSON_FORMAT,
        "error": {"type": kind, "message": message},
        "exit_code": exit_code,
    }
    click.echo(json.dumps(doc, ensure_ascii=False), err=True)


class _Group(_Commands):
    """Turns every blocksync error into a one-line message and its documented exit code (under
    ``--json``, a JSON line), and shows long operations' progress on a terminal
    (:mod:`blocksync.cli_progress`)."""

    group_class = _Commands

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # -v / --verbose is accepted after the subcommand too: moved in front of it
        end = args.index("--") if "--" in args else len(args)
        # --json output gets nothing extra, not even on standard error
        ctx.meta["blocksync.json"] = "--json" in args[:end]
        verbose = [a for a in args[:end] if a in ("-v", "--verbose")]
        if verbose:
            args = ["--verbose"] + [a for a in args[:end] if a not in verbose] + args[end:]
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            self._fail_json(ctx, exc)
            raise

    def _fail_json(self, ctx: click.Context, exc: click.ClickException) -> None:
        """Under --json, click's own errors (a bad option, a missing argument) as JSON too."""
        if ctx.meta.get("blocksync.json"):
            kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
            _error_json(kind, exc.format_message(), exc.exit_code)
            ctx.exit(exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        json_output = ctx.meta.get("blocksync.json", False)
        shown = cli_progress.for_command(json_output, os.environ, sys.stdout, sys.stderr)
        try:
            with progress.reporting(shown):
                return super().invoke(ctx)
        except BlocksyncError as exc:
            self._fail(ctx, type(exc).__name__, str(exc), exc.exit_code)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): main() ends quietly
        except OSError as exc:
            text = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            self._fail(ctx, "OSError", text, 1)
        except click.ClickException as exc:
            self._fail_json(ctx, exc)
            raise
        except (click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so plainly, show the traceback only on request
            if os.environ.get("BLOCKSYNC_TRACEBACK"):
                raise
            text = (
                f"{type(exc).__name__}: {exc} (a bug in blocksync; run again with "
                "BLOCKSYNC_TRACEBACK=1 to see where, and please report it)"
            )
            self._fail(ctx, "InternalError", text, 1, prefix="internal error")

    def _fail(
        self, ctx: click.Context, kind: str, message: str, code: int, prefix: str = "error"
    ) -> None:
        if ctx.meta.get("blocksync.json"):
            _error_json(kind, message, code)  # exact, as all JSON is
        else:
            click.echo(f"{prefix}: {printable(message)}", err=True)
        ctx.exit(code)


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
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON, as the command's own --json (every command that prints data).",
)
@click.version_option(package_name="blocksync")
@click.pass_context
def cli(ctx: click.Context, store: Path, author: str, verbose: bool, as_json: bool) -> None:
    """Versioned memory blocks in git, synced to outside sources through WASM plugins.

    --store, --author, --json and -v are taken before or after the command.

    \b
    Example: blocksync --store ~/agents/store block list alice
    """
    logs.to_terminal(verbose, os.environ.get("BLOCKSYNC_LOG"))
    ctx.meta[_GLOBAL_JSON] = as_json
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


def _formatted(doc: Any) -> Any:
    """``"format"`` first in every top-level object: the document, or each item of a list."""
    if isinstance(doc, dict):
        return {"format": JSON_FORMAT, **doc}
    if isinstance(doc, list):
        return [_formatted(item) for item in doc]
    return doc


def _print_json(value: Any, line: bool = False) -> None:
    """Print ``value`` as JSON with its format; ``line``: on one line (JSON lines, a log)."""
    doc = _formatted(_plain(value))
    click.echo(json.dumps(doc, indent=None if line else 2, ensure_ascii=False))


def _json_wanted(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    return value or bool(ctx.meta.get(_GLOBAL_JSON))


json_option = click.option(
    "--json", "as_json", is_flag=True, callback=_json_wanted, help="Print JSON."
)


def lock_options() -> Callable[[F], F]:
    """``--wait`` and ``--timeout`` of every command that takes the run lock, with one
    meaning: wait for the lock (up to SECONDS) instead of exiting 75 at once. (How long a run
    may go on is another option, ``--deadline``: :func:`run_options`.)"""

    def decorate(f: F) -> F:
        f = click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="With --wait: give up (exit 75) after waiting SECONDS for the run lock.",
        )(f)
        return click.option(
            "--wait",
            is_flag=True,
            help="Wait for the run lock while another run holds it, instead of exiting 75.",
        )(f)

    return decorate


def _finite_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> Any:
    """A number of seconds, not ``nan`` nor ``inf`` (which FloatRange lets through)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx, param)
    return value


def run_options(f: F) -> F:
    """``--deadline`` and ``--quiet`` of the commands that run the sources (sync, reconcile)."""
    f = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="Print the summary only: per source its counts, not each path (--json: counts).",
    )(f)
    return click.option(
        "--deadline",
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        help="Start no source after SECONDS from the command's start (the wait for the lock "
        "included): those not started are reported failed; a running one finishes.",
    )(f)


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
@json_option
@pass_ctx
def init(obj: _Context, path: Path | None, as_json: bool) -> None:
    """Create a store folder at PATH (default: --store).

    \b
    Example: blocksync init ~/agents/store
    """
    store = path or obj.store
    workspace.init(store, author=obj.author).close()
    if as_json:
        _print_json({"store": store})
    else:
        click.echo(f"created a blocksync store in {printable(str(store))}")


@cli.group()
def block() -> None:
    """Create, read and change memory blocks.

    \b
    Example: blocksync block list alice
    """


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
@click.option("--empty", is_flag=True, help="Create the block empty (no content given).")
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
    empty: bool,
    as_json: bool,
) -> None:
    """Create block LABEL of OWNER (content: --content, --file or standard input; --empty for
    none). An existing block is a usage error (exit 2).

    \b
    Example: blocksync block create alice persona --content 'I like tea.'
    """
    text = _read_content(content, content_file, stdin_fallback=not empty)
    if empty and text is not None:
        raise UsageError("give content or --empty, not both")
    if text is None and not empty:
        raise UsageError(
            "no content: give --content, --file, pipe it on standard input, or --empty"
        )
    with obj.open() as ws:
        b = ws.blocks.create(
            owner,
            label,
            text or "",
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
    """Print a block's content (exactly, with no newline added).

    \b
    Example: blocksync block read alice persona --version 1
    """
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
    only metadata options are given.

    \b
    Example: printf 'I like tea.\\n' | blocksync block update alice persona -m 'tea'
    """
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
    """Delete a block (its history stays; rollback brings it back).

    \b
    Example: blocksync block delete alice persona --expected-version 3
    """
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
    """List the blocks of OWNER, or of everyone.

    \b
    Example: blocksync block list alice --json
    """
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
    """Print the block's folder in the store's git repository (for `git log -- PATH`).

    \b
    Example: git --git-dir store/repo log -- "$(blocksync block path alice persona)"
    """
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
    """List every version of a block, oldest first.

    \b
    Example: blocksync block history alice persona
    """
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
    """Show what changed between two versions of a block.

    \b
    Example: blocksync block diff alice persona --from 1 --to 2 --chars
    """
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
    """Make an old VERSION current again, as a new version (history is never rewritten).

    \b
    Example: blocksync block rollback alice persona 1
    """
    with obj.open() as ws:
        b = ws.blocks.rollback(owner, label, version, message=message)
    _render_block(b, as_json, "rolled back")


@cli.group()
def index() -> None:
    """index.db: versions, conflicts, runs, notifications, streams (all re-derivable from git).

    \b
    Example: blocksync index rebuild
    """


@index.command("rebuild")
@json_option
@pass_ctx
def index_rebuild(obj: _Context, as_json: bool) -> None:
    """Recreate index.db from the repository.

    \b
    Example: blocksync index rebuild
    """
    workspace.rebuild_index(obj.store)
    if as_json:
        _print_json({"index": obj.store / "index.db"})
    else:
        click.echo(f"rebuilt {obj.store / 'index.db'}")


@cli.command()
@json_option
@pass_ctx
def fsck(obj: _Context, as_json: bool) -> None:
    """Check the repository and the index; exit 1 if anything is wrong.

    \b
    Example: blocksync fsck --json
    """
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

    \b
    Example: blocksync gc --grace 60 --wait --timeout 300
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
    """Build, inspect, check, sign and list WebAssembly component plugins.

    \b
    Example: blocksync plugin inspect store/plugins/greet.wasm
    """


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
@json_option
def plugin_new(name: Path, language: str, kind: str | None, as_json: bool) -> None:
    """Make the folder NAME: a commented plugin skeleton that `plugin build NAME` and
    `plugin check NAME.wasm` pass unchanged, with a README showing its blocksync.toml table.

    \b
    Example: blocksync plugin new word_count --lang javascript
    """
    made = scaffold_mod.new_plugin(name, language=language, kind=kind)
    if as_json:
        _print_json({**_plain(made), "output": made.output})
        return
    click.echo(f"made {made.folder}/ ({made.language} {made.kind}: {', '.join(made.files)})")
    # the component is written beside the folder, so named the way the folder was
    built = name.with_name(made.output.name)
    click.echo(f"next: blocksync plugin build {name} && blocksync plugin check {built}")


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
    cache, so its first use there starts at once.

    \b
    Example: blocksync plugin build greet -o store/plugins/greet.wasm
    """
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
    would load it (exit 1 if not).

    \b
    Example: blocksync plugin inspect store/plugins/greet.wasm
    """
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
    trust and last error.

    \b
    Example: blocksync plugin list --json
    """
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
@json_option
def plugin_keygen(path: Path, as_json: bool) -> None:
    """Make an Ed25519 key pair: the private key in PATH (mode 0600), the public one in
    PATH.pub, printed for blocksync.toml ([trust] keys).

    \b
    Example: blocksync plugin keygen ~/.blocksync/signing.key
    """
    public = trust.generate_key(path)
    if as_json:
        _print_json(
            {"private_key": path, "public_key_file": trust.public_key_path(path), "key": public}
        )
        return
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
@json_option
def plugin_sign(path: Path, key_path: Path, as_json: bool) -> None:
    """Sign the plugin PATH: a detached signature in PATH.sig.

    \b
    Example: blocksync plugin sign notes.wasm --key ~/.blocksync/signing.key
    """
    sig = trust.sign(path, key_path)
    verdict = trust.verify(path)
    if as_json:
        _print_json(
            {"path": path, "sha256": verdict.sha256, "key": verdict.key, "signature_file": sig}
        )
        return
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
    with --source against the folder it was built from.

    \b
    Example: blocksync plugin verify notes.wasm --source notes_source
    """
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
    cache when there is a store (a second check starts at once).

    \b
    Example: blocksync plugin check notes.wasm --config s3.toml
    """
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
@lock_options()
@run_options
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
    deadline: float | None,
    quiet: bool,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Reconcile the data sources with their blocks, under the run lock like sync. PATHS are
    files as the shell gives them (relative to the current folder, or absolute) in a source's
    folder, or paths of a source as reports name them.

    Exit 0 clean, 3 open conflicts, 1 a source failed (wins over 3), 75 another run holds the lock.

    \b
    Example: blocksync reconcile notes/shopping.md --dry-run
    """
    # a dry run writes nothing: no lock, and no signal handling of its own either
    with obj.open() as ws, _writing(not dry_run):
        report = ws.reconcile(
            list(sources),
            list(paths) or None,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            deadline=deadline,
            allow_mass_delete=allow_mass_delete,
            cwd=Path.cwd() if paths else None,  # a cron job may run in a folder since removed
        )
        if not dry_run and (stop := report.interruption()) is not None:
            raise stop
    if as_json:
        _print_json(report.to_json(counts_only=quiet))
    else:
        click.echo(render_report(report, quiet))
    sys.exit(report.exit_code)


def _writing(writes: bool = True) -> AbstractContextManager[None]:
    """A writer command records SIGINT/SIGTERM and stops at its next safe point
    (:mod:`blocksync.interrupts`); the library itself installs no handler."""
    return interrupts.handling() if writes else nullcontext()


def render_report(report: ReconcileReport, quiet: bool = False) -> str:
    """The text report: per source its counts, then (unless ``quiet``) a line per path."""
    lines = [f"{report.run_id}{' (dry run: nothing written)' if report.dry_run else ''}"]
    for s in report.sources:
        lines += _source_lines(s.to_json(), quiet=quiet)
    lines.append(f"open conflicts: {report.open_conflicts}")
    return "\n".join(lines)


def _source_lines(s: Mapping[str, Any], *, quiet: bool = False, timed: bool = False) -> list[str]:
    """One source of a report, from its JSON (``SourceReport.to_json()``, or as a run's row
    stored it): its counts (``timed``: and its seconds), then unless ``quiet`` a line a path."""
    source = printable(str(s.get("source")))
    took = f" in {s['seconds']:.3f} s" if timed and s.get("seconds") is not None else ""
    if s.get("error") is not None:
        return [f"{source}: FAILED{took}: {printable(str(s['error']))}"]
    resolved, needs = s.get("resolved", []), s.get("needs_resolution", [])
    skipped, held = s.get("skipped", []), s.get("held", [])
    counts = (
        f"{source}: {len(resolved)} resolved, {len(needs)} need resolution, "
        f"{s.get('unchanged', 0)} unchanged, {len(skipped)} skipped{took}"
    )
    lines = [counts]
    if quiet:
        return lines
    lines += [
        f"  {printable(str(e['resolution'])):12} {printable(str(e['path']))}" for e in resolved
    ]
    lines += [  # {path, conflict}; a run row written before format 1 holds the path alone
        f"  {'CONFLICT':12} {printable(str(e['path'] if isinstance(e, dict) else e))}"
        for e in needs
    ]
    lines += [
        f"  {'skipped':12} {printable(str(e['path']))}: {printable(str(e['reason']))}"
        for e in skipped
    ]
    lines += [
        f"  {'decided':12} {printable(str(e['path']))}: as conflict "
        f"{printable(str(e['conflict']))} (still differs)"
        for e in held
    ]
    return lines


@cli.group()
def conflicts() -> None:
    """List, show, resolve and undo conflicts.

    \b
    Example: blocksync conflicts list --status all
    """


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
    """List conflicts (default: open ones).

    \b
    Example: blocksync conflicts list --source notes --json
    """
    with obj.open() as ws:
        found = ws.conflicts.list(status, source)
    if as_json:
        _print_json(found)
        return
    if not found:
        shown = "" if status == "all" else f"{status} "
        click.echo(f"no {shown}conflicts" + (f" in {printable(source)}" if source else ""))
    for c in found:
        fields = (c.id, c.status, c.source, c.path, f"{c.owner}/{c.label}", c.reason)
        click.echo("\t".join(printable(f) for f in fields))


@conflicts.command("show")
@click.argument("conflict_id")
@json_option
@pass_ctx
def conflicts_show(obj: _Context, conflict_id: str, as_json: bool) -> None:
    """Show a conflict: its base, disk and agent contents, and how the sides differ.

    \b
    Example: blocksync conflicts show c-d22c6673ff
    """
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

    \b
    Example: blocksync conflicts resolve c-d22c6673ff --content-file merged.md
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
@json_option
@pass_ctx
def conflicts_undo(
    obj: _Context, conflict_id: str, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Undo a resolution: both sides and the base go back to what they were, the conflict reopens.

    Takes the run lock: exit 75 if another run (a sync, a reconcile) holds it.

    \b
    Example: blocksync conflicts undo c-d22c6673ff
    """
    with obj.open() as ws, _writing():
        c = ws.conflicts.undo(conflict_id, resolver=obj.author, wait=wait, timeout=timeout)
    if as_json:
        _print_json(c)
    else:
        click.echo(f"reopened {c.id}")


@conflicts.command("block")
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="ID",
    help="Only this agent's block (repeatable); default: every agent with conflict_block = "
    "true, and blocks no agent keeps any more are retired.",
)
@lock_options()
@json_option
@pass_ctx
def conflicts_block(
    obj: _Context, agents: tuple[str, ...], wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Bring the blocksync:conflicts block of agents with conflict_block = true up to date now.

    Every command that takes the run lock does it as it ends; this one does only that. A
    block whose agent no longer has the setting gets a one-line note saying it is not kept.
    Exit 4: no such agent in blocksync.toml; 2: the agent has no conflict_block = true.

    \b
    Example: blocksync conflicts block --agent alice
    """
    with obj.open() as ws, _writing():
        targets = list(dict.fromkeys(agents)) or ws.config.conflict_block_agents
        written = ws.refresh_conflict_blocks(list(agents) or None, wait=wait, timeout=timeout)
    doc = {
        "label": conflict_block_mod.LABEL,
        "written": [a for a in targets if a in written],
        "up_to_date": [a for a in targets if a not in written],
        "retired": [a for a in written if a not in targets],
    }
    if as_json:
        _print_json(doc)
        return
    for key, said in (("written", "written"), ("up_to_date", "up to date"), ("retired", "retired")):
        for agent in doc[key]:
            click.echo(f"{printable(agent)}: {said}")
    if not targets and not doc["retired"]:
        click.echo("no agent keeps a conflict block (conflict_block = true in [agents.ID])")


@cli.command()
@pass_ctx
def demo(obj: _Context) -> None:
    """Walk through blocksync on the store (created if missing).

    \b
    Example: blocksync --store /tmp/try demo
    """
    demo_mod.run(obj.store, obj.author, click.echo)


@cli.command("sync")
@lock_options()
@run_options
@allow_mass_delete_option
@json_option
@pass_ctx
def sync_command(
    obj: _Context,
    wait: bool,
    timeout: float | None,
    deadline: float | None,
    quiet: bool,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """The cron job: reconcile every source under the run lock, record the run, report
    (--json: one line per run, so `>> sync.log` keeps a log in JSON lines).

    Exit 0 clean, 3 open conflicts, 1 a source failed (wins over 3), 75 another run holds the lock.

    \b
    Example: blocksync sync --json --quiet >> sync.log
    """
    report = sync_mod.sync_store(
        obj.store,
        author=obj.author,
        wait=wait,
        timeout=timeout,
        deadline=deadline,
        allow_mass_delete=allow_mass_delete,
    )
    if as_json:
        _print_json(report.to_json(counts_only=quiet), line=True)
    else:
        click.echo(
            f"sync: {len(report.sources)} source(s) in {report.seconds:.1f} s"
            + (f", after waiting {report.lock_waited:.1f} s for the run lock" if wait else "")
        )
        click.echo(render_report(report.reconcile, quiet))
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
    """List the recorded runs (sync, reconcile, pull, push, watch rounds), newest first;
    `runs show RUN_ID` for one.

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
    """A run row's report (a sync's or reconcile's ``to_json()``, a pull's or push's, or a
    failure's) as lines."""
    lines: list[str] = []
    for s in report.get("sources", []):
        lines += _source_lines(s, timed=True)
    for entry in report.get("remotes", []):  # a pull's or a push's
        lines += _remote_lines(entry)
    for stream in report.get("streams", []):
        if stream.get("error") is not None:
            lines.append(
                f"stream {printable(str(stream.get('stream')))}: FAILED: "
                f"{printable(str(stream['error']))}"
            )
    shown = {e.get("error") for e in report.get("remotes", [])}  # a failed remote's said it
    if report.get("error") is not None and report["error"] not in shown:
        lines.append(f"error: {printable(str(report['error']))}")
    if report.get("not_reached") and "remotes" in report:
        lines.append(f"not reached: {printable(', '.join(report['not_reached']))}")
    if "open_conflicts" in report:
        lines.append(f"open conflicts: {report['open_conflicts']}")
    return lines


def _remote_lines(entry: dict[str, Any]) -> list[str]:
    """A remote's entry in a pull or push run's report, as lines."""
    if entry.get("error") is not None:
        remote = printable(str(entry.get("remote")))
        return [
            f"remote {remote}: FAILED (exit {entry.get('exit_code')}): {printable(entry['error'])}"
        ]
    lines = [_push_line(entry)] if "attempts" in entry else _pull_lines(entry)
    return [f"remote {line}" if not line.startswith(" ") else line for line in lines]


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

    \b
    Example: blocksync notifications --all --source feed
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
    """Acknowledge notifications by id (exit 4, and none acknowledged, if an id is unknown).

    \b
    Example: blocksync notifications ack 3 4
    """
    with obj.open() as ws:
        done = ws.notifications.ack(ids)
    if as_json:
        _print_json([n.to_json() for n in done])
    else:
        click.echo(f"acknowledged {len(done)} notification(s)")


@cli.group()
def stream() -> None:
    """Data streams: lifecycle (start, stop, pause, resume), status and pulls.

    \b
    Example: blocksync stream list
    """


@stream.command("list")
@json_option
@pass_ctx
def stream_list(obj: _Context, as_json: bool) -> None:
    """Every configured stream: state, owner, cursor, notifications delivered, last error.

    \b
    Example: blocksync stream list --json
    """
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
    @stream.command(action, help=f"{helptext}\n\n\b\nExample: blocksync stream {action} feed")
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
    """Pull stream KEY once, under the run lock; store what it delivers with its new cursor.

    \b
    Example: blocksync stream pull feed --limit 100 --wait
    """
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
    """Git remotes this store pulls from and pushes to ([remotes.<name>] in blocksync.toml).

    \b
    Example: blocksync remote add hub hub.git
    """


@remote.command("add")
@click.argument("name")
@click.argument("url")
@json_option
@pass_ctx
def remote_add(obj: _Context, name: str, url: str, as_json: bool) -> None:
    """Add remote NAME at URL (a path, git://, http(s):// or ssh URL) to blocksync.toml.

    \b
    Example: blocksync remote add hub ssh://me@server/srv/hub.git
    """
    with obj.open() as ws:
        r = ws.add_remote(name, url)
    if as_json:
        _print_json(r.to_json())
    else:
        click.echo(f"added remote {printable(r.name)}: {printable(r.shown_url)}")


@remote.command("list")
@json_option
@pass_ctx
def remote_list(obj: _Context, as_json: bool) -> None:
    """List the remotes (credentials in URLs shown as ***).

    \b
    Example: blocksync remote list
    """
    with obj.open() as ws:
        remotes = list(ws.remotes.values())
    if as_json:
        _print_json([r.to_json() for r in remotes])
    else:
        for r in remotes:
            click.echo(f"{printable(r.name)}\t{printable(r.shown_url)}")


@remote.command("remove")
@click.argument("name")
@json_option
@pass_ctx
def remote_remove(obj: _Context, name: str, as_json: bool) -> None:
    """Remove remote NAME from blocksync.toml (its open conflicts stay resolvable).

    \b
    Example: blocksync remote remove hub
    """
    with obj.open() as ws:
        r = ws.remove_remote(name)
    if as_json:
        _print_json(r.to_json())
    else:
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

    \b
    Example: blocksync pull hub --wait --timeout 60
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
            click.echo("\n".join(_pull_lines(r.to_json())))
    sys.exit(sync_mod.pull_exit_code(results))


def _pull_lines(pull: dict[str, Any]) -> list[str]:
    """A remote's pull (its ``to_json()``) as lines: what it did, then each conflict."""
    after = pull["after"]
    head = (
        f"{printable(pull['remote'])}: {pull['action']}"
        + (f" -> {after[:12]}" if after else "")
        + f", {len(pull['merged'])} block(s) from the remote, "
        f"{len(pull['conflicts'])} conflict(s)"
    )
    conflicts = [f"  CONFLICT {printable(c['path'])} ({c['conflict']})" for c in pull["conflicts"]]
    return [head, *conflicts]


def _push_line(push: dict[str, Any]) -> str:
    """A remote's push (its ``to_json()``) as a line."""
    return (
        f"{printable(push['remote'])}: {push['action']}"
        + (f" {push['commit'][:12]}" if push["commit"] else "")
        + (f" after {len(push['pulls'])} merge(s)" if push["pulls"] else "")
    )


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
    a remote that moved on is pulled and merged first.

    \b
    Example: blocksync push hub --store laptop
    """
    with obj.open() as ws:
        results = sync_mod.run_push(
            ws, name, wait=wait, timeout=timeout, allow_mass_delete=allow_mass_delete
        )
    if as_json:
        _print_json([r.to_json() for r in results])
    else:
        for r in results:
            click.echo(_push_line(r.to_json()))


@cli.group()
def tool() -> None:
    """Tools an agent can call: those of plugins and blocksync's own (conflicts, history).

    \b
    Example: blocksync tool list
    """


@tool.command("list")
@json_option
@pass_ctx
def tool_list(obj: _Context, as_json: bool) -> None:
    """List every tool: built-in ones, then plugin tools (plugins that cannot offer theirs are
    named on standard error, or under "problems" with --json).

    \b
    Example: blocksync tool list --json
    """
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
    blocksync_conflict_resolve takes the run lock (exit 75; --wait: the call holds it).

    \b
    Example: blocksync tool run blocksync_conflicts_list --params '{"status": "open"}'
    """
    if params_text == "-":
        params_text = decode_text(sys.stdin.buffer.read(), "standard input")
    params = tools_mod.params_from_json(params_text)
    with obj.open() as ws:
        call = ws.tools.run(name, params, agent=agent, call_id=call_id, wait=wait, timeout=timeout)
    if as_json:
        _print_json(call)
    else:
        click.echo(json.dumps(call.output, indent=2, ensure_ascii=False))


@cli.command("mcp")
@click.option(
    "--agent",
    required=True,
    help="The agent the server acts as: its blocks, conflicts, sources, notifications and "
    "plugin tools only (and those [agents.ID] may_act_for grants it); its writes are recorded "
    "as agent:ID.",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    callback=_finite_seconds,
    metavar="SECONDS",
    help="How long a write waits for the store's run lock while another run (a cron sync) "
    "holds it, before it fails naming the holder; 0: fail at once. Reads never wait. "
    "[default: 10]",
)
@pass_ctx
def mcp_command(obj: _Context, agent: str, lock_wait: float | None) -> None:
    """Serve the agent tools over MCP (Model Context Protocol) on standard input and output.

    Tools: blocks read, list, update, history, rollback; conflicts list, show, resolve, undo;
    reconcile; notifications list, ack; and the tools of the agent's plugins, as plugin_NAME.
    Open conflicts are the resource blocksync://conflicts. Runs until the client closes
    standard input.

    Example: blocksync --store ~/memory mcp --agent alice --lock-wait 30
    """
    if sys.stdin.isatty():  # started by hand: say why nothing seems to happen
        click.echo(
            f"serving agent {printable(agent)}'s tools over MCP on standard input and output; "
            "an MCP client starts this command itself (Ctrl-C stops it)",
            err=True,
        )

    def warn(line: str) -> None:
        click.echo(f"warning: {printable(line)}", err=True)

    wait = mcp_server.LOCK_WAIT if lock_wait is None else lock_wait
    mcp_server.serve(obj.store, agent, wait, warn)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A number of seconds click's FloatRange lets through but no wait can take (nan, inf)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx, param)
    return value


@cli.command("watch")
@click.option(
    "--debounce",
    type=click.FloatRange(min=0.001),
    callback=_finite,
    default=0.05,
    show_default=True,
    metavar="SECONDS",
    help="Quiet time after a file event before its round starts (an editor's save is several).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    callback=_finite,
    default=0.3,
    show_default=True,
    metavar="SECONDS",
    help="How often main is looked at for block changes (and blocksync.toml for edits, a held "
    "run lock tried again).",
)
@click.option(
    "--poll-plugins",
    type=click.FloatRange(min=1),
    callback=_finite,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How often a data-block plugin with no dir (nothing to watch: an S3 bucket) is "
    "reconciled.",
)
@allow_mass_delete_option
@json_option
@pass_ctx
def watch_command(
    obj: _Context,
    debounce: float,
    poll: float,
    poll_plugins: float,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Live sync: reconcile the data sources as their files and their blocks change.

    Watches the folders of every file source (and of data-block plugins granted a dir) and
    reconciles the paths that changed, and the paths whose blocks changed on main, each round
    under the run lock (held by another run: the round waits for it); plugins with no dir are
    reconciled every --poll-plugins seconds. Rounds that change something are runs in
    `blocksync runs`. Edits of blocksync.toml take effect at the next round (an invalid one is
    reported, the old configuration runs on). A folder that vanishes is waited for. Ctrl-C or
    SIGTERM stop it (exit 0; 130/143 if a round stopped between two files it was writing).

    \b
    Example: blocksync --store store watch --json >> watch.log
    """

    def show(event: watch_mod.Event) -> None:
        if as_json:  # one line per round and notice
            _print_json(event.to_json(), line=True)
        elif isinstance(event, watch_mod.Round):
            click.echo(render_round(event))
        else:
            click.echo(printable(event.message))

    with obj.open() as ws, _writing():
        watch_mod.watch(
            ws,
            show,
            debounce=debounce,
            poll=poll,
            plugin_poll=poll_plugins,
            allow_mass_delete=allow_mass_delete,
        )


def render_round(r: watch_mod.Round) -> str:
    """One short line: what each source of the round did."""
    parts = []
    for s in r.report.sources:
        if s.error is not None:
            parts.append(f"{printable(s.source)}: FAILED: {printable(s.error)}")
            continue
        done = [f"{printable(path)} ({printable(how)})" for path, how in s.resolved]
        done += [f"{printable(path)} (CONFLICT)" for path in s.needs_resolution]
        done += [f"{printable(path)} (skipped: {printable(why)})" for path, why in s.skipped]
        shown = ", ".join(done[:3]) + (f" and {len(done) - 3} more" if len(done) > 3 else "")
        parts.append(f"{printable(s.source)}: {shown or 'unchanged'}")
    return (
        f"round {r.number} ({r.seconds:.2f} s): "
        + "; ".join(parts)
        + f"; {r.report.open_conflicts} open conflict(s)"
    )


def main() -> None:
    # Python's default SIGPIPE handling turns `blocksync ... | head` into a traceback
    try:
        cli(prog_name="blocksync")
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
