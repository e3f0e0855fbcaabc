"""The ASGI app: a run's Redis stream as Server-Sent Events, and the live page.

Starlette and redis-py are imported when ``create_app`` is called, never at
module import, so ``import langstream.server`` works without the extras.
See the package docstring for the HTTP contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

__all__ = ["DEFAULT_BATCH", "DEFAULT_HEARTBEAT", "DEFAULT_MAX_READS", "KNOWN_METHODS",
           "create_app"]

_log = logging.getLogger("langstream.server")

DEFAULT_HEARTBEAT = 15.0
"""Seconds of silence after which an SSE stream gets a ``: ping`` comment."""

DEFAULT_BATCH = 256
"""Most Redis entries one SSE connection reads (and holds) at a time."""

DEFAULT_MAX_READS = 32
"""Most non-blocking Redis reads the app has in flight at once (shared by all
connections); with one blocking read per followed run key, this is how many
Redis connections the app uses."""

KNOWN_METHODS: FrozenSet[str] = frozenset(
    ("values", "updates", "messages", "custom", "checkpoints", "tasks", "debug", "lifecycle")
)
"""Methods ``?methods=`` accepts, besides ``custom:<name>`` and the app's
``extra_methods``."""

_QUERY_PARAMS = ("after", "methods", "namespace", "event")
_MAX_ID_DIGITS = 19  # fits a signed 64-bit seq; longer ids are malformed
# Below any sane socket timeout of the client (redis-py 8 defaults to 5 s):
# a blocking read longer than that would fail as a timeout on an idle run.
_WATCH_BLOCK_MS = 1_000
_OWN_POOL_SIZE = 10_000  # Redis' default maxclients


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- input parsing -------------------------------------------------------------

def _parse_seq(value: str, name: str) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_ID_DIGITS:
        raise _BadRequest(400, f"{name} must be a non-negative integer event seq, got {value!r}")
    return int(text)


def _parse_methods(value: str, extra: FrozenSet[str]) -> FrozenSet[str]:
    names = [part.strip() for part in value.split(",")]
    if not any(names):
        raise _BadRequest(400, f"methods must list at least one method, got {value!r}")
    out = set()
    for name in names:
        if not name:
            raise _BadRequest(400, f"methods has an empty entry: {value!r}")
        if name in KNOWN_METHODS or name in extra or (name.startswith("custom:") and len(name) > 7):
            out.add(name)
            continue
        known = ", ".join(sorted(KNOWN_METHODS | extra))
        raise _BadRequest(
            400, f"unknown method {name!r} in methods={value!r}; known: {known}, or custom:<name>"
        )
    return frozenset(out)


def _parse_event(value: str) -> bool:
    """``?event=message``: whether method events keep their ``event:`` line (no)."""
    if value.strip() != "message":
        raise _BadRequest(
            400, f"event must be 'message' (every method event sent as an unnamed SSE "
                 f"message, its method in the data), got {value!r}")
    return False


def _parse_namespace(value: str) -> Tuple[str, ...]:
    segments = tuple(value.strip("/").split("/")) if value.strip("/") else ()
    if not segments or any(not s for s in segments):
        raise _BadRequest(
            400,
            "namespace must be segments separated by '/', like 'research' or "
            f"'research:<task_id>/search', got {value!r}",
        )
    return segments


def _ns_matches(ns: Any, prefix: Tuple[str, ...]) -> bool:
    if not isinstance(ns, list) or len(ns) < len(prefix):
        return False
    for seg, want in zip(ns, prefix):
        if seg == want:
            continue
        if ":" not in want and isinstance(seg, str) and seg.partition(":")[0] == want:
            continue
        return False
    return True


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _split_id(entry_id: str) -> Tuple[int, int]:
    seq, _, sub = entry_id.partition("-")
    return int(seq), int(sub or 0)


def _data_lines(payload: str) -> str:
    if "\n" not in payload and "\r" not in payload:
        return f"data: {payload}\n"
    lines = payload.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data: {line}\n" for line in lines)


def _frame(seq: Optional[int], event: Optional[str], payload: str) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    if event is not None:  # without it, a browser dispatches a "message"
        head += f"event: {event}\n"
    return f"{head}{_data_lines(payload)}\n"


# -- shared state --------------------------------------------------------------

class _Watcher:
    """One blocking ``XREAD`` per run key, shared by every idle client of it.

    ``changed`` is replaced and set each time entries newer than the last
    seen one appear; a client captures it before its ``XRANGE`` and waits on
    it only if that read came back empty, so no wake-up is lost.
    """

    def __init__(self, hub: "_Hub", key: str) -> None:
        self.hub = hub
        self.key = key
        self.users = 0
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()
        self.error: Optional[BaseException] = None
        self.stopped = False
        self.task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        # the flag also ends the loop if redis-py turned the cancel into a timeout
        self.stopped = True
        self.task.cancel()

    def _notify(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    async def _run(self) -> None:
        redis = self.hub.redis
        try:
            newest = await redis.xrevrange(self.key, count=1)
            last_id = newest[0][0] if newest else "0-0"
            self.ready.set()
            block = self.hub.watch_block_ms
            while not self.stopped:
                try:
                    got = await redis.xread({self.key: last_id}, count=1, block=block)
                except self.hub.timeout_errors:
                    continue  # a socket timeout on an idle run: not an error
                if not got:
                    continue
                newest = await redis.xrevrange(self.key, count=1)
                last_id = newest[0][0] if newest else got[0][1][-1][0]
                self._notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # clients see it on their own next read
            self.error = exc
            self.ready.set()
            self._notify()


class _Hub:
    """Per-app state: the Redis client, the watchers, live stream count."""

    def __init__(self, redis: Any, owns_client: bool, heartbeat: float, batch: int,
                 retry_ms: int, extra_methods: FrozenSet[str], max_reads: int) -> None:
        self.redis = redis
        self.max_reads = max_reads
        self._read_slots: Optional[asyncio.Semaphore] = None
        self.connection_errors: Tuple[type, ...] = (OSError,)
        self.timeout_errors: Tuple[type, ...] = (asyncio.TimeoutError,)
        self.watch_block_ms = _WATCH_BLOCK_MS
        self.redis_url: Optional[str] = None
        self.owns_client = owns_client
        self.heartbeat = heartbeat
        self.batch = batch
        self.retry_ms = retry_ms
        self.extra_methods = extra_methods
        self.watchers: Dict[str, _Watcher] = {}
        self.active_streams = 0
        """SSE responses currently streaming (for monitoring and tests)."""

    @property
    def read_slots(self) -> asyncio.Semaphore:
        """Bounds the reads in flight (made in the running loop, on first use)."""
        if self._read_slots is None:
            self._read_slots = asyncio.Semaphore(self.max_reads)
        return self._read_slots

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``redis.<method>(...)`` within the read slots.  A connection error
        is tried once more after the pool's idle connections are dropped:
        after a Redis restart they are all stale, and redis-py's own retry
        may land on another stale one."""
        async with self.read_slots:
            try:
                return await getattr(self.redis, method)(*args, **kwargs)
            except self.connection_errors:
                pool = getattr(self.redis, "connection_pool", None)
                if pool is None:
                    raise
                await pool.disconnect(inuse_connections=False)
                return await getattr(self.redis, method)(*args, **kwargs)

    def acquire(self, key: str) -> _Watcher:
        watcher = self.watchers.get(key)
        if watcher is None or watcher.task.done():
            watcher = self.watchers[key] = _Watcher(self, key)
        watcher.users += 1
        return watcher

    def release(self, watcher: _Watcher) -> None:
        watcher.users -= 1
        if watcher.users <= 0:
            if self.watchers.get(watcher.key) is watcher:
                del self.watchers[watcher.key]
            watcher.stop()


# -- the SSE response ----------------------------------------------------------

class _EventStream:
    """ASGI response that streams one run; ends when the client leaves."""

    def __init__(self, hub: _Hub, key: str, after: int, methods: Optional[FrozenSet[str]],
                 namespace: Optional[Tuple[str, ...]], named: bool = True) -> None:
        self.hub = hub
        self.key = key
        self.after = after
        self.methods = methods
        self.namespace = namespace
        self.named = named  # method events carry ``event: <method>``

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        producer = asyncio.ensure_future(self._produce(send))
        listener = asyncio.ensure_future(self._wait_disconnect(receive))
        try:
            await asyncio.wait({producer, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, listener):
                if not task.done():
                    task.cancel()
            results = await asyncio.gather(producer, listener, return_exceptions=True)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(
            error, (asyncio.CancelledError, OSError)
        ):
            _log.error("SSE stream of %r failed", self.key, exc_info=error)

    @staticmethod
    async def _wait_disconnect(receive: Any) -> None:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return

    async def _produce(self, send: Any) -> None:
        hub = self.hub
        hub.active_streams += 1
        watcher = hub.acquire(self.key)
        try:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            })
            await self._body(send, f"retry: {hub.retry_ms}\n\n")
            try:
                await self._pump(send, watcher)
            except (asyncio.CancelledError, OSError):
                raise
            except Exception as exc:
                _log.warning("SSE stream of %r ended by an error: %r", self.key, exc)
                message = {"error": f"{type(exc).__name__}: {exc}"}
                await self._body(send, _frame(None, "server-error", json.dumps(message)))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            hub.release(watcher)
            hub.active_streams -= 1

    @staticmethod
    async def _body(send: Any, text: str) -> None:
        await send({"type": "http.response.body", "body": text.encode("utf-8"),
                    "more_body": True})

    async def _pump(self, send: Any, watcher: _Watcher) -> None:
        hub = self.hub
        key = self.key
        methods = self.methods
        prefix = self.namespace
        named = self.named
        pos = self.after  # last seq the client has
        start = f"{pos}-1"  # first id after "<pos>-0"
        last_write = time.monotonic()
        await watcher.ready.wait()
        while True:
            changed = watcher.changed
            entries = await hub.call("xrange", key, min=start, max="+", count=hub.batch)
            if entries:
                out: List[str] = []
                ended = False
                for entry_id, fields in entries:
                    eid = _text(entry_id)
                    seq, sub = _split_id(eid)
                    start = f"{seq}-1" if sub == 0 else f"{seq}-2"
                    fields = {_text(k): v for k, v in fields.items()}
                    if "end" in fields:
                        if seq > pos:
                            out.append(_frame(None, "lag", json.dumps(
                                {"missed": seq - pos, "next_seq": seq + 1})))
                        out.append(_frame(seq, "end", _text(fields["end"])))
                        ended = True
                        break
                    if "e" not in fields:
                        raise ValueError(
                            f"entry {eid} of run stream {key!r} has neither an 'e' nor an "
                            f"'end' field (fields: {sorted(fields)})")
                    if seq > pos + 1:
                        out.append(_frame(None, "lag", json.dumps(
                            {"missed": seq - pos - 1, "next_seq": seq})))
                    pos = seq
                    payload = _text(fields["e"])
                    try:
                        event = json.loads(payload)
                        method = event["method"]
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ValueError(
                            f"entry {eid} of run stream {key!r} is not a wire event: {exc!r}"
                        ) from None
                    if methods is not None and method not in methods:
                        continue
                    if prefix is not None:
                        ns = event.get("ns")
                        if method == "lifecycle" and isinstance(event.get("data"), dict):
                            ns = event["data"].get("namespace", ns)
                        if not _ns_matches(ns, prefix):
                            continue
                    out.append(_frame(seq, str(method) if named else None, payload))
                if out:
                    await self._body(send, "".join(out))
                    last_write = time.monotonic()
                if ended:
                    return
                continue
            if watcher.error is not None:
                raise watcher.error
            wait = hub.heartbeat - (time.monotonic() - last_write)
            if wait > 0:
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                    continue
                except asyncio.TimeoutError:
                    pass
            exists = await hub.call("exists", key)
            if not exists:
                raise LookupError(f"run stream {key!r} no longer exists (expired or deleted)")
            await self._body(send, ": ping\n\n")
            last_write = time.monotonic()


# -- the app -------------------------------------------------------------------

def _check_positive(name: str, value: Any, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise TypeError(f"{name} must be {'a number' if kind is float else 'an int'}, "
                        f"got {type(value).__name__} {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def create_app(
    redis: Any,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    batch: int = DEFAULT_BATCH,
    retry: float = 1.0,
    extra_methods: Iterable[str] = (),
    max_reads: int = DEFAULT_MAX_READS,
    key_prefix: str = "",
) -> Any:
    """Build the ASGI app that serves runs published to Redis.

    Args:
        redis: a Redis URL (``"redis://localhost:6379/0"``), a
            ``redis.asyncio.Redis`` client (used as is, left open), or a
            ``redis.Redis`` client (the app reads through an asyncio client
            with its connection settings).  The app's own client is made in
            the server's event loop on first use and closed when the app
            stops.  The app serves any stream key of that database (see
            ``key_prefix``); put it behind your own authentication.
        heartbeat: seconds of silence before a ``: ping`` comment is sent.
        batch: most entries read from Redis, and held, per connection at a
            time: with the transport's high-water mark, the memory bound of
            a slow client.
        retry: seconds a browser waits before reconnecting (SSE ``retry:``).
        extra_methods: method names ``?methods=`` accepts besides the
            built-in ones and ``custom:<name>`` (for native transformers of
            your own).
        max_reads: most non-blocking Redis reads in flight at once, over
            all connections.  The app needs ``max_reads`` Redis connections
            plus one per run key being followed (its shared blocking read):
            a client you pass must have a pool that large (redis-py's
            default is 100); the app's own client allows 10,000.
        key_prefix: serve only keys that start with it (``"runs:"``); any
            other key is answered like a missing one (404).

    Returns:
        A Starlette application; ``app.state.langstream`` exposes
        ``active_streams`` (SSE responses in flight) and ``watchers``.

    Raises:
        ImportError: the ``server`` extra (Starlette) or redis-py is missing.
        TypeError / ValueError: a bad argument (the message names it).
    """
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, JSONResponse, Response
        from starlette.routing import Route
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "langstream.server needs Starlette and uvicorn: pip install 'langstream[server]'"
        ) from exc
    try:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "langstream.server reads runs from Redis: pip install 'langstream[redis,server]'"
        ) from exc

    _check_positive("heartbeat", heartbeat)
    _check_positive("batch", batch, int)
    _check_positive("retry", retry)
    _check_positive("max_reads", max_reads, int)
    if not isinstance(key_prefix, str):
        raise TypeError(f"key_prefix must be a str, got {type(key_prefix).__name__} {key_prefix!r}")
    extra = frozenset(extra_methods) if not isinstance(extra_methods, str) else None
    if extra is None or not all(isinstance(m, str) and m for m in extra):
        raise TypeError(f"extra_methods must be an iterable of non-empty str, got {extra_methods!r}")

    import redis as redis_sync
    import redis.asyncio.connection as aioconn

    url: Optional[str] = None
    client = None
    make_client: Any = None
    if isinstance(redis, str):
        if "://" not in redis:
            raise ValueError(f"redis must be a URL like redis://localhost:6379/0, got {redis!r}")
        url = redis

        def make_client() -> Any:
            return aioredis.Redis.from_url(url, max_connections=_OWN_POOL_SIZE)
    elif isinstance(redis, aioredis.Redis):
        client = redis
    elif isinstance(redis, redis_sync.Redis):
        # The app is async: it reads through a redis.asyncio client with the
        # same connection settings (made in the server's event loop).
        pool = redis.connection_pool
        kwargs = dict(pool.connection_kwargs)
        conn_cls = getattr(aioconn, pool.connection_class.__name__, None)
        if conn_cls is None:
            raise TypeError(f"redis: cannot derive an asyncio client from a "
                            f"{pool.connection_class.__name__} connection; pass a "
                            "redis.asyncio.Redis or a URL")

        def make_client() -> Any:
            return aioredis.Redis(connection_pool=aioredis.ConnectionPool(
                connection_class=conn_cls, max_connections=_OWN_POOL_SIZE, **kwargs))
    else:
        raise TypeError(f"redis must be a Redis URL, a redis.asyncio.Redis or a redis.Redis "
                        f"client, got {type(redis).__name__} {redis!r}")

    hub = _Hub(client, client is None, float(heartbeat), batch, max(1, int(retry * 1000)), extra,
               max_reads)
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    hub.connection_errors = (RedisConnectionError, RedisTimeoutError, OSError)
    hub.timeout_errors = (RedisTimeoutError, asyncio.TimeoutError)
    hub.redis_url = url

    def ensure_client() -> Any:
        # made lazily in the running loop: works without lifespan events too
        if hub.redis is None:
            hub.redis = make_client()
            adapt_block(hub.redis)
        return hub.redis

    def adapt_block(client: Any) -> None:
        # keep the watcher's blocking read under the client's socket timeout
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        timeout = kwargs.get("socket_timeout")
        if isinstance(timeout, (int, float)) and timeout > 0:
            hub.watch_block_ms = max(1, min(_WATCH_BLOCK_MS, int(timeout * 1000 / 2)))

    if client is not None:
        adapt_block(client)

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def parse_query(request: Request) -> Tuple[Optional[FrozenSet[str]], Optional[Tuple[str, ...]], Optional[int], bool]:
        params = request.query_params
        for name in params.keys():
            if name not in _QUERY_PARAMS:
                raise _BadRequest(400, f"unknown query parameter {name!r}; accepted: "
                                       + ", ".join(_QUERY_PARAMS))
        for name in _QUERY_PARAMS:
            if len(params.getlist(name)) > 1:
                raise _BadRequest(400, f"query parameter {name!r} is given more than once")
        methods = _parse_methods(params["methods"], extra) if "methods" in params else None
        namespace = _parse_namespace(params["namespace"]) if "namespace" in params else None
        after = _parse_seq(params["after"], "after") if "after" in params else None
        named = _parse_event(params["event"]) if "event" in params else True
        return methods, namespace, after, named

    async def check_key(key: str) -> Any:
        if not key:
            raise _BadRequest(400, "the run key in /runs/{key}/events is empty")
        if not key.startswith(key_prefix):
            raise _BadRequest(404, f"no run stream at key {key!r}")
        kind = _text(await hub.call("type", key))
        if kind == "none":
            raise _BadRequest(404, f"no run stream at key {key!r}")
        if kind != "stream":
            raise _BadRequest(409, f"key {key!r} holds a Redis {kind}, not a run stream")

    async def events(request: Request) -> Any:
        key = request.path_params["key"]
        ensure_client()
        try:
            methods, namespace, after, named = parse_query(request)
            header = request.headers.get("last-event-id")
            if header is not None:
                after = _parse_seq(header, "Last-Event-ID")
            after = after or 0
            await check_key(key)
            newest = await hub.call("xrevrange", key, count=1)
            if newest:
                fields = {_text(k): v for k, v in newest[0][1].items()}
                if "end" in fields:
                    last = _split_id(_text(newest[0][0]))[0]
                    if after > last:
                        raise _BadRequest(416, f"resume point {after} is past the end of run "
                                               f"{key!r} (its last event is seq {last})")
        except _BadRequest as exc:
            return error(exc.status, exc.message)
        except (RedisError, OSError) as exc:
            return error(503, f"Redis is unavailable: {type(exc).__name__}: {exc}")
        return _EventStream(hub, key, after, methods, namespace, named)

    async def page(request: Request) -> Any:
        key = request.path_params["key"]
        try:
            parse_query(request)
            if not key:
                raise _BadRequest(400, "the run key in /runs/{key} is empty")
        except _BadRequest as exc:
            return error(exc.status, exc.message)
        from langstream.server._page import render_page

        return HTMLResponse(render_page(key), headers={"cache-control": "no-cache"})

    async def healthz(request: Request) -> Any:
        ensure_client()
        try:
            await hub.call("ping")
        except (RedisError, OSError) as exc:
            return error(503, f"Redis is unavailable: {type(exc).__name__}: {exc}")
        return JSONResponse({"ok": True})

    async def startup() -> None:
        ensure_client()

    async def shutdown() -> None:
        for watcher in list(hub.watchers.values()):
            watcher.stop()
        if hub.owns_client and hub.redis is not None:
            client, hub.redis = hub.redis, None
            close = getattr(client, "aclose", None) or client.close
            await close()
            # a pool passed to the client explicitly is not closed with it
            await client.connection_pool.disconnect()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await startup()
        try:
            yield
        finally:
            await shutdown()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/runs/{key:path}/events", events, methods=["GET"]),
            Route("/runs/{key:path}", page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.langstream = hub
    return app
