"""Redis test support: a real redis-server, and full snapshots of run streams.

``redis_url`` (session fixture): ``LANGSTREAM_TEST_REDIS_URL`` when set (CI
starts a server and exports it), else a redis-server started here on a free
port without persistence when ``redis-server`` is on PATH, else a skip with
the reason.  With ``CI=true`` a missing server or client FAILS instead.

``RedisServer`` starts and stops (kills, restarts) a private server: the
fault tests use it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import Any, Dict, List, Optional

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROJECTIONS = ("values", "lifecycle", "updates", "custom", "subgraphs")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}: the Redis tests must run in CI", pytrace=False)
    pytest.skip(reason)


def need_redis_client() -> Any:
    try:
        import redis
    except ImportError:
        _unavailable("redis-py is not installed (pip install -e '.[redis]' in a checkout)")
    return redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on a free local port, no persistence."""

    def __init__(self, port: Optional[int] = None, persist_dir: Optional[str] = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            _unavailable("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.exe = exe
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        # with a directory: an append-only file fsynced on every write, so a
        # killed and restarted server keeps every write it acknowledged
        self.persistence = ["--appendonly", "no"] if persist_dir is None else [
            "--appendonly", "yes", "--appendfsync", "always", "--dir", persist_dir]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        # (the client first: a test skipped for want of it leaves no server behind)
        redis = need_redis_client()
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *self.persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    _unavailable(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def redis_url():
    """URL of a real Redis server for the whole session (see the module doc)."""
    need_redis_client()
    url = os.environ.get("LANGSTREAM_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def rkey() -> str:
    """A fresh stream key (a hash tag, as a Redis Cluster user would write it)."""
    return f"langstream-test:{{{uuid.uuid4().hex}}}"


@pytest.fixture
def rclient(redis_url):
    redis = need_redis_client()
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# ---------------------------------------------------------------- snapshots


def _err(exc: Optional[BaseException]) -> Any:
    return None if exc is None else (type(exc).__name__, str(exc))


def snapshot(run: Any) -> Dict[str, Any]:
    """Every projection of a sync run (handles recursively), in push order."""
    items: List[Any] = []
    error = None
    try:
        for name, item in run.interleave(*PROJECTIONS):
            if name == "subgraphs":
                sub = snapshot(item)
                items.append(("subgraph", item.path, item.graph_name, item.trigger_call_id,
                              item.status, item.error, sub))
            else:
                items.append((name, item))
    except Exception as exc:  # noqa: BLE001 - recorded
        error = exc
    out: Dict[str, Any] = {"items": items, "error": _err(error)}
    if not hasattr(run, "path"):
        for name in ("output", "interrupted", "interrupts"):
            try:
                out[name] = getattr(run, name)
            except Exception as exc:  # noqa: BLE001 - recorded
                out[name] = ("raised", _err(exc))
    return out


def raw_log(run: Any) -> Any:
    events = []
    try:
        for event in run:
            events.append(event)
    except Exception as exc:  # noqa: BLE001 - recorded
        return events, _err(exc)
    return events, None


async def _adrain(aiterable: Any) -> Any:
    items = []
    try:
        async for item in aiterable:
            items.append(item)
    except Exception as exc:  # noqa: BLE001 - recorded
        return items, _err(exc)
    return items, None


def _asubscribe(run: Any, with_raw: bool) -> Dict[str, Any]:
    """Subscribe to every projection of an async run now (before any await)."""
    its: Dict[str, Any] = {n: getattr(run, n).__aiter__() for n in PROJECTIONS}
    if with_raw:
        its["raw"] = run.__aiter__()
    return its


async def asnapshot(run: Any, with_raw: bool = True, _its: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, Any]:
    """Every projection of an async run (handles recursively), per projection.

    A handle's projections are subscribed the moment the handle arrives, as a
    consumer that wants all of a subgraph's events does.
    """
    its = _its if _its is not None else _asubscribe(run, with_raw)
    subs: List[Any] = []

    async def handles() -> Any:
        tasks = []
        items = []
        try:
            async for handle in its["subgraphs"]:
                sub_its = _asubscribe(handle, False)
                tasks.append((handle, asyncio.ensure_future(asnapshot(handle, False, sub_its))))
        except Exception as exc:  # noqa: BLE001 - recorded
            items.append(("error", _err(exc)))
        for handle, task in tasks:
            sub = await task
            subs.append((handle.path, handle.graph_name, handle.trigger_call_id,
                         handle.status, handle.error, sub))
        return items

    names = [n for n in PROJECTIONS if n != "subgraphs"]
    coros = [_adrain(its[n]) for n in names] + [handles()]
    if "raw" in its:
        coros.append(_adrain(its["raw"]))
    results = await asyncio.gather(*coros)
    out: Dict[str, Any] = dict(zip(names, results))
    out["subgraphs"] = (subs, results[len(names)])
    if "raw" in its:
        out["raw"] = results[-1]
    if not hasattr(run, "path"):
        for name in ("output", "interrupted", "interrupts"):
            try:
                out[name] = await getattr(run, name)()
            except Exception as exc:  # noqa: BLE001 - recorded
                out[name] = ("raised", _err(exc))
    return out
