"""Redis faults, other processes, many readers (against a real redis-server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

import langstream
from langstream.integrations.redis import (
    AttachConnectionError,
    PublishConnectionError,
    RunNotFoundError,
    aattach,
    attach,
    publish,
)

from helpers import arun, areplay, replay, two_children_one_grandchild
from redis_helpers import (  # noqa: F401 - fixtures
    RedisServer, asnapshot, need_redis_client, raw_log, rclient, redis_url, rkey, snapshot,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRA = [langstream.UpdatesTransformer, langstream.CustomTransformer]


def parts_n(n):
    return [{"type": "values", "ns": (), "data": {"i": i}} for i in range(n)]


@pytest.fixture
def server():
    """A private redis-server this test may kill and restart."""
    srv = RedisServer().start()
    yield srv
    srv.stop()


def _no_retry():
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)  # redis-py's own retries would only slow these tests


def client_for(srv, **kw):
    redis = need_redis_client()
    return redis.Redis(port=srv.port, socket_connect_timeout=0.5, socket_timeout=2,
                       retry=_no_retry(), **kw)


# ------------------------------------------------------------ server goes away


def test_reader_gets_connection_error_naming_the_key_then_resumes(backend, server, rkey):
    producer_client = client_for(server)
    run = publish(langstream.stream_events(parts_n(20)), producer_client, rkey, retry_for=10)
    produced = iter(run)
    head = [next(produced) for _ in range(8)]
    reader = attach(client_for(server), rkey, block=0.1)
    it = iter(reader.values)
    assert [next(it) for _ in range(8)] == [e["params"]["data"] for e in head]
    server.stop()
    with pytest.raises(AttachConnectionError) as info:
        next(it)
    assert rkey in str(info.value) and info.value.key == rkey and info.value.last_seq == 8
    assert isinstance(info.value, ConnectionError)
    server.start()  # a fresh server (no persistence): the history is gone
    rest = list(produced)  # the producer reconnects and goes on
    assert [e["seq"] for e in rest] == list(range(9, 21))
    # the same attached run goes on after its last seq: nothing twice, nothing lost
    assert [v["i"] for v in it] == list(range(8, 20))
    assert reader.output == {"i": 19}


def test_reader_resumes_by_attaching_anew_with_last_seq(backend, server, rkey):
    run = publish(langstream.stream_events(parts_n(10)), client_for(server), rkey, retry_for=10)
    produced = iter(run)
    for _ in range(4):
        next(produced)
    reader = attach(client_for(server), rkey, block=0.1)
    it = iter(reader)
    seen = [next(it) for _ in range(4)]
    server.stop()
    with pytest.raises(AttachConnectionError) as info:
        next(it)
    assert info.value.last_seq == 4
    server.start()
    rest = list(produced)
    again = attach(client_for(server), rkey, after_seq=info.value.last_seq)
    assert raw_log(again) == (rest, None)
    assert [e["seq"] for e in seen + rest] == list(range(1, 11))


def test_a_key_lost_with_the_server_is_not_found_after_the_timeout(backend, server, rkey):
    publish(langstream.stream_events(parts_n(3)), client_for(server), rkey).output
    server.stop()
    server.start()
    again = attach(client_for(server), rkey, after_seq=2, wait_timeout=0.2, block=0.05)
    with pytest.raises(RunNotFoundError, match=rkey):
        list(again)


def test_producer_retries_through_a_restart(backend, server, rkey):
    client = client_for(server)
    run = publish(langstream.stream_events(parts_n(30)), client, rkey, retry_for=15)
    it = iter(run.values)
    assert [next(it)["i"] for _ in range(10)] == list(range(10))
    server.stop()
    restarter = threading.Timer(0.5, server.start)
    restarter.start()
    try:
        rest = [v["i"] for v in it]  # blocks in the retry loop until the server is back
    finally:
        restarter.join()
    assert rest == list(range(10, 30))
    ids = [e[0].decode() for e in client.xrange(rkey)]
    # what came after the restart, and the unconfirmed steps sent before it
    first = int(ids[0].split("-")[0])
    assert first <= 11 and ids == [f"{s}-0" for s in range(first, 31)] + ["30-1"]


N_PIPELINED = 300


def _expected_ids(n):
    return [f"{s}-0".encode() for s in range(1, n + 1)] + [f"{n}-1".encode()]


def _kill_producer_connections(admin):
    admin.client_kill_filter(_type="normal", skipme=True)


@pytest.fixture
def persistent_server(tmp_path):
    """A private redis-server that keeps acknowledged writes across a kill."""
    srv = RedisServer(persist_dir=str(tmp_path)).start()
    yield srv
    srv.stop()


# A pool of one connection: the publisher holds it, so what it reads back after
# a lost connection (the gap check) goes over that same connection.  A
# single-connection client takes the publisher's other lane (one batch at a
# time through the client itself).
POOLS = {"shared_pool": {}, "pool_of_one": {"max_connections": 1},
         "single_connection": {"single_connection_client": True}}


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("fault", ["restart", "connection_killed"])
def test_pipelined_publishing_loses_and_duplicates_nothing(backend, persistent_server, rkey,
                                                            fault, pool):
    server = persistent_server
    client = client_for(server, **POOLS[pool])
    run = publish(langstream.stream_events(parts_n(N_PIPELINED), transformers=EXTRA), client,
                  rkey, retry_for=15)
    it = iter(run.values)
    assert [next(it)["i"] for _ in range(100)] == list(range(100))
    restarter = None
    if fault == "restart":
        server.stop()
        restarter = threading.Timer(0.3, server.start)
        restarter.start()
    else:
        admin = client_for(server)
        _kill_producer_connections(admin)
        admin.close()
    try:
        rest = [v["i"] for v in it]
    finally:
        if restarter is not None:
            restarter.join()
    assert rest == list(range(100, N_PIPELINED))
    reader = client_for(server)  # (the fault may have cut a single-connection client's)
    assert [e[0] for e in reader.xrange(rkey)] == _expected_ids(N_PIPELINED)
    remote = attach(reader, rkey)
    assert [e["seq"] for e in remote] == list(range(1, N_PIPELINED + 1))
    assert [v["i"] for v in attach(reader, rkey).values] == list(range(N_PIPELINED))


def _aclient_for(srv, **kw):
    import redis.asyncio as aredis

    return aredis.Redis(port=srv.port, socket_connect_timeout=0.5, socket_timeout=2,
                        retry=_no_retry(), **kw)


async def _apublished_after_100(client, rkey):
    """An async run of ``N_PIPELINED`` parts published to ``rkey``, its values
    reader, and the first 100 values it read."""
    run = publish(langstream.astream_events(areplay(parts_n(N_PIPELINED))), client, rkey,
                  retry_for=15)
    it = run.values.__aiter__()
    return run, it, [(await it.__anext__())["i"] for _ in range(100)]


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("fault", ["restart", "connection_killed"])
def test_async_pipelined_publishing_loses_and_duplicates_nothing(backend, persistent_server,
                                                                  rkey, fault, pool):
    server = persistent_server

    async def main():
        client = _aclient_for(server, **POOLS[pool])
        reader = _aclient_for(server)
        try:
            run, it, first = await _apublished_after_100(client, rkey)
            if fault == "restart":
                server.stop()
                asyncio.get_running_loop().call_later(0.3, server.start)
            else:
                admin = client_for(server)
                _kill_producer_connections(admin)
                admin.close()
            rest = [v["i"] async for v in it]
            remote = [e["seq"] async for e in aattach(reader, rkey)]
            return first + rest, [e[0] for e in await reader.xrange(rkey)], remote
        finally:
            await client.aclose()
            await reader.aclose()

    values, ids, remote = arun(main())
    assert values == list(range(N_PIPELINED))
    assert ids == _expected_ids(N_PIPELINED)
    assert remote == list(range(1, N_PIPELINED + 1))


# Entries a publisher resends after a lost connection that Redis refuses as
# "equal or smaller" were written by the attempt that lost it, unless a later
# entry landed first (a server still loading its data runs the commands it
# reads after the load and answers LOADING to those before; or another writer
# used the key): then the stream has a gap no write can fill, and the run
# fails saying so instead of finishing with entries missing.  Another writer
# puts a later id on the key while the producer's connection is cut.
_GAP = "missing after a lost connection"
# (not a single-connection client: its batches go one at a time, each
# confirmed before the next, so none is in flight when the connection is cut,
# and another writer's later entry fails its next batch with the "already
# holds" error of test_redis.py's test_publishing_to_a_used_key_fails_the_run_clearly)
GAP_POOLS = ["shared_pool", "pool_of_one"]


def _cut_and_overtake(server, rkey):
    admin = client_for(server)
    try:
        _kill_producer_connections(admin)
        admin.xadd(rkey, {"other": "writer"}, id=f"{N_PIPELINED * 10}-0")
    finally:
        admin.close()


def _assert_stopped_at_the_gap(ids, message):
    """The producer's entries are 1..k, with nothing written after the gap,
    and the error names k + 1 as the first one missing."""
    other = f"{N_PIPELINED * 10}-0".encode()
    assert ids[-1] == other
    ours = [int(i.split(b"-")[0]) for i in ids[:-1]]
    assert ours == list(range(1, len(ours) + 1))
    assert f"({len(ours) + 1}-0 to " in message


@pytest.mark.parametrize("pool", GAP_POOLS)
def test_a_gap_after_a_lost_connection_fails_the_run(backend, server, rkey, pool):
    client = client_for(server, **POOLS[pool])
    run = publish(langstream.stream_events(parts_n(N_PIPELINED), transformers=EXTRA), client,
                  rkey, retry_for=15)
    it = iter(run.values)
    assert [next(it)["i"] for _ in range(100)] == list(range(100))
    _cut_and_overtake(server, rkey)
    with pytest.raises(RuntimeError, match=_GAP) as failed:
        for _v in it:
            pass
    assert rkey in str(failed.value)
    with pytest.raises(RuntimeError, match=_GAP):
        run.output  # (every consumer gets the same error)
    _assert_stopped_at_the_gap([e[0] for e in client.xrange(rkey)], str(failed.value))


@pytest.mark.parametrize("pool", GAP_POOLS)
def test_async_a_gap_after_a_lost_connection_fails_the_run(backend, server, rkey, pool):
    async def main():
        client = _aclient_for(server, **POOLS[pool])
        try:
            run, it, first = await _apublished_after_100(client, rkey)
            _cut_and_overtake(server, rkey)
            with pytest.raises(RuntimeError, match=_GAP) as failed:
                async for _v in it:
                    pass
            with pytest.raises(RuntimeError, match=_GAP):
                await run.output()
            return first, str(failed.value), [e[0] for e in await client.xrange(rkey)]
        finally:
            await client.aclose()

    first, message, ids = arun(main())
    assert first == list(range(100)) and rkey in message
    _assert_stopped_at_the_gap(ids, message)


def test_producer_fails_naming_the_key_when_redis_stays_away(backend, server, rkey):
    client = client_for(server)
    run = publish(langstream.stream_events(parts_n(10), transformers=EXTRA), client, rkey,
                  retry_for=0.3)
    it = iter(run.values)
    next(it)
    server.stop()
    with pytest.raises(PublishConnectionError) as info:
        list(it)
    assert info.value.key == rkey and rkey in str(info.value)
    assert "retry_for=0.3" in str(info.value)
    with pytest.raises(PublishConnectionError):
        run.output  # the run failed: every consumer sees it
    with pytest.raises(PublishConnectionError):
        list(run.updates)


def test_async_producer_fails_naming_the_key(backend, server, rkey):
    import redis.asyncio as aredis

    async def main():
        client = aredis.Redis(port=server.port, socket_connect_timeout=0.5, retry=_no_retry())
        try:
            run = publish(langstream.astream_events(areplay(parts_n(10))), client, rkey,
                          retry_for=0.3)
            it = run.values.__aiter__()
            await it.__anext__()
            server.stop()
            with pytest.raises(PublishConnectionError, match=rkey):
                async for _ in it:
                    pass
            with pytest.raises(PublishConnectionError):
                await run.output()
        finally:
            await client.aclose()

    arun(main())


def test_async_reader_connection_error_then_goes_on(backend, server, rkey):
    import redis.asyncio as aredis

    sync_client = client_for(server)
    run = publish(langstream.stream_events(parts_n(6)), sync_client, rkey, retry_for=10)
    produced = iter(run)
    for _ in range(3):
        next(produced)

    async def main():
        client = aredis.Redis(port=server.port, socket_connect_timeout=0.5, retry=_no_retry())
        try:
            remote = aattach(client, rkey, block=0.1)
            it = remote.values.__aiter__()
            got = [(await it.__anext__())["i"] for _ in range(3)]
            server.stop()
            with pytest.raises(AttachConnectionError, match=rkey):
                await it.__anext__()
            server.start()
            list(produced)
            got += [v["i"] async for v in it]
            return got, await remote.output()
        finally:
            await client.aclose()

    got, output = arun(main())
    assert got == list(range(6)) and output == {"i": 5}


# ------------------------------------------------------------ cancel / abort


def _in_use(client):
    pool = client.connection_pool
    return len(getattr(pool, "_in_use_connections", ()))


def test_reader_cancelled_mid_xread_loses_nothing_and_returns_the_connection(
        backend, redis_url, rclient, rkey):
    import redis.asyncio as aredis

    run = publish(langstream.stream_events(parts_n(6)), rclient, rkey)
    produced = iter(run)
    for _ in range(2):
        next(produced)

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            remote = aattach(client, rkey, block=5)
            it = remote.values.__aiter__()
            first = [(await it.__anext__())["i"] for _ in range(2)]
            task = asyncio.ensure_future(it.__anext__())  # blocks in XREAD
            await asyncio.sleep(0.2)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            assert _in_use(client) == 0
            list(produced)
            rest = [v["i"] async for v in it]
            return first + rest
        finally:
            await client.aclose()

    assert arun(main()) == list(range(6))


def test_abort_releases_a_reader_blocked_in_xread(backend, redis_url, rclient, rkey):
    import redis.asyncio as aredis

    run = publish(langstream.stream_events(parts_n(6)), rclient, rkey)
    next(iter(run))

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            remote = aattach(client, rkey, block=30)
            reader = asyncio.ensure_future(_collect(remote.values))
            await asyncio.sleep(0.2)
            assert not reader.done()
            await asyncio.wait_for(remote.abort(), 5)
            items = await asyncio.wait_for(reader, 5)  # ends normally, at once
            return items
        finally:
            await client.aclose()

    assert arun(main()) == [{"i": 0}]


async def _collect(ait):
    return [x async for x in ait]


def test_sync_abort_and_with_block_end_projections(backend, rclient, rkey):
    publish(langstream.stream_events(parts_n(5)), rclient, rkey).output
    with attach(rclient, rkey) as remote:
        it = iter(remote.values)
        assert next(it) == {"i": 0}
    rest = list(it)  # closed normally by leaving the block: what it held, then the end
    assert rest == [{"i": i} for i in range(1, len(rest) + 1)]
    assert remote._pump_next() is False  # nothing more is read from Redis


# ------------------------------------------------------------ many readers


def test_100_concurrent_readers_on_one_live_run(backend, redis_url, rkey):
    import redis.asyncio as aredis

    parts, _ = two_children_one_grandchild()

    async def main():
        expected = await asnapshot(langstream.astream_events(areplay(parts), transformers=EXTRA))
        client = aredis.Redis.from_url(redis_url, max_connections=200)
        try:
            producer = publish(
                langstream.astream_events(areplay(parts, yield_every=1), transformers=EXTRA),
                client, rkey)
            readers = [asnapshot(aattach(client, rkey, block=2)) for _ in range(100)]
            results = await asyncio.gather(asnapshot(producer), *readers)
        finally:
            await client.aclose()
        return expected, results

    expected, results = arun(main(), timeout=60)
    base = expected.pop("raw")
    for snap in results:
        raw = snap.pop("raw")
        assert [e["seq"] for e in raw[0]] == [e["seq"] for e in base[0]]
        assert snap == expected


# ------------------------------------------------------------ other processes


def _python(*args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=60, **kw)


def _demo_parts():
    out = _python("-c", "import json; from langstream.__main__ import simulated_agent_run; "
                        "print(json.dumps(list(simulated_agent_run(0))))")
    parts = json.loads(out.stdout)
    for p in parts:
        p["ns"] = tuple(p["ns"])
    return parts


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_producer_in_another_process(backend, redis_url, rclient, rkey, lane):
    args = ["-m", "langstream", "demo", "--redis", redis_url, "--key", rkey, "--delay", "0.01"]
    if lane == "async":
        args.append("--async")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        remote = attach(rclient, rkey, wait_timeout=30)  # attaches while it runs
        got = snapshot(remote)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    expected = snapshot(langstream.stream_events(replay(_demo_parts()), transformers=EXTRA))
    assert got == expected
    assert "publishing to Redis key" in out


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_reader_in_another_process_prints_what_the_producer_printed(backend, redis_url, rkey,
                                                                      lane):
    flag = ["--async"] if lane == "async" else []
    env = dict(os.environ, PYTHONPATH=ROOT)
    reader = subprocess.Popen(
        [sys.executable, "-m", "langstream", "attach", "--redis", redis_url, "--key", rkey,
         "--wait", "30", *flag], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    produced = _python("-m", "langstream", "demo", "--redis", redis_url, "--key", rkey,
                       "--delay", "0", *flag)
    out, err = reader.communicate(timeout=60)
    assert produced.returncode == 0 and reader.returncode == 0, (produced.stderr, err)
    # both print the main log in seq order after their header line(s)
    got, expected = out.splitlines()[1:], produced.stdout.splitlines()[2:]
    assert got == expected
    assert "interrupted: True" in out


def test_cli_attach_after_seq_prints_the_tail(backend, redis_url, rkey):
    _python("-m", "langstream", "demo", "--redis", redis_url, "--key", rkey, "--delay", "0")
    full = _python("-m", "langstream", "attach", "--redis", redis_url, "--key", rkey)
    tail = _python("-m", "langstream", "attach", "--redis", redis_url, "--key", rkey,
                   "--after-seq", "10")
    assert tail.returncode == 0 and "after seq 10" in tail.stdout
    assert len(tail.stdout.splitlines()) < len(full.stdout.splitlines())
    assert full.stdout.splitlines()[-3:] == tail.stdout.splitlines()[-3:]


def test_cli_missing_key_is_a_clear_error(redis_url, rkey):
    out = _python("-m", "langstream", "attach", "--redis", redis_url, "--key", rkey,
                  "--wait", "0.2")
    assert out.returncode == 1
    assert f"RunNotFoundError: no run stream at Redis key {rkey!r}" in out.stderr


def test_producer_task_cancelled_mid_write_loses_no_event(backend, redis_url, rkey):
    import redis.asyncio as aredis

    async def scenario():
        client = aredis.Redis.from_url(redis_url)
        try:
            run = publish(langstream.astream_events(areplay(parts_n(50))), client, rkey)
            it = run.values.__aiter__()
            for cancel_after in range(1, 8):
                task = asyncio.ensure_future(it.__anext__())
                for _ in range(cancel_after):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - cancelled, or the run ended
                    pass
            try:
                await run.output()
            except Exception:  # noqa: BLE001 - a cancelled pull may end the run
                pass
            await run.abort()
            return [e async for e in aattach(client, rkey)]
        finally:
            await client.aclose()

    events = arun(scenario())
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # gapless: nothing drained was dropped
