"""``run.messages`` (MessagesTransformer) and ``run.all_messages``
(AllMessagesTransformer) on hand-made message events, sync and async, on both
backends; and the core without langchain-core."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Sequence

import pytest
from _langgraph_support import require_langgraph
from helpers import areplay, arun, replay

import langstream
from langstream import astream_events, stream_events

# ---------------------------------------------------------------- helpers


def msg_part(event: Dict[str, Any], run_id: str, ns: Sequence[str] = (),
             node: str = "model") -> Dict[str, Any]:
    return {"type": "messages", "ns": tuple(ns),
            "data": (event, {"run_id": run_id, "langgraph_node": node})}


def call(run_id: str, words: Sequence[str], ns: Sequence[str] = (), finish: bool = True,
         role: str = "ai") -> List[Dict[str, Any]]:
    """The v2 message events of one model call streaming ``words``."""
    parts = [
        msg_part({"event": "message-start", "role": role, "id": f"msg-{run_id}"}, run_id, ns),
        msg_part({"event": "content-block-start", "index": 0,
                  "content": {"type": "text", "text": ""}}, run_id, ns),
    ]
    for word in words:
        parts.append(msg_part({"event": "content-block-delta", "index": 0,
                               "delta": {"type": "text-delta", "text": word}}, run_id, ns))
    if finish:
        parts.append(msg_part({"event": "content-block-finish", "index": 0,
                               "content": {"type": "text", "text": "".join(words)}}, run_id, ns))
        parts.append(msg_part({"event": "message-finish",
                               "usage": {"input_tokens": 1, "output_tokens": len(words),
                                         "total_tokens": 1 + len(words)}}, run_id, ns))
    return parts


def _delta(word: str, run_id: str) -> Dict[str, Any]:
    """One text token of the call ``run_id``."""
    return msg_part({"event": "content-block-delta", "index": 0,
                     "delta": {"type": "text-delta", "text": word}}, run_id)


def values(n: int, ns: Sequence[str] = ()) -> Dict[str, Any]:
    return {"type": "values", "ns": tuple(ns), "data": {"n": n}, "interrupts": ()}


@pytest.fixture
def lc(backend):
    require_langgraph()
    return backend


def read_sync(run: Any, key: str = "messages") -> List[Any]:
    out = []
    for msg in getattr(run, key):
        out.append((list(msg.namespace), msg.node, list(msg.text), str(msg.text)))
    return out


async def read_async(run: Any, key: str = "messages") -> List[Any]:
    out = []
    async for msg in getattr(run, key):
        out.append((list(msg.namespace), msg.node, [d async for d in msg.text],
                    await msg.text))
    return out


def run_lane(lane: str, parts: List[Dict[str, Any]], key: str = "messages", **kwargs: Any):
    if lane == "sync":
        return read_sync(stream_events(replay(parts), **kwargs), key)
    return arun(read_async(astream_events(areplay(parts), **kwargs), key))


LANES = ["sync", "async"]

# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("lane", LANES)
def test_one_stream_per_model_call_in_start_order(lc, lane):
    a, b = call("r1", ["hel", "lo"]), call("r2", ["wor", "ld"])
    # the two calls interleave; each stream gets only its own call's events
    parts = [values(0), a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], *a[4:], *b[4:],
             values(1)]
    assert run_lane(lane, parts) == [
        ([], "model", ["hel", "lo"], "hello"),
        ([], "model", ["wor", "ld"], "world"),
    ]


def test_stream_is_pushed_at_the_first_event_and_fed_as_the_run_goes(lc):
    parts = call("r1", ["a", "b", "c"])
    pulled = []

    def source():
        for part in parts:
            pulled.append(part)
            yield part

    run = stream_events(source())
    msg = next(iter(run.messages))
    assert len(pulled) == 1  # message-start only
    assert not msg.done
    text = iter(msg.text)
    assert next(text) == "a"
    assert len(pulled) == 3  # block start + first delta
    assert list(text) == ["b", "c"]
    assert msg.output.usage_metadata["output_tokens"] == 3


@pytest.mark.parametrize("lane", LANES)
def test_own_scope_only_and_handles_have_their_own(lc, lane):
    sub = ("sub:t1",)
    parts = [
        values(0),
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "input": None,
                                              "triggers": []}},
        values(0, sub),
        *call("r-sub", ["deep"], sub),
        *call("r-root", ["top"]),
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "result": {},
                                              "error": None, "interrupts": []}},
        values(1),
    ]
    if lane == "sync":
        run = stream_events(replay(parts))
        handle_msgs = []
        root = iter(run.messages)
        for handle in run.subgraphs:
            handle_msgs = read_sync(handle)
        root_msgs = [str(m.text) for m in root]
    else:
        async def main():
            run = astream_events(areplay(parts))
            root = run.messages.__aiter__()
            handle_msgs = []
            async for handle in run.subgraphs:
                handle_msgs = await read_async(handle)
            return handle_msgs, [await m.text async for m in root]
        handle_msgs, root_msgs = arun(main())
    assert handle_msgs == [([], "model", ["deep"], "deep")]
    assert root_msgs == ["top"]


@pytest.mark.parametrize("lane", LANES)
def test_all_messages_every_depth_with_namespace(lc, lane):
    deep = ("sub:t1", "inner:t2")
    parts = [*call("r1", ["top"]), *call("r2", ["down"], deep), *call("r3", ["mid"], deep[:1])]
    got = run_lane(lane, parts, "all_messages",
                   transformers=[langstream.AllMessagesTransformer])
    assert got == [
        ([], "model", ["top"], "top"),
        (list(deep), "model", ["down"], "down"),
        (["sub:t1"], "model", ["mid"], "mid"),
    ]


@pytest.mark.parametrize("lane", LANES)
def test_tool_messages_and_v1_chunks_are_not_projected(lc, lane):
    from langchain_core.messages import AIMessage, AIMessageChunk

    parts = [
        *call("tool-run", ["42"], role="tool"),
        {"type": "messages", "ns": (), "data": (AIMessageChunk(content="v1"), {"run_id": "x"})},
        {"type": "messages", "ns": (), "data": (AIMessage(content="whole", id="w1"),
                                                 {"langgraph_node": "n"})},
    ]
    # a whole AIMessage (a node returned it) becomes an already-finished stream
    assert run_lane(lane, parts) == [([], "n", ["whole"], "whole")]


@pytest.mark.parametrize("lane", LANES)
def test_run_failing_mid_call_fails_the_open_stream(lc, lane):
    boom = ValueError("graph broke")
    parts = call("r1", ["a", "b"], finish=False)
    if lane == "sync":
        run = stream_events(replay(parts, error=boom))
        msg = next(iter(run.messages))
        seen = []
        with pytest.raises(ValueError, match="graph broke"):
            for delta in msg.text:
                seen.append(delta)
        with pytest.raises(ValueError, match="graph broke"):
            msg.output
    else:
        async def main():
            run = astream_events(areplay(parts, error=boom))
            msg = await run.messages.__aiter__().__anext__()
            seen = []
            with pytest.raises(ValueError, match="graph broke"):
                async for delta in msg.text:
                    seen.append(delta)
            with pytest.raises(ValueError, match="graph broke"):
                await msg.output
            return seen
        seen = arun(main())
    assert seen == ["a", "b"]


@pytest.mark.parametrize("lane", LANES)
def test_run_ending_before_message_finish_does_not_hang(lc, lane):
    parts = call("r1", ["a"], finish=False)
    if lane == "sync":
        run = stream_events(replay(parts))
        msg = next(iter(run.messages))
        assert list(run.values) == []
        with pytest.raises(RuntimeError, match="message-finish"):
            msg.output
    else:
        async def main():
            run = astream_events(areplay(parts))
            msg = await run.messages.__aiter__().__anext__()
            with pytest.raises(RuntimeError, match="message-finish"):
                await asyncio.wait_for(msg.output, 10)
        arun(main())


@pytest.mark.parametrize("lane", LANES)
def test_subgraph_ending_before_message_finish_fails_at_the_subgraphs_end(lc, lane):
    # the handle's reader stops when the subgraph ends, not at the run's end
    sub = ("sub:t1",)
    parts = [
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "input": None,
                                              "triggers": []}},
        *call("r-sub", ["partial"], sub, finish=False),
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "result": {},
                                              "error": None, "interrupts": []}},
        values(1),
        values(2),
    ]
    if lane == "sync":
        run = stream_events(replay(parts))
        handle = next(iter(run.subgraphs))
        msg = next(iter(handle.messages))
        deltas = []
        with pytest.raises(RuntimeError, match="message-finish"):
            for delta in msg.text:
                deltas.append(delta)
        rest = list(run.values)
    else:
        async def main():
            run = astream_events(areplay(parts))
            handle = await run.subgraphs.__aiter__().__anext__()
            msg = await handle.messages.__aiter__().__anext__()
            deltas = []
            with pytest.raises(RuntimeError, match="message-finish"):
                async for delta in msg.text:
                    deltas.append(delta)
            return deltas, [v async for v in run.values]
        deltas, rest = arun(main())
    assert deltas == ["partial"]
    # (subscribed after: the root's snapshots after the subgraph's end were
    # still to come)
    assert rest == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("lane", LANES)
def test_error_event_fails_that_stream_only(lc, lane):
    bad = call("bad", ["x"], finish=False) + [
        msg_part({"event": "error", "message": "provider said no"}, "bad")]
    good = call("good", ["fine"])
    assert _first_fails_second_reads(lane, bad + good, "provider said no") == "fine"


def _errored_call_then(lane: str, graph_error: Any) -> List[str]:
    """A call fails by an ``error`` event, one more of its tokens arrives,
    then the graph ends (raising ``graph_error`` if given); the stream is read
    after the run's end.  Returns its text deltas and what reading them raised."""
    parts = call("bad", ["x"], finish=False) + [
        msg_part({"event": "error", "message": "provider said no"}, "bad"),
        _delta("late", "bad"),
        values(1),
    ]
    if lane == "sync":
        run = stream_events(replay(parts, error=graph_error))
        streams = []
        with contextlib.suppress(ValueError):  # (the graph's error ends the loop)
            for msg in run.messages:
                streams.append(msg)
        deltas = []
        with pytest.raises(Exception) as caught:
            for delta in streams[0].text:
                deltas.append(delta)
        return [*deltas, f"{type(caught.value).__name__}: {caught.value}"]

    async def main():
        run = astream_events(areplay(parts, error=graph_error))
        streams = []
        with contextlib.suppress(ValueError):
            async for msg in run.messages:
                streams.append(msg)
        deltas = []
        with pytest.raises(Exception) as caught:
            async for delta in streams[0].text:
                deltas.append(delta)
        return [*deltas, f"{type(caught.value).__name__}: {caught.value}"]
    return arun(main())


@pytest.mark.parametrize("lane", LANES)
def test_an_errored_call_keeps_its_key_until_the_run_ends(lc, lane):
    # as under LangGraph: after its ``error`` event the call's later events
    # still reach its (failed) stream, and a run that then fails fails the
    # stream again with the run's error; a run that ends normally leaves
    # the event's error
    assert _errored_call_then(lane, None) == [
        "x", "late", "RuntimeError: provider said no"]
    assert _errored_call_then(lane, ValueError("graph broke")) == [
        "x", "late", "ValueError: graph broke"]


def _first_fails_second_reads(lane: str, parts: List[Dict[str, Any]], error: str) -> str:
    """Read every stream of the run: the first one's output must fail with
    ``error``; returns the second one's text."""
    if lane == "sync":
        run = stream_events(replay(parts))
        streams = list(run.messages)
        with pytest.raises(RuntimeError, match=error):
            streams[0].output
        return str(streams[1].text)

    async def main():
        run = astream_events(areplay(parts))
        streams = [m async for m in run.messages]
        with pytest.raises(RuntimeError, match=error):
            await streams[0].output
        return await streams[1].text
    return arun(main())


@pytest.mark.parametrize("lane", LANES)
def test_a_new_message_under_an_open_calls_key_fails_the_open_one(lc, lane):
    # two calls without a run_id share one key: the second message-start
    # fails the first stream at once (LangGraph leaves it open for good)
    first = call("x", ["a"], finish=False)
    second = call("x", ["b", "c"])
    for part in first + second:
        del part["data"][1]["run_id"]
    assert _first_fails_second_reads(
        lane, first + second, "started a new message before finishing") == "bc"


def _interleaved_calls(n: int) -> List[Dict[str, Any]]:
    """``n`` model calls started together, their tokens interleaved."""
    calls = [call(f"r{i}", [f"w{i}a", f"w{i}b"]) for i in range(n)]
    starts = [c[0] for c in calls]
    rest = [p for group in zip(*[c[1:] for c in calls]) for p in group]
    return starts + rest


def test_bounded_run_with_parallel_calls_read_in_their_own_tasks(lc):
    # maxlen=1 and three calls open at once: each stream read in a task of
    # its own never stalls the pump (the README's advice)
    async def main():
        run = astream_events(areplay(_interleaved_calls(3)), maxlen=1)
        tasks = []
        async for msg in run.messages:
            tasks.append(asyncio.ensure_future(msg.text))
        return [await t for t in tasks]

    assert arun(main()) == ["w0aw0b", "w1aw1b", "w2aw2b"]


@pytest.mark.parametrize("yield_every", [0, 1])
def test_bounded_run_read_one_call_at_a_time_does_not_stall(lc, yield_every):
    # each call's text read inside the messages loop, more calls open than
    # maxlen, another consumer driving the pump, both giving the loop a turn
    # per item: the messages reader's task waits for the run (for the text),
    # not for its next stream, so the pump goes on instead of waiting for
    # room in messages for good
    parts = _interleaved_calls(3)

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every), maxlen=1)

        async def inline():
            texts = []
            async for msg in run.messages:
                deltas = []
                async for delta in msg.text:
                    deltas.append(delta)
                    await asyncio.sleep(0)
                texts.append("".join(deltas))
            return texts

        async def raw():
            methods = []
            async for event in run:
                methods.append(event["method"])
                await asyncio.sleep(0)
            return methods

        return await asyncio.gather(raw(), inline())

    raw, texts = arun(main(), timeout=10.0)
    assert texts == ["w0aw0b", "w1aw1b", "w2aw2b"]
    assert raw == ["messages"] * len(parts)


def test_messages_events_stay_in_the_main_log(lc):
    parts = call("r1", ["a"])
    run = stream_events(replay(parts))
    events = list(run)
    assert [e["method"] for e in events] == ["messages"] * len(parts)
    assert [e["seq"] for e in events] == list(range(1, len(parts) + 1))


def test_malformed_metadata_names_the_field(lc):
    parts = [{"type": "messages", "ns": (), "data": ({"event": "message-start"}, "meta")}]
    run = stream_events(replay(parts))
    with pytest.raises(TypeError, match=r"metadata \(data\[1\]\) must be a mapping"):
        run.output


def test_messages_is_in_the_default_pipeline_in_langgraphs_order(lc):
    names = [f.__name__ for f in langstream.DEFAULT_FACTORIES]
    assert names == ["ValuesTransformer", "MessagesTransformer", "LifecycleTransformer",
                     "SubgraphTransformer"]
    from langstream.transformers import MessagesTransformer

    assert MessagesTransformer is langstream.MessagesTransformer


# ---------------------------------------------------------------- without langchain-core

_BLOCK = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "langchain_core" or name.startswith("langchain_core."):
            raise ModuleNotFoundError("No module named 'langchain_core' (blocked)")
        return None

sys.meta_path.insert(0, _Block())
"""


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_importing_langstream_does_not_import_langchain_core():
    proc = _python("""
        import sys
        import langstream, langstream.transformers, langstream.integrations.langgraph
        run = langstream.stream_events(iter([]))
        assert run.output is None
        assert "langchain_core" not in sys.modules, "langchain_core was imported"
        assert "langgraph" not in sys.modules, "langgraph was imported"
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_without_langchain_core_messages_names_the_extra():
    proc = _python(_BLOCK + """
import langstream
names = [f.__name__ for f in langstream.DEFAULT_FACTORIES]
assert "MessagesTransformer" not in names, names
run = langstream.stream_events(iter([{"type": "values", "ns": (), "data": {"n": 1}}]))
try:
    run.messages
except AttributeError as exc:
    print("attr:", exc)
try:
    langstream.MessagesTransformer(())
except ImportError as exc:
    print("import:", exc)
assert run.output == {"n": 1}
""")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("attr:") and "'messages'" in lines[0]
    assert "'.[langgraph]'" in lines[0]
    assert lines[1].startswith("import:") and "'.[langgraph]'" in lines[1]


def _keyed_calls() -> List[Dict[str, Any]]:
    """Three calls told apart only by their metadata's run_id: a UUID object
    on its start and its str form after, an explicit ``None``, and none."""
    import uuid
    rid = uuid.UUID(int=7)
    by_uuid = call("u", ["a", "b"])
    for i, part in enumerate(by_uuid):
        part["data"][1]["run_id"] = rid if i == 0 else str(rid)
    with_none = call("n", ["c"], finish=False)
    for part in with_none:
        part["data"][1]["run_id"] = None
    without = call("w", ["d"])
    for part in without:
        del part["data"][1]["run_id"]
    return by_uuid[:3] + with_none + without + by_uuid[3:]


@pytest.mark.parametrize("lane", LANES)
def test_a_calls_key_is_its_run_id_as_a_str(lc, lane):
    # as under LangGraph: the run_id is compared as a str (a UUID object and
    # its text are one call), and a run_id of None is not a missing one
    # (``"None"`` against ``""``): the call without one does not take over
    # the open call whose run_id is None
    parts = _keyed_calls()
    if lane == "sync":
        run = stream_events(replay(parts))
        streams = list(run.messages)
        seen = [list(streams[0].text), list(streams[2].text)]
    else:
        async def main():
            run = astream_events(areplay(parts))
            streams = [m async for m in run.messages]
            return [[d async for d in streams[0].text], [d async for d in streams[2].text]]
        seen = arun(main())
    assert seen == [["a", "b"], ["d"]]


@pytest.mark.parametrize("lane", LANES)
def test_a_tool_message_under_an_open_calls_key_holds_its_tokens(lc, lane):
    # as under LangGraph: a tool message that starts under the key of an open
    # model call is not projected, and until its finish the key's events go
    # nowhere (tokens included); after it, they reach the open call again
    parts = (call("r", ["a"], finish=False)
             + call("r", [], role="tool", finish=False)[:1]
             + [_delta("during", "r"), msg_part({"event": "message-finish"}, "r"),
                _delta("after", "r")]
             + call("r", ["z"])[2:])
    # (the final text is the block-finish content, "z", on both sides)
    assert run_lane(lane, parts) == [([], "model", ["a", "after", "z"], "z")]
