"""``python -m langstream bench``: the streams users have, side by side.

Scenarios (``--scenario``, repeatable; all by default):

* ``S`` values at the root: ``N`` ``values`` parts at the root namespace,
  consumer on ``run.values``.
* ``R`` the raw main log: the same parts, consumer on the run itself.
* ``M`` a mixed agent stream: per step a ``tasks`` start, ``custom``,
  ``updates``, a ``tasks`` result and a ``values`` snapshot; every tenth step
  a subgraph with an input snapshot and three steps of its own.  The
  consumer reads ``run.values``, ``run.lifecycle`` and, inside its
  ``run.subgraphs`` loop, each handle's ``values``.
* ``D`` a deep stream: as ``M``, but each subgraph nests five levels deep;
  the consumer reads every handle's ``values`` at every depth.
* ``C`` many concurrent runs on one event loop (async only): ``--runs``
  runs of ``--run-parts`` mixed parts each (1,000 x 100 by default), every
  run consumed as in ``M``; the figure is ns per part over all runs (and
  the total events per second).
* ``T`` (token stream through ``run.messages``) registers itself with
  ``register_scenario`` where token streaming exists.

Contenders, interleaved within each round in one process (the order rotates
each round): ``bare generator`` (the floor: the same prebuilt parts, each
handed over as a fresh shallow copy, iterated directly with ``for`` /
``async for``), ``langstream (c)`` and ``langstream (python)`` (the two
event-log backends) and ``LangGraph`` (``langgraph.stream``) when it is
importable.  The comparison with LangGraph uses the same transformer
pipeline on both sides (values, lifecycle, subgraphs), fed by the same
producer.  Each figure is the median over the rounds of ns per part, with
p10/p90 (numpy when importable, else the ``statistics`` module).

``--memory`` adds the memory scenario (async, ``maxlen=64``, ``20 x N``
parts): a ``run.values`` reader 1000x slower than the producer and a raw-log
drainer; the peak traced memory (``tracemalloc``; sampled RSS on PyPy) is
reported for langstream (backpressure) and LangGraph (unbounded), together
with the peak traced memory of one idle open run with every default
projection subscribed.

``--plot FILE.png`` draws one chart per scenario (every contender side by
side, its ratios in the title).  ``--interpreters`` runs the same scenarios
on CPython (C backend, then the pure backend) and PyPy (pure backend;
``--pypy`` names the interpreter, the repository goes on its ``PYTHONPATH``),
each scenario in a fresh subprocess of its interpreter (as asv runs each
benchmark: no scenario runs on the JIT traces and heap another one left),
and prints one table (and, with ``--plot``, one figure) side by side.

This module runs on PyPy (pure backend only) and needs nothing beyond the
standard library; numpy and matplotlib (``--plot``) are optional.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

__all__ = ["main", "Scenario", "register_scenario", "SCENARIOS"]

LANGGRAPH_MISSING = "LangGraph: not installed (pip install -e '.[langgraph]' in a checkout)"
MATPLOTLIB_MISSING = (
    "--plot needs matplotlib, which is not installed (pip install -e '.[plot]' in a checkout)"
)
PIPELINE_NOTE = (
    "LangGraph and langstream run the same transformer pipeline (langstream's default: "
    "values, messages where langchain-core is installed, lifecycle, subgraphs) on the "
    "same producer; the bare generator yields the same prebuilt parts, each as a fresh "
    "shallow copy"
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
SHORT = {BARE: "bare", LS_C: "ls-c", LS_PY: "ls-py", LG: "LG"}
_BACKEND_MODULES = {"c": "langstream._eventlog_c", "python": "langstream._eventlog_py"}

# the targets: (scenario, lane) -> (min LangGraph/langstream, max langstream/bare)
TARGETS: Dict[Tuple[str, str], Tuple[Optional[float], Optional[float]]] = {
    ("S", "sync"): (6.0, 2.5),
    ("S", "async"): (10.0, 3.0),
    ("R", "sync"): (6.0, 4.0),
    ("R", "async"): (10.0, 4.0),
    ("M", "sync"): (6.0, 6.0),
    ("M", "async"): (8.0, 12.0),
    ("D", "sync"): (6.0, None),
    ("D", "async"): (10.0, None),
    ("C", "async"): (10.0, None),
}
# PyPy, pure backend: (scenario, lane) -> max ns/part
PYPY_TARGETS: Dict[Tuple[str, str], float] = {("S", "sync"): 150.0, ("M", "sync"): 1000.0}


# --------------------------------------------------------------------- inputs


def values_parts(n: int) -> List[Dict[str, Any]]:
    """``n`` values parts at the root namespace (prebuilt)."""
    return [{"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()} for i in range(n)]


def iter_agent_parts(depth: int = 1, sub_every: int = 10, sub_steps: int = 3
                     ) -> Iterator[Dict[str, Any]]:
    """An endless stream of parts shaped like an agent run (``subgraphs=True``, v2).

    An input snapshot, then per step at a namespace: a ``tasks`` start,
    ``custom``, ``updates``, a ``tasks`` result and a ``values`` snapshot.
    Every ``sub_every``-th root step calls a subgraph instead: its ``tasks``
    start, the subgraph's input snapshot, ``sub_steps`` steps inside it (and,
    while ``depth`` allows, a nested subgraph call), then the task's result,
    ``updates`` and ``values`` in the caller.  Task ids are unique.
    """
    counter = 0

    def step(ns: Tuple[str, ...], tid: str, name: str, s: int) -> Iterator[Dict[str, Any]]:
        yield {"type": "tasks", "ns": ns, "data": {
            "id": tid, "name": name, "input": {"step": s}, "triggers": (f"branch:to:{name}",)}}
        yield {"type": "custom", "ns": ns, "data": {"node": name, "status": "working"}}
        yield {"type": "updates", "ns": ns, "data": {name: {"step": s}}}
        yield {"type": "tasks", "ns": ns, "data": {
            "id": tid, "name": name, "error": None, "result": {"step": s}, "interrupts": []}}
        yield {"type": "values", "ns": ns, "data": {"step": s}, "interrupts": ()}

    def call(ns: Tuple[str, ...], level: int, s: int) -> Iterator[Dict[str, Any]]:
        nonlocal counter
        counter += 1
        tid = f"{counter:08x}-0000-4000-8000-bench"
        name = f"sub{level}"
        yield {"type": "tasks", "ns": ns, "data": {
            "id": tid, "name": name, "input": {"step": s}, "triggers": (f"branch:to:{name}",)}}
        child = ns + (f"{name}:{tid}",)
        yield {"type": "values", "ns": child, "data": {"step": s}, "interrupts": ()}
        for k in range(sub_steps):
            counter += 1
            yield from step(child, f"{counter:08x}-0000-4000-8000-bench", "tool", k)
        if level < depth:
            yield from call(child, level + 1, s)
        yield {"type": "tasks", "ns": ns, "data": {
            "id": tid, "name": name, "error": None, "result": {"step": s}, "interrupts": []}}
        yield {"type": "updates", "ns": ns, "data": {name: {"step": s}}}
        yield {"type": "values", "ns": ns, "data": {"step": s}, "interrupts": ()}

    yield {"type": "values", "ns": (), "data": {"step": -1}, "interrupts": ()}
    s = 0
    while True:
        if s % sub_every == sub_every - 1:
            yield from call((), 1, s)
        else:
            counter += 1
            yield from step((), f"{counter:08x}-0000-4000-8000-bench", "agent", s)
        s += 1


def agent_parts(n: int, depth: int = 1) -> List[Dict[str, Any]]:
    """The first ``n`` parts of ``iter_agent_parts(depth)``, prebuilt (a run may
    end inside a subgraph; the run's end terminates it)."""
    return list(itertools.islice(iter_agent_parts(depth), n))


def producer(parts: Sequence[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The graph: hands over each prebuilt part as a fresh shallow copy."""
    for p in parts:
        yield p.copy()


async def aproducer(parts: Sequence[Dict[str, Any]]) -> AsyncIterator[Dict[str, Any]]:
    for p in parts:
        yield p.copy()


# ------------------------------------------------------------------ consumers
# The run streams of langstream and LangGraph have the same API, so each
# scenario's consumer is one function used for both; it returns how many
# items it read.


def consume_values(run: Any) -> int:
    count = 0
    for _v in run.values:
        count += 1
    return count


async def aconsume_values(run: Any) -> int:
    count = 0
    async for _v in run.values:
        count += 1
    return count


def consume_raw(run: Any) -> int:
    count = 0
    for _e in run:
        count += 1
    return count


async def aconsume_raw(run: Any) -> int:
    count = 0
    async for _e in run:
        count += 1
    return count


def consume_agent(run: Any) -> int:
    """``values`` + ``lifecycle`` + each handle's ``values`` (inside the subgraphs loop)."""
    count = 0
    for name, item in run.interleave("values", "lifecycle", "subgraphs"):
        count += 1
        if name == "subgraphs":
            for _v in item.values:
                count += 1
    return count


async def _adrain(it: Any) -> int:
    count = 0
    async for _x in it:
        count += 1
    return count


async def aconsume_agent(run: Any) -> int:
    async def handles() -> int:
        count = 0
        async for handle in run.subgraphs:
            count += 1
            async for _v in handle.values:
                count += 1
        return count

    counts = await asyncio.gather(_adrain(run.values), _adrain(run.lifecycle), handles())
    return sum(counts)


def consume_root(run: Any) -> int:
    """``values`` + ``lifecycle`` of the run, no handle (``subgraphs`` unread)."""
    count = 0
    for _name, _item in run.interleave("values", "lifecycle"):
        count += 1
    return count


async def aconsume_root(run: Any) -> int:
    counts = await asyncio.gather(_adrain(run.values), _adrain(run.lifecycle))
    return sum(counts)


def consume_tree(run: Any, top: bool = True) -> int:
    """``values`` (+ ``lifecycle`` at the root) of the run and of every handle, recursively."""
    count = 0
    names = ("values", "lifecycle", "subgraphs") if top else ("values", "subgraphs")
    for name, item in run.interleave(*names):
        count += 1
        if name == "subgraphs":
            count += consume_tree(item, False)
    return count


async def aconsume_tree(run: Any, top: bool = True) -> int:
    async def handles() -> int:
        count = 0
        async for handle in run.subgraphs:
            count += 1 + await aconsume_tree(handle, False)
        return count

    if top:
        counts = await asyncio.gather(_adrain(run.values), _adrain(run.lifecycle), handles())
    else:
        counts = await asyncio.gather(_adrain(run.values), handles())
    return sum(counts)


# ------------------------------------------------------------------ scenarios


class Scenario:
    """One benchmark scenario: its input and the consumer of each lane.

    ``build(size)`` returns the prebuilt parts of one run; ``consume`` /
    ``aconsume`` read a run stream (langstream's or LangGraph's) and return
    how many items they read; a lane whose consumer is ``None`` is not run.
    A ``concurrent`` scenario consumes ``--runs`` runs of ``--run-parts``
    parts at once on one event loop.  ``factories(lg)`` returns the
    transformer pipeline as ``(langstream_factories, langgraph_factories)``
    (``lg`` is what ``_langgraph()`` found, or ``None``); ``None`` means the
    default one (values, lifecycle, subgraphs on both sides).
    """

    def __init__(
        self,
        key: str,
        title: str,
        build: Callable[[int], List[Dict[str, Any]]],
        consume: Optional[Callable[[Any], int]],
        aconsume: Optional[Callable[[Any], Awaitable[int]]],
        *,
        concurrent: bool = False,
        factories: Optional[Callable[[Optional[Dict[str, Any]]], Tuple[List[Any], List[Any]]]] = None,
    ) -> None:
        self.key = key
        self.title = title
        self.build = build
        self.consume = consume
        self.aconsume = aconsume
        self.concurrent = concurrent
        self.factories = factories

    @property
    def lanes(self) -> List[str]:
        return [lane for lane, fn in (("sync", self.consume), ("async", self.aconsume))
                if fn is not None]


SCENARIOS: Dict[str, Scenario] = {}


def register_scenario(scenario: Scenario) -> Scenario:
    """Add (or replace) a scenario of ``python -m langstream bench``.

    The hook for scenarios that need optional parts of the stack, e.g. the
    token scenario ``T`` (``run.messages``).
    """
    SCENARIOS[scenario.key] = scenario
    return scenario


register_scenario(Scenario("S", "values parts at the root, consumer on run.values",
                           values_parts, consume_values, aconsume_values))
register_scenario(Scenario("R", "values parts at the root, consumer on the raw main log",
                           values_parts, consume_raw, aconsume_raw))
register_scenario(Scenario(
    "M", "mixed agent stream with subgraphs, consumer on values + lifecycle + every "
    "handle's values", agent_parts, consume_agent, aconsume_agent))
register_scenario(Scenario(
    "D", "agent stream with subgraphs 5 levels deep, consumer on values + lifecycle + "
    "values of every handle at every depth",
    lambda n: agent_parts(n, depth=5), consume_tree, aconsume_tree))
register_scenario(Scenario(
    "C", "many concurrent runs of a mixed agent stream on one event loop, each consumed "
    "as in M", agent_parts, None, aconsume_agent, concurrent=True))
# scenario T (a token stream through run.messages) is registered by the
# token-streaming work through register_scenario(); see its module.


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
        # the same pipeline as langstream's default one
        "factories": _langgraph_default_pipeline(
            ValuesTransformer, LifecycleTransformer, SubgraphTransformer),
    }


def _langgraph_default_pipeline(values: Any, lifecycle: Any, subgraphs: Any) -> List[Any]:
    """LangGraph's transformers in langstream's default order; LangGraph's
    MessagesTransformer is included exactly when langstream's default pipeline
    has its own (langchain-core importable)."""
    from langstream.run_stream import DEFAULT_FACTORIES

    pipeline = [values]
    if any(getattr(f, "__name__", "") == "MessagesTransformer" for f in DEFAULT_FACTORIES):
        from langgraph.stream.transformers import MessagesTransformer

        pipeline.append(MessagesTransformer)
    return pipeline + [lifecycle, subgraphs]


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
    from langstream import _compiled, eventlog

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
        # the package's modules that run compiled in this process (the
        # "python" backend of one process swaps the event log only)
        "langstream_compiled_modules": list(_compiled.compiled_modules()),
        "numpy": _numpy() is not None,
        # the cyclic collector's thresholds during the run (None: PyPy's
        # collector has none to set; see --gc-threshold)
        "gc_threshold": list(gc.get_threshold()) if hasattr(gc, "get_threshold") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pid": os.getpid(),
    }
    if platform.python_implementation() == "PyPy":
        info["pypy_version"] = ".".join(str(x) for x in sys.pypy_version_info[:3])  # type: ignore[attr-defined]
    return info


# ---------------------------------------------------------------- contenders
# A sync contender: f(parts, runs) -> (elapsed ns, items read).
# An async contender: async f(parts, runs) -> (elapsed ns, items read).


def _pipelines(scenario: Scenario, lg: Optional[Dict[str, Any]]) -> Tuple[List[Any], List[Any]]:
    if scenario.factories is not None:
        return scenario.factories(lg)
    from langstream.run_stream import DEFAULT_FACTORIES

    return list(DEFAULT_FACTORIES), list(lg["factories"]) if lg is not None else []


def _run_makers(key: str, scenario: Scenario, lg: Optional[Dict[str, Any]]
                ) -> Tuple[Callable[[Iterator[Any]], Any], Callable[[AsyncIterator[Any]], Any]]:
    """``(make_sync_run, make_async_run)`` of contender ``key`` over a producer."""
    ls_factories, lg_factories = _pipelines(scenario, lg)
    if key == LG:
        assert lg is not None
        Mux, Run, ARun = lg["StreamMux"], lg["GraphRunStream"], lg["AsyncGraphRunStream"]
        factories = lg_factories
    else:
        from langstream.mux import StreamMux as Mux
        from langstream.run_stream import AsyncGraphRunStream as ARun
        from langstream.run_stream import GraphRunStream as Run

        factories = ls_factories

    def make(gen: Iterator[Any]) -> Any:
        return Run(gen, Mux(factories=factories, is_async=False))

    def amake(agen: AsyncIterator[Any]) -> Any:
        return ARun(agen, Mux(factories=factories, is_async=True))

    return make, amake


def _context(key: str, backends: Dict[str, Any]) -> Callable[[], Any]:
    if key == LS_C:
        return lambda: use_backend(backends["c"])
    if key == LS_PY:
        return lambda: use_backend(backends["python"])
    return contextlib.nullcontext


def sync_contender(key: str, scenario: Scenario, backends: Dict[str, Any],
                   lg: Optional[Dict[str, Any]]) -> Callable[[List[Any], int], Tuple[int, int]]:
    if key == BARE:
        def bare(parts: List[Any], runs: int) -> Tuple[int, int]:
            count = 0
            t0 = _perf()
            for _ in range(runs):
                for _p in producer(parts):
                    count += 1
            return _perf() - t0, count

        return bare
    make, _ = _run_makers(key, scenario, lg)
    ctx = _context(key, backends)
    consume = scenario.consume
    assert consume is not None

    def run_it(parts: List[Any], runs: int) -> Tuple[int, int]:
        count = 0
        with ctx():
            t0 = _perf()
            for _ in range(runs):
                count += consume(make(producer(parts)))
            elapsed = _perf() - t0
        return elapsed, count

    return run_it


def async_contender(key: str, scenario: Scenario, backends: Dict[str, Any],
                    lg: Optional[Dict[str, Any]]) -> Callable[[List[Any], int], Any]:
    if key == BARE:
        async def bare(parts: List[Any], runs: int) -> Tuple[int, int]:
            t0 = _perf()
            if runs == 1:
                count = await _adrain(aproducer(parts))
            else:
                count = sum(await asyncio.gather(*[_adrain(aproducer(parts)) for _ in range(runs)]))
            return _perf() - t0, count

        return bare
    _, amake = _run_makers(key, scenario, lg)
    ctx = _context(key, backends)
    aconsume = scenario.aconsume
    assert aconsume is not None

    async def run_it(parts: List[Any], runs: int) -> Tuple[int, int]:
        with ctx():
            t0 = _perf()
            if runs == 1:
                count = await aconsume(amake(aproducer(parts)))
            else:
                count = sum(await asyncio.gather(
                    *[aconsume(amake(aproducer(parts))) for _ in range(runs)]))
            elapsed = _perf() - t0
        return elapsed, count

    return run_it


# ------------------------------------------------------------------- rounds


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _rotate(keys: List[str], r: int) -> List[str]:
    k = r % len(keys) if keys else 0
    return keys[k:] + keys[:k]


# ``--warmup auto`` (the default on PyPy): warm-up rounds go on until the
# last STEADY_ROUNDS figures of every contender are within STEADY_SPREAD of
# each other, for at most AUTO_WARMUP_MAX rounds or AUTO_WARMUP_SECONDS.  A
# JIT compiles a scenario's paths over several runs (PyPy: M sync takes about
# ten runs of 20,000 parts to settle); a fixed count would measure the
# compilation.
STEADY_ROUNDS = 3
STEADY_SPREAD = 0.10
AUTO_WARMUP_MAX = 30
AUTO_WARMUP_SECONDS = 120.0
AUTO = "auto"


def steady(figures: List[float]) -> bool:
    """True when the last ``STEADY_ROUNDS`` figures agree within ``STEADY_SPREAD``."""
    last = figures[-STEADY_ROUNDS:]
    return len(last) == STEADY_ROUNDS and max(last) <= min(last) * (1 + STEADY_SPREAD)


def run_rounds(
    scenario: Scenario,
    lane: str,
    contenders: Dict[str, Callable[[List[Any], int], Any]],
    parts: List[Any],
    runs: int,
    rounds: int,
    warmup: Union[int, str],
) -> Tuple[Dict[str, List[float]], Dict[str, int], int]:
    """ns/part per contender per round, interleaved (the order rotates each round).

    ``warmup`` is a count of unmeasured rounds first, or ``"auto"``: until
    every contender is steady (see ``steady``).  Returns the raw figures,
    the items each contender read per round (the same in every round, else
    ``RuntimeError``) and the warm-up rounds run.
    """
    keys = list(contenders)
    raw: Dict[str, List[float]] = {k: [] for k in keys}
    warm: Dict[str, List[float]] = {k: [] for k in keys}
    items: Dict[str, int] = {}
    total = len(parts) * runs
    auto = warmup == AUTO
    first = -(AUTO_WARMUP_MAX if auto else int(warmup))
    started = time.monotonic()
    warmed = 0
    loop = asyncio.new_event_loop() if lane == "async" else None
    try:
        for r in range(first, rounds):
            if r < 0 and auto and warmed and (
                all(steady(warm[k]) for k in keys)
                or time.monotonic() - started > AUTO_WARMUP_SECONDS
            ):
                continue  # (warm: on to the measured rounds)
            line = []
            for key in _rotate(keys, r):
                gc.collect()
                if loop is not None:
                    elapsed, count = loop.run_until_complete(contenders[key](parts, runs))
                else:
                    elapsed, count = contenders[key](parts, runs)
                expected = total if key == BARE else items.get(key)
                if count <= 0 or (expected is not None and count != expected):
                    raise RuntimeError(
                        f"scenario {scenario.key} {lane} {LABELS[key]}: read {count} items, "
                        f"expected {expected if expected is not None else 'some'}")
                items[key] = count
                ns = elapsed / total
                (raw if r >= 0 else warm)[key].append(ns)
                line.append(f"{key} {ns:,.0f}")
            if r < 0:
                warmed += 1
                tag = f"warm-up {warmed}" + ("" if auto else f"/{-first}")
            else:
                tag = f"round {r + 1}/{rounds}"
            _progress(f"[bench] {scenario.key} {lane:5} {tag}: " + ", ".join(line)
                      + f" ns/part (load {_loadavg()})")
    finally:
        if loop is not None:
            loop.close()
    return raw, items, warmed


# ------------------------------------------------------------ memory scenario


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


async def _alimit(it: Iterator[Dict[str, Any]], n: int) -> AsyncIterator[Dict[str, Any]]:
    for p in itertools.islice(it, n):
        yield p


async def _memory_case(make_run: Callable[[], Any], parts: int, slowdown: int,
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
    run = make_run()

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
    return {
        "parts": parts,
        "slowdown": slowdown,
        "peak_traced_bytes": peak,
        "peak_rss_growth_bytes": rss_peak[0],
        "raw_events": n_raw,
        "values": n_values,
        "seconds": elapsed / 1e9,
    }


def _fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "n/a"
    if n >= 2**20:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**10:,.1f} KiB"


def _memory_cases(backends: Dict[str, Any], lg: Optional[Dict[str, Any]], maxlen: int,
                  stream: Callable[[int], AsyncIterator[Any]]
                  ) -> Dict[str, Tuple[Callable[[], Any], Callable[[int], Callable[[], Any]]]]:
    """contender -> (context, parts -> make_run)."""
    from langstream.run_stream import astream_events

    cases: Dict[str, Any] = {}
    for name, module in backends.items():
        key = LS_C if name == "c" else LS_PY
        cases[key] = (
            _context(key, backends),
            lambda p: (lambda: astream_events(stream(p), maxlen=maxlen)),
        )
    if lg is not None:
        def make_lg(p: int) -> Callable[[], Any]:
            def make() -> Any:
                mux = lg["StreamMux"](factories=lg["factories"], is_async=True)
                return lg["AsyncGraphRunStream"](stream(p), mux)
            return make
        cases[LG] = (contextlib.nullcontext, make_lg)
    return cases


def _run_memory_case(label: str, ctx: Callable[[], Any], make_run: Callable[[], Any],
                     parts: int, slowdown: int, expect_values: Optional[int]) -> Dict[str, Any]:
    use_tm = platform.python_implementation() == "CPython"
    loop = asyncio.new_event_loop()
    try:
        with ctx():
            res = loop.run_until_complete(_memory_case(make_run, parts, slowdown, use_tm))
    finally:
        loop.close()
    if expect_values is not None and res["values"] != expect_values:
        raise RuntimeError(f"memory scenario, {label}: run.values gave {res['values']} items, "
                           f"expected {expect_values}")
    _progress(f"[bench] memory: {label}: peak {_fmt_bytes(res['peak_traced_bytes'])} traced, "
              f"{_fmt_bytes(res['peak_rss_growth_bytes'])} RSS growth, {res['seconds']:.1f} s")
    return res


def run_memory(parts: int, slowdown: int, maxlen: int, backends: Dict[str, Any],
               lg: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Values at the root: a slow values reader, the raw log drained."""
    def stream(p: int) -> AsyncIterator[Any]:
        return _alimit((
            {"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()}
            for i in itertools.count()), p)

    out: Dict[str, Dict[str, Any]] = {}
    for key, (ctx, make) in _memory_cases(backends, lg, maxlen, stream).items():
        _progress(f"[bench] memory: {LABELS[key]}, {parts:,} parts, maxlen={maxlen}, "
                  f"values reader {slowdown}x slower ...")
        res = _run_memory_case(LABELS[key], ctx, make(parts), parts, slowdown, parts)
        res["maxlen"] = maxlen if key != LG else None
        out[key] = res
    return out


def run_memory_growth(parts: int, slowdown: int, maxlen: int,
                      backends: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """Scenario M with ``maxlen`` and a slow values reader, at ``parts / 10`` and
    ``parts`` parts: the peak must stay flat as the run grows 10x."""
    def stream(p: int) -> AsyncIterator[Any]:
        return _alimit(iter_agent_parts(), p)

    out: Dict[str, List[Dict[str, Any]]] = {}
    for key, (ctx, make) in _memory_cases(backends, None, maxlen, stream).items():
        out[key] = []
        for p in (max(1, parts // 10), parts):
            _progress(f"[bench] memory growth (M): {LABELS[key]}, {p:,} parts, maxlen={maxlen}")
            res = _run_memory_case(LABELS[key], ctx, make(p), p, slowdown, None)
            res["maxlen"] = maxlen
            out[key].append(res)
    return out


async def _open_idle_runs(runs: int, keep: List[Any]) -> None:
    """Open ``runs`` async runs (kept in ``keep``), each with every default
    projection and the raw main log subscribed, nothing pulled."""
    from langstream.run_stream import astream_events

    for _ in range(runs):
        run = astream_events(_alimit(iter(()), 0))
        keep.append((run, run.values.__aiter__(), run.lifecycle.__aiter__(),
                     run.subgraphs.__aiter__(), run.__aiter__()))


def idle_run_memory(backends: Dict[str, Any], runs: int = 200) -> Dict[str, Optional[float]]:
    """Peak traced bytes per idle open run (async), every default projection
    subscribed (values, lifecycle, subgraphs and the raw main log), nothing
    pulled yet; ``None`` where ``tracemalloc`` is not available (PyPy)."""
    if platform.python_implementation() != "CPython":
        return {LS_C if n == "c" else LS_PY: None for n in backends}
    import tracemalloc

    out: Dict[str, Optional[float]] = {}
    for name, module in backends.items():
        keep: List[Any] = []
        loop = asyncio.new_event_loop()
        try:
            with use_backend(module):
                gc.collect()
                tracemalloc.start()
                base = tracemalloc.get_traced_memory()[0]
                loop.run_until_complete(_open_idle_runs(runs, keep))
                peak = tracemalloc.get_traced_memory()[1] - base
                tracemalloc.stop()
        finally:
            keep.clear()
            loop.close()
        out[LS_C if name == "c" else LS_PY] = peak / runs
    return out


def idle_run_objects(backends: Dict[str, Any], runs: int = 200) -> Dict[str, Optional[float]]:
    """Objects the collector tracks per idle open run (async), opened as in
    ``idle_run_memory``; ``None`` where ``gc.get_objects`` does not list
    them (PyPy).

    Every full collection walks each of them in every live run: with many
    runs open on one loop (scenario C) this count, more than the bytes, is
    what the collector's time grows with.
    """
    if platform.python_implementation() != "CPython":
        return {LS_C if n == "c" else LS_PY: None for n in backends}
    out: Dict[str, Optional[float]] = {}
    for name, module in backends.items():
        keep: List[Any] = []

        async def open_runs() -> int:
            await _open_idle_runs(1, keep)  # (first-use caches are not a run's)
            before = {id(obj) for obj in gc.get_objects()}
            await _open_idle_runs(runs, keep)
            after = gc.get_objects()
            return sum(1 for obj in after
                       if id(obj) not in before and obj is not before and obj is not after)

        loop = asyncio.new_event_loop()
        enabled = gc.isenabled()
        try:
            with use_backend(module):
                gc.collect()
                gc.disable()  # (nothing is collected, or untracked, while counting)
                made = loop.run_until_complete(open_runs())
        finally:
            if enabled:
                gc.enable()
            keep.clear()
            loop.close()
        out[LS_C if name == "c" else LS_PY] = made / runs
    return out


# --------------------------------------------------------------------- report

Summary = Dict[str, Dict[str, Dict[str, Dict[str, float]]]]  # scenario -> lane -> key -> stats


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compute_ratios(summary: Summary) -> Dict[str, Dict[str, Dict[str, float]]]:
    """scenario -> lane -> ``{"langgraph/langstream-c": x, "langstream-c/bare": y, ...}``."""
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for scen, lanes in summary.items():
        out[scen] = {}
        for lane, table in lanes.items():
            med = {k: v["median"] for k, v in table.items()}
            r: Dict[str, float] = {}
            for ls in (LS_C, LS_PY):
                if ls not in med:
                    continue
                for label, value in (
                    (f"langgraph/{ls}", _ratio(med.get(LG), med[ls])),
                    (f"{ls}/bare", _ratio(med[ls], med.get(BARE))),
                ):
                    if value is not None:
                        r[label] = value
            pure_over_c = _ratio(med.get(LS_PY), med.get(LS_C))
            if pure_over_c is not None:
                r["langstream-python/langstream-c"] = pure_over_c
            out[scen][lane] = r
    return out


def check_targets(summary: Summary, ratios: Dict[str, Dict[str, Dict[str, float]]],
                  pypy: bool = False) -> List[str]:
    """One line per target of the issue: the figure, the bound, met or MISSED."""
    lines: List[str] = []
    ls = LS_C if not pypy else LS_PY
    for (scen, lane), (min_lg, max_bare) in TARGETS.items():
        r = ratios.get(scen, {}).get(lane)
        if r is None:
            continue
        if min_lg is not None and f"langgraph/{ls}" in r:
            v = r[f"langgraph/{ls}"]
            lines.append(f"{scen} {lane:5} LangGraph/{SHORT[ls]} = {v:6.2f}x  (target >= {min_lg:g}x) "
                         + ("met" if v >= min_lg else "MISSED"))
        if max_bare is not None and f"{ls}/bare" in r:
            v = r[f"{ls}/bare"]
            lines.append(f"{scen} {lane:5} {SHORT[ls]}/bare      = {v:6.2f}x  (target <= {max_bare:g}x) "
                         + ("met" if v <= max_bare else "MISSED"))
    if pypy:
        for (scen, lane), bound in PYPY_TARGETS.items():
            s = summary.get(scen, {}).get(lane, {}).get(LS_PY)
            if s is not None:
                lines.append(f"{scen} {lane:5} PyPy ls-py = {s['median']:,.0f} ns/part "
                             f"(target <= {bound:,.0f}) " + ("met" if s["median"] <= bound else "MISSED"))
    return lines


def _scenario_sizes(summary_cfg: Dict[str, Any], key: str) -> str:
    size = summary_cfg.get(key)
    if not size:
        return ""
    parts, runs = size
    return f"{runs:,} runs x {parts:,} parts" if runs > 1 else f"{parts:,} parts"


def format_table(summary: Summary, ratios: Dict[str, Dict[str, Dict[str, float]]],
                 sizes: Dict[str, Tuple[int, int]], rounds: int,
                 lg_version: Optional[str]) -> str:
    keys = [k for k in (BARE, LS_C, LS_PY, LG)
            if any(k in t for lanes in summary.values() for t in lanes.values())]
    head = [LABELS[k] + (f" {lg_version}" if k == LG and lg_version else "") for k in keys]
    ratio_cols = []
    for ls in (LS_C, LS_PY):
        if ls in keys:
            if LG in keys:
                ratio_cols.append((f"langgraph/{ls}", f"LG/{SHORT[ls]}"))
            ratio_cols.append((f"{ls}/bare", f"{SHORT[ls]}/bare"))
    clock = "CPU time of this process" if _perf is time.process_time_ns else "wall time"
    lines = [
        f"ns per part ({clock}), median of {rounds} interleaved rounds; {PIPELINE_NOTE}.",
        "",
    ]
    for scen in summary:
        sc = SCENARIOS.get(scen)
        lines.append(f"  {scen}: {sc.title if sc else scen} ({_scenario_sizes(sizes, scen)})")
    lines.append("")
    cols = ["scenario", "lane"] + head + [c for _, c in ratio_cols]
    widths = [max(8, len(c)) for c in cols]
    lines.append("| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                    for i, (c, w) in enumerate(zip(cols, widths))) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for scen, lanes in summary.items():
        for lane, table in lanes.items():
            cells = [scen, lane]
            for k in keys:
                s = table.get(k)
                cells.append(f"{s['median']:,.0f}" if s else "-")
            r = ratios.get(scen, {}).get(lane, {})
            for rk, _ in ratio_cols:
                cells.append(f"{r[rk]:.2f}x" if rk in r else "-")
            lines.append("| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                            for i, (c, w) in enumerate(zip(cells, widths))) + " |")
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


def format_growth(growth: Dict[str, List[Dict[str, Any]]], idle: Dict[str, Optional[float]],
                  idle_objects: Optional[Dict[str, Optional[float]]] = None) -> str:
    lines = ["", "memory growth (scenario M, async, maxlen 64, a values reader 1000x slower):", ""]
    for key, results in growth.items():
        figs = ", ".join(f"{r['parts']:,} parts: {_fmt_bytes(r['peak_traced_bytes'])} traced / "
                         f"{_fmt_bytes(r['peak_rss_growth_bytes'])} RSS" for r in results)
        lines.append(f"  {LABELS[key]}: {figs}")
    for key, per_run in idle.items():
        objects = (idle_objects or {}).get(key)
        counted = f", {objects:,.1f} objects the collector tracks" if objects is not None else ""
        lines.append(f"  {LABELS[key]}: {_fmt_bytes(per_run)} traced{counted} per idle open "
                     "run (values, lifecycle, subgraphs and the raw log subscribed)")
    return "\n".join(lines)


# ----------------------------------------------------------------------- plots

_COLORS = {BARE: "#999999", LS_C: "#1f77b4", LS_PY: "#6baed6", LG: "#ff7f0e"}


def _grid(n: int) -> Tuple[int, int]:
    cols = min(n, 3)
    return (n + cols - 1) // cols, cols


def _bars(ax: Any, lanes: List[str], series: List[Tuple[str, str, Dict[str, Dict[str, float]]]]) -> None:
    """Grouped bars: x = lanes, one bar per series ``(label, color, lane -> stats)``."""
    width = 0.8 / max(len(series), 1)
    for i, (label, color, per_lane) in enumerate(series):
        xs, meds, lo, hi = [], [], [], []
        for j, lane in enumerate(lanes):
            s = per_lane.get(lane)
            if s is None:
                continue
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            meds.append(s["median"])
            lo.append(max(0.0, s["median"] - s["p10"]))
            hi.append(max(0.0, s["p90"] - s["median"]))
        if not xs:
            continue
        bars = ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=label, color=color)
        for bar, med in zip(bars, meds):
            ax.annotate(f"{med:,.0f}", (bar.get_x() + bar.get_width() / 2, med),
                        ha="center", va="bottom", fontsize=6, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(range(len(lanes)))
    ax.set_xticklabels(lanes)
    ax.set_yscale("log")


def _ratio_title(scen: str, ratios: Dict[str, Dict[str, float]]) -> str:
    parts = []
    for lane, r in ratios.items():
        bits = []
        for ls in (LS_C, LS_PY):
            if f"langgraph/{ls}" in r:
                bits.append(f"LG/{SHORT[ls]} {r[f'langgraph/{ls}']:.1f}x")
            if f"{ls}/bare" in r:
                bits.append(f"{SHORT[ls]}/bare {r[f'{ls}/bare']:.1f}x")
        if bits:
            parts.append(f"{lane}: " + ", ".join(bits))
    return f"{scen}\n" + "\n".join(parts)


def plot(path: str, summary: Summary, ratios: Dict[str, Dict[str, Dict[str, float]]],
         title: str) -> None:
    """One chart per scenario (every contender side by side, ratios in its title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scens = list(summary)
    rows, cols = _grid(len(scens))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False)
    for idx, scen in enumerate(scens):
        ax = axes[idx // cols][idx % cols]
        lanes = list(summary[scen])
        keys = [k for k in (BARE, LS_C, LS_PY, LG) if any(k in summary[scen][ln] for ln in lanes)]
        series = [(LABELS[k], _COLORS[k], {ln: summary[scen][ln][k] for ln in lanes
                                           if k in summary[scen][ln]}) for k in keys]
        _bars(ax, lanes, series)
        ax.set_title(_ratio_title(scen, ratios.get(scen, {})), fontsize=8)
        ax.set_ylabel("ns per part (median, p10-p90, log)", fontsize=7)
        ax.legend(fontsize=6)
    for idx in range(len(scens), rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- interpreters


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interpreter_configs(pypy: Optional[str], no_langgraph: bool = False) -> List[Tuple[str, str, List[str], Dict[str, str]]]:
    """``(label, executable, extra args, extra env)`` for each interpreter run."""
    root = _repo_root()
    path = os.environ.get("PYTHONPATH", "")
    pythonpath = root + (os.pathsep + path if path else "")
    out = []
    cpy = f"CPython {platform.python_version()}"
    if platform.python_implementation() == "CPython" and "c" in available_backends():
        out.append((f"{cpy} (c)", sys.executable, ["--backend", "c"]
                    + (["--no-langgraph"] if no_langgraph else []),
                    {"PYTHONPATH": pythonpath}))
    out.append((f"{cpy} (pure)", sys.executable, ["--backend", "python", "--no-langgraph"],
                {"PYTHONPATH": pythonpath, "LANGSTREAM_NO_EXTENSIONS": "1"}))
    exe = pypy or shutil.which("pypy3")
    if exe:
        out.append(("PyPy (pure)", exe, ["--backend", "python", "--no-langgraph"],
                    {"PYTHONPATH": pythonpath, "LANGSTREAM_NO_EXTENSIONS": "1"}))
    return out


PYPY_HINT = (
    "make a PyPy venv with langstream's dependencies and pass its interpreter: "
    "pypy3 -m venv /tmp/pypy-langstream && /tmp/pypy-langstream/bin/pip install "
    "typing_extensions, then --pypy /tmp/pypy-langstream/bin/python"
)


def _probe(exe: str, env: Dict[str, str]) -> Optional[str]:
    """``None`` if ``exe`` can import langstream with ``env``, else the reason."""
    try:
        proc = subprocess.run([exe, "-c", "import langstream"], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=120, cwd=_repo_root())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return None


def _without_scenarios(argv: List[str]) -> List[str]:
    """``argv`` less its ``--scenario K`` pairs."""
    out: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--scenario":
            skip = True
        else:
            out.append(arg)
    return out


def merge_scenario_docs(docs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One interpreter's ``--json`` documents, one per scenario (each from
    its own process), as one: the machine of the first run (its load at
    the start, the last run's at the end, every run's process id), the
    figures of all."""
    first = docs[0]
    machine = dict(first["machine"])
    machine["loadavg_end"] = docs[-1]["machine"].get("loadavg_end")
    machine["pids"] = {scen: doc["machine"].get("pid") for doc in docs
                       for scen in doc["summary"]}
    config = dict(first["config"])
    config["scenarios"] = {}
    config["warmup_rounds"] = {}
    merged: Dict[str, Any] = {"machine": machine, "config": config, "raw": {}, "items": {},
                              "summary": {}, "ratios": {}, "targets": []}
    for doc in docs:
        config["scenarios"].update(doc["config"].get("scenarios") or {})
        config["warmup_rounds"].update(doc["config"].get("warmup_rounds") or {})
        for key in ("raw", "items", "summary", "ratios"):
            merged[key].update(doc.get(key) or {})
        merged["targets"].extend(doc.get("targets") or [])
    return merged


def _lanes_wanted(args: argparse.Namespace) -> List[str]:
    """The lanes ``--sync-only`` / ``--async-only`` leave, in order."""
    return [lane for lane, skip in (("sync", args.async_only), ("async", args.sync_only))
            if not skip]


def _scenarios_to_run(args: argparse.Namespace) -> List[str]:
    """The scenarios asked for (all by default) that run on a lane asked for."""
    lanes = set(_lanes_wanted(args))
    return [key for key in dict.fromkeys(args.scenario or list(SCENARIOS))
            if lanes & set(SCENARIOS[key].lanes)]


def run_interpreters(args: argparse.Namespace, passthrough: List[str]) -> int:
    """Run the same scenarios on every interpreter, each scenario in a fresh
    subprocess (one after the other), and print one table side by side
    (and one figure)."""
    if args.pypy and not shutil.which(args.pypy) and not os.path.exists(args.pypy):
        sys.stderr.write(f"error: --pypy {args.pypy!r}: no such interpreter\n")
        return 2
    configs = []
    for label, exe, extra, env in interpreter_configs(args.pypy, args.no_langgraph):
        reason = _probe(exe, env) if label.startswith("PyPy") else None
        if reason is None:
            configs.append((label, exe, extra, env))
        elif args.pypy:
            sys.stderr.write(f"error: --pypy {args.pypy!r} cannot import langstream "
                             f"({reason}); {PYPY_HINT}\n")
            return 2
        else:
            _progress(f"[bench] {exe} cannot import langstream ({reason}): PyPy left out; "
                      + PYPY_HINT)
    if not any(label.startswith("PyPy") for label, *_ in configs) and not args.pypy:
        _progress("[bench] no usable PyPy: CPython only (use --pypy)")
    # one process per scenario: a scenario measured after others in the
    # same process runs on what they left (on PyPy, JIT traces specialised
    # for their streams, which a later stream reaches through bridges)
    scenario_keys = _scenarios_to_run(args)
    common = _without_scenarios(passthrough)
    docs: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="langstream-bench-") as tmp:
        for i, (label, exe, extra, env) in enumerate(configs):
            args_here = common
            if label.startswith("PyPy") and "--gc-threshold" in common:
                # (PyPy's collector has no thresholds: its run keeps its own)
                k = common.index("--gc-threshold")
                args_here = common[:k] + common[k + 2:]
            runs: List[Dict[str, Any]] = []
            for key in scenario_keys:
                out = os.path.join(tmp, f"{i}-{key}.json")
                cmd = [exe, "-m", "langstream", "bench", *args_here, "--scenario", key,
                       *extra, "--json", out]
                _progress(f"[bench] {label}: {' '.join(cmd)}")
                # the child's table and progress go to our stderr as they come
                with subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, cwd=_repo_root(),
                                      text=True) as proc:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        sys.stderr.write(f"  [{label}] {line}")
                    sys.stderr.flush()
                if proc.returncode != 0:
                    sys.stderr.write(f"error: {label} run of scenario {key} failed "
                                     f"(exit status {proc.returncode})\n")
                    return 1
                with open(out, encoding="utf-8") as fh:
                    doc = json.load(fh)
                if doc["summary"]:  # (a scenario without the lanes asked for)
                    runs.append(doc)
            if runs:
                docs[label] = merge_scenario_docs(runs)
    merged = merge_interpreters(docs)
    print(format_interpreters(merged))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"interpreters": docs, "merged": merged}, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot_interpreters(args.plot, merged)
        print(f"wrote {args.plot}")
    return 0


def merge_interpreters(docs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """scenario -> lane -> column -> stats, columns ``"<interpreter> / <contender>"``."""
    table: Dict[str, Dict[str, Dict[str, Dict[str, float]]]] = {}
    machines = {}
    for label, doc in docs.items():
        m = doc["machine"]
        machines[label] = (f"{m['python_implementation']} {m['python_version']}"
                           + (f" (PyPy {m['pypy_version']})" if "pypy_version" in m else "")
                           + f", load {m['loadavg_start']} -> {m.get('loadavg_end')}")
        for scen, lanes in doc["summary"].items():
            for lane, stats in lanes.items():
                row = table.setdefault(scen, {}).setdefault(lane, {})
                for key, s in stats.items():
                    if key == LG:
                        row[f"{LABELS[LG]} {doc['config'].get('langgraph') or ''} ({label})".replace("  ", " ")] = s
                    elif key == BARE:
                        row[f"{label} bare"] = s
                    else:
                        row[f"{label} langstream"] = s
    return {"table": table, "machines": machines, "interpreters": list(docs)}


def format_interpreters(merged: Dict[str, Any]) -> str:
    table = merged["table"]
    interps = merged["interpreters"]
    cols: List[str] = []
    for scen in table.values():
        for row in scen.values():
            for c in row:
                if c not in cols:
                    cols.append(c)
    lines = ["interpreters (each scenario in a fresh subprocess, run one after the other):"]
    for label, desc in merged["machines"].items():
        lines.append(f"  {label}: {desc}")
    lines += ["", f"ns per part, medians; {PIPELINE_NOTE}.", ""]
    ratio_cols = [f"{i}: ls/bare" for i in interps]
    base = interps[0] if interps else None
    if len(interps) > 1:
        ratio_cols += [f"{i} / {base}" for i in interps[1:]]
    heads = ["scenario", "lane"] + cols + ratio_cols
    widths = [max(8, len(h)) for h in heads]
    lines.append("| " + " | ".join(h.ljust(w) if k < 2 else h.rjust(w)
                                    for k, (h, w) in enumerate(zip(heads, widths))) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for scen, lanes in table.items():
        for lane, row in lanes.items():
            cells = [scen, lane] + [f"{row[c]['median']:,.0f}" if c in row else "-" for c in cols]
            med = {c: row[c]["median"] for c in row}
            for i in interps:
                r = _ratio(med.get(f"{i} langstream"), med.get(f"{i} bare"))
                cells.append(f"{r:.2f}x" if r is not None else "-")
            for i in interps[1:]:
                r = _ratio(med.get(f"{i} langstream"), med.get(f"{base} langstream"))
                cells.append(f"{r:.2f}x" if r is not None else "-")
            lines.append("| " + " | ".join(c.ljust(w) if k < 2 else c.rjust(w)
                                            for k, (c, w) in enumerate(zip(cells, widths))) + " |")
    return "\n".join(lines)


def plot_interpreters(path: str, merged: Dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = merged["table"]
    interps = merged["interpreters"]
    palette = ["#1f77b4", "#6baed6", "#2ca02c", "#9467bd", "#8c564b"]
    scens = list(table)
    rows, cols = _grid(len(scens))
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.8 * rows), squeeze=False)
    for idx, scen in enumerate(scens):
        ax = axes[idx // cols][idx % cols]
        lanes = list(table[scen])
        columns: List[str] = []
        for ln in lanes:
            for c in table[scen][ln]:
                if c not in columns:
                    columns.append(c)
        series = []
        for c in columns:
            if c.endswith(" bare"):
                color = "#bbbbbb" if "PyPy" not in c else "#777777"
            elif c.startswith(LABELS[LG]):
                color = _COLORS[LG]
            else:
                i = next((k for k, name in enumerate(interps) if c.startswith(name)), 0)
                color = palette[i % len(palette)]
            series.append((c, color, {ln: table[scen][ln][c] for ln in lanes
                                      if c in table[scen][ln]}))
        _bars(ax, lanes, series)
        bits = []
        for ln in lanes:
            med = {c: s["median"] for c, s in table[scen][ln].items()}
            rs = []
            for i in interps:
                r = _ratio(med.get(f"{i} langstream"), med.get(f"{i} bare"))
                if r is not None:
                    rs.append(f"{i.split(' ')[0]}{' ' + i.split('(')[-1].rstrip(')') if '(' in i else ''} {r:.1f}x")
            if rs:
                bits.append(f"{ln} ls/bare: " + ", ".join(rs))
        ax.set_title(f"{scen}\n" + "\n".join(bits), fontsize=7)
        ax.set_ylabel("ns per part (median, log)", fontsize=7)
        ax.legend(fontsize=5)
    for idx in range(len(scens), rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle("langstream bench --interpreters: " + ", ".join(interps), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------- main


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def _scenario_key(text: str) -> str:
    key = text.strip().upper()
    if key not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {text!r} (choose from {', '.join(SCENARIOS)})")
    return key


def _warmup_arg(text: str) -> Union[int, str]:
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"--warmup must be a count >= 0 or 'auto', got {text!r}")
    return value


def _gc_threshold_arg(text: str) -> Tuple[int, ...]:
    """``--gc-threshold G0[,G1[,G2]]``: one to three counts >= 0."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--gc-threshold must be one to three counts >= 0 separated by commas "
            f"(e.g. 700,10,100), got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m langstream bench",
        description=(
            "Scenarios S, R, M, D, C side by side: langstream (C and pure backends), a bare "
            "generator and, when installed, LangGraph with the same pipeline; ns per part, "
            "interleaved rounds."
        ),
    )
    p.add_argument("--scenario", type=_scenario_key, action="append", metavar="KEY",
                   help=f"scenario(s) to run, repeatable (default: all of {', '.join(SCENARIOS)})")
    p.add_argument("--n", type=_positive, default=50_000,
                   help="parts per run of S, R, M, D (default 50,000)")
    p.add_argument("--runs", type=_positive, default=None,
                   help="concurrent runs of scenario C (default 2 x N / --run-parts = 1,000)")
    p.add_argument("--run-parts", type=_positive, default=100,
                   help="parts per run of scenario C (default 100)")
    p.add_argument("--rounds", type=_positive, default=5, help="measured rounds (default 5)")
    p.add_argument("--warmup", type=_warmup_arg, default=None, metavar="N|auto",
                   help="unmeasured rounds first, or 'auto': until every contender's last "
                        f"{STEADY_ROUNDS} figures agree within "
                        f"{STEADY_SPREAD * 100:.0f}%% (at most "
                        f"{AUTO_WARMUP_MAX} rounds or {AUTO_WARMUP_SECONDS:.0f} s) "
                        "(default 1; auto on PyPy, whose JIT settles over several runs)")
    p.add_argument("--json", metavar="FILE", help="write every raw figure and the machine info")
    p.add_argument("--plot", metavar="FILE.png",
                   help="one chart per scenario, ratios in the titles (needs matplotlib)")
    lane = p.add_mutually_exclusive_group()
    lane.add_argument("--sync-only", action="store_true", help="skip the async lane")
    lane.add_argument("--async-only", action="store_true", help="skip the sync lane")
    p.add_argument("--memory", action="store_true",
                   help="also run the memory scenarios (async, maxlen=64)")
    p.add_argument("--memory-parts", type=_positive, default=None,
                   help="parts of the memory scenario (default 20 x N = 1,000,000)")
    p.add_argument("--tokens", type=_positive, default=None, metavar="N",
                   help="also run the token scenario: a LangGraph graph whose fake model "
                        "streams N tokens (e.g. 20000), consumer on every msg.text delta "
                        "(needs the langgraph extra; see langstream._bench_tokens)")
    p.add_argument("--no-langgraph", action="store_true", help="leave LangGraph out")
    p.add_argument("--backend", choices=("c", "python"), action="append",
                   help="langstream backend(s) to run (default: every available one)")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="what a figure measures: wall time (default) or this process's CPU "
                        "time (steadier on a loaded machine: time spent waiting for a CPU "
                        "is left out)")
    p.add_argument("--gc-threshold", type=_gc_threshold_arg, default=None, metavar="G0[,G1[,G2]]",
                   help="run with gc.set_threshold(G0, G1, G2) (CPython; the default is the "
                        "interpreter's, usually 700,10,10): many runs alive at once (C) make "
                        "the collector's full passes expensive, on both sides of the comparison")
    p.add_argument("--interpreters", action="store_true",
                   help="run the scenarios on CPython (C and pure) and PyPy, each scenario in a "
                        "fresh process, one table side by side")
    p.add_argument("--pypy", metavar="PATH",
                   help="PyPy interpreter for --interpreters (default: pypy3 on PATH)")
    return p


def _passthrough(args: argparse.Namespace) -> List[str]:
    out = ["--n", str(args.n), "--run-parts", str(args.run_parts), "--rounds", str(args.rounds),
           "--clock", args.clock]
    if args.runs is not None:
        out += ["--runs", str(args.runs)]
    if args.warmup is not None:
        out += ["--warmup", str(args.warmup)]
    for key in args.scenario or ():
        out += ["--scenario", key]
    if args.sync_only:
        out.append("--sync-only")
    if args.async_only:
        out.append("--async-only")
    if args.gc_threshold is not None:  # (CPython's subprocesses only: see run_interpreters)
        out += ["--gc-threshold", ",".join(str(v) for v in args.gc_threshold)]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m langstream bench``; returns the exit status."""
    global _perf
    args = _parser().parse_args(argv)
    saved_gc = None
    if args.gc_threshold is not None and not args.interpreters:
        if not hasattr(gc, "set_threshold"):
            sys.stderr.write(f"error: --gc-threshold: {platform.python_implementation()}'s "
                             "gc module has no thresholds to set\n")
            return 2
        saved_gc = gc.get_threshold()
        gc.set_threshold(*args.gc_threshold)
    saved = _perf
    _perf = time.process_time_ns if args.clock == "process" else time.perf_counter_ns
    try:
        return _main(args)
    finally:
        _perf = saved
        if saved_gc is not None:
            gc.set_threshold(*saved_gc)


def _main(args: argparse.Namespace) -> int:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write(f"error: {MATPLOTLIB_MISSING}\n")
            return 2
    if args.scenario and not _scenarios_to_run(args):
        lane, flag = ("sync", "--sync-only") if args.sync_only else ("async", "--async-only")
        named = ", ".join(dict.fromkeys(args.scenario))
        sys.stderr.write(f"error: {flag}: no {lane} lane in --scenario {named} "
                         "(nothing to run)\n")
        return 2
    if args.interpreters:
        if args.backend:
            sys.stderr.write("error: --interpreters picks the backends itself; drop --backend\n")
            return 2
        return run_interpreters(args, _passthrough(args))
    warmup = args.warmup if args.warmup is not None else (
        AUTO if platform.python_implementation() == "PyPy" else 1)
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
    if info["gc_threshold"] is not None:
        print("gc thresholds: " + ", ".join(str(v) for v in info["gc_threshold"])
              + ("  (--gc-threshold)" if args.gc_threshold is not None else "  (the default)"))
    compiled = info["langstream_compiled_modules"]
    print("compiled modules: " + (", ".join(compiled) if compiled else "none")
          + ("  (the pure backend here swaps the event log only; "
             "--interpreters runs a fully pure CPython)" if compiled and "python" in backends else ""))
    if lg is None:
        print(LANGGRAPH_MISSING if not args.no_langgraph else "LangGraph: left out (--no-langgraph)")
    else:
        print(f"LangGraph {lg['version']}: {PIPELINE_NOTE}")
    sys.stdout.flush()

    lanes_wanted = _lanes_wanted(args)
    scenario_keys = args.scenario or list(SCENARIOS)
    raw: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    items: Dict[str, Dict[str, Dict[str, int]]] = {}
    sizes: Dict[str, Tuple[int, int]] = {}
    warmups: Dict[str, Dict[str, int]] = {}  # warm-up rounds run per scenario and lane
    for key in dict.fromkeys(scenario_keys):
        scenario = SCENARIOS[key]
        if scenario.concurrent:
            runs = args.runs or max(1, 2 * args.n // args.run_parts)
            parts = scenario.build(args.run_parts)
        else:
            runs = 1
            parts = scenario.build(args.n)
        sizes[key] = (len(parts), runs)
        for lane in scenario.lanes:
            if lane not in lanes_wanted:
                continue
            factory = sync_contender if lane == "sync" else async_contender
            contenders: Dict[str, Callable[[List[Any], int], Any]] = {
                BARE: factory(BARE, scenario, backends, lg)}
            for name in backends:
                ck = LS_C if name == "c" else LS_PY
                contenders[ck] = factory(ck, scenario, backends, lg)
            if lg is not None:
                contenders[LG] = factory(LG, scenario, backends, lg)
            r, it, warmed = run_rounds(scenario, lane, contenders, parts, runs, args.rounds,
                                       warmup)
            raw.setdefault(key, {})[lane] = r
            items.setdefault(key, {})[lane] = it
            warmups.setdefault(key, {})[lane] = warmed

    summary: Summary = {
        scen: {lane: {k: summarize(v) for k, v in table.items()} for lane, table in lanes.items()}
        for scen, lanes in raw.items()
    }
    ratios = compute_ratios(summary)
    print()
    print(format_table(summary, ratios, sizes, args.rounds, lg["version"] if lg else None))
    pypy = platform.python_implementation() == "PyPy"
    targets = check_targets(summary, ratios, pypy=pypy) if (
        "c" in backends or pypy) else []
    if targets:
        print("\ntargets (" + ("PyPy, pure backend" if pypy else "C backend") + "):")
        for line in targets:
            print("  " + line)

    memory = growth = idle = idle_objects = None
    if args.memory:
        mem_parts = args.memory_parts or 20 * args.n
        memory = run_memory(mem_parts, 1000, 64, backends, lg)
        print(format_memory(memory))
        growth = run_memory_growth(max(10, mem_parts // 5), 1000, 64, backends)
        idle = idle_run_memory(backends)
        idle_objects = idle_run_objects(backends)
        print(format_growth(growth, idle, idle_objects))
    tokens = None
    if args.tokens:
        from langstream import _bench_tokens

        lanes = [lane for lane in ("sync", "async")
                 if not (lane == "sync" and args.async_only)
                 and not (lane == "async" and args.sync_only)]
        try:
            # (the token scenario takes a count: ``auto`` is three rounds there)
            token_warmup = warmup if isinstance(warmup, int) else 3
            tokens = _bench_tokens.run_tokens(args.tokens, args.rounds, token_warmup, backends,
                                              lg is not None, lanes)
            tokens_replay = _bench_tokens.run_replay(args.tokens, args.rounds, token_warmup,
                                                     backends, lg, lanes)
        except ImportError as exc:
            sys.stderr.write(f"error: --tokens needs the langgraph extra "
                             f"(pip install -e '.[langgraph]' in a checkout): {exc}\n")
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
                "warmup_rounds": warmups,
                "unit": "ns/part",
                "clock": args.clock,
                "langgraph": lg["version"] if lg else None,
                "pipeline": PIPELINE_NOTE,
                "scenarios": {k: {"title": SCENARIOS[k].title, "parts": sizes[k][0],
                                  "runs": sizes[k][1]} for k in sizes},
            },
            "raw": raw,
            "items": items,
            "summary": summary,
            "ratios": ratios,
            "targets": targets,
            "memory": memory,
            "memory_growth": growth,
            "idle_run_bytes": idle,
            "idle_run_objects": idle_objects,  # tracked by the collector (CPython)
            "tokens": tokens,  # ns/token per lane and contender (--tokens)
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        title = (
            f"langstream bench: {', '.join(summary)} ({args.n:,} parts), "
            f"{info['python_implementation']} {info['python_version']}, "
            f"{info['cpu_count']} CPUs, load {info['loadavg_start']}"
        )
        plot(args.plot, summary, ratios, title)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
