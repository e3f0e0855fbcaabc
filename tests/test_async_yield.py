"""The async pump's own yield and futures behave as asyncio's.

``_YIELD`` (awaited where the pump gives the event loop a turn) must be
exactly ``asyncio.sleep(0)``: one turn, other ready tasks run first.  The
pump's waiters come from the loop's ``create_future()`` (made directly only
where that is what the loop's method would make), so a loop with its own
futures still gets them.  Every test runs on both event-log backends.
"""

from __future__ import annotations

import asyncio

from helpers import adrain, areplay, arun, two_children_one_grandchild
from langstream import astream_events


def test_the_pump_yield_is_one_loop_turn(backend):
    from langstream.run_stream import _YIELD

    async def main():
        order = []

        async def other(name):
            order.append(name)
            await asyncio.sleep(0)
            order.append(name + "'")

        async def yielder():
            order.append("y")
            await _YIELD
            order.append("y'")
            await _YIELD
            order.append("y''")

        await asyncio.gather(yielder(), other("a"), other("b"))
        return order

    assert arun(main()) == ["y", "a", "b", "y'", "a'", "b'", "y''"]


def test_waiters_are_the_loops_own_futures(backend):
    """A loop whose ``create_future`` is its own is asked for every future
    the pump waits on; asyncio's own loops get the same futures as theirs."""
    from langstream.run_stream import _new_future

    made = []

    class Loop(asyncio.SelectorEventLoop):
        def create_future(self):
            future = super().create_future()
            made.append(future)
            return future

    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts, yield_every=1))

        async def handles():
            seen = []
            async for h in run.subgraphs:
                seen.append(await adrain(h.values))
            return seen

        return await asyncio.gather(adrain(run.values), adrain(run.lifecycle), handles())

    loop = Loop()
    try:
        values, _lifecycle, handle_values = loop.run_until_complete(main())
    finally:
        loop.close()
    assert values == info["root"]["snapshots"]
    assert handle_values == [info["alpha"]["snapshots"], info["beta"]["snapshots"]]
    assert made  # (consumers waited for each other's steps)

    async def plain():
        loop = asyncio.get_running_loop()
        future = _new_future(loop)
        loop.call_soon(future.set_result, 7)
        return type(future) is type(loop.create_future()), future.get_loop() is loop, await future

    assert arun(plain()) == (True, True, 7)
