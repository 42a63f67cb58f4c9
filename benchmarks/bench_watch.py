"""Live sync benchmark (issue 16): `blocksync watch` over a folder source of FILES files.

Prints the median latency of a file edit reaching its block (the watch's round line, printed
after the block commit) and of a block edit reaching its file (the file polled every 2 ms),
over EDITS edits of each, one at a time (goal: <= 1 s each), and the CPU the watch process
uses while nothing changes, over IDLE seconds (goal: near zero). The reference: one
`blocksync reconcile` process over the same folder, what a cron job pays on every run.

    .venv/bin/python benchmarks/bench_watch.py [--files 200] [--edits 20] [--idle 10] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import blocksync

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")
PATIENCE = 60.0


class Watch:
    """`blocksync watch --json` in a subprocess; its lines kept with when they arrived."""

    def __init__(self, store: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [BLOCKSYNC, "--store", str(store), "watch", "--json"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter(), json.loads(line)))

    def resolved(self, path: str, how: str, since: int) -> float:
        """When the first round line after line ``since`` resolving ``path`` by ``how`` came."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            for at, event in self.lines[since:]:
                if event["event"] == "round" and any(
                    (r["path"], r["resolution"]) == (path, how)
                    for s in event["sources"]
                    for r in s["resolved"]
                ):
                    return at
            time.sleep(0.001)
        raise SystemExit(f"the watch never resolved {path} ({how})")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the watch process so far (Linux: /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(PATIENCE)


def wait_for_file(path: Path, text: str) -> float:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            if path.read_text(encoding="utf-8") == text:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit(f"{path} never got the block's content")


def reconcile_seconds(store: Path, env: dict[str, str]) -> float:
    """How long one `blocksync reconcile` process over ``store`` takes."""
    start = time.perf_counter()
    argv = [BLOCKSYNC, "--store", str(store), "reconcile"]
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--tiny", action="store_true", help="5 files, 3 edits, 1 s idle")
    args = parser.parse_args()
    if args.tiny:
        args.files, args.edits, args.idle = 5, 3, 1.0
    env = {**os.environ, "BLOCKSYNC_AUTHOR": "human:bench"}
    env.pop("BLOCKSYNC_STORE", None)
    with tempfile.TemporaryDirectory() as tmp:
        store, notes = Path(tmp) / "store", Path(tmp) / "notes"
        blocksync.init(store).close()
        notes.mkdir()
        for i in range(args.files):
            (notes / f"note{i:04}.md").write_text(f"note {i}\n", encoding="utf-8")
        with open(store / "blocksync.toml", "a", encoding="utf-8") as f:
            f.write(f'\n[agents.alice.data_sources.notes]\ntype = "file"\npaths = ["{notes}"]\n')
        reference = reconcile_seconds(store, env)  # the first run: every file becomes a block
        cron_run = reconcile_seconds(store, env)  # nothing changed: what each cron run pays
        watch = Watch(store, env)
        try:
            while not any(e["event"] == "watching" for _, e in watch.lines):
                time.sleep(0.01)
            time.sleep(0.5)  # past the first round (quiet: everything is synced already)
            file_to_block = []
            for i in range(args.edits):
                path = f"note{i % args.files:04}.md"
                since = len(watch.lines)
                edited = time.perf_counter()
                (notes / path).write_text(f"edit {i} on disk\n", encoding="utf-8")
                file_to_block.append(watch.resolved(path, "disk->agent", since) - edited)
                time.sleep(0.2)  # the echo of the round settles
            block_to_file = []
            with blocksync.open(store, author="agent:bench") as ws:
                labels = {b.label.rsplit(":", 1)[1]: b.label for b in ws.blocks.list("alice")}
                for i in range(args.edits):
                    path = f"note{i % args.files:04}.md"
                    text = f"edit {i} by the agent\n"
                    edited = time.perf_counter()
                    ws.blocks.update("alice", labels[path], text)
                    block_to_file.append(wait_for_file(notes / path, text) - edited)
                    time.sleep(0.2)
            time.sleep(1.0)  # every echo done
            before = watch.cpu_seconds()
            time.sleep(args.idle)
            idle = watch.cpu_seconds() - before
            code = watch.stop()
        finally:
            if watch.proc.poll() is None:
                watch.proc.kill()
        if code != 0:
            raise SystemExit(f"the watch exited {code} on SIGINT")
    print(f"watch over {args.files} files, {args.edits} edits of each kind (goal <= 1 s each):")
    print(f"  file edit -> block:  median {statistics.median(file_to_block):.3f} s")
    print(f"  block edit -> file:  median {statistics.median(block_to_file):.3f} s")
    print(
        f"  idle CPU: {idle:.3f} s of CPU over {args.idle:g} s "
        f"({100 * idle / args.idle:.2f} % of one core; goal: near zero)"
    )
    print(
        f"reference: one `blocksync reconcile` process with nothing changed {cron_run:.3f} s "
        f"(the first, making {args.files} blocks, {reference:.3f} s)"
    )


if __name__ == "__main__":
    main()
