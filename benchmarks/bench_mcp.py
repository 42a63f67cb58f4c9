"""``blocksync mcp`` round trips (issue 16, item 1). Prints medians.

    .venv/bin/python benchmarks/bench_mcp.py [--tiny]

The server as an MCP client runs it: the venv's ``blocksync --store STORE mcp --agent alice``
started by the official SDK's stdio client. Measured: a start (process, imports, the MCP
handshake: ``initialize``), and one tool call of each kind as the client sees it (JSON-RPC over
pipes, the store opened, params and output checked against the schemas, the store closed):
a read, a listing, a write with ``expected_version``, and a call of a plugin's tool (the
JavaScript fixture ``word_count``, as ``plugin_word_count``: its plugin loaded on each call, as
each call opens the store afresh).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blocksync
from tests.plugin_builds import built_js_plugin
from tests.stores import share_compile_cache

BLOCKSYNC = str(Path(sys.executable).parent / "blocksync")


async def start(store: Path) -> float:
    """Seconds from spawning the server to the end of its handshake."""
    params = StdioServerParameters(
        command=BLOCKSYNC, args=["--store", str(store), "mcp", "--agent", "alice"]
    )
    began = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return time.perf_counter() - began


async def calls(store: Path, rounds: int) -> dict[str, float]:
    """Median milliseconds of each kind of call, after one warm-up call each."""
    params = StdioServerParameters(
        command=BLOCKSYNC, args=["--store", str(store), "mcp", "--agent", "alice"]
    )
    block = {"owner": "alice", "label": "persona"}
    out: dict[str, float] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()
        version = 1
        for title, name in (
            ("blocksync_block_read", "blocksync_block_read"),
            ("blocksync_conflicts_list", "blocksync_conflicts_list"),
            ("blocksync_block_update (expected_version)", "blocksync_block_update"),
            ("plugin_word_count (a JavaScript plugin tool)", "plugin_word_count"),
        ):
            times = []
            for i in range(rounds + 1):
                args: dict[str, object] = {} if "conflicts" in name else dict(block)
                if name.startswith("plugin_"):
                    args = {"text": "the quick brown fox jumps over the lazy dog", "top": 2}
                if name == "blocksync_block_update":
                    args |= {"content": f"round {i}\n", "expected_version": version}
                    version += 1
                began = time.perf_counter()
                result = await session.call_tool(name, args)
                times.append(time.perf_counter() - began)
                assert not result.is_error, result.content
            out[title] = statistics.median(times[1:]) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 1 start, 3 calls",
    )
    args = parser.parse_args()
    starts, rounds = (1, 3) if args.tiny else (5, 200)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        with blocksync.init(store) as ws:
            ws.blocks.create("alice", "persona", "I like tea.\n")
        share_compile_cache(store)
        with (store / "blocksync.toml").open("a") as f:
            f.write(
                f'\n[agents.alice.data_sources.wc]\ntype = "wasm"\npath = "{built_js_plugin("js_tool")}"\n'
                'source_kind = "tool"\n'
            )
        started = [asyncio.run(start(store)) for _ in range(starts)]
        print(f"server start + initialize: median {statistics.median(started):.2f} s of {starts}")
        for title, ms in asyncio.run(calls(store, rounds)).items():
            print(f"{title:45} median {ms:7.1f} ms of {rounds} calls")


if __name__ == "__main__":
    main()
