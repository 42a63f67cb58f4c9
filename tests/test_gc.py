"""Packing the store (issue 14, item 3): automatic packing past git's loose-object limit, and
``gc`` (pack + prune what no ref reaches, never history, never a young object), with both
engines (git's CLI and dulwich), checked by real git; kill -9 at every step of a ``gc``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import blocksync
from blocksync.store import pack
from blocksync.store.gitstore import AUTO_CHECK_EVERY

from .conftest import ROOT, assert_git_fsck, git

ENGINES: tuple[pack.Engine, ...] = ("git", "dulwich")
GRACE = 600.0
OLD = time.time() - 2 * GRACE
LABELS = ("notes", "plans", "diary")


def counts(repo: Path) -> dict[str, int]:
    """``git count-objects -v`` as numbers."""
    lines = git(repo, "count-objects", "-v").splitlines()
    return {k: int(v) for k, v in (line.split(": ") for line in lines)}


def size(repo: Path) -> int:
    """Bytes of the object files and packs (objects/info/ holds caches, not objects)."""
    objects = repo / "objects"
    files = (p for p in objects.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in files if p.relative_to(objects).parts[0] != "info")


def sample(repo: Path) -> int:
    """The loose objects in the fan-out folder git (and blocksync) estimate from."""
    folder = repo / "objects" / pack.SAMPLE
    return len(os.listdir(folder)) if folder.is_dir() else 0


def write(ws: blocksync.Workspace, n: int, start: int = 0) -> None:
    """``n`` single-block updates (each a commit of loose objects)."""
    for i in range(start, start + n):
        label = LABELS[i % len(LABELS)]
        content = f"{label} version {i}\n"
        if ws.blocks.exists("alice", label):
            ws.blocks.update("alice", label, content)
        else:
            ws.blocks.create("alice", label, content)


def loose_object(repo: Path, text: str, mtime: float | None = None) -> str:
    """An object no ref reaches (what a writer that has not moved its ref yet leaves)."""
    sha = subprocess.run(
        ["git", "--git-dir", str(repo), "hash-object", "-w", "--stdin"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if mtime is not None:
        os.utime(repo / "objects" / sha[:2] / sha[2:], (mtime, mtime))
    return sha


def has(repo: Path, sha: str) -> bool:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "-e", sha], capture_output=True, check=False
    )
    return done.returncode == 0


def everything(store: Path) -> dict[str, object]:
    """What no packing may change: every version of every block, diffs, and git's view."""
    repo = store / "repo"
    with blocksync.open(store) as ws:
        seen: dict[str, object] = {}
        for label in LABELS:
            history = ws.blocks.history("alice", label)
            seen[label] = [
                (v.version, v.commit, ws.blocks.read("alice", label, v.version).content)
                for v in history
            ]
            seen[label + ":diff"] = str(ws.blocks.diff("alice", label, 1))
            path = ws.blocks.git_path("alice", label)
            seen[label + ":log"] = git(repo, "log", "--format=%H %s", "--", path)
    seen["refs"] = git(repo, "for-each-ref")
    return seen


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store"
    blocksync.init(path, author="test:setup").close()
    git(path / "repo", "config", "gc.auto", "0")  # tests choose when packing happens
    yield path
    assert_git_fsck(path / "repo")


def grow_sample(store: Path, at_least: int) -> None:
    """Write updates until the sample folder holds ``at_least`` loose objects (ids depend on
    commit times, so the number of updates that takes varies)."""
    with blocksync.open(store) as ws:
        for round_ in range(400):
            if sample(store / "repo") >= at_least:
                return
            write(ws, 5, 5 * round_)
    raise AssertionError("no loose object landed in the sample folder")


# -- automatic packing ----------------------------------------------------------------------


def test_close_packs_past_the_limit_and_not_below_it(store: Path) -> None:
    repo = store / "repo"
    grow_sample(store, 2)
    in_sample = sample(repo)
    before = counts(repo)
    # at the limit (git: more than ceil(limit / 256) in the sample folder): nothing happens
    git(repo, "config", "gc.auto", str(256 * in_sample))
    blocksync.open(store).close()
    assert counts(repo) == before
    # one past it: closing the workspace packs every loose object
    git(repo, "config", "gc.auto", str(256 * (in_sample - 1)))
    history = everything(store)
    blocksync.open(store).close()
    after = counts(repo)
    assert after["count"] == 0 and after["in-pack"] == before["count"]
    assert everything(store) == history
    assert_git_fsck(repo)


def test_a_long_running_writer_packs_without_closing(store: Path) -> None:
    repo = store / "repo"
    grow_sample(store, 2)
    git(repo, "config", "gc.auto", "256")  # the sample folder is already over this
    with blocksync.open(store) as ws:
        write(ws, AUTO_CHECK_EVERY // 3 + 5, 10_000)  # more loose objects than a check's interval
        assert counts(repo)["in-pack"] > 0, "packed while the workspace is still open"
        assert ws.blocks.read("alice", "notes").content.startswith("notes version")
        write(ws, 3, 20_000)  # and the writer goes on over the new pack
    assert_git_fsck(repo)


@pytest.mark.parametrize("engine", ENGINES)
def test_auto_pack_with_either_engine_keeps_every_object(store: Path, engine: pack.Engine) -> None:
    repo = store / "repo"
    grow_sample(store, 2)
    stray = loose_object(repo, "unreferenced\n")
    history = everything(store)
    result = pack.auto_pack(repo, limit=256, use=engine)
    assert result is not None and result.engine == engine and result.pruned == 0
    assert result.packs_after >= 1 and result.loose_after < result.loose_before
    assert pack.auto_pack(repo, limit=256, use=engine) is None, "nothing left to do"
    assert has(repo, stray), "automatic packing never prunes"
    assert everything(store) == history


def test_auto_pack_limit_zero_never_packs(store: Path) -> None:
    repo = store / "repo"
    grow_sample(store, 2)
    assert not pack.needs_pack(repo)  # gc.auto = 0 in the fixture
    assert pack.auto_pack(repo) is None
    assert counts(repo)["in-pack"] == 0


# -- gc: pack everything, prune what no ref reaches --------------------------------------------


def commit_of(repo: Path, text: str, mtime: float | None = None) -> list[str]:
    """A commit of one blob holding ``text``: [commit, tree, blob], loose."""
    blob = loose_object(repo, text, mtime)
    tree = subprocess.run(
        ["git", "--git-dir", str(repo), "mktree"],
        input=f"100644 blob {blob}\tbase\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-m", text).strip()
    if mtime is not None:
        for sha in (tree, commit):
            os.utime(repo / "objects" / sha[:2] / sha[2:], (mtime, mtime))
    return [commit, tree, blob]


def abandoned(repo: Path) -> list[str]:
    """An old commit a ref named once (so the commit-graph lists it) and none names now, as a
    removed source's refs/sync/<key> leaves it: pruning must not leave a graph naming it."""
    objects = commit_of(repo, "an abandoned source's bases\n", OLD)
    git(repo, "update-ref", "refs/sync/gone", objects[0])
    git(repo, "commit-graph", "write", "--reachable")
    git(repo, "update-ref", "-d", "refs/sync/gone")
    return objects


def other_refs(repo: Path) -> dict[str, str]:
    """A commit under each kind of ref the store has besides main, each holding an old blob
    nothing else reaches: gc must keep all of them."""
    refs = {}
    for ref in ("refs/sync/notes", "refs/blocksync/extra", "refs/remotes/origin/main"):
        commit, _tree, blob = commit_of(repo, f"only {ref} reaches this\n", OLD)
        git(repo, "update-ref", ref, commit)
        refs[ref] = blob
    return refs


@pytest.mark.parametrize("engine", ENGINES)
def test_gc_prunes_old_unreferenced_keeps_young_and_every_referenced(
    store: Path, engine: pack.Engine
) -> None:
    repo = store / "repo"
    with blocksync.open(store) as ws:
        write(ws, 12)
    git(repo, "repack", "-d", "-q")  # some history already packed, some loose
    with blocksync.open(store) as ws:
        write(ws, 6, 12)
        ws.blocks.rollback("alice", "notes", 1)
    kept = other_refs(repo)
    old = [loose_object(repo, f"lost race {i}\n", OLD) for i in range(3)]
    young = loose_object(repo, "written, ref not moved yet\n")
    history = everything(store)

    with blocksync.open(store) as ws:
        result = ws.gc(grace=GRACE, engine=engine)
    assert result.engine == engine
    assert result.pruned == len(old) and result.kept_young == 1
    assert not any(has(repo, sha) for sha in old)
    assert has(repo, young) and all(has(repo, sha) for sha in kept.values())
    assert everything(store) == history
    after = counts(repo)
    assert (after["count"], after["packs"]) == (1, 1), "one pack; only the young object loose"
    assert result.packs_after == 1 and result.loose_after == 1
    assert result.bytes_after == size(repo) and result.bytes_before > 0
    assert_git_fsck(repo)
    assert blocksync.fsck(store).ok

    # once the grace period has passed, the young object goes too; history never does
    result = pack.collect(repo, grace=GRACE, use=engine, now=time.time() + 2 * GRACE)
    assert not has(repo, young) and result.pruned == 1
    assert everything(store) == history
    assert counts(repo)["count"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_gc_prunes_an_old_unreferenced_object_from_a_pack(store: Path, engine: pack.Engine) -> None:
    """An unreferenced object in a pack ages with its pack (git's way)."""
    repo = store / "repo"
    with blocksync.open(store) as ws:
        write(ws, 6)
    stray = loose_object(repo, "packed, unreferenced\n")
    subprocess.run(
        ["git", "--git-dir", str(repo), "pack-objects", "-q", str(repo / "objects/pack/pack")],
        input=stray + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    git(repo, "prune-packed")
    assert has(repo, stray) and not (repo / "objects" / stray[:2] / stray[2:]).exists()
    pack.collect(repo, grace=GRACE, use=engine)
    assert (repo / "objects" / stray[:2] / stray[2:]).exists(), "young: written back loose"
    result = pack.collect(repo, grace=GRACE, use=engine, now=time.time() + 2 * GRACE)
    assert not has(repo, stray) and result.pruned == 1


def test_gc_refuses_a_repository_missing_a_referenced_object(store: Path) -> None:
    repo = store / "repo"
    with blocksync.open(store) as ws:
        write(ws, 3)
    blob = git(
        repo, "rev-parse", f"main:{blocksync.BlockStore.git_path('alice', 'notes')}/content"
    ).strip()
    stray = loose_object(repo, "old stray\n", OLD)
    path = repo / "objects" / blob[:2] / blob[2:]
    saved = path.read_bytes()
    path.unlink()
    with pytest.raises(blocksync.errors.RepositoryCorrupt, match=blob):
        pack.collect(repo, grace=GRACE, use="dulwich")
    assert has(repo, stray), "nothing deleted from a damaged repository"
    path.write_bytes(saved)  # repaired: the next gc goes ahead
    pack.collect(repo, grace=GRACE, use="dulwich")
    assert not has(repo, stray)


# -- kill -9 at each step of a gc -------------------------------------------------------------

CHILD = """
import json, os, sys
from pathlib import Path
from blocksync.store import pack
repo, engine, step, grace = json.loads(sys.argv[1])
def fault(name):
    if name == step:
        os._exit(9)
pack.collect(Path(repo), grace=grace, use=engine, fault=fault)
print("finished without reaching", step)
"""

STEPS = [("dulwich", s) for s in pack.DULWICH_FAULT_STEPS] + [
    ("git", s) for s in pack.GIT_FAULT_STEPS
]


@pytest.mark.parametrize(("engine", "step"), STEPS)
def test_kill_9_at_each_gc_step_loses_nothing_and_converges(
    store: Path, engine: pack.Engine, step: str
) -> None:
    repo = store / "repo"
    for start in (0, 6):  # two packs (so deleting old packs is a step of its own) ...
        with blocksync.open(store) as ws:
            write(ws, 6, start)
        git(repo, "repack", "-d", "-q")
    with blocksync.open(store) as ws:  # ... and loose history
        write(ws, 6, 12)
    old = [loose_object(repo, f"lost race {i}\n", OLD) for i in range(3)] + abandoned(repo)
    young = loose_object(repo, "written, ref not moved yet\n")
    history = everything(store)

    child = [sys.executable, "-c", CHILD, json.dumps([str(repo), engine, step, GRACE])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(child, check=False, capture_output=True, text=True, env=env, timeout=99)
    assert done.returncode == 9, done.stdout + done.stderr

    assert_git_fsck(repo)
    assert everything(store) == history, "no version lost"
    assert blocksync.fsck(store).ok
    with blocksync.open(store) as ws:
        write(ws, 2, 100)  # the store takes writes
        history = everything(store)
        ws.gc(grace=GRACE, engine=engine)
    assert everything(store) == history
    assert not any(has(repo, sha) for sha in old) and has(repo, young)
    assert (counts(repo)["packs"], counts(repo)["count"]) == (1, 1), "converged"
    assert_git_fsck(repo)


@pytest.mark.parametrize("engine", ENGINES)
def test_gc_on_a_durable_store(store: Path, engine: pack.Engine) -> None:
    """A durable store's packs are fsynced (folder too) before what they replace goes."""
    config = store / "blocksync.toml"
    config.write_text(config.read_text().replace("durable = false", "durable = true"))
    with blocksync.open(store) as ws:
        write(ws, 9)
        history = everything(store)
        result = ws.gc(grace=GRACE, engine=engine)
    assert (result.packs_after, result.loose_after) == (1, 0)
    assert everything(store) == history
