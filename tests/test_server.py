"""The SSE endpoint over HTTP: a real redis-server, the app under a real uvicorn.

Runs are produced by langstream run streams on both event-log backends and
published to Redis; the tests read them back as Server-Sent Events.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from redis_helpers import redis_url  # noqa: F401  (fixture)
from server_support import (
    Progress,
    SSEClient,
    ServerThread,
    get,
    need_server_extra,
    progress_run,
    publish_run,
    redis_server,  # noqa: F401  (fixture)
    serve_subprocess,
    token_run,
    wait_for,
)

TOKENS = ["Stream", "ing ", "to ", "the ", "browser", "."]


@pytest.fixture(scope="module")
def app_server(redis_server):  # noqa: F811
    from langstream.server import create_app

    server = ServerThread(create_app(redis_server.url, heartbeat=0.3))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def key() -> str:
    return f"run:{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sync", "async"])
def lane(request) -> str:
    """The lane the producer publishes on."""
    return request.param


def _published(redis_server, key, backend, lane="sync", **kw):  # noqa: F811
    return publish_run(redis_server.client, key, token_run(TOKENS), lane=lane, **kw)


def _ids(frames):
    return [int(f["id"]) for f in frames if f.get("event") not in ("end", "lag")]


# -- framing, ids, terminal event -------------------------------------------------

def test_sse_framing_ids_methods_and_wire_data(redis_server, app_server, key, backend, lane):  # noqa: F811
    from langstream import wire

    events = _published(redis_server, key, backend, lane)
    stored = redis_server.client.xrange(key)
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    assert client.status == 200
    assert client.headers["content-type"].startswith("text/event-stream")
    assert client.headers["cache-control"] == "no-cache"
    frames = list(client.frames())
    client.close()
    assert frames[0] == {"retry": "1000"}
    body = [f for f in frames[1:] if "comment" not in f]
    *evs, end = body
    assert [int(f["id"]) for f in evs] == list(range(1, len(events) + 1))
    for frame, event, (entry_id, fields) in zip(evs, events, stored):
        assert frame["event"] == event["method"]
        assert entry_id.decode() == f"{event['seq']}-0"
        assert frame["data"] == fields[b"e"].decode()  # the wire JSON as published
        assert wire.loads(frame["data"]) == event
        assert json.loads(frame["data"])["seq"] == int(frame["id"])
    assert {"values", "messages", "lifecycle", "custom"} <= {f["event"] for f in evs}
    assert end["event"] == "end" and end["id"] == str(len(events))
    assert json.loads(end["data"]) == {"v": 1, "status": "completed", "last_seq": len(events)}


@pytest.mark.parametrize("outcome", ["failed", "interrupted"])
def test_terminal_event_says_failed_or_interrupted(redis_server, app_server, key, backend, lane,
                                                  outcome):  # noqa: F811
    parts = token_run(["a", "b"], sub=False)
    if outcome == "failed":
        publish_run(redis_server.client, key, parts, error=ValueError("model exploded"), lane=lane)
    else:
        parts.append({"type": "values", "ns": (), "data": {"answer": "ab"},
                      "interrupts": ({"value": "approve?", "id": "i-1"},)})
        publish_run(redis_server.client, key, parts, lane=lane)
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    end = client.events()[-1]
    client.close()
    data = json.loads(end["data"])
    assert end["event"] == "end" and data["status"] == outcome
    if outcome == "failed":
        assert data["error"] == {"type": "ValueError", "message": "model exploded"}
    else:
        assert data["interrupts"]


def test_empty_run_ends_with_zero_last_seq(redis_server, app_server, key):  # noqa: F811
    redis_server.client.xadd(key, {"end": json.dumps({"v": 1, "status": "completed", "last_seq": 0})},
                             id="0-1")
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    assert client.events() == [{"id": "0", "event": "end",
                                "data": json.dumps({"v": 1, "status": "completed", "last_seq": 0})}]


# -- resume ------------------------------------------------------------------------

def test_unnamed_frames_carry_every_method_and_resume_after_any_of_them(
        redis_server, app_server, key, backend, lane):  # noqa: F811
    """``?event=message`` (what the live page asks for): every method event,
    ``custom:<name>`` included, is an unnamed SSE message with its seq as id,
    so one ``onmessage`` sees them all; resuming after a ``custom:*`` seq,
    by Last-Event-ID or ``?after=``, gives exactly the rest."""
    events = publish_run(redis_server.client, key, progress_run(), transformers=[Progress],
                         lane=lane)
    methods = [e["method"] for e in events]
    assert methods.count("custom:progress") == 7 and methods[-1] == "custom:progress"
    assert "custom" in methods and "values" in methods
    n = len(events)
    client = SSEClient(app_server.port, f"/runs/{key}/events?event=message")
    *evs, end = client.events()
    client.close()
    assert [f.get("event") for f in evs] == [None] * n  # dispatched as "message"
    assert [int(f["id"]) for f in evs] == list(range(1, n + 1))
    assert [json.loads(f["data"])["method"] for f in evs] == methods
    assert end["event"] == "end" and end["id"] == str(n)
    # without the parameter every frame is named by its method, custom:* included
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    assert [f["event"] for f in client.events()] == methods + ["end"]
    client.close()
    for k in [e["seq"] for e in events if e["method"] == "custom:progress"]:
        for path, headers in ((f"/runs/{key}/events?event=message", {"Last-Event-ID": str(k)}),
                              (f"/runs/{key}/events?event=message&after={k}", {})):
            client = SSEClient(app_server.port, path, headers)
            frames = client.events()
            client.close()
            assert _ids(frames) == list(range(k + 1, n + 1)), (k, path)
            assert frames[-1]["event"] == "end"
    # filters work the same on unnamed frames
    client = SSEClient(app_server.port, f"/runs/{key}/events?event=message&methods=custom:progress")
    frames = client.events()
    client.close()
    assert _ids(frames) == [e["seq"] for e in events if e["method"] == "custom:progress"]



def test_resume_from_every_last_event_id_exactly_once(redis_server, app_server, key, backend, lane):  # noqa: F811
    events = _published(redis_server, key, backend, lane)
    n = len(events)
    for k in range(n + 1):
        client = SSEClient(app_server.port, f"/runs/{key}/events", {"Last-Event-ID": str(k)})
        frames = client.events()
        client.close()
        assert _ids(frames) == list(range(k + 1, n + 1)), k
        assert frames[-1]["event"] == "end" and frames[-1]["id"] == str(n)
        # ?after= for a first connection gives the same; the header wins over it
        client = SSEClient(app_server.port, f"/runs/{key}/events?after={k}")
        assert _ids(client.events()) == list(range(k + 1, n + 1))
        client.close()
    client = SSEClient(app_server.port, f"/runs/{key}/events?after=0", {"Last-Event-ID": str(n - 1)})
    assert _ids(client.events()) == [n]
    client.close()


def test_live_run_streams_as_published_and_resumes(redis_server, app_server, key, backend):  # noqa: F811
    """The client connects before the run starts producing; events arrive as
    they are written (shared watcher wake-ups), and a reconnect mid-run
    continues exactly where it stopped."""
    parts = token_run([f"t{i} " for i in range(40)])
    done = threading.Event()

    def produce():
        try:
            publish_run(redis_server.client, key, parts, delay=0.005)
        finally:
            done.set()

    producer = threading.Thread(target=produce)
    client = None
    first = []
    try:
        producer.start()
        wait_for(lambda: redis_server.client.exists(key), what="first entry")
        client = SSEClient(app_server.port, f"/runs/{key}/events")
        frames = client.frames()
        for frame in frames:
            if "id" in frame and frame.get("event") != "end":
                first.append(int(frame["id"]))
            if len(first) == 20:
                break
        client.close()
        client = SSEClient(app_server.port, f"/runs/{key}/events", {"Last-Event-ID": str(first[-1])})
        rest = client.events()
    finally:
        producer.join(30)
        if client is not None:
            client.close()
    assert done.is_set()
    n = int(redis_server.client.xrevrange(key, count=1)[0][0].split(b"-")[0])
    assert first == list(range(1, 21))
    assert _ids(rest) == list(range(21, n + 1))
    assert rest[-1]["event"] == "end"


def test_trimmed_history_reports_lag_then_continues(redis_server, app_server, key, backend):  # noqa: F811
    events = _published(redis_server, key, backend)
    n = len(events)
    redis_server.client.xtrim(key, minid=f"{n - 3}-0", approximate=False)  # keep the last 4 events and the end
    client = SSEClient(app_server.port, f"/runs/{key}/events?after=2")
    frames = client.events()
    client.close()
    assert frames[0]["event"] == "lag"
    assert json.loads(frames[0]["data"]) == {"missed": n - 6, "next_seq": n - 3}
    assert _ids(frames[1:]) == list(range(n - 3, n + 1))
    assert frames[-1]["event"] == "end"


# -- filters -----------------------------------------------------------------------

def test_methods_filter(redis_server, app_server, key, backend):  # noqa: F811
    events = _published(redis_server, key, backend)
    client = SSEClient(app_server.port, f"/runs/{key}/events?methods=values,messages")
    frames = client.events()
    client.close()
    want = [e["seq"] for e in events if e["method"] in ("values", "messages")]
    assert _ids(frames) == want
    assert {f["event"] for f in frames[:-1]} == {"values", "messages"}
    assert frames[-1]["event"] == "end" and frames[-1]["id"] == str(len(events))
    # resuming a filtered stream from a seq that was filtered out works too
    client = SSEClient(app_server.port, f"/runs/{key}/events?methods=messages",
                       {"Last-Event-ID": str(want[0])})
    assert _ids(client.events()) == [e["seq"] for e in events
                                     if e["method"] == "messages" and e["seq"] > want[0]]
    client.close()


def test_custom_method_filter(redis_server, app_server, key, backend):  # noqa: F811
    events = _published(redis_server, key, backend)
    client = SSEClient(app_server.port, f"/runs/{key}/events?methods=custom,custom:unused")
    assert _ids(client.events()) == [e["seq"] for e in events if e["method"] == "custom"]
    client.close()


@pytest.mark.parametrize("prefix", ["research", "research:t-1"])
def test_namespace_prefix_filter(redis_server, app_server, key, backend, prefix):  # noqa: F811
    events = _published(redis_server, key, backend)

    def in_subtree(e):
        ns = e["params"]["namespace"]
        if e["method"] == "lifecycle":
            ns = e["params"]["data"]["namespace"]
        return list(ns[:1]) == ["research:t-1"]

    want = [e["seq"] for e in events if in_subtree(e)]
    assert any(e["method"] == "lifecycle" for e in events if in_subtree(e))
    assert any(e["method"] == "values" for e in events if in_subtree(e))
    client = SSEClient(app_server.port, f"/runs/{key}/events?namespace={prefix}")
    frames = client.events()
    client.close()
    assert _ids(frames) == want
    client = SSEClient(app_server.port, f"/runs/{key}/events?namespace=other&methods=values")
    assert [f["event"] for f in client.events()] == ["end"]
    client.close()


# -- heartbeats, disconnects ---------------------------------------------------------

def test_heartbeats_while_idle_then_end(redis_server, app_server, key):  # noqa: F811
    r = redis_server.client
    r.xadd(key, {"e": json.dumps({"v": 1, "seq": 1, "method": "values", "ns": [], "ts": 0,
                                  "data": {}})}, id="1-0")
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    frames = client.frames()
    seen = []
    t0 = time.monotonic()
    for frame in frames:
        seen.append(frame)
        if sum("comment" in f for f in seen) == 3:
            break
    elapsed = time.monotonic() - t0
    assert [f.get("id") for f in seen if "id" in f] == ["1"]
    assert [f["comment"] for f in seen if "comment" in f] == ["ping"] * 3
    assert elapsed >= 0.6  # heartbeat=0.3s: pings come only after silence
    r.xadd(key, {"end": json.dumps({"v": 1, "status": "completed", "last_seq": 1})}, id="1-1")
    rest = [f for f in frames if "comment" not in f]
    client.close()
    assert [f["event"] for f in rest] == ["end"]


def test_idle_live_run_outlasts_the_client_socket_timeout(redis_server, key):  # noqa: F811
    """A run that is idle for longer than the Redis client's socket timeout
    (redis-py 8 defaults to 5 s) keeps its followers: pings, no error, and
    the end arrives when it is published."""
    import redis

    from langstream.server import create_app

    from langstream import wire

    events = [{"type": "event", "method": "values", "seq": 1,
               "params": {"namespace": [], "timestamp": 0, "data": {"x": 1}}}]
    redis_server.client.xadd(key, {"e": wire.dumps(events[0])}, id="1-0")
    server = ServerThread(create_app(redis.Redis.from_url(redis_server.url, socket_timeout=0.4),
                                     heartbeat=0.3))
    try:
        client = SSEClient(server.port, f"/runs/{key}/events")
        frames = client.frames()
        seen = []
        for frame in frames:
            seen.append(frame)
            if sum("comment" in f for f in seen) == 6:  # ~1.8 s idle: > 4 socket timeouts
                break
        last = events[-1]["seq"]
        redis_server.client.xadd(key, {"end": json.dumps({"v": 1, "status": "completed",
                                                           "last_seq": last})}, id=f"{last}-1")
        rest = [f for f in frames if "comment" not in f]
        client.close()
    finally:
        server.stop()
    assert [int(f["id"]) for f in seen if "id" in f] == [e["seq"] for e in events]
    assert not any(f.get("event") == "server-error" for f in seen + rest)
    assert [f["event"] for f in rest] == ["end"]


def _blocked_redis_clients(redis_server) -> int:  # noqa: F811
    return sum("b" in c["flags"] for c in redis_server.client.client_list())


def test_client_disconnect_mid_stream_ends_server_task(redis_server, app_server, key, backend):  # noqa: F811
    publish_run(redis_server.client, key, token_run(TOKENS), end=False)  # a run still going
    wait_for(lambda: app_server.hub.active_streams == 0, what="idle server")
    clients = [SSEClient(app_server.port, f"/runs/{key}/events") for _ in range(3)]
    for c in clients:
        frames = c.frames()
        next(frames), next(frames)  # retry + first event: streaming
    assert app_server.hub.active_streams == 3
    assert list(app_server.hub.watchers) == [key]
    wait_for(lambda: _blocked_redis_clients(redis_server) == 1, what="one blocking watcher read")
    for c in clients:
        c.close()
    wait_for(lambda: app_server.hub.active_streams == 0, what="server tasks to end")
    wait_for(lambda: not app_server.hub.watchers, what="watcher to stop")
    # the blocking watcher read is gone and every pooled connection is back
    wait_for(lambda: _blocked_redis_clients(redis_server) == 0, what="blocking read to end")
    pool = app_server.hub.redis.connection_pool
    wait_for(lambda: not pool._in_use_connections, what="redis connections returned to the pool")


# -- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("path, headers, status, words", [
    ("/runs/{missing}/events", {}, 404, ["no run stream", "{missing}"]),
    ("/runs/{key}/events", {"Last-Event-ID": "abc"}, 400, ["Last-Event-ID", "'abc'"]),
    ("/runs/{key}/events", {"Last-Event-ID": "-3"}, 400, ["Last-Event-ID", "'-3'"]),
    ("/runs/{key}/events", {"Last-Event-ID": "1.5"}, 400, ["Last-Event-ID", "'1.5'"]),
    ("/runs/{key}/events", {"Last-Event-ID": "9" * 40}, 400, ["Last-Event-ID"]),
    ("/runs/{key}/events", {"Last-Event-ID": "99"}, 416, ["99", "past the end"]),
    ("/runs/{key}/events?after=x", {}, 400, ["after", "'x'"]),
    ("/runs/{key}/events?methods=values,bogus", {}, 400, ["unknown method", "'bogus'", "values"]),
    ("/runs/{key}/events?methods=", {}, 400, ["methods"]),
    ("/runs/{key}/events?methods=values,,messages", {}, 400, ["methods", "empty"]),
    ("/runs/{key}/events?methods=custom:", {}, 400, ["unknown method", "'custom:'"]),
    ("/runs/{key}/events?namespace=a//b", {}, 400, ["namespace", "'a//b'"]),
    ("/runs/{key}/events?namespace=", {}, 400, ["namespace"]),
    ("/runs/{key}/events?method=values", {}, 400, ["unknown query parameter", "'method'"]),
    ("/runs/{key}/events?after=1&after=2", {}, 400, ["'after'", "more than once"]),
    ("/runs/{key}/events?event=custom", {}, 400, ["event", "'message'", "'custom'"]),
    ("/runs/{key}?event=", {}, 400, ["event", "''"]),
    ("/runs/{string}/events", {}, 409, ["{string}", "not a run stream"]),
    ("/runs/{key}?methods=nope", {}, 400, ["unknown method"]),
])
def test_bad_input_is_a_clear_4xx(redis_server, app_server, key, path, headers, status, words):  # noqa: F811
    publish_run(redis_server.client, key, token_run(["x"], sub=False))
    string_key = key + ":str"
    redis_server.client.set(string_key, "hello")
    names = {"key": key, "missing": key + ":nope", "string": string_key}
    got, hdrs, body = get(app_server.port, path.format(**names), headers)
    assert got == status, body
    assert hdrs["content-type"] == "application/json"
    message = json.loads(body)["error"]
    for word in words:
        assert word.format(**names) in message


def test_redis_down_is_503(redis_server):  # noqa: F811
    from langstream.server import create_app
    from server_support import free_port

    server = ServerThread(create_app(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        status, _, body = get(server.port, "/runs/x/events")
        assert status == 503 and "Redis is unavailable" in json.loads(body)["error"]
        status, _, body = get(server.port, "/healthz")
        assert status == 503
    finally:
        server.stop()


def test_create_app_rejects_bad_arguments():
    need_server_extra()
    import redis

    from langstream.server import create_app

    with pytest.raises(TypeError, match="redis must be a Redis URL.*got int 42"):
        create_app(42)
    with pytest.raises(ValueError, match="redis must be a URL like redis://"):
        create_app("localhost:6379")
    create_app(redis.Redis())  # accepted: see test_app_from_a_sync_client_without_lifespan
    with pytest.raises(ValueError, match="heartbeat must be > 0, got 0"):
        create_app("redis://localhost", heartbeat=0)
    with pytest.raises(TypeError, match="batch must be an int, got float 1.5"):
        create_app("redis://localhost", batch=1.5)
    with pytest.raises(ValueError, match="batch must be > 0, got 0"):
        create_app("redis://localhost", batch=0)
    with pytest.raises(ValueError, match="max_reads must be > 0, got -1"):
        create_app("redis://localhost", max_reads=-1)
    with pytest.raises(TypeError, match="extra_methods"):
        create_app("redis://localhost", extra_methods="values")


def test_app_from_a_sync_client_without_lifespan(redis_server, key, backend):  # noqa: F811
    """A ``redis.Redis`` client works, and the app needs no lifespan events:
    driven here as a bare ASGI callable, as some servers and test clients do."""
    import asyncio

    import redis

    from langstream.server import create_app

    events = publish_run(redis_server.client, key, token_run(["a"], sub=False))
    app = create_app(redis.Redis.from_url(redis_server.url))

    async def call(path, headers=()):
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        sent, done, asked = [], asyncio.Event(), []

        async def receive():
            if not asked:
                asked.append(1)
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await asyncio.wait_for(app(scope, receive, send), 10)
        await app.state.langstream.redis.aclose()
        app.state.langstream.redis = None
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], body.decode()

    status, body = asyncio.run(call(f"/runs/{key}/events", [("Last-Event-ID", "1")]))
    assert status == 200
    ids = [int(line[4:]) for line in body.split("\n") if line.startswith("id: ")]
    assert ids == [e["seq"] for e in events[1:]] + [events[-1]["seq"]]
    assert "event: end" in body
    status, body = asyncio.run(call(f"/runs/{key}:nope/events"))
    assert status == 404 and "no run stream" in body


def test_key_prefix_hides_other_keys(redis_server, key, backend):  # noqa: F811
    from langstream.server import create_app

    publish_run(redis_server.client, key, token_run(["a"], sub=False))
    other = "secret:" + key
    publish_run(redis_server.client, other, token_run(["a"], sub=False))
    server = ServerThread(create_app(redis_server.url, key_prefix="run:"))
    try:
        client = SSEClient(server.port, f"/runs/{key}/events")
        assert client.events()[-1]["event"] == "end"
        client.close()
        status, _, body = get(server.port, f"/runs/{other}/events")
        assert status == 404
        assert json.loads(body) == {"error": f"no run stream at key {other!r}"}
    finally:
        server.stop()
    with pytest.raises(TypeError, match="key_prefix must be a str"):
        create_app(redis_server.url, key_prefix=b"run:")


def test_extra_methods_are_accepted(redis_server, key):  # noqa: F811
    from langstream.server import create_app

    r = redis_server.client
    r.xadd(key, {"e": json.dumps({"v": 1, "seq": 1, "method": "tools", "ns": [], "ts": 0,
                                  "data": {"name": "search"}})}, id="1-0")
    r.xadd(key, {"end": json.dumps({"v": 1, "status": "completed", "last_seq": 1})}, id="1-1")
    server = ServerThread(create_app(redis_server.url, extra_methods=["tools"]))
    try:
        client = SSEClient(server.port, f"/runs/{key}/events?methods=tools")
        assert [f["event"] for f in client.events()] == ["tools", "end"]
        client.close()
    finally:
        server.stop()


# -- the page ------------------------------------------------------------------------

def test_page_is_self_contained(redis_server, app_server):  # noqa: F811
    status, headers, body = get(app_server.port, "/runs/a%3Cb%3E%22q/x")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert "new EventSource" in page
    assert 'const RUN_KEY = "a\\u003cb>\\"q/x";' in page  # no </script> breakout
    assert "<title>langstream · a&lt;b&gt;&quot;q/x</title>" in page


# -- the command line ------------------------------------------------------------------

def test_serve_command_serves_a_run(redis_server, key, backend):  # noqa: F811
    events = publish_run(redis_server.client, key, token_run(["a", "b"]))
    proc, port = serve_subprocess(redis_server.url)
    try:
        client = SSEClient(port, f"/runs/{key}/events")
        frames = client.events()
        client.close()
        assert _ids(frames) == [e["seq"] for e in events]
        assert frames[-1]["event"] == "end"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize("args, words", [
    ([], "--redis"),
    (["--redis", "localhost"], "--redis must be a URL"),
    (["--redis", "redis://x", "--port", "70000"], "--port must be between 0 and 65535"),
    (["--redis", "redis://x", "--heartbeat", "0"], "--heartbeat must be > 0"),
])
def test_serve_command_rejects_bad_arguments(args, words, capsys):
    need_server_extra()
    from langstream.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_serve_demo_publishes_a_run_with_tokens(redis_server):  # noqa: F811
    import subprocess
    import sys

    from server_support import ROOT, free_port

    key = f"demo:{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "langstream", "serve", "--redis", redis_server.url,
         "--port", str(port), "--log-level", "warning", "--demo", key],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:  # (the server ended before printing: say why)
            proc.wait(15)
            raise AssertionError(
                f"serve --demo exited {proc.returncode} before printing its URL; "
                f"stderr: {proc.stderr.read()[-2000:]}")
        assert line.strip() == f"demo run: http://127.0.0.1:{port}/runs/{key.replace(':', '%3A')}"
        wait_for(lambda: redis_server.client.exists(key), what="the demo run")
        client = SSEClient(port, f"/runs/{key}/events?methods=messages,lifecycle")
        frames = client.events()
        client.close()
    finally:
        proc.terminate()
        proc.wait(15)
    from langstream import wire
    from langstream.server._demo import ANSWER

    deltas = [wire.loads(f["data"])["params"]["data"][0] for f in frames if f["event"] == "messages"]
    text = "".join(d["delta"]["text"] for d in deltas if d["event"] == "content-block-delta")
    assert text == ANSWER
    assert [wire.loads(f["data"])["params"]["data"]["event"] for f in frames
            if f["event"] == "lifecycle"] == ["started", "completed"]
    assert json.loads(frames[-1]["data"])["status"] == "completed"


def test_readme_server_examples_run(redis_server, tmp_path):  # noqa: F811
    """The README's python blocks under "Serving runs to browsers" run as
    pasted, each in a fresh process (``REDIS_URL`` = the test Redis)."""
    import os
    import re
    import subprocess
    import sys

    from server_support import ROOT

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = re.search(r"\n## Serving runs to browsers.*?(?=\n## )", text, re.S)
    assert section, "README.md has no 'Serving runs to browsers' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(0), re.S)
    assert len(blocks) == 2
    env = dict(os.environ, REDIS_URL=redis_server.url,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    outputs = []
    for block in blocks:
        path = tmp_path / "block.py"
        path.write_text(block, encoding="utf-8")
        out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                             env=env, timeout=60, cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.strip())
    assert outputs == ["{'step': 2}", "0"]
    assert redis_server.client.xrevrange("runs:hello", count=1)[0][1][b"end"]


def test_key_deleted_mid_stream_ends_with_server_error(redis_server, app_server, key, backend):  # noqa: F811
    publish_run(redis_server.client, key, token_run(["a"], sub=False), end=False)
    client = SSEClient(app_server.port, f"/runs/{key}/events")
    frames = client.frames()
    seen = [next(frames), next(frames)]  # retry, first event
    redis_server.client.delete(key)
    rest = [f for f in frames if "comment" not in f]
    client.close()
    assert "id" in seen[1]
    assert rest[-1]["event"] == "server-error"
    assert "no longer exists" in json.loads(rest[-1]["data"])["error"]
    wait_for(lambda: app_server.hub.active_streams == 0, what="the stream to end")


def test_redis_restart_mid_stream_then_resume(tmp_path, backend):
    """Redis goes away while a client follows a live run: the client gets a
    ``server-error`` event and the response ends (no hang); once Redis is
    back, a reconnect with Last-Event-ID resumes exactly."""
    need_server_extra()
    import redis

    from langstream.server import create_app
    from redis_helpers import RedisServer

    server = RedisServer().start()
    app = None
    try:
        client_r = redis.Redis.from_url(server.url)
        key = "restart:run"
        events = publish_run(client_r, key, token_run(["a", "b", "c"], sub=False), end=False)
        client_r.close()
        app = ServerThread(create_app(server.url, heartbeat=0.3))
        sse = SSEClient(app.port, f"/runs/{key}/events")
        got = []
        for frame in sse.frames():
            if "id" in frame:
                got.append(int(frame["id"]))
            if len(got) == len(events):
                break
        # Redis dies (no persistence: the run is gone) and comes back empty;
        # the producer republishes the run, as a durable Redis would keep it
        server.stop()
        rest = [f for f in sse.frames() if "comment" not in f]
        sse.close()
        assert rest and rest[-1]["event"] == "server-error"
        assert json.loads(rest[-1]["data"])["error"]
        server.start()
        client_r = redis.Redis.from_url(server.url)
        publish_run(client_r, key, token_run(["a", "b", "c"], sub=False))
        client_r.close()
        sse = SSEClient(app.port, f"/runs/{key}/events", {"Last-Event-ID": str(got[-1])})
        tail = sse.events()
        sse.close()
        assert got == [e["seq"] for e in events]
        assert [f["event"] for f in tail] == ["end"] and tail[0]["id"] == str(got[-1])
        wait_for(lambda: app.hub.active_streams == 0, what="streams to end")
    finally:
        if app is not None:
            app.stop()
        server.stop()


def test_server_package_imports_without_starlette():
    """``import langstream.server`` needs no extra; create_app names the one missing."""
    import subprocess
    import sys

    from server_support import ROOT

    code = ("import sys; sys.modules['starlette'] = None\n"
            "import langstream.server as s\n"
            "try:\n"
            "    s.create_app('redis://localhost:6379/0')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'langstream[server]'" in out.stdout


def test_server_bench_runs(redis_server):  # noqa: F811
    """``python -m langstream.server.bench`` end to end, tiny inputs (a smoke
    test so it does not rot; its figures are not checked)."""
    import subprocess
    import sys

    from server_support import ROOT

    out = subprocess.run(
        [sys.executable, "-m", "langstream.server.bench", "--redis", redis_server.url,
         "--events", "50", "--multi-events", "20", "--clients", "3", "--rounds", "1",
         "--seconds", "0.2", "--rate", "100", "--no-browser", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [r["clients"] for r in result["throughput"]] == [1, 1, 3, 3]
    assert all(r["events_per_s"] > 0 for r in result["throughput"])
    assert [r["tokens"] for r in result["latency"]] == [20, 20]
