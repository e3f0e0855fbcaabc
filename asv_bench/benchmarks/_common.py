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


def best_of(fn: Any, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls of ``fn()`` (seconds; one call in a smoke run)."""
    if SMOKE:
        repeat = 1
    best = float("inf")
    for _ in range(repeat):
        t0 = _perf()
        fn()
        best = min(best, _perf() - t0)
    return best
