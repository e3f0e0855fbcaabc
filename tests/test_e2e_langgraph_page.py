"""End to end: a real LangGraph graph, streamed through langstream, published
to Redis, served by the SSE app under uvicorn, read by the live page in
headless Chromium.

The graph (``chat_writer_graph``) streams a chat model's tokens at the root and
inside a subgraph, writes to the stream writer there (one write becomes a
``custom:progress`` event through a transformer, the other stays ``custom``),
and ends with values: every kind of event the page shows or only counts.  The
producer paces its own iteration, so the page follows a live run.  The page
must receive every event of the run exactly once, in seq order, with the
producer's methods, then the end; its DOM must show both model replies, the
subgraph's lifecycle and the final values.  An SSE client reads the same run
over HTTP as a second witness.

Needs LangGraph, redis-server and Chromium: where one cannot exist the test
skips; in CI (``CI=true``) a missing one fails it (LangGraph: where
``_langgraph_support`` requires it, as on CI's CPython leg).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
import warnings

import pytest
from _langgraph_support import require_langgraph

require_langgraph(module_level=True)

from redis_helpers import redis_url  # noqa: E402,F401  (fixture)
from server_support import (  # noqa: E402
    ROOT,
    Chromium,
    Progress,
    SSEClient,
    ServerThread,
    redis_server,  # noqa: F401  (fixture)
    wait_for,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")

PACE = 0.02  # seconds the producer waits between events: the page follows a live run

# Before the page's own script runs: record what the page's EventSource
# dispatches (the page asks for unnamed frames, so every method event is a
# "message"), as [seq, method of the data, seq of the data] and the end.
RECORDER = """(function () {
  var Native = window.EventSource;
  window.__seen = [];
  function Recording(url, init) {
    var es = new Native(url, init);
    es.addEventListener("message", function (e) {
      var d = JSON.parse(e.data);
      window.__seen.push([Number(e.lastEventId), d.method, d.seq]);
    });
    es.addEventListener("end", function (e) {
      window.__seen.push([Number(e.lastEventId), "end", JSON.parse(e.data).status]);
    });
    return es;
  }
  Recording.prototype = Native.prototype;
  Recording.CONNECTING = Native.CONNECTING;
  Recording.OPEN = Native.OPEN;
  Recording.CLOSED = Native.CLOSED;
  window.EventSource = Recording;
})();"""

PAGE_STATE = """JSON.stringify((function () {
  var s = window.langstream;
  if (!s || !document.getElementById('conn')) { return {}; }
  var q = function (sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); };
  return {
    lastSeq: s.lastSeq, received: s.received, duplicates: s.duplicates, ended: s.ended,
    connection: document.getElementById('conn').dataset.state,
    status: document.getElementById('run-status').textContent,
    lastSeqText: document.getElementById('last-seq').textContent,
    messages: q('#messages .message').map(function (m) {
      return {done: m.dataset.done, tokens: Number(m.dataset.tokens),
              text: m.querySelector('.text').textContent};
    }),
    values: document.getElementById('values').textContent,
    tree: q('#tree li').map(function (li) {
      return [li.dataset.ns, li.querySelector('.st').dataset.status];
    }),
    seen: window.__seen || []
  };
})())"""


def _text(content):
    """A message's text, whether its content is a string or a list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text")


def _produce(lane, key, url, events, errors):
    """Run the graph through langstream, published to ``key``, pacing the run."""
    import redis

    import _langgraph_graphs as G
    import langstream
    from langstream.integrations.langgraph import astream_graph, stream_graph
    from langstream.integrations.redis import publish

    warnings.filterwarnings("ignore", message=".*v3 streaming protocol.*")
    graph, inp, config, kwargs = G.chat_writer_graph()
    transformers = [langstream.CustomTransformer, Progress]
    try:
        if lane == "sync":
            client = redis.Redis.from_url(url)
            try:
                run = publish(stream_graph(graph, inp, config, transformers=transformers,
                                           **kwargs), client, key)
                with run:
                    for event in run:
                        events.append(event)
                        time.sleep(PACE)
            finally:
                client.close()
            return

        import redis.asyncio as aredis

        async def main():
            client = aredis.Redis.from_url(url)
            try:
                run = publish(astream_graph(graph, inp, config, transformers=transformers,
                                            **kwargs), client, key)
                async with run:
                    async for event in run:
                        events.append(event)
                        await asyncio.sleep(PACE)
            finally:
                await client.aclose()

        asyncio.run(main())
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_langgraph_run_reaches_the_page_complete_and_in_order(redis_server, backend, lane,
                                                               tmp_path):  # noqa: F811
    from langstream.server import create_app

    key = f"e2e:{uuid.uuid4().hex[:10]}"
    events, errors = [], []
    app = ServerThread(create_app(redis_server.url, heartbeat=1.0, retry=0.3))
    browser = None
    producer = None
    try:
        browser = Chromium(str(tmp_path))
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=RECORDER)
        producer = threading.Thread(target=_produce,
                                    args=(lane, key, redis_server.url, events, errors),
                                    daemon=True)
        producer.start()
        wait_for(lambda: redis_server.client.exists(key) or errors, timeout=30,
                 what="the LangGraph run to be published")
        browser.navigate(f"http://127.0.0.1:{app.port}/runs/{key}")

        def state():
            return json.loads(browser.evaluate(PAGE_STATE) or "{}")

        wait_for(lambda: state().get("ended") or errors, timeout=60,
                 what="the page to see the run's end")
        producer.join(30)
        final = state()
        browser.screenshot(os.path.join(ROOT, "build", f"e2e-langgraph-{backend}-{lane}.png"))
        client = SSEClient(app.port, f"/runs/{key}/events")
        frames = client.events()
        client.close()
    finally:
        if browser is not None:
            browser.close()
        app.stop()
        if producer is not None:
            producer.join(30)
        redis_server.client.delete(key)

    assert not errors, errors
    assert not producer.is_alive()
    methods = [e["method"] for e in events]
    n = len(events)
    # the run holds every kind of event the page handles or only counts
    assert {"values", "messages", "lifecycle", "custom", "custom:progress"} <= set(methods)
    assert [e["seq"] for e in events] == list(range(1, n + 1))

    # the page: every event once, in seq order, with the producer's methods, then the end
    want = [[e["seq"], e["method"], e["seq"]] for e in events]
    assert final["seen"] == want + [[n, "end", "completed"]]
    assert final["received"] == n and final["duplicates"] == 0
    assert final["lastSeq"] == n and final["lastSeqText"] == str(n)
    assert final["status"] == "completed" and final["connection"] == "closed"
    # what it shows: both replies token by token, the subgraph, the final values
    assert [(m["text"], m["done"]) for m in final["messages"]] == [
        ("hello there world", "true"), ("deep inside the subgraph now", "true")]
    deltas = [e for e in events if e["method"] == "messages"
              and e["params"]["data"][0]["event"] == "content-block-delta"]
    assert sum(m["tokens"] for m in final["messages"]) == len(deltas)
    subgraphs = [e["params"]["data"]["namespace"] for e in events
                 if e["method"] == "lifecycle"]
    assert len(subgraphs) == 2 and subgraphs[0] == subgraphs[1]
    assert final["tree"] == [["/".join(subgraphs[0]), "completed"]]
    shown = json.loads(final["values"])
    last_values = [e for e in events if e["method"] == "values"
                   and not e["params"]["namespace"]][-1]["params"]["data"]
    assert [(m["type"], _text(m["content"])) for m in shown["messages"]] == [
        (m.type, _text(m.content)) for m in last_values["messages"]] == [
        ("human", "hi"), ("ai", "hello there world"), ("ai", "deep inside the subgraph now")]

    # a plain SSE client over HTTP reads the same run, named by method
    assert [(int(f["id"]), f["event"]) for f in frames[:-1]] == [(e["seq"], e["method"])
                                                                  for e in events]
    assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"])["last_seq"] == n
