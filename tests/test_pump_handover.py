"""Async lane: which consumer drives the pump after a step woke others.

A consumer that pumps and whose step gave data to other waiting consumers
(and none to itself) lets them pump on once they have read it, and waits for
its own data: the pump goes to the consumer that is reading, as on the sync
lane, instead of staying with one that has nothing to read and waking every
other consumer on each of its steps.  If none of the woken consumers asks
for more, the one that stepped aside takes the pump back (the hand-off):
nobody waits for a pump that nobody drives.  These tests pin what consumers
see on both event-log backends, with graphs that yield to the loop at every
part or never; ``arun`` fails a hang instead of hanging the session.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

from helpers import adrain, areplay, arun, subgraph_run, task_result, task_start, values
from langstream import astream_events


def _root_and_children(children: int = 3) -> List[Dict[str, Any]]:
    """Root snapshots with a subgraph (two inner snapshots) between each."""
    parts: List[Dict[str, Any]] = [values({"root": 0})]
    for i in range(children):
        parts.append(task_start(f"r{i}", "agent", (), {"root": i}))
        parts.append(task_result(f"r{i}", "agent", (), {"root": i}))
        parts.extend(subgraph_run("child", f"c{i}", (), [{"child": i, "k": 0}, {"child": i, "k": 1}]))
        parts.append(values({"root": i + 1}))
    return parts


def _root_snapshots(parts: List[Dict[str, Any]]) -> List[Any]:
    return [p["data"] for p in parts if p["type"] == "values" and not p["ns"]]


@pytest.mark.parametrize("yield_every", [0, 1])
@pytest.mark.parametrize("stop_after", [1, 2])
def test_a_woken_consumer_that_stops_reading_does_not_stall_the_pumping_one(
        backend, yield_every, stop_after):
    """The root values reader pumps; each subgraph's start wakes the
    lifecycle reader, which stops reading after a few items without asking
    for more: the values reader, which stepped aside for it, takes the pump
    back and reads every snapshot."""
    parts = _root_and_children()

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every))

        async def some_lifecycle():
            got = []
            async for payload in run.lifecycle:
                got.append((payload["event"], tuple(payload["namespace"])))
                if len(got) == stop_after:
                    break  # (and never reads the run again)
            return got

        return await asyncio.gather(adrain(run.values), some_lifecycle())

    root_values, lifecycle = arun(main(), timeout=10.0)
    assert root_values == _root_snapshots(parts)
    assert lifecycle == [("started", ("child:c0",)), ("completed", ("child:c0",))][:stop_after]


@pytest.mark.parametrize("yield_every", [0, 1])
def test_a_woken_consumer_that_waits_on_something_else_does_not_stall_the_run(
        backend, yield_every):
    """The woken consumer awaits an event set only after the run's values
    are all read: the pump must not wait for it (the values reader takes
    the pump back), and it then reads the rest of its projection."""
    parts = _root_and_children()

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every))
        values_done = asyncio.Event()

        async def root_values():
            got = await adrain(run.values)
            values_done.set()
            return got

        async def lifecycle_later():
            it = run.lifecycle.__aiter__()
            first = await it.__anext__()
            await values_done.wait()
            return [first, *[p async for p in it]]

        return await asyncio.gather(root_values(), lifecycle_later())

    got_values, lifecycle = arun(main(), timeout=10.0)
    assert got_values == _root_snapshots(parts)
    assert [(p["event"], tuple(p["namespace"])) for p in lifecycle] == [
        (event, (f"child:c{i}",)) for i in range(3) for event in ("started", "completed")
    ]


@pytest.mark.parametrize("yield_every", [0, 1])
def test_every_consumer_sees_what_the_sync_lane_sees_when_the_pump_moves(backend, yield_every):
    """Root values, root lifecycle and each handle's values read by three
    consumers (the pump moves between them at every subgraph): each sees
    exactly the sync lane's items, in order."""
    from langstream import stream_events

    parts = _root_and_children(5)

    sync_run = stream_events(iter([dict(p) for p in parts]))
    expected_handles = []
    expected = {"values": [], "lifecycle": []}
    for name, item in sync_run.interleave("values", "lifecycle", "subgraphs"):
        if name == "subgraphs":
            expected_handles.append((item.path, list(item.values)))
        else:
            expected[name].append(item)

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every))

        async def handles():
            return [(h.path, await adrain(h.values)) async for h in run.subgraphs]

        return await asyncio.gather(adrain(run.values), adrain(run.lifecycle), handles())

    got_values, got_lifecycle, got_handles = arun(main(), timeout=10.0)
    assert got_values == expected["values"]
    assert got_lifecycle == expected["lifecycle"]
    assert got_handles == expected_handles
