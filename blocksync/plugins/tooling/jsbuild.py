"""Build a JavaScript plugin source folder into a component with componentize-js.

A JavaScript plugin source is a folder with ``app.js`` (an ES module exporting the WIT
interfaces, camelCased) and a ``package.json`` pinning ``@bytecodealliance/componentize-js``
among its devDependencies, whose ``blocksync`` object names the world to build and the WASI
features to leave out (``blocksync plugin new NAME --lang javascript`` writes one):

    "blocksync": {"world": "tool-plugin", "disable": ["stdio", "random", "clocks", "http"]}

The first build installs the packages (``npm ci`` when there is a package-lock.json, else
``npm install``); later ones use ``node_modules`` as it is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocksync.errors import PluginBuildError
from blocksync.plugins.tooling.process import run_tool

__all__ = ["APP", "MANIFEST", "JsManifest", "is_javascript", "read_manifest", "run"]

APP = "app.js"
MANIFEST = "package.json"
COMPONENTIZE_JS = "@bytecodealliance/componentize-js"
#: componentize-js's --disable features that keep WASI out of the component when all are off
WASI_FEATURES = frozenset({"stdio", "random", "clocks", "http"})
TIMEOUT_SECONDS = 900
INSTALL_HINT = (
    "building a JavaScript plugin needs Node.js 20 or later with npm on PATH "
    "(https://nodejs.org); componentize-js itself is installed from the plugin's package.json"
)


def is_javascript(source: Path) -> bool:
    """A folder with app.js and package.json, and no app.py (which would make it Python)."""
    return (source / APP).is_file() and (source / MANIFEST).is_file()


@dataclass(frozen=True)
class JsManifest:
    world: str
    disable: tuple[str, ...]

    @property
    def wasi(self) -> bool:
        return not WASI_FEATURES <= set(self.disable)


def read_manifest(source: Path, label: str) -> JsManifest:
    path = source / MANIFEST
    try:
        package = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PluginBuildError(label, f"cannot read {path}: {exc}") from exc
    settings: Any = package.get("blocksync") if isinstance(package, dict) else None
    world = settings.get("world") if isinstance(settings, dict) else None
    disable = settings.get("disable", []) if isinstance(settings, dict) else []
    if not isinstance(world, str) or not (
        isinstance(disable, list) and all(isinstance(d, str) for d in disable)
    ):
        raise PluginBuildError(
            label,
            f'{path} needs a "blocksync" object naming the WIT world to build, e.g. '
            '"blocksync": {"world": "tool-plugin", "disable": ["stdio", "random", "clocks", '
            '"http", "fetch-event"]} (blocksync plugin new --lang javascript writes one)',
        )
    return JsManifest(world, tuple(disable))


def _tool(name: str, label: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PluginBuildError(label, f"{name} is not installed: {INSTALL_HINT}")
    return found


def _run(command: list[str], cwd: Path, label: str, what: str) -> str:
    done = run_tool(command, label=label, what=what, timeout=TIMEOUT_SECONDS, cwd=cwd)
    log = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PluginBuildError(label, f"{what} failed: {log[-4000:]}")
    return log


def _installed(source: Path) -> Path:
    return source / "node_modules" / ".bin" / "componentize-js"


def toolchain(source: Path) -> dict[str, str]:
    """The versions of what built it: componentize-js (as installed) and node."""
    versions = {}
    package = source / "node_modules" / COMPONENTIZE_JS / MANIFEST
    try:
        versions["componentize-js"] = str(json.loads(package.read_text("utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        versions["componentize-js"] = "unknown"
    node = shutil.which("node")
    if node is not None:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
        versions["node"] = done.stdout.strip()
    return versions


def run(
    source: Path, partial: Path, wit: Path, world: str, manifest: JsManifest, label: str
) -> str:
    """Install the packages if needed and build ``source`` into ``partial``; the tools' log."""
    _tool("node", label)
    log = ""
    if not _installed(source).exists():
        npm = _tool("npm", label)
        lock = (source / "package-lock.json").is_file()
        # --prefer-offline: what npm's cache holds is not revalidated over the network
        command = [npm, "ci" if lock else "install", "--prefer-offline", "--no-audit", "--no-fund"]
        log = _run([*command, "--loglevel=error"], source, label, f"npm {command[1]}")
        if not _installed(source).exists():
            raise PluginBuildError(
                label, f"{source / MANIFEST} does not install {COMPONENTIZE_JS}: add it"
            )
    command = [str(_installed(source)), APP, "--wit", str(wit), "--world-name", world]
    command += ["--disable", *manifest.disable] if manifest.disable else []
    command += ["--out", str(partial.resolve())]
    return (log + "\n" + _run(command, source, label, "componentize-js")).strip()
