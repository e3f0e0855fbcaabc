"""Async run streams: scenario S on ``astream_events``."""

from __future__ import annotations

import asyncio

from ._common import BACKENDS, BackendSwitch, avalues_parts, close_all, scale

N = scale(10_000)


async def _values(n: int) -> None:
    from langstream import astream_events

    run = astream_events(avalues_parts(n))
    async for _v in run.values:
        pass


async def _raw_log(n: int) -> None:
    from langstream import astream_events

    run = astream_events(avalues_parts(n))
    async for _e in run:
        pass


async def _two_consumers(n: int) -> None:
    """``run.values`` and the raw main log read by two tasks (shared pump)."""
    from langstream import astream_events

    run = astream_events(avalues_parts(n))

    async def drain(it: object) -> None:
        async for _x in it:  # type: ignore[attr-defined]
            pass

    await asyncio.gather(drain(run.values), drain(run))


async def _output(n: int) -> None:
    from langstream import astream_events

    assert await astream_events(avalues_parts(n)).output() == {"step": n - 1}


class RunAsync:
    """``astream_events`` over ``N`` root values parts, default pipeline."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.switch = BackendSwitch(backend)
        self.switch.activate()
        self.loop = asyncio.new_event_loop()

    def teardown(self, backend: str) -> None:
        close_all(self)

    def _run(self, coro_fn: object, n: int = N) -> None:
        self.loop.run_until_complete(coro_fn(n))  # type: ignore[operator]

    def time_values(self, backend: str) -> None:
        self._run(_values)

    def peakmem_values(self, backend: str) -> None:
        self._run(_values, 10 * N)

    def time_raw_log(self, backend: str) -> None:
        self._run(_raw_log)

    def time_values_and_raw_log_two_tasks(self, backend: str) -> None:
        self._run(_two_consumers)

    def time_output_unsubscribed(self, backend: str) -> None:
        self._run(_output)


class FloorAsync:
    """The floor: the same async generator iterated directly."""

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()

    def teardown(self) -> None:
        self.loop.close()

    def _bare(self) -> None:
        async def consume() -> None:
            async for _v in avalues_parts(N):
                pass

        self.loop.run_until_complete(consume())

    def time_bare_async_generator(self) -> None:
        self._bare()
