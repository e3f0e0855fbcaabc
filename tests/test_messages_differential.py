"""Differential property test of token streaming: random runs with model
calls through LangGraph's run stream and langstream's (default pipeline on
both sides: values, messages, lifecycle, subgraphs), sync and async, on
both event-log backends.

The model calls are made by langchain-core itself: random chunks (text,
reasoning, tool-call chunks with partial JSON, usage) turned into the v2
protocol events by its ``chunks_to_events``, then interleaved with other
calls of the same step, at the root and in subgraphs two levels deep.
Irregular cases are in: tool-role calls, calls that never finish (some end
with an ``error`` event, some with a token after it), calls without a
``run_id`` or with a UUID one (the object on some events, its text on
others), whole ``AIMessage`` payloads, v1 ``AIMessageChunk`` and ``ToolMessage`` payloads, and graphs
that raise.  Compared, for every stream of ``run.messages`` (and of every
handle's, read inside the subgraphs loop): namespace, node, message id,
the text / reasoning / tool-call deltas, ``output`` (content, tool calls,
invalid tool calls, usage, id), and the run's output or error.

Compared modulo the documented differences (README, "Deliberate
differences"): a call still open when its run (or subgraph) ends fails its
stream with a ``RuntimeError`` where LangGraph's ends silently, so the
deltas that arrived are compared and the end is "unfinished" on both sides;
and the consumer that walks the handles is not compared once a call is left
open (LangGraph's reader of that call then drains the whole run before the
next handle is read).  A call whose ``message-start`` reuses the key of an
open call is tested on its own (``test_messages.py``), not here.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import warnings
from typing import Any, AsyncIterator, Dict, Iterator, List, Tuple

import pytest

from _langgraph_support import require_langgraph

require_langgraph(module_level=True)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from langchain_core.language_models._compat_bridge import chunks_to_events  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage  # noqa: E402
from langchain_core.outputs import ChatGenerationChunk  # noqa: E402
from langgraph.stream import _mux as lg_mux  # noqa: E402
from langgraph.stream import run_stream as lg_run_stream  # noqa: E402
from langgraph.stream import transformers as lg_transformers  # noqa: E402

import langstream  # noqa: E402
from langstream.run_stream import DEFAULT_FACTORIES  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
warnings.filterwarnings("ignore", message=".*v3 streaming protocol.*")

UNFINISHED = "unfinished"


class GraphFailed(Exception):
    """What a generated graph raises after its last part."""


# ------------------------------------------------------------------ streams


def _chunks(rng: random.Random, message_id: str) -> List[AIMessageChunk]:
    chunks = []
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.5:
            chunks.append(AIMessageChunk(content=rng.choice(["a", "bc", "d e", ""]),
                                         id=message_id))
        elif roll < 0.7:
            chunks.append(AIMessageChunk(
                content=[{"type": "reasoning", "reasoning": rng.choice(["x", "yz"])}],
                id=message_id))
        else:
            chunks.append(AIMessageChunk(content="", id=message_id, tool_call_chunks=[{
                "id": "call_" + message_id if rng.random() < 0.7 else None,
                "name": "tool" if rng.random() < 0.7 else None,
                "args": rng.choice(['{"a"', ": 1}", "", "{}"]),
                "index": rng.randint(0, 1)}]))
    if rng.random() < 0.5:
        chunks.append(AIMessageChunk(content="", id=message_id, usage_metadata={
            "input_tokens": 1, "output_tokens": 2, "total_tokens": 3}))
    return chunks


def _model_call(rng: random.Random, message_id: str) -> List[Dict[str, Any]]:
    """The v2 protocol events of one model call, as langchain-core makes them."""
    chunks = [ChatGenerationChunk(message=c) for c in _chunks(rng, message_id)]
    events = [dict(e) for e in chunks_to_events(iter(chunks), message_id=message_id)]
    if not events:  # (no chunk: no call)
        return events
    roll = rng.random()
    if roll < 0.1:
        events[0]["role"] = "tool"
    elif roll > 0.9 and len(events) > 1:
        events = events[:rng.randint(1, len(events) - 1)]  # it never finishes
        if rng.random() < 0.5:
            events.append({"event": "error", "message": "model broke"})
            deltas = [e for e in events if e.get("event") == "content-block-delta"]
            if deltas and rng.random() < 0.5:  # (a token after the error)
                events.append(dict(rng.choice(deltas)))
    return events


def token_stream(rng: random.Random) -> Tuple[List[Dict[str, Any]], bool]:
    """A random run with model calls, and whether the graph raises at the end."""
    parts: List[Dict[str, Any]] = [{"type": "values", "ns": (), "data": {"v": 0},
                                    "interrupts": []}]
    counter = [0]
    open_without_id: set = set()  # (scopes with a call without a run_id left open)

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def steps(ns: Tuple[str, ...], depth: int) -> None:
        for k in range(rng.randint(1, 3)):
            task_id = fresh("t")
            node = rng.choice(["model", "agent", "sub"])
            parts.append({"type": "tasks", "ns": ns, "data": {
                "id": task_id, "name": node, "input": {}, "triggers": ["x"]}})
            if depth < 2 and rng.random() < 0.3:
                steps(ns + (f"{node}:{task_id}",), depth + 1)
            else:
                n_calls = rng.choice([0, 1, 1, 2])
                calls = []
                for _ in range(n_calls):
                    metadata = {"langgraph_node": node}
                    # (only a lone call goes without a run_id: two would
                    # share the key, a case tested on its own; so does a
                    # later one while an earlier call of the scope without
                    # a run_id never finished)
                    without_id = not (n_calls > 1 or rng.random() < 0.8)
                    if not without_id or ns in open_without_id:
                        metadata["run_id"] = fresh("run-")
                    events = _model_call(rng, fresh("m"))
                    if ("run_id" not in metadata and events
                            and events[-1].get("event") != "message-finish"):
                        open_without_id.add(ns)
                    metas = [metadata] * len(events)
                    if "run_id" in metadata and events and rng.random() < 0.2:
                        # (a UUID run_id, the object on some events and its
                        # text on others: one call, keyed by the text)
                        rid = uuid.UUID(int=counter[0])
                        metas = [dict(metadata, run_id=rid if rng.random() < 0.5 else str(rid))
                                 for _ in events]
                    calls.append([{"type": "messages", "ns": ns, "data": (event, meta)}
                                  for event, meta in zip(events, metas)])
                while any(calls):  # (the calls of one step interleave)
                    parts.append(rng.choice([c for c in calls if c]).pop(0))
                    if rng.random() < 0.1:
                        parts.append({"type": "custom", "ns": ns, "data": {"c": 1}})
                roll = rng.random()
                meta = {"langgraph_node": node, "run_id": fresh("run-")}
                if roll < 0.1:
                    parts.append({"type": "messages", "ns": ns, "data": (
                        AIMessage(content="whole", id=fresh("w")), meta)})
                elif roll < 0.15:
                    parts.append({"type": "messages", "ns": ns, "data": (
                        AIMessageChunk(content="v1"), meta)})
                elif roll < 0.2:
                    parts.append({"type": "messages", "ns": ns, "data": (
                        ToolMessage(content="tool", tool_call_id="c"), meta)})
            parts.append({"type": "updates", "ns": ns, "data": {node: {"v": 1}}})
            parts.append({"type": "tasks", "ns": ns, "data": {
                "id": task_id, "name": node, "error": None, "result": {"v": 1},
                "interrupts": []}})
            parts.append({"type": "values", "ns": ns, "data": {"v": k}, "interrupts": []})

    steps((), 0)
    return parts, rng.random() < 0.15


def _replay(parts: List[Dict[str, Any]], fails: bool) -> Iterator[Dict[str, Any]]:
    for part in parts:
        yield dict(part)
    if fails:
        raise GraphFailed("graph failed")


async def _areplay(parts: List[Dict[str, Any]], fails: bool,
                   rng: random.Random) -> AsyncIterator[Dict[str, Any]]:
    for part in parts:
        yield dict(part)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    if fails:
        raise GraphFailed("graph failed")


def make_run(side: str, parts: List[Dict[str, Any]], fails: bool, is_async: bool,
             seed: int = 0) -> Any:
    source = _areplay(parts, fails, random.Random(seed)) if is_async else _replay(parts, fails)
    if side == "lg":
        factories = [lg_transformers.ValuesTransformer, lg_transformers.MessagesTransformer,
                     lg_transformers.LifecycleTransformer, lg_transformers.SubgraphTransformer]
        mux = lg_mux.StreamMux(factories=factories, is_async=is_async)
        cls = lg_run_stream.AsyncGraphRunStream if is_async else lg_run_stream.GraphRunStream
    else:
        mux = langstream.StreamMux(factories=list(DEFAULT_FACTORIES), is_async=is_async)
        cls = langstream.AsyncGraphRunStream if is_async else langstream.GraphRunStream
    return cls(source, mux)


# ------------------------------------------------------------------ views


def _error(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, RuntimeError) and (
            "the run ended before this model call finished" in text  # langstream
            or "Stream finished without producing a message" in text):  # LangGraph
        return UNFINISHED
    return f"{type(exc).__name__}: {text}"


def _output(message: Any) -> Any:
    if message is None:  # (LangGraph's async output of an unfinished call)
        return UNFINISHED
    return (message.content, [dict(c) for c in message.tool_calls],
            [dict(c) for c in message.invalid_tool_calls], message.usage_metadata, message.id)


def _deltas(items: List[Any]) -> List[Any]:
    # an unfinished call: the deltas that arrived (LangGraph's end silently)
    return items[:-1] if items and items[-1] == UNFINISHED else items


def _item(x: Any) -> Any:
    return x if isinstance(x, str) else dict(x)


def _sync_message(msg: Any, deltas: bool) -> Dict[str, Any]:
    view: Dict[str, Any] = {"ns": list(msg.namespace), "node": msg.node, "id": msg.message_id}
    if deltas:
        for key in ("text", "reasoning", "tool_calls"):
            items: List[Any] = []
            try:
                for x in getattr(msg, key):
                    items.append(_item(x))
            except Exception as exc:  # noqa: BLE001 - compared between the two
                items.append(_error(exc))
            view[key] = _deltas(items)
    try:
        view["output"] = _output(msg.output)
    except Exception as exc:  # noqa: BLE001
        view["output"] = _error(exc)
    return view


async def _async_message(msg: Any, deltas: bool) -> Dict[str, Any]:
    view: Dict[str, Any] = {"ns": list(msg.namespace), "node": msg.node, "id": msg.message_id}
    if deltas:
        for key in ("text", "reasoning", "tool_calls"):
            items: List[Any] = []
            try:
                async for x in getattr(msg, key):
                    items.append(_item(x))
            except Exception as exc:  # noqa: BLE001
                items.append(_error(exc))
            view[key] = _deltas(items)
    try:
        view["output"] = _output(await msg.output)
    except Exception as exc:  # noqa: BLE001
        view["output"] = _error(exc)
    return view


def observe_sync(side: str, parts: List[Dict[str, Any]], fails: bool, program: int) -> Any:
    """Program 0 reads each stream as it comes, 1 takes them all first and
    then reads each one's output, 2 walks the handles (``interleave`` of
    messages and subgraphs at every level)."""
    run = make_run(side, parts, fails, False)
    seen: List[Any] = []

    def walk(stream: Any) -> List[Any]:
        out: List[Any] = []
        for name, item in stream.interleave("messages", "subgraphs"):
            if name == "messages":
                out.append(_sync_message(item, True))
            else:
                out.append(("handle", list(item.path), item.graph_name, walk(item)))
        return out

    try:
        if program == 0:
            for msg in run.messages:
                seen.append(_sync_message(msg, True))
        elif program == 1:
            for msg in list(run.messages):
                seen.append(_sync_message(msg, False))
        else:
            seen = walk(run)
    except Exception as exc:  # noqa: BLE001
        seen.append(_error(exc))
    try:
        output = run.output
    except Exception as exc:  # noqa: BLE001
        output = _error(exc)
    return seen, output


async def observe_async(side: str, parts: List[Dict[str, Any]], fails: bool, program: int,
                        seed: int) -> Any:
    run = make_run(side, parts, fails, True, seed)
    seen: List[Any] = []
    try:
        if program == 0:
            async for msg in run.messages:
                seen.append(await asyncio.wait_for(_async_message(msg, True), 10))
        else:
            for msg in [m async for m in run.messages]:
                seen.append(await asyncio.wait_for(_async_message(msg, False), 10))
    except Exception as exc:  # noqa: BLE001
        seen.append(_error(exc))
    try:
        output = await asyncio.wait_for(run.output(), 10)
    except Exception as exc:  # noqa: BLE001
        output = _error(exc)
    return seen, output


# ------------------------------------------------------------------ the property


SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("program", [0, 1, 2])
@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_sync_messages_match_langgraph(backend, program, seed):
    parts, fails = token_stream(random.Random(seed))
    lg = observe_sync("lg", parts, fails, program)
    if program == 2 and UNFINISHED in repr(lg):
        return  # (see the module docstring)
    assert observe_sync("ls", parts, fails, program) == lg


@pytest.mark.parametrize("program", [0, 1])
@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_async_messages_match_langgraph(backend, program, seed):
    parts, fails = token_stream(random.Random(seed))
    lg = asyncio.run(observe_async("lg", parts, fails, program, seed))
    assert asyncio.run(observe_async("ls", parts, fails, program, seed)) == lg


def test_the_streams_have_what_the_property_is_about():
    """Over the seeds: every protocol event kind, tool-role calls, unfinished
    and failed calls, calls without a run_id, whole messages, v1 chunks and
    tool messages, calls in subgraphs, interleaved calls, failing graphs."""
    counts: Dict[str, int] = {}

    def bump(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    for seed in range(200):
        parts, fails = token_stream(random.Random(seed))
        if fails:
            bump("fails")
        open_calls: Dict[Any, int] = {}
        for i, part in enumerate(parts):
            if part["type"] != "messages":
                continue
            payload, metadata = part["data"]
            if part["ns"]:
                bump("in a subgraph")
            if not isinstance(payload, dict):
                bump(type(payload).__name__)
                continue
            bump(payload["event"])
            key = metadata.get("run_id")
            if key is None:
                bump("no run_id")
            if payload["event"] == "message-start":
                if payload.get("role") == "tool":
                    bump("tool role")
                if any(k != key for k in open_calls):
                    bump("interleaved")
                open_calls[key] = i
            elif payload["event"] in ("message-finish", "error"):
                open_calls.pop(key, None)
        if open_calls:
            bump("unfinished")
    for key in ("fails", "in a subgraph", "AIMessage", "AIMessageChunk", "ToolMessage",
                "message-start", "content-block-start", "content-block-delta",
                "content-block-finish", "message-finish", "error", "no run_id", "tool role",
                "interleaved", "unfinished"):
        assert counts.get(key, 0) >= 3, (key, counts)
