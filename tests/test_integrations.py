"""The LangGraph integration: wiring checked with a stand-in graph, and with a real
LangGraph graph when the optional ``langgraph`` extra is installed."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, List, TypedDict

import pytest
from _langgraph_support import require_langgraph

import langstream
from langstream._messages import langchain_core_available
from langstream.integrations.langgraph import astream_graph, required_stream_modes, stream_graph


class FakeGraph:
    """Records how it was called and yields canned v2 parts."""

    def __init__(self, parts):
        self.parts = parts
        self.calls = []

    def stream(self, input, config=None, **kwargs):
        self.calls.append((input, config, kwargs))
        return iter(self.parts)

    def astream(self, input, config=None, **kwargs):
        self.calls.append((input, config, kwargs))
        parts = self.parts

        async def agen():
            for part in parts:
                yield part

        return agen()


class State(TypedDict):
    v: str
    items: Annotated[List[str], operator.add]


PARTS = [
    {"type": "values", "ns": (), "data": {"n": 0}, "interrupts": ()},
    {"type": "custom", "ns": (), "data": "hello"},
    {"type": "values", "ns": (), "data": {"n": 1}, "interrupts": ()},
]


def test_stream_graph_asks_for_the_modes_its_transformers_need(backend):
    graph = FakeGraph(PARTS)
    run = stream_graph(graph, {"n": 0}, {"configurable": {}},
                       transformers=[langstream.CustomTransformer], recursion_limit=5)
    assert list(run.custom) == ["hello"]
    assert run.output == {"n": 1}
    (input, config, kwargs), = graph.calls
    # the run is asked for LangGraph's v2 message events, like stream_events(version="v3")
    assert input == {"n": 0}
    assert config == {"configurable": {"__pregel_stream_messages_v2": True}}
    assert kwargs["subgraphs"] is True and kwargs["version"] == "v2"
    assert kwargs["recursion_limit"] == 5
    expected = ["custom", "tasks", "values"]
    if langchain_core_available():  # MessagesTransformer is in the default pipeline
        expected = ["custom", "messages", "tasks", "values"]
    assert sorted(kwargs["stream_mode"]) == expected
    assert required_stream_modes(run._mux) == expected


def test_astream_graph(backend):
    graph = FakeGraph(PARTS)

    async def main():
        run = astream_graph(graph, None)
        values = [v async for v in run.values]
        return values, await run.output()

    values, output = asyncio.run(main())
    assert values == [{"n": 0}, {"n": 1}] and output == {"n": 1}


@pytest.mark.parametrize("key", ["stream_mode", "subgraphs", "version"])
def test_stream_graph_rejects_the_arguments_it_owns(key):
    with pytest.raises(TypeError, match=key):
        stream_graph(FakeGraph(PARTS), None, **{key: "x"})


def test_real_langgraph_graph_with_a_subgraph(backend):
    require_langgraph()
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    def node(name):
        def run(state):
            get_stream_writer()({"node": name})
            return {"v": state["v"] + name, "items": [name]}
        return run

    inner = StateGraph(State)
    inner.add_node("x", node("x"))
    inner.add_edge(START, "x")
    inner.add_edge("x", END)
    outer = StateGraph(State)
    outer.add_node("a", node("a"))
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "a")
    outer.add_edge("a", "sub")
    outer.add_edge("sub", END)
    graph = outer.compile()

    run = stream_graph(graph, {"v": "", "items": []}, transformers=[langstream.CustomTransformer])
    seen = []
    for handle in run.subgraphs:
        seen.append((handle.graph_name, list(handle.values), handle.status))
    assert seen == [("sub", [{"v": "a", "items": ["a"]}, {"v": "ax", "items": ["a", "x"]}],
                     "completed")]
    assert run.output == {"v": "ax", "items": ["a", "a", "x"]}
