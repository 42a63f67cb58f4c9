"""Plugin host benchmarks (issue 3). Prints medians.

    .venv/bin/python benchmarks/bench_plugins.py [--tiny]

1. Load of an ~18 MB componentize-py plugin: cold compile against a cached load from
   store/cache (goal: cached >= 20x faster), and re-instantiation after a trap (goal <= 10 ms).
2. Marshaling: one `reconcile` over 10,000 paths returning 10,000 variants. The host's own cost
   per element (lowering the paths, lifting the variants with converters built once per type;
   goal <= 10 us) is reported apart from the guest's time, and against wasmtime-py's generic
   conversion of the same call as the reference.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component import Component

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from blocksync.plugins.host import lift
from blocksync.plugins.host.runtime import Plugin, load, runtime
from blocksync.plugins.spec import PluginSpec
from tests.plugin_builds import build_info, built_plugin
from tests.stores import HOST_CACHE

SOURCE = HERE / "plugins" / "bench_reconcile"


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class GuestClock(logging.Handler):
    """Collects the guest's own timing, which it logs as `guest-seconds <s>`."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("guest-seconds "):
            self.seconds.append(float(text.split()[1]))


def load_figures(wasm: Path, cache: Path, tiny: bool) -> Plugin:
    engine = runtime().engine
    data = wasm.read_bytes()
    cold = median_seconds(lambda: Component(engine, data), 1 if tiny else 3)
    spec = PluginSpec(key="bench", agent="bench", path=wasm)
    load(spec, cache_folder=cache).close()  # fills the cache
    cached = median_seconds(lambda: load(spec, cache_folder=cache).close(), 1 if tiny else 10)
    print(
        f"load of a {len(data) / 1e6:.1f} MB plugin: cold compile {cold:.2f} s, cached load "
        f"{cached * 1e3:.1f} ms ({cold / cached:.0f}x faster)"
    )
    plugin = load(spec, cache_folder=cache)
    plugin.call("data-block", "source-id")

    def reinstantiate() -> None:
        plugin._version.live = None  # what a trap does: the next call needs a fresh instance
        plugin.call("data-block", "source-id")

    call = median_seconds(lambda: plugin.call("data-block", "source-id"), 1 if tiny else 50)
    again = median_seconds(reinstantiate, 1 if tiny else 30)
    print(
        f"re-instantiation after a trap: {(again - call) * 1e3:.2f} ms "
        f"(next call {again * 1e3:.2f} ms, a call on a live instance {call * 1e3:.2f} ms)"
    )
    return plugin


def marshaling_figures(plugin: Plugin, paths: list[str], rounds_of: int) -> None:
    clock = GuestClock()
    logging.getLogger("blocksync.plugin.bench").addHandler(clock)
    logging.getLogger("blocksync.plugin.bench").setLevel(logging.INFO)
    version = plugin._version  # the loaded version of the file (hot reload swaps versions)
    live = plugin._instance(version, "bench")
    func, converter, _, lowers = plugin._func(version, live, "data-block", "reconcile")
    n = len(paths)
    rounds: list[dict[str, float]] = []
    for _ in range(rounds_of):
        timing: dict[str, float] = {}

        def timed_lift(value: Any, timing: dict[str, float] = timing) -> Any:
            start = time.perf_counter()
            out = converter(value)
            timing["lift"] = time.perf_counter() - start
            return out

        start = time.perf_counter()
        live.store.set_epoch_deadline(10_000)
        result = lift.call(func, live.store, timed_lift, True, paths, lowers=lowers)
        timing["total"] = time.perf_counter() - start
        assert result[0] == "ok" and len(result[1]) == n
        timing["lower"] = _lowering_seconds(lowers[0], live.store, paths)
        timing["guest"] = clock.seconds[-1]
        start = time.perf_counter()
        generic = func(live.store, paths)  # wasmtime-py's own conversion, for reference
        timing["generic_total"] = time.perf_counter() - start
        assert len(generic) == n
        rounds.append(timing)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    host = med["lower"] + med["lift"]
    print(f"reconcile of {n:,} paths -> {n:,} variants: total {med['total'] * 1e3:.0f} ms")
    print(
        f"  host per element: {host / n * 1e6:.2f} us "
        f"(lowering paths {med['lower'] / n * 1e6:.2f} us, lifting variants "
        f"{med['lift'] / n * 1e6:.2f} us)"
    )
    print(
        f"  guest: reconcile body {med['guest'] * 1e3:.1f} ms; guest-side canonical ABI and "
        f"call overhead {(med['total'] - host - med['guest']) * 1e3:.1f} ms"
    )
    generic_lift = med["generic_total"] - (med["total"] - med["lift"])
    print(
        f"  reference, wasmtime-py generic conversion: total {med['generic_total'] * 1e3:.0f} ms, "
        f"lifting ~{generic_lift / n * 1e6:.1f} us per variant "
        f"({generic_lift / med['lift']:.0f}x ours)"
    )


def _lowering_seconds(lower: lift.Lower, store: Any, paths: list[str]) -> float:
    """The host's lowering of the paths alone, as the call above did it."""
    value = ffi.wasmtime_component_val_t()
    start = time.perf_counter()
    lower(store, paths, value)
    seconds = time.perf_counter() - start
    ffi.wasmtime_component_val_delete(ctypes.byref(value))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a smoke run (tests/test_benchmarks.py): 30 paths, one run each, "
        "the test runs' compile cache",
    )
    args = parser.parse_args()
    wasm = built_plugin(SOURCE)  # the test cache: rebuilt when the plugin, SDK or WIT change
    info = build_info(wasm)
    print(
        f"plugin {SOURCE.name}: {info['size'] / 1e6:.1f} MB (built in {info['seconds']:.1f} s); "
        f"medians of {'1 run' if args.tiny else '3 to 50 runs'} per figure"
    )
    paths = [f"notes/{i:05d}.md" for i in range(30 if args.tiny else 10_000)]
    with tempfile.TemporaryDirectory() as tmp:
        # tiny: the compile cache is the one test runs share, so it is filled at most once
        plugin = load_figures(wasm, HOST_CACHE if args.tiny else Path(tmp), args.tiny)
        marshaling_figures(plugin, paths, 1 if args.tiny else 7)
        plugin.close()


if __name__ == "__main__":
    main()
