"""Token streaming: a LangGraph graph whose fake model streams ``N`` tokens,
the consumer reading every ``msg.text`` delta of ``run.messages``; langstream
(``stream_graph`` / ``astream_graph``) next to LangGraph's own
``stream_events(version="v3")`` on the same graph and the same pipeline.

Needs the ``langgraph`` extra: without it ``setup`` raises
``NotImplementedError`` (asv reports the benchmarks as skipped).  The same
scenario, side by side in one process: ``python -m langstream bench --tokens N``.
"""

from __future__ import annotations

import asyncio
import warnings

from ._common import BackendSwitch, close_all, scale

N = scale(20_000)
CONTENDERS = ["langstream-c", "langstream-python", "langgraph"]


def _graph():
    try:
        from langstream._bench_tokens import make_token_graph

        return make_token_graph(N)
    except ImportError as exc:
        raise NotImplementedError(f"the langgraph extra is not installed: {exc}") from None


class Tokens:
    """Seconds per run of ``N`` tokens (divide by ``N`` for the time per token)."""

    params = [CONTENDERS]
    param_names = ["contender"]
    timeout = 300

    def setup(self, contender: str) -> None:
        warnings.filterwarnings("ignore")
        self.graph = _graph()
        if contender.startswith("langstream-"):
            self.switch = BackendSwitch(contender.split("-", 1)[1])
            self.switch.activate()

    def teardown(self, contender: str) -> None:
        close_all(self)

    @staticmethod
    def _input():
        from langchain_core.messages import HumanMessage

        return {"messages": [HumanMessage("go", id="in")]}

    def time_sync_text_deltas(self, contender: str) -> None:
        if contender == "langgraph":
            run = self.graph.stream_events(self._input(), version="v3")
        else:
            from langstream.integrations.langgraph import stream_graph

            run = stream_graph(self.graph, self._input())
        count = 0
        for msg in run.messages:
            for _delta in msg.text:
                count += 1
        assert count == N, count

    def time_async_text_deltas(self, contender: str) -> None:
        async def main() -> int:
            if contender == "langgraph":
                run = await self.graph.astream_events(self._input(), version="v3")
            else:
                from langstream.integrations.langgraph import astream_graph

                run = astream_graph(self.graph, self._input())
            count = 0
            async for msg in run.messages:
                async for _delta in msg.text:
                    count += 1
            return count

        assert asyncio.run(main()) == N
