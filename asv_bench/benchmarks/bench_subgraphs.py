"""Subgraph discovery and child muxes: a synthetic nested trace (no files needed).

The trace (``_common.nested_trace``) has the shape of
``graph.stream(..., subgraphs=True, version="v2")`` for a graph that calls a
subgraph, which calls another: root ``tasks`` starts and results, values and
updates parts two levels deep, a root snapshot after each call.
"""

from __future__ import annotations

import asyncio

from ._common import BACKENDS, SMOKE, BackendSwitch, close_all, nested_trace, scale

SUBGRAPHS = scale(200) if not SMOKE else 10
STEPS = 10
TRACE = nested_trace(SUBGRAPHS, STEPS, depth=2)


async def _aparts(parts: list) -> object:
    for part in parts:
        yield part


class SubgraphsSync:
    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.switch = BackendSwitch(backend)
        self.switch.activate()

    def teardown(self, backend: str) -> None:
        close_all(self)

    @staticmethod
    def _raw_log() -> None:
        from langstream import stream_events

        for _e in stream_events(TRACE):
            pass

    @staticmethod
    def _handles() -> None:
        from langstream import stream_events

        run = stream_events(TRACE)
        for handle in run.subgraphs:
            for _v in handle.values:
                pass

    @staticmethod
    def _lifecycle() -> None:
        from langstream import stream_events

        for _p in stream_events(TRACE).lifecycle:
            pass

    def time_raw_log(self, backend: str) -> None:
        self._raw_log()

    def time_handles_values(self, backend: str) -> None:
        self._handles()

    def time_lifecycle(self, backend: str) -> None:
        self._lifecycle()

    def peakmem_handles_values(self, backend: str) -> None:
        self._handles()


class SubgraphsAsync:
    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.switch = BackendSwitch(backend)
        self.switch.activate()
        self.loop = asyncio.new_event_loop()

    def teardown(self, backend: str) -> None:
        close_all(self)

    def _raw_log(self) -> None:
        from langstream import astream_events

        async def go() -> None:
            async for _e in astream_events(_aparts(TRACE)):
                pass

        self.loop.run_until_complete(go())

    def _handles(self) -> None:
        from langstream import astream_events

        async def go() -> None:
            run = astream_events(_aparts(TRACE))
            async for handle in run.subgraphs:
                async for _v in handle.values:
                    pass

        self.loop.run_until_complete(go())

    def time_raw_log(self, backend: str) -> None:
        self._raw_log()

    def time_handles_values(self, backend: str) -> None:
        self._handles()

    def peakmem_handles_values(self, backend: str) -> None:
        self._handles()
