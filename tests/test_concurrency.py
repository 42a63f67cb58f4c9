"""Several OS processes writing to one store at once: no lost update, no gap, no damage.

Writers are real processes (``python -c WORKER``), started together behind a file barrier so
their commits interleave. Each reports what it wrote and the version it got; afterwards every
content written must be a version of its block exactly once, versions must run 1..N, real
``git fsck --strict`` and ``ws.fsck()`` must be clean, and the index must equal a rebuild.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dulwich.objects import Blob

import blocksync
from blocksync import BlockStore, ConcurrentUpdate, StaleVersion
from blocksync.index.versions import VersionIndex

from .conftest import ROOT, assert_git_fsck, git

WORKER = textwrap.dedent(
    """
    import json, os, random, sys, time
    import blocksync
    from blocksync import BlockExists, StaleVersion

    args = json.loads(sys.argv[1])
    wid, mode, count = args["id"], args["mode"], args["count"]
    shared, own = tuple(args["shared"]), tuple(args["own"])
    out = {"writes": [], "stale": 0}
    with blocksync.open(args["store"], author=f"worker:{wid}") as ws:
        open(os.path.join(args["barrier"], f"ready-{wid}"), "w").close()
        while not os.path.exists(os.path.join(args["barrier"], "go")):
            time.sleep(0.001)
        for i in range(count):
            content = f"worker {wid} write {i}\\n"
            if mode == "single":
                block = ws.blocks.update(*shared, content, message=f"w{wid} {i}")
                out["writes"].append([*shared, content, block.version])
            elif mode == "alternate":
                key = shared if i % 2 else own
                block = ws.blocks.update(*key, content)
                out["writes"].append([*key, content, block.version])
            elif mode == "transaction":
                with ws.transaction(f"w{wid} {i}") as tx:
                    tx.update(*shared, content)
                    tx.update(*own, "own " + content)
                for key, text in ((shared, content), (own, "own " + content)):
                    out["writes"].append([*key, text, tx.result.versions[key]])
            elif mode in ("increment", "increment-tx"):
                # read-modify-write guarded by expected_version, retried on StaleVersion
                while True:
                    block = ws.blocks.read(*shared)
                    time.sleep(random.uniform(0, 0.003))  # widen the race window
                    new = block.content + content
                    try:
                        if mode == "increment":
                            done = ws.blocks.update(*shared, new, expected_version=block.version)
                            version = done.version
                        else:
                            with ws.transaction(f"w{wid} {i}") as tx:
                                tx.update(*shared, new, expected_version=block.version)
                                tx.update(*own, content)
                            version = tx.result.versions[shared]
                    except StaleVersion as exc:
                        assert exc.expected == block.version and exc.actual != block.version
                        out["stale"] += 1
                        continue
                    out["writes"].append([*shared, new, version])
                    break
            elif mode == "create-race":
                # every worker creates the same new block: exactly one may win each round
                key = ("agent:race", f"round {i}")
                try:
                    block = ws.blocks.create(*key, f"worker {wid}\\n")
                except BlockExists:
                    out["stale"] += 1
                else:
                    out["writes"].append([*key, block.content, block.version])
            elif mode == "read":
                # a reader racing the writers: the versions it sees never go backwards
                block = ws.blocks.read(*shared)
                assert block.version >= out.get("last", 0), (block.version, out)
                assert ws.blocks.read(*shared, version=block.version).content == block.content
                out["last"] = block.version
            else:
                raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))
    """
)

SHARED = ("agent:shared", "file:3fa2c1d0:src/shared.md")


def run_workers(store: Path, barrier: Path, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one process per spec, release them together, return what each reported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for wid, spec in enumerate(specs):
        args = {"id": wid, "store": str(store), "barrier": str(barrier), "shared": SHARED, **spec}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    try:
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready-*"))) < len(procs):
            dead = [p for p in procs if p.poll() is not None]
            assert not dead, [p.communicate() for p in dead]
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (barrier / "go").touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err}"
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def assert_store_sound(path: Path) -> None:
    """Real git fsck, blocksync fsck, and the index kept by the writers equal to a rebuild."""
    assert_git_fsck(path / "repo")
    with blocksync.open(path) as ws:
        report = ws.fsck()
        assert report.ok, report.problems
        ws.blocks.catch_up_index()
        incremental = ws._index.dump()
    blocksync.rebuild_index(path)
    index = VersionIndex.open(path / "index.db")
    try:
        assert index.dump() == incremental
    finally:
        index.close()


def assert_no_lost_update(
    ws: blocksync.Workspace, key: tuple[str, str], writes: list[tuple[str, int]]
) -> None:
    """Versions 1..N (1 is the setup's); each write is one version, at the number it was told."""
    history = ws.blocks.history(*key)
    assert [v.version for v in history] == list(range(1, len(writes) + 2))
    assert not any(v.deleted for v in history)
    assert len({v.commit for v in history}) == len(history)
    contents = [ws.blocks.read(*key, version=v.version).content for v in history[1:]]
    assert Counter(contents) == Counter(text for text, _ in writes), "an update was lost or doubled"
    for text, version in writes:
        assert contents[version - 2] == text, f"the writer of {text!r} was told version {version}"
    log = git(ws.repo_path, "log", "--format=%H", "--", BlockStore.git_path(*key)).split()
    assert log == [v.commit for v in reversed(history)]


def test_parallel_writers_lose_nothing(store_path: Path, tmp_path: Path) -> None:
    owns = [("agent:one", "own"), ("agent:two", "own ✓"), ("agent:three", "a/b/c")]
    with blocksync.open(store_path, author="test:setup") as ws, ws.transaction("setup") as tx:
        tx.create(*SHARED, "start\n")
        for key in owns:
            tx.create(*key, "start\n")
    count = 100
    results = run_workers(
        store_path,
        tmp_path,
        [
            {"mode": "single", "own": owns[0], "count": count},
            {"mode": "transaction", "own": owns[1], "count": count},
            {"mode": "alternate", "own": owns[2], "count": count},
            {"mode": "read", "own": owns[0], "count": 2000},
        ],
    )
    writes: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for result in results:
        for owner, label, text, version in result["writes"]:
            writes.setdefault((owner, label), []).append((text, version))
    # each worker sees its own writes to a block in increasing version order
    for result in results:
        for key in writes:
            mine = [v for o, lbl, _, v in result["writes"] if (o, lbl) == key]
            assert mine == sorted(mine) and len(set(mine)) == len(mine)
    assert len(writes[SHARED]) == count + count + count // 2
    with blocksync.open(store_path) as ws:
        for key in [SHARED, *owns]:
            assert_no_lost_update(ws, key, writes.get(key, []))
        # the transaction's two updates always landed in one commit
        for owner, label, text, version in results[1]["writes"]:
            if (owner, label) == SHARED:
                commit = ws.blocks.version(*SHARED, version).commit
                own = [v for v in ws.blocks.history(*owns[1]) if v.commit == commit]
                assert (
                    len(own) == 1
                    and ws.blocks.read(*owns[1], own[0].version).content == "own " + text
                )
    assert_store_sound(store_path)


def test_expected_version_under_contention_never_overwrites(
    store_path: Path, tmp_path: Path
) -> None:
    with blocksync.open(store_path, author="test:setup") as ws:
        ws.blocks.create(*SHARED, "")
        ws.blocks.create("agent:w1", "own", "")
    count = 40
    results = run_workers(
        store_path,
        tmp_path,
        [
            {"mode": "increment", "own": ("agent:w0", "own"), "count": count},
            {"mode": "increment-tx", "own": ("agent:w1", "own"), "count": count},
        ],
    )
    assert sum(r["stale"] for r in results) > 0, "the writers never raced: the test proves nothing"
    with blocksync.open(store_path) as ws:
        final = ws.blocks.read(*SHARED)
        # every increment read the newest content and appended to it: none was overwritten
        lines = final.content.splitlines(keepends=True)
        expected = [f"worker {w} write {i}\n" for w in range(2) for i in range(count)]
        assert sorted(lines) == sorted(expected)
        for w in range(2):
            mine = [line for line in lines if line.startswith(f"worker {w} ")]
            assert mine == [f"worker {w} write {i}\n" for i in range(count)]
        assert final.version == 2 * count + 1
        writes = [(text, version) for r in results for _, _, text, version in r["writes"]]
        assert_no_lost_update(ws, SHARED, writes)
    assert_store_sound(store_path)


def test_racing_creates_of_one_block_have_one_winner(store_path: Path, tmp_path: Path) -> None:
    rounds = 30
    results = run_workers(
        store_path, tmp_path, [{"mode": "create-race", "own": ("x", "y"), "count": rounds}] * 3
    )
    won = sorted((label, text) for r in results for _, label, text, _ in r["writes"])
    assert [label for label, _ in won] == sorted(f"round {i}" for i in range(rounds))
    assert sum(r["stale"] for r in results) == 2 * rounds
    with blocksync.open(store_path) as ws:
        for label, text in won:
            history = ws.blocks.history("agent:race", label)
            assert len(history) == 1 and ws.blocks.read("agent:race", label).content == text
    assert_store_sound(store_path)


def test_transaction_replayed_on_a_moved_head_rechecks_expected_version(store_path: Path) -> None:
    """A transaction that loses the compare-and-swap replays its ops: stale ones then fail."""
    with (
        blocksync.open(store_path, author="agent:a") as a,
        blocksync.open(store_path, author="agent:b") as b,
    ):
        a.blocks.create("alice", "notes", "v1\n")
        a.blocks.create("alice", "other", "x\n")
        with pytest.raises(StaleVersion) as info, a.transaction("a's edit") as tx:
            tx.update("alice", "notes", "from a\n", expected_version=1)  # true when staged
            b.blocks.update("alice", "notes", "from b\n")  # ...but b commits first
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert a.blocks.read("alice", "notes").content == "from b\n"
        assert [v.author for v in a.blocks.history("alice", "notes")] == ["agent:a", "agent:b"]

        # without expected_version, or when the other writer touched another block, the replay
        # lands both changes: nothing is lost either way
        with a.transaction("a's second edit") as tx:
            tx.update("alice", "notes", "a again\n", expected_version=2)
            b.blocks.update("alice", "other", "y\n")
        assert tx.result is not None and tx.result.versions == {("alice", "notes"): 3}
        assert a.blocks.read("alice", "notes").content == "a again\n"
        assert b.blocks.read("alice", "other").content == "y\n"

        # a delete is guarded the same way
        with pytest.raises(StaleVersion), b.transaction("b deletes") as tx:
            tx.delete("alice", "notes", expected_version=3)
            a.blocks.update("alice", "notes", "a once more\n")
        assert a.blocks.read("alice", "notes").version == 4
    assert_store_sound(store_path)


def test_reader_with_a_stale_view_of_main_does_not_call_the_index_corrupt(store_path: Path) -> None:
    """Another process may move main and index it between our reading main and our catch-up."""
    with (
        blocksync.open(store_path, author="agent:a") as a,
        blocksync.open(store_path, author="agent:b") as b,
    ):
        a.blocks.create("alice", "notes", "v1\n")
        stale = a.blocks._head()
        b.blocks.update("alice", "notes", "v2\n")  # moves main and the shared index past `stale`
        a.blocks._catch_up(stale)  # what a reader that read main just before b's commit does
        assert a.blocks.read("alice", "notes").content == "v2\n"

        # a writer whose commit another process built on and indexed before the writer could
        real, start = a.blocks._catch_up, a.blocks._head()

        def b_moves_first(head: bytes | None) -> None:
            if head != start and b.blocks.read("alice", "notes").version == 3:
                b.blocks.update("alice", "notes", "v4 by b\n")
            real(head)

        a.blocks._catch_up = b_moves_first  # type: ignore[method-assign]
        with a.transaction("a") as tx:
            tx.update("alice", "notes", "v3 by a\n")
        del a.blocks._catch_up
        assert tx.result is not None and tx.result.versions == {("alice", "notes"): 3}
        assert [v.author for v in a.blocks.history("alice", "notes")] == [
            "agent:a",
            "agent:b",
            "agent:a",
            "agent:b",
        ]
        assert a.blocks.read("alice", "notes", version=3).content == "v3 by a\n"
    assert_store_sound(store_path)


def _git_env(tmp: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "GIT_INDEX_FILE": str(tmp / "git-index"),
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": "outside@example.invalid",
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": "outside@example.invalid",
    }


def _git_in(repo: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_commit_moved_by_a_killed_writer_is_indexed_by_the_next_reader(
    store_path: Path, tmp_path: Path
) -> None:
    """Main moved (here by the real git CLI) but the index never heard of it."""
    with blocksync.open(store_path, author="agent:a") as ws:
        ws.blocks.create("alice", "notes", "one\n")
        ws.blocks.create("alice", "gone", "bye\n")
        repo = ws.repo_path
        old = ws.blocks.head()
        assert old is not None
        meta = _git_in(
            repo,
            os.environ.copy(),
            "rev-parse",
            f"{old}:{BlockStore.git_path('alice', 'notes')}/meta.json",
        )
        env = _git_env(tmp_path, "plugin:outside")
        _git_in(repo, env, "read-tree", old)
        content = _git_in(repo, env, "hash-object", "-w", "--stdin", stdin="two\r\nno newline")
        notes, new_block = (
            BlockStore.git_path("alice", "notes"),
            BlockStore.git_path("bob", "file:1:a b.md"),
        )
        _git_in(repo, env, "update-index", "--cacheinfo", f"100644,{content},{notes}/content")
        _git_in(
            repo,
            env,
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{content},{new_block}/content",
        )
        _git_in(
            repo,
            env,
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{meta},{new_block}/meta.json",
        )
        gone = BlockStore.git_path("alice", "gone")
        zero = "0" * 40
        _git_in(
            repo,
            env,
            "update-index",
            "--index-info",
            stdin=f"0 {zero}\t{gone}/content\n0 {zero}\t{gone}/meta.json\n",
        )
        tree = _git_in(repo, env, "write-tree")
        first = _git_in(repo, env, "commit-tree", tree, "-p", old, "-m", "outside edit")
        second_blob = _git_in(repo, env, "hash-object", "-w", "--stdin", stdin="three\n")
        _git_in(repo, env, "update-index", "--cacheinfo", f"100644,{second_blob},{notes}/content")
        second = _git_in(
            repo, env, "commit-tree", _git_in(repo, env, "write-tree"), "-p", first, "-m", "again"
        )
        _git_in(repo, env, "update-ref", "refs/heads/main", second, old)
        assert ws._index.indexed_head() == old  # the index lags two commits behind

        block = ws.blocks.read("alice", "notes")
        assert (block.content, block.version, block.commit) == ("three\n", 3, second)
        assert ws._index.indexed_head() == second
        assert ws.blocks.read("alice", "notes", version=2).content == "two\r\nno newline"
        assert [(v.version, v.author, v.message) for v in ws.blocks.history("alice", "notes")] == [
            (1, "agent:a", "create alice/notes"),
            (2, "plugin:outside", "outside edit"),
            (3, "plugin:outside", "again"),
        ]
        assert ws.blocks.read("bob", "file:1:a b.md").content == "two\r\nno newline"
        assert [v.deleted for v in ws.blocks.history("alice", "gone")] == [False, True]
        assert ws.fsck().ok
        ws.blocks.update("alice", "notes", "four\n", expected_version=3)
    assert_store_sound(store_path)


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    import blocksync
    with blocksync.open(sys.argv[1], author="agent:doomed") as ws:
        with ws.transaction("doomed edit") as tx:
            tx.update("alice", "notes", "written by a writer killed before indexing\\n")
            tx.create("alice", "new", "also\\n")
            # die right after the compare-and-swap moved main, before the index hears of it
            ws.blocks._catch_up = lambda head: os._exit(9)
    """
)


def test_writer_killed_between_ref_and_index(store_path: Path) -> None:
    with blocksync.open(store_path, author="agent:a") as ws:
        ws.blocks.create("alice", "notes", "one\n")
        before = ws.blocks.head()
        done = subprocess.run(
            [sys.executable, "-c", KILLED_WRITER, str(store_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        assert done.returncode == 9, done.stderr
        head = git(ws.repo_path, "rev-parse", "refs/heads/main").strip()
        assert head != before and ws._index.indexed_head() == before
        block = ws.blocks.read("alice", "notes")
        assert (block.version, block.commit, block.content) == (
            2,
            head,
            "written by a writer killed before indexing\n",
        )
        assert ws.blocks.history("alice", "new")[0].author == "agent:doomed"
        assert ws.fsck().ok
    assert_store_sound(store_path)


def test_lock_left_by_a_killed_writer(store_path: Path) -> None:
    """A stale ``main.lock`` fails cleanly; a stale lock on a loose object does not block writes."""
    with blocksync.open(store_path, author="agent:a") as ws:
        ws.blocks.create("alice", "notes", "one\n")
        before = ws.blocks.head()
        # a writer killed while writing the very blob we are about to write
        blob = Blob.from_string(b"two\n")
        loose = ws.repo_path / "objects" / blob.id.decode()[:2] / blob.id.decode()[2:]
        loose.parent.mkdir(exist_ok=True)
        Path(f"{loose}.lock").touch()
        assert ws.blocks.update("alice", "notes", "two\n").version == 2
        Path(f"{loose}.lock").unlink()

        lock = ws.repo_path / "refs" / "heads" / "main.lock"
        lock.touch()
        head = ws.blocks.head()
        try:
            with pytest.raises(ConcurrentUpdate):
                ws.blocks.update("alice", "notes", "three\n")
            assert ws.blocks.head() == head != before
        finally:
            lock.unlink()
        assert ws.blocks.update("alice", "notes", "three\n").version == 3
        assert ws.fsck().ok
    assert_store_sound(store_path)
