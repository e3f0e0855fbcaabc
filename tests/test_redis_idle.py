"""Attached readers of a run whose producer went silent: ``idle_timeout`` (real redis-server)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import langstream
from langstream import wire
from langstream.integrations.redis import RunIdleError, aattach, attach

from helpers import arun
from redis_helpers import rclient, redis_url, rkey  # noqa: F401 - fixtures

N = 6


def _events():
    parts = [{"type": "values", "ns": (), "data": {"i": i}} for i in range(N)]
    return list(langstream.stream_events(parts))


def _write(client, key, events, end=False):
    """What a producer writes: the events, then (``end``) the run's end entry."""
    for event in events:
        client.xadd(key, {"e": wire.dumps(event)}, id=f"{event['seq']}-0")
    if end:
        last = events[-1]["seq"]
        doc = {"v": 1, "status": "completed", "last_seq": last}
        client.xadd(key, {"end": json.dumps(doc)}, id=f"{last}-1")


def test_idle_timeout_names_key_and_last_seq_then_the_reader_goes_on(backend, rclient, rkey):
    events = _events()
    _write(rclient, rkey, events[:3])  # a producer that stopped after seq 3
    remote = attach(rclient, rkey, idle_timeout=0.2, block=0.05)
    it = iter(remote.values)
    assert [next(it)["i"] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RunIdleError) as info:
        next(it)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.key == rkey and err.last_seq == 3 and err.idle_timeout == 0.2
    assert rkey in str(err) and "seq 3" in str(err) and "after_seq=3" in str(err)
    assert remote.last_seq == 3
    with pytest.raises(RunIdleError):  # still nothing: reading again waits again
        next(it)
    _write(rclient, rkey, events[3:], end=True)  # the producer comes back
    assert [v["i"] for v in it] == [3, 4, 5]  # the same run goes on, nothing twice
    assert remote.output == {"i": 5}
    # or attach anew after the last seq the error named
    assert [v["i"] for v in attach(rclient, rkey, after_seq=err.last_seq).values] == [3, 4, 5]


def test_idle_timeout_raised_from_output_and_raw_log(backend, rclient, rkey):
    events = _events()
    _write(rclient, rkey, events[:2])
    remote = attach(rclient, rkey, idle_timeout=0.1, block=0.05)
    seen = []
    with pytest.raises(RunIdleError) as info:
        for event in remote:
            seen.append(event["seq"])
    assert seen == [1, 2] and info.value.last_seq == 2
    with pytest.raises(RunIdleError, match="after seq 2"):
        remote.output  # drives the run: idle again


def test_without_idle_timeout_a_silent_run_is_waited_for(backend, rclient, rkey):
    events = _events()
    _write(rclient, rkey, events[:3])
    remote = attach(rclient, rkey, block=0.05)  # default: no idle timeout
    it = iter(remote.values)
    assert [next(it)["i"] for _ in range(3)] == [0, 1, 2]
    later = threading.Timer(0.5, _write, (rclient, rkey, events[3:], True))
    later.start()
    try:
        assert [v["i"] for v in it] == [3, 4, 5]  # several empty XREADs, no error
    finally:
        later.join()


def test_an_ended_run_never_idles(backend, rclient, rkey):
    _write(rclient, rkey, _events(), end=True)
    remote = attach(rclient, rkey, idle_timeout=0.05, block=0.05)
    assert [v["i"] for v in remote.values] == list(range(N))
    assert remote.output == {"i": N - 1}


def test_async_idle_timeout_then_resume(backend, redis_url, rclient, rkey):
    import redis.asyncio as aredis

    events = _events()
    _write(rclient, rkey, events[:3])

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            remote = aattach(client, rkey, idle_timeout=0.2, block=0.05)
            it = remote.values.__aiter__()
            first = [(await it.__anext__())["i"] for _ in range(3)]
            with pytest.raises(RunIdleError) as info:
                await it.__anext__()
            # concurrent consumers: each one's read ends with the error, none hangs
            results = await asyncio.gather(remote.output(), remote.output(),
                                           return_exceptions=True)
            assert all(isinstance(r, RunIdleError) for r in results), results
            _write(rclient, rkey, events[3:], end=True)
            rest = [v["i"] async for v in it]
            resumed = [v["i"] async for v in aattach(client, rkey,
                                                     after_seq=info.value.last_seq).values]
            return first, info.value, rest, await remote.output(), resumed
        finally:
            await client.aclose()

    first, err, rest, output, resumed = arun(main())
    assert first == [0, 1, 2] and rest == [3, 4, 5] and output == {"i": 5}
    assert err.key == rkey and err.last_seq == 3 and rkey in str(err)
    assert resumed == [3, 4, 5]


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), ("5", TypeError),
                                      (True, TypeError), (float("nan"), ValueError)])
def test_idle_timeout_is_validated(rclient, rkey, bad, exc):
    with pytest.raises(exc, match="idle_timeout"):
        attach(rclient, rkey, idle_timeout=bad)
    import redis.asyncio as aredis

    async def check():
        client = aredis.Redis()  # inside the loop (Python 3.9)
        try:
            with pytest.raises(exc, match="idle_timeout"):
                aattach(client, rkey, idle_timeout=bad)
        finally:
            await client.aclose()

    arun(check())


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_cli_attach_idle_timeout_is_a_clear_error(rclient, rkey, lane):
    import os
    import subprocess
    import sys

    from langstream.__main__ import simulated_agent_run

    events = list(langstream.stream_events(simulated_agent_run(0)))[:5]
    _write(rclient, rkey, events)  # the demo's first events, then its producer died
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    url = "redis://{host}:{port}/0".format(**rclient.connection_pool.connection_kwargs)
    args = [sys.executable, "-m", "langstream", "attach", "--redis", url, "--key", rkey,
            "--idle-timeout", "0.3"] + (["--async"] if lane == "async" else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert out.returncode == 1, out.stderr
    assert f"RunIdleError: no new entry in the run at Redis key {rkey!r}" in out.stderr
    assert f"after seq {events[-1]['seq']}" in out.stderr
