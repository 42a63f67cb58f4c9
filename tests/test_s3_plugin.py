"""The `s3` reference plugin (fixtures/plugins/s3, built with componentize-py) against a real
S3-compatible server: moto in server mode on 127.0.0.1, reached only through the host's
`http.request` and its allowlist. Driven through `ws.reconcile` and `ws.conflicts` like any source;
real git (checked with the git CLI), real SQLite. Servers that fail on purpose (500, too slow, too
big) are tiny `http.server`s (tests/s3server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import blocksync
from blocksync.shared import sigv4
from blocksync.testing import CASES, check_plugin

from .conftest import assert_git_fsck
from .plugin_builds import built_plugin
from .s3server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Server,
    fault_server,
    plugin_config,
    s3_server,
    sha256,
)
from .stores import HOST_CACHE, base_of, make_store, refs_of

KEY = "docs"
OWNER = "alice"
BASE = "one\ntwo\nthree\n"


@pytest.fixture(scope="module")
def wasm() -> Path:
    return built_plugin("s3")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def label(path: str, tag: str = KEY) -> str:
    return f"s3:{tag}:{path}"


class Rig:
    """A store whose source `docs` is the s3 plugin on a fresh bucket of the moto server."""

    def __init__(self, tmp: Path, wasm: Path, s3: S3Server, **config: Any) -> None:
        self.s3 = s3
        self.bucket = s3.new_bucket()
        self.prefix = config.get("prefix", "")
        config.setdefault("tag", KEY)
        config.setdefault("permission", "admin")
        self.store = make_store(
            tmp / "store",
            {
                KEY: {
                    "path": wasm,
                    "allowed_hosts": [s3.hostport],
                    "config": plugin_config(s3, self.bucket, **config),
                },
            },
        )
        self.ws = blocksync.open(self.store, author="human:test")

    def put(self, path: str, data: str | bytes) -> str:
        return self.s3.put(self.bucket, self.prefix + path, data)

    def read(self, path: str) -> str | None:
        return self.s3.get(self.bucket, self.prefix + path)

    def remove(self, path: str) -> None:
        self.s3.delete(self.bucket, self.prefix + path)

    def block(self, path: str) -> str | None:
        if not self.ws.blocks.exists(OWNER, label(path)):
            return None
        return self.ws.blocks.read(OWNER, label(path)).content

    def base(self, path: str) -> str | None:
        return base_of(self.ws, KEY, path)

    def refs(self, *, records: bool = True) -> dict[str, str]:
        return refs_of(self.ws.repo_path, records=records)

    def synced(self, *paths: str, content: str = BASE) -> None:
        for path in paths:
            self.put(path, content)
        report = self.ws.reconcile()
        assert report.sources[0].error is None, report.sources[0].error
        for path in paths:
            assert self.block(path) == content and self.base(path) == content

    def close(self) -> None:
        assert self.ws.fsck().ok
        self.ws.close()
        assert_git_fsck(self.store / "repo")


@pytest.fixture
def rig(tmp_path: Path, wasm: Path, s3: S3Server) -> Iterator[Rig]:
    rig = Rig(tmp_path, wasm, s3)
    yield rig
    rig.close()


# -- SigV4 (blocksync.shared.sigv4: the host's module, shipped into the plugin as blocksync_sigv4) ---


def test_sigv4_matches_the_aws_documented_example() -> None:
    """AWS's "GET Object" example (S3 API reference, Signature Version 4 examples)."""
    headers = sigv4.sign(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        [("Range", "bytes=0-9")],
        None,
        region="us-east-1",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        amz_date="20130524T000000Z",
    )
    assert dict(headers)["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def botocore_authorization(method: str, url: str, headers: dict[str, str], body: bytes) -> str:
    """What botocore's own S3 SigV4 signer puts in Authorization for the same request."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    stamp = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={
            k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date")
        },
    )
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: stamp.replace(tzinfo=None)
    try:
        botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(
            request
        )
    finally:
        botocore.auth.get_current_datetime = original
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("key", ["a.md", "dir/with space/ünïcode+plus=&.md"])
def test_sigv4_agrees_with_botocore(key: str) -> None:
    module = sigv4
    url = "http://127.0.0.1:9000/bucket/" + module.quote_path(key)
    url += "?" + module.canonical_query([("prefix", "a b/"), ("list-type", "2"), ("x", "")])
    body = b"hello\n"
    signed = dict(
        module.sign(
            "PUT",
            url,
            [("Content-Type", "text/plain"), ("x-amz-meta-sha256", "ab")],
            body,
            region=REGION,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            amz_date="20260102T030405Z",
        )
    )
    assert signed["Authorization"] == botocore_authorization("PUT", url, signed, body)


def test_the_plugin_signs_every_request_with_the_servers_time(tmp_path: Path, wasm: Path) -> None:
    with fault_server("record") as server:
        store = make_store(
            tmp_path / "store",
            {
                KEY: {
                    "path": wasm,
                    "allowed_hosts": [server.hostport],
                    "config": {
                        "bucket": "b",
                        "region": REGION,
                        "endpoint": server.endpoint,
                        "owner": OWNER,
                        "prefix": "notes",
                        "access_key": ACCESS_KEY,
                        "secret_key": SECRET_KEY,
                    },
                }
            },
        )
        with blocksync.open(store, author="human:test") as ws:
            report = ws.reconcile()
            assert report.sources[0].error is None and report.sources[0].unchanged == 0
        clock, listing = server.requests
    assert (clock.method, clock.path, "Authorization" in clock.headers) == ("HEAD", "/b/", False)
    assert listing.method == "GET" and "prefix=notes%2F" in listing.path
    auth = listing.headers["Authorization"]
    assert f"Credential={ACCESS_KEY}/" in auth and f"/{REGION}/s3/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == ["host", "x-amz-content-sha256", "x-amz-date"]
    sent = {k: v for k, v in listing.headers.items() if k.lower() in signed}
    assert auth == botocore_authorization("GET", server.endpoint + listing.path, sent, b"")


# -- round trips against moto ------------------------------------------------------------------


def test_objects_become_blocks_and_edits_flow_both_ways(
    tmp_path: Path, wasm: Path, s3: S3Server
) -> None:
    rig = Rig(tmp_path, wasm, s3, prefix="notes/")
    try:
        s3.put(rig.bucket, "outside/prefix.md", "not mirrored\n")
        for i in range(5):
            rig.put(f"d{i % 2}/f{i}.md", f"object {i}\n")
        rig.put("empty.md", "")
        main = rig.refs().get("refs/heads/main")
        report = rig.ws.reconcile()
        (source,) = report.sources
        assert source.error is None and report.exit_code == 0
        assert sorted(source.resolved) == sorted(
            [(f"d{i % 2}/f{i}.md", "disk->agent") for i in range(5)] + [("empty.md", "disk->agent")]
        )
        assert rig.block("d1/f3.md") == "object 3\n" and rig.base("d1/f3.md") == "object 3\n"
        assert rig.block("empty.md") == "" and rig.refs().get("refs/heads/main") != main
        assert not rig.ws.blocks.exists(OWNER, label("outside/prefix.md"))
        again = rig.ws.reconcile()
        assert again.sources[0].unchanged == 6 and not again.sources[0].resolved
        # the agent edits a block: the object follows, with its sha256 in the metadata
        rig.ws.blocks.update(OWNER, label("d0/f0.md"), "edited by the agent\n")
        # someone edits an object: the block follows
        rig.put("d1/f1.md", "edited in the bucket\n")
        # an object is deleted (the plugin is admin): its block goes
        rig.remove("d0/f2.md")
        report = rig.ws.reconcile()
        assert sorted(report.sources[0].resolved) == [
            ("d0/f0.md", "agent->disk"),
            ("d0/f2.md", "delete-block"),
            ("d1/f1.md", "disk->agent"),
        ]
        assert rig.read("d0/f0.md") == "edited by the agent\n"
        meta = s3.head(rig.bucket, "notes/d0/f0.md")["Metadata"]
        assert meta == {"sha256": sha256("edited by the agent\n")}
        assert rig.block("d1/f1.md") == "edited in the bucket\n"
        assert rig.block("d0/f2.md") is None and rig.base("d0/f2.md") is None
        # the agent deletes a block: the object goes
        rig.ws.blocks.delete(OWNER, label("d0/f4.md"))
        report = rig.ws.reconcile()
        assert report.sources[0].resolved == [("d0/f4.md", "delete-source")]
        assert rig.read("d0/f4.md") is None
        assert s3.keys(rig.bucket) == [
            "notes/d0/f0.md",
            "notes/d1/f1.md",
            "notes/d1/f3.md",
            "notes/empty.md",
            "outside/prefix.md",
        ]
        final = rig.ws.reconcile()
        assert final.sources[0].unchanged == 4 and not final.sources[0].resolved
    finally:
        rig.close()


def test_listing_pages_through_continuation_tokens(
    tmp_path: Path, wasm: Path, s3: S3Server
) -> None:
    rig = Rig(tmp_path, wasm, s3, page_size=2)
    try:
        paths = [f"p{i}.md" for i in range(7)]
        rig.synced(*paths)
        assert rig.ws.reconcile().sources[0].unchanged == 7
    finally:
        rig.close()


def test_a_non_utf8_object_is_left_alone(rig: Rig) -> None:
    rig.put("bin.dat", b"\xff\xfe binary")
    rig.put("text.md", "text\n")
    report = rig.ws.reconcile()
    assert report.sources[0].resolved == [("text.md", "disk->agent")]
    assert report.sources[0].unchanged == 1 and rig.block("bin.dat") is None
    assert rig.s3.client.get_object(Bucket=rig.bucket, Key="bin.dat")["Body"].read() == (
        b"\xff\xfe binary"
    )


def test_an_unchanged_run_only_lists(rig: Rig) -> None:
    """The fast path: a bound object whose size and ETag (its MD5) match the base is unchanged
    without a GET; an edit that keeps the size is still seen (the MD5 differs)."""
    rig.synced("a.md", "b.md")
    rig.put("a.md", "ONE\ntwo\nthree\n")  # same length as BASE
    report = rig.ws.reconcile()
    assert report.sources[0].resolved == [("a.md", "disk->agent")]
    assert rig.block("a.md") == "ONE\ntwo\nthree\n" and report.sources[0].unchanged == 1


def test_a_dry_run_writes_nothing(rig: Rig) -> None:
    rig.synced("a.md", "b.md")
    rig.put("a.md", "disk edit\n")
    rig.ws.blocks.update(OWNER, label("b.md"), "agent edit\n")
    rig.put("new.md", "new\n")
    before = rig.refs()
    report = rig.ws.reconcile(dry_run=True)
    assert sorted(report.sources[0].resolved) == [
        ("a.md", "disk->agent"),
        ("b.md", "agent->disk"),
        ("new.md", "disk->agent"),
    ]
    assert rig.refs() == before
    assert (rig.read("b.md"), rig.block("a.md"), rig.block("new.md")) == (BASE, BASE, None)


# -- conflicts -----------------------------------------------------------------------------------


def test_a_clean_merge_goes_to_both_sides(rig: Rig) -> None:
    rig.synced("a.md")
    rig.put("a.md", "ONE\ntwo\nthree\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "one\ntwo\nthree\nfour\n")
    report = rig.ws.reconcile()
    assert report.sources[0].resolved == [("a.md", "merged")]
    merged = "ONE\ntwo\nthree\nfour\n"
    assert (rig.read("a.md"), rig.block("a.md"), rig.base("a.md")) == (merged, merged, merged)


@pytest.mark.parametrize("take", ["disk", "agent"])
def test_a_conflict_reaches_the_index_and_is_resolved(rig: Rig, take: str) -> None:
    rig.synced("a.md")
    rig.put("a.md", "one\nTWO in the bucket\nthree\n")
    rig.ws.blocks.update(OWNER, label("a.md"), "one\nTWO by the agent\nthree\n")
    report = rig.ws.reconcile()
    assert report.sources[0].needs_resolution == ["a.md"] and report.exit_code == 3
    (conflict,) = rig.ws.conflicts.list()
    assert (conflict.source, conflict.owner, conflict.label) == (KEY, OWNER, label("a.md"))
    assert (conflict.base, conflict.disk, conflict.agent) == (
        BASE,
        "one\nTWO in the bucket\nthree\n",
        "one\nTWO by the agent\nthree\n",
    )
    assert conflict.reason == "both sides changed the same lines"
    # a re-run finds the same row
    rig.ws.reconcile()
    assert [c.id for c in rig.ws.conflicts.list()] == [conflict.id]
    chosen = conflict.disk if take == "disk" else conflict.agent
    done = rig.ws.conflicts.resolve(conflict.id, take=take, resolver="human:me")  # type: ignore[arg-type]
    assert done.status == "resolved"
    assert (rig.read("a.md"), rig.block("a.md"), rig.base("a.md")) == (chosen, chosen, chosen)
    after = rig.ws.reconcile()
    assert after.sources[0].unchanged == 1 and after.open_conflicts == 0


def test_delete_versus_modify_is_a_conflict_both_ways(rig: Rig) -> None:
    rig.synced("gone-in-bucket.md", "gone-as-block.md")
    rig.remove("gone-in-bucket.md")
    rig.ws.blocks.update(OWNER, label("gone-in-bucket.md"), "changed while deleted in S3\n")
    rig.put("gone-as-block.md", "changed in S3\n")
    rig.ws.blocks.delete(OWNER, label("gone-as-block.md"))
    report = rig.ws.reconcile()
    assert sorted(report.sources[0].needs_resolution) == ["gone-as-block.md", "gone-in-bucket.md"]
    rows = {c.path: c for c in rig.ws.conflicts.list()}
    in_bucket, as_block = rows["gone-in-bucket.md"], rows["gone-as-block.md"]
    assert (in_bucket.base, in_bucket.disk, in_bucket.agent) == (
        BASE,
        None,
        "changed while deleted in S3\n",
    )
    assert (as_block.base, as_block.disk, as_block.agent) == (BASE, "changed in S3\n", None)
    assert "deleted" in in_bucket.reason and "deleted" in as_block.reason
    # the agent's edit wins: the object comes back; the bucket's edit wins: the block comes back
    rig.ws.conflicts.resolve(in_bucket.id, take="agent")
    rig.ws.conflicts.resolve(as_block.id, take="disk")
    assert rig.read("gone-in-bucket.md") == "changed while deleted in S3\n"
    assert rig.block("gone-as-block.md") == "changed in S3\n"
    after = rig.ws.reconcile()
    assert after.sources[0].unchanged == 2 and after.open_conflicts == 0


def test_read_only_never_writes_the_bucket(tmp_path: Path, wasm: Path, s3: S3Server) -> None:
    rig = Rig(tmp_path, wasm, s3, permission="read-only")
    try:
        rig.synced("a.md")
        rig.put("a.md", "one\nTWO in the bucket\nthree\n")
        rig.ws.blocks.update(OWNER, label("a.md"), "one\nTWO by the agent\nthree\n")
        report = rig.ws.reconcile()
        assert report.sources[0].resolved == [("a.md", "disk->agent")]
        assert rig.read("a.md") == rig.block("a.md") == "one\nTWO in the bucket\nthree\n"
    finally:
        rig.close()


# -- failures: nothing is committed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "S3 ListObjectsV2 s3://b/: HTTP 500 InternalError"),
        ("slow", "no complete answer within 0.5 s"),
        ("big", "larger than the cap of 1048576 bytes"),
    ],
)
def test_a_failing_server_fails_the_source_and_commits_nothing(
    tmp_path: Path, wasm: Path, mode: str, expected: str
) -> None:
    with fault_server(mode, delay=2.0, size=2 << 20) as server:
        store = make_store(
            tmp_path / "store",
            {
                KEY: {
                    "path": wasm,
                    "allowed_hosts": [server.hostport],
                    "limits": {"http_timeout": 0.5, "http_response_mb": 1},
                    "config": {
                        "bucket": "b",
                        "region": REGION,
                        "endpoint": server.endpoint,
                        "owner": OWNER,
                        "access_key": ACCESS_KEY,
                        "secret_key": SECRET_KEY,
                    },
                }
            },
        )
        with blocksync.open(store, author="human:test") as ws:
            ws.blocks.create(OWNER, label("a.md"), "a block\n")
            before = refs_of(ws.repo_path, records=False)  # the run log's row moves records
            report = ws.reconcile()
            (source,) = report.sources
            assert report.exit_code == 1 and source.error is not None
            assert KEY in source.error and "reconcile" in source.error, source.error
            assert "ListObjectsV2" in source.error and expected in source.error, source.error
            assert refs_of(ws.repo_path, records=False) == before and ws.fsck().ok
            assert ws.conflicts.list(status="all") == []
    assert_git_fsck(store / "repo")


def test_a_failing_write_commits_nothing_and_the_next_run_converges(
    tmp_path: Path, wasm: Path, s3: S3Server
) -> None:
    """A bucket that refuses writes (a bucket policy, here: the bucket is gone) fails the call
    after the block side was written in the batch: the batch is discarded."""
    rig = Rig(tmp_path, wasm, s3)
    try:
        rig.synced("a.md")
        rig.ws.blocks.update(OWNER, label("a.md"), "agent edit\n")
        rig.put("b.md", "new in the bucket\n")
        before = rig.refs(records=False)  # the run log's row moves records
        rig.remove("a.md")
        rig.remove("b.md")
        s3.client.delete_bucket(Bucket=rig.bucket)
        report = rig.ws.reconcile()
        (source,) = report.sources
        assert source.error is not None and "NoSuchBucket" in source.error, source.error
        assert rig.refs(records=False) == before and rig.block("b.md") is None
    finally:
        rig.close()


def test_an_endpoint_outside_allowed_hosts_is_refused(
    tmp_path: Path, wasm: Path, s3: S3Server
) -> None:
    bucket = s3.new_bucket()
    store = make_store(
        tmp_path / "store",
        {
            KEY: {
                "path": wasm,
                "allowed_hosts": ["127.0.0.1:1"],
                "config": plugin_config(s3, bucket),
            }
        },
    )
    s3.put(bucket, "a.md", "never read\n")
    with blocksync.open(store, author="human:test") as ws:
        before = refs_of(ws.repo_path, records=False)  # the run log's row moves records
        report = ws.reconcile()
        (source,) = report.sources
        assert source.error is not None
        assert "is not in the plugin's allowed_hosts (127.0.0.1:1)" in source.error, source.error
        assert s3.hostport in source.error and KEY in source.error
        assert refs_of(ws.repo_path, records=False) == before and not ws.blocks.exists(
            OWNER, label("a.md")
        )
        assert ws.fsck().ok


def test_plugin_check_passes_the_s3_plugin(wasm: Path, s3: S3Server) -> None:
    """`blocksync plugin check` with an S3 table: every case on a fresh prefix of the bucket."""
    table = {
        "allowed_hosts": [s3.hostport],
        "config": plugin_config(s3, s3.new_bucket(), owner=OWNER, permission="admin"),
    }
    report = check_plugin(wasm, table, cache_folder=HOST_CACHE)
    assert report.outside.startswith("s3 http://127.0.0.1:")
    assert [(r.name, r.detail) for r in report.results if not r.passed] == []
    assert len(report.results) == len(CASES)
