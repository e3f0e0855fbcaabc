"""Async lane: a consumer that gets a subgraph handle can subscribe to its
projections before the subgraph's events reach them (README, "Subgraphs").

Pushes to a log nobody subscribes to are not stored, so the async pump
gives the loop ``_FLUSH_TURNS`` turns before it forwards a new handle's
first event, and for a few steps after that it goes back to the loop after
each step instead of pulling ahead (cut to ``_SETTLE_SUBSCRIBED`` steps once
a projection of the newest handle has a subscriber).  These tests pin the
subscription patterns that must see every event of every handle, the input
snapshot included: in the loop body, from tasks started there, from a
``gather`` in such a task, a second projection one loop turn after the
first or after the first one's first item, with the handles themselves
consumed in tasks or not, and with other readers of the run pumping
concurrently.  Before the turns, the task patterns lost the input snapshot.
Every test runs on both event-log backends; the graph's own async generator
yields to the loop at every part or never.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

from helpers import adrain, areplay, arun, two_children_one_grandchild
from langstream import astream_events


def _lifecycle_of(payloads: List[Dict[str, Any]]) -> List[Any]:
    return [(p["event"], tuple(p["namespace"])) for p in payloads]


def _expected():
    parts, info = two_children_one_grandchild()
    g_ns = info["gamma"]["ns"]
    return parts, info, {
        "alpha": (info["alpha"]["snapshots"],
                  [("started", g_ns), ("completed", g_ns)]),
        "beta": (info["beta"]["snapshots"], []),
    }


async def _in_body_then_task(h: Any) -> Any:
    values_it = h.values.__aiter__()
    lifecycle = asyncio.ensure_future(adrain(h.lifecycle))
    return await adrain(values_it), await lifecycle


async def _task_with_gather(h: Any) -> Any:
    return await asyncio.ensure_future(asyncio.gather(adrain(h.values), adrain(h.lifecycle)))


async def _second_a_turn_later(h: Any) -> Any:
    values_it = h.values.__aiter__()
    await asyncio.sleep(0)
    lifecycle_it = h.lifecycle.__aiter__()
    return tuple(await asyncio.gather(adrain(values_it), adrain(lifecycle_it)))


async def _second_after_the_first_item(h: Any) -> Any:
    values_it = h.values.__aiter__()
    first = await values_it.__anext__()
    lifecycle_it = h.lifecycle.__aiter__()
    rest, lifecycle = await asyncio.gather(adrain(values_it), adrain(lifecycle_it))
    return [first, *rest], lifecycle


async def _two_tasks(h: Any) -> Any:
    values = asyncio.ensure_future(adrain(h.values))
    lifecycle = asyncio.ensure_future(adrain(h.lifecycle))
    return await values, await lifecycle


PATTERNS = {
    "in_body_then_task": _in_body_then_task,
    "task_with_gather": _task_with_gather,
    "second_a_turn_later": _second_a_turn_later,
    "two_tasks": _two_tasks,
    "second_after_the_first_item": _second_after_the_first_item,
}


@pytest.mark.parametrize("yield_every", [0, 1])
@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("handles_in_tasks", [False, True])
def test_every_subscription_pattern_sees_every_event(backend, pattern, yield_every,
                                                      handles_in_tasks):
    parts, info, expected = _expected()
    subscribe = PATTERNS[pattern]

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every))
        seen: Dict[str, Any] = {}

        async def handles():
            pending = []
            async for h in run.subgraphs:
                name = h.path[-1].split(":")[0]
                if handles_in_tasks:
                    pending.append((name, asyncio.ensure_future(subscribe(h))))
                else:
                    seen[name] = await subscribe(h)
            for name, task in pending:
                seen[name] = await task

        # the run's other readers pump too
        root_values, root_lifecycle, _ = await asyncio.gather(
            adrain(run.values), adrain(run.lifecycle), handles())
        return root_values, root_lifecycle, seen

    root_values, root_lifecycle, seen = arun(main())
    assert root_values == info["root"]["snapshots"]
    assert [event for event, _ns in _lifecycle_of(root_lifecycle)].count("started") == 3
    assert set(seen) == set(expected)
    for name, (snapshots, lifecycle) in expected.items():
        got_values, got_lifecycle = seen[name]
        assert got_values == snapshots, name
        assert _lifecycle_of(got_lifecycle) == lifecycle, name


def test_a_subscription_to_an_older_handle_does_not_cut_the_newest_ones_window(backend):
    """Two handles made in a row: the consumer of the second subscribes from
    a task started a turn later; the first one's subscriber does not end the
    second one's window."""
    parts, info, expected = _expected()

    async def main():
        run = astream_events(areplay(parts))
        seen: Dict[str, Any] = {}
        tasks = []
        async for h in run.subgraphs:
            name = h.path[-1].split(":")[0]
            if name == "alpha":
                seen[name] = await _in_body_then_task(h)
            else:
                tasks.append((name, asyncio.ensure_future(_two_tasks(h))))
        for name, task in tasks:
            seen[name] = await task
        return seen

    seen = arun(main())
    for name, (snapshots, lifecycle) in expected.items():
        assert seen[name][0] == snapshots, name
        assert _lifecycle_of(seen[name][1]) == lifecycle, name


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_subscription_pattern_sees_every_event_on_a_busy_loop(backend, pattern):
    """The pump stops giving turns for a new handle early only when nothing
    else is ready to run; with other work always ready (a task yielding at
    every turn) it gives them all, and every pattern still sees everything."""
    parts, info, expected = _expected()
    subscribe = PATTERNS[pattern]

    async def main():
        run = astream_events(areplay(parts))
        stop = False

        async def spin():
            while not stop:
                await asyncio.sleep(0)

        spinner = asyncio.ensure_future(spin())
        seen: Dict[str, Any] = {}
        pending = []
        async for h in run.subgraphs:
            name = h.path[-1].split(":")[0]
            pending.append((name, asyncio.ensure_future(subscribe(h))))
        for name, task in pending:
            seen[name] = await task
        stop = True
        await spinner
        return seen

    seen = arun(main())
    for name, (snapshots, lifecycle) in expected.items():
        assert seen[name][0] == snapshots, name
        assert _lifecycle_of(seen[name][1]) == lifecycle, name


def test_the_loop_is_idle_only_when_nothing_is_ready(backend):
    """``_loop_idle``: asyncio's loops tell (their ready queue); a loop that
    does not show one never counts as idle (the pump gives every turn)."""
    from langstream.run_stream import _loop_idle

    async def main():
        loop = asyncio.get_running_loop()
        idle_now = _loop_idle(loop)
        loop.call_soon(lambda: None)
        busy = _loop_idle(loop)
        await asyncio.sleep(0)
        return idle_now, busy, _loop_idle(loop)

    assert arun(main()) == (True, False, True)
    assert _loop_idle(object()) is False

    class Elsewhere:  # (a loop keeping its queue some other way)
        _ready: List[Any] = []

    assert _loop_idle(Elsewhere()) is False
