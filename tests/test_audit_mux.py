"""``StreamMux.fail`` / ``afail`` refuse a non-exception with a ``TypeError``
naming the argument, and leave the mux as it was (before: an
``AttributeError`` from deep inside, after the mux had already marked itself
finished, so its projections were never ended)."""

from __future__ import annotations

import pytest

from helpers import arun
from langstream import StreamChannel, StreamMux, StreamTransformer


class _Sample(StreamTransformer):
    def __init__(self, scope=()):
        super().__init__(scope)
        self.channel = StreamChannel("sample")

    def init(self):
        return {"sample": self.channel}

    def process(self, event):
        return True


@pytest.mark.parametrize("lane", ["sync", "async"])
@pytest.mark.parametrize("bad", ["boom", None, ValueError])
def test_fail_with_a_non_exception_is_a_type_error(backend, lane, bad):
    mux = StreamMux([_Sample()], is_async=lane == "async")
    channel = mux.extensions["sample"]
    if lane == "sync":
        reader = iter(channel)
        with pytest.raises(TypeError, match=r"StreamMux\.fail\(\) err must be an exception"):
            mux.fail(bad)
        channel.push(1)  # the mux still works: nothing was half-ended
        mux.fail(KeyError("real"))
        assert next(reader) == 1
        with pytest.raises(KeyError):
            next(reader)
        return

    async def main():
        reader = channel.__aiter__()
        with pytest.raises(TypeError, match=r"StreamMux\.afail\(\) err must be an exception"):
            await mux.afail(bad)
        channel.push(1)
        await mux.afail(KeyError("real"))
        assert await reader.__anext__() == 1
        with pytest.raises(KeyError):
            await reader.__anext__()

    arun(main())
