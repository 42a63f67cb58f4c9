"""Plugin trust: Ed25519 keys, detached signatures, and the check ``load`` makes before compiling.

File formats (all text; the public key and the signature are meant to be read and pasted):

- **Public key** (``<private>.pub``, and every entry of ``trusted_keys`` / ``[trust] keys``):
  one line ``ed25519:<standard base64 of the 32 raw key bytes>``. It is also the key's *id*:
  what a signature names, what errors print in full (so it can be pasted into the config), and
  what ``short_key`` abbreviates for listings.
- **Private key**: PEM, PKCS#8, unencrypted (``-----BEGIN PRIVATE KEY-----``), written with mode
  0600 and never over an existing file. PEM rather than a one-line ``ed25519-private:…`` form
  because (1) it must never look like something to paste into ``blocksync.toml`` next to the
  public keys: a one-line private form one character away from the public one invites exactly
  that mistake, and the PEM armour also lets us say clearly "this is a public key, not a private
  one" (and the reverse); (2) it is the standard form, so ``openssl pkey -in KEY -pubout`` and
  every crypto library read it, and keys made elsewhere (``openssl genpkey -algorithm ed25519``)
  work here.
- **Signature** (``<file>.wasm.sig``, beside the plugin): a small TOML document::

      # blocksync plugin signature: Ed25519 by `key` over format, key, file, sha256 and size
      format = "blocksync-signature-v1"
      key = "ed25519:…"
      file = "files.wasm"          # the file's name when it was signed (for messages only)
      sha256 = "<64 hex digits>"   # of the signed file
      size = 123456                # bytes of the signed file
      signature = "<base64 of the 64-byte Ed25519 signature>"

  The signature covers every other field (``signed_message``), so nothing in the file can be
  changed without it failing. It signs the file's sha256 and size rather than its raw bytes:
  the same strength (sha256 is collision resistant), the check reuses the hash ``load``
  computes anyway over the very bytes it then compiles (no second read, so no window to swap the
  file between check and compile), and a mismatch can name both hashes: "this .sig is for the
  file with sha256 X, this file has sha256 Y". The file name distinguishes the two ways to get
  there: a file changed after signing (same name: ``bad-signature``, i.e. tampered) from a .sig
  copied from another plugin (``other-file``). Renaming a signed plugin (with its .sig) keeps
  it signed: the name is never required to match.

Configuration (parsed in :mod:`.spec`): a ``[trust]`` table with ``keys`` (trusted public keys)
and ``require_signature`` (default false); each plugin's table may set ``require_signature``
and ``trusted_keys``, which *replaces* the global list for that plugin (a plugin table that
names its signer means exactly that signer; to add to the global list, repeat it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from blocksync.fs.safefile import write_atomic

from ..errors import PluginRefused, UsageError

log = logging.getLogger("blocksync.plugins.trust")

KEY_PREFIX = "ed25519:"
SIG_FORMAT = "blocksync-signature-v1"
SIG_SUFFIX = ".sig"

State = Literal["signed", "unsigned", "bad-signature", "untrusted-key", "other-file"]


@dataclass(frozen=True)
class TrustPolicy:
    """What one plugin's configuration asks: a signature, by one of these keys."""

    require_signature: bool = False
    #: trusted public keys, normalised (``ed25519:<base64>``)
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What a plugin's signature says about it.

    ``state``: ``signed`` (a good signature of this very file, by a trusted key or, when no
    trusted list was given, by the key it names), ``unsigned`` (no .sig), ``bad-signature``
    (the .sig is damaged or altered, or the file changed after it was signed),
    ``untrusted-key`` (a good signature by a key not in the trusted list), ``other-file``
    (a good signature of another file). ``key`` is the signing key's id when the .sig names
    one; ``detail`` a sentence naming the file and the reason.
    """

    state: State
    key: str | None
    detail: str
    path: Path
    sha256: str
    #: the sha256 the .sig says it signed, when it says
    signed_sha256: str | None = None
    #: whether the key is in the trusted list (None: no list was given)
    trusted: bool | None = None

    @property
    def ok(self) -> bool:
        return self.state == "signed"


# -- keys ---------------------------------------------------------------------------------------


def format_public_key(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64 of the 32 raw bytes>``: the key's text form and id."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> str:
    """The normalised form of a public key written ``ed25519:<base64>``; ValueError saying
    what is wrong otherwise (callers wrap it in the error their context needs)."""
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        if "PRIVATE KEY" in text:
            raise ValueError("it is a private key, not a public key (give its .pub)")
        raise ValueError(f"a public key is written {KEY_PREFIX}<base64 of 32 bytes>")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text[len(KEY_PREFIX) :]!r} is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return format_public_key(Ed25519PublicKey.from_public_bytes(raw))


def short_key(key: str) -> str:
    """A key id abbreviated for listings: ``ed25519:AbCdEfGh…``."""
    return key[: len(KEY_PREFIX) + 8] + "…" if key.startswith(KEY_PREFIX) else key


def _public(key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(key[len(KEY_PREFIX) :]))


def public_key_path(private_path: Path) -> Path:
    """Where :func:`generate_key` puts the public half: ``<private_path>.pub``."""
    return private_path.with_name(private_path.name + ".pub")


def generate_key(private_path: Path) -> str:
    """Make a new Ed25519 key pair: the private key at ``private_path`` (PEM PKCS#8, mode
    0600) and the public key at ``<private_path>.pub``; returns the public key (its id).

    Refuses (UsageError) when either file exists already: a key is never overwritten.
    """
    public_path = public_key_path(private_path)
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} exists already: refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = format_public_key(key.public_key())
    try:
        write_atomic(private_path, pem, mode=0o600, exclusive=True)
        write_atomic(public_path, (public + "\n").encode("ascii"), mode=0o644, exclusive=True)
    except FileExistsError as exc:
        raise UsageError(f"{exc.filename} exists already: refusing to overwrite a key") from exc
    except OSError as exc:
        where = exc.filename or private_path
        raise UsageError(f"cannot write key {where}: {exc.strerror or exc}") from exc
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM PKCS#8); UsageError saying why it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    text = data.decode("utf-8", "replace").strip()
    if text.startswith(KEY_PREFIX) or "BEGIN PUBLIC KEY" in text:
        raise UsageError(
            f"{path} is a public key: signing needs the private key (the file without .pub)"
        )
    encrypted = f"{path} is encrypted with a passphrase; blocksync reads unencrypted keys"
    if "ENCRYPTED PRIVATE KEY" in text:
        raise UsageError(encrypted)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted in a form the check above missed
        raise UsageError(encrypted) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(
            f'{path} is not a private key (expected PEM "BEGIN PRIVATE KEY", as '
            "`blocksync plugin keygen` writes)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "another"
        raise UsageError(f"{path} is a {kind} key, not an Ed25519 key")
    return key


def load_public_key(source: str | Path) -> str:
    """A trusted key as the CLI's ``--key`` gives it: the key itself (``ed25519:…``) or a file
    holding it (a ``.pub`` from keygen, or PEM ``BEGIN PUBLIC KEY``); UsageError otherwise.
    Returns the normalised key id."""
    if isinstance(source, str) and source.strip().startswith(KEY_PREFIX):
        try:
            return parse_public_key(source)
        except ValueError as exc:
            raise UsageError(f"{source!r} is not an Ed25519 public key: {exc}") from None
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    text = data.decode("utf-8", "replace").strip()
    if "BEGIN PUBLIC KEY" in text:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise UsageError(f"{path} is not a readable public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError(f"{path} is not an Ed25519 public key")
        return format_public_key(key)
    try:
        return parse_public_key(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not an Ed25519 public key: {exc}") from None


# -- signatures ---------------------------------------------------------------------------------


def signature_path(wasm: Path) -> Path:
    """Where a plugin's detached signature lives: ``<wasm>.sig``."""
    return wasm.with_name(wasm.name + SIG_SUFFIX)


def signed_message(key: str, file: str, sha256: str, size: int) -> bytes:
    """The bytes an Ed25519 signature covers (every field of the .sig but the signature)."""
    return (
        f"{SIG_FORMAT}\nkey={key}\nfile={json.dumps(file)}\nsha256={sha256}\nsize={size}\n"
    ).encode()


def sign(wasm: Path, key_path: Path) -> Path:
    """Sign ``wasm`` with the private key at ``key_path``: writes ``<wasm>.sig`` (atomically,
    replacing an older one) and returns its path. UsageError if either file is unfit."""
    key = load_private_key(key_path)
    try:
        data = wasm.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {wasm}: {exc.strerror or exc}") from exc
    public = format_public_key(key.public_key())
    sha = hashlib.sha256(data).hexdigest()
    signature = key.sign(signed_message(public, wasm.name, sha, len(data)))
    text = (
        "# blocksync plugin signature: Ed25519 by `key` over format, key, file, sha256 and size\n"
        f"format = {json.dumps(SIG_FORMAT)}\n"
        f"key = {json.dumps(public)}\n"
        f"file = {json.dumps(wasm.name)}\n"
        f"sha256 = {json.dumps(sha)}\n"
        f"size = {len(data)}\n"
        f"signature = {json.dumps(base64.b64encode(signature).decode('ascii'))}\n"
    )
    out = signature_path(wasm)
    try:
        write_atomic(out, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


@dataclass(frozen=True)
class _Sig:
    key: str
    file: str
    sha256: str
    size: int
    signature: bytes


def _read_sig(sig: Path) -> _Sig:
    """The fields of a .sig; ValueError saying what is wrong."""
    try:
        doc = tomllib.loads(sig.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError("it is not text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"it is not a blocksync signature ({exc})") from None
    except RecursionError:
        raise ValueError("it is not a blocksync signature (it nests too deeply)") from None
    if doc.get("format") != SIG_FORMAT:
        raise ValueError(f"its format is {doc.get('format')!r}, not {SIG_FORMAT!r}")
    types = {"key": str, "file": str, "sha256": str, "size": int, "signature": str}
    wrong = [f"{k} (a {t.__name__})" for k, t in types.items() if not isinstance(doc.get(k), t)]
    if wrong:
        raise ValueError(f"it lacks {', '.join(wrong)}")
    key, file, sha, size, signature = (doc[k] for k in types)
    key = parse_public_key(key)
    if not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ValueError("its sha256 is not 64 lowercase hex digits")
    if isinstance(size, bool) or size < 0:
        raise ValueError("its size is not a byte count")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its signature is not base64") from None
    if len(raw) != 64:
        raise ValueError(f"its signature has {len(raw)} bytes, not 64")
    return _Sig(key, file, sha, size, raw)


def verify(wasm: Path, trusted: Sequence[str] | None = None) -> Verdict:
    """Check ``wasm`` against its ``<wasm>.sig``.

    ``trusted``: the public keys to accept (``ed25519:…``; see :func:`load_public_key` for
    files). None checks the signature against the key the .sig names, and reports
    "signed by <key> (not in any trusted list)"; an empty list trusts no key.
    UsageError if ``wasm`` cannot be read or a trusted key is malformed.
    """
    try:
        data = wasm.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {wasm}: {exc.strerror or exc}") from exc
    keys = None
    if trusted is not None:
        keys = []
        for k in trusted:
            try:
                keys.append(parse_public_key(k))
            except ValueError as exc:
                raise UsageError(f"{k!r} is not an Ed25519 public key: {exc}") from None
    return verify_data(wasm, hashlib.sha256(data).hexdigest(), len(data), keys)


def verify_data(path: Path, sha256: str, size: int, trusted: Sequence[str] | None) -> Verdict:
    """:func:`verify` for a file already read (``sha256`` and ``size`` of the bytes that will
    be used): the check the loader makes, so the bytes checked are the bytes compiled.
    ``trusted`` must hold normalised keys (:func:`parse_public_key`)."""
    sig_path = signature_path(path)

    def verdict(
        state: State,
        detail: str,
        key: str | None = None,
        signed_sha256: str | None = None,
        trusted: bool | None = None,
    ) -> Verdict:
        return Verdict(state, key, detail, path, sha256, signed_sha256, trusted)

    if not sig_path.exists():
        return verdict("unsigned", f"{path} is unsigned (no {sig_path.name} beside it)")
    try:
        sig = _read_sig(sig_path)
    except OSError as exc:
        return verdict("bad-signature", f"cannot read {sig_path}: {exc.strerror or exc}")
    except ValueError as exc:
        return verdict("bad-signature", f"{sig_path} is not a valid signature: {exc}")
    try:
        message = signed_message(sig.key, sig.file, sig.sha256, sig.size)
        _public(sig.key).verify(sig.signature, message)
    except InvalidSignature:
        return verdict(
            "bad-signature",
            f"the signature in {sig_path} does not verify: the .sig was altered after signing",
            key=sig.key,
            signed_sha256=sig.sha256,
        )
    if (sig.sha256, sig.size) != (sha256, size):
        if sig.file == path.name:
            return verdict(
                "bad-signature",
                f"{path} was changed after it was signed (tampered): it has sha256 {sha256}, "
                f"the signature in {sig_path.name} is for sha256 {sig.sha256}",
                key=sig.key,
                signed_sha256=sig.sha256,
            )
        return verdict(
            "other-file",
            f"{sig_path} is the signature of another file ({sig.file!r}, sha256 {sig.sha256}), "
            f"not of {path} (sha256 {sha256})",
            key=sig.key,
            signed_sha256=sig.sha256,
        )
    if trusted is None:
        return verdict(
            "signed",
            f"{path} is signed by {sig.key} (not in any trusted list)",
            key=sig.key,
            signed_sha256=sig.sha256,
        )
    if sig.key not in trusted:
        known = ", ".join(short_key(k) for k in trusted) or "none"
        return verdict(
            "untrusted-key",
            f"{path} is signed by {sig.key}, which is not a trusted key (trusted: {known})",
            key=sig.key,
            signed_sha256=sig.sha256,
            trusted=False,
        )
    return verdict(
        "signed",
        f"{path} is signed by {sig.key} (trusted)",
        key=sig.key,
        signed_sha256=sig.sha256,
        trusted=True,
    )


# -- the loader's check, and what `plugin list` shows ------------------------------------------


def enforce(
    policy: TrustPolicy, name: str, version: str, path: Path, sha256: str, size: int
) -> None:
    """The loader's trust check, made on the bytes about to be compiled, before any of the
    plugin's code runs: PluginRefused (naming plugin, file and reason) when the policy
    requires a signature and the file is not signed, by a trusted key, as it is now."""
    if not policy.require_signature:
        return
    verdict = verify_data(path, sha256, size, policy.keys)
    if verdict.ok:
        return
    if not policy.keys:
        reason = f"{verdict.detail}; no key is trusted (set trusted_keys, or keys in [trust])"
    elif verdict.state == "unsigned":
        reason = f"{verdict.detail}; sign it with `blocksync plugin sign {path} --key KEY`"
    elif verdict.state == "untrusted-key":
        reason = (
            f"{verdict.detail}; if you trust it, add it to the plugin's trusted_keys "
            "or to keys in [trust]"
        )
    else:
        reason = verdict.detail
    raise PluginRefused(name, version, "load", f"the config requires a signature: {reason}")


class Signed(Protocol):
    """What a trust check reads of a plugin (a :class:`~.spec.PluginSpec`): its file, its
    policy and its pin. A Protocol, so this module needs nothing of the spec's."""

    @property
    def path(self) -> Path: ...
    @property
    def trust(self) -> TrustPolicy: ...
    @property
    def sha256(self) -> str | None: ...


@dataclass(frozen=True)
class TrustReport:
    """A configured plugin's trust, as ``blocksync plugin list`` shows it."""

    verdict: Verdict | None  # None: the file cannot be read
    pinned: bool
    pin_ok: bool | None  # None: not pinned, or unreadable
    required: bool
    #: whether load would refuse the plugin for trust reasons (signature or pin)
    refused: bool
    state: str


def trust_report(spec: Signed) -> TrustReport:
    """Check ``spec``'s file against its signature, trusted keys and pin (reads the file,
    never compiles or runs it)."""
    policy = spec.trust
    pinned = spec.sha256 is not None
    try:
        data = spec.path.read_bytes()
    except OSError as exc:
        state = f"unreadable ({exc.strerror or exc})"
        return TrustReport(None, pinned, None, policy.require_signature, True, state)
    sha = hashlib.sha256(data).hexdigest()
    keys = policy.keys if (policy.keys or policy.require_signature) else None
    verdict = verify_data(spec.path, sha, len(data), keys)
    pin_ok = None if not pinned else spec.sha256 == sha
    parts = []
    if verdict.state == "signed":
        how = "trusted" if verdict.trusted else "not in any trusted list"
        parts.append(f"signed by {short_key(verdict.key or '')} ({how})")
    elif verdict.state == "untrusted-key":
        parts.append(f"signed by {short_key(verdict.key or '')} (untrusted)")
    elif verdict.state == "bad-signature":
        parts.append("tampered")
    elif verdict.state == "other-file":
        parts.append("signature of another file")
    elif not pinned:
        parts.append("unsigned")
    if pinned:
        parts.append("pinned sha256" if pin_ok else "pin mismatch")
    refused = (policy.require_signature and not verdict.ok) or pin_ok is False
    state = "; ".join(parts) + (" (refused)" if refused else "")
    return TrustReport(verdict, pinned, pin_ok, policy.require_signature, refused, state)


def trust_state(spec: Signed) -> str:
    """One line for ``plugin list``: "signed by ed25519:AbCdEfGh… (trusted)", "unsigned",
    "pinned sha256", "tampered", "signed by … (untrusted) (refused)", ..."""
    return trust_report(spec).state
