"""Helpers shared by the benchmark modules (no benchmarks here).

Backends are switched the way the test-suite does it: the names in
``langstream.eventlog`` are swapped, and every channel, mux and counter built
afterwards uses the chosen module (they read ``_el.EventLog`` when they are
constructed).  A backend that cannot run here makes ``setup`` raise
``NotImplementedError``, which asv reports as a skipped benchmark.
"""

from __future__ import annotations

import importlib
import os
import platform
import time
from typing import Any, AsyncIterator, Dict, Iterator, List

BACKENDS = ["c", "python"]

# asv_bench/smoke.sh sets this: every benchmark runs once on small inputs, so
# a CI smoke of the whole suite stays well under a minute
SMOKE = os.environ.get("LANGSTREAM_ASV_SMOKE", "") not in ("", "0")


def scale(n: int) -> int:
    """``n``, or a 20th of it (at least 100) in a smoke run."""
    return max(100, n // 20) if SMOKE else n

_MODULES = {"c": "langstream._eventlog_c", "python": "langstream._eventlog_py"}
_perf = time.perf_counter


def load_backend(name: str) -> Any:
    """The event-log module of backend ``name``; ``NotImplementedError`` if absent."""
    if name == "c" and platform.python_implementation() != "CPython":
        raise NotImplementedError("no C backend on " + platform.python_implementation())
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise NotImplementedError(f"backend {name!r} is not available: {exc}") from None


class BackendSwitch:
    """Swap ``langstream.eventlog``'s classes for those of one backend."""

    def __init__(self, name: str) -> None:
        self.module = load_backend(name)
        self.name = name
        self._saved: Any = None

    def activate(self) -> None:
        from langstream import eventlog as el

        self._saved = (el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND)
        el.EventLog = self.module.EventLog
        el.Cursor = self.module.Cursor
        el.SeqCounter = self.module.SeqCounter
        el.BACKEND = self.name

    def restore(self) -> None:
        if self._saved is not None:
            from langstream import eventlog as el

            el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND = self._saved
            self._saved = None


def close_all(bench: Any) -> None:
    """Teardown: close the bench's event loop and restore the backend, if set up.

    asv calls ``teardown`` even when ``setup`` raised ``NotImplementedError``
    (a skipped parameter), so nothing here may assume ``setup`` finished.
    """
    loop = getattr(bench, "loop", None)
    if loop is not None:
        loop.close()
        bench.loop = None
    switch = getattr(bench, "switch", None)
    if switch is not None:
        switch.restore()
        bench.switch = None


def values_parts(n: int) -> Iterator[Dict[str, Any]]:
    """``n`` values parts at the root namespace, built on the fly (a graph)."""
    for i in range(n):
        yield {"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()}


async def avalues_parts(n: int) -> AsyncIterator[Dict[str, Any]]:
    for i in range(n):
        yield {"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()}


def nested_trace(subgraphs: int, steps: int, depth: int = 2) -> List[Dict[str, Any]]:
    """A synthetic trace shaped like ``graph.stream(subgraphs=True, version="v2")``.

    For each of ``subgraphs`` subgraph calls: a root ``tasks`` start, then
    ``steps`` values and updates parts at each depth 1..``depth`` (namespace
    ``("sub:tK", "inner:tK.1", ...)``), the inner ``tasks`` results, the root
    ``tasks`` result, and a root values snapshot.
    """
    parts: List[Dict[str, Any]] = [
        {"type": "values", "ns": (), "data": {"messages": []}, "interrupts": ()}
    ]
    for k in range(subgraphs):
        path: List[str] = []
        names = ["sub"] + ["inner"] * (depth - 1)
        ids = [f"t{k}"] + [f"t{k}.{d}" for d in range(1, depth)]
        for level in range(depth):
            parent = tuple(path)
            parts.append({
                "type": "tasks", "ns": parent,
                "data": {"id": ids[level], "name": names[level], "input": {}, "triggers": ()},
            })
            path.append(f"{names[level]}:{ids[level]}")
            ns = tuple(path)
            for s in range(steps):
                parts.append({"type": "values", "ns": ns, "data": {"step": s, "level": level},
                              "interrupts": ()})
                parts.append({"type": "updates", "ns": ns, "data": {names[level]: {"step": s}}})
        for level in reversed(range(depth)):
            parent = tuple(path[:level])
            parts.append({
                "type": "tasks", "ns": parent,
                "data": {"id": ids[level], "name": names[level], "error": None,
                         "result": {"ok": True}, "interrupts": []},
            })
        parts.append({"type": "values", "ns": (), "data": {"messages": [k]}, "interrupts": ()})
    return parts


def ns_per(seconds: float, events: int) -> float:
    return seconds / events * 1e9


PYPY = platform.python_implementation() == "PyPy"

# PyPy's JIT keeps compiling a scenario for several runs (M: about ten runs of
# 20,000 parts), longer than asv's own warm-up on PyPy (1 s) and than
# ``best_of``'s three calls: on PyPy the scenario benchmarks warm up until
# steady, as ``python -m langstream bench --warmup auto`` does (its
# ``steady``: the last 3 timings within 10 %), at most 30 calls or 60 s.
STEADY_CALLS = 3
STEADY_SPREAD = 0.10
WARMUP_MAX_CALLS = 30
WARMUP_MAX_SECONDS = 60.0
# asv's ``warmup_time`` for the scenario classes' ``time_`` benchmarks
# (-1: asv's default, 0.1 s on CPython)
SCENARIO_WARMUP_TIME = 10.0 if PYPY else -1


def warm_up(fn: Any) -> int:
    """Call ``fn()`` until its last ``STEADY_CALLS`` wall times agree within
    ``STEADY_SPREAD`` (or the caps); return the calls made."""
    times: List[float] = []
    start = _perf()
    while len(times) < WARMUP_MAX_CALLS and _perf() - start < WARMUP_MAX_SECONDS:
        t0 = _perf()
        fn()
        times.append(_perf() - t0)
        last = times[-STEADY_CALLS:]
        if len(last) == STEADY_CALLS and max(last) <= min(last) * (1 + STEADY_SPREAD):
            break
    return len(times)


def best_of(fn: Any, repeat: int = 3, warm: bool = PYPY) -> float:
    """Best wall time of ``repeat`` calls of ``fn()`` (seconds; one call in a smoke
    run), after ``warm_up(fn)`` when ``warm`` (the default on PyPy)."""
    if SMOKE:
        repeat = 1
    elif warm:
        warm_up(fn)
    best = float("inf")
    for _ in range(repeat):
        t0 = _perf()
        fn()
        best = min(best, _perf() - t0)
    return best
