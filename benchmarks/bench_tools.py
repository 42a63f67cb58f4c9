"""Tool call round trip (issue 6). Prints medians.

    .venv/bin/python benchmarks/bench_tools.py

One ``ws.tools.call`` = params checked against the parameters schema, meta built, the guest's
``execute`` (JSON text in and out), output parsed and checked against the output schema. Measured
for the JavaScript tool (componentize-js, fixtures/plugins/js_tool), a Python tool
(componentize-py, fixtures/plugins/echo_tool) and a built-in tool (no WASM), after a warm-up;
the guest call alone (``Tool.execute`` through the bridge) is shown beside it, so the host's
validation cost is the difference.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blocksync  # noqa: E402
from tests.plugin_builds import built_js_plugin, built_plugin  # noqa: E402

HOST_CACHE = ROOT / ".test-cache" / "host-compiled"
ROUNDS = 2000


def median_us(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    js, py = built_js_plugin("js_tool"), built_plugin("echo_tool")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        blocksync.init(root).close()
        shutil.rmtree(root / "cache")
        HOST_CACHE.mkdir(parents=True, exist_ok=True)
        (root / "cache").symlink_to(HOST_CACHE, target_is_directory=True)
        with (root / "blocksync.toml").open("a") as f:
            for key, path in (("wc", js), ("echo", py)):
                f.write(f'\n[agents.alice.data_sources.{key}]\ntype = "wasm"\npath = "{path}"\n')
        with blocksync.open(root) as ws:
            ws.blocks.create("alice", "persona", "hello\n")
            cases = [
                ("JavaScript tool (word_count)", "word_count", "wc",
                 {"text": "the quick brown fox jumps over the lazy dog the end", "top": 3}),
                ("Python tool (echo)", "echo", "echo", {"text": "hello", "times": 3}),
                ("built-in (blocksync_block_history)", "blocksync_block_history", None,
                 {"owner": "alice", "label": "persona"}),
            ]
            print(f"tool call round trip, median of {ROUNDS} calls (µs)")
            print(f"{'tool':40} {'validated call':>15} {'execute alone':>15}")
            for title, name, key, params in cases:
                full = median_us(lambda: ws.tools.call(name, params, agent="alice"))
                if key is None:
                    alone = float("nan")
                else:
                    tool = ws.plugins.tool(key)
                    meta = json.dumps({"agent_id": "alice", "call_id": "c", "tool": name})
                    text = json.dumps(params)
                    alone = median_us(lambda: tool.execute(text, meta))
                print(f"{title:40} {full:15.1f} {alone:15.1f}")


if __name__ == "__main__":
    main()
