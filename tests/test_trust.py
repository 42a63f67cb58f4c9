"""Plugin trust: Ed25519 keys, detached signatures, and refusals before any plugin code runs.

Real keys (cryptography), real components: the hand-written WAT fixtures (milliseconds) for
everything that loads, and one componentize-py build (echo_tool) for a sign/verify round trip.
"Before any code runs" is observed as in test_plugin_load: the probe variant of hostile_tool
logs at instantiation, so a refused plugin must leave no record under its logger, and the
compile cache folder must stay empty (refused before it was even compiled).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import blocksync
from blocksync.errors import ConfigError, PluginRefused, UsageError
from blocksync.plugins import PluginSpec, load
from blocksync.plugins.spec import parse_trust, parse_wasm_source
from blocksync.plugins.trust import (
    TrustPolicy,
    generate_key,
    load_private_key,
    load_public_key,
    public_key_path,
    sign,
    signature_path,
    trust_report,
    trust_state,
    verify,
)

from .plugin_builds import built_plugin

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = '(import "host" "log" (func $log (param i32 i32 i32)))'
PROBE = (
    ANCHOR
    + "\n    (func $boot (call $log (i32.const 2) (i32.const 32) (i32.const 13)))"
    + ("\n    (start $boot)")
)


def probe_wasm(folder: Path, name: str = "probe.wasm") -> Path:
    """hostile_tool with a start function that logs "about to spin" when instantiated."""
    text = (ROOT / "fixtures" / "wat" / "hostile_tool.wat").read_text(encoding="utf-8")
    assert text.count(ANCHOR) == 1
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    out.write_bytes(wasmtime.wat2wasm(text.replace(ANCHOR, PROBE)))
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(caplog: pytest.LogCaptureFixture, key: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"blocksync.plugin.{key}"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Two key pairs: name -> (private key path, public key)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    return {name: (folder / name, generate_key(folder / name)) for name in ("alice", "mallory")}


def required(*trusted: str) -> TrustPolicy:
    return TrustPolicy(require_signature=True, keys=trusted)


def spec(key: str, path: Path, trust: TrustPolicy) -> PluginSpec:
    return PluginSpec(key=key, agent="alice", path=path, trust=trust)


def assert_refused_before_running(
    key: str, path: Path, trust: TrustPolicy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> PluginRefused:
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / f"cache-{key}"
    with pytest.raises(PluginRefused) as info:
        load(spec(key, path, trust), cache_folder=cache)
    error = info.value
    assert error.plugin == key and error.call == "load"
    assert error.version == f"sha256:{sha(path)[:12]}"
    assert str(path) in error.detail, "the message names the file"
    assert error.detail.startswith("the config requires a signature: ")
    assert records(caplog, key) == [], "refused code must never run"
    assert not cache.exists() or list(cache.iterdir()) == [], "refused before compiling"
    return error


# --------------------------------------------------------------------------------------------
# Keys


def test_keygen_writes_a_private_key_0600_and_a_pastable_public_key(tmp_path: Path) -> None:
    private = tmp_path / "signing"
    public = generate_key(private)
    assert public_key_path(private) == tmp_path / "signing.pub"
    assert (tmp_path / "signing.pub").read_text(encoding="utf-8") == public + "\n"
    assert public.startswith("ed25519:") and len(public) == len("ed25519:") + 44
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text(encoding="utf-8").startswith("-----BEGIN PRIVATE KEY-----")
    assert load_public_key(public) == public
    assert load_public_key(tmp_path / "signing.pub") == public
    # the same key as openssl would write its public half
    pem = (
        load_private_key(private)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "openssl.pem").write_bytes(pem)
    assert load_public_key(tmp_path / "openssl.pem") == public
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openssl.pem", "signing", "signing.pub"]


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    private = tmp_path / "k"
    generate_key(private)
    before = private.read_bytes(), (tmp_path / "k.pub").read_bytes()
    with pytest.raises(UsageError, match=r"k exists already: refusing to overwrite a key"):
        generate_key(private)
    assert (private.read_bytes(), (tmp_path / "k.pub").read_bytes()) == before

    (tmp_path / "other.pub").write_text("something\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"other\.pub exists already"):
        generate_key(tmp_path / "other")
    assert not (tmp_path / "other").exists(), "nothing written when either file exists"


def test_a_key_file_that_is_not_a_key_is_a_clear_error(
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    wasm = probe_wasm(tmp_path)
    private = keys["alice"][0]
    junk = tmp_path / "junk"
    junk.write_text("this is not a key\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"junk is not a private key \(expected PEM"):
        sign(wasm, junk)
    with pytest.raises(UsageError, match=r"alice\.pub is a public key: signing needs the private"):
        sign(wasm, public_key_path(private))
    with pytest.raises(UsageError, match=r"cannot read key .*nope"):
        sign(wasm, tmp_path / "nope")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(UsageError, match=r"rsa\.pem is a RSA key, not an Ed25519 key"):
        sign(wasm, tmp_path / "rsa.pem")
    (tmp_path / "locked.pem").write_bytes(
        load_private_key(private).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(UsageError, match=r"locked\.pem is encrypted with a passphrase"):
        sign(wasm, tmp_path / "locked.pem")
    assert not signature_path(wasm).exists()

    # the trusted-key side: --key given a private key, junk, or a malformed key
    with pytest.raises(UsageError, match=r"is not an Ed25519 public key: it is a private key"):
        load_public_key(private)
    with pytest.raises(UsageError, match=r"junk is not an Ed25519 public key"):
        load_public_key(junk)
    with pytest.raises(UsageError, match=r"an Ed25519 public key has 32 bytes, this one 3"):
        load_public_key("ed25519:AAAA")
    with pytest.raises(UsageError, match=r"is not an Ed25519 public key"):
        verify(wasm, ["ed25519:not base64!"])


# --------------------------------------------------------------------------------------------
# Sign and verify


def test_sign_and_verify_round_trip_on_a_real_component(
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    wasm = tmp_path / "echo_tool.wasm"
    shutil.copyfile(built_plugin("echo_tool"), wasm)
    private, public = keys["alice"]
    assert verify(wasm, None).state == "unsigned"

    sig = sign(wasm, private)
    assert sig == tmp_path / "echo_tool.wasm.sig"
    doc = tomllib.loads(sig.read_text(encoding="utf-8"))
    assert doc == {
        "format": "blocksync-signature-v1",
        "key": public,
        "file": "echo_tool.wasm",
        "sha256": sha(wasm),
        "size": wasm.stat().st_size,
        "signature": doc["signature"],
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "echo_tool.wasm",
        "echo_tool.wasm.sig",
        "keys",
    ], "no temporary files left behind"

    anyone = verify(wasm, None)
    assert (anyone.state, anyone.key, anyone.ok) == ("signed", public, True)
    assert anyone.detail == f"{wasm} is signed by {public} (not in any trusted list)"
    trusted = verify(wasm, [public])
    assert (trusted.state, trusted.trusted) == ("signed", True)
    assert trusted.detail.endswith("(trusted)")
    untrusted = verify(wasm, [keys["mallory"][1]])
    assert (untrusted.state, untrusted.key, untrusted.ok) == ("untrusted-key", public, False)
    assert verify(wasm, []).state == "untrusted-key"

    # a renamed plugin (with its .sig) stays signed: the name is not what is signed for
    wasm.rename(tmp_path / "renamed.wasm")
    sig.rename(tmp_path / "renamed.wasm.sig")
    assert verify(tmp_path / "renamed.wasm", [public]).state == "signed"


def test_an_altered_sig_does_not_verify(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> None:
    wasm = probe_wasm(tmp_path)
    sig = sign(wasm, keys["alice"][0])
    text = sig.read_text(encoding="utf-8")
    # claim another key: the signature is not that key's
    sig.write_text(text.replace(keys["alice"][1], keys["mallory"][1]), encoding="utf-8")
    verdict = verify(wasm, [keys["mallory"][1]])
    assert verdict.state == "bad-signature"
    assert (
        verdict.detail
        == f"the signature in {sig} does not verify: the .sig was altered after signing"
    )
    sig.write_text("format = 'something else'\n", encoding="utf-8")
    assert "is not a valid signature: its format is 'something else'" in verify(wasm).detail
    sig.write_bytes(b"\xff\xfe garbage")
    assert verify(wasm).state == "bad-signature"


# --------------------------------------------------------------------------------------------
# Loading with require_signature


def test_a_signed_plugin_by_a_trusted_key_loads_and_runs(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wasm = probe_wasm(tmp_path)
    sign(wasm, keys["alice"][0])
    plugin = load(spec("signed", wasm, required(keys["mallory"][1], keys["alice"][1])))
    try:
        assert plugin.call("tool", "name") == "hostile-tool"
        assert records(caplog, "signed") == ["about to spin"]
    finally:
        plugin.close()


def test_an_unsigned_plugin_is_refused(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    wasm = probe_wasm(tmp_path)
    error = assert_refused_before_running(
        "unsigned", wasm, required(keys["alice"][1]), tmp_path, caplog
    )
    assert f"{wasm} is unsigned (no probe.wasm.sig beside it)" in error.detail
    assert f"blocksync plugin sign {wasm} --key KEY" in error.detail
    # without require_signature the same file loads
    load(spec("unsigned", wasm, TrustPolicy(keys=(keys["alice"][1],)))).close()


def test_a_plugin_changed_after_signing_is_refused(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    wasm = probe_wasm(tmp_path)
    sign(wasm, keys["alice"][0])
    signed = sha(wasm)
    data = bytearray(wasm.read_bytes())
    at = data.index(b"hostile-tool")
    data[at] ^= 0x01  # "iostile-tool": still a perfectly valid component
    wasm.write_bytes(bytes(data))
    error = assert_refused_before_running(
        "tampered", wasm, required(keys["alice"][1]), tmp_path, caplog
    )
    assert (
        f"{wasm} was changed after it was signed (tampered): it has sha256 {sha(wasm)}, "
        f"the signature in probe.wasm.sig is for sha256 {signed}"
    ) in error.detail
    assert verify(wasm, [keys["alice"][1]]).state == "bad-signature"


def test_a_sig_copied_from_another_plugin_is_refused_naming_both_hashes(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    wasm = probe_wasm(tmp_path)
    other = tmp_path / "other.wasm"
    other.write_bytes(wasmtime.wat2wasm((ROOT / "fixtures/wat/wrong_types.wat").read_text()))
    shutil.copyfile(sign(other, keys["alice"][0]), signature_path(wasm))
    error = assert_refused_before_running(
        "copied", wasm, required(keys["alice"][1]), tmp_path, caplog
    )
    assert (
        f"{signature_path(wasm)} is the signature of another file ('other.wasm', sha256 "
        f"{sha(other)}), not of {wasm} (sha256 {sha(wasm)})"
    ) in error.detail
    assert verify(wasm, None).state == "other-file"


def test_a_plugin_signed_by_an_untrusted_key_is_refused(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    wasm = probe_wasm(tmp_path)
    sign(wasm, keys["mallory"][0])
    error = assert_refused_before_running(
        "untrusted", wasm, required(keys["alice"][1]), tmp_path, caplog
    )
    assert f"{wasm} is signed by {keys['mallory'][1]}, which is not a trusted key" in error.detail
    assert "add it to the plugin's trusted_keys or to keys in [trust]" in error.detail


def test_the_pin_and_the_signature_are_both_checked(
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    wasm = probe_wasm(tmp_path)
    sign(wasm, keys["alice"][0])
    both = PluginSpec(
        key="both", agent="alice", path=wasm, sha256=sha(wasm), trust=required(keys["alice"][1])
    )
    load(both).close()
    with pytest.raises(PluginRefused, match="but the config pins"):
        load(
            PluginSpec(
                key="both",
                agent="alice",
                path=wasm,
                sha256="0" * 64,
                trust=required(keys["alice"][1]),
            )
        )


# --------------------------------------------------------------------------------------------
# trust_state, for `plugin list`


def test_trust_state(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> None:
    wasm = probe_wasm(tmp_path)
    alice, mallory = keys["alice"][1], keys["mallory"][1]
    short = alice[: len("ed25519:") + 8] + "…"
    assert trust_state(spec("p", wasm, TrustPolicy())) == "unsigned"
    assert trust_state(spec("p", wasm, required(alice))) == "unsigned (refused)"
    pinned = PluginSpec(key="p", agent="a", path=wasm, sha256=sha(wasm))
    assert trust_state(pinned) == "pinned sha256"
    sign(wasm, keys["alice"][0])
    assert trust_state(spec("p", wasm, TrustPolicy())) == (
        f"signed by {short} (not in any trusted list)"
    )
    assert trust_state(spec("p", wasm, required(alice))) == f"signed by {short} (trusted)"
    assert trust_state(spec("p", wasm, TrustPolicy(keys=(mallory,)))) == (
        f"signed by {short} (untrusted)"
    )
    assert trust_state(spec("p", wasm, required(mallory))) == (
        f"signed by {short} (untrusted) (refused)"
    )
    assert trust_state(pinned) == f"signed by {short} (not in any trusted list); pinned sha256"
    wasm.write_bytes(wasm.read_bytes() + b"\0")
    assert trust_state(spec("p", wasm, TrustPolicy())) == "tampered"
    assert trust_state(pinned) == "tampered; pin mismatch (refused)"
    report = trust_report(spec("p", wasm, required(alice)))
    assert report.refused and report.verdict is not None
    assert report.verdict.state == "bad-signature"
    assert trust_state(spec("p", tmp_path / "gone.wasm", TrustPolicy())).startswith("unreadable")


# --------------------------------------------------------------------------------------------
# Configuration


def write_store(tmp_path: Path, table: str, top: str = "") -> Path:
    store = tmp_path / "store"
    if not store.exists():
        blocksync.init(store, author="test:setup").close()
    (store / "blocksync.toml").write_text(
        top + "[agents.alice.data_sources.tool]\n"
        'type = "wasm"\npath = "plugins/tool.wasm"\n' + table,
        encoding="utf-8",
    )
    return store


def test_require_signature_from_blocksync_toml(
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    alice = keys["alice"][1]
    store = write_store(tmp_path, f'require_signature = true\ntrusted_keys = ["{alice}"]\n')
    wasm = probe_wasm(store / "plugins", "tool.wasm")
    with (
        blocksync.open(store) as ws,
        pytest.raises(PluginRefused, match=r"plugin 'tool' .* load: the config requires a signa"),
    ):
        ws.plugins.tool("tool")
    sign(wasm, keys["alice"][0])
    with blocksync.open(store) as ws:
        assert ws.plugins.tool("tool").name() == "hostile-tool"
        assert ws.plugins.specs["tool"].trust == required(alice)


WHERE = r"\[agents\.alice\.data_sources\.tool\]"
BAD_PLUGIN_TABLES = {
    'require_signature = "yes"\n': WHERE + r"\.require_signature must be true or false, not 'yes'",
    'trusted_keys = "ed25519:x"\n': WHERE + r"\.trusted_keys must be a list of",
    "trusted_keys = [1]\n": WHERE + r"\.trusted_keys\[0\] must be a \"ed25519:<base64>\" string",
    'trusted_keys = ["ed25519:AAAA"]\n': (
        WHERE + r"\.trusted_keys\[0\] is not an Ed25519 public key: .* has 32 bytes, this one 3"
    ),
    'trusted_keys = ["ssh-ed25519 AAAA"]\n': (
        WHERE + r"\.trusted_keys\[0\] is not an Ed25519 public key: a public key is written"
    ),
    "require_signature = true\n": WHERE + r": require_signature = true, but no key is trusted",
}


@pytest.mark.parametrize("table", sorted(BAD_PLUGIN_TABLES))
def test_bad_trust_values_in_a_plugin_table_name_the_table(tmp_path: Path, table: str) -> None:
    store = write_store(tmp_path, table)
    with blocksync.open(store) as ws, pytest.raises(ConfigError, match=BAD_PLUGIN_TABLES[table]):
        ws.plugins  # noqa: B018  (the tables are checked on first use)


BAD_TRUST_TABLES = {
    'keys = "ed25519:x"\n': r"\[trust\]\.keys must be a list of",
    'keys = ["nope"]\n': r"\[trust\]\.keys\[0\] is not an Ed25519 public key",
    "require_signature = 1\n": r"\[trust\]\.require_signature must be true or false, not 1",
    "key = []\n": r"\[trust\]: unknown key\(s\) key; known: keys, require_signature",
}


@pytest.mark.parametrize("table", sorted(BAD_TRUST_TABLES))
def test_bad_values_in_the_trust_table_name_it(table: str) -> None:
    with pytest.raises(ConfigError, match=BAD_TRUST_TABLES[table]):
        parse_trust(tomllib.loads(table))


def test_a_plugin_table_overrides_the_global_trust(keys: dict[str, tuple[Path, str]]) -> None:
    alice, mallory = keys["alice"][1], keys["mallory"][1]
    glob = parse_trust(tomllib.loads(f'keys = ["{alice}", "{alice}"]\nrequire_signature = true'))
    assert glob == TrustPolicy(True, (alice,))
    base = {"type": "wasm", "path": "x.wasm"}

    def parsed(**table: object) -> TrustPolicy:
        return parse_wasm_source("a", "k", {**base, **table}, Path("/s"), {}, glob).trust

    assert parsed() == glob
    assert parsed(trusted_keys=[mallory]) == TrustPolicy(True, (mallory,)), "replaces, not adds"
    assert parsed(require_signature=False) == TrustPolicy(False, (alice,))
    assert parse_wasm_source("a", "k", base, Path("/s"), {}).trust == TrustPolicy()


def test_the_global_trust_table_from_blocksync_toml(
    tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    alice = keys["alice"][1]
    store = write_store(tmp_path, "", f'[trust]\nkeys = ["{alice}"]\nrequire_signature = true\n\n')
    wasm = probe_wasm(store / "plugins", "tool.wasm")
    with blocksync.open(store) as ws:
        assert ws.plugins.specs["tool"].trust == required(alice)
        with pytest.raises(PluginRefused, match="is unsigned"):
            ws.plugins.tool("tool")
    sign(wasm, keys["alice"][0])
    with blocksync.open(store) as ws:
        assert ws.plugins.tool("tool").name() == "hostile-tool"
    write_store(tmp_path, "", "[trust]\nrequire_signature = 2\n\n")
    with (
        blocksync.open(store) as ws,
        pytest.raises(ConfigError, match=r"\[trust\]\.require_signature must be true or false"),
    ):
        ws.plugins  # noqa: B018


def test_hot_reload_does_not_swap_in_a_changed_file_without_a_good_signature(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The reload path goes through the same check: a file swapped under a running plugin."""
    wasm = probe_wasm(tmp_path)
    sign(wasm, keys["alice"][0])
    plugin = load(spec("reloaded", wasm, required(keys["alice"][1])))
    try:
        assert plugin.call("tool", "name") == "hostile-tool"
        data = bytearray(wasm.read_bytes())
        data[data.index(b"hostile-tool")] ^= 0x01
        wasm.write_bytes(bytes(data))
        assert plugin.call("tool", "name") == "hostile-tool", "the signed version keeps serving"
        assert plugin.last_error is not None
        assert "changed after it was signed (tampered)" in plugin.last_error
        sign(wasm, keys["alice"][0])  # the new version signed: its .sig arriving is a change
        assert plugin.call("tool", "name") == "iostile-tool"  # "h" with its low bit flipped
        assert plugin.last_error is None
    finally:
        plugin.close()
