"""``python -m langstream bench``: langstream side by side with LangGraph.

Scenario S: ``N`` ``values`` parts at the root namespace go through the
default pipeline while the consumer iterates ``run.values`` (sync, then
async).  The contenders run interleaved within each round, in one process:

* ``langstream (c)``: the C event-log backend (CPython, when compiled);
* ``langstream (python)``: the pure-Python backend;
* ``bare generator``: the floor, the same producer iterated directly;
* ``LangGraph``: ``langgraph.stream`` with its own default pipeline (values,
  messages, lifecycle, subgraphs), when it is importable.

The producer is a generator (async generator for the async lane) that builds
each part as a graph would; every contender consumes a fresh producer, so the
floor includes building the parts.  Each figure is the median over the
rounds of ns per part, with p10/p90 (numpy when importable, else the
``statistics`` module).

``--memory`` adds the memory scenario (async, ``maxlen=64``, ``20 x N``
parts, 1,000,000 by default): one consumer reads ``run.values`` 1000x slower
than the producer (it reads one item each time the producer has made 1000
parts, or at once when the producer cannot move) while another drains the
raw main log; the peak traced memory (``tracemalloc``; sampled RSS on PyPy)
is reported for langstream (backpressure) and LangGraph (unbounded).

This module runs on PyPy (pure backend only) and needs nothing beyond the
standard library; numpy and matplotlib (``--plot``) are optional.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["main"]

LANGGRAPH_MISSING = "LangGraph: not installed (pip install 'langstream[langgraph]')"
MATPLOTLIB_MISSING = (
    "--plot needs matplotlib, which is not installed (pip install 'langstream[plot]')"
)

_perf = time.perf_counter_ns

# contender keys, in table order
BARE = "bare"
LS_C = "langstream-c"
LS_PY = "langstream-python"
LG = "langgraph"
LABELS = {
    BARE: "bare generator",
    LS_C: "langstream (c)",
    LS_PY: "langstream (python)",
    LG: "LangGraph",
}
_BACKEND_MODULES = {"c": "langstream._eventlog_c", "python": "langstream._eventlog_py"}


# --------------------------------------------------------------------- inputs


def _producer(n: int) -> Iterator[Dict[str, Any]]:
    """The graph: ``n`` values parts at the root, each built on the fly."""
    for i in range(n):
        yield {"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()}


async def _aproducer(n: int) -> AsyncIterator[Dict[str, Any]]:
    for i in range(n):
        yield {"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()}


# ------------------------------------------------------------------- backends


def available_backends() -> Dict[str, Any]:
    """The event-log modules that can run here: ``{"c": mod, "python": mod}``."""
    out: Dict[str, Any] = {}
    if platform.python_implementation() == "CPython":
        try:
            out["c"] = importlib.import_module(_BACKEND_MODULES["c"])
        except ImportError:
            pass
    out["python"] = importlib.import_module(_BACKEND_MODULES["python"])
    return out


@contextlib.contextmanager
def use_backend(module: Any) -> Iterator[None]:
    """Build (and run) langstream runs on ``module``'s event log.

    Channels, muxes and counters read ``langstream.eventlog.EventLog`` (and
    ``Cursor``/``SeqCounter``) when they are constructed, so swapping the
    names there for the duration of a run switches the whole stack.
    """
    from langstream import eventlog as el

    saved = (el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND)
    el.EventLog = module.EventLog
    el.Cursor = module.Cursor
    el.SeqCounter = module.SeqCounter
    el.BACKEND = "c" if module.__name__.endswith("_c") else "python"
    try:
        yield
    finally:
        el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND = saved


def _langgraph() -> Optional[Dict[str, Any]]:
    """LangGraph's stream classes, or ``None`` when ``langgraph.stream`` is missing."""
    try:
        import langgraph.stream  # noqa: F401
        from langgraph.stream._mux import StreamMux
        from langgraph.stream.run_stream import AsyncGraphRunStream, GraphRunStream
        from langgraph.stream.transformers import (
            LifecycleTransformer,
            MessagesTransformer,
            SubgraphTransformer,
            ValuesTransformer,
        )
    except ImportError:
        return None
    # LangGraph flags its v3 streaming protocol as experimental on every run
    # (after the import: langchain installs its own filter for that category)
    warnings.filterwarnings("ignore", message=".*v3 streaming protocol")
    try:
        from importlib.metadata import version

        ver = version("langgraph")
    except Exception:  # noqa: BLE001 - informational only
        ver = "?"
    return {
        "version": ver,
        "StreamMux": StreamMux,
        "GraphRunStream": GraphRunStream,
        "AsyncGraphRunStream": AsyncGraphRunStream,
        "factories": [
            ValuesTransformer,
            MessagesTransformer,
            LifecycleTransformer,
            SubgraphTransformer,
        ],
    }


# ---------------------------------------------------------------- contenders
# Each sync contender: f(n) -> (elapsed ns, items consumed).
# Each async contender: async f(n) -> (elapsed ns, items consumed).


def _sync_bare(n: int) -> Tuple[int, int]:
    count = 0
    t0 = _perf()
    for _v in _producer(n):
        count += 1
    return _perf() - t0, count


def _sync_langstream(module: Any) -> Callable[[int], Tuple[int, int]]:
    from langstream.run_stream import stream_events

    def run_it(n: int) -> Tuple[int, int]:
        count = 0
        with use_backend(module):
            t0 = _perf()
            run = stream_events(_producer(n))
            for _v in run.values:
                count += 1
            elapsed = _perf() - t0
        return elapsed, count

    return run_it


def _sync_langgraph(lg: Dict[str, Any]) -> Callable[[int], Tuple[int, int]]:
    StreamMux, GraphRunStream, factories = lg["StreamMux"], lg["GraphRunStream"], lg["factories"]

    def run_it(n: int) -> Tuple[int, int]:
        count = 0
        t0 = _perf()
        mux = StreamMux(factories=factories, is_async=False)
        run = GraphRunStream(_producer(n), mux)
        for _v in run.values:
            count += 1
        return _perf() - t0, count

    return run_it


async def _async_bare(n: int) -> Tuple[int, int]:
    count = 0
    t0 = _perf()
    async for _v in _aproducer(n):
        count += 1
    return _perf() - t0, count


def _async_langstream(module: Any) -> Callable[[int], Any]:
    from langstream.run_stream import astream_events

    async def run_it(n: int) -> Tuple[int, int]:
        count = 0
        with use_backend(module):
            t0 = _perf()
            run = astream_events(_aproducer(n))
            async for _v in run.values:
                count += 1
            elapsed = _perf() - t0
        return elapsed, count

    return run_it


def _async_langgraph(lg: Dict[str, Any]) -> Callable[[int], Any]:
    StreamMux, Run, factories = lg["StreamMux"], lg["AsyncGraphRunStream"], lg["factories"]

    async def run_it(n: int) -> Tuple[int, int]:
        count = 0
        t0 = _perf()
        mux = StreamMux(factories=factories, is_async=True)
        run = Run(_aproducer(n), mux)
        async for _v in run.values:
            count += 1
        return _perf() - t0, count

    return run_it


# ---------------------------------------------------------------- statistics


def _numpy() -> Any:
    if platform.python_implementation() != "CPython":
        return None
    try:
        import numpy

        return numpy
    except ImportError:
        return None


def summarize(samples: Sequence[float]) -> Dict[str, float]:
    """Median, p10 and p90 of ``samples`` (linear interpolation, like numpy)."""
    data = sorted(samples)
    np = _numpy()
    if np is not None:
        p10, med, p90 = (float(x) for x in np.percentile(data, [10, 50, 90]))
    elif len(data) == 1:
        p10 = med = p90 = float(data[0])
    else:
        q = statistics.quantiles(data, n=10, method="inclusive")
        p10, p90 = q[0], q[-1]
        med = float(statistics.median(data))
    return {"median": med, "p10": p10, "p90": p90, "min": float(data[0]), "max": float(data[-1])}


# --------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> Dict[str, Any]:
    """What the figures depend on: interpreter, platform, CPU, load."""
    import langstream
    from langstream import eventlog

    backends = available_backends()
    info: Dict[str, Any] = {
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "python_build": " ".join(platform.python_build()),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "langstream_version": getattr(langstream, "__version__", "?"),
        "langstream_default_backend": eventlog.BACKEND,
        "langstream_backends": sorted(backends),
        "numpy": _numpy() is not None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if platform.python_implementation() == "PyPy":
        info["pypy_version"] = ".".join(str(x) for x in sys.pypy_version_info[:3])  # type: ignore[attr-defined]
    return info


# ------------------------------------------------------------------- rounds


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _rotate(keys: List[str], r: int) -> List[str]:
    k = r % len(keys) if keys else 0
    return keys[k:] + keys[:k]


def run_sync_rounds(
    contenders: Dict[str, Callable[[int], Tuple[int, int]]],
    n: int,
    rounds: int,
    warmup: int,
) -> Dict[str, List[float]]:
    """ns/part per contender per round, interleaved (order rotates each round)."""
    keys = list(contenders)
    raw: Dict[str, List[float]] = {k: [] for k in keys}
    for r in range(-warmup, rounds):
        line = []
        for key in _rotate(keys, r):
            gc.collect()
            elapsed, count = contenders[key](n)
            if count != n:
                raise RuntimeError(f"sync {LABELS[key]}: consumed {count} items, expected {n}")
            ns = elapsed / n
            if r >= 0:
                raw[key].append(ns)
            line.append(f"{key} {ns:,.0f}")
        tag = f"warm-up {r + warmup + 1}/{warmup}" if r < 0 else f"round {r + 1}/{rounds}"
        _progress(f"[bench] sync  {tag}: " + ", ".join(line) + f" ns/part (load {_loadavg()})")
    return raw


def run_async_rounds(
    contenders: Dict[str, Callable[[int], Any]],
    n: int,
    rounds: int,
    warmup: int,
) -> Dict[str, List[float]]:
    keys = list(contenders)
    raw: Dict[str, List[float]] = {k: [] for k in keys}

    async def one_round(r: int) -> None:
        line = []
        for key in _rotate(keys, r):
            gc.collect()
            elapsed, count = await contenders[key](n)
            if count != n:
                raise RuntimeError(f"async {LABELS[key]}: consumed {count} items, expected {n}")
            ns = elapsed / n
            if r >= 0:
                raw[key].append(ns)
            line.append(f"{key} {ns:,.0f}")
        tag = f"warm-up {r + warmup + 1}/{warmup}" if r < 0 else f"round {r + 1}/{rounds}"
        _progress(f"[bench] async {tag}: " + ", ".join(line) + f" ns/part (load {_loadavg()})")

    loop = asyncio.new_event_loop()
    try:
        for r in range(-warmup, rounds):
            loop.run_until_complete(one_round(r))
    finally:
        loop.close()
    return raw


# ------------------------------------------------------------ memory scenario


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


async def _memory_case(make_run: Callable[[int], Any], parts: int, slowdown: int,
                       use_tracemalloc: bool) -> Dict[str, Any]:
    """One memory run: a slow ``run.values`` reader and a fast raw-log drainer.

    The slow reader takes one item each time the producer has made
    ``slowdown`` more parts, or as soon as the producer stops moving (it is
    waiting for room, i.e. the reader is the bottleneck); the fast reader
    drains the raw main log.  Returns the peak memory and counts.
    """
    if use_tracemalloc:
        import tracemalloc

    produced = [0]
    done = [False]
    rss_peak = [0]
    rss0 = _rss_bytes() or 0

    def sample_rss() -> None:
        rss = _rss_bytes()
        if rss is not None and rss - rss0 > rss_peak[0]:
            rss_peak[0] = rss - rss0

    gc.collect()
    if use_tracemalloc:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    t0 = _perf()
    run = make_run(parts)

    async def drain() -> int:
        count = 0
        async for _e in run:
            count += 1
            produced[0] = count
            if not count & 4095:
                sample_rss()
        done[0] = True
        return count

    async def slow() -> int:
        count = 0
        async for _v in run.values:
            count += 1
            target = produced[0] + slowdown
            idle = 0
            while not done[0] and produced[0] < target and idle < 3:
                before = produced[0]
                await asyncio.sleep(0)
                idle = idle + 1 if produced[0] == before else 0
        return count

    n_raw, n_values = await asyncio.gather(drain(), slow())
    elapsed = _perf() - t0
    sample_rss()
    peak = None
    if use_tracemalloc:
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    if n_values != parts:
        raise RuntimeError(f"memory scenario: run.values gave {n_values} items, expected {parts}")
    return {
        "parts": parts,
        "slowdown": slowdown,
        "peak_traced_bytes": peak,
        "peak_rss_growth_bytes": rss_peak[0],
        "raw_events": n_raw,
        "seconds": elapsed / 1e9,
    }


def _fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "n/a"
    if n >= 2**20:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**10:,.1f} KiB"


def run_memory(parts: int, slowdown: int, maxlen: int, backends: Dict[str, Any],
               lg: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    from langstream.run_stream import astream_events

    use_tm = platform.python_implementation() == "CPython"
    cases: Dict[str, Callable[[int], Any]] = {}
    for name, module in backends.items():
        def make(p: int, _m: Any = module) -> Any:
            with use_backend(_m):
                return astream_events(_aproducer(p), maxlen=maxlen)
        cases[LS_C if name == "c" else LS_PY] = make
    if lg is not None:
        def make_lg(p: int) -> Any:
            mux = lg["StreamMux"](factories=lg["factories"], is_async=True)
            return lg["AsyncGraphRunStream"](_aproducer(p), mux)
        cases[LG] = make_lg
    out: Dict[str, Dict[str, Any]] = {}
    for key, make_run in cases.items():
        _progress(f"[bench] memory: {LABELS[key]}, {parts:,} parts, maxlen={maxlen}, "
                  f"values reader {slowdown}x slower ...")
        loop = asyncio.new_event_loop()
        try:
            res = loop.run_until_complete(_memory_case(make_run, parts, slowdown, use_tm))
        finally:
            loop.close()
        res["maxlen"] = maxlen if key != LG else None
        out[key] = res
        _progress(
            f"[bench] memory: {LABELS[key]}: peak {_fmt_bytes(res['peak_traced_bytes'])} "
            f"traced, {_fmt_bytes(res['peak_rss_growth_bytes'])} RSS growth, "
            f"{res['seconds']:.1f} s"
        )
    return out


# --------------------------------------------------------------------- report


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compute_ratios(summary: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for mode, table in summary.items():
        med = {k: v["median"] for k, v in table.items()}
        r: Dict[str, float] = {}
        for ls in (LS_C, LS_PY):
            if ls not in med:
                continue
            name = ls.split("-", 1)[1]
            for label, value in (
                (f"langgraph/langstream-{name}", _ratio(med.get(LG), med[ls])),
                (f"langstream-{name}/bare", _ratio(med[ls], med.get(BARE))),
            ):
                if value is not None:
                    r[label] = value
        pure_over_c = _ratio(med.get(LS_PY), med.get(LS_C))
        if pure_over_c is not None:
            r["langstream-python/langstream-c"] = pure_over_c
        out[mode] = r
    return out


def format_table(summary: Dict[str, Dict[str, Dict[str, float]]],
                 ratios: Dict[str, Dict[str, float]], n: int, rounds: int,
                 lg_version: Optional[str]) -> str:
    lines = [
        f"scenario S: {n:,} values parts at the root, default pipeline, consumer on "
        f"run.values; median of {rounds} interleaved rounds",
        "",
        f"| {'lane':5} | {'contender':24} | {'ns/part median':>14} | {'p10':>8} | {'p90':>8} |",
        f"|{'-' * 7}|{'-' * 26}|{'-' * 16}|{'-' * 10}|{'-' * 10}|",
    ]
    for mode, table in summary.items():
        for key in (BARE, LS_C, LS_PY, LG):
            if key not in table:
                continue
            s = table[key]
            label = LABELS[key] + (f" {lg_version}" if key == LG and lg_version else "")
            lines.append(
                f"| {mode:5} | {label:24} | {s['median']:14,.0f} | {s['p10']:8,.0f} | {s['p90']:8,.0f} |"
            )
    lines.append("")
    for mode, r in ratios.items():
        parts = [f"{k} = {v:.2f}x" for k, v in r.items()]
        if parts:
            lines.append(f"ratios ({mode}): " + "; ".join(parts))
    return "\n".join(lines)


def format_memory(mem: Dict[str, Dict[str, Any]]) -> str:
    lines = ["", "memory (async, a values reader 1000x slower, the raw log drained):", ""]
    lines.append(f"| {'contender':24} | {'parts':>10} | {'maxlen':>6} | {'peak traced':>12} | {'RSS growth':>11} | {'time':>7} |")
    lines.append(f"|{'-' * 26}|{'-' * 12}|{'-' * 8}|{'-' * 14}|{'-' * 13}|{'-' * 9}|")
    for key, res in mem.items():
        maxlen = res["maxlen"] if res["maxlen"] is not None else "-"
        lines.append(
            f"| {LABELS[key]:24} | {res['parts']:>10,} | {maxlen!s:>6} | "
            f"{_fmt_bytes(res['peak_traced_bytes']):>12} | "
            f"{_fmt_bytes(res['peak_rss_growth_bytes']):>11} | {res['seconds']:>5.1f} s |"
        )
    return "\n".join(lines)


def plot(path: str, summary: Dict[str, Dict[str, Dict[str, float]]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(summary)
    keys = [k for k in (BARE, LS_C, LS_PY, LG) if any(k in summary[m] for m in modes)]
    colors = {BARE: "#999999", LS_C: "#1f77b4", LS_PY: "#6baed6", LG: "#ff7f0e"}
    width = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, key in enumerate(keys):
        xs, meds, lo, hi = [], [], [], []
        for j, mode in enumerate(modes):
            s = summary[mode].get(key)
            if s is None:
                continue
            xs.append(j + (i - (len(keys) - 1) / 2) * width)
            meds.append(s["median"])
            lo.append(s["median"] - s["p10"])
            hi.append(s["p90"] - s["median"])
        bars = ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=LABELS[key],
                      color=colors[key])
        for bar, med in zip(bars, meds):
            ax.annotate(f"{med:,.0f}", (bar.get_x() + bar.get_width() / 2, med),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels(modes)
    ax.set_yscale("log")
    ax.set_ylabel("ns per part (median, p10-p90; log scale)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------- main


def _positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m langstream bench",
        description=(
            "Scenario S side by side: langstream (C and pure backends), a bare "
            "generator and, when installed, LangGraph; ns per part, interleaved rounds."
        ),
    )
    p.add_argument("--n", type=_positive, default=50_000, help="parts per run (default 50,000)")
    p.add_argument("--rounds", type=_positive, default=7, help="measured rounds (default 7)")
    p.add_argument("--warmup", type=int, default=None,
                   help="unmeasured rounds first (default 1; 3 on PyPy)")
    p.add_argument("--json", metavar="FILE", help="write every raw figure and the machine info")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the medians (needs matplotlib)")
    lane = p.add_mutually_exclusive_group()
    lane.add_argument("--sync-only", action="store_true", help="skip the async lane")
    lane.add_argument("--async-only", action="store_true", help="skip the sync lane")
    p.add_argument("--memory", action="store_true",
                   help="also run the memory scenario (async, maxlen=64, 20 x N parts)")
    p.add_argument("--memory-parts", type=_positive, default=None,
                   help="parts of the memory scenario (default 20 x N = 1,000,000)")
    p.add_argument("--tokens", type=_positive, default=None, metavar="N",
                   help="also run the token scenario: a LangGraph graph whose fake model "
                        "streams N tokens (e.g. 20000), consumer on every msg.text delta "
                        "(needs the langgraph extra; see langstream._bench_tokens)")
    p.add_argument("--no-langgraph", action="store_true", help="leave LangGraph out")
    p.add_argument("--backend", choices=("c", "python"), action="append",
                   help="langstream backend(s) to run (default: every available one)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m langstream bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write(f"error: {MATPLOTLIB_MISSING}\n")
            return 2
    warmup = args.warmup if args.warmup is not None else (
        3 if platform.python_implementation() == "PyPy" else 1)
    backends = available_backends()
    if args.backend:
        missing = [b for b in args.backend if b not in backends]
        if missing:
            sys.stderr.write(f"error: backend {missing[0]!r} is not available here\n")
            return 2
        backends = {b: backends[b] for b in args.backend}
    lg = None if args.no_langgraph else _langgraph()
    info = machine_info()
    print(
        f"{info['python_implementation']} {info['python_version']} on {info['platform']}; "
        f"{info['cpu_model']}, {info['cpu_count']} CPUs, load {info['loadavg_start']}"
    )
    print(f"langstream {info['langstream_version']}: backends {', '.join(backends)}")
    if lg is None:
        print(LANGGRAPH_MISSING if not args.no_langgraph else "LangGraph: left out (--no-langgraph)")
    else:
        print(f"LangGraph {lg['version']}")
    sys.stdout.flush()

    raw: Dict[str, Dict[str, List[float]]] = {}
    if not args.async_only:
        sync: Dict[str, Callable[[int], Tuple[int, int]]] = {BARE: _sync_bare}
        for name, module in backends.items():
            sync[LS_C if name == "c" else LS_PY] = _sync_langstream(module)
        if lg is not None:
            sync[LG] = _sync_langgraph(lg)
        raw["sync"] = run_sync_rounds(sync, args.n, args.rounds, warmup)
    if not args.sync_only:
        asyn: Dict[str, Callable[[int], Any]] = {BARE: _async_bare}
        for name, module in backends.items():
            asyn[LS_C if name == "c" else LS_PY] = _async_langstream(module)
        if lg is not None:
            asyn[LG] = _async_langgraph(lg)
        raw["async"] = run_async_rounds(asyn, args.n, args.rounds, warmup)

    summary = {mode: {k: summarize(v) for k, v in table.items()} for mode, table in raw.items()}
    ratios = compute_ratios(summary)
    print()
    print(format_table(summary, ratios, args.n, args.rounds, lg["version"] if lg else None))

    memory = None
    if args.memory:
        parts = args.memory_parts or 20 * args.n
        memory = run_memory(parts, 1000, 64, backends, lg)
        print(format_memory(memory))
    tokens = None
    if args.tokens:
        from langstream import _bench_tokens

        lanes = [lane for lane in ("sync", "async")
                 if not (lane == "sync" and args.async_only)
                 and not (lane == "async" and args.sync_only)]
        try:
            tokens = _bench_tokens.run_tokens(args.tokens, args.rounds, warmup, backends,
                                              lg is not None, lanes)
            tokens_replay = _bench_tokens.run_replay(args.tokens, args.rounds, warmup,
                                                     backends, lg, lanes)
        except ImportError as exc:
            sys.stderr.write(f"error: --tokens needs the langgraph extra "
                             f"(pip install 'langstream[langgraph]'): {exc}\n")
            return 2
        lg_version = lg["version"] if lg else None
        print(_bench_tokens.format_tokens(tokens, args.tokens, args.rounds, lg_version))
        print(_bench_tokens.format_tokens(tokens_replay, args.tokens, args.rounds, lg_version,
                                          replay=True))
        tokens = {"graph": tokens, "replay": tokens_replay}
    info["loadavg_end"] = _loadavg()
    print(f"\nload average at the end: {info['loadavg_end']}")

    if args.json:
        doc = {
            "machine": info,
            "config": {
                "n": args.n,
                "rounds": args.rounds,
                "warmup": warmup,
                "unit": "ns/part",
                "langgraph": lg["version"] if lg else None,
                "scenario": "S: values parts at the root, default pipeline, consumer on run.values",
            },
            "raw": raw,
            "summary": summary,
            "ratios": ratios,
            "memory": memory,
            "tokens": tokens,  # ns/token per lane and contender (--tokens)
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        title = (
            f"langstream bench, scenario S ({args.n:,} parts), "
            f"{info['python_implementation']} {info['python_version']}, "
            f"{info['cpu_count']} CPUs"
        )
        plot(args.plot, summary, title)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
