"""Async backpressure never waits on a reader that cannot read because of the
wait itself.

A transformer's scheduled work may fill a bounded projection while the pump
is waiting for room elsewhere.  If that projection's reader is the task
pumping (it began the step with nothing to read), or is parked until the
step ends, the pump waited forever for room only that reader could make (the
stall warning, then nothing).  Now the pumping reader finishes its step and
reads; a parked reader is let go to read.  Memory stays bounded by maxlen plus
one step's events."""

from __future__ import annotations

import asyncio

import pytest

from helpers import arun, custom, values
from langstream import StreamChannel, StreamTransformer, astream_events


class _LatePairs(StreamTransformer):
    """For each root custom event, pushes two items to ``late`` 10 ms later."""

    def __init__(self, scope=()):
        super().__init__(scope)
        self.channel = StreamChannel()
        self.most_unread = 0

    def init(self):
        return {"late": self.channel}

    def process(self, event):
        return True

    async def aprocess(self, event):
        if event["method"] == "custom" and not self.scope:
            async def later(value=event["params"]["data"]):
                await asyncio.sleep(0.01)
                self.channel.push(value)
                self.channel.push(value)
                self.most_unread = max(self.most_unread, len(self.channel._log))
            self.schedule(later())
        return True


async def _graph():
    yield custom("x")
    for i in range(6):
        yield values({"i": i})


@pytest.mark.parametrize("driver", ["readers", "output-first", "output-second"])
def test_scheduled_pushes_into_a_full_log_do_not_stall_the_pump(backend, driver):
    made = []

    def factory(scope):
        made.append(_LatePairs(scope))
        return made[-1]

    async def main():
        run = astream_events(_graph(), transformers=[factory], maxlen=2)
        got = {"late": [], "values": []}

        async def slow_values():
            async for item in run.values:
                got["values"].append(item)
                await asyncio.sleep(0.03)  # keeps values full while late fills

        async def late():
            async for item in run.extensions["late"]:
                got["late"].append(item)

        async def output():
            await run.output()

        order = {"readers": [slow_values, late],
                 "output-first": [output, slow_values, late],
                 "output-second": [slow_values, output, late]}[driver]
        await asyncio.wait_for(asyncio.gather(*(f() for f in order)), timeout=5)
        assert await run.output() == {"i": 5}
        return got

    got = arun(main(), timeout=10)
    assert got == {"late": ["x", "x"], "values": [{"i": i} for i in range(6)]}
    assert made[0].most_unread <= 2
