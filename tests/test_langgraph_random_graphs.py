"""Differential property test on random real LangGraph graphs: langstream's
adapter (``stream_graph`` / ``astream_graph``) next to LangGraph's own
``stream_events(version="v3")`` / ``astream_events``, sync and async, on both
event-log backends.

Each graph is a chain of one to three nodes per level, with subgraphs two
levels deep, added as nodes or invoked from inside a node, some compiled
with an agent name (``lc_agent_name``).  A node writes to the stream writer,
calls a scripted streaming chat model (text, tool calls, a model that
raises mid-stream), raises, or interrupts (the graph then has a
checkpointer); half the runs also register ``CustomTransformer``.  Compared
with ``test_integrations_langgraph.assert_equivalent``: the raw main log,
values, lifecycle, messages (per model call), every subgraph handle at every
depth, output, interrupts and errors, modulo the documented deliberate
differences only.
"""

from __future__ import annotations

import operator
import random
import warnings
from typing import Annotated, Any, Dict, List

import pytest

from _langgraph_support import require_langgraph

require_langgraph(module_level=True)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.config import get_stream_writer  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.types import interrupt  # noqa: E402

import test_integrations_langgraph as T  # noqa: E402
from _langgraph_graphs import ScriptedChatModel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
warnings.filterwarnings("ignore", message=".*v3 streaming protocol.*")


class State(MessagesState):
    items: Annotated[List[str], operator.add]


def random_graph(seed: int):
    """A random graph, its input, config and extra arguments (``both``'s
    ``make``): the same seed builds the same graph."""
    rng = random.Random(seed)
    checkpointed = rng.random() < 0.4
    counter = [0]

    def model_node(name: str) -> Any:
        replies = []
        for _ in range(3):
            reply: Dict[str, Any] = {"text": rng.choice(["hi there", "one two three", "ok"]),
                                     "usage": (2, 3)}
            roll = rng.random()
            if roll < 0.08:
                reply["fail_after"] = 1
            elif roll < 0.3:
                reply["tool_calls"] = [{"name": "add", "args": {"a": 1, "b": 2},
                                        "id": f"call_{name}"}]
            replies.append(reply)
        model = ScriptedChatModel(replies=replies)

        def run(state: Any) -> Dict[str, Any]:
            return {"messages": [model.invoke(state["messages"])], "items": [name]}
        return run

    def writer_node(name: str, writes: int) -> Any:
        def run(state: Any) -> Dict[str, Any]:
            write = get_stream_writer()
            for i in range(writes):
                write({"node": name, "i": i})
            return {"items": [name]}
        return run

    def raising_node(name: str) -> Any:
        def run(state: Any) -> Dict[str, Any]:
            raise ValueError(f"node {name} failed")
        return run

    def asking_node(name: str) -> Any:
        def run(state: Any) -> Dict[str, Any]:
            answer = interrupt({"question": name})
            return {"items": [f"{name}:{answer}"]}
        return run

    def calling_node(sub: Any) -> Any:
        def run(state: Any) -> Dict[str, Any]:
            out = sub.invoke(state)
            return {"messages": out["messages"][len(state["messages"]):],
                    "items": out["items"][len(state["items"]):]}
        return run

    def build(depth: int) -> Any:
        g = StateGraph(State)
        previous = START
        for _ in range(rng.randint(1, 3)):
            counter[0] += 1
            name = f"n{counter[0]}"
            roll = rng.random()
            if depth < 2 and roll < 0.25:
                sub = build(depth + 1).compile()
                if rng.random() < 0.3:
                    sub = sub.with_config({"metadata": {"lc_agent_name": f"agent{counter[0]}"}})
                node = sub if rng.random() < 0.5 else calling_node(sub)
            elif roll < 0.45:
                node = model_node(name)
            elif roll < 0.48:
                node = raising_node(name)
            elif roll < 0.58 and checkpointed:
                node = asking_node(name)
            else:
                node = writer_node(name, rng.randint(0, 2))
            g.add_node(name, node)
            g.add_edge(previous, name)
            previous = name
        g.add_edge(previous, END)
        return g

    builder = build(0)
    inp = {"messages": [HumanMessage("hi", id="h1")], "items": []}
    if checkpointed:
        return (builder.compile(checkpointer=InMemorySaver()), inp,
                {"configurable": {"thread_id": f"thread-{seed}"}}, {})
    return builder.compile(), inp, None, {}


SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("lane", T.LANES)
@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_random_graphs_stream_like_langgraph(backend, lane, seed):
    transformers = T.CUSTOM if seed % 2 else ((), ())
    lg, ls = T.both(lane, lambda: random_graph(seed), *transformers)
    T.assert_equivalent(lg, ls)


def test_the_graphs_have_what_the_property_is_about():
    """Over the seeds: nested handles, agent-named subgraphs, model calls at
    the root and in subgraphs, custom events, failed and interrupted runs."""
    counts: Dict[str, int] = {}

    def bump(key: str, n: int = 1) -> None:
        counts[key] = counts.get(key, 0) + n

    def handles(recs: List[Dict[str, Any]], depth: int) -> None:
        for rec in recs:
            bump(f"handle at depth {depth}")
            if (rec["graph_name"] or "").startswith("agent"):
                bump("agent name")
            bump("model call in a subgraph", len(rec["messages"]))
            handles(rec["children"], depth + 1)

    for seed in range(40):
        lg, ls = T.both("sync", lambda: random_graph(seed), *T.CUSTOM)
        handles(ls["handles"], 1)
        bump("model call at the root", len(ls["messages"]))
        bump("custom", sum(1 for e in ls["main"] if e["method"] == "custom"))
        bump("failed", isinstance(ls["output"], str))
        bump("interrupted", ls["interrupted"] is True)
    for key in ("handle at depth 1", "handle at depth 2", "agent name",
                "model call in a subgraph", "model call at the root", "custom", "failed",
                "interrupted"):
        assert counts.get(key, 0) >= 1, (key, counts)
