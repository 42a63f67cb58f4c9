"""The `s3` reference plugin against a real S3-compatible server (moto in server mode on
127.0.0.1). Prints medians over --runs runs (a fresh store and bucket each run):

    .venv/bin/python benchmarks/bench_s3.py [--objects 1000] [--runs 3] [--changed 10] [--tiny]

1. plugin build time and size (a fresh componentize-py build, not the test cache; with --tiny,
   the test cache's: a fresh build is not byte-identical, so it would be compiled anew too);
2. first reconcile: --objects objects -> blocks (a ListObjectsV2 + a GET per object);
3. an unchanged reconcile (one listing; ETag = MD5 of the base: no GET);
4. --changed objects edited in the bucket and --changed other blocks edited by the agent.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blocksync
from blocksync.plugins.tooling.build import build
from tests.plugin_builds import build_info, built_plugin
from tests.s3server import plugin_config, s3_server
from tests.stores import make_store

KEY = "docs"
OWNER = "alice"


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def built(tmp: Path, tiny: bool) -> Path:
    """The s3 plugin, its build time and size printed."""
    if tiny:
        wasm = built_plugin("s3")
        info = build_info(wasm)
        seconds, size, world, wasi = (info[k] for k in ("seconds", "size", "world", "wasi"))
    else:
        result = build(ROOT / "fixtures" / "plugins" / "s3", tmp / "s3.wasm")
        wasm, seconds, size, world, wasi = (
            result.path,
            result.seconds,
            result.size,
            result.world,
            result.wasi,
        )
    print(f"build: {seconds:.1f} s, {size / 2**20:.1f} MiB (world {world}, wasi={wasi})")
    return wasm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 4 objects, 1 changed, 1 run",
    )
    args = parser.parse_args()
    if args.tiny:
        args.objects, args.changed, args.runs = 4, 1, 1
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        wasm = built(tmp, args.tiny)
        first, unchanged, changed = [], [], []
        with s3_server() as s3:
            for run in range(args.runs):
                bucket = s3.new_bucket()
                names = [f"dir{i % 10}/note-{i:05d}.md" for i in range(args.objects)]
                for i, name in enumerate(names):
                    s3.put(bucket, name, f"# note {i}\n\nline one\nline two\n")
                store = make_store(
                    tmp / f"store{run}",
                    {
                        KEY: {
                            "path": wasm,
                            "allowed_hosts": [s3.hostport],
                            # one call syncs the whole bucket: more than the default 10 s per call
                            "limits": {"timeout": 120},
                            "config": plugin_config(s3, bucket, tag=KEY),
                        }
                    },
                )
                with blocksync.open(store, author="human:bench") as ws:
                    seconds, report = timed(ws.reconcile)
                    assert len(report.sources[0].resolved) == args.objects, report.sources[0]
                    first.append(seconds)
                    seconds, report = timed(ws.reconcile)
                    assert report.sources[0].unchanged == args.objects, report.sources[0]
                    unchanged.append(seconds)
                    for name in names[: args.changed]:
                        s3.put(bucket, name, "edited in the bucket\n")
                    with ws.transaction("agent edits"):
                        for name in names[args.changed : 2 * args.changed]:
                            ws.blocks.update(OWNER, f"s3:{KEY}:{name}", "edited by the agent\n")
                    seconds, report = timed(ws.reconcile)
                    assert len(report.sources[0].resolved) == 2 * args.changed, report.sources[0]
                    changed.append(seconds)
                print(
                    f"run {run + 1}: first {first[-1]:.2f} s, unchanged {unchanged[-1]:.3f} s, "
                    f"{args.changed}+{args.changed} changed {changed[-1]:.3f} s",
                    flush=True,
                )
    n = args.objects
    print(
        f"first reconcile ({n} objects -> blocks): median {statistics.median(first):.2f} s "
        f"({statistics.median(first) / n * 1000:.2f} ms/object)"
    )
    print(f"unchanged reconcile ({n} objects): median {statistics.median(unchanged):.3f} s")
    print(
        f"{args.changed} changed in the bucket + {args.changed} by the agent: "
        f"median {statistics.median(changed):.3f} s"
    )


if __name__ == "__main__":
    main()
