"""A run that stops early gives its pooled Redis connection back (real redis-server).

The publisher holds one connection of the client's pool from its first write
to the run's end.  A run dropped before its end (garbage collected), or a
producer task cancelled while it waits for Redis, must return it, on both
lanes: a leaked connection is one fewer for the app, until the pool runs out.
An attached reader holds none between reads, whatever stops it.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

import langstream
from langstream.integrations.redis import aattach, attach, publish

from helpers import areplay, arun, replay
from redis_helpers import (  # noqa: F401 - fixtures
    RedisServer, need_redis_client, rclient, redis_url, rkey,
)

LANES = ["sync", "async"]


def parts_n(n):
    return [{"type": "values", "ns": (), "data": {"i": i}} for i in range(n)]


def _in_use(client):
    return len(client.connection_pool._in_use_connections)


def _collect():
    for _ in range(3):  # PyPy may need more than one pass
        gc.collect()


async def _turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("lane", LANES)
def test_a_published_run_dropped_before_its_end_gives_its_connection_back(
        backend, redis_url, rkey, lane):
    redis = need_redis_client()
    if lane == "sync":
        client = redis.Redis.from_url(redis_url)
        try:
            run = publish(langstream.stream_events(replay(parts_n(50))), client, rkey)
            it = iter(run.values)
            assert [next(it)["i"] for _ in range(3)] == [0, 1, 2]
            assert _in_use(client) == 1  # held while the run is live
            del run, it
            _collect()
            assert _in_use(client) == 0
            assert client.ping()  # the pool still serves
        finally:
            client.close()
        return

    import redis.asyncio as aredis

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            run = publish(langstream.astream_events(areplay(parts_n(50))), client, rkey)
            it = run.values.__aiter__()
            assert [(await it.__anext__())["i"] for _ in range(3)] == [0, 1, 2]
            assert _in_use(client) == 1  # held while the run is live
            del run, it
            _collect()
            await _turns()  # the loop gives it back, in a task of its own
            in_use = _in_use(client)
            assert await client.ping()  # the pool still serves
            return in_use, _in_use(client)
        finally:
            await client.aclose()

    assert arun(main()) == (0, 0)


def test_an_async_run_dropped_after_its_loop_closed_raises_nothing(backend, redis_url, rkey):
    import redis.asyncio as aredis

    holder = {}

    async def main():
        client = aredis.Redis.from_url(redis_url)
        run = publish(langstream.astream_events(areplay(parts_n(50))), client, rkey)
        it = run.values.__aiter__()
        await it.__anext__()
        holder["run"], holder["it"] = run, it  # outlives the loop
        await client.aclose()

    arun(main())
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        holder.clear()
        _collect()
    finally:
        sys.unraisablehook = old_hook
    assert [(u.object, u.exc_value) for u in unraisable] == []


@pytest.fixture
def server():
    """A private redis-server: this test pauses its writers."""
    srv = RedisServer().start()
    yield srv
    srv.stop()


def test_a_producer_task_cancelled_while_redis_is_slow_gives_the_connection_back(
        backend, server, rkey):
    """Cancelled mid-write: the connection is back at once, and the run goes on complete."""
    redis = need_redis_client()
    import redis.asyncio as aredis

    admin = redis.Redis(port=server.port)

    async def main():
        client = aredis.Redis(port=server.port)
        try:
            run = publish(langstream.astream_events(areplay(parts_n(20))), client, rkey)
            it = run.values.__aiter__()
            # XADD now waits (the first write waits for its reply: a key
            # already used must fail the run before anything else is sent)
            admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
            try:
                task = asyncio.ensure_future(it.__anext__())
                await asyncio.sleep(0.3)
                assert not task.done()  # waiting for Redis's reply to its XADD
                assert _in_use(client) == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await _turns()
                after_cancel = _in_use(client)
            finally:
                admin.execute_command("CLIENT", "UNPAUSE")
            rest = [v["i"] async for v in it]  # the run goes on from where it was
            after_end = _in_use(client)
            remote = [e["seq"] async for e in aattach(client, rkey, wait_timeout=5)]
            return after_cancel, rest, after_end, remote
        finally:
            await client.aclose()

    try:
        after_cancel, rest, after_end, remote = arun(main())
    finally:
        admin.close()
    assert after_cancel == 0
    assert after_end == 0
    assert rest == list(range(20))  # nothing lost to the cancel
    assert remote == list(range(1, len(remote) + 1)) and len(remote) >= 20  # gapless


@pytest.mark.parametrize("lane", LANES)
def test_an_attached_reader_dropped_before_the_end_holds_no_connection(
        backend, redis_url, rclient, rkey, lane):
    producer = publish(langstream.stream_events(replay(parts_n(10))), rclient, rkey)
    produced = iter(producer)
    for _ in range(4):
        next(produced)
    redis = need_redis_client()
    if lane == "sync":
        client = redis.Redis.from_url(redis_url)
        try:
            remote = attach(client, rkey)
            it = iter(remote.values)
            assert [next(it)["i"] for _ in range(3)] == [0, 1, 2]
            del remote, it
            _collect()
            assert _in_use(client) == 0
        finally:
            client.close()
    else:
        import redis.asyncio as aredis

        async def main():
            client = aredis.Redis.from_url(redis_url)
            try:
                remote = aattach(client, rkey, block=5)
                it = remote.values.__aiter__()
                got = [(await it.__anext__())["i"] for _ in range(4)]
                # the next read blocks in XREAD (nothing new yet); its task is
                # cancelled as a server cancels a request whose client left
                task = asyncio.ensure_future(it.__anext__())
                await asyncio.sleep(0.2)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                del remote, it, task
                _collect()
                await _turns()
                return got, _in_use(client)
            finally:
                await client.aclose()

        assert arun(main()) == ([0, 1, 2, 3], 0)
    list(produced)
