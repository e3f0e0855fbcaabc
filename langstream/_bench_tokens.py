"""Token scenario of ``python -m langstream bench --tokens N``.

A real LangGraph graph (one node) calls a fake chat model (no network) that
streams ``N`` one-word tokens; the consumer reads every ``msg.text`` delta of
``run.messages``.  Contenders, the same graph and the same default pipeline
(values, messages, lifecycle, subgraphs) on both sides, sync and async lanes,
interleaved within each round:

* ``graph.stream``: the floor, the graph's own v2 parts (message switch on, the
  same stream modes) iterated directly, counting the text deltas;
* ``langstream (c)`` / ``langstream (python)``:
  ``stream_graph`` / ``astream_graph``;
* ``LangGraph``: ``graph.stream_events(version="v3")`` / ``astream_events``.

Most of that time is the graph's and langchain-core's (the floor).  The
second table isolates the streaming layer: the graph's parts, recorded once,
are replayed through langstream's run stream and through LangGraph's
(``GraphRunStream`` over its ``StreamMux`` with its default pipeline), the
consumer reading every delta the same way.

Figures are ns per token (median of the rounds).  Needs the ``langgraph``
extra; everything is imported when the scenario runs.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional

__all__ = ["make_token_graph", "run_replay", "run_tokens", "format_tokens"]

_perf = time.perf_counter_ns
FLOOR = "graph.stream"


def make_token_graph(tokens: int) -> Any:
    """A compiled one-node graph whose fake model streams ``tokens`` tokens."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langgraph.graph import START, MessagesState, StateGraph

    class TokenModel(BaseChatModel):
        """Streams ``n`` tokens ``"tok "`` (no network)."""

        n: int

        @property
        def _llm_type(self) -> str:
            return "langstream-bench-tokens"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            return ChatResult(generations=[ChatGeneration(message=AIMessage("tok " * self.n))])

        def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None,
                    **kwargs: Any) -> Any:
            for _ in range(self.n):
                yield ChatGenerationChunk(message=AIMessageChunk(content="tok "))

    model = TokenModel(n=tokens)

    def chat(state: Any) -> Dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    return builder.compile()


def _input() -> Dict[str, Any]:
    from langchain_core.messages import HumanMessage

    return {"messages": [HumanMessage("go", id="in")]}


# ---------------------------------------------------------------- contenders


def _floor_config() -> Dict[str, Any]:
    from langstream.integrations.langgraph import _messages_v2

    return _messages_v2(None)


def _modes() -> List[str]:
    from langstream.integrations.langgraph import _pipeline, required_stream_modes
    from langstream.mux import StreamMux

    return required_stream_modes(StreamMux(factories=_pipeline(None, ())))


def _is_delta(part: Dict[str, Any]) -> bool:
    if part["type"] != "messages":
        return False
    payload = part["data"][0]
    return isinstance(payload, dict) and payload.get("event") == "content-block-delta"


def _sync_contenders(backends: Dict[str, Any], with_lg: bool) -> Dict[str, Callable[[Any], int]]:
    from langstream._bench import LG, LS_C, LS_PY, use_backend
    from langstream.integrations.langgraph import stream_graph

    modes = _modes()

    def floor(graph: Any) -> int:
        count = 0
        for part in graph.stream(_input(), _floor_config(), stream_mode=modes,
                                 subgraphs=True, version="v2"):
            if _is_delta(part):
                count += 1
        return count

    def read(run: Any) -> int:
        count = 0
        for msg in run.messages:
            for _delta in msg.text:
                count += 1
        return count

    out: Dict[str, Callable[[Any], int]] = {FLOOR: floor}
    for name, module in backends.items():
        def ls(graph: Any, _m: Any = module) -> int:
            with use_backend(_m):
                return read(stream_graph(graph, _input()))
        out[LS_C if name == "c" else LS_PY] = ls
    if with_lg:
        out[LG] = lambda graph: read(graph.stream_events(_input(), version="v3"))
    return out


def _async_contenders(backends: Dict[str, Any], with_lg: bool) -> Dict[str, Callable[[Any], Any]]:
    from langstream._bench import LG, LS_C, LS_PY, use_backend
    from langstream.integrations.langgraph import astream_graph

    modes = _modes()

    async def floor(graph: Any) -> int:
        count = 0
        async for part in graph.astream(_input(), _floor_config(), stream_mode=modes,
                                        subgraphs=True, version="v2"):
            if _is_delta(part):
                count += 1
        return count

    async def read(run: Any) -> int:
        count = 0
        async for msg in run.messages:
            async for _delta in msg.text:
                count += 1
        return count

    out: Dict[str, Callable[[Any], Any]] = {FLOOR: floor}
    for name, module in backends.items():
        async def ls(graph: Any, _m: Any = module) -> int:
            with use_backend(_m):
                return await read(astream_graph(graph, _input()))
        out[LS_C if name == "c" else LS_PY] = ls
    if with_lg:
        async def lg(graph: Any) -> int:
            return await read(await graph.astream_events(_input(), version="v3"))
        out[LG] = lg
    return out


def _record(graph: Any) -> List[Dict[str, Any]]:
    return list(graph.stream(_input(), _floor_config(), stream_mode=_modes(),
                             subgraphs=True, version="v2"))


def _replay_contenders(backends: Dict[str, Any], lg: Optional[Dict[str, Any]],
                       is_async: bool) -> Dict[str, Callable[[Any], Any]]:
    """Contenders over recorded parts: ``f(parts) -> deltas read``."""
    from langstream import astream_events, stream_events
    from langstream._bench import LG, LS_C, LS_PY, use_backend

    def read(run: Any) -> int:
        return sum(1 for msg in run.messages for _delta in msg.text)

    async def aread(run: Any) -> int:
        count = 0
        async for msg in run.messages:
            async for _delta in msg.text:
                count += 1
        return count

    async def agen(parts: List[Any]) -> Any:
        for part in parts:
            yield part

    out: Dict[str, Callable[[Any], Any]] = {}
    for name, module in backends.items():
        key = LS_C if name == "c" else LS_PY
        if is_async:
            async def ls_a(parts: Any, _m: Any = module) -> int:
                with use_backend(_m):
                    return await aread(astream_events(agen(parts)))
            out[key] = ls_a
        else:
            def ls_s(parts: Any, _m: Any = module) -> int:
                with use_backend(_m):
                    return read(stream_events(iter(parts)))
            out[key] = ls_s
    if lg is not None:
        if is_async:
            async def lg_a(parts: Any) -> int:
                mux = lg["StreamMux"](factories=list(lg["factories"]), is_async=True)
                return await aread(lg["AsyncGraphRunStream"](agen(parts).__aiter__(), mux))
            out[LG] = lg_a
        else:
            def lg_s(parts: Any) -> int:
                mux = lg["StreamMux"](factories=list(lg["factories"]), is_async=False)
                return read(lg["GraphRunStream"](iter(parts), mux))
            out[LG] = lg_s
    return out


def run_replay(tokens: int, rounds: int, warmup: int, backends: Dict[str, Any],
               lg: Optional[Dict[str, Any]], lanes: List[str]) -> Dict[str, Dict[str, List[float]]]:
    """ns per token of the streaming layer alone (recorded parts replayed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = _record(make_token_graph(tokens))
    raw: Dict[str, Dict[str, List[float]]] = {}
    for lane in lanes:
        contenders = _replay_contenders(backends, lg, lane == "async")
        table: Dict[str, List[float]] = {}

        async def one(fn: Any) -> int:
            return await fn(parts)

        for r in range(warmup + rounds):
            for key, fn in _order(contenders, r):
                gc.collect()
                start = _perf()
                got = asyncio.run(one(fn)) if lane == "async" else fn(parts)
                elapsed = _perf() - start
                _check(f"replay {key}", got, tokens)
                if r >= warmup:
                    table.setdefault(key, []).append(elapsed / tokens)
            _progress(f"tokens replay {lane} round {r + 1}/{warmup + rounds}")
        raw[lane] = table
    return raw


# ---------------------------------------------------------------- rounds


def run_tokens(tokens: int, rounds: int, warmup: int, backends: Dict[str, Any],
               with_lg: bool, lanes: List[str]) -> Dict[str, Dict[str, List[float]]]:
    """ns per token of every contender, per lane: ``{lane: {key: [per round]}}``.

    Raises:
        RuntimeError: a contender read another number of deltas than
            ``tokens`` (the comparison would be meaningless).
    """
    graph = make_token_graph(tokens)
    raw: Dict[str, Dict[str, List[float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "sync" in lanes:
            table: Dict[str, List[float]] = {}
            contenders = _sync_contenders(backends, with_lg)
            for r in range(warmup + rounds):
                for key, fn in _order(contenders, r):
                    gc.collect()
                    start = _perf()
                    got = fn(graph)
                    elapsed = _perf() - start
                    _check(key, got, tokens)
                    if r >= warmup:
                        table.setdefault(key, []).append(elapsed / tokens)
                _progress(f"tokens sync  round {r + 1}/{warmup + rounds}")
            raw["sync"] = table
        if "async" in lanes:
            atable: Dict[str, List[float]] = {}
            acontenders = _async_contenders(backends, with_lg)

            async def all_rounds() -> None:
                for r in range(warmup + rounds):
                    for key, fn in _order(acontenders, r):
                        gc.collect()
                        start = _perf()
                        got = await fn(graph)
                        elapsed = _perf() - start
                        _check(key, got, tokens)
                        if r >= warmup:
                            atable.setdefault(key, []).append(elapsed / tokens)
                    _progress(f"tokens async round {r + 1}/{warmup + rounds}")

            asyncio.run(all_rounds())
            raw["async"] = atable
    return raw


def _order(contenders: Dict[str, Any], r: int) -> List[Any]:
    items = list(contenders.items())
    k = r % len(items)
    return items[k:] + items[:k]


def _check(key: str, got: int, tokens: int) -> None:
    if got != tokens:
        raise RuntimeError(f"token scenario: {key} read {got} text deltas, expected {tokens}")


def _progress(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def format_tokens(raw: Dict[str, Dict[str, List[float]]], tokens: int, rounds: int,
                  lg_version: Optional[str], replay: bool = False) -> str:
    """The token scenario's table (median, min, max ns per token)."""
    from langstream._bench import LABELS, LG

    labels = dict(LABELS)
    labels[FLOOR] = "graph.stream (floor)"
    title = (
        f"token scenario, streaming layer alone: the graph's {tokens:,}-token run "
        f"recorded, then replayed; consumer reads every msg.text delta; median of "
        f"{rounds} rounds"
        if replay else
        f"token scenario: a fake model streams {tokens:,} tokens in a one-node graph, "
        f"consumer reads every msg.text delta of run.messages; median of {rounds} rounds"
    )
    lines = [
        "",
        title,
        "",
        f"| {'lane':5} | {'contender':26} | {'ns/token median':>15} | {'min':>8} | {'max':>8} |",
        f"|{'-' * 7}|{'-' * 28}|{'-' * 17}|{'-' * 10}|{'-' * 10}|",
    ]
    for lane, table in raw.items():
        for key, samples in table.items():
            label = labels.get(key, key) + (f" {lg_version}" if key == LG and lg_version else "")
            lines.append(
                f"| {lane:5} | {label:26} | {statistics.median(samples):15,.0f} | "
                f"{min(samples):8,.0f} | {max(samples):8,.0f} |"
            )
    return "\n".join(lines)
