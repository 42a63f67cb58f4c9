"""Git remotes: push, pull, per-block merges, conflicts across machines, faults, convergence."""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.runner import run_sync
from blocksync.sync.remotes.transport import redact

from .conftest import assert_git_fsck, git


def _bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(path)], check=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("git daemon did not start")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real `git daemon` on 127.0.0.1 serving hub.git (push enabled): (url, path)."""
    base = tmp_path / "served"
    base.mkdir()
    hub = _bare(base / "hub.git")
    port = _free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"git://127.0.0.1:{port}/hub.git", hub
    finally:
        proc.terminate()
        proc.wait(10)


def _store(path: Path, url: str, author: str) -> blocksync.Workspace:
    ws = blocksync.init(path, author=author)
    ws.add_remote("hub", url)
    return ws


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[blocksync.Workspace, blocksync.Workspace, Path]]:
    hub = _bare(tmp_path / "hub.git")
    a = _store(tmp_path / "a", str(hub), "agent:a")
    b = _store(tmp_path / "b", str(hub), "agent:b")
    yield a, b, hub
    a.close()
    b.close()
    for repo in (hub, tmp_path / "a" / "repo", tmp_path / "b" / "repo"):
        assert_git_fsck(repo)


# -- configuration ---------------------------------------------------------------------------


def test_redact_hides_user_and_password_of_any_url() -> None:
    assert (
        redact("see https://u:p4ss@h/x and git://t0k@h2/y")
        == "see https://***@h/x and git://***@h2/y"
    )
    assert redact("/plain/path") == "/plain/path"


# -- push and pull ---------------------------------------------------------------------------


def test_push_then_pull_fast_forwards_with_history(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, hub = pair
    a.blocks.create("alice", "notes", "one\n")
    a.blocks.update("alice", "notes", "two\n")
    assert a.push("hub").action == "pushed"
    assert git(hub, "rev-parse", "main").strip() == a.blocks.head()
    pulled = b.pull("hub")
    assert pulled.action == "fast-forward"
    assert [
        v.content for v in [b.blocks.read("alice", "notes", 1), b.blocks.read("alice", "notes")]
    ] == ["one\n", "two\n"]
    assert b.push("hub").action == "up-to-date"
    assert b.pull("hub").action == "up-to-date"


def test_both_changed_merge_per_block_in_a_merge_commit(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, hub = pair
    a.blocks.create("alice", "notes", "one\ntwo\nthree\n")
    a.blocks.create("alice", "other", "x\n")
    a.push("hub")
    b.pull("hub")
    a.blocks.update("alice", "notes", "ONE\ntwo\nthree\n")
    a.blocks.delete("alice", "other")
    b.blocks.update("alice", "notes", "one\ntwo\nTHREE\n")
    b.blocks.create("bob", "new", "hi\n")
    a.push("hub")
    result = b.push("hub")
    assert result.action == "pushed" and result.attempts == 2
    (pull,) = result.pulls
    assert (
        pull.action == "merged" and ("alice/notes", "merged") in pull.merged and not pull.conflicts
    )
    head = b.blocks.head()
    assert head is not None
    parents = git(hub, "rev-list", "--parents", "-n", "1", "main").split()
    assert len(parents) == 3  # a real merge commit: two parents
    assert b.blocks.read("alice", "notes").content == "ONE\ntwo\nTHREE\n"
    assert not b.blocks.exists("alice", "other")
    # the version index follows first parents: the merge is one new version per merged block
    assert [v.version for v in b.blocks.history("alice", "notes")] == [1, 2, 3]
    assert b.blocks.history("alice", "notes")[-1].made_by == "remote:hub"  # who merged it
    a.pull("hub")
    assert a.blocks.read("alice", "notes").content == "ONE\ntwo\nTHREE\n"
    assert a.blocks.read("bob", "new").content == "hi\n"
    for ws in (a, b):
        assert blocksync.fsck(ws.root).ok


def test_overlap_is_a_conflict_resolvable_with_the_same_api(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, _ = pair
    a.blocks.create("alice", "notes", "base\n")
    a.push("hub")
    b.pull("hub")
    a.blocks.update("alice", "notes", "from a\n")
    b.blocks.update("alice", "notes", "from b\n")
    a.push("hub")
    pull = b.pull("hub")
    (conflict,) = b.conflicts.list()
    assert pull.conflicts == [("alice/notes", conflict.id)]
    assert (conflict.source, conflict.path, conflict.owner, conflict.label) == (
        "remote:hub",
        "alice/notes",
        "alice",
        "notes",
    )
    assert (conflict.base, conflict.disk, conflict.agent) == ("base\n", "from a\n", "from b\n")
    assert b.blocks.read("alice", "notes").content == "from b\n"  # local side kept until resolved
    assert "remote:hub" not in b.reconciler.keys  # never part of a reconcile run
    b.reconcile()
    assert b.conflicts.get(conflict.id).status == "open"
    resolved = b.conflicts.resolve(conflict.id, take="disk")
    assert resolved.status == "resolved" and b.blocks.read("alice", "notes").content == "from a\n"
    b.conflicts.undo(conflict.id)
    assert b.blocks.read("alice", "notes").content == "from b\n"
    b.conflicts.resolve(conflict.id, content="both\n")
    b.push("hub")
    a.pull("hub")
    assert a.blocks.read("alice", "notes").content == "both\n"
    assert not a.conflicts.list()


def test_delete_against_change_is_a_conflict(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, _ = pair
    a.blocks.create("alice", "notes", "base\n")
    a.push("hub")
    b.pull("hub")
    a.blocks.delete("alice", "notes")
    b.blocks.update("alice", "notes", "changed\n")
    a.push("hub")
    b.pull("hub")
    (conflict,) = b.conflicts.list()
    assert conflict.disk is None and conflict.agent == "changed\n"
    assert b.blocks.read("alice", "notes").content == "changed\n"
    b.conflicts.resolve(conflict.id, take="disk")
    assert not b.blocks.exists("alice", "notes")


# -- faults ----------------------------------------------------------------------------------


def test_unrelated_history_is_refused_and_nothing_changes(
    pair: tuple[blocksync.Workspace, blocksync.Workspace, Path],
) -> None:
    a, b, _ = pair
    a.blocks.create("alice", "notes", "a\n")
    a.push("hub")
    b.blocks.create("alice", "notes", "b\n")
    head = b.blocks.head()
    with pytest.raises(blocksync.UnrelatedHistories, match="no history"):
        b.pull("hub")
    with pytest.raises(blocksync.UnrelatedHistories):
        b.push("hub")
    assert b.blocks.head() == head and b.blocks.read("alice", "notes").content == "b\n"
    assert not b.conflicts.list()


def test_a_rejected_push_is_a_clear_error(daemon: tuple[str, Path], tmp_path: Path) -> None:
    url, hub = daemon
    hook = hub / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    ws = _store(tmp_path / "a", url, "agent:a")
    ws.blocks.create("alice", "notes", "x\n")
    with pytest.raises(blocksync.RemoteRejected, match="refused"):
        ws.push("hub")
    assert (
        subprocess.run(
            ["git", "--git-dir", str(hub), "rev-parse", "--verify", "-q", "main"],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    )
    ws.close()


class _CuttingProxy:
    """A TCP proxy to git daemon that closes both ends after ``limit`` bytes from the server."""

    def __init__(self, target: int, limit: int) -> None:
        self.target, self.limit = target, limit
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            sent = [0]

            def up(c: socket.socket = client, s: socket.socket = server) -> None:
                try:
                    while data := c.recv(65536):
                        s.sendall(data)
                except OSError:
                    pass

            threading.Thread(target=up, daemon=True).start()
            try:
                while data := server.recv(4096):
                    room = self.limit - sent[0]
                    client.sendall(data[:room])
                    sent[0] += len(data[:room])
                    if sent[0] >= self.limit:
                        break
            except OSError:
                pass
            client.close()
            server.close()


def test_a_fetch_cut_mid_way_applies_nothing(daemon: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = daemon
    a = _store(tmp_path / "a", url, "agent:a")
    rng = random.Random(7)
    with a.transaction("many") as tx:
        for i in range(200):
            tx.create("alice", f"b{i}", "".join(rng.choice("abcdef\n") for _ in range(2000)))
    a.push("hub")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    proxy = _CuttingProxy(port, 20000)
    b = _store(tmp_path / "b", f"git://127.0.0.1:{proxy.port}/hub.git", "agent:b")
    b.blocks.create("bob", "mine", "kept\n")
    head = b.blocks.head()
    with pytest.raises(blocksync.RemoteUnreachable):
        b.pull("hub")
    assert b.blocks.head() == head and [x.label for x in b.blocks.list()] == ["mine"]
    assert_git_fsck(tmp_path / "b" / "repo")
    proxy.sock.close()
    b.remove_remote("hub")
    b.add_remote("hub", url)
    with pytest.raises(blocksync.UnrelatedHistories):
        b.pull("hub")  # the real fetch then works (and refuses the unrelated history)
    a.close()
    b.close()


# -- convergence -----------------------------------------------------------------------------


def _converge(urls: list[str], hub: Path, tmp_path: Path) -> None:
    stores = [_store(tmp_path / f"s{i}", url, f"agent:s{i}") for i, url in enumerate(urls)]
    edits: list[str] = []
    gave_up: list[str] = []
    lock = threading.Lock()
    stores[0].blocks.create("shared", "doc", "".join(f"line {n}\n" for n in range(30)))
    for ws in stores:  # every store starts from the hub's history (unrelated ones are refused)
        assert run_sync(ws).exit_code == 0

    def work(i: int, rounds: int) -> None:
        ws = stores[i]
        rng = random.Random(i)
        for r in range(rounds):
            own = f"store {i} round {r}\n"
            if ws.blocks.exists(f"s{i}", "own"):
                ws.blocks.update(f"s{i}", "own", own)
            else:
                ws.blocks.create(f"s{i}", "own", own)
            if ws.blocks.exists("shared", "doc"):
                lines = ws.blocks.read("shared", "doc").content.splitlines(keepends=True)
                n = rng.randrange(len(lines))
                lines[n] = f"s{i} r{r} {lines[n]}"
                ws.blocks.update("shared", "doc", "".join(lines))
            with lock:
                edits.append(own)
            report = run_sync(ws, wait=True)
            errors = [s.error for s in report.sources if s.error]
            # under this much contention a push may give up (bounded retries): the next run pushes
            assert all("kept moving" in e for e in errors), errors
            with lock:
                gave_up.extend(errors)
            time.sleep(rng.random() * 0.05)

    threads = [threading.Thread(target=work, args=(i, 6)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(3):  # quiet rounds
        for ws in stores:
            assert run_sync(ws, wait=True).exit_code in (0, 3)

    def snapshot(ws: blocksync.Workspace) -> dict[tuple[str, str], str]:
        return {
            (b.owner, b.label): ws.blocks.read(b.owner, b.label).content for b in ws.blocks.list()
        }

    first = snapshot(stores[0])
    for ws in stores[1:]:
        assert snapshot(ws) == first
    for i in range(len(stores)):
        assert first[(f"s{i}", "own")] == f"store {i} round 5\n"
    # every edit survives in history (nothing lost on the hub) or in an open conflict
    objects = git(hub, "rev-list", "--objects", "main")
    for own in edits:
        blob = subprocess.run(
            ["git", "hash-object", "--stdin"], input=own, text=True, capture_output=True, check=True
        ).stdout.strip()
        assert blob in objects
    for ws in stores:
        for c in ws.conflicts.list():
            assert c.source == "remote:hub"
        assert blocksync.fsck(ws.root).ok
        ws.close()
    assert_git_fsck(hub)
    for i in range(len(stores)):
        assert_git_fsck(tmp_path / f"s{i}" / "repo")


def test_three_stores_converge_through_git_daemon(daemon: tuple[str, Path], tmp_path: Path) -> None:
    url, hub = daemon
    _converge([url] * 3, hub, tmp_path)


def test_three_stores_converge_through_a_file_path(tmp_path: Path) -> None:
    hub = _bare(tmp_path / "hub.git")
    _converge([str(hub)] * 3, hub, tmp_path)


def test_two_processes_sync_concurrently(tmp_path: Path) -> None:
    hub = _bare(tmp_path / "hub.git")
    for i in range(2):
        ws = _store(tmp_path / f"p{i}", str(hub), f"agent:p{i}")
        if i == 0:
            ws.blocks.create("seed", "x", "seed\n")
        assert run_sync(ws).exit_code == 0  # both start from the hub's history
        ws.close()
    script = (
        "import sys, blocksync\n"
        "from blocksync.runner import run_sync\n"
        "ws = blocksync.open(sys.argv[1], author='agent:x')\n"
        "for r in range(5):\n"
        "    ws.blocks.create(sys.argv[2], f'b{r}', f'{sys.argv[2]} {r}\\n')\n"
        "    errors = [s.error for s in run_sync(ws, wait=True).sources if s.error]\n"
        "    assert all('kept moving' in e for e in errors), errors\n"
    )
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"p{i}"), f"o{i}"])
        for i in range(2)
    ]
    assert all(p.wait(120) == 0 for p in procs)
    stores = [blocksync.open(tmp_path / f"p{i}") for i in range(2)]
    for ws in stores:
        run_sync(ws)
    for ws in stores:
        run_sync(ws)
    assert (
        {(b.owner, b.label) for b in stores[0].blocks.list()}
        == {("seed", "x")} | {(f"o{i}", f"b{r}") for i in range(2) for r in range(5)}
        == {(b.owner, b.label) for b in stores[1].blocks.list()}
    )
    for ws in stores:
        ws.close()
    assert_git_fsck(hub)
