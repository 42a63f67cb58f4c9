"""Tool call round trip (issue 6). Prints medians.

    .venv/bin/python benchmarks/bench_tools.py [--tiny]

One ``ws.tools.call`` = params checked against the parameters schema, meta built, the guest's
``execute`` (JSON text in and out), output parsed and checked against the output schema. Measured
for the JavaScript tool (componentize-js, fixtures/plugins/js_tool), a Python tool
(componentize-py, fixtures/plugins/echo_tool) and a built-in tool (no WASM), after a warm-up;
the guest call alone (``Tool.execute`` through the bridge) is shown beside it, so the host's
validation cost is the difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blocksync
from tests.plugin_builds import built_js_plugin, built_plugin
from tests.stores import share_compile_cache


def median_us(fn: Callable[[], Any], rounds: int, warm_up: int) -> float:
    for _ in range(warm_up):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 3 calls, 1 to warm up",
    )
    args = parser.parse_args()
    rounds, warm_up = (3, 1) if args.tiny else (2000, 50)
    js, py = built_js_plugin("js_tool"), built_plugin("echo_tool")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        blocksync.init(root).close()
        share_compile_cache(root)
        with (root / "blocksync.toml").open("a") as f:
            for key, path in (("wc", js), ("echo", py)):
                f.write(f'\n[agents.alice.data_sources.{key}]\ntype = "wasm"\npath = "{path}"\n')
        with blocksync.open(root) as ws:
            ws.blocks.create("alice", "persona", "hello\n")
            cases = [
                (
                    "JavaScript tool (word_count)",
                    "word_count",
                    "wc",
                    {"text": "the quick brown fox jumps over the lazy dog the end", "top": 3},
                ),
                ("Python tool (echo)", "echo", "echo", {"text": "hello", "times": 3}),
                (
                    "built-in (blocksync_block_history)",
                    "blocksync_block_history",
                    None,
                    {"owner": "alice", "label": "persona"},
                ),
            ]
            print(f"tool call round trip, median of {rounds} calls (µs)")
            print(f"{'tool':40} {'validated call':>15} {'execute alone':>15}")
            for title, name, key, params in cases:
                full = median_us(
                    lambda name=name, params=params: ws.tools.call(name, params, agent="alice"),
                    rounds,
                    warm_up,
                )
                if key is None:
                    alone = float("nan")
                else:
                    tool = ws.plugins.tool(key)
                    meta = json.dumps({"agent_id": "alice", "call_id": "c", "tool": name})
                    text = json.dumps(params)
                    alone = median_us(
                        lambda tool=tool, text=text, meta=meta: tool.execute(text, meta),
                        rounds,
                        warm_up,
                    )
                print(f"{title:40} {full:15.1f} {alone:15.1f}")


if __name__ == "__main__":
    main()
