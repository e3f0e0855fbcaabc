"""Differential tests: langstream's LangGraph adapter next to LangGraph's own
``graph.stream_events(input, version="v3")`` / ``astream_events``, on real
graphs, sync and async, on both event-log backends.

Compared: the raw main log (method, namespace, data, order; timestamps and
run-generated ids normalised), ``values``, ``lifecycle``, every subgraph handle
(path, name, trigger call, status, error, values, messages), ``messages`` (per
model call: text, deltas, tool calls, usage, final message), ``output``,
``interrupted``, ``interrupts`` and errors.  Where langstream differs on
purpose (DESIGN.md, "Deliberate differences"), the difference is asserted as
exactly that difference.

Needs the ``langgraph`` extra: see ``_langgraph_support`` for where a missing
extra skips these tests and where it fails them.
"""

from __future__ import annotations

import asyncio
import copy
import warnings
from typing import Any, Callable, Dict, List

import pytest
from _langgraph_support import require_langgraph


require_langgraph(module_level=True)

import langgraph.stream as lg_stream  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langgraph.errors import GraphDrained  # noqa: E402
from langgraph.types import Command  # noqa: E402

import _langgraph_graphs as G  # noqa: E402
import langstream  # noqa: E402
from langstream.integrations.langgraph import astream_graph, stream_graph  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
warnings.filterwarnings("ignore", message=".*v3 streaming protocol.*")

LANES = ["sync", "async"]


# ------------------------------------------------------------------ running


def run_langgraph(lane: str, graph, inp, config, kwargs, transformers=()):
    if lane == "sync":
        run = graph.stream_events(inp, config, version="v3", transformers=list(transformers),
                                  **kwargs)
        return G.collect_sync(run)

    async def main():
        run = await graph.astream_events(inp, config, version="v3",
                                         transformers=list(transformers), **kwargs)
        return await G.collect_async(run)

    return asyncio.run(main())


def run_langstream(lane: str, graph, inp, config, kwargs, transformers=()):
    if lane == "sync":
        run = stream_graph(graph, inp, config, transformers=list(transformers), **kwargs)
        assert isinstance(run, langstream.GraphRunStream)
        return G.collect_sync(run)

    async def main():
        run = astream_graph(graph, inp, config, transformers=list(transformers), **kwargs)
        assert isinstance(run, langstream.AsyncGraphRunStream)
        return await G.collect_async(run)

    return asyncio.run(main())


def both(lane: str, make: Callable[[], Any], lg_transformers=(), ls_transformers=()):
    """Run a fresh copy of the graph under LangGraph and under langstream."""
    graph, inp, config, kwargs = make()
    lg = run_langgraph(lane, graph, copy.deepcopy(inp), copy.deepcopy(config), kwargs,
                       lg_transformers)
    graph, inp, config, kwargs = make()
    ls = run_langstream(lane, graph, inp, config, kwargs, ls_transformers)
    return lg, ls


# ------------------------------------------------------------------ comparing


def _terminal_view(payload: Dict[str, Any]) -> Dict[str, Any]:
    # deliberate difference: langstream's terminal lifecycle payloads also
    # carry graph_name and trigger_call_id
    if payload["event"] != "started":
        return {k: v for k, v in payload.items() if k not in ("graph_name", "trigger_call_id")}
    return payload


def _handle_view(rec: Dict[str, Any], norm) -> Dict[str, Any]:
    return norm({
        "path": rec["path"], "graph_name": rec["graph_name"],
        "trigger_call_id": rec["trigger_call_id"], "status": rec["status"],
        "error": rec["error"], "messages": rec["messages"],
        "messages_error": rec["messages_error"], "values_error": rec["values_error"],
    })


def assert_equivalent(lg: Dict[str, Any], ls: Dict[str, Any]) -> None:
    """Equal, but for langstream's documented deliberate differences."""
    nl, ns = G.Normaliser(), G.Normaliser()
    # 1. the raw main log, lifecycle events aside (they are compared below:
    #    langstream emits `started` at a subgraph's first event, LangGraph at
    #    its first task event, so their position differs on purpose)
    lg_main = [G.event_view(e, nl) for e in lg["main"] if e["method"] != "lifecycle"]
    ls_main = [G.event_view(e, ns) for e in ls["main"] if e["method"] != "lifecycle"]
    assert ls_main == lg_main
    assert ls["main_error"] == lg["main_error"]
    # the main log is numbered 1, 2, 3 ... in both
    assert [e["seq"] for e in ls["main"]] == list(range(1, len(ls["main"]) + 1))
    # 2. lifecycle: same payloads, in the same order
    assert [_terminal_view(p) for p in ns(ls["lifecycle"])] == nl(lg["lifecycle"])
    assert [e["params"]["data"] for e in ls["main"] if e["method"] == "lifecycle"] \
        == ls["lifecycle"]
    assert ls["lifecycle_error"] == lg["lifecycle_error"]
    # 3. values, messages, results
    for key in ("values", "values_error", "messages", "messages_error", "output",
                "interrupted", "interrupts"):
        assert ns(ls[key]) == nl(lg[key]), key
    # 4. handles, recursively
    _assert_handles(lg["handles"], ls["handles"], nl, ns)


def _assert_handles(lg_handles, ls_handles, nl, ns) -> None:
    assert [_handle_view(h, ns) for h in ls_handles] == [_handle_view(h, nl) for h in lg_handles]
    for lg_h, ls_h in zip(lg_handles, ls_handles):
        lg_values, ls_values = nl(lg_h["values"]), ns(ls_h["values"])
        # deliberate difference: a langstream handle exists from the
        # subgraph's first event, so it also sees the subgraph's input
        # snapshot, which LangGraph's handle (discovered at the first task
        # event) misses
        assert ls_values[len(ls_values) - len(lg_values):] == lg_values
        assert len(ls_values) - len(lg_values) in (0, 1)
        if len(ls_values) > len(lg_values):
            assert ls_values[0] == ns(ls_h["values"][0])
        _assert_handles(lg_h["children"], ls_h["children"], nl, ns)


# ------------------------------------------------------------------ scenarios

CUSTOM = ([lg_stream.CustomTransformer], [langstream.CustomTransformer])


@pytest.mark.parametrize("lane", LANES)
def test_linear_graph_with_stream_writer(backend, lane):
    lg, ls = both(lane, G.linear_graph, *CUSTOM)
    assert_equivalent(lg, ls)
    assert ls["output"] == {"v": "abc", "items": ["a", "b", "c"]}
    assert [e["method"] for e in ls["main"]].count("custom") == 3


@pytest.mark.parametrize("lane", LANES)
def test_subgraphs_two_levels_deep(backend, lane):
    lg, ls = both(lane, G.nested_graph, *CUSTOM)
    assert_equivalent(lg, ls)
    (mid,) = ls["handles"]
    (inner,) = mid["children"]
    assert (mid["graph_name"], mid["status"]) == ("mid", "completed")
    assert (inner["graph_name"], inner["status"]) == ("inner", "completed")
    # the input snapshot LangGraph's handle misses (deliberate difference)
    assert mid["values"][0] == {"v": "a", "items": ["a"]}
    assert ls["output"] == {"v": "amxz", "items": ["a", "a", "m", "a", "m", "x", "z"]}


@pytest.mark.parametrize("lane", LANES)
def test_subgraph_invoked_inside_a_node(backend, lane):
    lg, ls = both(lane, G.subgraph_in_node_graph, *CUSTOM)
    assert_equivalent(lg, ls)
    (handle,) = ls["handles"]
    assert handle["status"] == "completed"
    assert ls["output"] == {"v": "xy", "items": ["x", "y"]}


@pytest.mark.parametrize("lane", LANES)
def test_interrupt_and_resume(backend, lane):
    graph, inp, config, _ = G.interrupt_graph(f"t-{lane}")
    lg_first = run_langgraph(lane, graph, inp, config, {})
    lg_second = run_langgraph(lane, graph, Command(resume="Ada"), config, {})
    graph, inp, config, _ = G.interrupt_graph(f"t-{lane}")
    ls_first = run_langstream(lane, graph, inp, config, {})
    ls_second = run_langstream(lane, graph, Command(resume="Ada"), config, {})
    assert_equivalent(lg_first, ls_first)
    assert_equivalent(lg_second, ls_second)
    assert ls_first["interrupted"] is True
    assert [i.value for i in ls_first["interrupts"]] == [{"question": "name?"}]
    assert ls_second["interrupted"] is False
    assert ls_second["output"] == {"v": "Adadone", "items": ["ask", "done"]}


@pytest.mark.parametrize("lane", LANES)
def test_interrupt_inside_a_subgraph_and_resume(backend, lane):
    graph, inp, config, _ = G.interrupt_in_subgraph_graph(f"ts-{lane}")
    lg_first = run_langgraph(lane, graph, inp, config, {})
    lg_second = run_langgraph(lane, graph, Command(resume="red"), config, {})
    graph, inp, config, _ = G.interrupt_in_subgraph_graph(f"ts-{lane}")
    ls_first = run_langstream(lane, graph, inp, config, {})
    ls_second = run_langstream(lane, graph, Command(resume="red"), config, {})
    assert_equivalent(lg_first, ls_first)
    assert_equivalent(lg_second, ls_second)
    (handle,) = ls_first["handles"]
    assert (handle["status"], handle["error"]) == ("interrupted", None)
    assert ls_first["interrupted"] is True
    assert [i.value for i in ls_first["interrupts"]] == [{"question": "colour?"}]
    assert ls_second["output"] == {"v": "ared", "items": ["a", "a", "ask"]}  # (the reducer)


@pytest.mark.parametrize("lane", LANES)
def test_raising_node(backend, lane):
    lg, ls = both(lane, G.raising_node_graph)
    assert_equivalent(lg, ls)
    assert ls["output"] == "ValueError: node exploded"
    assert ls["values_error"] == ls["main_error"] == "ValueError: node exploded"


@pytest.mark.parametrize("lane", LANES)
def test_raising_subgraph_node(backend, lane):
    lg, ls = both(lane, G.raising_subgraph_graph)
    assert_equivalent(lg, ls)
    (handle,) = ls["handles"]
    assert handle["status"] == "failed"
    assert handle["error"] == "subgraph node exploded"
    assert ls["output"] == "ValueError: subgraph node exploded"


@pytest.mark.parametrize("lane", LANES)
def test_send_fan_out(backend, lane):
    lg, ls = both(lane, G.send_graph)
    assert_equivalent(lg, ls)
    assert sorted(ls["output"]["items"]) == ["P", "Q", "R", "e", "s"]


@pytest.mark.parametrize("lane", LANES)
def test_streaming_chat_model_tokens(backend, lane):
    lg, ls = both(lane, G.chat_graph)
    assert_equivalent(lg, ls)
    # the root's own call on run.messages, token by token
    (root_msg,) = ls["messages"]
    assert root_msg["deltas"] == ["hello", " ", "there", " ", "world"]
    assert root_msg["text"] == "hello there world"
    assert root_msg["node"] == "talk"
    assert root_msg["usage"]["total_tokens"] == 10
    # the call two levels down is on the grandchild's handle only
    (mid,) = ls["handles"]
    assert mid["messages"] == []
    (leaf,) = mid["children"]
    assert [m["text"] for m in leaf["messages"]] == ["deep inside now"]
    # values carry the message as LangGraph's v3 run makes it (v1 content blocks)
    final = ls["output"]["messages"][-1]
    assert final.content == [{"type": "text", "text": "deep inside now", "index": 0}]


@pytest.mark.parametrize("lane", LANES)
def test_tool_calling_agent_loop(backend, lane):
    lg, ls = both(lane, G.agent_graph)
    assert_equivalent(lg, ls)
    first, second = ls["messages"]  # tool results are not chat-model streams
    assert first["text"] == "let me add"
    assert [(c["name"], c["args"], c["id"]) for c in first["tool_calls"]] == [
        ("add", {"a": 2, "b": 3}, "call_1")]
    assert second["text"] == "the sum is 5"
    assert second["usage"]["output_tokens"] == 7
    assert ls["output"]["messages"][2].content == "5"


@pytest.mark.parametrize("lane", LANES)
def test_prebuilt_react_agent(backend, lane):
    lg, ls = both(lane, G.react_agent_graph)
    assert_equivalent(lg, ls)
    assert [m["text"] for m in ls["messages"]] == ["adding", "it is 42"]
    assert ls["messages"][0]["tool_calls"][0]["args"] == {"a": 20, "b": 22}
    assert ls["output"]["messages"][-1].text == "it is 42"
    # transformers get LangGraph's v2 message events (not v1 AIMessageChunk tuples)
    payloads = [e["params"]["data"][0] for e in ls["main"] if e["method"] == "messages"]
    assert payloads and all(isinstance(p, dict) and "event" in p for p in payloads)


@pytest.mark.parametrize("lane", LANES)
def test_drained_subgraph(backend, lane):
    lg, ls = both(lane, G.drained_graph)
    assert_equivalent(lg, ls)
    (handle,) = ls["handles"]
    assert (handle["status"], handle["error"]) == ("drained", None)
    assert [p["event"] for p in ls["lifecycle"]] == ["started", "drained"]
    assert "error" not in ls["lifecycle"][-1]
    assert ls["output"] == "GraphDrained: Graph drained: test shutdown"


# ------------------------------------------------------------------ tokens from every depth


@pytest.mark.parametrize("lane", LANES)
def test_all_messages_gives_every_call_at_any_depth_with_its_namespace(backend, lane):
    graph, inp, config, kwargs = G.chat_graph()
    if lane == "sync":
        run = stream_graph(graph, inp, transformers=[langstream.AllMessagesTransformer])
        got = [(list(m.namespace), list(m.text)) for m in run.all_messages]
    else:
        async def main():
            run = astream_graph(graph, inp, transformers=[langstream.AllMessagesTransformer])
            out = []
            async for m in run.all_messages:
                out.append((list(m.namespace), [d async for d in m.text]))
            return out

        got = asyncio.run(main())
    assert [(len(ns), [s.split(":")[0] for s in ns], deltas) for ns, deltas in got] == [
        (0, [], ["hello", " ", "there", " ", "world"]),
        (2, ["mid", "leaf"], ["deep", " ", "inside", " ", "now"]),
    ]


# ------------------------------------------------------------------ adapter behaviour


def test_stream_graph_inside_a_node_scopes_to_the_caller(backend):
    """Called from a node, the adapter owns the caller's namespace, as LangGraph does."""
    inner, _, _, _ = G.linear_graph()
    seen: Dict[str, List[Any]] = {"lg": [], "ls": []}

    def node(state: G.S) -> Dict[str, Any]:
        for _ in range(2):  # first and later calls
            lg_run = inner.stream_events({"v": "", "items": []}, version="v3")
            seen["lg"].append((list(lg_run.values), lg_run.output))
            ls_run = stream_graph(inner, {"v": "", "items": []})
            seen["ls"].append((list(ls_run.values), ls_run.output))
        return {"v": "done"}

    outer = G.StateGraph(G.S)
    outer.add_node("n", node)
    outer.add_edge(G.START, "n")
    outer.add_edge("n", G.END)
    outer.compile().invoke({"v": "", "items": []})
    snapshots = [{"v": "", "items": []}, {"v": "a", "items": ["a"]},
                 {"v": "ab", "items": ["a", "b"]}, {"v": "abc", "items": ["a", "b", "c"]}]
    # the first call: as LangGraph
    assert seen["ls"][0] == seen["lg"][0] == (snapshots, snapshots[-1])
    # a later call in the same node: LangGraph names that run's namespace
    # "<task ns>|1" but scopes its v3 run to "<task ns>", so it yields no
    # snapshot and output None; langstream scopes to the run's real namespace
    # (deliberate difference)
    assert seen["lg"][1] == ([], None)
    assert seen["ls"][1] == (snapshots, snapshots[-1])


def test_token_streaming_run_inside_a_node_sees_its_own_calls(backend):
    """A chat graph streamed from inside another graph's node: its own model
    call is on its run.messages, as under LangGraph's v3 run."""
    got: Dict[str, Any] = {}

    def node(state: G.S) -> Dict[str, Any]:
        inner, inp, _, _ = G.chat_graph()
        lg_run = inner.stream_events(inp, version="v3")
        got["lg"] = [str(m.text) for m in lg_run.messages]
        inner, inp, _, _ = G.chat_graph()
        ls_run = stream_graph(inner, inp)
        got["ls"] = [str(m.text) for m in ls_run.messages]
        got["ls_output"] = ls_run.output["messages"][-1].text
        return {"v": "done"}

    outer = G.StateGraph(G.S)
    outer.add_node("n", node)
    outer.add_edge(G.START, "n")
    outer.add_edge("n", G.END)
    outer.compile().invoke({"v": "", "items": []})
    assert got["ls"] == got["lg"] == ["hello there world"]
    assert got["ls_output"] == "deep inside now"


def test_astream_graph_inside_an_async_node_scopes_to_the_caller(backend):
    inner, _, _, _ = G.linear_graph()
    seen: Dict[str, List[Any]] = {"ls": []}

    async def node(state: G.S) -> Dict[str, Any]:
        for _ in range(2):  # first and later calls
            async with await astream_graph(inner, {"v": "", "items": []}) as run:
                seen["ls"].append(([v async for v in run.values], await run.output()))
        return {"v": "done"}

    outer = G.StateGraph(G.S)
    outer.add_node("n", node)
    outer.add_edge(G.START, "n")
    outer.add_edge("n", G.END)
    asyncio.run(outer.compile().ainvoke({"v": "", "items": []}))
    final = {"v": "abc", "items": ["a", "b", "c"]}
    assert [(len(values), output) for values, output in seen["ls"]] == [(4, final), (4, final)]


def test_compile_time_transformers_are_registered_in_langgraphs_order(backend):
    order: List[str] = []

    def tracing(name):
        class Tracing(langstream.StreamTransformer):
            def init(self):
                order.append(name)
                return {}

            def process(self, event):
                return True
        return Tracing

    graph, inp, _, _ = G.linear_graph()
    graph.stream_transformers = (tracing("compiled"),)
    run = stream_graph(graph, inp, transformers=[tracing("call")])
    keys = [type(t).__name__ for t in run._mux._transformers]
    assert keys[:4] == ["ValuesTransformer", "MessagesTransformer", "LifecycleTransformer",
                        "SubgraphTransformer"]
    assert order == ["compiled", "call"]
    assert run.output["v"] == "abc"


def test_graph_compiled_with_transformers_gets_them(backend):
    from langgraph.graph import StateGraph

    class Counter(langstream.StreamTransformer):
        required_stream_modes = ("updates",)
        _native = True

        def __init__(self, scope=()):
            super().__init__(scope)
            self.channel = langstream.StreamChannel("counts")

        def init(self):
            return {"counts": self.channel}

        def process(self, event):
            if event["method"] == "updates" and not event["params"]["namespace"]:
                self.channel.push(sorted(event["params"]["data"]))
            return True

    g = StateGraph(G.S)
    g.add_node("a", G._node("a"))
    g.add_edge(G.START, "a")
    g.add_edge("a", G.END)
    graph = g.compile(transformers=[Counter])
    run = stream_graph(graph, {"v": "", "items": []})
    assert list(run.counts) == [["a"]]


@pytest.mark.parametrize("name", ["CustomTransformer", "UpdatesTransformer",
                                  "MessagesTransformer"])
def test_langgraph_transformer_classes_are_refused_with_the_reason(backend, name):
    graph, inp, _, _ = G.linear_graph()
    factory = getattr(lg_stream.transformers, name)
    if name == "MessagesTransformer":  # its key is taken by langstream's own
        factory = (lambda scope, _f=factory: _renamed(_f(scope)))
    with pytest.raises(TypeError) as info:
        stream_graph(graph, inp, transformers=[factory])
    msg = str(info.value)
    assert name in msg and "LangGraph's own StreamChannel" in msg
    assert f"langstream.{name}" in msg
    with pytest.raises(TypeError, match="LangGraph's own StreamChannel"):
        astream_graph(graph, inp, transformers=[factory])
    # the core refuses them too
    with pytest.raises(TypeError, match="LangGraph's own StreamChannel"):
        langstream.stream_events(iter([]), transformers=[factory])


def _renamed(transformer):
    init = transformer.init
    transformer.init = lambda: {"lg_messages": init()["messages"]}
    return transformer


def test_user_transformer_on_langgraph_base_is_refused_at_the_graph_too(backend):
    class Mine(lg_stream.StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.channel = lg_stream.StreamChannel("mine")

        def init(self):
            return {"mine": self.channel}

        def process(self, event):
            return True

    graph, inp, _, _ = G.linear_graph()
    graph.stream_transformers = (Mine,)
    with pytest.raises(TypeError) as info:
        stream_graph(graph, inp)
    msg = str(info.value)
    assert "Mine returns LangGraph's own StreamChannel for 'mine'" in msg
    assert "change the imports from langgraph.stream to langstream" in msg


@pytest.mark.parametrize("lane", LANES)
def test_async_run_can_be_awaited_like_langgraphs(backend, lane):
    graph, inp, _, _ = G.linear_graph()

    async def main():
        async with await astream_graph(graph, inp) as run:
            values = [v async for v in run.values]
        async with astream_graph(graph, inp) as run2:  # without await: still works
            out = await run2.output()
        return values, out

    values, out = asyncio.run(main())
    assert values[-1] == out == {"v": "abc", "items": ["a", "b", "c"]}


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", [None, 42, "graph", object(), [1, 2], G.StateGraph(G.S)],
                         ids=["None", "int", "str", "object", "list", "uncompiled-builder"])
def test_non_graph_is_refused(bad):
    with pytest.raises(TypeError, match="graph must be a compiled LangGraph graph"):
        stream_graph(bad, {})
    with pytest.raises(TypeError, match="graph must be a compiled LangGraph graph"):
        astream_graph(bad, {})


@pytest.mark.parametrize("key", ["stream_mode", "subgraphs"])
def test_owned_arguments_are_refused_like_langgraph(key):
    graph, inp, _, _ = G.linear_graph()
    with pytest.raises(TypeError, match=f"{key}="):
        stream_graph(graph, inp, **{key: True})
    with pytest.raises(TypeError, match=key):  # LangGraph refuses them too
        graph.stream_events(inp, version="v3", **{key: True})


def test_version_v3_is_accepted_other_versions_refused(backend):
    graph, inp, _, _ = G.linear_graph()
    assert stream_graph(graph, inp, version="v3").output["v"] == "abc"

    async def main():
        async with await astream_graph(graph, inp, version="v3") as run:
            return await run.output()

    assert asyncio.run(main())["v"] == "abc"
    with pytest.raises(TypeError, match="version='v2'"):
        stream_graph(graph, inp, version="v2")


@pytest.mark.parametrize("lane", LANES)
def test_chat_model_raising_mid_stream(backend, lane):
    """Every consumer of the message's stream gets the error; the run fails; nothing hangs."""
    lg, ls = both(lane, G.failing_model_graph)
    assert_equivalent(lg, ls)
    (msg,) = ls["messages"]
    assert msg["deltas"] == ["one", " "]
    assert msg["error"] == "RuntimeError: model exploded mid-stream"
    assert ls["output"] == "RuntimeError: model exploded mid-stream"

    # a consumer reading the tokens as they come, and a second reader of the
    # same stream afterwards: both get the error
    graph, inp, _, _ = G.failing_model_graph()
    if lane == "sync":
        run = stream_graph(graph, inp)
        messages = iter(run.messages)
        stream = next(messages)
        seen = []
        with pytest.raises(RuntimeError, match="mid-stream"):
            for delta in stream.text:
                seen.append(delta)
        with pytest.raises(RuntimeError, match="mid-stream"):
            stream.output
        with pytest.raises(RuntimeError, match="mid-stream"):
            stream.tool_calls.get()
        with pytest.raises(RuntimeError, match="mid-stream"):
            next(messages)
        with pytest.raises(RuntimeError, match="mid-stream"):
            run.output
    else:
        async def main():
            run = astream_graph(graph, inp)
            messages = run.messages.__aiter__()
            stream = await messages.__anext__()
            seen = []
            with pytest.raises(RuntimeError, match="mid-stream"):
                async for delta in stream.text:
                    seen.append(delta)
            with pytest.raises(RuntimeError, match="mid-stream"):
                await stream.output
            with pytest.raises(RuntimeError, match="mid-stream"):
                await stream.tool_calls
            with pytest.raises(RuntimeError, match="mid-stream"):
                await messages.__anext__()
            with pytest.raises(RuntimeError, match="mid-stream"):
                await run.output()
            return seen
        seen = asyncio.run(asyncio.wait_for(main(), 30))
    assert seen == ["one", " "]


def test_messages_event_with_a_malformed_payload_fails_the_run(backend):
    parts = [{"type": "messages", "ns": (), "data": "not a pair"}]
    run = langstream.stream_events(iter(parts))
    with pytest.raises(TypeError, match=r"\(payload, metadata\) pair"):
        list(run.messages)
    with pytest.raises(TypeError, match="payload, metadata"):
        run.output


# ------------------------------------------------------------------ README


def _readme_blocks(heading: str) -> List[str]:
    import os
    import re

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    nxt = text.find("\n### ", start + 1)
    if nxt != -1 and (end == -1 or nxt < end):
        end = nxt
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_readme_langgraph_section_runs_as_pasted():
    import subprocess
    import sys

    blocks = _readme_blocks("### LangGraph graphs and token streaming")
    assert len(blocks) == 3
    outputs = []
    for block in blocks:  # each in a fresh interpreter, as a user pastes it
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", block],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0].splitlines()[0] == "Tokens| |arrive| |one| |by| |one|"
    assert outputs[0].splitlines()[-1] == "Tokens arrive one by one"
    assert outputs[1].splitlines() == ["Async| |tokens| |too|", "final: Async tokens too"]
    assert outputs[2].splitlines() == ["root: from the root",
                                       "middle/inner: from two levels down"]


# ------------------------------------------------------------------ leaving early


@pytest.mark.parametrize("lane", LANES)
def test_leaving_mid_message_ends_the_run_and_the_open_stream(backend, lane):
    """Leaving the block while a model call streams: the graph is closed, the
    open message stream fails with a clear error (nobody waits forever)."""
    # deliberate difference: LangGraph leaves the stream open (its text ends
    # silently; output raises "Stream finished without producing a message"
    # on the sync lane and is None on the async one); langstream fails it
    # with an error that says why
    if lane == "sync":
        graph, inp, _, _ = G.chat_graph()
        with graph.stream_events(inp, version="v3") as lg_run:
            lg_msg = next(iter(lg_run.messages))
            assert next(iter(lg_msg.text)) == "hello"
        assert list(lg_msg.text) == ["hello"]
        with pytest.raises(RuntimeError, match="without producing a message"):
            lg_msg.output

        graph, inp, _, _ = G.chat_graph()
        with stream_graph(graph, inp) as run:
            msg = next(iter(run.messages))
            first = next(iter(msg.text))
        with pytest.raises(RuntimeError, match="before this model call finished"):
            list(msg.text)
        with pytest.raises(RuntimeError, match="before this model call finished"):
            msg.output
        assert list(run.values) == []  # the run is over: nothing more is pulled
    else:
        async def main():
            graph, inp, _, _ = G.chat_graph()
            async with await graph.astream_events(inp, version="v3") as lg_run:
                lg_msg = await lg_run.messages.__aiter__().__anext__()
                await lg_msg.text.__aiter__().__anext__()
            assert await asyncio.wait_for(lg_msg.output, 10) is None

            graph, inp, _, _ = G.chat_graph()
            async with await astream_graph(graph, inp) as run:
                msg = await run.messages.__aiter__().__anext__()
                first = await msg.text.__aiter__().__anext__()
            with pytest.raises(RuntimeError, match="before this model call finished"):
                await asyncio.wait_for(msg.output, 10)
            return first
        first = asyncio.run(asyncio.wait_for(main(), 30))
    assert first == "hello"


def test_interleave_messages_and_values(backend):
    graph, inp, _, _ = G.chat_graph()
    run = stream_graph(graph, inp)
    seen = [(name, type(item).__name__) for name, item in run.interleave("values", "messages")]
    names = [name for name, _ in seen]
    # the input, the root's call (pushed at its first token), after "talk", after "mid"
    assert names == ["values", "messages", "values", "values"]
    assert seen[1][1] == "ChatModelStream"


def _lifecycle_view(payloads: List[Dict[str, Any]]) -> List[Any]:
    """(event, graph names of the namespace): task ids differ between runs."""
    return [(p["event"], [seg.split(":")[0] for seg in p["namespace"]])
            for p in payloads]


@pytest.mark.parametrize("lane", LANES)
def test_leaving_inside_nested_subgraphs_ends_them_in_langgraphs_order(backend, lane):
    """The consumer leaves while two nested subgraphs are open: both end
    ``completed``, the parent first, as LangGraph's lifecycle ends them."""

    def read(run, leave):
        it = iter(run.lifecycle)
        seen = []
        for payload in it:
            seen.append(_terminal_view(payload))
            if [p["event"] for p in seen] == ["started", "started"]:
                leave(run)
        return _lifecycle_view(seen)

    async def aread(run):
        seen = []
        async for payload in run.lifecycle:
            seen.append(_terminal_view(payload))
            if [p["event"] for p in seen] == ["started", "started"]:
                await run.abort()
        return _lifecycle_view(seen)

    if lane == "sync":
        graph, inp, config, _ = G.nested_graph()
        lg = read(graph.stream_events(inp, config, version="v3"), lambda run: run.abort())
        graph, inp, config, _ = G.nested_graph()
        ls = read(stream_graph(graph, inp, config), lambda run: run.abort())
    else:
        async def main():
            graph, inp, config, _ = G.nested_graph()
            lg = await aread(await graph.astream_events(inp, config, version="v3"))
            graph, inp, config, _ = G.nested_graph()
            return lg, await aread(astream_graph(graph, inp, config))

        lg, ls = asyncio.run(asyncio.wait_for(main(), 30))
    assert ls == lg
    assert ls == [("started", ["mid"]), ("started", ["mid", "inner"]),
                  ("completed", ["mid"]), ("completed", ["mid", "inner"])]
