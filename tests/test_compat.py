"""LangGraph compatibility: module paths, subagent identity and cause."""

from __future__ import annotations

import asyncio
import importlib
import types

import pytest

import langstream
from langstream import StreamMux, ValuesTransformer
from langstream.transformers import LifecycleTransformer, SubgraphTransformer

from helpers import collect as drain


@pytest.mark.parametrize("module,names", [
    ("langstream._mux", ["StreamMux"]),
    ("langstream.stream_channel", ["StreamChannel"]),
    ("langstream._convert", ["convert_to_protocol_event"]),
    ("langstream._types", ["ProtocolEvent", "StreamTransformer", "transformer_requires_async"]),
    ("langstream.transformers", ["SubgraphTransformer", "LifecycleTransformer",
                                 "ValuesTransformer", "SubgraphStatus", "LifecyclePayload"]),
    ("langstream.run_stream", ["GraphRunStream", "AsyncGraphRunStream",
                               "SubgraphRunStream", "AsyncSubgraphRunStream"]),
])
def test_langgraph_module_paths_exist(module, names):
    mod = importlib.import_module(module)
    for name in names:
        home = langstream if hasattr(langstream, name) else langstream.transformers
        assert getattr(mod, name) is getattr(home, name)


def test_transformer_requires_async():
    from langstream._types import transformer_requires_async

    class Sync(langstream.StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            return True

    class Async(Sync):
        async def aprocess(self, event):
            return True

    class Both(Async):
        supports_sync = True

    assert not transformer_requires_async(Sync())
    assert transformer_requires_async(Async())
    assert not transformer_requires_async(Both())


def _ev(method, ns, data):
    return langstream.convert_to_protocol_event({"type": method, "ns": ns, "data": data})


def test_subagent_name_and_tool_call_cause(backend):
    mux = StreamMux(factories=[ValuesTransformer, LifecycleTransformer, SubgraphTransformer])
    lifecycle = iter(mux.extensions["lifecycle"])
    handles = iter(mux.extensions["subgraphs"])
    mux.push(_ev("tasks", (), {"id": "p1", "name": "tools",
                               "input": {"tool_call": {"id": "call_9", "name": "research"}},
                               "triggers": []}))
    mux.push(_ev("tasks", ("tools:p1",), {"id": "c1", "name": "model", "input": {},
                                          "triggers": [],
                                          "metadata": {"lc_agent_name": "researcher"}}))
    mux.push(_ev("tasks", (), {"id": "p1", "name": "tools", "error": None,
                               "result": {}, "interrupts": []}))
    mux.close()
    payloads = drain(lifecycle)
    assert payloads[0] == {"event": "started", "namespace": ["tools:p1"],
                           "graph_name": "researcher", "trigger_call_id": "p1",
                           "cause": {"type": "toolCall", "tool_call_id": "call_9"}}
    assert payloads[1]["event"] == "completed" and payloads[1]["graph_name"] == "researcher"
    (handle,) = drain(handles)
    assert handle.graph_name == "researcher" and handle.trigger_call_id == "p1"
    assert handle.status == "completed"


SUBAGENT_PARTS = [
    {"type": "tasks", "ns": (), "data": {"id": "p1", "name": "tools", "triggers": [],
                                         "input": {"tool_call": {"id": "call_9",
                                                                 "name": "research"}}}},
    # a real graph streams the subgraph's input snapshot before its first task
    {"type": "values", "ns": ("tools:p1",), "data": {"question": "?"}, "interrupts": ()},
    {"type": "tasks", "ns": ("tools:p1",), "data": {
        "id": "c1", "name": "model", "input": {}, "triggers": [],
        "metadata": {"lc_agent_name": "researcher"}}},
    {"type": "values", "ns": ("tools:p1",), "data": {"question": "?", "answer": "!"},
     "interrupts": ()},
    {"type": "tasks", "ns": (), "data": {"id": "p1", "name": "tools", "error": None,
                                         "result": {}, "interrupts": []}},
]


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_subagent_whose_input_snapshot_comes_first_is_named_after_the_agent(backend, lane):
    """The snapshot discovers the subgraph; the pump reads the next part
    first, and the task it announces names the agent, as LangGraph does."""
    expected_started = {"event": "started", "namespace": ["tools:p1"],
                        "graph_name": "researcher", "trigger_call_id": "p1",
                        "cause": {"type": "toolCall", "tool_call_id": "call_9"}}
    if lane == "sync":
        run = langstream.stream_events(iter(SUBAGENT_PARTS))
        seen = []
        for name, item in run.interleave("lifecycle", "subgraphs"):
            seen.append((name, item))
            if name == "subgraphs":
                handle, values = item, list(item.values)
        assert seen[0] == ("lifecycle", expected_started)
        methods = [(e["method"], e["params"]["namespace"])
                   for e in langstream.stream_events(iter(SUBAGENT_PARTS))]
    else:
        async def main():
            async def parts():
                for part in SUBAGENT_PARTS:
                    yield part

            run = langstream.astream_events(parts())
            lifecycle = run.lifecycle.__aiter__()
            handles = run.subgraphs.__aiter__()
            handle = await handles.__anext__()
            got = [v async for v in handle.values]
            first = await lifecycle.__anext__()
            raw = [(e["method"], e["params"]["namespace"])
                   async for e in langstream.astream_events(parts())]
            return handle, got, first, raw

        handle, values, first, methods = asyncio.run(main())
        assert first == expected_started
    assert (handle.graph_name, handle.status) == ("researcher", "completed")
    # the handle sees the input snapshot; 'started' precedes it in the raw log
    assert values == [{"question": "?"}, {"question": "?", "answer": "!"}]
    assert methods == [("lifecycle", []), ("values", ["tools:p1"]),
                       ("values", ["tools:p1"]), ("lifecycle", [])]


def test_plain_subgraph_has_no_cause(backend):
    mux = StreamMux(factories=[LifecycleTransformer])
    lifecycle = iter(mux.extensions["lifecycle"])
    mux.push(_ev("tasks", (), {"id": "p1", "name": "sub", "input": [{"id": "x"}], "triggers": []}))
    mux.push(_ev("values", ("sub:p1",), {"n": 1}))
    mux.close()
    started = drain(lifecycle)[0]
    assert started["graph_name"] == "sub" and "cause" not in started


@pytest.mark.parametrize("lane", ["sync", "async"])
@pytest.mark.parametrize("after", ["the graph ends", "the graph raises"])
def test_reading_ahead_of_a_snapshot_loses_nothing(backend, lane, after):
    """The part read ahead of a subgraph's input snapshot is the graph's end
    or its error: the snapshot still reaches the handle, then the run ends
    normally or fails with that error."""
    parts = SUBAGENT_PARTS[:2]
    boom = ValueError("graph failed after the snapshot")
    fails = after == "the graph raises"

    def graph():
        yield from parts
        if fails:
            raise boom

    async def agraph():
        for part in parts:
            yield part
        if fails:
            raise boom

    if lane == "sync":
        run = langstream.stream_events(graph())
        handles = []
        try:
            for handle in run.subgraphs:
                handles.append((handle, []))
                for value in handle.values:
                    handles[-1][1].append(value)
        except ValueError as exc:
            error = exc
        else:
            error = None
    else:
        async def main():
            run = langstream.astream_events(agraph())
            got = []
            try:
                async for handle in run.subgraphs:
                    got.append((handle, []))
                    try:
                        async for value in handle.values:
                            got[-1][1].append(value)
                    except ValueError:
                        pass
            except ValueError as exc:
                return got, exc
            return got, None

        handles, error = asyncio.run(main())
    ((handle, values),) = handles
    assert values[:1] == [{"question": "?"}]
    if fails:
        assert error is boom
        assert handle.status == "failed"
    else:
        assert error is None and values == [{"question": "?"}]
        assert handle.status == "completed"


_ABSENT = object()  # (a task without a metadata key)


def _subagent_parts(metadata, snapshot_first):
    task = {"id": "c1", "name": "model", "input": {}, "triggers": []}
    if metadata is not _ABSENT:
        task["metadata"] = metadata
    parts = [{"type": "tasks", "ns": (), "data": {"id": "p1", "name": "tools",
                                                  "triggers": [], "input": {}}}]
    if snapshot_first:
        parts.append({"type": "values", "ns": ("tools:p1",), "data": {"q": "?"}})
    parts.append({"type": "tasks", "ns": ("tools:p1",), "data": task})
    parts.append({"type": "tasks", "ns": (), "data": {"id": "p1", "name": "tools",
                                                      "error": None, "result": {},
                                                      "interrupts": []}})
    return parts


@pytest.mark.parametrize("snapshot_first", [False, True], ids=["task-first", "snapshot-first"])
@pytest.mark.parametrize("lane", ["sync", "async"])
@pytest.mark.parametrize("metadata,graph_name", [
    (_ABSENT, "tools"),
    (None, "tools"),
    ({"lc_agent_name": 7}, "tools"),
    ({"lc_agent_name": "researcher"}, "researcher"),
    (types.MappingProxyType({"lc_agent_name": "researcher"}), "researcher"),
], ids=["absent", "none", "not-a-str", "dict", "mapping"])
def test_subagent_name_read_from_any_mapping_metadata(backend, lane, snapshot_first,
                                                      metadata, graph_name):
    """The agent name comes from a task's ``metadata`` when it is a mapping
    (not only a dict) holding a str ``lc_agent_name``; ``None``, a missing
    metadata or a name that is not a str leave the segment's own name."""
    parts = _subagent_parts(metadata, snapshot_first)
    if lane == "sync":
        started = next(p for p in langstream.stream_events(iter(parts)).lifecycle
                       if p["event"] == "started")
    else:
        async def main():
            async def source():
                for part in parts:
                    yield part

            async for payload in langstream.astream_events(source()).lifecycle:
                if payload["event"] == "started":
                    return payload

        started = asyncio.run(main())
    assert started["namespace"] == ["tools:p1"]
    assert started["graph_name"] == graph_name
