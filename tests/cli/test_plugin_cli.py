"""`blocksync plugin list / keygen / sign / verify / check` as a user runs them (the installed
command in a subprocess, real components built with componentize-py): each prints a clear line,
exits with the documented code, and never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import blocksync

from ..plugin_builds import built_plugin, wat_fixture
from ..stores import share_compile_cache

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([BLOCKSYNC, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def here(tmp_path: Path) -> Path:
    blocksync.init(tmp_path / "store").close()
    share_compile_cache(tmp_path / "store")  # `plugin list` and `check` compile into it
    shutil.copyfile(built_plugin("echo_tool"), tmp_path / "store" / "plugins" / "echo.wasm")
    return tmp_path


def test_keygen_sign_verify_and_list(here: Path) -> None:
    wasm = "store/plugins/echo.wasm"
    keygen = run(here, "plugin", "keygen", "k")
    assert keygen.returncode == 0
    public = keygen.stdout.splitlines()[-1]
    assert public.startswith("ed25519:") and (here / "k.pub").read_text().strip() == public
    signed = run(here, "plugin", "sign", wasm, "--key", "k")
    assert signed.returncode == 0 and f"with {public}" in signed.stdout
    good = run(here, "plugin", "verify", wasm, "--key", "k.pub", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["state"] == "signed"
    other = run(here, "plugin", "keygen", "other")
    untrusted = run(here, "plugin", "verify", wasm, "--key", other.stdout.splitlines()[-1])
    assert untrusted.returncode == 1 and untrusted.stdout.startswith("untrusted-key:")
    listed = json.loads(run(here, "plugin", "list", "--json").stdout)
    assert [(e["key"], e["discovered"], e["configured"], e["interfaces"]) for e in listed] == [
        ("echo", True, False, ["tool"])
    ]
    assert listed[0]["trust"].startswith("signed by ed25519:")
    text = run(here, "plugin", "list").stdout
    assert "echo: store/plugins/echo.wasm (discovered, not attached)" in text


def test_bad_keys_and_signatures_are_clear_errors(here: Path) -> None:
    wasm = here / "store" / "plugins" / "echo.wasm"
    (here / "junk.key").write_text("not a key\n")
    bad = run(here, "plugin", "sign", str(wasm), "--key", "junk.key")
    assert bad.returncode == 2 and "junk.key is not a private key" in bad.stderr
    run(here, "plugin", "keygen", "k")
    again = run(here, "plugin", "keygen", "k")
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    public_as_private = run(here, "plugin", "sign", str(wasm), "--key", "k.pub")
    assert public_as_private.returncode == 2 and "is a public key" in public_as_private.stderr
    assert run(here, "plugin", "sign", str(wasm), "--key", "k").returncode == 0
    data = bytearray(wasm.read_bytes())
    data[-1] ^= 1
    wasm.write_bytes(bytes(data))
    tampered = run(here, "plugin", "verify", str(wasm))
    assert tampered.returncode == 1 and tampered.stdout.startswith("bad-signature:")
    other = here / "other.wasm"
    shutil.copyfile(built_plugin("echo_block"), other)
    shutil.copyfile(wasm.with_name("echo.wasm.sig"), here / "other.wasm.sig")
    wrong_file = run(here, "plugin", "verify", str(other))
    assert wrong_file.returncode == 1 and wrong_file.stdout.startswith("other-file:")


def test_check_runs_the_suite_and_refuses_what_it_cannot_check(here: Path) -> None:
    files = run(here, "plugin", "check", str(built_plugin("files")), "--json")
    report = json.loads(files.stdout)
    assert files.returncode == 0 and report["ok"] and len(report["results"]) == 11
    broken = run(here, "plugin", "check", str(built_plugin("echo_files")))
    assert broken.returncode == 1 and "FAIL" in broken.stdout
    assert re.search(r"cases passed \(folder; (sync|seed) level\)$", broken.stdout.splitlines()[-1])
    # a tool plugin gets the tool cases (echo's schema lists no examples to call it with)
    tool = run(here, "plugin", "check", "store/plugins/echo.wasm")
    assert tool.returncode == 0 and tool.stdout.splitlines()[-1] == "2 of 2 cases passed (tool)"
    assert "not run: its parameters schema lists no `examples`" in tool.stdout
    nothing = run(here, "plugin", "check", str(wat_fixture("no_interfaces", here)))
    assert nothing.returncode == 1 and "exports none of the pattern:extension" in nothing.stderr
    (here / "garbage.wasm").write_bytes(b"\0asm garbage")
    garbage = run(here, "plugin", "check", "garbage.wasm")
    assert garbage.returncode == 1 and "garbage.wasm" in garbage.stderr
    (here / "t.toml").write_text("config = [\n")
    bad_config = run(here, "plugin", "check", str(built_plugin("files")), "--config", "t.toml")
    assert bad_config.returncode == 2 and "t.toml is not valid TOML" in bad_config.stderr
