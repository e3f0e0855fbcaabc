"""``StreamMux.fail`` / ``afail`` refuse a non-exception with a ``TypeError``
naming the argument, and leave the mux as it was (before: an
``AttributeError`` from deep inside, after the mux had already marked itself
finished, so its projections were never ended)."""

from __future__ import annotations

import pytest

from helpers import arun
import langstream
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


class _ClosesEarly(StreamTransformer):
    """Closes its named channel at the first values event, then pushes again."""

    def __init__(self, scope=()):
        super().__init__(scope)
        self.channel = StreamChannel("early")

    def init(self):
        return {"early": self.channel}

    def process(self, event):
        if event["method"] == "values":
            data = event["params"]["data"]
            self.channel.push(("before", data))
            self.channel.close()
            self.channel.push(("after", data))  # no subscriber: nothing kept...
        return True


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_closed_unsubscribed_named_channel_still_forwards(backend, lane):
    # ...but the main log still gets it (LangGraph forwards it too): before,
    # the push after close vanished without a trace
    from langstream import convert_to_protocol_event

    mux = StreamMux([_ClosesEarly()], is_async=lane == "async")
    main = mux._events._log.cursor()
    mux.push(convert_to_protocol_event({"type": "values", "ns": (), "data": 1}))
    mux.close()
    assert [(e["method"], e["params"]["data"]) for e in main] == [
        ("custom:early", ("before", 1)), ("custom:early", ("after", 1)), ("values", 1)]


def test_closed_subscribed_channel_still_refuses_a_push(backend):
    mux = StreamMux([_ClosesEarly()])
    reader = iter(mux.extensions["early"])
    from langstream import convert_to_protocol_event

    with pytest.raises(RuntimeError, match="closed StreamChannel"):
        mux.push(convert_to_protocol_event({"type": "values", "ns": (), "data": 1}))
    assert list(reader) == [("before", 1)]


class _Claims(StreamTransformer):
    """Claims the projection keys it is given (each a channel of its own)."""

    def __init__(self, *keys):
        super().__init__(())
        self.keys = keys

    def init(self):
        return {key: StreamChannel() for key in self.keys}

    def process(self, event):
        return True


class _OtherClaims(_Claims):
    pass


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_a_projection_key_claimed_twice_names_both_owners(backend, lane):
    with pytest.raises(ValueError, match=r"Transformer _OtherClaims returned projection keys "
                       r"that conflict with already-registered keys: 'b' \(owned by _Claims\)"):
        StreamMux([_Claims("a", "b"), _OtherClaims("c", "b")], is_async=lane == "async")
    # ``values`` is the built-in one's: a second claim names it as its owner
    with pytest.raises(ValueError, match=r"'values' \(owned by ValuesTransformer\)"):
        StreamMux(factories=[langstream.ValuesTransformer, lambda scope: _Claims("values")],
                  is_async=lane == "async")


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_a_refused_registration_changes_nothing(backend, lane):
    # mid-run: the refused transformer's keys, even those free, are not taken
    mux = StreamMux([_Claims("a")], is_async=lane == "async")
    with pytest.raises(ValueError, match=r"'a' \(owned by _Claims\)"):
        mux._register(_OtherClaims("z", "a"))
    assert sorted(mux.extensions) == ["a"]
    assert mux.transformer_by_key("z") is None
    mux._register(_OtherClaims("z"))
    assert sorted(mux.extensions) == ["a", "z"]
    assert type(mux.transformer_by_key("z")) is _OtherClaims
