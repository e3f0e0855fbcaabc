"""Async backpressure: ``maxlen=64``, a slow ``run.values`` reader, the raw log drained.

The slow reader takes one item each time the producer has made ``SLOWDOWN``
more parts, or as soon as the producer stops moving (it waits for room: the
reader is the bottleneck).  The fast reader drains the raw main log.  With a
``maxlen`` the memory stays bounded however long the run; ``maxlen=None``
(unbounded, LangGraph's behaviour) is the comparison.
"""

from __future__ import annotations

import asyncio
import platform

from ._common import BACKENDS, BackendSwitch, avalues_parts, close_all, scale

N = scale(2_000)  # timed runs
N_MEM = scale(50_000)  # peak-memory runs
SLOWDOWN = 100
PAYLOAD = "x" * 200


async def _aparts(n: int) -> object:
    async for part in avalues_parts(n):
        part["data"]["payload"] = PAYLOAD + str(part["data"]["step"])  # a fresh snapshot
        yield part


async def slow_and_fast(n: int, maxlen: object) -> int:
    from langstream import astream_events

    run = astream_events(_aparts(n), maxlen=maxlen)
    produced = [0]
    done = [False]

    async def drain() -> None:
        count = 0
        async for _e in run:
            count += 1
            produced[0] = count
        done[0] = True

    async def slow() -> int:
        count = 0
        async for _v in run.values:
            count += 1
            target = produced[0] + SLOWDOWN
            idle = 0
            while not done[0] and produced[0] < target and idle < 3:
                before = produced[0]
                await asyncio.sleep(0)
                idle = idle + 1 if produced[0] == before else 0
        return count

    _, count = await asyncio.gather(drain(), slow())
    assert count == n, count
    return count


class Backpressure:
    params = [BACKENDS, [64, None]]
    param_names = ["backend", "maxlen"]
    timeout = 120

    def setup(self, backend: str, maxlen: object) -> None:
        self.switch = BackendSwitch(backend)
        self.switch.activate()
        self.loop = asyncio.new_event_loop()

    def teardown(self, backend: str, maxlen: object) -> None:
        close_all(self)

    def time_slow_reader(self, backend: str, maxlen: object) -> None:
        self.loop.run_until_complete(slow_and_fast(N, maxlen))

    def peakmem_slow_reader(self, backend: str, maxlen: object) -> None:
        self.loop.run_until_complete(slow_and_fast(N_MEM, maxlen))


class BackpressureTraced:
    """Peak traced memory (``tracemalloc``, CPython only) of the slow-reader run."""

    params = [BACKENDS, [64, None]]
    param_names = ["backend", "maxlen"]
    timeout = 120

    def setup(self, backend: str, maxlen: object) -> None:
        if platform.python_implementation() != "CPython":
            raise NotImplementedError("tracemalloc needs CPython")
        self.switch = BackendSwitch(backend)
        self.switch.activate()
        self.loop = asyncio.new_event_loop()

    def teardown(self, backend: str, maxlen: object) -> None:
        close_all(self)

    def track_peak_traced(self, backend: str, maxlen: object) -> int:
        import tracemalloc

        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            self.loop.run_until_complete(slow_and_fast(N_MEM // 5, maxlen))
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    track_peak_traced.unit = "bytes"  # type: ignore[attr-defined]
