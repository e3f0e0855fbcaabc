"""Support for the server tests: a real redis-server, the app under a real
uvicorn, an SSE client, and runs published to Redis.

Components that cannot exist here (no redis-server binary, no Starlette)
skip the tests that need them, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from langstream import StreamChannel, StreamTransformer
from langstream.server._browser import Chromium as _Chromium

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def missing(what: str) -> None:
    """Skip (or, in CI, fail) because ``what`` is not available."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is missing", pytrace=False)
    pytest.skip(f"{what} is not available")


def need_server_extra() -> None:
    for module in ("starlette", "uvicorn", "redis"):
        try:
            __import__(module)
        except ImportError:
            missing(f"the 'server' extra ({module}; pip install 'langstream[server]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- redis-server and published runs ----------------------------------------------

class RedisHandle:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)


@pytest.fixture(scope="module")
def redis_server(redis_url: str) -> Iterator[RedisHandle]:
    """The session's real Redis (``redis_helpers.redis_url``) and a sync client."""
    need_server_extra()
    handle = RedisHandle(redis_url)
    try:
        yield handle
    finally:
        handle.client.close()


def publish_run(client: Any, key: str, parts: Any, *, delay: float = 0.0,
                error: Optional[BaseException] = None, end: bool = True,
                lane: str = "sync", transformers: Sequence[Any] = ()) -> List[Dict[str, Any]]:
    """Run ``parts`` through a langstream run (with ``transformers``) published
    to ``key`` with ``langstream.integrations.redis.publish`` (sync or async
    lane); return the main-log events.  ``end=False`` removes the terminal
    entry afterwards, so the run looks still in progress to readers."""
    from langstream import astream_events, stream_events
    from langstream.integrations.redis import publish

    def source() -> Iterator[Dict[str, Any]]:
        for part in parts:
            if delay:
                time.sleep(delay)
            yield part
        if error is not None:
            raise error

    client.delete(key)
    events: List[Dict[str, Any]] = []
    if lane == "sync":
        with publish(stream_events(source(), transformers=list(transformers)), client,
                     key) as run:
            try:
                for event in run:
                    events.append(event)
            except Exception:
                pass
    else:
        import asyncio

        import redis.asyncio as aioredis

        async def asource() -> Any:
            for part in parts:
                if delay:
                    await asyncio.sleep(delay)
                yield part
            if error is not None:
                raise error

        async def go() -> None:
            aclient = aioredis.Redis(connection_pool=aioredis.ConnectionPool(
                **client.connection_pool.connection_kwargs))
            try:
                async with publish(astream_events(asource(), transformers=list(transformers)),
                                   aclient, key) as run:
                    try:
                        async for event in run:
                            events.append(event)
                    except Exception:
                        pass
            finally:
                await aclient.aclose()

        asyncio.run(go())
    last = events[-1]["seq"] if events else 0
    assert client.exists(key)
    if not end:
        assert client.xdel(key, f"{last}-1") == 1
    return events


class Progress(StreamTransformer):
    """``custom`` parts whose data has ``"progress"`` leave the main log as
    ``custom:progress`` events only (the named channel of a transformer that
    is not native); other ``custom`` parts stay ``custom`` events."""

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        super().__init__(scope)
        self.channel: StreamChannel[Any] = StreamChannel("progress")

    def init(self) -> Dict[str, Any]:
        return {"progress": self.channel}

    def process(self, event: Any) -> bool:
        data = event["params"]["data"]
        if event["method"] == "custom" and isinstance(data, dict) and "progress" in data:
            self.channel.push(data)
            return False
        return True


def progress_run(n: int = 6) -> List[Dict[str, Any]]:
    """Stream parts for a run with ``Progress``: values, ``custom:progress``
    events (the last event of the run among them) and a few plain ``custom``."""
    parts: List[Dict[str, Any]] = [{"type": "values", "ns": (), "data": {"step": 0},
                                    "interrupts": ()}]
    for i in range(1, n + 1):
        parts.append({"type": "custom", "ns": (), "data": {"progress": i}})
        if i % 3 == 0:
            parts.append({"type": "custom", "ns": (), "data": {"note": f"n{i}"}})
            parts.append({"type": "values", "ns": (), "data": {"step": i}, "interrupts": ()})
    parts.append({"type": "custom", "ns": (), "data": {"progress": "done"}})
    return parts


def token_run(text_tokens: Sequence[str], *, calls: int = 1, sub: bool = True) -> List[Dict[str, Any]]:
    """Stream parts of a run with ``calls`` model calls streaming
    ``text_tokens`` (LangGraph v2 message events), a subgraph, values."""
    parts: List[Dict[str, Any]] = []
    state: Dict[str, Any] = {"answer": ""}
    parts.append({"type": "values", "ns": (), "data": dict(state), "interrupts": ()})
    if sub:
        sns = ("research:t-1",)
        parts.append({"type": "tasks", "ns": (), "data": {"id": "t-1", "name": "research",
                                                          "input": {}, "triggers": ["x"]}})
        parts.append({"type": "values", "ns": sns, "data": {"notes": []}, "interrupts": ()})
        parts.append({"type": "custom", "ns": sns, "data": {"progress": "searching"}})
        parts.append({"type": "values", "ns": sns, "data": {"notes": ["n1"]}, "interrupts": ()})
        parts.append({"type": "tasks", "ns": (), "data": {"id": "t-1", "name": "research",
                                                          "error": None, "result": {"notes": ["n1"]},
                                                          "interrupts": []}})
    for call in range(calls):
        meta = {"run_id": f"call-{call}", "langgraph_node": "answer",
                "langgraph_path": ("__pregel_pull", "answer")}
        parts.append({"type": "messages", "ns": (),
                      "data": ({"event": "message-start", "role": "ai", "id": f"msg-{call}"}, meta)})
        parts.append({"type": "messages", "ns": (),
                      "data": ({"event": "content-block-start", "index": 0,
                                "content": {"type": "text", "text": ""}}, meta)})
        for tok in text_tokens:
            parts.append({"type": "messages", "ns": (),
                          "data": ({"event": "content-block-delta", "index": 0,
                                    "delta": {"type": "text-delta", "text": tok}}, meta)})
        parts.append({"type": "messages", "ns": (),
                      "data": ({"event": "content-block-finish", "index": 0,
                                "content": {"type": "text", "text": "".join(text_tokens)}}, meta)})
        parts.append({"type": "messages", "ns": (), "data": ({"event": "message-finish"}, meta)})
        state["answer"] += "".join(text_tokens)
        parts.append({"type": "values", "ns": (), "data": dict(state), "interrupts": ()})
    return parts


# -- uvicorn in a thread ------------------------------------------------------------

class ServerThread:
    """The app under a real uvicorn on a free local port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Any:
        return self.app.state.langstream

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- SSE client ----------------------------------------------------------------------

class SSEClient:
    """A blocking HTTP/1.1 client for one SSE response.

    ``frames()`` yields one dict per dispatched block: the fields it had
    (``id``, ``event``, ``data``, ``retry``) or ``{"comment": text}``.
    """

    def __init__(self, port: int, path: str, headers: Optional[Dict[str, str]] = None,
                 timeout: float = 20.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def json(self) -> Any:
        return json.loads(self.resp.read())

    def frames(self) -> Iterator[Dict[str, str]]:
        frame: Dict[str, str] = {}
        while True:
            raw = self.resp.readline()
            if not raw:
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if frame:
                    yield frame
                frame = {}
                continue
            if line.startswith(":"):
                yield {"comment": line[1:].strip()}
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data" and "data" in frame:
                frame["data"] += "\n" + value
            else:
                frame[name] = value

    def events(self) -> List[Dict[str, str]]:
        """Every non-comment frame until the server ends the response."""
        return [f for f in self.frames() if "comment" not in f and "retry" not in f]

    def close(self) -> None:
        self.conn.close()


def get(port: int, path: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def serve_subprocess(redis_url: str, *extra: str) -> Tuple[subprocess.Popen, int]:
    """``python -m langstream serve`` in a child process; (process, port)."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "langstream", "serve", "--redis", redis_url, "--port", str(port),
         "--log-level", "warning", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _, _ = get(port, "/healthz")
            if status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError(f"serve exited {proc.returncode}: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("serve did not come up")
        time.sleep(0.05)


# -- a TCP proxy whose connections the test can cut ------------------------------------

class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the app; ``cut()`` drops every open
    connection (the listener stays up, so clients can reconnect)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: List[socket.socket] = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                down.close()
                continue
            with self.lock:
                self.accepted += 1
                self.open += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> int:
        """Drop every open connection; return how many sockets were cut."""
        with self.lock:
            socks, self.open = self.open, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(socks)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()


# -- headless Chromium over the DevTools protocol -----------------------------------------

class Chromium(_Chromium):
    """``langstream.server._browser.Chromium``, skipping (failing in CI) when
    there is no chromium binary."""

    def __init__(self, tmpdir: str) -> None:
        try:
            super().__init__(tmpdir)
        except FileNotFoundError:
            missing("chromium (Debian package 'chromium')")
