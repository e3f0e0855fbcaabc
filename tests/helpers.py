"""Shared test helpers: recorded traces and synthetic stream-part builders.

Only add functions here; other test modules import them by name.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

# the recorded traces: $LANGSTREAM_TRACES, else ``shared/traces`` beside the
# checkout (where CI puts it), else the project machine's /work/shared/traces
_BESIDE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "traces")
TRACES_DIR = os.environ.get("LANGSTREAM_TRACES") or (
    _BESIDE if os.path.isdir(_BESIDE) else "/work/shared/traces")


class TraceError(Exception):
    """Raised when replaying a trace whose last line is ``{"error": ...}``."""


_ERRORS = {"ValueError": ValueError, "RuntimeError": RuntimeError, "TypeError": TypeError,
           "KeyError": KeyError}


def trace_path(name: str) -> str:
    if not name.endswith(".jsonl"):
        name += ".jsonl"
    return os.path.join(TRACES_DIR, name)


def load_trace(name: str) -> Tuple[List[Dict[str, Any]], Optional[BaseException]]:
    """Return ``(parts, error)`` of a recorded trace; ``ns`` becomes a tuple.

    ``error`` is the exception the graph raised at the end (or ``None``).
    """
    parts: List[Dict[str, Any]] = []
    error: Optional[BaseException] = None
    with open(trace_path(name), encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if "error" in obj and "type" not in obj:
                err = obj["error"]
                error = _ERRORS.get(err.get("type"), TraceError)(err.get("message"))
                continue
            obj["ns"] = tuple(obj["ns"])
            parts.append(obj)
    return parts, error


def replay(parts: Sequence[Dict[str, Any]], error: Optional[BaseException] = None,
           state: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
    """A generator yielding copies of ``parts``, then raising ``error`` if given.

    ``state`` (a dict) records ``finally`` (True once the generator's
    ``finally`` ran) and ``pulled`` (how many parts were yielded).
    """
    if state is None:
        state = {}
    state.setdefault("finally", False)
    state.setdefault("pulled", 0)
    try:
        for part in parts:
            state["pulled"] += 1
            yield copy_part(part)
        if error is not None:
            raise error
    finally:
        state["finally"] = True


def trace_iter(name: str, state: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
    """Replay a recorded trace as a generator (raising its error at the end)."""
    parts, error = load_trace(name)
    return replay(parts, error, state)


def copy_part(part: Any) -> Any:
    """A shallow copy of a part (non-mapping values are returned as they are)."""
    if not isinstance(part, dict):
        return part
    out = dict(part)
    if isinstance(out.get("ns"), list):
        out["ns"] = tuple(out["ns"])
    return out


# ----------------------------------------------------------------- builders


def part(type_: str, ns: Sequence[str] = (), data: Any = None, **extra: Any) -> Dict[str, Any]:
    """A v2 stream part; ``values`` parts get ``interrupts=()`` unless given."""
    p: Dict[str, Any] = {"type": type_, "ns": tuple(ns), "data": data}
    if type_ == "values":
        p["interrupts"] = tuple(extra.pop("interrupts", ()))
    p.update(extra)
    return p


def values(data: Any, ns: Sequence[str] = (), interrupts: Iterable[Any] = ()) -> Dict[str, Any]:
    return {"type": "values", "ns": tuple(ns), "data": data, "interrupts": tuple(interrupts)}


def updates(data: Any, ns: Sequence[str] = ()) -> Dict[str, Any]:
    return {"type": "updates", "ns": tuple(ns), "data": data}


def custom(data: Any, ns: Sequence[str] = ()) -> Dict[str, Any]:
    return {"type": "custom", "ns": tuple(ns), "data": data}


def task_start(task_id: str, name: str, ns: Sequence[str] = (), input: Any = None) -> Dict[str, Any]:
    """A parent's ``tasks`` start part for task ``task_id``."""
    return {"type": "tasks", "ns": tuple(ns), "data": {
        "id": task_id, "name": name, "input": input, "triggers": [f"branch:to:{name}"]}}


def task_result(task_id: str, name: str, ns: Sequence[str] = (), result: Any = None,
                error: Optional[str] = None, interrupts: Sequence[Any] = ()) -> Dict[str, Any]:
    """A parent's ``tasks`` result part for task ``task_id``."""
    return {"type": "tasks", "ns": tuple(ns), "data": {
        "id": task_id, "name": name, "error": error,
        "result": {} if result is None else result, "interrupts": list(interrupts)}}


def subgraph_run(name: str, task_id: str, parent_ns: Sequence[str], snapshots: Sequence[Any],
                 *, error: Optional[str] = None, interrupts: Sequence[Any] = (),
                 inner: Sequence[Dict[str, Any]] = (), close: bool = True,
                 ) -> List[Dict[str, Any]]:
    """Parts of one subgraph run, shaped like LangGraph's.

    The parent's task start, then the child's first snapshot (its input),
    then ``inner`` parts (e.g. a grandchild's parts), then the remaining
    snapshots, then (``close``) the parent's task result.
    """
    ns = (*parent_ns, f"{name}:{task_id}")
    out: List[Dict[str, Any]] = [task_start(task_id, name, parent_ns, snapshots[0] if snapshots else None)]
    if snapshots:
        out.append(values(snapshots[0], ns))
    out.extend(inner)
    for i, snap in enumerate(snapshots[1:], 1):
        out.append(task_start(f"{task_id}-n{i}", f"node{i}", ns, snap))
        out.append(updates({f"node{i}": snap}, ns))
        out.append(task_result(f"{task_id}-n{i}", f"node{i}", ns, snap))
        out.append(values(snap, ns))
    if close:
        out.append(task_result(task_id, name, parent_ns,
                               snapshots[-1] if snapshots else None,
                               error=error, interrupts=interrupts))
    return out


def ns_of(name: str, task_id: str, parent_ns: Sequence[str] = ()) -> Tuple[str, ...]:
    return (*parent_ns, f"{name}:{task_id}")


def two_children_one_grandchild() -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """A root run with children ``alpha`` (holding grandchild ``gamma``) and ``beta``.

    Returns ``(parts, info)``; ``info`` maps ``"alpha"``/``"beta"``/``"gamma"``
    to ``{"ns", "task_id", "snapshots"}`` and ``"root"`` to its snapshots.
    """
    a_ns = ns_of("alpha", "ta1")
    b_ns = ns_of("beta", "tb2")
    g_ns = ns_of("gamma", "tg3", a_ns)
    a_snaps = [{"who": "alpha", "i": 0}, {"who": "alpha", "i": 1}, {"who": "alpha", "i": 2}]
    b_snaps = [{"who": "beta", "i": 0}, {"who": "beta", "i": 1}]
    g_snaps = [{"who": "gamma", "i": 0}, {"who": "gamma", "i": 1}]
    root_snaps = [{"who": "root", "i": 0}, {"who": "root", "i": 1}, {"who": "root", "i": 2}]
    grand = subgraph_run("gamma", "tg3", a_ns, g_snaps)
    parts: List[Dict[str, Any]] = [values(root_snaps[0])]
    parts += subgraph_run("alpha", "ta1", (), a_snaps, inner=grand)
    parts.append(values(root_snaps[1]))
    parts += subgraph_run("beta", "tb2", (), b_snaps)
    parts.append(values(root_snaps[2]))
    info = {
        "alpha": {"ns": a_ns, "task_id": "ta1", "snapshots": a_snaps},
        "beta": {"ns": b_ns, "task_id": "tb2", "snapshots": b_snaps},
        "gamma": {"ns": g_ns, "task_id": "tg3", "snapshots": g_snaps},
        "root": {"ns": (), "snapshots": root_snaps},
    }
    return parts, info


def collect(iterable: Iterable[Any]) -> List[Any]:
    return list(iterable)


# ------------------------------------------------------------ async helpers


async def areplay(parts: Sequence[Dict[str, Any]], error: Optional[BaseException] = None,
                  state: Optional[Dict[str, Any]] = None, *, yield_every: int = 0):
    """Async twin of ``replay``: an async generator of copies of ``parts``.

    ``state`` records ``finally`` and ``pulled`` as for ``replay``; with
    ``yield_every`` > 0 it gives the loop a turn (``asyncio.sleep(0)``)
    before every ``yield_every``-th part.
    """
    import asyncio

    if state is None:
        state = {}
    state.setdefault("finally", False)
    state.setdefault("pulled", 0)
    try:
        for i, p in enumerate(parts):
            if yield_every and i % yield_every == 0:
                await asyncio.sleep(0)
            state["pulled"] += 1
            yield copy_part(p)
        if error is not None:
            raise error
    finally:
        state["finally"] = True


def atrace_iter(name: str, state: Optional[Dict[str, Any]] = None):
    """Replay a recorded trace as an async generator (raising its error at the end)."""
    parts, error = load_trace(name)
    return areplay(parts, error, state)


def arun(coro: Any, timeout: float = 15.0) -> Any:
    """``asyncio.run(coro)`` under a liveness guard: a hang fails after ``timeout`` s.

    The guard is not a timing assertion: it only turns a wedged run into a
    clear failure instead of a hung test session.
    """
    import asyncio

    async def _guarded() -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"liveness guard: the coroutine did not finish within {timeout} s (hang)"
            ) from None

    return asyncio.run(_guarded())


async def adrain(aiterable: Any) -> List[Any]:
    """Collect every item of an async iterable into a list."""
    return [item async for item in aiterable]


async def adrain_outcome(aiterable: Any) -> Tuple[List[Any], Optional[BaseException]]:
    """``(items, error)``: every item read, then the exception that ended it (or None)."""
    items: List[Any] = []
    try:
        async for item in aiterable:
            items.append(item)
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return items, exc
    return items, None
