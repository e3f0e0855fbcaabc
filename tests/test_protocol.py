"""convert_to_protocol_event: shape of protocol events and malformed parts.

Every test takes the ``backend`` fixture so it runs on both event-log backends.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from langstream import convert_to_protocol_event


def test_values_part_shape(backend):
    data = {"a": 1}
    before = int(time.time() * 1000)
    event = convert_to_protocol_event(
        {"type": "values", "ns": ("child:t1", "g:t2"), "data": data, "interrupts": ({"value": 1},)}
    )
    after = int(time.time() * 1000)
    assert event["type"] == "event"
    assert event["method"] == "values"
    params = event["params"]
    assert params["namespace"] == ["child:t1", "g:t2"]
    assert type(params["namespace"]) is list
    assert params["data"] is data
    assert list(params["interrupts"]) == [{"value": 1}]
    assert type(params["timestamp"]) is int
    # wall-clock milliseconds (not seconds, not ns)
    assert before - 5 <= params["timestamp"] <= after + 5
    assert "seq" not in event


def test_root_namespace_is_empty_list(backend):
    event = convert_to_protocol_event({"type": "updates", "ns": (), "data": {"n": {}}})
    assert event["params"]["namespace"] == []
    assert type(event["params"]["namespace"]) is list


def test_list_namespace_accepted(backend):
    event = convert_to_protocol_event({"type": "custom", "ns": ["a:1"], "data": 3})
    assert event["params"]["namespace"] == ["a:1"]
    assert event["method"] == "custom"
    assert event["params"]["data"] == 3


def test_namespace_is_a_fresh_list(backend):
    ns = ["a:1"]
    event = convert_to_protocol_event({"type": "custom", "ns": ns, "data": 3})
    ns.append("b:2")
    assert event["params"]["namespace"] == ["a:1"]


def test_interrupts_only_when_present(backend):
    event = convert_to_protocol_event({"type": "updates", "ns": (), "data": 1})
    assert "interrupts" not in event["params"]
    event = convert_to_protocol_event({"type": "values", "ns": (), "data": 1, "interrupts": ()})
    assert "interrupts" in event["params"]
    assert list(event["params"]["interrupts"]) == []


def test_other_keys_ignored(backend):
    event = convert_to_protocol_event({"type": "custom", "ns": (), "data": 1, "extra": 2})
    assert set(event) == {"type", "method", "params"}
    assert set(event["params"]) == {"namespace", "timestamp", "data"}


def test_none_data_is_kept(backend):
    event = convert_to_protocol_event({"type": "custom", "ns": (), "data": None})
    assert event["params"]["data"] is None


@pytest.mark.parametrize("bad", [None, 42, "values", ["values", (), 1], ("values", (), 1)])
def test_not_a_mapping(backend, bad):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event(bad)
    msg = str(info.value)
    assert "mapping" in msg
    assert repr(bad)[:40] in msg


@pytest.mark.parametrize("missing", ["type", "ns", "data"])
def test_missing_key(backend, missing):
    part = {"type": "values", "ns": ("a:1",), "data": {"x": 1}}
    del part[missing]
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event(part)
    msg = str(info.value)
    assert repr(missing) in msg or missing in msg
    # shows what it got
    for key in part:
        assert key in msg


def test_ns_is_a_str(backend):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event({"type": "values", "ns": "child:1", "data": 1})
    msg = str(info.value)
    assert "ns" in msg
    assert "'child:1'" in msg


@pytest.mark.parametrize("bad_ns", [None, 5, {"a": 1}])
def test_ns_not_a_sequence(backend, bad_ns):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event({"type": "values", "ns": bad_ns, "data": 1})
    msg = str(info.value)
    assert "ns" in msg
    assert repr(bad_ns) in msg


def test_ns_contains_non_str(backend):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event({"type": "values", "ns": ("a:1", 7), "data": 1})
    msg = str(info.value)
    assert "ns" in msg
    assert "7" in msg


@pytest.mark.parametrize("bad_type", [None, 3, b"values", ("values",)])
def test_type_not_str(backend, bad_type):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event({"type": bad_type, "ns": (), "data": 1})
    msg = str(info.value)
    assert "type" in msg
    assert repr(bad_type) in msg


def test_interrupts_not_a_sequence(backend):
    with pytest.raises((TypeError, ValueError)) as info:
        convert_to_protocol_event({"type": "values", "ns": (), "data": 1, "interrupts": "oops"})
    msg = str(info.value)
    assert "interrupts" in msg
    assert "'oops'" in msg


def test_mapping_subclass_accepted(backend):
    from collections import OrderedDict

    event = convert_to_protocol_event(OrderedDict(type="values", ns=(), data=5))
    assert event["method"] == "values"
    assert event["params"]["data"] == 5


def test_interrupts_none_is_malformed_not_absent(backend):
    # (a part that has the field must hold a sequence there: None is not "no
    # interrupts")
    with pytest.raises(TypeError, match=r"'interrupts' must be a tuple or list, got None"):
        convert_to_protocol_event({"type": "values", "ns": (), "data": 1, "interrupts": None})


class _Part(Mapping):
    """A read-only mapping that is not a dict (``in`` and ``[]`` asked apart)."""

    def __init__(self, items, hidden=()):
        self._items = dict(items)
        self._hidden = set(hidden)  # keys ``in`` denies though ``[]`` has them

    def __getitem__(self, key):
        return self._items[key]

    def __contains__(self, key):
        return key in self._items and key not in self._hidden

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_a_mapping_part_is_read_like_a_dict(backend, lane):
    from helpers import arun

    import langstream

    parts = [
        _Part({"type": "values", "ns": (), "data": {"n": 1}, "interrupts": ("stop",)}),
        # (``in`` says it has no interrupts: it has none, whatever ``[]`` holds)
        _Part({"type": "values", "ns": (), "data": {"n": 2}, "interrupts": ("x",)},
              hidden=["interrupts"]),
    ]
    assert convert_to_protocol_event(parts[0])["params"]["interrupts"] == ("stop",)
    assert "interrupts" not in convert_to_protocol_event(parts[1])["params"]
    if lane == "sync":
        run = langstream.stream_events(iter(parts))
        seen = [(e["method"], e["params"]["data"], e["params"].get("interrupts")) for e in run]
        outcome = (run.output, run.interrupted, run.interrupts)
    else:
        async def main():
            async def gen():
                for part in parts:
                    yield part
            run = langstream.astream_events(gen())
            seen = [(e["method"], e["params"]["data"], e["params"].get("interrupts"))
                    async for e in run]
            return seen, (await run.output(), await run.interrupted(), await run.interrupts())
        seen, outcome = arun(main())
    assert seen == [("values", {"n": 1}, ("stop",)), ("values", {"n": 2}, None)]
    assert outcome == ({"n": 2}, True, ["stop"])


def test_every_reader_of_a_mapping_parts_interrupts_agrees(backend):
    # the run, its values transformer and a subgraph's handle (the part is
    # handed to its mux) all read them as validation does
    from langstream import GraphRunStream, StreamMux
    from langstream.run_stream import DEFAULT_FACTORIES

    child = ("sub:t1",)
    parts = [
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "input": {},
                                              "triggers": ["x"]}},
        _Part({"type": "values", "ns": child, "data": {"c": 1}, "interrupts": ("c",)}),
        _Part({"type": "values", "ns": child, "data": {"c": 2}, "interrupts": ("h",)},
              hidden=["interrupts"]),
        _Part({"type": "values", "ns": (), "data": {"n": 1}, "interrupts": ("h",)},
              hidden=["interrupts"]),
    ]
    mux = StreamMux(factories=list(DEFAULT_FACTORIES))
    run = GraphRunStream(iter(parts), mux)
    handles = []
    for handle in run.subgraphs:
        handles.append((handle, list(handle.values)))
    [(handle, values)] = handles
    assert values == [{"c": 1}, {"c": 2}]
    assert handle.interrupts == ["c"]
    assert run.interrupts == [] and mux.transformer_by_key("values").interrupts == []
