"""Issue 10: the faster paths give the same events, order and errors as before.

Every test runs on both event-log backends (``backend`` fixture) and, where
a run is involved, on both lanes.
"""

from __future__ import annotations

import asyncio

import pytest

import langstream
from langstream import StreamMux, ValuesTransformer, astream_events, stream_events
from langstream import _bench
from langstream.transformers import LifecycleTransformer, SubgraphTransformer

LANES = ["sync", "async"]


def _ev(method, ns, data):
    return langstream.convert_to_protocol_event({"type": method, "ns": ns, "data": data})


def test_tool_call_bookkeeping_is_let_go_when_the_task_ends(backend):
    """Long runs of tool-calling agents stay bounded: a tool call's id is
    kept only while its task runs, and the subagent still names it."""
    mux = StreamMux(factories=[ValuesTransformer, LifecycleTransformer, SubgraphTransformer])
    lifecycle = iter(mux.extensions["lifecycle"])
    for k in range(50):
        mux.push(_ev("tasks", (), {"id": f"p{k}", "name": "tools",
                                   "input": {"tool_call": {"id": f"call_{k}", "name": "x"}},
                                   "triggers": []}))
        mux.push(_ev("tasks", (f"tools:p{k}",), {
            "id": f"c{k}", "name": "model", "input": {}, "triggers": [],
            "metadata": {"lc_agent_name": "researcher"}}))
        mux.push(_ev("tasks", (f"tools:p{k}",), {"id": f"c{k}", "name": "model", "error": None,
                                                 "result": {}, "interrupts": []}))
        mux.push(_ev("tasks", (), {"id": f"p{k}", "name": "tools", "error": None,
                                   "result": {}, "interrupts": []}))
    mux.close()
    starts = [p for p in lifecycle if p["event"] == "started"]
    assert [p["cause"]["tool_call_id"] for p in starts] == [f"call_{k}" for k in range(50)]
    for t in mux._transformers:
        if hasattr(t, "_tool_calls"):
            assert t._tool_calls == {}


def test_tasks_that_are_not_mappings_are_ignored_like_before(backend):
    mux = StreamMux(factories=[LifecycleTransformer, SubgraphTransformer])
    lifecycle = iter(mux.extensions["lifecycle"])
    mux.push(_ev("tasks", (), ["not", "a", "mapping"]))
    mux.push(_ev("tasks", (), {"id": 3, "name": "n", "input": {"tool_call": {"id": "c"}}}))
    mux.push(_ev("values", ("sub:t1",), {"n": 1}))
    mux.push(_ev("tasks", (), {"id": "t1", "name": "sub", "error": None, "result": {},
                               "interrupts": []}))
    mux.close()
    assert [p["event"] for p in lifecycle] == ["started", "completed"]


def _collect_sync(parts):
    out = []
    with stream_events(iter(parts)) as run:
        for name, item in run.interleave("values", "lifecycle", "subgraphs"):
            if name == "subgraphs":
                out.append(("handle", item.path, [v for v in item.values], item.status))
            else:
                out.append((name, item))
        out.append(("output", run.output))
    return out


async def _collect_async(parts):
    async def agen():
        for p in parts:
            yield p

    out = {"values": [], "lifecycle": [], "handles": []}
    async with astream_events(agen()) as run:
        async def drain(name):
            async for x in getattr(run, name):
                out[name].append(x)

        async def handles():
            async for h in run.subgraphs:
                vals = [v async for v in h.values]
                out["handles"].append((h.path, vals, h.status))

        await asyncio.gather(drain("values"), drain("lifecycle"), handles())
        out["output"] = await run.output()
    return out


def test_agent_stream_projections_on_both_lanes(backend):
    """Scenario M's stream: every projection as the contract says, both lanes."""
    parts = _bench.agent_parts(120)
    sync = _collect_sync(parts)
    handles = [x for x in sync if x[0] == "handle"]
    asy = asyncio.run(_collect_async(parts))
    root_values = [p["data"] for p in parts if p["type"] == "values" and p["ns"] == ()]
    assert [x[1] for x in sync if x[0] == "values"] == root_values == asy["values"]
    assert [x[1] for x in sync if x[0] == "lifecycle"] == asy["lifecycle"]
    subs = sorted({p["ns"][:1] for p in parts if p["ns"]})
    assert sorted(h[1] for h in handles) == subs == sorted(h[0] for h in asy["handles"])
    for _tag, path, vals, status in handles:
        assert vals == [p["data"] for p in parts if p["type"] == "values" and p["ns"] == path]
        assert status == "completed"
    assert sorted(asy["handles"]) == sorted((h[1], h[2], h[3]) for h in handles)
    assert sync[-1] == ("output", root_values[-1]) and asy["output"] == root_values[-1]


# ----------------------------------------------- async: readers wait for their own data


async def _agen(parts, state=None):
    for p in parts:
        if state is not None:
            state["pulled"] += 1
        yield p


def test_async_reader_that_stops_pumping_hands_the_pump_on(backend):
    """The task that pumps takes one item, then waits for the other reader:
    the waiting reader must take over the pump (no hang)."""
    parts = _bench.agent_parts(200)

    async def main():
        run = astream_events(_agen(parts))
        done = asyncio.Event()
        got = {"values": [], "lifecycle": []}

        async def first_value_then_wait():
            async for v in run.values:
                got["values"].append(v)
                break
            await done.wait()

        async def lifecycle():
            async for p in run.lifecycle:
                got["lifecycle"].append(p)
            done.set()

        await asyncio.wait_for(asyncio.gather(first_value_then_wait(), lifecycle()), 10)
        return got

    got = asyncio.run(main())
    subs = {p["ns"][:1] for p in parts if p["ns"]}
    assert len(got["values"]) == 1
    assert [p["event"] for p in got["lifecycle"]].count("started") == len(subs)
    assert all(p["event"] in ("started", "completed") for p in got["lifecycle"])


def test_async_waiting_reader_wakes_at_the_step_that_gives_it_data(backend):
    """A lifecycle reader waiting on the values reader's pump gets each
    payload before the pump pulls the next part."""
    parts = _bench.agent_parts(150)
    state = {"pulled": 0}

    async def main():
        run = astream_events(_agen(parts, state))
        seen = []

        async def values():
            async for _v in run.values:
                pass

        async def lifecycle():
            async for p in run.lifecycle:
                seen.append((tuple(p["namespace"]), p["event"], state["pulled"]))

        await asyncio.wait_for(asyncio.gather(values(), lifecycle()), 10)
        return seen

    seen = asyncio.run(main())
    assert seen
    # the part that started a subgraph is the first part in its namespace;
    # the reader had the payload before any later part was pulled, but the
    # one the pump reads ahead of a subgraph's input snapshot (its first
    # task may name an agent)
    starts = 0
    for ns, event, pulled in seen:
        if event == "started":
            starts += 1
            first = next(i for i, p in enumerate(parts) if p["ns"][:len(ns)] == ns)
            ahead = 1 if parts[first]["type"] == "values" else 0
            assert pulled == first + 1 + ahead, (ns, pulled, first)
    assert starts


def test_async_pumping_reader_cancelled_others_finish(backend):
    parts = _bench.agent_parts(300)

    async def main():
        run = astream_events(_agen(parts))
        got = []

        async def values():
            async for _v in run.values:
                await asyncio.sleep(0)

        async def lifecycle():
            async for p in run.lifecycle:
                got.append(p)

        t1 = asyncio.ensure_future(values())
        t2 = asyncio.ensure_future(lifecycle())
        await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0)
        t1.cancel()
        results = await asyncio.wait_for(asyncio.gather(t1, t2, return_exceptions=True), 10)
        return got, results

    got, results = asyncio.run(main())
    # the run fails or completes, but nobody hangs and lifecycle ended
    assert isinstance(results[0], (asyncio.CancelledError, type(None)))
    assert results[1] is None or "cancelled" in str(results[1])


def test_async_reader_alone_gets_every_item_of_a_sparse_projection(backend):
    """A reader whose projection gets an item only now and then (lifecycle)
    pumps on its own until its data comes: every item, in order."""
    parts = _bench.agent_parts(400, depth=3)

    async def main():
        run = astream_events(_agen(parts))
        return [(p["event"], tuple(p["namespace"])) async for p in run.lifecycle]

    got = asyncio.run(main())
    sync_run = stream_events(iter(parts))
    expected = [(p["event"], tuple(p["namespace"])) for p in sync_run.lifecycle]
    assert got == expected and got


# ------------------------------------- the fast route with a reader on the main log


class _SlowValues(ValuesTransformer):
    """Overrides ``process``: its events always take the protocol-event path."""

    def process(self, event):
        return super().process(event)


def _strip(events):
    out = []
    for e in events:
        e = dict(e)
        e["params"] = {k: v for k, v in e["params"].items() if k != "timestamp"}
        out.append(e)
    return out


def _run_sync(parts, values_cls, halfway=None):
    from langstream.run_stream import GraphRunStream
    from langstream.transformers import LifecycleTransformer, SubgraphTransformer

    mux = StreamMux(factories=[values_cls, LifecycleTransformer, SubgraphTransformer])
    run = GraphRunStream(iter(parts), mux)
    values = iter(run.values)
    first = [next(values) for _ in range(halfway or 0)]
    raw = list(run)
    rest = list(values)
    return first + rest, raw, run.output


async def _run_async(parts, values_cls, halfway=None):
    from langstream.run_stream import AsyncGraphRunStream
    from langstream.transformers import LifecycleTransformer, SubgraphTransformer

    mux = StreamMux(factories=[values_cls, LifecycleTransformer, SubgraphTransformer],
                    is_async=True)
    run = AsyncGraphRunStream(_agen(parts), mux)
    values = run.values.__aiter__()
    first = [await values.__anext__() for _ in range(halfway or 0)]
    raw_it = run.__aiter__()

    async def drain_raw():
        return [e async for e in raw_it]

    async def drain_values():
        return [v async for v in values]

    raw, rest = await asyncio.gather(drain_raw(), drain_values())
    return first + rest, raw, await run.output()


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("halfway", [None, 7])
def test_main_log_reader_sees_the_same_events_on_the_fast_route(backend, lane, halfway):
    """Same events, same order, same seq numbers whether values parts take
    the fast route (built-in ValuesTransformer) or the protocol-event path
    (a subclass overriding process), with a raw-log reader from the start
    or subscribing halfway."""
    parts = _bench.agent_parts(150)
    parts.insert(40, {"type": "values", "ns": (), "data": {"x": 1}, "interrupts": ("i",)})
    if lane == "sync":
        fast = _run_sync(parts, ValuesTransformer, halfway)
        slow = _run_sync(parts, _SlowValues, halfway)
    else:
        fast = asyncio.run(_run_async(parts, ValuesTransformer, halfway))
        slow = asyncio.run(_run_async(parts, _SlowValues, halfway))
    assert fast[0] == slow[0] and fast[2] == slow[2]
    assert _strip(fast[1]) == _strip(slow[1])
    assert [e["seq"] for e in fast[1]] == [e["seq"] for e in slow[1]]
    seqs = [e["seq"] for e in fast[1]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    if halfway is None:
        assert seqs[0] == 1
    ev = next(e for e in fast[1] if e["params"].get("interrupts") == ("i",))
    assert ev["method"] == "values" and ev["params"]["namespace"] == []
    assert all(isinstance(e["params"]["timestamp"], int) for e in fast[1])


def _event_key(event):
    params = event["params"]
    return (event["method"], tuple(params["namespace"]), repr(params["data"]))


@pytest.mark.parametrize("lane", LANES)
def test_seq_numbers_do_not_depend_on_when_the_main_log_is_read(backend, lane):
    """Lifecycle payloads (forwarded to the main log by their channel) and
    parts take their numbers whether or not anyone reads the main log yet: a
    raw-log reader that subscribes after the first subgraph has started and
    ended sees every later event under the number a reader from the start
    sees it under."""
    parts = _bench.agent_parts(150)
    halfway = 12  # (values items read before the raw log is subscribed)
    if lane == "sync":
        _v, from_start, _o = _run_sync(parts, ValuesTransformer)
        _v, late, _o = _run_sync(parts, ValuesTransformer, halfway)
    else:
        _v, from_start, _o = asyncio.run(_run_async(parts, ValuesTransformer))
        _v, late, _o = asyncio.run(_run_async(parts, ValuesTransformer, halfway))
    numbers = {}
    for event in from_start:
        numbers.setdefault(_event_key(event), []).append(event["seq"])
    # the events a late reader missed include lifecycle payloads (numbered
    # while nobody read the main log)
    missed = [e for e in from_start if e["seq"] < late[0]["seq"]]
    assert any(e["method"] == "lifecycle" for e in missed)
    assert late and len(late) == len(from_start) - len(missed)
    for event in late:
        assert event["seq"] in numbers[_event_key(event)], event


def test_fast_route_event_matches_convert_to_protocol_event(backend):
    parts = [{"type": "values", "ns": (), "data": {"n": 1}},
             {"type": "values", "ns": [], "data": {"n": 2}, "interrupts": []},
             {"type": "values", "ns": (), "data": {"n": 3}, "interrupts": [{"v": 1}]}]
    run = stream_events(iter(parts))
    raw = list(run)
    expected = [langstream.convert_to_protocol_event(p) for p in parts]
    for got, want in zip(raw, expected):
        assert got.pop("seq") >= 1
        assert abs(got["params"].pop("timestamp") - want["params"].pop("timestamp")) < 60_000
        assert got == want
        assert list(got) == ["type", "method", "params"]


def test_transformer_registered_mid_run_takes_over_the_route(backend):
    """A transformer registered mid-run (routes recompiled) sees every later
    event, and the main log keeps its numbering."""
    seen = []

    class Spy(langstream.StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            seen.append(event["params"]["data"])
            return True

    parts = _bench.values_parts(20)
    run = stream_events(iter(parts))
    raw = iter(run)
    head = [next(raw) for _ in range(5)]
    run._mux._register(Spy(()))
    tail = list(raw)
    assert [e["seq"] for e in head + tail] == list(range(1, 21))
    assert seen == [p["data"] for p in parts[5:]]
    assert run.output == parts[-1]["data"]


def _keys_rebuilt(part):
    """``part`` with keys equal to its own but other string objects (as
    ``json.loads`` or a wire decoder makes them: not the interned literals)."""
    out = {"".join(list(k)): v for k, v in part.items()}
    assert all(a is not b for a, b in zip(out, part))
    return out


def _reshaped(parts, how):
    if how == "literal":
        return [dict(p) for p in parts]
    if how == "rebuilt keys":
        return [_keys_rebuilt(p) for p in parts]
    if how == "rebuilt method":  # (a new string object per part, equal to the literal)
        return [dict(p, type="".join(list(p["type"]))) for p in parts]
    if how == "reversed order":
        return [dict(reversed(list(p.items()))) for p in parts]
    assert how == "extra key"
    return [dict(p, extra=k) for k, p in enumerate(parts)]


def _all_projections(parts, lane):
    if lane == "sync":
        run = stream_events(iter(parts))
        raw = list(run)
        return raw, list(run.values), run.output

    async def main():
        async def agen():
            for p in parts:
                yield p

        run = astream_events(agen())
        raw = [e async for e in run]
        return raw, [v async for v in run.values], await run.output()

    return asyncio.run(main())


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("how", ["rebuilt keys", "rebuilt method", "reversed order",
                                 "extra key"])
def test_part_fields_read_the_same_whatever_the_key_objects(backend, lane, how):
    """The compiled dispatcher reads a part's fields in one pass when its
    keys are the interned literals, and finds a method's route by the
    identity of its string; keys or methods that are equal but other
    objects, keys in another order, or next to an extra key give the same
    events (the extra key is ignored, as the general path ignores it)."""
    parts = _bench.agent_parts(120)
    parts.insert(30, {"type": "values", "ns": (), "data": {"x": 1}, "interrupts": ("i",)})
    want = _all_projections(_reshaped(parts, "literal"), lane)
    got = _all_projections(_reshaped(parts, how), lane)
    assert _strip(got[0]) == _strip(want[0])
    assert [e["seq"] for e in got[0]] == [e["seq"] for e in want[0]]
    assert got[1:] == want[1:]
    assert any(e["params"].get("interrupts") == ("i",) for e in got[0])


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("missing", ["type", "ns", "data"])
def test_part_missing_a_field_fails_the_same_with_rebuilt_keys(backend, lane, missing):
    good = {"type": "values", "ns": (), "data": {"n": 1}}
    bad = {k: v for k, v in good.items() if k != missing}
    errors = []
    for parts in ([good, bad], [_keys_rebuilt(good), _keys_rebuilt(bad)]):
        with pytest.raises(ValueError) as exc:
            _all_projections(parts, lane)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]
    assert repr(missing) in errors[0]


@pytest.mark.parametrize("bad", [
    {"type": "values", "ns": (), "data": {}, "interrupts": "nope"},
    {"type": "values", "ns": ("a", 3), "data": {}},
    {"type": 5, "ns": (), "data": {}},
])
def test_bad_part_fails_the_same_whoever_reads(backend, bad):
    errors = []
    for read_raw in (False, True):
        run = stream_events(iter([{"type": "values", "ns": (), "data": {}}, bad]))
        with pytest.raises((TypeError, ValueError)) as exc:
            if read_raw:
                list(run)
            else:
                list(run.values)
        errors.append((type(exc.value), str(exc.value)))
    assert errors[0] == errors[1]


# ------------------------------------------- tasks parts at the scope: the part is enough


class _SlowLifecycle(LifecycleTransformer):
    def process(self, event):
        return super().process(event)


class _SlowSubgraphs(SubgraphTransformer):
    def process(self, event):
        return super().process(event)

    async def aprocess(self, event):
        return await super().aprocess(event)


def _tasks_parts():
    parts = _bench.agent_parts(90)
    # a subgraph that fails and one that is interrupted, then more root steps
    for tid, result in (("f1", {"error": "boom", "result": None, "interrupts": []}),
                        ("i1", {"error": None, "result": None,
                                "interrupts": [{"value": "ask", "id": "x"}]})):
        parts.append({"type": "tasks", "ns": (), "data": {"id": tid, "name": "sub",
                                                           "input": {}, "triggers": ()}})
        parts.append({"type": "values", "ns": (f"sub:{tid}",), "data": {"in": tid},
                      "interrupts": ()})
        parts.append({"type": "tasks", "ns": (), "data": {"id": tid, "name": "sub", **result}})
    parts += _bench.agent_parts(40)[1:]
    return parts


def _observe_sync(parts, factories):
    from langstream.run_stream import GraphRunStream

    run = GraphRunStream(iter(parts), StreamMux(factories=factories))
    raw = iter(run)
    out = {"lifecycle": [], "handles": [], "values": []}
    for name, item in run.interleave("values", "lifecycle", "subgraphs"):
        if name == "subgraphs":
            try:
                vals = list(item.values)
            except Exception as exc:  # noqa: BLE001 - a failed subgraph
                vals = [repr(exc)]
            out["handles"].append((item.path, vals, item.status, item.error))
        else:
            out[name].append(item)
    out["raw"] = _strip(list(raw))
    out["seq"] = [e["seq"] for e in out["raw"]]
    return out


async def _observe_async(parts, factories):
    from langstream.run_stream import AsyncGraphRunStream

    run = AsyncGraphRunStream(_agen(parts), StreamMux(factories=factories, is_async=True))
    raw_it = run.__aiter__()
    out = {"lifecycle": [], "handles": [], "values": []}

    async def drain(name):
        async for x in getattr(run, name):
            out[name].append(x)

    async def handles():
        async for h in run.subgraphs:
            try:
                vals = [v async for v in h.values]
            except Exception as exc:  # noqa: BLE001 - a failed subgraph
                vals = [repr(exc)]
            out["handles"].append((h.path, vals, h.status, h.error))

    async def raw():
        return [e async for e in raw_it]

    got = await asyncio.gather(drain("values"), drain("lifecycle"), handles(), raw())
    out["raw"] = _strip(got[3])
    out["seq"] = [e["seq"] for e in got[3]]
    return out


@pytest.mark.parametrize("lane", LANES)
def test_tasks_at_scope_fast_route_matches_the_event_path(backend, lane):
    parts = _tasks_parts()
    fast_f = [ValuesTransformer, LifecycleTransformer, SubgraphTransformer]
    slow_f = [ValuesTransformer, _SlowLifecycle, _SlowSubgraphs]
    if lane == "sync":
        fast, slow = _observe_sync(parts, fast_f), _observe_sync(parts, slow_f)
    else:
        fast = asyncio.run(_observe_async(parts, fast_f))
        slow = asyncio.run(_observe_async(parts, slow_f))
    assert fast == slow
    statuses = {h[0]: h[2] for h in fast["handles"]}
    assert statuses[("sub:f1",)] == "failed" and statuses[("sub:i1",)] == "interrupted"
    assert [p["event"] for p in fast["lifecycle"]].count("failed") == 1
    # tasks events stay out of the main log; lifecycle events are in it
    assert not any(e["method"] == "tasks" for e in fast["raw"])
    assert sum(e["method"] == "lifecycle" for e in fast["raw"]) == len(fast["lifecycle"])
    assert fast["seq"] == list(range(1, len(fast["seq"]) + 1))


def test_fast_route_is_used_for_tasks_at_the_scope_on_the_sync_lane(backend):
    """The built-in trackers take root tasks parts directly (no event built);
    a subclass overriding process does not."""
    run = stream_events(iter(()))
    assert run._mux._fast_route("tasks", True) is not None
    assert run._mux._fast_route("tasks", False) is None
    mux = StreamMux(factories=[ValuesTransformer, _SlowLifecycle, SubgraphTransformer])
    assert mux._fast_route("tasks", True) is None


@pytest.mark.parametrize("yield_every", [0, 2, 3])
def test_async_handles_see_every_event_whatever_the_producer_pace(backend, yield_every):
    """A consumer that subscribes to each handle (grandchildren included) as it
    arrives sees the same events whether the producer gives the loop a turn
    at every part or never: the pump never pulls ahead of a consumer that has
    a new handle to subscribe to."""
    from helpers import areplay, arun, two_children_one_grandchild
    from redis_helpers import asnapshot

    parts, _ = two_children_one_grandchild()
    extra = [langstream.UpdatesTransformer, langstream.CustomTransformer]

    def snap(every):
        out = arun(asnapshot(astream_events(areplay(parts, yield_every=every),
                                            transformers=extra)))
        raw = out.pop("raw")
        return out, [(e["seq"], e["method"], e["params"]["namespace"]) for e in raw[0]]

    expected = snap(1)  # the loop gets a turn before every part
    assert expected[0]["subgraphs"][0], "the scenario has handles"
    assert snap(yield_every) == expected


def _nested_parts():
    # root steps, then a subgraph nesting three levels deep, twice: the
    # async pump pulls ahead on the root stretches between the handles
    return _bench.agent_parts(160, depth=3)


_TREE = ("values", "lifecycle", "subgraphs")


def _tree_sync(run, path=()):
    """Every projection through interleave, handles recursively (sync)."""
    got = {"path": list(path), "values": [], "lifecycle": [], "handles": []}
    for name, item in run.interleave(*_TREE):
        if name == "subgraphs":
            got["handles"].append(_tree_sync(item, item.path))
        else:
            got[name].append(item)
    return got


async def _tree_async(run, path=(), its=None):
    """The same on the async lane.  A handle's projections are subscribed
    the moment it arrives (as a consumer that wants all of a subgraph's
    events does) and read by tasks started for them (nested ``gather``)."""
    if its is None:
        its = {name: getattr(run, name).__aiter__() for name in _TREE}
    got = {"path": list(path), "values": [], "lifecycle": [], "handles": []}

    async def drain(name):
        async for item in its[name]:
            got[name].append(item)

    async def handles():
        tasks = []
        async for handle in its["subgraphs"]:
            sub = {name: getattr(handle, name).__aiter__() for name in _TREE}
            tasks.append(asyncio.ensure_future(_tree_async(handle, handle.path, sub)))
        for task in tasks:
            got["handles"].append(await task)

    await asyncio.gather(drain("values"), drain("lifecycle"), handles())
    return got


@pytest.mark.parametrize("yield_every", [0, 1, 4])
def test_async_nested_handle_consumers_see_what_the_sync_lane_sees(backend, yield_every):
    """Handles at every depth, subscribed as they arrive and read by tasks
    their consumer starts (nested ``gather``): after a root stretch where the
    async pump pulls ahead, each new handle still gets every event of its
    subgraph (its input snapshot first) and the handles below it, exactly as
    on the sync lane, whatever the producer's pace."""
    from helpers import areplay, arun, replay

    parts = _nested_parts()
    expected = _tree_sync(stream_events(replay(parts)))
    assert expected["handles"] and expected["handles"][0]["handles"], "nested handles"
    got = arun(_tree_async(astream_events(areplay(parts, yield_every=yield_every))))
    assert got == expected


def test_async_dispatch_calls_process_and_aprocess_in_order(backend):
    """On the async lane a transformer that only overrides ``process`` (the
    default ``aprocess`` calls it) runs in pipeline order with one that
    overrides ``aprocess``; its ``False`` keeps the event out of the main
    log, and its stray ``StopIteration`` fails the run naming its aprocess."""
    from helpers import areplay, arun

    calls = []

    class Sync(langstream.StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            calls.append(("sync", event["method"]))
            if event["method"] == "custom" and event["params"]["data"] == "stop":
                raise StopIteration
            return event["method"] != "updates"

    class Async(langstream.StreamTransformer):
        def init(self):
            return {}

        async def aprocess(self, event):
            await asyncio.sleep(0)
            calls.append(("async", event["method"]))
            return True

    class Patched(Sync):
        pass

    parts = [{"type": "custom", "ns": (), "data": 1},
             {"type": "updates", "ns": (), "data": {"a": 1}},
             {"type": "custom", "ns": (), "data": 2}]

    async def main(parts, factories):
        run = astream_events(areplay(parts), transformers=factories)
        return [e["method"] for e in [e async for e in run]]

    assert arun(main(parts, [Sync, Async])) == ["custom", "custom"]
    assert calls == [("sync", "custom"), ("async", "custom"), ("sync", "updates"),
                     ("async", "updates"), ("sync", "custom"), ("async", "custom")]
    with pytest.raises(RuntimeError, match=r"Sync\.aprocess\(\) raised StopIteration"):
        arun(main([{"type": "custom", "ns": (), "data": "stop"}], [Sync]))

    # an aprocess set on the instance is the one awaited
    def patched(scope):
        t = Patched(scope)

        async def aprocess(event):
            calls.append(("instance", event["method"]))
            return True

        t.aprocess = aprocess
        return t

    calls.clear()
    assert arun(main(parts, [patched])) == ["custom", "updates", "custom"]
    assert calls == [("instance", "custom"), ("instance", "updates"), ("instance", "custom")]


@pytest.mark.parametrize("lane", LANES)
def test_event_timestamps_are_wall_clock_ms_and_never_go_back(backend, lane):
    """Events built by the dispatcher (the compiled one reuses the int of a
    millisecond it already stamped) carry ``int(time.time() * 1000)`` at
    the moment they were built: within the run's wall-clock span, in order,
    changing as time goes on."""
    import time

    from helpers import areplay, arun, replay

    def parts():
        for k in range(40):
            if k % 10 == 0:
                time.sleep(0.003)  # (a few milliseconds apart, now and then)
            yield {"type": "values", "ns": (), "data": {"k": k}, "interrupts": ()}

    before = int(time.time() * 1000)
    if lane == "sync":
        events = list(stream_events(parts()))
    else:
        async def go():
            async def agen():
                for p in parts():
                    yield p
            return [e async for e in astream_events(agen())]
        events = arun(go())
    after = int(time.time() * 1000)
    stamps = [e["params"]["timestamp"] for e in events]
    assert len(stamps) == 40 and all(type(s) is int for s in stamps)
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps) and len(set(stamps)) >= 4


class _RecordingMux(StreamMux):
    """A mux whose ``_latest`` is a property (no longer the slot the
    compiled dispatcher stores into): every snapshot must still reach it."""

    @property
    def _latest(self):
        return self.__dict__.get("latest_seen")

    @_latest.setter
    def _latest(self, value):
        self.__dict__.setdefault("snapshots", []).append(value)
        self.__dict__["latest_seen"] = value


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("mux_cls", [StreamMux, _RecordingMux])
def test_latest_snapshot_reaches_the_mux_and_the_transformer(backend, lane, mux_cls):
    """``run.output`` and ``ValuesTransformer.latest`` see every root snapshot
    whether the mux keeps ``_latest`` in its slot or a subclass made it a
    property; the slotted classes still take attributes of their own."""
    from langstream.run_stream import AsyncGraphRunStream, GraphRunStream

    parts = _bench.agent_parts(120)
    snapshots = [p["data"] for p in parts if p["type"] == "values" and not p["ns"]]
    factories = [ValuesTransformer, LifecycleTransformer, SubgraphTransformer]
    if lane == "sync":
        mux = mux_cls(factories=factories)
        run = GraphRunStream(iter([dict(p) for p in parts]), mux)
        got = list(run.values)
        output = run.output
    else:
        async def main():
            mux = mux_cls(factories=factories, is_async=True)
            run = AsyncGraphRunStream(_bench.aproducer(parts), mux)
            got = [v async for v in run.values]
            return mux, got, await run.output()

        mux, got, output = asyncio.run(main())
    assert got == snapshots
    assert output == snapshots[-1]
    assert mux.transformer_by_key("values").latest == snapshots[-1]
    if mux_cls is _RecordingMux:
        assert mux.snapshots == [None, *snapshots]  # (None: set by __init__)
    mux.note = "mine"
    mux.transformer_by_key("values").note = "mine too"
    assert mux.note == "mine" and mux.transformer_by_key("values").note == "mine too"
