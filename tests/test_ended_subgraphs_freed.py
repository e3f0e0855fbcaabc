"""Issue 10: an ended subgraph's objects are freed when nobody holds them.

A mux drops, when it ends, the references that only dispatch needs (its
channels' back-references and forwarding callbacks, its routes and compiled
dispatcher, the subgraph tracker's mux), and a handle's pump holds its run
weakly: on CPython an ended subgraph whose handle is dropped is freed by
reference counting at once, instead of piling up as cyclic garbage that the
collector must find (work that grew with every subgraph of a run).

Both backends, both lanes.  Freeing by reference counting is CPython's; on
other interpreters these tests do not apply.
"""

from __future__ import annotations

import gc
import platform
import weakref

import pytest

import langstream
from langstream import _bench

pytestmark = pytest.mark.skipif(
    platform.python_implementation() != "CPython",
    reason="objects are freed by reference counting only on CPython",
)

LANES = ["sync", "async"]


def _whole_steps(parts):
    last = max(k for k, p in enumerate(parts) if p["type"] == "values" and not p["ns"])
    return parts[: last + 1]


def _consume(parts, lane, on_handle=None):
    """Read values, lifecycle and every handle's values (as scenario M does);
    ``on_handle`` is called with each handle as it arrives (the consumer
    holds no other handle then)."""
    from helpers import areplay, arun, replay

    if lane == "sync":
        run = langstream.stream_events(replay(parts))
        for name, item in run.interleave("values", "lifecycle", "subgraphs"):
            if name == "subgraphs":
                if on_handle is not None:
                    on_handle(item)
                list(item.values)
        return run.output

    async def main():
        import asyncio

        run = langstream.astream_events(areplay(parts))

        async def drain(it):
            return [x async for x in it]

        async def handles():
            async for h in run.subgraphs:
                if on_handle is not None:
                    on_handle(h)
                await drain(h.values)

        await asyncio.gather(drain(run.values), drain(run.lifecycle), handles())
        return await run.output()

    return arun(main())


def _cyclic_garbage(parts, lane):
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        _consume(parts, lane)
        return gc.collect()
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize("lane", LANES)
def test_cyclic_garbage_does_not_grow_with_the_number_of_subgraphs(backend, lane):
    few = _whole_steps(_bench.agent_parts(200, depth=2))
    many = _whole_steps(_bench.agent_parts(2000, depth=2))
    assert sum(1 for p in many if p["type"] == "tasks" and p["data"]["name"] == "sub1") >= 40
    small = _cyclic_garbage(few, lane)
    large = _cyclic_garbage(many, lane)
    # (the run's own objects form cycles; an ended subgraph's do not)
    assert large <= small + 50, (small, large)


@pytest.mark.parametrize("lane", LANES)
def test_an_ended_subgraph_is_freed_once_its_handle_is_dropped(backend, lane):
    parts = _whole_steps(_bench.agent_parts(300, depth=2))
    refs = []
    was = gc.isenabled()
    gc.disable()
    try:
        _consume(parts, lane, lambda handle: refs.append(weakref.ref(handle._mux)))
        assert len(refs) >= 2
        assert all(ref() is None for ref in refs)
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize("lane", LANES)
def test_an_ended_subgraph_is_freed_while_the_run_goes_on(backend, lane):
    """Nothing the run keeps for dispatch (routes, hand-overs, tracker
    entries) holds an ended subgraph: when the next one starts, every
    earlier one's mux is already gone, with the run still going."""
    parts = _whole_steps(_bench.agent_parts(800, depth=2))
    refs = []
    alive_at_start = []

    def on_handle(handle):
        alive_at_start.append(sum(ref() is not None for ref in refs))
        refs.append(weakref.ref(handle._mux))

    was = gc.isenabled()
    gc.disable()
    try:
        _consume(parts, lane, on_handle)
    finally:
        if was:
            gc.enable()
    assert len(alive_at_start) >= 5
    assert alive_at_start == [0] * len(alive_at_start)


@pytest.mark.parametrize("lane", LANES)
def test_a_kept_handle_still_answers_after_its_subgraph_ended(backend, lane):
    """Letting go of dispatch state does not take anything a consumer reads:
    a handle kept past its end still gives its status, output and the
    values it retained, and reading it again ends cleanly."""
    from helpers import areplay, arun, replay

    parts = _whole_steps(_bench.agent_parts(120))
    if lane == "sync":
        run = langstream.stream_events(replay(parts))
        handles = []
        for h in run.subgraphs:
            handles.append((h, iter(h.values)))
        run.output
        got = [(h.status, h.output, list(values), list(values)) for h, values in handles]
    else:
        async def main():
            run = langstream.astream_events(areplay(parts))
            handles = []
            async for h in run.subgraphs:
                handles.append((h, h.values.__aiter__()))
            await run.output()
            out = []
            for h, values in handles:
                first = [v async for v in values]
                again = [v async for v in values]
                out.append((h.status, await h.output(), first, again))
            return out

        got = arun(main())
    assert got and all(status == "completed" for status, *_ in got)
    for status, output, first, again in got:
        assert first and output == first[-1] and again == []


@pytest.mark.parametrize("lane", LANES)
def test_a_finished_run_is_freed_without_the_collector(backend, lane):
    """A run read to its end and dropped leaves no cyclic garbage: its pump,
    mux, transformers and projections are freed by reference counting (a
    server running many runs gives the collector nothing to chase)."""
    parts = _whole_steps(_bench.agent_parts(120))
    _consume(parts, lane)  # (imports and caches made once, outside the count)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(5):
            _consume(parts, lane)
        assert gc.collect() < 25
    finally:
        if was:
            gc.enable()
