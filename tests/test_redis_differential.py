"""Property test: a published run, attached from Redis, is the local run.

Random agent-shaped runs (``_agent_streams``: nested subgraphs, task results
that never come, failed and interrupted results, a graph that raises) are
published to a real redis-server; what an attached reader sees (every
projection, the handle tree at every depth with statuses and errors,
``output`` / ``interrupted`` / ``interrupts``, the raw log and a resume from
a random ``seq``) must equal what a local consumer of the same run sees, on
both lanes and both backends.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import langstream
from _agent_streams import agent_stream, areplay, replay
from redis_helpers import (  # noqa: F401 - fixtures
    asnapshot, need_redis_client, raw_log, rclient, redis_url, snapshot,
)

from langstream.integrations.redis import aattach, attach, publish  # noqa: E402

EXTRA = [langstream.UpdatesTransformer, langstream.CustomTransformer]
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    # (the fixtures hold the backend and the server for every example)
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def _parts(seed):
    parts, fails = agent_stream(random.Random(seed), snapshots=seed % 2 == 0)
    return parts, fails


def _replay(parts, fails):
    return replay(parts, fails, ValueError)  # (a builtin error crosses as itself)


def _areplay(parts, fails, rng):
    return areplay(parts, fails, rng, ValueError)


def _untimed(log):
    # timestamps are taken when a part is converted: equal within one run only
    events, err = log
    return [{**e, "params": {**e["params"], "timestamp": 0}} for e in events], err


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_sync_attached_run_is_the_local_run(backend, rclient, seed):
    parts, fails = _parts(seed)
    expected = snapshot(langstream.stream_events(_replay(parts, fails), transformers=EXTRA))
    expected_raw = raw_log(langstream.stream_events(_replay(parts, fails), transformers=EXTRA))
    key = f"langstream-test:{{{uuid.uuid4().hex}}}"
    try:
        producer = publish(langstream.stream_events(_replay(parts, fails), transformers=EXTRA),
                           rclient, key)
        assert snapshot(producer) == expected
        assert snapshot(attach(rclient, key)) == expected
        remote_raw = raw_log(attach(rclient, key))
        assert _untimed(remote_raw) == _untimed(expected_raw)
        # a reader resuming after any seq gets exactly the rest
        k = random.Random(seed).randint(0, len(remote_raw[0]))
        assert raw_log(attach(rclient, key, after_seq=k)) == (remote_raw[0][k:], remote_raw[1])
    finally:
        rclient.delete(key)


@SETTINGS
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_async_attached_run_is_the_local_run(backend, redis_url, seed):
    need_redis_client()
    import redis.asyncio as aredis

    parts, fails = _parts(seed)

    async def main():
        client = aredis.Redis.from_url(redis_url)
        key = f"langstream-test:{{{uuid.uuid4().hex}}}"
        try:
            expected = await asnapshot(langstream.astream_events(
                _areplay(parts, fails, random.Random(seed)), transformers=EXTRA))
            mine = await asnapshot(publish(langstream.astream_events(
                _areplay(parts, fails, random.Random(seed)), transformers=EXTRA), client, key))
            remote = await asnapshot(aattach(client, key))
        finally:
            await client.delete(key)
            await client.aclose()
        return expected, mine, remote

    expected, mine, remote = asyncio.run(main())
    for snap in (expected, mine, remote):
        snap["raw"] = _untimed(snap["raw"])
    assert mine == expected
    assert remote == expected
