"""``python -m langstream.server.bench``: the SSE server against reading Redis directly.

Needs the ``server`` extra and a Redis (``--redis URL``, or a private
``redis-server`` started on a free port when it is on PATH).  The server runs
as ``python -m langstream serve`` in a child process (uvicorn, one worker), so
it competes for the CPU as it would in production, not with the clients'
event loop.

Throughput
    A run of ``--events`` token events (LangGraph v2 ``messages`` parts,
    ~200 bytes of wire JSON each) is published first and read to the end by
    one SSE client; a run of ``--multi-events`` by ``--clients`` concurrent
    SSE clients; for comparison, both by direct Redis readers (``XRANGE`` in
    batches of 256, as the server reads; asyncio redis-py).
    Figures: events per second delivered (summed over clients), best of
    ``--rounds``.

Latency
    A producer publishes ``--rate`` tokens per second (one pump step, so one
    Redis pipeline, per token) for ``--seconds``; each token carries the
    wall-clock time the producer yielded it.  Meanwhile, on the same run: a
    direct Redis reader (``XREAD BLOCK``), an SSE client (raw socket), and, when
    chromium is on PATH, the live page in headless Chromium with an
    ``onmessage`` listener (``performance.timeOrigin + performance.now()``).
    Figures: p50 / p99 / max of (receive time - push time), in ms.

The clients and the producer share this process (threads), the machine's
cores are shared with the server and Redis: the figures are for comparing
paths on one machine, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: List[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[idx]


def _token_parts(n: int, *, rate: float = 0.0, lead_in: float = 0.0) -> Any:
    """A values part, then ``n`` text-delta message parts (``rate`` per second
    when > 0), each stamped with the wall-clock time it is yielded."""
    yield {"type": "values", "ns": (), "data": {"answer": ""}, "interrupts": ()}
    if lead_in:
        time.sleep(lead_in)
    meta = {"run_id": "bench", "langgraph_node": "answer"}
    yield {"type": "messages", "ns": (),
           "data": ({"event": "message-start", "role": "ai", "id": "m-bench"}, meta)}
    start = time.perf_counter()
    for i in range(n):
        if rate:
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        stamped = dict(meta, t_push=time.time())
        yield {"type": "messages", "ns": (),
               "data": ({"event": "content-block-delta", "index": 0,
                         "delta": {"type": "text-delta", "text": f"token{i} "}}, stamped)}
    yield {"type": "messages", "ns": (), "data": ({"event": "message-finish"}, meta)}


def _publish(url: str, key: str, parts: Any) -> None:
    import redis

    from langstream import stream_events
    from langstream.integrations.redis import publish

    client = redis.Redis.from_url(url)
    try:
        client.delete(key)
        with publish(stream_events(parts), client, key, expire=600) as run:
            for _ in run:
                pass
    finally:
        client.close()


# -- readers ---------------------------------------------------------------------

async def _sse_read_all(port: int, key: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /runs/{key}/events HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    pattern = b"\n\nid: "  # every event frame follows a blank line
    count = 0
    tail = b""
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            break
        data = tail + chunk
        count += data.count(pattern)
        tail = data[-(len(pattern) - 1):]  # too short to hold a whole match again
    writer.close()
    return count - 1  # the end event has an id too


async def _redis_read_all(url: str, key: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    count = 0
    start = "-"
    try:
        while True:
            entries = await client.xrange(key, min=start, max="+", count=256)
            if not entries:
                break
            for entry_id, fields in entries:
                if b"end" in fields:
                    return count
                count += 1
                seq = int(entry_id.split(b"-")[0])
                start = f"{seq}-1"
    finally:
        await client.aclose()
    return count


def _throughput(label: str, make: Any, clients: int, expect: int, rounds: int) -> Dict[str, Any]:
    best = None
    for _ in range(rounds):
        async def go() -> List[int]:
            return await asyncio.gather(*(make() for _ in range(clients)))

        t0 = time.perf_counter()
        counts = asyncio.run(go())
        elapsed = time.perf_counter() - t0
        if any(c != expect for c in counts):
            raise RuntimeError(f"{label}: a reader got {counts[:5]}..., expected {expect} each")
        rate = clients * expect / elapsed
        if best is None or rate > best["events_per_s"]:
            best = {"path": label, "clients": clients, "seconds": round(elapsed, 3),
                    "events_per_s": round(rate)}
    assert best is not None
    return best


class _LatencySSE(threading.Thread):
    def __init__(self, port: int, key: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.latencies: List[float] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.sendall(f"GET /runs/{self.key}/events HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
            buf = b""
            done = False
            while not done:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                now = time.time()
                buf += chunk
                *frames, buf = buf.split(b"\n\n")
                for frame in frames:
                    if b"event: end" in frame:
                        done = True
                    for line in frame.split(b"\n"):
                        if line.startswith(b"data: ") and b"t_push" in line:
                            self.latencies.append(now - _t_push(json.loads(line[6:])))
            sock.close()
        except BaseException as exc:  # reported by the caller
            self.error = exc


def _t_push(wire_event: Dict[str, Any]) -> float:
    data = wire_event["data"]
    pair = data["v"] if isinstance(data, dict) and data.get("__ls__") == "tuple" else data
    return float(pair[1]["t_push"])


class _LatencyRedis(threading.Thread):
    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.latencies: List[float] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        last = "0-0"
        try:
            while True:
                got = client.xread({self.key: last}, count=256, block=5000)
                now = time.time()
                if not got:
                    raise TimeoutError("no entry within 5 s")
                for entry_id, fields in got[0][1]:
                    last = entry_id
                    if b"end" in fields:
                        return
                    raw = fields[b"e"]
                    if b"t_push" in raw:
                        self.latencies.append(now - _t_push(json.loads(raw)))
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()


_BROWSER_HOOK = """(function () {
  window.__lat = [];
  window.langstream.es.addEventListener('message', function (e) {
    var now = performance.timeOrigin + performance.now();
    var ev = JSON.parse(e.data);
    if (ev.method !== 'messages') { return; }
    var d = ev.data;
    var pair = (d && d.__ls__ === 'tuple') ? d.v : d;
    if (pair && pair[1] && pair[1].t_push) { window.__lat.push(now - pair[1].t_push * 1000); }
  });
  return true;
})()"""


def _summary(path: str, latencies_ms: List[float], expect: int) -> Dict[str, Any]:
    return {"path": path, "tokens": len(latencies_ms), "expected": expect,
            "p50_ms": round(_pct(latencies_ms, 50), 2), "p99_ms": round(_pct(latencies_ms, 99), 2),
            "max_ms": round(max(latencies_ms), 2) if latencies_ms else None}


_BARE_HOOK = """(function () {
  window.__lat = []; window.__done = false;
  var es = new EventSource(%s);
  es.addEventListener('messages', function (e) {
    var now = performance.timeOrigin + performance.now();
    var d = JSON.parse(e.data).data;
    var pair = (d && d.__ls__ === 'tuple') ? d.v : d;
    if (pair && pair[1] && pair[1].t_push) { window.__lat.push(now - pair[1].t_push * 1000); }
  });
  es.addEventListener('end', function () { es.close(); window.__done = true; });
  return true;
})()"""


def _latency(url: str, port: int, rate: float, seconds: float,
             browser: Optional[str]) -> List[Dict[str, Any]]:
    """One latency run; ``browser`` is None, "page" (the live page) or
    "bare" (a bare EventSource on a same-origin page that renders nothing)."""
    n = int(rate * seconds)
    key = f"bench:lat:{uuid.uuid4().hex[:8]}"
    producer = threading.Thread(target=_publish, args=(url, key, _token_parts(n, rate=rate,
                                                                                lead_in=3.0)),
                                daemon=True)
    import redis

    probe = redis.Redis.from_url(url)
    producer.start()
    deadline = time.monotonic() + 10
    while not probe.exists(key):
        if time.monotonic() > deadline:
            raise RuntimeError("the producer did not start")
        time.sleep(0.01)
    probe.close()
    direct = _LatencyRedis(url, key)
    sse = _LatencySSE(port, key)
    direct.start()
    sse.start()
    chrome = None
    tmp = None
    if browser:
        from langstream.server._browser import Chromium

        tmp = tempfile.TemporaryDirectory()
        chrome = Chromium(tmp.name)
        if browser == "page":
            chrome.navigate(f"http://127.0.0.1:{port}/runs/{key}")
            ready = ("!!(window.langstream && window.langstream.es && "
                     "window.langstream.connection === 'live')")
        else:
            chrome.navigate(f"http://127.0.0.1:{port}/healthz")
            ready = "document.readyState === 'complete'"
        deadline = time.monotonic() + 10
        while not chrome.evaluate(ready):
            if time.monotonic() > deadline:
                raise RuntimeError("the page did not connect")
            time.sleep(0.02)
        if browser == "page":
            chrome.evaluate(_BROWSER_HOOK)
        else:
            chrome.evaluate(_BARE_HOOK % json.dumps(f"/runs/{key}/events?methods=messages"))
    producer.join()
    direct.join(30)
    sse.join(30)
    for reader in (direct, sse):
        if reader.error is not None:
            raise reader.error
    out = [_summary("Redis XREAD BLOCK (direct)", [x * 1000 for x in direct.latencies], n),
           _summary("SSE client (raw socket)", [x * 1000 for x in sse.latencies], n)]
    if chrome is not None:
        deadline = time.monotonic() + 30
        done = "window.langstream.ended" if browser == "page" else "window.__done"
        while not chrome.evaluate(done):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        lat = chrome.evaluate("window.__lat") or []
        chrome.close()
        label = ("browser onmessage, live page" if browser == "page"
                 else "browser onmessage, bare EventSource")
        out.append(_summary(label + " (headless Chromium)", lat, n))
    if tmp is not None:
        tmp.cleanup()
    return out


# -- driver ----------------------------------------------------------------------

def _start_redis() -> Tuple[str, Optional[subprocess.Popen]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("no --redis URL given and no redis-server on PATH")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
    client.close()
    return f"redis://127.0.0.1:{port}/0", proc


def _start_server(url: str) -> Tuple[subprocess.Popen, int]:
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "langstream", "serve", "--redis", url,
                             "--port", str(port), "--log-level", "warning"])
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark; print a table (or JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m langstream.server.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--events", type=int, default=20000, help="events in the throughput run")
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients")
    parser.add_argument("--multi-events", type=int, default=1000,
                        help="events in the run the concurrent clients read")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (best is kept)")
    parser.add_argument("--rate", type=float, default=1000.0, help="tokens per second (latency)")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency run length")
    parser.add_argument("--no-browser", action="store_true", help="skip headless Chromium")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(argv)
    for name in ("events", "multi_events", "clients", "rounds"):
        if getattr(ns, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(ns, name)}")
    if not ns.rate > 0 or not ns.seconds > 0:
        parser.error("--rate and --seconds must be > 0")
    browser = not ns.no_browser and (shutil.which("chromium") or shutil.which("chromium-browser"))
    redis_proc = None
    url = ns.redis
    if url is None:
        url, redis_proc = _start_redis()
    server, port = _start_server(url)
    try:
        key = f"bench:tp:{uuid.uuid4().hex[:8]}"
        _publish(url, key, _token_parts(ns.events))
        n = ns.events + 3  # values, message-start, tokens, message-finish
        mkey = f"bench:tp:{uuid.uuid4().hex[:8]}"
        _publish(url, mkey, _token_parts(ns.multi_events))
        m = ns.multi_events + 3
        rows = [
            _throughput("Redis XRANGE (direct)", lambda: _redis_read_all(url, key), 1, n, ns.rounds),
            _throughput("SSE", lambda: _sse_read_all(port, key), 1, n, ns.rounds),
            _throughput("Redis XRANGE (direct)", lambda: _redis_read_all(url, mkey), ns.clients, m,
                        ns.rounds),
            _throughput("SSE", lambda: _sse_read_all(port, mkey), ns.clients, m, ns.rounds),
        ]
        latency = _latency(url, port, ns.rate, ns.seconds, "page" if browser else None)
        if browser:
            latency += _latency(url, port, ns.rate, ns.seconds, "bare")
    finally:
        server.terminate()
        server.wait(15)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(15)
    if ns.json:
        print(json.dumps({"throughput": rows, "latency": latency}, indent=2))
        return 0
    print(f"throughput: best of {ns.rounds}; one client reads a run of {n} events, "
          f"{ns.clients} clients one of {m}")
    for row in rows:
        print(f"  {row['path']:<24} {row['clients']:>4} client(s)  {row['events_per_s']:>10,} events/s"
              f"  ({row['seconds']} s)")
    print(f"latency: {ns.rate:g} tokens/s for {ns.seconds:g} s, producer push -> receive")
    for row in latency:
        print(f"  {row['path']:<40} p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms  "
              f"max {row['max_ms']} ms  ({row['tokens']}/{row['expected']} tokens)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
