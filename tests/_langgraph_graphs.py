"""Real LangGraph graphs, a scripted streaming chat model, and collectors that
read a run (LangGraph's own v3 run or langstream's) into comparable data.

Imported only by tests that first called ``require_langgraph()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import operator
import re
import uuid
from typing import Annotated, Any, Dict, Iterator, List, Optional, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.runtime import RunControl
from langgraph.types import Command, Send, interrupt


# ------------------------------------------------------------------ the model


class ScriptedChatModel(BaseChatModel):
    """A chat model that streams scripted replies token by token.

    Each reply is a dict: ``text`` (streamed one word/space at a time),
    ``tool_calls`` (list of ``{"name", "args", "id"}``, streamed as tool-call
    chunks), ``usage`` (input/output tokens) and ``fail_after`` (raise after
    that many text tokens).
    """

    replies: List[Dict[str, Any]]
    cursor: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _next(self) -> Dict[str, Any]:
        reply = self.replies[self.cursor % len(self.replies)]
        self.cursor += 1
        return reply

    def _generate(self, messages: List[BaseMessage], stop: Any = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None,
                  **kwargs: Any) -> ChatResult:
        reply = self._next()
        message = AIMessage(
            content=reply.get("text", ""),
            tool_calls=[dict(c, type="tool_call") for c in reply.get("tool_calls", [])],
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: List[BaseMessage], stop: Any = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = self._next()
        tokens = [t for t in re.split(r"(\s)", reply.get("text", "")) if t]
        fail_after = reply.get("fail_after")
        for i, token in enumerate(tokens):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("model exploded mid-stream")
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        for index, call in enumerate(reply.get("tool_calls", [])):
            import json

            yield ChatGenerationChunk(message=AIMessageChunk(
                content="",
                tool_call_chunks=[{"name": call["name"], "args": json.dumps(call["args"]),
                                   "id": call["id"], "index": index, "type": "tool_call_chunk"}],
            ))
        usage = reply.get("usage", (3, len(tokens)))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="",
            usage_metadata={"input_tokens": usage[0], "output_tokens": usage[1],
                            "total_tokens": usage[0] + usage[1]},
            chunk_position="last",
        ))


# ------------------------------------------------------------------ the graphs


class S(TypedDict):
    v: str
    items: Annotated[List[str], operator.add]


def _node(name: str, write: bool = False):
    def run(state: S) -> Dict[str, Any]:
        if write:
            get_stream_writer()({"node": name, "v": state["v"]})
        return {"v": state["v"] + name, "items": [name]}
    return run


def linear_graph():
    """a -> b -> c, each writing to the stream writer."""
    g = StateGraph(S)
    for name in "abc":
        g.add_node(name, _node(name, write=True))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(), {"v": "", "items": []}, None, {}


def nested_graph():
    """outer: a -> mid(sub: m -> inner(sub: x)) -> z; two levels deep."""
    leaf = StateGraph(S)
    leaf.add_node("x", _node("x", write=True))
    leaf.add_edge(START, "x")
    leaf.add_edge("x", END)
    mid = StateGraph(S)
    mid.add_node("m", _node("m"))
    mid.add_node("inner", leaf.compile())
    mid.add_edge(START, "m")
    mid.add_edge("m", "inner")
    mid.add_edge("inner", END)
    outer = StateGraph(S)
    outer.add_node("a", _node("a"))
    outer.add_node("mid", mid.compile())
    outer.add_node("z", _node("z"))
    outer.add_edge(START, "a")
    outer.add_edge("a", "mid")
    outer.add_edge("mid", "z")
    outer.add_edge("z", END)
    return outer.compile(), {"v": "", "items": []}, None, {}


def subgraph_in_node_graph():
    """A node invokes a compiled subgraph itself (not as a node)."""
    inner = StateGraph(S)
    inner.add_node("x", _node("x", write=True))
    inner.add_node("y", _node("y"))
    inner.add_edge(START, "x")
    inner.add_edge("x", "y")
    inner.add_edge("y", END)
    compiled = inner.compile()

    def call(state: S) -> Dict[str, Any]:
        out = compiled.invoke({"v": state["v"], "items": []})
        return {"v": out["v"], "items": out["items"]}

    outer = StateGraph(S)
    outer.add_node("call", call)
    outer.add_edge(START, "call")
    outer.add_edge("call", END)
    return outer.compile(), {"v": "", "items": []}, None, {}


def interrupt_graph(thread: str):
    """ask (interrupt) -> done, with a checkpointer; resume with Command."""
    def ask(state: S) -> Dict[str, Any]:
        answer = interrupt({"question": "name?"})
        return {"v": state["v"] + str(answer), "items": ["ask"]}

    g = StateGraph(S)
    g.add_node("ask", ask)
    g.add_node("done", _node("done"))
    g.add_edge(START, "ask")
    g.add_edge("ask", "done")
    g.add_edge("done", END)
    return g.compile(checkpointer=InMemorySaver()), {"v": "", "items": []}, \
        {"configurable": {"thread_id": thread}}, {}


def interrupt_in_subgraph_graph(thread: str):
    """The interrupt happens inside a subgraph (its handle is `interrupted`)."""
    def ask(state: S) -> Dict[str, Any]:
        answer = interrupt({"question": "colour?"})
        return {"v": state["v"] + str(answer), "items": ["ask"]}

    inner = StateGraph(S)
    inner.add_node("ask", ask)
    inner.add_edge(START, "ask")
    inner.add_edge("ask", END)
    outer = StateGraph(S)
    outer.add_node("a", _node("a"))
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "a")
    outer.add_edge("a", "sub")
    outer.add_edge("sub", END)
    return outer.compile(checkpointer=InMemorySaver()), {"v": "", "items": []}, \
        {"configurable": {"thread_id": thread}}, {}


def raising_node_graph():
    def boom(state: S) -> Dict[str, Any]:
        raise ValueError("node exploded")

    g = StateGraph(S)
    g.add_node("a", _node("a"))
    g.add_node("boom", boom)
    g.add_edge(START, "a")
    g.add_edge("a", "boom")
    g.add_edge("boom", END)
    return g.compile(), {"v": "", "items": []}, None, {}


def raising_subgraph_graph():
    def boom(state: S) -> Dict[str, Any]:
        raise ValueError("subgraph node exploded")

    inner = StateGraph(S)
    inner.add_node("x", _node("x"))
    inner.add_node("boom", boom)
    inner.add_edge(START, "x")
    inner.add_edge("x", "boom")
    inner.add_edge("boom", END)
    outer = StateGraph(S)
    outer.add_node("a", _node("a"))
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "a")
    outer.add_edge("a", "sub")
    outer.add_edge("sub", END)
    return outer.compile(), {"v": "", "items": []}, None, {}


def send_graph():
    """Send fan-out: one task per letter, results reduced into items."""
    def fan(state: S) -> List[Send]:
        return [Send("work", {"v": letter, "items": []}) for letter in "pqr"]

    def work(state: S) -> Dict[str, Any]:
        return {"items": [state["v"].upper()]}

    g = StateGraph(S)
    g.add_node("start", _node("s"))
    g.add_node("work", work)
    g.add_node("end", _node("e"))
    g.add_edge(START, "start")
    g.add_conditional_edges("start", fan, ["work"])
    g.add_edge("work", "end")
    g.add_edge("end", END)
    return g.compile(), {"v": "", "items": []}, None, {}


def chat_graph():
    """A streaming chat model at the root and in a subgraph two levels down."""
    model = ScriptedChatModel(replies=[
        {"text": "hello there world", "usage": (5, 5)},
        {"text": "deep inside now", "usage": (7, 5)},
    ])

    def call(state: MessagesState) -> Dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    leaf = StateGraph(MessagesState)
    leaf.add_node("think", call)
    leaf.add_edge(START, "think")
    leaf.add_edge("think", END)
    mid = StateGraph(MessagesState)
    mid.add_node("leaf", leaf.compile())
    mid.add_edge(START, "leaf")
    mid.add_edge("leaf", END)
    outer = StateGraph(MessagesState)
    outer.add_node("talk", call)
    outer.add_node("mid", mid.compile())
    outer.add_edge(START, "talk")
    outer.add_edge("talk", "mid")
    outer.add_edge("mid", END)
    return outer.compile(), {"messages": [HumanMessage("hi", id="h1")]}, None, {}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent_graph():
    """A tool-calling agent loop: model -> tools -> model (final answer)."""
    model = ScriptedChatModel(replies=[
        {"text": "let me add", "tool_calls": [{"name": "add", "args": {"a": 2, "b": 3},
                                               "id": "call_1"}]},
        {"text": "the sum is 5", "usage": (11, 7)},
    ])

    def agent(state: MessagesState) -> Dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([add]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(), {"messages": [HumanMessage("add 2 and 3", id="h1")]}, None, {}


def react_agent_graph():
    """LangGraph's prebuilt ReAct agent (create_react_agent) with one tool."""
    import warnings

    from langgraph.prebuilt import create_react_agent

    model = ScriptedChatModel(replies=[
        {"text": "adding", "tool_calls": [{"name": "add", "args": {"a": 20, "b": 22},
                                           "id": "call_7"}]},
        {"text": "it is 42", "usage": (9, 5)},
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = create_react_agent(model, [add])
    return graph, {"messages": [HumanMessage("20 + 22?", id="h1")]}, None, {}


def drained_graph():
    """A subgraph whose first node asks the run to drain."""
    control = RunControl()

    def a(state: S) -> Dict[str, Any]:
        control.request_drain("test shutdown")
        return {"v": state["v"] + "a", "items": ["a"]}

    inner = StateGraph(S)
    inner.add_node("a", a)
    inner.add_node("b", _node("b"))
    inner.add_edge(START, "a")
    inner.add_edge("a", "b")
    inner.add_edge("b", END)
    outer = StateGraph(S)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "sub")
    outer.add_edge("sub", END)
    graph = outer.compile(checkpointer=InMemorySaver())
    return graph, {"v": "", "items": []}, {"configurable": {"thread_id": "drain"}}, \
        {"control": control}


def chat_writer_graph():
    """A streaming model at the root, then a subgraph whose node writes to the
    stream writer around a second streamed reply: tokens, custom events,
    subgraph lifecycle, tasks and values in one run."""
    model = ScriptedChatModel(replies=[
        {"text": "hello there world"},
        {"text": "deep inside the subgraph now"},
    ])

    def talk(state: MessagesState) -> Dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def research(state: MessagesState) -> Dict[str, Any]:
        write = get_stream_writer()
        write({"progress": "searching"})
        reply = model.invoke(state["messages"])
        write({"note": "found it"})
        return {"messages": [reply]}

    sub = _chain(MessagesState, research=research)
    outer = _chain(MessagesState, talk=talk, dig=sub.compile())
    return outer.compile(), {"messages": [HumanMessage("hi", id="h1")]}, None, {}


def _chain(state: Any, **nodes: Any) -> Any:
    """A StateGraph of ``nodes`` run one after the other, in keyword order."""
    g = StateGraph(state)
    previous = START
    for name, node in nodes.items():
        g.add_node(name, node)
        g.add_edge(previous, name)
        previous = name
    g.add_edge(previous, END)
    return g


def failing_model_graph():
    """A model that raises after two tokens."""
    model = ScriptedChatModel(replies=[{"text": "one two three four", "fail_after": 2}])

    def call(state: MessagesState) -> Dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("call", call)
    g.add_edge(START, "call")
    g.add_edge("call", END)
    return g.compile(), {"messages": [HumanMessage("hi", id="h1")]}, None, {}


# ------------------------------------------------------------------ normalising

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"\b[0-9a-f]{32}\b")


class Normaliser:
    """Replaces run-generated ids (uuids, 32-hex ids) by ``<id N>`` in order
    of first appearance, and objects by plain data."""

    def __init__(self) -> None:
        self.ids: Dict[str, str] = {}

    def _id(self, match: "re.Match[str]") -> str:
        text = match.group(0)
        if text not in self.ids:
            self.ids[text] = f"<id {len(self.ids)}>"
        return self.ids[text]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return _HEX32.sub(self._id, _UUID.sub(self._id, value))
        if isinstance(value, uuid.UUID):
            return self(str(value))
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if hasattr(value, "model_dump"):
            return {"<type>": type(value).__name__, **self(value.model_dump())}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {"<type>": type(value).__name__,
                    **self({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})}
        return value


def event_view(event: Dict[str, Any], norm: Normaliser) -> Dict[str, Any]:
    """A main-log event without its timestamp and seq."""
    params = {k: v for k, v in event["params"].items() if k != "timestamp"}
    return norm({"method": event["method"], "params": params})


def message_view(msg: Any, output: Any, text: str, deltas: List[str],
                 tool_calls: Any, error: Optional[BaseException]) -> Dict[str, Any]:
    view: Dict[str, Any] = {"node": msg.node, "text": text, "deltas": deltas,
                            "tool_calls": tool_calls}
    if error is not None:
        view["error"] = f"{type(error).__name__}: {error}"
    else:
        view["usage"] = output.usage_metadata
        view["output"] = output
    return view


# ------------------------------------------------------------------ collectors


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def collect_sync(run: Any) -> Dict[str, Any]:
    """Read everything a consumer can read from a sync run."""
    main = iter(run)
    values = iter(run.values)
    lifecycle = iter(run.lifecycle)
    messages = iter(run.messages)
    result: Dict[str, Any] = {"handles": []}

    def walk(handle_iter: Any, into: List[Any]) -> None:
        for handle in handle_iter:
            rec: Dict[str, Any] = {
                "path": list(handle.path), "graph_name": handle.graph_name,
                "trigger_call_id": handle.trigger_call_id, "children": [],
            }
            hv, hm, hs = iter(handle.values), iter(handle.messages), iter(handle.subgraphs)
            try:
                walk(hs, rec["children"])
            except Exception as exc:  # noqa: BLE001 - recorded
                rec["children_error"] = _err(exc)
            rec["values"], rec["values_error"] = _drain(hv)
            msgs, rec["messages_error"] = _drain(hm)
            rec["messages"] = [_read_msg(m) for m in msgs]
            rec["status"], rec["error"] = handle.status, handle.error
            into.append(rec)

    try:
        walk(iter(run.subgraphs), result["handles"])
    except Exception as exc:  # noqa: BLE001 - recorded
        result["subgraphs_error"] = _err(exc)
    result["main"], result["main_error"] = _drain(main)
    result["values"], result["values_error"] = _drain(values)
    result["lifecycle"], result["lifecycle_error"] = _drain(lifecycle)
    msgs, result["messages_error"] = _drain(messages)
    result["messages"] = [_read_msg(m) for m in msgs]
    for name in ("output", "interrupted", "interrupts"):
        try:
            result[name] = getattr(run, name)
        except Exception as exc:  # noqa: BLE001 - recorded
            result[name] = _err(exc)
    return result


def _drain(it: Any):
    items = []
    try:
        for item in it:
            items.append(item)
    except Exception as exc:  # noqa: BLE001 - recorded
        return items, _err(exc)
    return items, None


def _read_msg(msg: Any) -> Dict[str, Any]:
    deltas: List[str] = []
    error = None
    try:
        for delta in msg.text:
            deltas.append(delta)
        text = str(msg.text)
        tool_calls = msg.tool_calls.get()
        output = msg.output
    except Exception as exc:  # noqa: BLE001 - recorded
        return message_view(msg, None, "".join(deltas), deltas, None, exc)
    return message_view(msg, output, text, deltas, tool_calls, error)


async def collect_async(run: Any) -> Dict[str, Any]:
    """Read everything a consumer can read from an async run: every handle's
    projections are read by a task of their own (so siblings are not missed)."""
    main = run.__aiter__()
    values = run.values.__aiter__()
    lifecycle = run.lifecycle.__aiter__()
    messages = run.messages.__aiter__()
    result: Dict[str, Any] = {"handles": []}

    async def walk(handle_iter: Any, into: List[Any]) -> None:
        tasks = []
        error: Optional[BaseException] = None
        try:
            async for handle in handle_iter:
                rec: Dict[str, Any] = {
                    "path": list(handle.path), "graph_name": handle.graph_name,
                    "trigger_call_id": handle.trigger_call_id, "children": [],
                }
                hv = handle.values.__aiter__()
                hm = handle.messages.__aiter__()
                hs = handle.subgraphs.__aiter__()
                tasks.append(asyncio.ensure_future(_read_handle(handle, rec, hv, hm, hs)))
        except Exception as exc:  # noqa: BLE001 - re-raised once the handles are read
            error = exc
        for task in tasks:
            into.append(await task)
        if error is not None:
            raise error

    async def _read_handle(handle, rec, hv, hm, hs):
        try:
            await walk(hs, rec["children"])
        except Exception as exc:  # noqa: BLE001 - recorded
            rec["children_error"] = _err(exc)
        rec["values"], rec["values_error"] = await _adrain(hv)
        msgs, rec["messages_error"] = await _adrain(hm)
        rec["messages"] = [await _aread_msg(m) for m in msgs]
        rec["status"], rec["error"] = handle.status, handle.error
        return rec

    try:
        await walk(run.subgraphs.__aiter__(), result["handles"])
    except Exception as exc:  # noqa: BLE001 - recorded
        result["subgraphs_error"] = _err(exc)
    result["main"], result["main_error"] = await _adrain(main)
    result["values"], result["values_error"] = await _adrain(values)
    result["lifecycle"], result["lifecycle_error"] = await _adrain(lifecycle)
    msgs, result["messages_error"] = await _adrain(messages)
    result["messages"] = [await _aread_msg(m) for m in msgs]
    for name in ("output", "interrupted", "interrupts"):
        try:
            result[name] = await getattr(run, name)()
        except Exception as exc:  # noqa: BLE001 - recorded
            result[name] = _err(exc)
    return result


async def _adrain(it: Any):
    items = []
    try:
        async for item in it:
            items.append(item)
    except Exception as exc:  # noqa: BLE001 - recorded
        return items, _err(exc)
    return items, None


async def _aread_msg(msg: Any) -> Dict[str, Any]:
    deltas: List[str] = []
    try:
        async for delta in msg.text:
            deltas.append(delta)
        text = await msg.text
        tool_calls = await msg.tool_calls
        output = await msg.output
    except Exception as exc:  # noqa: BLE001 - recorded
        return message_view(msg, None, "".join(deltas), deltas, None, exc)
    return message_view(msg, output, text, deltas, tool_calls, None)


__all__ = ["Command", "collect_async", "collect_sync", "event_view", "Normaliser"]
