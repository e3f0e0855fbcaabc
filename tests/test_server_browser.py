"""The live page in a real browser: headless Chromium (DevTools protocol)
follows a run that is still being published, the connection is cut mid-run,
the page's EventSource reconnects by itself, and the final DOM holds every
token and the final values exactly once.  A screenshot is saved under
``build/`` (a CI artifact, never committed)."""

from __future__ import annotations

import json
import os
import threading
import uuid

import pytest

from redis_helpers import redis_url  # noqa: F401  (fixture)
from server_support import (
    ROOT,
    Chromium,
    CuttableProxy,
    Progress,
    ServerThread,
    progress_run,
    publish_run,
    redis_server,  # noqa: F401  (fixture)
    token_run,
    wait_for,
)

DOM_STATE = """JSON.stringify((function () {
  var s = window.langstream;
  if (!s || !document.getElementById('conn')) { return {}; }
  var q = function (sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); };
  return {
    lastSeq: s.lastSeq, received: s.received, duplicates: s.duplicates, reconnects: s.reconnects, ended: s.ended,
    connection: document.getElementById('conn').dataset.state,
    status: document.getElementById('run-status').textContent,
    lastSeqText: document.getElementById('last-seq').textContent,
    messages: q('#messages .message').map(function (m) {
      return {call: m.dataset.call, done: m.dataset.done, tokens: Number(m.dataset.tokens),
              lastSeq: Number(m.dataset.lastSeq), text: m.querySelector('.text').textContent};
    }),
    values: document.getElementById('values').textContent,
    tree: q('#tree li').map(function (li) { return [li.dataset.ns, li.querySelector('.st').dataset.status]; })
  };
})())"""


class _GatedParts:
    """Stream parts that stop after ``gate_at`` parts until ``gate`` is set."""

    def __init__(self, parts, gate_at, gate):
        self.parts, self.gate_at, self.gate = parts, gate_at, gate

    def __iter__(self):
        for i, part in enumerate(self.parts):
            if i == self.gate_at:
                assert self.gate.wait(60), "the test never released the producer"
            yield part


def _follow_gated_run(redis_server, tmp_path, lane, parts, gate_at, reached, what,  # noqa: F811
                      screenshot=None, **publish_kw):
    """Publish ``parts`` (stopping before part ``gate_at`` until released)
    while the page follows the run through a proxy; once ``reached(state)``,
    cut the connection, wait for the page to notice, release the producer and
    wait for the end.  Returns (state at the gate, final state, the
    published events, connections the proxy accepted)."""
    from langstream.server import create_app

    gate = threading.Event()
    key = f"browser:{uuid.uuid4().hex[:10]}"
    published = []
    app = ServerThread(create_app(redis_server.url, heartbeat=1.0, retry=0.3))
    proxy = CuttableProxy(app.port)
    browser = None
    producer = None
    try:
        def produce():
            gated = _GatedParts(parts, gate_at, gate)
            published.extend(publish_run(redis_server.client, key, gated, lane=lane,
                                         **publish_kw))

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        wait_for(lambda: redis_server.client.exists(key), what="the run to start")
        browser = Chromium(str(tmp_path))
        browser.navigate(f"http://127.0.0.1:{proxy.port}/runs/{key}")

        def state():
            return json.loads(browser.evaluate(DOM_STATE) or "{}")

        # the page follows the live run up to the gate, then the connection is cut
        wait_for(lambda: reached(state()), timeout=30, what=what)
        before = state()
        assert not before["ended"]
        assert proxy.cut() > 0
        wait_for(lambda: state()["reconnects"] >= 1, timeout=15, what="the page to notice the cut")
        gate.set()  # the rest is published after the cut
        wait_for(lambda: state()["ended"], timeout=60, what="the page to see the end")
        producer.join(30)
        final = state()
        if screenshot:
            browser.screenshot(os.path.join(ROOT, "build", screenshot))
    finally:
        gate.set()
        if browser is not None:
            browser.close()
        proxy.close()
        app.stop()
        if producer is not None:
            producer.join(30)
    return before, final, published, proxy.accepted


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_page_reconnects_and_shows_every_token_once(redis_server, backend, lane, tmp_path):  # noqa: F811
    tokens = [f"tok{i} " for i in range(30)]
    parts = token_run(tokens, calls=2)
    before, final, published, accepted = _follow_gated_run(
        redis_server, tmp_path, lane, parts, len(parts) // 2,
        lambda st: st.get("lastSeq", 0) >= 20 and st["connection"] == "live",
        "the page to stream", screenshot=f"server-browser-{backend}-{lane}.png", delay=0.01)

    assert accepted >= 2  # page + stream, then the reconnect
    assert final["reconnects"] >= 1 and final["duplicates"] == 0
    assert final["connection"] == "closed" and final["status"] == "completed"
    assert final["lastSeq"] == published[-1]["seq"] and final["lastSeqText"] == str(final["lastSeq"])
    # every token exactly once, in order (the tokens are all different, so a
    # duplicate or a gap changes the text), and the count matches
    deltas = [e for e in published if e["method"] == "messages"
              and e["params"]["data"][0]["event"] == "content-block-delta"]
    want = []
    for i in range(2):
        mine = [e for e in deltas if e["params"]["data"][1]["run_id"] == f"call-{i}"]
        want.append({"call": f"call-{i}", "done": "true", "tokens": len(tokens),
                     "lastSeq": mine[-1]["seq"],
                     "text": "".join(e["params"]["data"][0]["delta"]["text"] for e in mine)})
    assert final["messages"] == want
    assert want[0]["text"] == "".join(tokens)
    final_values = [e for e in published if e["method"] == "values"
                    and not e["params"]["namespace"]][-1]["params"]["data"]
    assert json.loads(final["values"]) == final_values
    assert final["tree"] == [["research:t-1", "completed"]]
    assert before["lastSeq"] < final["lastSeq"]


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_page_counts_custom_events_for_its_last_seq_and_resume(redis_server, backend, lane,
                                                                tmp_path):  # noqa: F811
    """Events of a ``custom:<name>`` channel count like any other: the page's
    last seq is that of a ``custom:progress`` event while the run waits right
    after one, the page resumes after it when the connection is cut, and in
    the end it has received every event of the run exactly once."""
    from langstream import stream_events

    from helpers import replay

    parts = progress_run(12)
    # the producer stops right after a custom:progress event, past the middle
    gate_at = next(i for i in range(len(parts) // 2, len(parts))
                   if parts[i - 1]["type"] == "custom" and "progress" in parts[i - 1]["data"])
    before_gate = list(stream_events(replay(parts[:gate_at]), transformers=[Progress]))
    assert before_gate[-1]["method"] == "custom:progress"
    gate_seq = before_gate[-1]["seq"]
    at_gate, final, published, _ = _follow_gated_run(
        redis_server, tmp_path, lane, parts, gate_at, lambda st: st.get("lastSeq") == gate_seq,
        f"the page's last seq to reach the custom:progress event at seq {gate_seq}",
        transformers=[Progress])

    assert [e["method"] for e in published[:gate_seq]] == [e["method"] for e in before_gate]
    assert at_gate["lastSeqText"] == str(gate_seq)
    assert at_gate["received"] == gate_seq and at_gate["duplicates"] == 0
    assert published[-1]["method"] == "custom:progress"
    assert final["lastSeq"] == published[-1]["seq"] and final["lastSeqText"] == str(final["lastSeq"])
    assert final["received"] == len(published) and final["duplicates"] == 0
    assert final["reconnects"] >= 1 and final["status"] == "completed"
    assert json.loads(final["values"]) == {"step": 12}


@pytest.mark.parametrize("outcome", ["failed", "interrupted"])
def test_page_opened_before_the_run_waits_then_shows_its_end(redis_server, backend, outcome,
                                                              tmp_path):  # noqa: F811
    """The page is opened before anything is published: it says why it waits
    (the server's 404 message) and retries; once the run is published it
    follows it, and shows a failed run's error or an interrupted run's
    pending interrupts."""
    from langstream.server import create_app

    key = f"browser:{uuid.uuid4().hex[:10]}"
    app = ServerThread(create_app(redis_server.url, heartbeat=1.0, retry=0.3))
    browser = None
    try:
        browser = Chromium(str(tmp_path))
        browser.navigate(f"http://127.0.0.1:{app.port}/runs/{key}")

        def state():
            return json.loads(browser.evaluate(DOM_STATE) or "{}")

        def problem():
            return browser.evaluate("document.getElementById('problem').textContent")

        wait_for(lambda: state().get("connection") == "waiting" and "HTTP 404" in problem(),
                 timeout=15, what="the page to report the missing run")
        assert f"no run stream at key {key!r}" in problem()
        parts = token_run(["a", "b"], sub=False)
        if outcome == "failed":
            publish_run(redis_server.client, key, parts, error=ValueError("model exploded"))
        else:
            parts.append({"type": "values", "ns": (), "data": {"answer": "ab"},
                          "interrupts": ({"value": {"question": "publish?"}, "id": "i-1"},)})
            publish_run(redis_server.client, key, parts)
        wait_for(lambda: state().get("ended"), timeout=30, what="the page to follow the run")
        final = state()
        final_problem = problem()
        interrupts = browser.evaluate("document.getElementById('interrupts').hidden ? null : "
                                      "document.getElementById('interrupts').textContent")
        browser.screenshot(os.path.join(ROOT, "build", f"server-browser-{outcome}-{backend}.png"))
    finally:
        if browser is not None:
            browser.close()
        app.stop()
    if outcome == "failed":
        assert final["status"] == "failed: ValueError: model exploded"
        assert interrupts is None
    else:
        assert final["status"] == "interrupted"
        assert interrupts.startswith("waiting for input: ")
        shown = json.loads(interrupts[len("waiting for input: "):])
        assert shown == [{"value": {"question": "publish?"}, "id": "i-1"}]
    assert final["duplicates"] == 0 and final["connection"] == "closed"
    assert [m["text"] for m in final["messages"]] == ["ab"]
    assert final_problem == ""  # cleared once connected


def test_page_draws_nested_subgraphs_as_a_tree(redis_server, backend, tmp_path):  # noqa: F811
    """A recorded LangGraph run with a subgraph inside a subgraph: the page's
    tree nests the inner one under the outer one, each with its final status."""
    from helpers import load_trace

    from langstream.server import create_app

    parts, error = load_trace("nested_two_levels")
    assert error is None
    key = f"browser:{uuid.uuid4().hex[:10]}"
    events = publish_run(redis_server.client, key, parts)
    want = {}
    for e in events:
        if e["method"] == "lifecycle":
            want["/".join(e["params"]["data"]["namespace"])] = e["params"]["data"]["event"]
    assert any(path.count("/") == 1 for path in want)  # two levels deep
    app = ServerThread(create_app(redis_server.url))
    browser = None
    try:
        browser = Chromium(str(tmp_path))
        browser.navigate(f"http://127.0.0.1:{app.port}/runs/{key}")
        wait_for(lambda: json.loads(browser.evaluate(DOM_STATE) or "{}").get("ended"),
                 timeout=30, what="the page to read the run")
        tree = browser.evaluate("""JSON.stringify(Array.prototype.map.call(
            document.querySelectorAll('#tree li'), function (li) {
              var parent = li.parentElement.closest('li');
              return [li.dataset.ns, li.querySelector('.st').dataset.status,
                      parent ? parent.dataset.ns : null];
            }))""")
    finally:
        if browser is not None:
            browser.close()
        app.stop()
    tree = json.loads(tree)
    assert {ns: status for ns, status, _ in tree} == want
    for ns, _, parent in tree:
        outer = ns.rsplit("/", 1)[0] if "/" in ns else None
        assert parent == outer
