"""``run.messages`` across Redis: token streams rebuilt remotely from the wire."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pytest

import langstream
from langstream.integrations.redis import aattach, attach, publish

from helpers import areplay, arun, replay
from redis_helpers import rclient, redis_url, rkey  # noqa: F401 - fixtures

pytest.importorskip(
    "langstream._messages",
    reason="the messages projection (issue 14) is not in this tree yet; runs once merged",
)
pytest.importorskip("langchain_core", reason="token streams need langchain-core")


def msg_part(event: Dict[str, Any], run_id: str, ns: Sequence[str] = ()) -> Dict[str, Any]:
    return {"type": "messages", "ns": tuple(ns),
            "data": (event, {"run_id": run_id, "langgraph_node": "model",
                             "tags": ("a", "b")})}


def call(run_id: str, words: Sequence[str], ns: Sequence[str] = ()) -> List[Dict[str, Any]]:
    parts = [msg_part({"event": "message-start", "role": "ai", "id": f"msg-{run_id}"}, run_id, ns),
             msg_part({"event": "content-block-start", "index": 0,
                       "content": {"type": "text", "text": ""}}, run_id, ns)]
    for word in words:
        parts.append(msg_part({"event": "content-block-delta", "index": 0,
                               "delta": {"type": "text-delta", "text": word}}, run_id, ns))
    parts.append(msg_part({"event": "content-block-finish", "index": 0,
                           "content": {"type": "text", "text": "".join(words)}}, run_id, ns))
    parts.append(msg_part({"event": "message-finish",
                           "usage": {"input_tokens": 1, "output_tokens": len(words),
                                     "total_tokens": 1 + len(words)}}, run_id, ns))
    return parts


PARTS = ([{"type": "values", "ns": (), "data": {"n": 0}, "interrupts": ()}]
         + call("r1", ["Hel", "lo", " wor", "ld"])
         + [{"type": "values", "ns": (), "data": {"n": 1}, "interrupts": ()}]
         + call("r2", ["é", "✓"]))


def read(run):
    return [(list(m.namespace), m.node, list(m.text), str(m.text)) for m in run.messages]


async def aread(run):
    return [(list(m.namespace), m.node, [d async for d in m.text], await m.text)
            async for m in run.messages]


def test_sync_messages_equal_local(backend, rclient, rkey):
    expected = read(langstream.stream_events(replay(PARTS)))
    assert expected and expected[0][3] == "Hello world"
    assert read(publish(langstream.stream_events(replay(PARTS)), rclient, rkey)) == expected
    assert read(attach(rclient, rkey)) == expected


def test_async_messages_equal_local(backend, redis_url, rkey):
    import redis.asyncio as aredis

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            expected = await aread(langstream.astream_events(areplay(PARTS)))
            await publish(langstream.astream_events(areplay(PARTS)), client, rkey).output()
            return expected, await aread(aattach(client, rkey))
        finally:
            await client.aclose()

    expected, got = arun(main())
    assert got == expected and expected[1][3] == "é✓"
