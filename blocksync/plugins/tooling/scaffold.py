"""`blocksync plugin new`: a new plugin's source folder, ready to build and check unchanged.

Each skeleton is a folder of templates under ``templates/<language>-<kind>/`` (package data):
every ``X.tmpl`` becomes ``X`` with ``__NAME__`` and ``__CLASS__`` filled in (``gitignore.tmpl``
becomes ``.gitignore``: a dot file is easy to lose as package data). The folder is written
beside its final place and renamed into it, so a failure leaves nothing behind, and nothing is
written at all unless the name, language and kind are good and the folder does not exist.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from blocksync.errors import UsageError

__all__ = ["DEFAULT_KIND", "KINDS", "LANGUAGES", "NAME", "Scaffold", "new_plugin", "templates_dir"]

LANGUAGES = ("python", "javascript")
KINDS = ("data-block", "data-stream", "tool")
#: the kind a language gets when none is asked for
DEFAULT_KIND = {"python": "data-block", "javascript": "tool"}
#: a plugin's name: a Python class, a tool name, a TOML key, an npm package and a label prefix
#: all at once, so the intersection of what each allows
NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
SUFFIX = ".tmpl"
#: template file names that stand for dot files
DOT_FILES = {"gitignore": ".gitignore"}


@dataclass(frozen=True)
class Scaffold:
    """What :func:`new_plugin` wrote."""

    folder: Path
    name: str
    language: str
    kind: str
    files: tuple[str, ...]

    @property
    def output(self) -> Path:
        """Where ``plugin build`` writes the component by default: beside the folder."""
        return default_output(self.folder)


def default_output(source: Path) -> Path:
    """``NAME.wasm`` beside the source folder ``NAME`` (outside it: the component is not part
    of the source its provenance hashes)."""
    source = Path(os.path.abspath(source))
    return source.with_name(f"{source.name}.wasm")


def templates_dir() -> Path:
    return Path(__file__).resolve().parent / "templates"


def _template(language: str, kind: str) -> Path:
    if language not in LANGUAGES:
        raise UsageError(
            f"unknown language {language!r}: blocksync makes plugins in {', '.join(LANGUAGES)}"
        )
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: a plugin is one of {', '.join(KINDS)}")
    folder = templates_dir() / f"{language}-{kind}"
    if not folder.is_dir():
        offered = sorted(p.name.split("-", 1)[1] for p in templates_dir().glob(f"{language}-*"))
        raise UsageError(
            f"no {kind} skeleton in {language} (there is {', '.join(offered)}): a {kind} "
            f"plugin is written in {' or '.join(lang for lang in LANGUAGES if lang != language)}"
        )
    return folder


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) or "Plugin"


def new_plugin(folder: Path, *, language: str = "python", kind: str | None = None) -> Scaffold:
    """Write a new plugin's source into ``folder`` (which must not exist; its name, the last
    part, is the plugin's name) and return what was written. Raises :class:`UsageError`, having
    written nothing, for a bad name, an unknown language or kind, or a folder already there."""
    folder = Path(folder)
    name = Path(os.path.abspath(folder)).name
    if not NAME.fullmatch(name):
        raise UsageError(
            f"bad plugin name {name!r}: lower-case letters, digits and _, starting with a letter "
            "(it names the Python class, the tool, the TOML table and the npm package)"
        )
    chosen = kind or DEFAULT_KIND.get(language, "data-block")
    template = _template(language, chosen)
    if folder.exists() or folder.is_symlink():
        raise UsageError(f"{folder} already exists: plugin new writes a new folder only")
    parent = Path(os.path.abspath(folder)).parent
    if not parent.is_dir():
        raise UsageError(f"{parent} is not a folder: make it first")
    files = _render(template, name)
    staging = parent / f".{name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()  # mkdir, not mkdtemp: the folder gets the user's umask, not 0700
    try:
        for relative, text in files.items():
            (staging / relative).write_text(text, encoding="utf-8")
        # rename() would replace an empty folder made meanwhile: renameat2's RENAME_NOREPLACE
        # is not in the standard library, so a link-free check right before is the guard
        if folder.exists() or folder.is_symlink():
            raise UsageError(f"{folder} already exists: plugin new writes a new folder only")
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Scaffold(folder, name, language, chosen, tuple(sorted(files)))


def _render(template: Path, name: str) -> dict[str, str]:
    out = {}
    for path in sorted(template.iterdir()):
        if path.suffix != SUFFIX:
            continue
        stem = path.name[: -len(SUFFIX)]
        text = path.read_text(encoding="utf-8")
        out[DOT_FILES.get(stem, stem)] = text.replace("__CLASS__", _class_name(name)).replace(
            "__NAME__", name
        )
    return out
