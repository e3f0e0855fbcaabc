"""langstream.wire: protocol events to versioned JSON and back, lossless."""

from __future__ import annotations

import json
import math

import pytest

import langstream
from langstream import wire

from helpers import load_trace, replay, trace_iter

TRACES = ["nested_two_levels", "interrupt", "failing_subgraph", "parallel_fanout", "long_linear_50"]


def event(data, *, seq=1, method="custom", ns=(), **params):
    return {"type": "event", "seq": seq, "method": method,
            "params": {"namespace": list(ns), "timestamp": 1732590000123, "data": data, **params}}


def roundtrip(ev):
    text = wire.dumps(ev)
    assert isinstance(text, str)
    back = wire.loads(text)
    assert wire.loads(text.encode("utf-8")) == back
    return text, back


def test_layout_is_the_documented_v1_object():
    text = wire.dumps(event({"a": [1, "x"]}, seq=7, method="values", ns=["sub:1"], interrupts=[]))
    assert " " not in text  # compact separators
    assert json.loads(text) == {"v": 1, "seq": 7, "method": "values", "ns": ["sub:1"],
                                "ts": 1732590000123, "data": {"a": [1, "x"]}, "interrupts": []}
    assert wire.WIRE_VERSION == 1
    # interrupts only when the event carries them
    assert "interrupts" not in json.loads(wire.dumps(event(1)))


def test_utf8_is_written_as_is():
    text, back = roundtrip(event({"msg": "héllo ✓ 日本"}))
    assert "héllo ✓ 日本" in text
    assert back["params"]["data"] == {"msg": "héllo ✓ 日本"}


@pytest.mark.parametrize("data", [
    None, True, 0, -5, 2 ** 70, 1.5, "", "s", [], {}, [1, [2, [3]]], {"a": {"b": None}},
    (1, 2), ((1,), [()]), {"k": (1, "x")}, {1: "int key", "s": 2}, {"__ls__": "user data"},
    {(1, 2): "tuple key"}, [float("inf"), float("-inf")], {"__ls__": {"__ls__": 1}},
    {"tag-lookalike": {"__ls__x": 1}},
])
def test_data_roundtrips_with_its_types(data):
    _, back = roundtrip(event(data))
    assert back["params"]["data"] == data
    assert repr(back["params"]["data"]) == repr(data)  # tuples stay tuples, keys keep types


def test_nan_roundtrips():
    text = wire.dumps(event({"x": float("nan")}))
    json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN literal
    assert math.isnan(wire.loads(text)["params"]["data"]["x"])


def test_every_field_roundtrips():
    ev = event({"n": 1}, seq=42, method="values", ns=["a:1", "b:2"], interrupts=[{"value": 1}])
    _, back = roundtrip(ev)
    assert back == ev
    ev2 = event({"n": 1}, interrupts=({"value": 1, "id": "x"},))
    assert roundtrip(ev2)[1] == ev2
    assert type(roundtrip(ev2)[1]["params"]["interrupts"]) is tuple


def test_json_subclasses_keep_their_json_meaning():
    class S(str):
        pass

    class D(dict):
        pass

    _, back = roundtrip(event(D(a=S("x"), b=[True, 1.0])))
    assert back["params"]["data"] == {"a": "x", "b": [True, 1.0]}


@pytest.mark.parametrize("bad", [b"bytes", object(), {1, 2}, {"deep": [complex(1, 2)]}])
def test_unencodable_data_is_a_type_error_naming_method_seq_and_type(bad):
    with pytest.raises(TypeError) as info:
        wire.dumps(event(bad, seq=9, method="custom:progress"))
    text = str(info.value)
    assert "seq=9" in text and "'custom:progress'" in text
    inner = bad["deep"][0] if isinstance(bad, dict) else bad
    assert type(inner).__name__ in text


def test_an_event_without_seq_is_refused():
    ev = event(1)
    del ev["seq"]
    with pytest.raises(ValueError, match="seq"):
        wire.dumps(ev)
    with pytest.raises(TypeError, match="seq"):
        wire.dumps({**event(1), "seq": "3"})


@pytest.mark.parametrize("text, fragment", [
    ("", "not valid wire JSON"),
    ("{nope", "not valid wire JSON"),
    (b"\xff\xfe", "not valid wire JSON"),
    ("[1, 2]", "JSON object"),
    ('{"v": 2, "seq": 1, "method": "m", "ns": [], "ts": 1, "data": 1}', "version"),
    ('{"seq": 1, "method": "m", "ns": [], "ts": 1, "data": 1}', "version"),
    ('{"v": 1, "method": "m", "ns": [], "ts": 1, "data": 1}', "'seq'"),
    ('{"v": 1, "seq": "1", "method": "m", "ns": [], "ts": 1, "data": 1}', "'seq'"),
    ('{"v": 1, "seq": 0, "method": "m", "ns": [], "ts": 1, "data": 1}', "'seq'"),
    ('{"v": 1, "seq": 1, "method": 5, "ns": [], "ts": 1, "data": 1}', "'method'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": "a", "ts": 1, "data": 1}', "'ns'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [1], "ts": 1, "data": 1}', "'ns'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [], "data": 1}', "'ts'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [], "ts": 1}', "'data'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [], "ts": 1, "data": 1, "interrupts": 3}',
     "'interrupts'"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [], "ts": 1, "data": {"__ls__": "zzz"}}', "tag"),
    ('{"v": 1, "seq": 1, "method": "m", "ns": [], "ts": 1, "data": {"__ls__": "tuple"}}', "tag"),
])
def test_loads_rejects_bad_input_saying_what_is_wrong(text, fragment):
    with pytest.raises(ValueError) as info:
        wire.loads(text)
    assert fragment in str(info.value)


def test_loads_rejects_a_non_text():
    with pytest.raises(ValueError, match="str or bytes"):
        wire.loads(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", TRACES)
def test_every_main_log_event_of_the_traces_roundtrips(backend, name):
    with langstream.stream_events(trace_iter(name), transformers=[
            langstream.UpdatesTransformer, langstream.CustomTransformer]) as run:
        events = []
        try:
            for ev in run:
                events.append(ev)
        except Exception:  # noqa: BLE001 - failing_subgraph ends with its error
            pass
    assert events
    for ev in events:
        assert roundtrip(ev)[1] == ev


def test_langchain_messages_roundtrip_with_their_class():
    messages = pytest.importorskip("langchain_core.messages")
    chunk = messages.AIMessageChunk(content="hel", id="run-1",
                                    tool_call_chunks=[{"name": "f", "args": "{", "id": "c1",
                                                       "index": 0}])
    human = messages.HumanMessage(content="hi", id="h1")
    data = (chunk, {"langgraph_node": "agent", "tags": ("a",)})
    _, back = roundtrip(event(data, method="messages"))
    got = back["params"]["data"]
    assert type(got) is tuple and type(got[0]) is type(chunk) and got[0] == chunk
    assert got[1] == {"langgraph_node": "agent", "tags": ("a",)}
    _, back = roundtrip(event({"messages": [human]}, method="values"))
    assert back["params"]["data"]["messages"] == [human]
    assert type(back["params"]["data"]["messages"][0]) is messages.HumanMessage


def test_langgraph_interrupts_roundtrip():
    types = pytest.importorskip("langgraph.types")
    intr = types.Interrupt(value={"question": "ok?"}, id="abc")
    ev = event({"n": 1}, method="values", interrupts=(intr,))
    _, back = roundtrip(ev)
    got = back["params"]["interrupts"]
    assert type(got) is tuple and type(got[0]) is types.Interrupt
    assert got[0].value == {"question": "ok?"} and got[0].id == "abc"


def test_encode_value_and_decode_value_are_inverse():
    value = {"t": (1, 2), 3: [float("inf")]}
    encoded = wire.encode_value(value)
    json.dumps(encoded, allow_nan=False)  # plain JSON
    assert wire.decode_value(encoded) == value


def test_replayed_parts_helper_is_not_mutated_by_encoding(backend):
    parts, error = load_trace("interrupt")
    with langstream.stream_events(replay(parts, error)) as run:
        events = list(run)
    before = repr(events)
    for ev in events:
        wire.dumps(ev)
    assert repr(events) == before
