"""A scope whose ``subgraphs`` nobody reads builds no child muxes.

A handle pushed to a ``subgraphs`` projection nobody subscribes to is not
stored, so no consumer can ever receive it.  With langstream's own
transformers in the pipeline, a child mux does nothing anyone can see
without its handle, so it is not built: the run's other projections, its
lifecycle, its raw main log and its outcome are the same as when a consumer
reads every handle.  A pipeline with a factory of the user's own keeps
building every child (its transformers may do anything).

Every test runs on both event-log backends, and on both lanes where a run is
involved.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Dict, List

import pytest

from _agent_streams import agent_stream, areplay, replay

from langstream import StreamTransformer, _bench, astream_events, stream_events

LANES = ["sync", "async"]


def _streams() -> List[Any]:
    """(parts, fails) pairs: the benchmark's nested agent stream, and random
    LangGraph-shaped ones (failed and missing task results, interrupts,
    tool calls, agent names, a graph that raises)."""
    out = [(_bench.agent_parts(400, depth=3), False)]
    for seed in range(30):
        out.append(agent_stream(random.Random(seed), snapshots=seed % 2 == 0))
    return out


def _event(event: Dict[str, Any]) -> Any:
    params = {k: v for k, v in event["params"].items() if k != "timestamp"}
    return event.get("seq"), event["method"], params


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _drain(it: Any, each: Any = None) -> List[Any]:
    out: List[Any] = []
    try:
        for item in it:
            out.append(item if each is None else each(item))
    except Exception as exc:  # noqa: BLE001 - compared between the two
        out.append(_error(exc))
    return out


async def _adrain(it: Any, each: Any = None) -> List[Any]:
    out: List[Any] = []
    try:
        async for item in it:
            out.append(item if each is None else each(item))
    except Exception as exc:  # noqa: BLE001 - compared between the two
        out.append(_error(exc))
    return out


def _tree(handle: Any) -> Dict[str, Any]:
    values = _drain(handle.values)
    children = _drain(handle.subgraphs, _tree)
    return {"path": handle.path, "values": values, "children": children,
            "status": handle.status}


async def _atree(handle: Any) -> Dict[str, Any]:
    values, children = await asyncio.gather(_adrain(handle.values),
                                            _adrain_tree(handle.subgraphs))
    return {"path": handle.path, "values": values, "children": children,
            "status": handle.status}


async def _adrain_tree(subgraphs: Any) -> List[Any]:
    out: List[Any] = []
    try:
        async for handle in subgraphs:
            out.append(await _atree(handle))
    except Exception as exc:  # noqa: BLE001
        out.append(_error(exc))
    return out


def _observe_sync(parts: List[Any], fails: bool, read_tree: bool) -> Dict[str, Any]:
    run = stream_events(replay(parts, fails))
    raw, values, lifecycle = iter(run), iter(run.values), iter(run.lifecycle)
    seen: Dict[str, Any] = {}
    if read_tree:
        seen["tree"] = _drain(run.subgraphs, _tree)
    seen["raw"] = _drain(raw, _event)
    seen["values"] = _drain(values)
    seen["lifecycle"] = _drain(lifecycle)
    try:
        seen["output"] = (run.output, run.interrupted, run.interrupts)
    except Exception as exc:  # noqa: BLE001
        seen["output"] = _error(exc)
    seen["children"] = run._mux._shared.children
    return seen


async def _observe_async(parts: List[Any], fails: bool, read_tree: bool) -> Dict[str, Any]:
    run = astream_events(areplay(parts, fails, random.Random(len(parts))))
    readers = [_adrain(run, _event), _adrain(run.values), _adrain(run.lifecycle)]
    if read_tree:
        readers.append(_adrain_tree(run.subgraphs))
    got = await asyncio.gather(*readers)
    seen: Dict[str, Any] = dict(zip(("raw", "values", "lifecycle", "tree"), got))
    try:
        seen["output"] = (await run.output(), await run.interrupted(), await run.interrupts())
    except Exception as exc:  # noqa: BLE001
        seen["output"] = _error(exc)
    seen["children"] = run._mux._shared.children
    return seen


def _observe(lane: str, parts: List[Any], fails: bool, read_tree: bool) -> Dict[str, Any]:
    if lane == "sync":
        return _observe_sync(parts, fails, read_tree)
    return asyncio.run(_observe_async(parts, fails, read_tree))


@pytest.mark.parametrize("lane", LANES)
def test_a_run_whose_subgraphs_nobody_reads_is_otherwise_the_same(backend, lane):
    """Values, lifecycle, the raw main log (seq numbers included) and the
    outcome do not depend on whether anyone reads the handles; no child mux
    is built when nobody reads ``subgraphs``."""
    nested = 0
    for parts, fails in _streams():
        quiet = _observe(lane, parts, fails, read_tree=False)
        full = _observe(lane, parts, fails, read_tree=True)
        for key in ("raw", "values", "lifecycle", "output"):
            assert quiet[key] == full[key], key
        assert quiet["children"] == 0
        handles = [h for h in full["tree"] if isinstance(h, dict)]
        if handles:
            nested += 1
            assert full["children"] >= len(handles)
    assert nested >= 10  # (the streams do have subgraphs)


@pytest.mark.parametrize("lane", LANES)
def test_a_handle_whose_subgraphs_nobody_reads_builds_no_grandchild(backend, lane):
    """Reading a handle's values, not its subgraphs: the handle sees all its
    own snapshots; its children are not built."""
    parts = _bench.agent_parts(400, depth=3)
    if lane == "sync":
        run = stream_events(iter(parts))
        handles = [(h.path, list(h.values)) for h in run.subgraphs]
        children = run._mux._shared.children
    else:
        async def consume() -> Any:
            run = astream_events(_bench.aproducer(parts))
            out = []
            async for h in run.subgraphs:
                out.append((h.path, [v async for v in h.values]))
            return out, run._mux._shared.children
        handles, children = asyncio.run(consume())
    expected = {}
    for part in parts:
        if part["type"] == "values" and len(part["ns"]) == 1:
            expected.setdefault(tuple(part["ns"]), []).append(part["data"])
    assert handles and [path for path, _v in handles] == list(expected)
    for path, got in handles:
        assert got == expected[path]
    assert children == len(handles)  # (the root's children only)


class _Counting(StreamTransformer):
    """A user's transformer: records every scope it is made for."""

    made: List[tuple] = []

    def __init__(self, scope: tuple = ()) -> None:
        super().__init__(scope)
        _Counting.made.append(tuple(scope))

    def init(self) -> Dict[str, Any]:
        return {}

    def process(self, event: Any) -> bool:
        return True


@pytest.mark.parametrize("lane", LANES)
def test_a_factory_of_the_users_own_still_runs_for_every_subgraph(backend, lane):
    """With a factory of the user's own in the pipeline, every child mux is
    built whether or not anyone reads the handles (its transformers may do
    anything: here, record that they were made)."""
    parts = _bench.agent_parts(400, depth=2)
    scopes = {tuple(p["ns"]) for p in parts if p["ns"]}
    _Counting.made = []
    if lane == "sync":
        run = stream_events(iter(parts), transformers=[_Counting])
        list(run.values)
    else:
        async def consume() -> None:
            run = astream_events(_bench.aproducer(parts), transformers=[_Counting])
            async for _v in run.values:
                pass
        asyncio.run(consume())
    assert set(_Counting.made) == scopes | {()}


@pytest.mark.parametrize("lane", LANES)
def test_a_late_subgraphs_reader_gets_the_handles_made_after_it_subscribed(backend, lane):
    """Subscribing to ``subgraphs`` mid-run: the subgraphs discovered before
    are not handed out (as their handles would not be, pushed while nobody
    subscribed), each later one is, with all of its snapshots."""
    parts = _bench.agent_parts(400)
    if lane == "sync":
        run = stream_events(iter(parts))
        values = iter(run.values)
        for _ in range(30):  # (past the first subgraphs)
            next(values)
        seen = [(h.path, list(h.values)) for h in run.subgraphs]
    else:
        async def consume() -> Any:
            run = astream_events(_bench.aproducer(parts))
            values = run.values.__aiter__()
            for _ in range(30):
                await values.__anext__()
            out = []
            async for h in run.subgraphs:
                out.append((h.path, [v async for v in h.values]))
            return out
        seen = asyncio.run(consume())
    expected: Dict[tuple, List[Any]] = {}
    for part in parts:
        if part["type"] == "values" and len(part["ns"]) == 1:
            expected.setdefault(tuple(part["ns"]), []).append(part["data"])
    paths = list(expected)
    assert seen and len(seen) < len(paths)
    assert [path for path, _v in seen] == paths[len(paths) - len(seen):]
    for path, got in seen:
        assert got == expected[path]
