"""The protocol events a run puts in its main log are plain, independent dicts.

On CPython 3.11-3.13 the compiled pump makes an event's two dicts by copying
a template and filling its slots in place (``_pump_c._event_shapes``); these
tests hold it to what ``protocol._build_event`` gives: the same keys in the
same order, a fresh dict and namespace list per event, dicts the collector
tracks (a cycle through an event is freed), on both backends and both lanes.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import sys
import weakref

import pytest

from langstream import astream_events, stream_events
from langstream.run_stream import GraphRunStream

LANES = ["sync", "async"]


def _parts():
    yield {"type": "values", "ns": (), "data": {"step": 0}}
    yield {"type": "updates", "ns": ("sub:1",), "data": {"n": {"x": 1}}}
    yield {"type": "values", "ns": (), "data": {"step": 1}, "interrupts": ()}
    yield {"type": "custom", "ns": ["sub:1", "inner:2"], "data": "hi",
           "interrupts": [{"id": "i1", "value": "ask"}]}
    yield {"type": "tasks", "ns": ("sub:1",), "data": {"id": "1", "name": "sub",
                                                       "error": None, "result": {},
                                                       "interrupts": []}}
    for k in range(200):  # (past any slot reuse in the logs)
        yield {"type": "values", "ns": (), "data": {"step": 2 + k}}


def _raw(lane, parts):
    if lane == "sync":
        return list(stream_events(parts))

    async def main():
        return [event async for event in astream_events(parts)]

    return asyncio.run(main())


@pytest.mark.parametrize("lane", LANES)
def test_events_have_the_protocol_keys_in_order(backend, lane):
    events = _raw(lane, _parts())
    by_data = {}
    for event in events:
        assert type(event) is dict and type(event["params"]) is dict
        assert list(event) == ["type", "method", "params", "seq"]
        assert event["type"] == "event"
        params = event["params"]
        expected = ["namespace", "timestamp", "data"]
        if "interrupts" in params:
            expected.append("interrupts")
        assert list(params) == expected
        assert type(params["namespace"]) is list
        assert type(params["timestamp"]) is int
        by_data[repr(params["data"])] = event
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # a part's own interrupts (even empty) are carried; none when it had none
    assert "interrupts" not in by_data[repr({"step": 0})]["params"]
    assert by_data[repr({"step": 1})]["params"]["interrupts"] == ()
    custom = by_data[repr("hi")]
    assert custom["method"] == "custom"
    assert custom["params"]["namespace"] == ["sub:1", "inner:2"]
    assert custom["params"]["interrupts"] == [{"id": "i1", "value": "ask"}]
    assert by_data[repr({"n": {"x": 1}})]["params"]["namespace"] == ["sub:1"]


@pytest.mark.parametrize("lane", LANES)
def test_each_event_is_its_own_dict(backend, lane):
    events = _raw(lane, _parts())
    assert len({id(e) for e in events}) == len(events)
    assert len({id(e["params"]) for e in events}) == len(events)
    namespaces = [e["params"]["namespace"] for e in events]
    assert len({id(ns) for ns in namespaces}) == len(namespaces)
    # changing one event changes no other, nor what a later run makes
    first = events[0]
    (second,) = [e for e in events if e["params"]["data"] == {"step": 201}]
    first["params"]["data"] = "changed"
    first["params"]["namespace"].append("x")
    first["extra"] = 1
    assert second["params"]["data"] == {"step": 201}
    assert second["params"]["namespace"] == [] and "extra" not in second
    again = _raw(lane, _parts())
    assert list(again[0]) == ["type", "method", "params", "seq"]
    assert again[0]["params"] == {"namespace": [], "timestamp": again[0]["params"]["timestamp"],
                                  "data": {"step": 0}}


class _Node:
    pass


@pytest.mark.parametrize("lane", LANES)
def test_a_cycle_through_an_event_is_collected(backend, lane):
    node = _Node()
    gone = weakref.ref(node)

    def parts():
        yield {"type": "custom", "ns": (), "data": node}

    events = _raw(lane, parts())
    (event,) = [e for e in events if e["params"]["data"] is node]
    if hasattr(gc, "is_tracked"):  # (CPython: PyPy's collector sees every object)
        assert gc.is_tracked(event) and gc.is_tracked(event["params"])
    node.event = event  # node -> event -> params -> node
    del node, event, events
    gc.collect()
    assert gone() is None


def test_the_compiled_pump_copies_event_templates_where_it_can(backend):
    """A silent fall-back to building events key by key would keep every
    test above green and lose the raw log's speed: pin where it applies."""
    run = stream_events(iter(()))
    if backend == "c" and platform.python_implementation() == "CPython":
        from langstream import _pump_c

        assert isinstance(run._pump_next, _pump_c.SyncPump)
        expected = 4 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 0
        assert _pump_c._event_shapes() == expected
    else:  # the pure pump: events come from ``protocol._build_event``
        assert run._pump_next.__func__ is GraphRunStream._pump_next


class _Attrs:
    pass


def _part_forms():
    """The same three parts as dicts whose tables differ: literals, with a
    deleted entry, copied from an instance's ``__dict__`` (a split table on
    CPython), and with an extra key that is not a str."""
    plain = [{"type": "values", "ns": (), "data": {"k": k}} for k in range(3)]
    deleted = []
    for part in plain:
        part = dict(part, extra=1)
        del part["extra"]
        deleted.append(part)
    split = []
    for part in plain:
        holder = _Attrs()
        holder.type, holder.ns, holder.data = part["type"], part["ns"], part["data"]
        split.append(holder.__dict__)
    odd_key = [dict(part) for part in plain]
    odd_key[1][0] = "not a str key"
    return {"plain": plain, "deleted": deleted, "split": split, "odd_key": odd_key}


def _without_stamps(events):
    return [dict(e, params=dict(e["params"], timestamp=None)) for e in events]


@pytest.mark.parametrize("lane", LANES)
def test_parts_read_the_same_whatever_their_table(backend, lane):
    forms = _part_forms()
    expected = _without_stamps(_raw(lane, iter(forms["plain"])))
    assert [e["params"]["data"] for e in expected] == [{"k": 0}, {"k": 1}, {"k": 2}]
    # (an extra key, of any type, is left out of the event on every path)
    for name in ("deleted", "split", "odd_key"):
        assert _without_stamps(_raw(lane, iter(forms[name]))) == expected, name
