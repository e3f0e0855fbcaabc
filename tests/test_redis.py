"""Redis Streams: publish a run, attach to it, resume by seq (against a real redis-server)."""

from __future__ import annotations

import json

import pytest

import langstream
from langstream import StreamLagError, wire
from langstream.__main__ import simulated_agent_run

from helpers import areplay, arun, atrace_iter, replay, trace_iter, two_children_one_grandchild
from redis_helpers import (  # noqa: F401 - fixtures
    asnapshot, raw_log, rclient, redis_url, rkey, snapshot,
)

from langstream.integrations.redis import (  # noqa: E402
    RemoteRunError, RunNotFoundError, aattach, attach, publish,
)

TRACES = ["nested_two_levels", "interrupt", "failing_subgraph", "parallel_fanout", "long_linear_50"]
DEMO_PARTS = list(simulated_agent_run(0))
EXTRA = [langstream.UpdatesTransformer, langstream.CustomTransformer]


def source(name):
    """(sync parts factory, async parts factory) of a named input."""
    if name == "mixed":
        parts, _ = two_children_one_grandchild()
        return (lambda: replay(parts)), (lambda: areplay(parts, yield_every=3))
    if name == "demo":
        parts = DEMO_PARTS
        return (lambda: replay(parts)), (lambda: areplay(parts))
    return (lambda: trace_iter(name)), (lambda: atrace_iter(name))


def local_run(name):
    return langstream.stream_events(source(name)[0](), transformers=EXTRA)


def alocal_run(name):
    return langstream.astream_events(source(name)[1](), transformers=EXTRA)


def published(client, key, name, **kw):
    """Publish a sync run of ``name`` to ``key`` and drive it to its end."""
    run = publish(local_run(name), client, key, **kw)
    raw_log(run)
    return run


def aclient(url):
    import redis.asyncio as aredis

    return aredis.Redis.from_url(url)


# ------------------------------------------------------------ equality


@pytest.mark.parametrize("name", TRACES + ["mixed", "demo"])
def test_sync_remote_projections_equal_local_ones(backend, rclient, rkey, name):
    expected = snapshot(local_run(name))
    expected_raw = raw_log(local_run(name))
    # the producer's own consumer sees the same as without publishing
    run = publish(local_run(name), rclient, rkey)
    assert snapshot(run) == expected
    assert snapshot(attach(rclient, rkey)) == expected
    remote_raw = raw_log(attach(rclient, rkey))
    assert [e["seq"] for e in remote_raw[0]] == list(range(1, len(remote_raw[0]) + 1))
    assert _same_raw(remote_raw, expected_raw)


def _same_raw(a, b):
    # timestamps are taken when a part is converted: equal within one run only
    def strip(log):
        events, err = log
        return [{**e, "params": {**e["params"], "timestamp": 0}} for e in events], err
    return strip(a) == strip(b)


@pytest.mark.parametrize("name", TRACES + ["mixed", "demo"])
def test_async_remote_projections_equal_local_ones(backend, redis_url, rkey, name):
    async def main():
        client = aclient(redis_url)
        try:
            expected = await asnapshot(alocal_run(name))
            producer = publish(alocal_run(name), client, rkey)
            mine = await asnapshot(producer)
            remote = await asnapshot(aattach(client, rkey))
        finally:
            await client.aclose()
        return expected, mine, remote

    expected, mine, remote = arun(main())
    base = expected["raw"]
    for snap in (expected, mine, remote):
        snap["raw"] = _same_raw(snap["raw"], base)
    assert mine == expected
    assert remote == expected


def test_remote_raw_log_is_the_producers_log_exactly(backend, rclient, rkey):
    run = publish(local_run("nested_two_levels"), rclient, rkey)
    events, err = raw_log(run)
    assert err is None
    remote, rerr = raw_log(attach(rclient, rkey))
    assert rerr is None and remote == events  # timestamps included


def test_both_lanes_read_one_published_run(backend, redis_url, rclient, rkey):
    published(rclient, rkey, "mixed")
    sync_raw = raw_log(attach(rclient, rkey))

    async def main():
        client = aclient(redis_url)
        try:
            return [e async for e in aattach(client, rkey)]
        finally:
            await client.aclose()

    assert (arun(main()), None) == sync_raw


def test_run_error_interrupts_and_output_come_across(backend, rclient, rkey):
    published(rclient, rkey + "f", "failing_subgraph")
    remote = attach(rclient, rkey + "f")
    with pytest.raises(ValueError, match="tool exploded"):
        remote.output
    published(rclient, rkey + "i", "interrupt")
    remote = attach(rclient, rkey + "i")
    local = local_run("interrupt")
    assert remote.interrupted is True and remote.interrupts == local.interrupts
    assert remote.output == local.output


def test_a_non_builtin_error_is_a_remote_run_error(backend, rclient, rkey):
    class AgentCrashed(Exception):
        pass

    run = publish(langstream.stream_events(replay([{"type": "values", "ns": (), "data": 1}],
                                                  AgentCrashed("boom"))), rclient, rkey)
    with pytest.raises(AgentCrashed):
        run.output
    with pytest.raises(RemoteRunError) as info:
        attach(rclient, rkey).output
    assert info.value.type_name == "AgentCrashed" and info.value.message == "boom"
    assert "AgentCrashed: boom" in str(info.value)


def test_terminal_entry_layout(backend, rclient, rkey):
    published(rclient, rkey, "interrupt")
    entries = rclient.xrange(rkey)
    ids = [e[0].decode() for e in entries]
    n = len(ids) - 1
    assert ids == [f"{i}-0" for i in range(1, n + 1)] + [f"{n}-1"]
    assert all(list(f) == [b"e"] for _, f in entries[:-1])
    end = json.loads(entries[-1][1][b"end"])
    assert end["v"] == 1 and end["status"] == "interrupted" and end["last_seq"] == n
    assert wire.decode_value(end["interrupts"]) == local_run("interrupt").interrupts
    published(rclient, rkey + "x", "failing_subgraph")
    end = json.loads(rclient.xrange(rkey + "x")[-1][1][b"end"])
    assert end["status"] == "failed"
    assert end["error"] == {"type": "ValueError", "message": "tool exploded"}


def test_an_empty_run_has_the_terminal_entry_0_1(backend, rclient, rkey):
    run = publish(langstream.stream_events([]), rclient, rkey)
    assert run.output is None
    entries = rclient.xrange(rkey)
    assert [e[0] for e in entries] == [b"0-1"]
    assert json.loads(entries[0][1][b"end"]) == {"v": 1, "last_seq": 0, "status": "completed"}
    remote = attach(rclient, rkey)
    assert raw_log(remote) == ([], None) and remote.output is None


def _count_xadds_per_send(monkeypatch, connection_class):
    """Patch ``connection_class.send_packed_command``: entries written per send."""
    batches = []
    send = connection_class.send_packed_command

    def counting_send(self, command, *a, **kw):
        chunks = [command] if isinstance(command, (bytes, str)) else list(command)
        data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        if b"XADD" in data:
            batches.append(data.count(b"\r\nXADD\r\n"))
        return send(self, chunks, *a, **kw)

    monkeypatch.setattr(connection_class, "send_packed_command", counting_send)
    return batches


def test_one_send_per_pump_step(backend, rclient, rkey, monkeypatch):
    import redis.connection

    run = publish(local_run("nested_two_levels"), rclient, rkey)
    batches = _count_xadds_per_send(monkeypatch, redis.connection.Connection)
    it = iter(run)
    first = next(it)  # one step: the first snapshot, written (and confirmed) at once
    assert first["seq"] == 1 and batches == [1] and rclient.xlen(rkey) == 1
    for _ in it:
        pass
    assert sum(batches) == rclient.xlen(rkey)
    assert len(batches) < rclient.xlen(rkey)  # a step's lifecycle + event: one send
    assert max(batches) < rclient.xlen(rkey) // 2  # written as it goes, not at the end


def test_async_one_send_per_pump_step(backend, redis_url, rkey, monkeypatch):
    import redis.asyncio as aredis
    import redis.asyncio.connection

    batches = _count_xadds_per_send(monkeypatch, redis.asyncio.connection.Connection)

    async def main():
        client = aredis.Redis.from_url(redis_url)
        try:
            run = publish(alocal_run("nested_two_levels"), client, rkey)
            seqs = [event["seq"] async for event in run]
            return seqs, await client.xlen(rkey)
        finally:
            await client.aclose()

    seqs, length = arun(main())
    assert length == len(seqs) + 1 == sum(batches)
    assert len(batches) < length and max(batches) < length // 2


# ------------------------------------------------------------ resume / lag


def test_resume_from_every_seq_yields_each_later_event_once(backend, rclient, rkey):
    published(rclient, rkey, "mixed")
    everything, _ = raw_log(attach(rclient, rkey))
    n = len(everything)
    for k in range(0, n + 1):
        events, err = raw_log(attach(rclient, rkey, after_seq=k))
        assert err is None
        assert events == everything[k:], k


def test_async_resume_from_every_seq(backend, redis_url, rclient, rkey):
    published(rclient, rkey, "interrupt")
    everything, _ = raw_log(attach(rclient, rkey))

    async def main():
        client = aclient(redis_url)
        try:
            out = []
            for k in range(len(everything) + 1):
                out.append([e async for e in aattach(client, rkey, after_seq=k)])
            return out
        finally:
            await client.aclose()

    for k, got in enumerate(arun(main())):
        assert got == everything[k:]


def test_resume_past_the_end_is_an_error(backend, rclient, rkey):
    published(rclient, rkey, "interrupt")
    n = rclient.xlen(rkey) - 1
    with pytest.raises(ValueError, match=f"after_seq={n + 5} is past the end"):
        list(attach(rclient, rkey, after_seq=n + 5, block=0.05))


def test_trimmed_history_raises_lag_with_exact_missed_then_continues(backend, rclient, rkey):
    published(rclient, rkey, "long_linear_50")
    everything, _ = raw_log(attach(rclient, rkey))
    n = len(everything)
    rclient.xtrim(rkey, maxlen=40, approximate=False)  # keep 39 events + the end entry
    oldest = n - 39 + 1
    for after in (0, 5, oldest - 2):
        remote = attach(rclient, rkey, after_seq=after)
        it = iter(remote)
        with pytest.raises(StreamLagError) as info:
            next(it)
        assert info.value.missed == oldest - 1 - after
        rest = list(it)
        assert rest == everything[oldest - 1:]
    # from the oldest retained on: no lag
    assert raw_log(attach(rclient, rkey, after_seq=oldest - 1)) == (everything[oldest - 1:], None)


def test_async_trimmed_history_lag(backend, redis_url, rclient, rkey):
    published(rclient, rkey, "long_linear_50")
    everything, _ = raw_log(attach(rclient, rkey))
    rclient.xtrim(rkey, maxlen=11, approximate=False)
    oldest = len(everything) - 10 + 1

    async def main():
        client = aclient(redis_url)
        try:
            remote = aattach(client, rkey)
            it = remote.__aiter__()
            with pytest.raises(StreamLagError) as info:
                await it.__anext__()
            return info.value.missed, [e async for e in it]
        finally:
            await client.aclose()

    missed, rest = arun(main())
    assert missed == oldest - 1
    assert rest == everything[oldest - 1:]


def test_publisher_maxlen_trims_and_readers_get_exact_missed(backend, rclient, rkey):
    parts = [{"type": "values", "ns": (), "data": {"i": i}} for i in range(2000)]
    run = publish(langstream.stream_events(parts), rclient, rkey, maxlen=100)
    assert run.output == {"i": 1999}
    length = rclient.xlen(rkey)
    assert 100 <= length < 2000  # approximate trimming
    first = int(rclient.xrange(rkey, count=1)[0][0].split(b"-")[0])
    remote = attach(rclient, rkey)
    it = iter(remote.values)
    with pytest.raises(StreamLagError) as info:
        next(it)
    assert info.value.missed == first - 1
    assert [s["i"] for s in it] == list(range(first - 1, 2000))
    assert remote.output == {"i": 1999}


def test_expire_after_the_end(backend, rclient, rkey):
    run = publish(local_run("interrupt"), rclient, rkey, expire=30)
    it = iter(run)
    next(it)
    assert rclient.ttl(rkey) == -1  # no expiry while the run is live
    list(it)
    assert 0 < rclient.ttl(rkey) <= 30


def test_late_joiner_mid_run_and_after_the_end(backend, rclient, rkey):
    run = publish(local_run("mixed"), rclient, rkey)
    it = iter(run)
    head = [next(it) for _ in range(5)]
    late = attach(rclient, rkey)
    late_it = iter(late)
    assert [next(late_it) for _ in range(5)] == head
    rest = list(it)
    assert list(late_it) == rest
    assert raw_log(attach(rclient, rkey)) == (head + rest, None)


# ------------------------------------------------------------ bad input


def test_publish_validates_its_arguments(backend, rclient, rkey):
    with pytest.raises(TypeError, match="key"):
        publish(local_run("interrupt"), rclient, "")
    with pytest.raises(TypeError, match="maxlen"):
        publish(local_run("interrupt"), rclient, rkey, maxlen="5")
    with pytest.raises(ValueError, match="maxlen"):
        publish(local_run("interrupt"), rclient, rkey, maxlen=0)
    with pytest.raises(ValueError, match="expire"):
        publish(local_run("interrupt"), rclient, rkey, expire=-1)
    with pytest.raises(TypeError, match="run must be"):
        publish(object(), rclient, rkey)
    started = local_run("interrupt")
    next(iter(started.values))
    with pytest.raises(ValueError, match="before the run is iterated"):
        publish(started, rclient, rkey)
    run = publish(local_run("interrupt"), rclient, rkey)
    with pytest.raises(ValueError, match="already published"):
        publish(run, rclient, rkey + "2")
    with pytest.raises(TypeError, match="redis.asyncio.Redis"):
        publish(alocal_run("interrupt"), rclient, rkey + "3")


def test_attach_validates_its_arguments(rclient, rkey):
    with pytest.raises(ValueError, match="after_seq"):
        attach(rclient, rkey, after_seq=-1)
    with pytest.raises(TypeError, match="after_seq"):
        attach(rclient, rkey, after_seq="3")
    with pytest.raises(ValueError, match="count"):
        attach(rclient, rkey, count=0)
    with pytest.raises(TypeError, match="aattach"):
        aattach(rclient, rkey)


def test_publishing_to_a_used_key_fails_the_run_clearly(backend, rclient, rkey):
    published(rclient, rkey, "interrupt")
    run = publish(local_run("interrupt"), rclient, rkey)
    with pytest.raises(ValueError, match=f"{rkey!r} already holds a stream"):
        run.output


def test_unencodable_data_fails_the_producers_run_naming_seq_and_type(backend, rclient, rkey):
    parts = [{"type": "values", "ns": (), "data": {"ok": 1}},
             {"type": "custom", "ns": (), "data": {"blob": b"\x00"}}]
    run = publish(langstream.stream_events(parts, transformers=EXTRA), rclient, rkey)
    with pytest.raises(TypeError, match=r"seq=2 method='custom'.*bytes"):
        list(run.values)
    with pytest.raises(TypeError, match="bytes"):
        run.output
    # the run is still published up to its end: readers see the gap and the error
    remote = attach(rclient, rkey)
    it = iter(remote.values)
    assert next(it) == {"ok": 1}
    with pytest.raises(StreamLagError) as info:
        next(it)
    assert info.value.missed == 1
    with pytest.raises(TypeError, match=r"seq=2 method='custom'.*bytes"):
        next(it)
    end = json.loads(rclient.xrange(rkey)[-1][1][b"end"])
    assert end["status"] == "failed" and end["error"]["type"] == "TypeError"


def test_missing_key_waits_then_fails_naming_it(backend, rclient, rkey):
    remote = attach(rclient, rkey, wait_timeout=0.3, block=0.05)
    with pytest.raises(RunNotFoundError) as info:
        list(remote.values)
    assert rkey in str(info.value) and "0.3" in str(info.value)
    with pytest.raises(RunNotFoundError):
        remote.output  # every reader sees the same end


def test_missing_key_that_appears_within_the_timeout_is_read(backend, rclient, rkey):
    remote = attach(rclient, rkey, wait_timeout=5, block=0.05)
    it = iter(remote)
    # nothing yet: the reader's pump returns without an event
    assert remote._pump_next() is True
    published(rclient, rkey, "interrupt")
    assert [e["seq"] for e in it] == list(range(1, rclient.xlen(rkey)))


@pytest.mark.parametrize("entry_id, fields, fragment", [
    ("3-0", {"e": "{not json"}, "not valid wire JSON"),
    ("3-0", {"x": "1"}, "expected exactly the field 'e'"),
    ("3-0", {"e": '{"v": 9, "seq": 3, "method": "m", "ns": [], "ts": 1, "data": 1}'}, "version"),
    ("3-0", {"e": '{"v": 1, "seq": 4, "method": "m", "ns": [], "ts": 1, "data": 1}'},
     "wire seq is 4"),
    ("3-7", {"e": "{}"}, "not '<seq>-0' or '<seq>-1'"),
    ("2-1", {"end": '{"v": 1, "status": "odd", "last_seq": 2}'}, "unknown status"),
    ("2-1", {"end": "nope"}, "not a valid end entry"),
    ("2-1", {"end": '{"v": 1, "status": "completed", "last_seq": 7}'}, "last_seq 7"),
])
def test_a_bad_entry_fails_the_run_naming_key_and_entry_id(backend, rclient, rkey, entry_id,
                                                          fields, fragment):
    good = [wire.dumps({"type": "event", "seq": s, "method": "values",
                        "params": {"namespace": [], "timestamp": 1, "data": {"s": s}}})
            for s in (1, 2)]
    rclient.xadd(rkey, {"e": good[0]}, id="1-0")
    rclient.xadd(rkey, {"e": good[1]}, id="2-0")
    rclient.xadd(rkey, fields, id=entry_id)
    remote = attach(rclient, rkey)
    got = []
    with pytest.raises(ValueError) as info:
        for snap in remote.values:
            got.append(snap)
    assert got == [{"s": 1}, {"s": 2}]  # what Redis holds before the bad entry
    assert f"entry {entry_id} of Redis key {rkey!r}" in str(info.value)
    assert fragment in str(info.value)
    with pytest.raises(ValueError):
        remote.output


def test_async_bad_entry(backend, redis_url, rclient, rkey):
    rclient.xadd(rkey, {"e": "[]"}, id="1-0")

    async def main():
        client = aclient(redis_url)
        try:
            remote = aattach(client, rkey)
            with pytest.raises(ValueError, match=f"entry 1-0 of Redis key {rkey!r}"):
                await remote.output()
        finally:
            await client.aclose()

    arun(main())


def test_sync_bounded_run_whose_step_overflows_maxlen_fails_clearly(backend, rclient, rkey):
    parts, _ = two_children_one_grandchild()
    # maxlen=1: a step that starts a subgraph appends its lifecycle event and the
    # event itself, more than the main log keeps before the step is published
    run = publish(langstream.stream_events(replay(parts), maxlen=1), rclient, rkey)
    with pytest.raises(RuntimeError, match=r"maxlen=1\).*larger maxlen"):
        run.output


def test_sync_bounded_run_publishes_everything_when_steps_fit(backend, rclient, rkey):
    parts, _ = two_children_one_grandchild()
    expected = snapshot(langstream.stream_events(replay(parts), transformers=EXTRA, maxlen=8))
    run = publish(langstream.stream_events(replay(parts), transformers=EXTRA, maxlen=8),
                  rclient, rkey)
    assert snapshot(run) == expected
    assert snapshot(attach(rclient, rkey)) == snapshot(
        langstream.stream_events(replay(parts), transformers=EXTRA))


@pytest.mark.parametrize("decode", [False, True])
def test_resp3_and_decoded_responses(backend, redis_url, rkey, decode):
    import redis

    client = redis.Redis.from_url(redis_url, protocol=3, decode_responses=decode)
    try:
        run = publish(local_run("nested_two_levels"), client, rkey)
        events, _ = raw_log(run)
        assert raw_log(attach(client, rkey)) == (events, None)
    finally:
        client.close()


def test_async_unencodable_data_fails_the_run_which_still_ends_on_the_wire(backend, redis_url,
                                                                          rkey):
    parts = [{"type": "values", "ns": (), "data": {"ok": 1}},
             {"type": "custom", "ns": (), "data": {"when": object()}},
             {"type": "values", "ns": (), "data": {"ok": 2}}]

    async def main():
        client = aclient(redis_url)
        try:
            run = publish(langstream.astream_events(areplay(parts), transformers=EXTRA),
                          client, rkey)
            with pytest.raises(TypeError, match=r"seq=2 method='custom'.*object"):
                await run.output()
            remote = aattach(client, rkey)
            seen = []
            it = remote.__aiter__()
            seen.append((await it.__anext__())["seq"])
            with pytest.raises(StreamLagError):
                await it.__anext__()
            with pytest.raises(TypeError, match="object"):
                await it.__anext__()
            return seen
        finally:
            await client.aclose()

    assert arun(main()) == [1]


def test_the_publisher_gives_its_connection_back(backend, redis_url, rkey):
    import gc

    import redis

    client = redis.Redis.from_url(redis_url)
    pool = client.connection_pool
    try:
        published(client, rkey, "nested_two_levels")  # ended: given back at the end
        assert not pool._in_use_connections
        run = publish(local_run("long_linear_50"), client, rkey + ":dropped")
        it = iter(run)
        next(it), next(it)
        assert len(pool._in_use_connections) == 1  # held while the run is live
        del run, it
        for _ in range(3):  # PyPy may need more than one pass
            gc.collect()  # a run dropped before its end: given back when collected
        assert not pool._in_use_connections
    finally:
        client.close()
