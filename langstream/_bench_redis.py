"""``python -m langstream bench redis``: Redis Streams publishing and attaching.

Needs redis-py and a Redis server: ``--redis URL``, or a ``redis-server`` on
PATH that this command starts on a free local port (no persistence) and stops.

Scenarios (each figure the median of ``--rounds``, langstream and its floor
interleaved round by round; events per second, higher is better):

* publish, one run: ``N`` values parts through ``stream_events`` +
  ``publish`` while the consumer iterates ``run.values``; the floor is a bare
  redis-py loop with the same batching (one send per pump step, i.e. per
  event here, pipelined: up to 64 sends unconfirmed, on a connection of its
  own) that builds the same wire JSON with ``json.dumps`` and XADDs it with
  the same explicit id.
* read, one run: ``attach`` + iterating ``remote.values`` (decoding, the
  projection pipeline) over the published stream; the floor is a bare
  ``XREAD COUNT 512`` loop that ``json.loads`` every entry.
* the same with 100 runs in parallel (async lane, ``redis.asyncio``, one
  client with a connection per run): 100 runs of ``N/100`` events published at
  once, then 100 readers at once; floors: 100 bare tasks.
* latency: a producer in another process emits values parts at ``--rate``
  events/s (10,000 by default; paced by sleeping, so it leaves the CPU to the
  reader) for ``--seconds``; a reader attached in this
  process takes each ``remote.values`` item and records now minus the part's
  creation time (same machine clock): p50 / p99 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

ROUNDS = 3


def _parts(n: int, t: bool = False) -> Any:
    for i in range(n):
        data = {"i": i, "node": f"node_{i % 50}", "notes": ["searched docs", "3 hits"]}
        if t:
            data["t"] = time.time()
        yield {"type": "values", "ns": (), "data": data, "interrupts": ()}


async def _aparts(n: int) -> Any:
    for part in _parts(n):
        yield part


def _dumps(seq: int, data: Any) -> str:
    return json.dumps({"v": 1, "seq": seq, "method": "values", "ns": [],
                       "ts": int(time.time() * 1000), "data": data, "interrupts": []},
                      separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------ one run


def _publish_ls(client: Any, n: int) -> float:
    import langstream
    from langstream.integrations.redis import publish

    key = f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    run = publish(langstream.stream_events(_parts(n)), client, key)
    for _ in run.values:
        pass
    elapsed = time.perf_counter() - start
    client.delete(key)
    return n / elapsed


def _publish_bare(client: Any, n: int) -> float:
    from langstream.integrations.redis import _WINDOW

    key = f"bench:{uuid.uuid4().hex}"
    pool = client.connection_pool
    conn = pool.get_connection()
    unread = 0
    start = time.perf_counter()
    try:
        for seq, part in enumerate(_parts(n), 1):
            command = ("XADD", key, f"{seq}-0", "e", _dumps(seq, part["data"]))
            conn.send_packed_command(conn.pack_commands([command]), check_health=False)
            unread += 1
            while unread and (unread >= _WINDOW or conn.can_read(0)):
                conn.read_response()
                unread -= 1
        while unread:
            conn.read_response()
            unread -= 1
    finally:
        pool.release(conn)
    elapsed = time.perf_counter() - start
    client.delete(key)
    return n / elapsed


def _published_key(client: Any, n: int) -> str:
    import langstream
    from langstream.integrations.redis import publish

    key = f"bench:{uuid.uuid4().hex}"
    publish(langstream.stream_events(_parts(n)), client, key).output
    return key


def _read_ls(client: Any, key: str, n: int) -> float:
    from langstream.integrations.redis import attach

    start = time.perf_counter()
    count = sum(1 for _ in attach(client, key).values)
    elapsed = time.perf_counter() - start
    assert count == n, (count, n)
    return n / elapsed


def _read_bare(client: Any, key: str, n: int) -> float:
    start = time.perf_counter()
    last = "0-0"
    count = 0
    done = False
    while not done:
        response = client.xread({key: last}, count=512, block=1000)
        for entry_id, fields in response[0][1]:
            last = entry_id
            text = fields.get(b"e")
            if text is None:
                done = True
                break
            json.loads(text)
            count += 1
    elapsed = time.perf_counter() - start
    assert count == n, (count, n)
    return n / elapsed


# ------------------------------------------------------------------ 100 runs


async def _apublish_ls(client: Any, runs: int, n: int) -> Tuple[float, List[str]]:
    import langstream
    from langstream.integrations.redis import publish

    keys = [f"bench:{uuid.uuid4().hex}" for _ in range(runs)]
    streams = [publish(langstream.astream_events(_aparts(n)), client, k) for k in keys]
    start = time.perf_counter()
    await asyncio.gather(*(s.output() for s in streams))
    return runs * n / (time.perf_counter() - start), keys


async def _apublish_bare(client: Any, runs: int, n: int) -> float:
    keys = [f"bench:{uuid.uuid4().hex}" for _ in range(runs)]

    from langstream.integrations.redis import _WINDOW

    async def one(key: str) -> None:
        pool = client.connection_pool
        conn = await pool.get_connection()
        can_read = getattr(conn, "can_read", None) or conn.can_read_destructive
        unread = 0
        try:
            for seq, part in enumerate(_parts(n), 1):
                command = ("XADD", key, f"{seq}-0", "e", _dumps(seq, part["data"]))
                await conn.send_packed_command(conn.pack_commands([command]),
                                               check_health=False)
                unread += 1
                while unread and (unread >= _WINDOW or await can_read()):
                    await conn.read_response()
                    unread -= 1
            while unread:
                await conn.read_response()
                unread -= 1
        finally:
            await pool.release(conn)

    start = time.perf_counter()
    await asyncio.gather(*(one(k) for k in keys))
    rate = runs * n / (time.perf_counter() - start)
    await client.delete(*keys)
    return rate


async def _aread_ls(client: Any, keys: List[str], n: int) -> float:
    from langstream.integrations.redis import aattach

    async def one(key: str) -> int:
        return sum([1 async for _ in aattach(client, key).values])

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(k) for k in keys))
    elapsed = time.perf_counter() - start
    assert all(c == n for c in counts), counts[:3]
    return len(keys) * n / elapsed


async def _aread_bare(client: Any, keys: List[str], n: int) -> float:
    async def one(key: str) -> int:
        last, count = "0-0", 0
        while True:
            response = await client.xread({key: last}, count=512, block=1000)
            for entry_id, fields in response[0][1]:
                last = entry_id
                text = fields.get(b"e")
                if text is None:
                    return count
                json.loads(text)
                count += 1

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(k) for k in keys))
    elapsed = time.perf_counter() - start
    assert all(c == n for c in counts), counts[:3]
    return len(keys) * n / elapsed


# ------------------------------------------------------------------ latency


def _produce(url: str, key: str, rate: float, n: int) -> int:
    """The latency producer (runs in its own process)."""
    import redis

    import langstream
    from langstream.integrations.redis import publish

    client = redis.Redis.from_url(url)
    start = time.perf_counter()

    def paced() -> Any:
        for i, part in enumerate(_parts(n, t=True)):
            due = start + i / rate
            ahead = due - time.perf_counter()
            if ahead > 0:  # sleep, not spin: a spinning producer takes a core from the reader
                time.sleep(ahead)
            part["data"]["t"] = time.time()
            yield part

    run = publish(langstream.stream_events(paced()), client, key, expire=60)
    for _ in run.values:
        pass
    achieved = n / (time.perf_counter() - start)
    print(json.dumps({"achieved": achieved}))
    return 0


def _latency(url: str, rate: float, seconds: float) -> Dict[str, float]:
    import redis

    from langstream.integrations.redis import attach

    n = int(rate * seconds)
    key = f"bench:lat:{uuid.uuid4().hex}"
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    producer = subprocess.Popen(
        [sys.executable, "-m", "langstream", "bench", "redis", "--_produce", url, key,
         str(rate), str(n)], stdout=subprocess.PIPE, env=env, text=True)
    client = redis.Redis.from_url(url)
    lat: List[float] = []
    try:
        for snap in attach(client, key, wait_timeout=30).values:
            lat.append(time.time() - snap["t"])
    finally:
        out, _ = producer.communicate(timeout=120)
    achieved = json.loads(out.strip().splitlines()[-1])["achieved"]
    lat.sort()
    ms = [x * 1000 for x in lat]
    return {"events": len(ms), "achieved_rate": achieved, "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max_ms": ms[-1]}


# ------------------------------------------------------------------ driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server() -> Tuple[Optional[subprocess.Popen], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("error: no --redis URL and no redis-server on PATH "
                         "(Debian: apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


def _pair(ours: Callable[[], float], bare: Callable[[], float], rounds: int) -> Tuple[float, float]:
    """Medians of ``rounds`` interleaved runs (so a change of machine load hits both)."""
    a: List[float] = []
    b: List[float] = []
    for _ in range(rounds):
        a.append(ours())
        b.append(bare())
    return statistics.median(a), statistics.median(b)


def _line(name: str, ours: float, floor: float) -> None:
    print(f"  {name:<34} langstream {ours:>10,.0f} ev/s   bare {floor:>10,.0f} ev/s   "
          f"bare/langstream {floor / ours:5.2f}x", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m langstream bench redis``."""
    parser = argparse.ArgumentParser(prog="python -m langstream bench redis",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: start redis-server)")
    parser.add_argument("-n", type=int, default=20000, help="events per scenario (default 20000)")
    parser.add_argument("--runs", type=int, default=100, help="parallel runs (default 100)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds (median; default 3)")
    parser.add_argument("--rate", type=float, default=10000.0,
                        help="latency scenario: events/s (default 10000)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="latency scenario: duration (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--_produce", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        import redis
        import redis.asyncio as aredis
    except ImportError:
        sys.stderr.write("error: the Redis benchmark needs redis-py: pip install -e '.[redis]' in a checkout\n")
        return 2
    if args._produce:
        url, key, rate, n = args._produce
        return _produce(url, key, float(rate), int(n))
    for name, flag in (("n", "-n"), ("runs", "--runs"), ("rounds", "--rounds")):
        if getattr(args, name) < 1:
            parser.error(f"{flag} must be >= 1, got {getattr(args, name)}")
    if args.rate <= 0 or args.seconds <= 0:
        parser.error(f"--rate and --seconds must be > 0, got {args.rate} and {args.seconds}")
    proc = None
    url = args.redis
    if url is None:
        proc, url = _start_server()
    from langstream import eventlog

    results: Dict[str, Any] = {"backend": eventlog.BACKEND, "n": args.n, "runs": args.runs}
    try:
        client = redis.Redis.from_url(url)
        server = client.info("server")
        print(f"Redis {server.get('redis_version')} at {url.split('@')[-1]}; redis-py "
              f"{redis.__version__}; langstream event-log backend {eventlog.BACKEND}; "
              f"n={args.n}, rounds={args.rounds}")
        n = args.n
        pub, pub_bare = _pair(lambda: _publish_ls(client, n), lambda: _publish_bare(client, n),
                              args.rounds)
        _line("publish, one run", pub, pub_bare)
        key = _published_key(client, n)
        read, read_bare = _pair(lambda: _read_ls(client, key, n),
                                lambda: _read_bare(client, key, n), args.rounds)
        client.delete(key)
        _line("read (remote values), one run", read, read_bare)
        results["one_run"] = {"publish": pub, "publish_bare": pub_bare,
                              "read": read, "read_bare": read_bare}

        per_run = max(1, n // args.runs)

        async def parallel() -> Dict[str, float]:
            aclient = aredis.Redis.from_url(url, max_connections=args.runs * 2 + 10)
            out: Dict[str, List[float]] = {"publish": [], "publish_bare": [], "read": [],
                                           "read_bare": []}
            try:
                for _ in range(args.rounds):
                    rate, keys = await _apublish_ls(aclient, args.runs, per_run)
                    out["publish"].append(rate)
                    out["publish_bare"].append(await _apublish_bare(aclient, args.runs, per_run))
                    out["read"].append(await _aread_ls(aclient, keys, per_run))
                    out["read_bare"].append(await _aread_bare(aclient, keys, per_run))
                    await aclient.delete(*keys)
            finally:
                await aclient.aclose()
            return {k: statistics.median(v) for k, v in out.items()}

        par = asyncio.run(parallel())
        label = f"{args.runs} runs in parallel (async)"
        _line(f"publish, {label}", par["publish"], par["publish_bare"])
        _line(f"read, {label}", par["read"], par["read_bare"])
        results["parallel"] = par
        lat = _latency(url, args.rate, args.seconds)
        print(f"  latency at {args.rate:,.0f} ev/s (achieved {lat['achieved_rate']:,.0f}), "
              f"producer push -> remote values item, {lat['events']} events: "
              f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms")
        results["latency"] = lat
        client.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    if args.json:
        print(json.dumps(results))
    return 0
