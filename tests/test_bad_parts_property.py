"""Property test: a malformed part fails the run exactly as if the graph had
raised that error in its place, whoever subscribes, on both backends and
both lanes.

Random agent-shaped streams (``_agent_streams``) get one malformed part at a
random position (at that position's namespace: the root or a subgraph at any
depth).  The run over that stream and the run over the parts before it whose
graph then raises the same error (same type, same message) must be equal for
every consumer: the raw main log, every projection (values, lifecycle,
updates, custom, tasks), the subgraph tree (every handle's values, status and
error), ``output``.  So validation takes the same place on the fast paths and
on the event path, nothing after the bad part is dispatched, and the run's
teardown (open subgraphs failed, oldest first) is the one of a graph error.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import langstream
from _agent_streams import agent_stream

# (besides the default pipeline: values, messages where langchain-core is
# installed, lifecycle, subgraphs)
FACTORIES = [langstream.UpdatesTransformer, langstream.CustomTransformer,
             langstream.TasksTransformer]
PROJECTIONS = ("values", "lifecycle", "updates", "custom", "tasks")

BAD_PARTS = [
    lambda ns: "not a part",
    lambda ns: {"type": "values", "ns": ns},                                  # no data
    lambda ns: {"type": 3, "ns": ns, "data": {}},                             # type
    lambda ns: {"type": "values", "ns": "a|b", "data": {}},                   # ns a str
    lambda ns: {"type": "updates", "ns": tuple(ns) + (7,), "data": {}},      # a segment
    lambda ns: {"type": "values", "ns": ns, "data": {}, "interrupts": "x"},   # interrupts
    lambda ns: {"type": "custom", "ns": ns, "data": {}, "interrupts": 5},
    lambda ns: {"type": "tasks", "ns": ns, "data": {"id": "t", "name": "n", "input": {},
                                                    "triggers": []}, "interrupts": {}},
    lambda ns: {"type": "values", "ns": ("deep",) * 200, "data": {}},         # too deep
]


def _replay(parts: List[Any], error: Optional[BaseException]) -> Iterator[Any]:
    for part in parts:
        yield dict(part) if isinstance(part, dict) else part
    if error is not None:
        raise error


async def _areplay(parts: List[Any], error: Optional[BaseException],
                   rng: random.Random) -> AsyncIterator[Any]:
    for part in parts:
        yield dict(part) if isinstance(part, dict) else part
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    if error is not None:
        raise error


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _event_view(event: Dict[str, Any]) -> Any:
    return event["method"], {k: v for k, v in event["params"].items() if k != "timestamp"}


def _collect(iterable: Any, each: Any = None) -> List[Any]:
    out: List[Any] = []
    try:
        for item in iterable:
            out.append(item if each is None else each(item))
    except Exception as exc:  # noqa: BLE001 - compared
        out.append(_error(exc))
    return out


def _handle(handle: Any) -> Dict[str, Any]:
    values = _collect(handle.values)
    children = _collect(handle.subgraphs, _handle)
    return {"path": list(handle.path), "values": values, "children": children,
            "status": handle.status, "error": handle.error}


def _outcome(run: Any) -> Any:
    try:
        return run.output, run.interrupted, run.interrupts
    except Exception as exc:  # noqa: BLE001
        return _error(exc)


def observe_sync(parts: List[Any], error: Optional[BaseException]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    run = langstream.stream_events(_replay(parts, error), transformers=FACTORIES)
    seen["main"] = _collect(run, _event_view)
    seen["main_outcome"] = _outcome(run)
    run = langstream.stream_events(_replay(parts, error), transformers=FACTORIES)
    readers = {name: iter(run.extensions[name]) for name in PROJECTIONS}
    for name, reader in readers.items():
        seen[name] = _collect(reader)
    run = langstream.stream_events(_replay(parts, error), transformers=FACTORIES)
    seen["tree"] = _collect(run.subgraphs, _handle)
    seen["tree_outcome"] = _outcome(run)
    return seen


async def _acollect(aiterable: Any, each: Any = None) -> List[Any]:
    out: List[Any] = []
    try:
        async for item in aiterable:
            out.append(item if each is None else await each(item))
    except Exception as exc:  # noqa: BLE001
        out.append(_error(exc))
    return out


async def _ahandle(handle: Any) -> Dict[str, Any]:
    values, children = await asyncio.gather(_acollect(handle.values),
                                            _acollect(handle.subgraphs, _ahandle))
    return {"path": list(handle.path), "values": values, "children": children,
            "status": handle.status, "error": handle.error}


async def _aoutcome(run: Any) -> Any:
    try:
        return await run.output(), await run.interrupted(), await run.interrupts()
    except Exception as exc:  # noqa: BLE001
        return _error(exc)


async def _aview(event: Dict[str, Any]) -> Any:
    return _event_view(event)


async def observe_async(parts: List[Any], error: Optional[BaseException],
                        seed: int) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    run = langstream.astream_events(_areplay(parts, error, random.Random(seed)),
                                    transformers=FACTORIES)
    seen["main"] = await _acollect(run, _aview)
    seen["main_outcome"] = await _aoutcome(run)
    run = langstream.astream_events(_areplay(parts, error, random.Random(seed)),
                                    transformers=FACTORIES)
    results = await asyncio.gather(*[_acollect(run.extensions[name]) for name in PROJECTIONS],
                                   _acollect(run.subgraphs, _ahandle))
    seen.update(zip(PROJECTIONS, results))
    seen["tree"] = results[-1]
    seen["tree_outcome"] = await _aoutcome(run)
    return seen


def _case(seed: int):
    rng = random.Random(seed)
    parts, _ = agent_stream(rng, rng.random() < 0.5)
    at = rng.randint(0, len(parts))
    ns = parts[at]["ns"] if at < len(parts) else ()
    bad = rng.choice(BAD_PARTS)(ns)
    return parts[:at], bad, parts[at:]


def _raised(seen: Dict[str, Any]) -> BaseException:
    """The error the run failed with, rebuilt (its type and message)."""
    outcome = seen["main_outcome"]
    assert isinstance(outcome, str), f"the malformed part did not fail the run: {outcome!r}"
    name, _, message = outcome.partition(": ")
    assert name in ("TypeError", "ValueError"), outcome
    return {"TypeError": TypeError, "ValueError": ValueError}[name](message)


SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_sync_bad_part_fails_the_run_like_a_graph_error_there(backend, seed):
    before, bad, after = _case(seed)
    seen = observe_sync(before + [bad] + after, None)
    assert observe_sync(before, _raised(seen)) == seen


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_async_bad_part_fails_the_run_like_a_graph_error_there(backend, seed):
    before, bad, after = _case(seed)
    seen = asyncio.run(observe_async(before + [bad] + after, None, seed))
    assert asyncio.run(observe_async(before, _raised(seen), seed)) == seen
