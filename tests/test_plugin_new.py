"""`blocksync plugin new` (issue 15 item 4) and what a build records of its source (item 8).

Each skeleton is built as `plugin build` builds it (from the suite's build cache, keyed by the
skeleton's content, so an unchanged template is built once) and must pass `plugin check`
unchanged. Bad requests write nothing. A component records its source's hash, which `plugin
verify --source` checks: two builds of one source differ in bytes (the interpreter snapshot,
see blocksync.plugins.tooling.provenance) but not in what they record.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blocksync.errors import PluginBuildError, UsageError
from blocksync.plugins.tooling import build as build_mod
from blocksync.plugins.tooling import provenance
from blocksync.plugins.tooling.scaffold import KINDS, new_plugin
from blocksync.testing import CASES, STREAM_CASES, TOOL_CASES, PluginCase, check_plugin

from .plugin_builds import built_js_source, built_plugin
from .stores import HOST_CACHE

BIN = Path(sys.executable).parent
JAVASCRIPT = shutil.which("node") is not None and shutil.which("npm") is not None


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "blocksync"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


# -- what it writes -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_python_skeleton_is_a_plugin_of_its_kind(tmp_path: Path, kind: str) -> None:
    made = new_plugin(tmp_path / "my_plugin", kind=kind)
    assert made.files == ("README.md", "app.py")
    text = (made.folder / "app.py").read_text(encoding="utf-8")
    assert "__NAME__" not in text and "__CLASS__" not in text
    ast.parse(text)  # Python
    assert "class MyPlugin(" in text
    assert build_mod.inspect_source(made.folder).interfaces == (kind,)
    readme = (made.folder / "README.md").read_text(encoding="utf-8")
    assert "[agents.alice.data_sources.my_plugin]" in readme
    assert "blocksync plugin build my_plugin" in readme
    assert made.output == tmp_path / "my_plugin.wasm"


def test_a_javascript_skeleton_names_its_world_in_package_json(tmp_path: Path) -> None:
    made = new_plugin(tmp_path / "wc", language="javascript")
    assert made.kind == "tool"  # JavaScript's default kind
    assert made.files == (".gitignore", "README.md", "app.js", "package.json")
    manifest = build_mod.jsbuild.read_manifest(made.folder, "wc")
    assert manifest.world == "tool-plugin" and not manifest.wasi


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("9lives", {}, "bad plugin name '9lives'"),
        ("Notes", {}, "bad plugin name 'Notes'"),
        ("my-plugin", {}, "bad plugin name 'my-plugin'"),
        ("x" * 64, {}, "bad plugin name"),
        ("notes", {"kind": "datablock"}, "unknown kind 'datablock': a plugin is one of"),
        ("notes", {"language": "rust"}, "unknown language 'rust'"),
        ("notes", {"language": "javascript", "kind": "data-block"}, "written in python"),
    ],
)
def test_a_bad_request_is_refused_and_writes_nothing(
    tmp_path: Path, name: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        new_plugin(tmp_path / name, **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("what", ["empty folder", "folder", "file", "dangling link"])
def test_an_existing_path_is_refused_and_left_as_it_was(tmp_path: Path, what: str) -> None:
    target = tmp_path / "notes"
    if what == "file":
        target.write_text("mine\n")
    elif what == "dangling link":
        target.symlink_to(tmp_path / "nowhere")
    else:
        target.mkdir()
        if what == "folder":
            (target / "app.py").write_text("# my own plugin\n")
    before = _tree(tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        new_plugin(target)
    assert _tree(tmp_path) == before


def test_the_cli_says_what_it_made_and_refuses_bad_input_plainly(tmp_path: Path) -> None:
    done = _cli("plugin", "new", "notes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "made notes/ (python data-block: README.md, app.py)",
        "next: blocksync plugin build notes && blocksync plugin check notes.wasm",
    ]
    before = _tree(tmp_path)
    for args, message in (
        (["notes"], "error: notes already exists: plugin new writes a new folder only"),
        (["other", "--kind", "stream"], "error: unknown kind 'stream': a plugin is one of "),
        (["Other"], "error: bad plugin name 'Other': lower-case letters"),
    ):
        done = _cli("plugin", "new", *args, cwd=tmp_path)
        assert done.returncode == 2, done
        assert done.stderr.startswith(message) and "Traceback" not in done.stderr
    assert _tree(tmp_path) == before


# -- a missing toolchain is named ---------------------------------------------------------------


def test_a_missing_componentize_py_names_the_plugins_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(PluginBuildError, match=r"pip install 'blocksync\[plugins\]'"):
        build_mod._componentize_py(None, "notes", beside=tmp_path)


def test_a_missing_node_is_named_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = new_plugin(tmp_path / "wc", language="javascript")
    before = _tree(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PluginBuildError, match="node is not installed: .*Node.js 20"):
        build_mod.build(made.folder)
    assert _tree(tmp_path) == before


def test_a_build_that_fails_leaves_nothing_not_even_the_output_folder(tmp_path: Path) -> None:
    source = tmp_path / "empty"
    source.mkdir()
    with pytest.raises(PluginBuildError, match="no app.py in it"):
        build_mod.build(source, tmp_path / "out" / "empty.wasm")
    (source / "app.js").write_text("export const tool = {};\n")
    with pytest.raises(PluginBuildError, match="app.js without a package.json"):
        build_mod.build(source, tmp_path / "out" / "empty.wasm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# -- the skeletons build and pass plugin check unchanged ---------------------------------------


@pytest.mark.slow  # one componentize-py build per kind when the cache is cold
@pytest.mark.parametrize(
    ("kind", "cases"),
    [("data-block", CASES), ("data-stream", STREAM_CASES), ("tool", TOOL_CASES)],
)
def test_each_python_skeleton_builds_and_passes_plugin_check(
    tmp_path: Path, kind: str, cases: list[object]
) -> None:
    made = new_plugin(tmp_path / "skeleton", kind=kind)
    report = check_plugin(built_plugin(made.folder), cache_folder=HOST_CACHE)
    assert [r.name for r in report.results] == [c.name for c in cases]  # type: ignore[attr-defined]
    assert report.ok, [r for r in report.results if not r.passed]
    assert all(not r.detail.startswith("not run") for r in report.results)


@pytest.mark.slow  # npm install and componentize-js when the cache is cold (~40 s each)
@pytest.mark.skipif(not JAVASCRIPT, reason="node and npm are needed to build JavaScript")
@pytest.mark.parametrize(
    ("kind", "world", "cases"),
    [("tool", "tool-plugin", TOOL_CASES), ("data-stream", "data-stream-plugin", STREAM_CASES)],
)
def test_each_javascript_skeleton_builds_and_passes_plugin_check(
    tmp_path: Path, kind: str, world: str, cases: list[PluginCase]
) -> None:
    made = new_plugin(tmp_path / "skeleton", language="javascript", kind=kind)
    wasm = built_js_source(made.folder)
    report = check_plugin(wasm, cache_folder=HOST_CACHE)
    assert [r.name for r in report.results] == [c.name for c in cases]
    assert report.ok, [r for r in report.results if not r.passed]
    assert all(not r.detail.startswith("not run") for r in report.results)
    record = provenance.read(wasm.read_bytes())
    assert record is not None and record["world"] == world
    assert "componentize-js" in record["toolchain"]


# -- what a build records of its source (item 8) ------------------------------------------------


def test_the_source_section_round_trips_and_is_found_among_others() -> None:
    bare = provenance.COMPONENT_HEADER + b"\x00\x05\x04name"  # another custom section
    assert provenance.read(bare) is None
    stamped = provenance.embed(bare, {"source_sha256": "ab" * 32})
    assert provenance.read(stamped) == {"format": 1, "source_sha256": "ab" * 32}
    with pytest.raises(ValueError, match="past the end"):
        provenance.read(stamped[:-1])
    with pytest.raises(ValueError, match="not a WebAssembly component"):
        provenance.read(b"\x00asm\x01\x00\x00\x00")  # a core module


def test_the_source_hash_ignores_what_is_not_source(tmp_path: Path) -> None:
    made = new_plugin(tmp_path / "notes")
    first = provenance.source_sha256(made.folder)
    for junk in ("__pycache__/app.cpython-311.pyc", "node_modules/x/index.js", "notes.wasm"):
        (made.folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (made.folder / junk).write_bytes(b"junk")
    assert provenance.source_sha256(made.folder) == first
    (made.folder / "helper.py").write_text("X = 1\n")
    assert provenance.source_sha256(made.folder) != first


@pytest.mark.slow  # one fresh componentize-py build (~10 s) beside the cached one
def test_two_builds_of_one_source_record_the_same_source_and_verify_against_it(
    tmp_path: Path,
) -> None:
    made = new_plugin(tmp_path / "skeleton", kind="tool")
    cached = built_plugin(made.folder)
    fresh = build_mod.build(made.folder, tmp_path / "fresh.wasm")
    records = [provenance.read(p.read_bytes()) for p in (cached, fresh.path)]
    assert records[0] == records[1]
    assert records[0] is not None
    assert records[0]["source_sha256"] == provenance.source_sha256(made.folder)
    for wasm in (cached, fresh.path):
        done = _cli("plugin", "verify", str(wasm), "--source", str(made.folder), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("source ok: built from ")
    # a changed source no longer verifies
    app = made.folder / "app.py"
    app.write_text(app.read_text(encoding="utf-8").replace("Counts", "Tallies"), "utf-8")
    done = _cli("plugin", "verify", str(fresh.path), "--source", str(made.folder), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("source MISMATCH: ") and "another source" in done.stdout
    # a component whose recorded hash was rewritten does not verify either
    forged = tmp_path / "forged.wasm"
    forged.write_bytes(provenance.embed(fresh.path.read_bytes(), {"source_sha256": "0" * 64}))
    check = provenance.verify_source(forged, made.folder)
    assert not check.ok and check.recorded == "0" * 64


def test_the_next_step_names_the_component_where_the_build_writes_it(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    done = _cli("plugin", "new", "plugins/notes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "next: blocksync plugin build plugins/notes && blocksync plugin check plugins/notes.wasm"
    )


@pytest.mark.slow  # one fresh componentize-py build (~10 s)
def test_a_source_edited_while_it_builds_is_not_recorded_as_built(tmp_path: Path) -> None:
    # the source hash is taken once the build is done: an edit meanwhile would be recorded as
    # what the component was built from, and verify --source would vouch for it. The edit is
    # made by the toolchain run itself (a real script in front of the real componentize-py)
    made = new_plugin(tmp_path / "skeleton", kind="tool")
    real = shutil.which("componentize-py", path=str(Path(sys.executable).parent))
    assert real is not None
    wrapper = tmp_path / "componentize-py"
    app = made.folder / "app.py"
    wrapper.write_text(f'#!/bin/sh\necho "# edited meanwhile" >> "{app}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    output = tmp_path / "out.wasm"
    with pytest.raises(PluginBuildError, match=r"app\.py changed while it was being built"):
        build_mod.build(made.folder, output, componentize_py=str(wrapper))
    assert not output.exists()
