"""Runs beyond one process: publish a run's main log to a Redis stream, attach from anywhere.

Publishing (the ``redis`` extra: redis-py, imported lazily)::

    run = stream_events(parts)              # or astream_events / stream_graph ...
    publish(run, redis.Redis(...), "runs:42")  # before the run is iterated
    for snapshot in run.values: ...         # local consumers see exactly what they saw

Attaching, in any process::

    remote = attach(redis.Redis(...), "runs:42")      # or aattach(redis.asyncio.Redis(...), ...)
    for snapshot in remote.values: ...

Layout (see ``/REDIS_WIRE_SPEC.md`` in the repository, v1): one Redis stream per
run; each main-log event is the entry ``"<seq>-0"`` with the field ``e`` = its
wire JSON (``langstream.wire``); the run's end is the entry ``"<last_seq>-1"``
with the field ``end`` = ``{"v": 1, "status": "completed" | "failed" |
"interrupted", "last_seq": N}`` (plus ``error`` / ``interrupts``).  The events
of one pump step are written in one pipeline.

Contract of an attached run: the producer's ``seq`` numbers; resuming with
``after_seq=k`` yields every event after ``k`` exactly once; history already
trimmed raises ``StreamLagError`` (``missed`` exact) once, then the run
continues at the oldest retained event.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time
import weakref
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

from langstream import wire
from langstream.channel import StreamChannel
from langstream.errors import StreamLagError
from langstream.mux import StreamMux
from langstream.run_stream import (
    AsyncGraphRunStream,
    AsyncSubgraphRunStream,
    GraphRunStream,
    SubgraphRunStream,
)
from langstream.transformers import (
    CheckpointsTransformer,
    CustomTransformer,
    DebugTransformer,
    StreamTransformer,
    UpdatesTransformer,
    ValuesTransformer,
    _status_from_exception,
)

__all__ = [
    "AttachConnectionError",
    "PublishConnectionError",
    "RemoteRunError",
    "RunIdleError",
    "RunNotFoundError",
    "aattach",
    "attach",
    "publish",
]

_logger = logging.getLogger("langstream")

EVENT_FIELD = "e"
END_FIELD = "end"


# ------------------------------------------------------------------ errors


class PublishConnectionError(ConnectionError):
    """The producer could not write to Redis within ``retry_for`` seconds.

    The run fails with this error at every local consumer.  ``key`` is the
    run's stream key.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class AttachConnectionError(ConnectionError):
    """An attached reader lost its Redis connection.

    The attached run is not ended: read again (once the server is back) to
    go on, or attach anew with ``after_seq=last_seq``.
    """

    def __init__(self, key: str, last_seq: int, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.last_seq = last_seq


class RunIdleError(TimeoutError):
    """An attached run got no new entry for ``idle_timeout`` seconds.

    Typically its producer died before writing the run's end.  The attached
    run is not ended: read again to wait another ``idle_timeout`` (and go on
    if the producer is alive), or attach anew with ``after_seq=last_seq``.
    ``key`` is the run's stream key, ``last_seq`` the seq of the last event
    this reader took in, ``idle_timeout`` the timeout in seconds.
    """

    def __init__(self, key: str, last_seq: int, idle_timeout: float) -> None:
        super().__init__(
            f"no new entry in the run at Redis key {key!r} for {idle_timeout:g} s after "
            f"seq {last_seq} and no end entry (its producer may be gone); read again to "
            f"keep waiting, or attach(..., after_seq={last_seq}) later"
        )
        self.key = key
        self.last_seq = last_seq
        self.idle_timeout = idle_timeout


class RunNotFoundError(LookupError):
    """No stream exists at the key after waiting ``wait_timeout`` seconds."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(
            f"no run stream at Redis key {key!r} after waiting {timeout:g} s "
            "(never published, expired, or deleted)"
        )
        self.key = key
        self.timeout = timeout


class RemoteRunError(RuntimeError):
    """The remote run failed with an exception that is not a Python builtin.

    ``type_name`` is the exception class name on the producer, ``message``
    its text.  (A builtin exception, e.g. ``ValueError``, is re-raised as
    that class with the same message.)
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


def _remote_error(info: Any) -> BaseException:
    if not isinstance(info, dict):
        return RemoteRunError("Exception", repr(info))
    type_name = str(info.get("type", "Exception"))
    message = str(info.get("message", ""))
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - an odd constructor
            pass
    return RemoteRunError(type_name, message)


# ------------------------------------------------------------------ helpers


def _redis_errors() -> Tuple[type, ...]:
    try:
        from redis.exceptions import ConnectionError as RCE
        from redis.exceptions import TimeoutError as RTE
    except ImportError:  # pragma: no cover - the extra is required to get here
        return (ConnectionError, TimeoutError, OSError)
    return (RCE, RTE, ConnectionError, OSError)


def _is_async_client(client: Any) -> bool:
    try:
        import redis.asyncio as aredis
    except ImportError:  # pragma: no cover
        raise ImportError(
            "langstream.integrations.redis needs redis-py: pip install -e '.[redis]' in a checkout"
        ) from None
    async_types: Tuple[type, ...] = (aredis.Redis,)
    cluster = getattr(aredis, "RedisCluster", None)
    if cluster is not None:
        async_types += (cluster,)
    return isinstance(client, async_types)


def _check_key(key: Any) -> str:
    if isinstance(key, bytes):
        key = key.decode("utf-8")
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must be a non-empty str, got {key!r}")
    return key


def _check_count(name: str, value: Any, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    return value


def _check_seconds(name: str, value: Any, allow_none: bool = True, allow_zero: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


class _SingleFlight:
    """At most one task runs a step; the others wait for it, all woken together.

    Like the async run's own pump: a waiter returns when the step ends (its
    data may have arrived), and after a step that had waiters the next one
    first lets them run (so they subscribe to what they were handed).
    """

    __slots__ = ("busy", "waiters", "yield_next")

    def __init__(self) -> None:
        self.busy = False
        self.waiters: List[asyncio.Future[Any]] = []
        self.yield_next = True

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def release(self) -> None:
        self.busy = False
        waiters = self.waiters
        if waiters:
            self.waiters = []
            self.yield_next = True
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


# ================================================================= publishing


_WINDOW = 64  # batches (pump steps) a publisher may have in flight, unconfirmed


class _Batch:
    """One pump step's entries and their commands, sent together."""

    __slots__ = ("entries", "commands", "retried")

    def __init__(self, entries: List[Tuple[str, Dict[str, str]]],
                 commands: List[Tuple[Any, ...]]) -> None:
        self.entries = entries
        self.commands = commands
        self.retried = False  # may already be in Redis (sent before a lost connection)


def _give_back(pool: Any, conn: Any) -> None:
    try:
        conn.disconnect()  # replies may be unread: it cannot be reused as it is
        pool.release(conn)
    except Exception:  # noqa: BLE001 - at garbage collection, nothing to report to
        pass


# async give-backs under way: a task the loop holds only weakly must not be
# collected before it has returned its connection
_GIVING_BACK: "set[asyncio.Task[None]]" = set()


async def _aput_back(pool: Any, conn: Any, broken: bool) -> None:
    try:
        if broken:
            await conn.disconnect(nowait=True)
    finally:
        await pool.release(conn)


def _start_put_back(pool: Any, conn: Any, broken: bool) -> "asyncio.Task[None]":
    """Return ``conn`` to ``pool`` in a task of its own: no cancel can stop it halfway."""
    task = asyncio.ensure_future(_aput_back(pool, conn, broken))
    _GIVING_BACK.add(task)
    task.add_done_callback(_put_back_done)
    return task


def _put_back_done(task: "asyncio.Task[None]") -> None:
    _GIVING_BACK.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: reported by whoever awaited it, if anyone


def _agive_back(loop: asyncio.AbstractEventLoop, pool: Any, conn: Any) -> None:
    """A dropped async publisher's connection, at garbage collection (any thread).

    Nothing can be awaited here: the loop that owns the connection gives it
    back in a task.  A closed loop took its sockets down with it.
    """
    try:
        loop.call_soon_threadsafe(_start_put_back, pool, conn, True)
    except RuntimeError:  # the loop is closed
        pass


def _can_pipeline(client: Any) -> bool:
    """Whether the publisher can take a connection of its own from ``client``'s pool."""
    if getattr(client, "connection", None) is not None:  # single_connection_client
        return False
    if getattr(client, "single_connection_client", False) is True:  # (async: made lazily)
        return False
    pool = getattr(client, "connection_pool", None)
    return pool is not None and hasattr(pool, "get_connection") and hasattr(pool, "release")


class _Publisher:
    """Drains a run's main log after each pump step into one batch, pipelined across steps."""

    def __init__(self, run: Any, client: Any, key: str, maxlen: Optional[int],
                 expire: Optional[float], retry_for: float) -> None:
        self.run = run
        self.mux: StreamMux = run._mux
        self.client = client
        self.key = key
        self.maxlen = maxlen
        self.expire = expire
        self.retry_for = retry_for
        self.log = self.mux._events._log
        self.cursor = self.log.cursor()
        self.last_seq = 0
        self.ended = False
        self.broken = False
        self.error: Optional[BaseException] = None  # a failure after the run ended
        self.raised = False
        # batches not yet confirmed by Redis, oldest first; the first ``sent``
        # of them went out on ``conn`` (pipelined: a step does not wait for
        # the replies of the steps before it)
        self.window: Deque[_Batch] = deque()
        self.sent = 0
        # after a lost connection, the first write checks that the server is
        # ready before it resends: a server still loading its data (after a
        # restart) answers LOADING to the commands it reads during the load
        # and runs those it reads after, so a window of batches resent then
        # could land its later entries before its earlier ones.  (Not before
        # a run's first write: one round trip more for every run, and a first
        # batch caught by the end of a load is resent, and ``_gap`` fails the
        # run loudly if its entries landed out of order.)
        self.check_ready = False
        self.conn: Any = None  # held from the first write to the run's end
        self.finalizer: Any = None
        self.confirmed_any = False
        self.direct = _can_pipeline(client)
        self.encode_error: Optional[BaseException] = None
        self.last_encode_error: Optional[BaseException] = None
        self.lock: Optional[asyncio.Lock] = None
        self.errors = _redis_errors()
        from redis.exceptions import ResponseError

        self.refused = ResponseError

    # -- building a batch ---------------------------------------------------

    def _drain(self) -> List[Tuple[str, Dict[str, str]]]:
        entries: List[Tuple[str, Dict[str, str]]] = []
        cursor = self.cursor
        try:
            while cursor.pending:
                event = next(cursor)
                seq = event["seq"]
                try:
                    text = wire.dumps(event)
                except (TypeError, ValueError) as exc:
                    # the run fails with it; what came before is still written,
                    # and the end entry names the error
                    self.encode_error = exc
                    self.last_seq = seq
                    break
                entries.append((f"{seq}-0", {EVENT_FIELD: text}))
                self.last_seq = seq
        except StreamLagError as exc:
            raise RuntimeError(
                f"publishing to Redis key {self.key!r}: the run's main log (maxlen="
                f"{self.log.maxlen}) evicted {exc.missed} event(s) within one pump "
                "step before they were published; give the run a larger maxlen"
            ) from None
        if self.log.closed and not self.ended and self.encode_error is None:
            self.ended = True
            entries.append((f"{self.last_seq}-1", {END_FIELD: self._end_json()}))
        return entries

    def _end_json(self) -> str:
        mux = self.mux
        err = self.log.error
        doc: Dict[str, Any] = {"v": wire.WIRE_VERSION, "last_seq": self.last_seq}
        if err is not None:
            doc["status"] = "failed"
            doc["error"] = {"type": type(err).__name__, "message": str(err)}
        elif mux._interrupted:
            doc["status"] = "interrupted"
            doc["interrupts"] = wire.encode_value(list(mux._interrupts))
        else:
            doc["status"] = "completed"
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    def _commands(self, entries: List[Tuple[str, Dict[str, str]]]) -> List[Tuple[Any, ...]]:
        """The commands of one batch: an ``XADD`` per entry (+ ``PEXPIRE`` after the end)."""
        key, maxlen = self.key, self.maxlen
        commands: List[Tuple[Any, ...]] = []
        for entry_id, fields in entries:
            (field, value), = fields.items()
            if maxlen is None:
                commands.append(("XADD", key, entry_id, field, value))
            else:
                commands.append(("XADD", key, "MAXLEN", "~", maxlen, entry_id, field, value))
        if self.expire is not None and entries[-1][0].endswith("-1"):
            commands.append(("PEXPIRE", key, max(1, int(self.expire * 1000))))
        return commands

    def _pipeline(self, batch: _Batch) -> Any:
        pipe = self.client.pipeline(transaction=False)
        for command in batch.commands:
            pipe.execute_command(*command)
        return pipe

    def _check(self, results: List[Any], entries: List[Tuple[str, Dict[str, str]]],
               retried: bool) -> List[str]:
        """Raise for an entry Redis refused; return the ids of the resent
        entries it refused as already written (``_gap`` checks that they are)."""
        written: List[str] = []
        for result, entry in zip(results, entries):
            if isinstance(result, Exception):
                if retried and "equal or smaller" in str(result):
                    # written by the attempt that lost its connection, unless a
                    # later entry of that attempt was written before it
                    written.append(entry[0])
                    continue
                if "equal or smaller" in str(result):
                    raise ValueError(
                        f"Redis key {self.key!r} already holds a stream with entry ids at "
                        f"or after {entry[0]}: publish each run under a new key"
                    )
                raise RuntimeError(
                    f"Redis refused entry {entry[0]} of key {self.key!r}: {result}"
                )
        return written

    def _gap(self, written: List[str], found: List[Any]) -> None:
        """Raise when an entry of ``written`` is not among ``found`` (the
        entries of the stream from the first of them to the last): the stream
        has a gap that no later write can fill (its ids only grow)."""
        present = {_text(entry[0]) for entry in found}
        missing = [entry_id for entry_id in written if entry_id not in present]
        if missing:
            raise RuntimeError(
                f"publishing to Redis key {self.key!r}: {len(missing)} entr"
                f"{'y' if len(missing) == 1 else 'ies'} ({missing[0]} to {missing[-1]}) "
                "missing after a lost connection: Redis wrote later entries before "
                "them (a server still loading its data, or another writer on the "
                "key), so the stream has a gap; the run fails rather than publish "
                "it incomplete"
            )

    def _check_budget(self, exc: BaseException, start: float, delay: float) -> None:
        """``PublishConnectionError`` when waiting ``delay`` more seconds before
        the next try would go past ``retry_for`` (counted from ``start``)."""
        elapsed = time.monotonic() - start
        if elapsed + delay > self.retry_for:
            raise PublishConnectionError(
                self.key,
                f"cannot publish run events to Redis key {self.key!r}: {exc} "
                f"(retried for {elapsed:.1f} s; retry_for={self.retry_for:g})",
            ) from exc

    def _queue(self) -> int:
        """Queue the new entries as one batch; return how many batches may stay unconfirmed.

        Nothing may stay unconfirmed once the run has ended (the end entry is
        confirmed before the run's end reaches its consumers), before the
        first batch was confirmed (a used key fails the run at once), or
        without a connection of our own.
        """
        entries = self._drain()
        if entries:
            self.window.append(_Batch(entries, self._commands(entries)))
        if self.log.closed or not self.confirmed_any or not self.direct:
            return 0
        return _WINDOW - 1

    def _lost_connection(self) -> None:
        """Every batch in the window may or may not be in Redis: resend them all."""
        self.sent = 0
        self.check_ready = True
        for batch in self.window:
            batch.retried = True

    # -- sync lane ------------------------------------------------------------

    def _connection(self) -> Any:
        conn = self.conn
        if conn is None:
            pool = self.client.connection_pool
            try:
                conn = self.conn = pool.get_connection()
            except TypeError:  # redis-py < 5.3 wants a command name
                conn = self.conn = pool.get_connection("XADD")
            # a run dropped before its end gives the connection back when collected
            self.finalizer = weakref.finalize(self, _give_back, pool, conn)
        return conn

    def _release(self, broken: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.finalizer is not None:
                self.finalizer.detach()
                self.finalizer = None
            try:
                if broken:
                    conn.disconnect()
            finally:
                self.client.connection_pool.release(conn)

    def _replies(self, conn: Any, batch: _Batch) -> List[Any]:
        """Read the replies to ``batch``'s commands (a refusal is a reply)."""
        refused = self.refused
        results: List[Any] = []
        for _ in batch.commands:
            try:
                results.append(conn.read_response())
            except refused as exc:
                results.append(exc)
        return results

    def _io(self, limit: int) -> None:
        """Send the unsent batches, then read replies until at most ``limit`` are unread."""
        window = self.window
        if not self.direct:  # a cluster or a single-connection client: one batch at a time
            if self.check_ready:
                self.client.ping()  # (LOADING: a ConnectionError, retried)
                self.check_ready = False
            while window:
                batch = window[0]
                results = self._pipeline(batch).execute(raise_on_error=False)
                self.confirmed_any = True
                written = self._check(results, batch.entries, batch.retried)
                if written:
                    self._gap(written, self.client.xrange(self.key, written[0], written[-1]))
                window.popleft()  # (after the gap check: a lost connection retries it)
            return
        conn = self._connection()
        if self.check_ready:
            conn.send_command("PING", check_health=False)
            conn.read_response()  # (LOADING: a ConnectionError, retried)
            self.check_ready = False
        # the batches resent after a lost connection (the front of the window,
        # nothing in flight): one at a time, so that a gap check reads the
        # stream on this connection (a pool of one has no other to lend)
        while window and window[0].retried:
            batch = window[0]
            conn.send_packed_command(conn.pack_commands(batch.commands), check_health=False)
            results = self._replies(conn, batch)
            self.confirmed_any = True
            written = self._check(results, batch.entries, True)
            if written:
                conn.send_command("XRANGE", self.key, written[0], written[-1],
                                  check_health=False)
                self._gap(written, conn.read_response())
            window.popleft()  # (after the gap check: a lost connection retries it)
        while self.sent < len(window):
            conn.send_packed_command(conn.pack_commands(window[self.sent].commands),
                                     check_health=False)
            self.sent += 1
        while window and (len(window) > limit or conn.can_read(0)):
            batch = window[0]
            results = self._replies(conn, batch)
            window.popleft()
            self.sent -= 1
            self.confirmed_any = True
            self._check(results, batch.entries, False)  # (resent batches went above)
        if not window and self.log.closed:  # the run is over: give the connection back
            self._release(False)

    def write(self) -> None:
        limit = self._queue()
        if not self.window:
            if self.conn is not None and self.log.closed:
                self._release(False)
            self._raise_encode_error()
            return
        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                self._io(limit)
            except self.errors as exc:
                self._lost_connection()
                if self.direct:
                    self._release(True)
                self._check_budget(exc, start, delay)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except BaseException:
                # KeyboardInterrupt, or Redis refused an entry: what was sent may
                # be in Redis or not; a later write resends it
                self._lost_connection()
                if self.direct:
                    self._release(True)
                raise
            self._raise_encode_error()
            return

    def _unencodable(self, exc: BaseException) -> bool:
        return exc is self.last_encode_error

    def _raise_encode_error(self) -> None:
        exc = self.encode_error
        if exc is not None:
            self.encode_error = None
            self.last_encode_error = exc
            raise exc

    def _write_failed(self, exc: BaseException) -> bool:
        """After a failed write: True while the run is open (the lane then
        fails the run with ``exc``); after its end, ``exc`` is kept for the
        consumer that drives the end (see ``_raise_late``) and logged."""
        # unencodable data fails the run, which is still published (its end
        # entry names the error); a Redis failure stops publishing
        self.broken = not self._unencodable(exc)
        if not self.log.closed:
            return True
        self.error = exc
        _logger.error("langstream: %s", exc)
        return False

    def _raise_late(self, at_end_raise: bool) -> None:
        if at_end_raise and self.error is not None and not self.raised:
            self.raised = True
            raise self.error

    def after_step(self, at_end_raise: bool) -> None:
        """Publish what the last step produced; see ``_SyncStep``."""
        if not self.broken:
            try:
                self.write()
            except Exception as exc:  # noqa: BLE001 - fails the run, or raised
                if self._write_failed(exc):
                    self.run._end(exc)
                    return
        self._raise_late(at_end_raise)

    # -- async lane -----------------------------------------------------------

    async def _aconnection(self) -> Any:
        conn = self.conn
        if conn is None:
            pool = self.client.connection_pool
            try:
                conn = self.conn = await pool.get_connection()
            except TypeError:  # redis-py < 5.3 wants a command name
                conn = self.conn = await pool.get_connection("XADD")
            # a run dropped before its end gives the connection back when collected
            self.finalizer = weakref.finalize(
                self, _agive_back, asyncio.get_running_loop(), pool, conn)
        return conn

    async def _arelease(self, broken: bool) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.finalizer is not None:
                self.finalizer.detach()
                self.finalizer = None
            # shielded: a cancel of this writer (even a second one, while it
            # gives the connection back) does not stop the give-back halfway
            await asyncio.shield(
                _start_put_back(self.client.connection_pool, conn, broken))

    async def _areplies(self, conn: Any, batch: _Batch) -> List[Any]:
        """``_replies``, on the async lane."""
        refused = self.refused
        results: List[Any] = []
        for _ in batch.commands:
            try:
                results.append(await conn.read_response())
            except refused as exc:
                results.append(exc)
        return results

    async def _aio(self, limit: int) -> None:
        window = self.window
        if not self.direct:
            if self.check_ready:
                await self.client.ping()  # (LOADING: a ConnectionError, retried)
                self.check_ready = False
            while window:
                batch = window[0]
                results = await self._pipeline(batch).execute(raise_on_error=False)
                self.confirmed_any = True
                written = self._check(results, batch.entries, batch.retried)
                if written:
                    self._gap(written,
                              await self.client.xrange(self.key, written[0], written[-1]))
                window.popleft()
            return
        conn = await self._aconnection()
        if self.check_ready:
            await conn.send_command("PING", check_health=False)
            await conn.read_response()  # (LOADING: a ConnectionError, retried)
            self.check_ready = False
        while window and window[0].retried:  # (one at a time: see ``_io``)
            batch = window[0]
            await conn.send_packed_command(conn.pack_commands(batch.commands),
                                           check_health=False)
            results = await self._areplies(conn, batch)
            self.confirmed_any = True
            written = self._check(results, batch.entries, True)
            if written:
                await conn.send_command("XRANGE", self.key, written[0], written[-1],
                                        check_health=False)
                self._gap(written, await conn.read_response())
            window.popleft()
        while self.sent < len(window):
            await conn.send_packed_command(conn.pack_commands(window[self.sent].commands),
                                           check_health=False)
            self.sent += 1
        can_read = getattr(conn, "can_read", None) or conn.can_read_destructive
        while window and (len(window) > limit or await can_read()):
            batch = window[0]
            results = await self._areplies(conn, batch)
            window.popleft()
            self.sent -= 1
            self.confirmed_any = True
            self._check(results, batch.entries, False)  # (resent batches went above)
        if not window and self.log.closed:
            await self._arelease(False)

    async def awrite(self) -> None:
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:  # one writer at a time: entry ids must grow
            limit = self._queue()
            if not self.window:
                if self.conn is not None and self.log.closed:
                    await self._arelease(False)
                self._raise_encode_error()
                return
            start = time.monotonic()
            delay = 0.05
            while True:
                try:
                    await self._aio(limit)
                except self.errors as exc:
                    self._lost_connection()
                    if self.direct:
                        await self._arelease(True)
                    self._check_budget(exc, start, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                except BaseException:
                    # cancelled, or Redis refused an entry: resent by a later write
                    self._lost_connection()
                    if self.direct:
                        try:
                            await self._arelease(True)
                        except BaseException:  # noqa: BLE001 - cancelled again: the
                            pass  # give-back goes on in its own task
                    raise
                self._raise_encode_error()
                return

    async def aafter_step(self, at_end_raise: bool) -> None:
        if not self.broken:
            try:
                await self.awrite()
            except Exception as exc:  # noqa: BLE001 - fails the run, or raised
                if self._write_failed(exc):
                    await self.run._pump.end(exc)
                    return
        self._raise_late(at_end_raise)


class _SyncStep:
    """The run's pump, followed by publishing what the step produced."""

    __slots__ = ("inner", "pub")

    def __init__(self, inner: Any, pub: _Publisher) -> None:
        self.inner = inner
        self.pub = pub

    def __call__(self) -> bool:
        more = self.inner()
        self.pub.after_step(True)
        return more

    # the run tells a compiled pump it is done through this attribute
    @property
    def done(self) -> bool:
        return bool(getattr(self.inner, "done", False))

    @done.setter
    def done(self, value: bool) -> None:
        if hasattr(self.inner, "done"):
            self.inner.done = value


def publish(run: Any, client: Any, key: str, *, maxlen: Optional[int] = None,
            expire: Optional[float] = None, retry_for: float = 5.0) -> Any:
    """Publish ``run``'s main log to the Redis stream ``key``, as the run is driven.

    Call it before the run is iterated; it returns ``run`` itself.  Local
    consumers see exactly what they would see without publishing.  After each
    pump step the step's events are written in one pipeline (``XADD key
    <seq>-0 e <wire json>``); when the run ends (completed, failed, aborted,
    interrupted) the terminal entry ``<last_seq>-1`` follows.  An aborted run
    is published as completed (its consumers see the projections end
    normally, as local ones do).

    Args:
        run: a root ``GraphRunStream`` (with a ``redis.Redis`` client) or
            ``AsyncGraphRunStream`` (with a ``redis.asyncio.Redis`` client).
        client: the redis-py client; credentials and TLS are configured on it
            and never logged here.  A Redis Cluster client works: every
            command touches the one key (use a hash tag to place it).
        key: the stream key; it must not hold entries already (one key per run).
        maxlen: approximate trimming (``MAXLEN ~ maxlen``) on every write;
            readers asking for trimmed history get ``StreamLagError``.
        expire: seconds after the terminal entry until Redis deletes the key.
        retry_for: seconds to retry a write that failed for a connection
            reason (exponential backoff from 50 ms, capped at 1 s); then the
            run fails with ``PublishConnectionError`` naming the key.

    Raises:
        TypeError / ValueError: a bad argument (names it), a subgraph handle,
            a run already started or already published, a client of the
            other lane.
    """
    key = _check_key(key)
    maxlen = _check_count("maxlen", maxlen)
    expire = _check_seconds("expire", expire)
    retry_for = _check_seconds("retry_for", retry_for, allow_none=False, allow_zero=True)  # type: ignore[assignment]
    if isinstance(run, (SubgraphRunStream, AsyncSubgraphRunStream)) or not isinstance(
        run, (GraphRunStream, AsyncGraphRunStream)
    ):
        raise TypeError(f"run must be a root GraphRunStream or AsyncGraphRunStream, got {run!r}")
    if isinstance(run, (_RemoteRun, _AsyncRemoteRun)):
        raise TypeError("run is an attached remote run; publish the producer's run instead")
    mux = run._mux
    if run.__dict__.get("_redis_publisher") is not None:
        raise ValueError(f"run is already published (to key {run.__dict__['_redis_publisher'].key!r})")
    if mux._events._log.last_seq or mux._events._log.closed or run._exhausted:
        raise ValueError("publish() must be called before the run is iterated")
    is_async = isinstance(run, AsyncGraphRunStream)
    if _is_async_client(client) != is_async:
        want = "redis.asyncio.Redis" if is_async else "redis.Redis"
        raise TypeError(
            f"client must be a {want} for {'an async' if is_async else 'a sync'} run, "
            f"got {type(client).__module__}.{type(client).__name__}"
        )
    pub = _Publisher(run, client, key, maxlen, expire, retry_for)  # type: ignore[arg-type]
    run.__dict__["_redis_publisher"] = pub
    if not is_async:
        step = _SyncStep(run._pump_next, pub)
        run._pump_next = step
        mux.bind_pump(step)
        close, fail = mux.close, mux.fail

        def _close() -> None:
            try:
                close()
            finally:
                pub.after_step(False)

        def _fail(err: BaseException) -> None:
            try:
                fail(err)
            finally:
                pub.after_step(False)

        mux.close = _close  # type: ignore[method-assign]
        mux.fail = _fail  # type: ignore[method-assign]
    else:
        inner = run._apump_next
        flight = _SingleFlight()
        pump = run._pump

        async def _astep() -> bool:
            # the step and its write are one step: no other consumer pumps
            # before the one that drove it has seen what it produced
            if flight.busy:
                await flight.wait()
                return not pump.exhausted
            flight.busy = True
            try:
                if flight.yield_next:
                    flight.yield_next = False
                    pump.yield_next = True
                more = await inner()
                await pub.aafter_step(True)
                return more
            finally:
                flight.release()

        run._apump_next = _astep
        mux.bind_apump(_astep)
        aclose, afail = mux.aclose, mux.afail

        async def _aclose() -> None:
            try:
                await aclose()
            finally:
                await pub.aafter_step(False)

        async def _afail(err: BaseException) -> None:
            try:
                await afail(err)
            finally:
                await pub.aafter_step(False)

        mux.aclose = _aclose  # type: ignore[method-assign]
        mux.afail = _afail  # type: ignore[method-assign]
    return run


# ================================================================= attaching


class _RemoteLifecycle(StreamTransformer):
    """``lifecycle`` of an attached run: the producer's lifecycle events below the scope.

    A subgraph handle's lifecycle also ends, when the handle ends, the
    namespaces below it still open (their own task result never came), as
    the producer's handle did: ``completed``, or the status of the handle's
    failure.  The producer's root lifecycle ends those only at the run's
    end, so the wire does not carry what its handles saw.
    """

    _native = True

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        super().__init__(scope)
        self._depth = len(self.scope)
        self._scope_list = list(self.scope)
        self._channel: StreamChannel[Any] = StreamChannel()  # unnamed: events come from the wire
        # (below a handle's scope) namespace -> its started payload, while open
        self._open: Dict[Tuple[str, ...], Dict[str, Any]] = {}

    def init(self) -> Dict[str, Any]:
        return {"lifecycle": self._channel}

    def process(self, event: Any) -> bool:
        if event["method"] == "lifecycle" and not event["params"]["namespace"]:
            payload = event["params"]["data"]
            ns = payload.get("namespace") if isinstance(payload, dict) else None
            if isinstance(ns, (list, tuple)) and len(ns) > self._depth and (
                not self._depth or list(ns[: self._depth]) == self._scope_list
            ):
                if self._depth:
                    key = tuple(ns)
                    if payload.get("event") == "started":
                        self._open[key] = payload
                    else:
                        self._open.pop(key, None)
                self._channel.push(payload)
        return True

    def _end_open(self, status: str, error: Optional[str]) -> None:
        """End what is still open below this handle, oldest first."""
        still_open = list(self._open.items())
        self._open.clear()
        for key, started in still_open:
            payload: Dict[str, Any] = {"event": status, "namespace": list(key)}
            for name in ("graph_name", "trigger_call_id"):
                if started.get(name) is not None:
                    payload[name] = started[name]
            if error is not None:
                payload["error"] = error
            self._channel.push(payload)

    def finalize(self) -> None:
        self._end_open("completed", None)

    def fail(self, err: BaseException) -> None:
        self._end_open(*_status_from_exception(err))


class _Flags:
    """State shared by an attached run's pump and its subgraph trackers."""

    __slots__ = ("new_handle",)

    def __init__(self) -> None:
        self.new_handle = False


class _RemoteSubgraphs(StreamTransformer):
    """``subgraphs`` of an attached run: handles from the producer's lifecycle events."""

    _native = True
    supports_sync = True  # process() and aprocess() are twins

    def __init__(self, scope: Tuple[str, ...], flags: _Flags) -> None:
        super().__init__(scope)
        self._depth = len(self.scope)
        self._scope_list = list(self.scope)
        self._flags = flags
        self._log: StreamChannel[Any] = StreamChannel()
        self._handles: Dict[Tuple[str, ...], Any] = {}
        # handles whose 'failed' payload arrived: failed at the next event; if
        # the run's end comes first and names the same error, the payload was
        # the run's own failure reaching the subgraph: it gets the run's error
        self._failing: List[Tuple[Any, Optional[str]]] = []
        # every namespace below the scope started and not ended, oldest first
        # (a failing run ends these in this order: see ``_track``)
        self._live: Dict[Tuple[str, ...], None] = {}
        self._mux: Any = None

    def init(self) -> Dict[str, Any]:
        return {"subgraphs": self._log}

    def _on_register(self, mux: Any) -> None:
        self._mux = mux

    def _target(self, event: Any) -> Tuple[str, Any, Any]:
        """(what, key or handle, payload): how this event concerns a child."""
        params = event["params"]
        ns = params["namespace"]
        depth = self._depth
        if event["method"] == "lifecycle" and not ns:
            payload = params["data"]
            path = payload.get("namespace") if isinstance(payload, dict) else None
            if not isinstance(path, (list, tuple)) or len(path) <= depth:
                return "", None, None
            if depth and list(path[:depth]) != self._scope_list:
                return "", None, None
            key = tuple(path[: depth + 1])
            if len(path) == depth + 1:
                return ("started" if payload.get("event") == "started" else "ended"), key, payload
            return "forward", self._handles.get(key), None
        if len(ns) > depth and (not depth or ns[:depth] == self._scope_list):
            return "forward", self._handles.get(tuple(ns[: depth + 1])), None
        return "", None, None

    def _start(self, key: Tuple[str, ...], payload: Dict[str, Any]) -> None:
        child = self._mux._make_child(key)
        cls = AsyncSubgraphRunStream if child.is_async else SubgraphRunStream
        handle = cls(child, path=key, graph_name=payload.get("graph_name"),
                     trigger_call_id=payload.get("trigger_call_id"))
        self._handles[key] = handle
        self._flags.new_handle = True
        self._log.push(handle)

    @staticmethod
    def _mark(handle: Any, status: str, error: Optional[str]) -> None:
        handle._seen_terminal = True
        handle.status = status
        if error is not None and handle.error is None:
            handle.error = error

    def _take_failing(self) -> List[Tuple[Any, Optional[str]]]:
        failing = self._failing
        self._failing = []
        return failing

    # The router decides, its two lanes act: what to do to a child mux is
    # ``(mux, "push" | "close" | "fail", argument)``; a sequence of them is
    # yielded one at a time, each done by the lane before the next is decided.

    def _fail_failing(self, err: Optional[BaseException] = None,
                      error: Optional[str] = None) -> Iterator[Tuple[Any, str, Any]]:
        """Fail the handles whose 'failed' payload arrived (with ``err`` when
        it is the run's own error reaching them, its text ``error``)."""
        for handle, _error in self._take_failing():
            self._mark(handle, "failed", _error)
            same = err is not None and _error == error
            yield handle._mux, "fail", err if same else RuntimeError(_error or "subgraph failed")

    def _child_action(self, event: Any) -> Optional[Tuple[Any, str, Any]]:
        """What ``event`` asks of a child mux, if anything (after ``_fail_failing``)."""
        what, target, payload = self._target(event)
        if what == "forward":
            if target is not None and not target._mux._events._log.closed:
                return target._mux, "push", event
        elif what == "started":
            if target not in self._handles:
                self._start(target, payload)
        elif what == "ended":
            handle = self._handles.pop(target, None)
            if handle is not None:
                status = payload.get("event")
                if status == "failed":
                    self._failing.append((handle, payload.get("error")))
                else:
                    self._mark(handle, status, None)
                    return handle._mux, "close", None
        return None

    def _open(self) -> List[Any]:
        handles = [h for h in reversed(list(self._handles.values())) if not h._seen_terminal]
        self._handles.clear()
        self._live.clear()
        return handles

    def _finish(self) -> Iterator[Tuple[Any, str, Any]]:
        yield from self._fail_failing()
        for handle in self._open():
            self._mark(handle, "completed", None)
            yield handle._mux, "close", None

    def _fail_all(self, err: BaseException) -> Iterator[Tuple[Any, str, Any]]:
        status, error = _status_from_exception(err)
        yield from self._fail_failing(err, error)
        for handle in self._open():
            self._mark(handle, status, error)
            yield handle._mux, "fail", err

    @staticmethod
    def _act(mux: Any, what: str, arg: Any) -> None:
        if what == "push":
            mux.push(arg)
        elif what == "close":
            mux.close()
        else:
            mux.fail(arg)

    @staticmethod
    async def _aact(mux: Any, what: str, arg: Any) -> None:
        if what == "push":
            await mux.apush(arg)
        elif what == "close":
            await mux.aclose()
        else:
            await mux.afail(arg)

    def _track(self, event: Any) -> bool:
        """Keep ``_live`` up to date with ``event``; return True when it is
        the producer's failing run ending what was still open: a 'failed'
        payload, with the error of the failures pending here, of the oldest
        namespace still open.  (A failing run ends what is open oldest
        first, each with the run's error: the pending failures may then be
        the run's own too, and wait for its end.)"""
        if event["method"] != "lifecycle" or event["params"]["namespace"]:
            return False
        payload = event["params"]["data"]
        path = payload.get("namespace") if isinstance(payload, dict) else None
        if not isinstance(path, (list, tuple)):
            return False
        key = tuple(path)
        live = self._live
        if payload.get("event") == "started":
            live[key] = None
            return False
        oldest = next(iter(live), None)
        live.pop(key, None)
        if payload.get("event") != "failed" or key != oldest:
            return False
        error = payload.get("error")
        return any(_error == error for _handle, _error in self._failing)

    def process(self, event: Any) -> bool:
        if not self._track(event) and self._failing:
            for action in self._fail_failing():
                self._act(*action)
        action = self._child_action(event)
        if action is not None:
            self._act(*action)
        return True

    async def aprocess(self, event: Any) -> bool:
        if not self._track(event) and self._failing:
            for action in self._fail_failing():
                await self._aact(*action)
        action = self._child_action(event)
        if action is not None:
            await self._aact(*action)
        return True

    def finalize(self) -> None:
        for action in self._finish():
            self._act(*action)

    async def afinalize(self) -> None:
        for action in self._finish():
            await self._aact(*action)

    def fail(self, err: BaseException) -> None:
        for action in self._fail_all(err):
            self._act(*action)

    async def afail(self, err: BaseException) -> None:
        for action in self._fail_all(err):
            await self._aact(*action)


def _remote_factories(flags: _Flags) -> List[Any]:
    factories: List[Any] = [
        ValuesTransformer,
        _RemoteLifecycle,
        lambda scope: _RemoteSubgraphs(scope, flags),
        UpdatesTransformer,
        CustomTransformer,
        CheckpointsTransformer,
        DebugTransformer,
    ]
    # ``messages`` (langchain-core chat-model streams, when it is installed):
    # its events stay in the main log, so the reader rebuilds the streams
    try:
        from langstream._messages import default_message_factories
    except ImportError:  # a langstream without the messages projection
        return factories
    factories.extend(default_message_factories())
    return factories


_END = object()
_HANDLE_TURNS = 4  # event-loop turns given after a step that made a subgraph handle


class _Source:
    """Reads one run's Redis stream in batches, decodes entries one at a time."""

    def __init__(self, client: Any, key: str, after_seq: int, count: int,
                 block: float, wait_timeout: float,
                 idle_timeout: Optional[float] = None) -> None:
        self.client = client
        self.key = key
        self.read_id = f"{after_seq}-0"
        self.last_seq = after_seq  # last event handed to the mux
        self.buffer: Deque[Tuple[str, Any]] = deque()
        # a lag or bad entry met after some events of a step: the next step's
        self.held: Optional[BaseException] = None
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self.wait_timeout = wait_timeout
        self.started = time.monotonic()
        self.idle_timeout = idle_timeout
        self.idle_since = self.started  # the last time an entry arrived (or we gave up)
        self.idle = False  # the last read found the run idle for idle_timeout
        self.seen_any = False
        self.checked_end = False
        self.errors = _redis_errors()

    def _conn_error(self, exc: BaseException) -> AttachConnectionError:
        return AttachConnectionError(
            self.key, self.last_seq,
            f"lost the connection to Redis while reading run key {self.key!r} after "
            f"seq {self.last_seq}: {exc}; read again once Redis is back, or "
            f"attach(..., after_seq={self.last_seq})",
        )

    def _xread_args(self) -> Tuple[Dict[str, str], int, int]:
        block_ms = self.block_ms
        if self.idle_timeout is not None:  # do not block past the idle deadline
            left = self.idle_since + self.idle_timeout - time.monotonic()
            block_ms = max(1, min(block_ms, int(left * 1000) + 1))
        return {self.key: self.read_id}, self.count, block_ms

    def _take(self, response: Any) -> None:
        if not response:
            return
        if isinstance(response, dict):  # RESP3
            batches = list(response.values())
            entries = batches[0] if batches else []
            if entries and isinstance(entries[0], list) and entries and len(entries) == 1 \
                    and entries[0] and isinstance(entries[0][0], (list, tuple)):
                entries = entries[0]
        else:  # RESP2: [[key, [(id, fields), ...]]]
            entries = response[0][1]
        for entry_id, fields in entries:
            entry_id = _text(entry_id)
            self.buffer.append((entry_id, fields))
            self.read_id = entry_id
        if entries:
            self.seen_any = True
            self.idle_since = time.monotonic()

    def _empty_read(self, exists: int, last: Any) -> None:
        """Nothing new: a missing key times out; a resume past the end is an error."""
        if not exists:
            if time.monotonic() - self.started >= self.wait_timeout:
                raise RunNotFoundError(self.key, self.wait_timeout)
            return
        if not self.checked_end and last:
            self.checked_end = True
            entry_id, fields = last[0]
            entry_id = _text(entry_id)
            if entry_id.endswith("-1"):
                end_seq = int(entry_id.split("-")[0])
                if end_seq < self.last_seq:
                    raise ValueError(
                        f"after_seq={self.last_seq} is past the end of the run at Redis "
                        f"key {self.key!r} (its last seq is {end_seq})"
                    )
        idle = self.idle_timeout
        if idle is not None:
            now = time.monotonic()
            if now - self.idle_since >= idle:
                self.idle_since = now  # reading again waits another idle_timeout
                self.idle = True

    def _raise_idle(self) -> None:
        if self.idle:
            self.idle = False
            raise RunIdleError(self.key, self.last_seq, self.idle_timeout)  # type: ignore[arg-type]

    def fetch(self) -> None:
        key, count, block = self._xread_args()
        client = self.client
        try:
            self._take(client.xread(key, count=count, block=block))
            if not self.buffer:
                self._empty_read(client.exists(self.key),
                                 None if self.checked_end else client.xrevrange(self.key, count=1))
        except self.errors as exc:
            raise self._conn_error(exc) from exc
        self._raise_idle()

    async def afetch(self) -> None:
        key, count, block = self._xread_args()
        client = self.client
        try:
            self._take(await client.xread(key, count=count, block=block))
            if not self.buffer:
                last = None if self.checked_end else await client.xrevrange(self.key, count=1)
                self._empty_read(await client.exists(self.key), last)
        except self.errors as exc:
            raise self._conn_error(exc) from exc
        self._raise_idle()

    def next_item(self) -> Tuple[Any, Any]:
        """Pop and decode the next entry: ``(event, None)`` or ``(_END, end doc)``.

        Raises ``StreamLagError`` (the entry stays queued) when entries before
        it are gone, ``ValueError`` naming the key and entry id for a bad one.
        """
        entry_id, fields = self.buffer[0]
        where = f"entry {entry_id} of Redis key {self.key!r}"
        seq_text, _, part = entry_id.partition("-")
        try:
            seq = int(seq_text)
        except ValueError:
            raise ValueError(f"bad {where}: its id is not '<seq>-0' or '<seq>-1'") from None
        if part not in ("0", "1"):
            raise ValueError(f"bad {where}: its id is not '<seq>-0' or '<seq>-1'")
        if isinstance(fields, (list, tuple)):
            fields = dict(zip(fields[::2], fields[1::2]))
        named = {_text(k): v for k, v in fields.items()}
        is_end = part == "1"
        field = END_FIELD if is_end else EVENT_FIELD
        if set(named) != {field}:
            raise ValueError(
                f"bad {where}: expected exactly the field {field!r}, got {sorted(named)!r}"
            )
        if is_end:
            try:
                doc = json.loads(named[field])
                if type(doc) is not dict or doc.get("v") != wire.WIRE_VERSION:
                    raise ValueError(f"expected a v{wire.WIRE_VERSION} end object")
                if doc.get("status") not in ("completed", "failed", "interrupted"):
                    raise ValueError(f"unknown status {doc.get('status')!r}")
                if doc.get("last_seq") != seq:
                    raise ValueError(f"last_seq {doc.get('last_seq')!r} != the entry's {seq}")
                if "interrupts" in doc:
                    doc["interrupts"] = wire.decode_value(doc["interrupts"])
            except ValueError as exc:
                raise ValueError(f"bad {where}: not a valid end entry: {exc}") from None
            self._check_gap(seq, entry_id)  # every event up to the end's seq was read
            self.buffer.popleft()
            return _END, doc
        try:
            event = wire.loads(named[field])
        except ValueError as exc:
            raise ValueError(f"bad {where}: {exc}") from None
        if event["seq"] != seq:
            raise ValueError(f"bad {where}: its wire seq is {event['seq']}")
        if seq <= self.last_seq:
            raise ValueError(f"bad {where}: seq {seq} arrives after seq {self.last_seq}")
        self._check_gap(seq - 1, entry_id)  # every event before this one was read
        self.buffer.popleft()
        self.last_seq = seq
        return event, None

    def take_held(self) -> Optional[BaseException]:
        """The error a pump step met after its events, for the next step: a
        lag is raised now, another error is returned (it ends the run)."""
        held, self.held = self.held, None
        if isinstance(held, StreamLagError):
            raise held
        return held

    def step_item(self, mux: StreamMux, pushed: bool) -> Tuple[Any, Any]:
        """The next buffered entry for a pump step that ``pushed`` events already.

        ``(event, None)``: push it.  ``(None, None)``: the step stops here (an
        error met after its events is held for the next step).  ``(_END,
        err)``: the run ends here, completed (``err`` None) or failed.  A lag
        met before any event of the step is raised.
        """
        try:
            event, end = self.next_item()
        except Exception as exc:  # noqa: BLE001 - lag, or a bad entry (ends the run)
            if pushed:
                self.held = exc
                return None, None
            if isinstance(exc, StreamLagError):
                raise
            return _END, exc
        if event is _END:
            return _END, _apply_end(mux, end)
        return event, None

    def _check_gap(self, last_needed: int, entry_id: str) -> None:
        """``StreamLagError`` (once: the reader then goes on at ``entry_id``)
        when events up to ``last_needed`` were trimmed before this reader got them."""
        if last_needed > self.last_seq:
            missed = last_needed - self.last_seq
            self.last_seq = last_needed
            raise StreamLagError(
                missed,
                f"{missed} event(s) of the run at Redis key {self.key!r} were trimmed "
                f"before this reader read them (it continues at {entry_id})",
            )


def _apply_end(mux: StreamMux, doc: Dict[str, Any]) -> Optional[BaseException]:
    if doc["status"] == "failed":
        return _remote_error(doc.get("error"))
    if doc["status"] == "interrupted" and not mux._interrupted:
        interrupts = doc.get("interrupts") or []
        mux._interrupted = True
        mux._interrupts.extend(interrupts)
    return None


class _RemoteInfo:
    """Where an attached run reads from: its key and how far it got."""

    _source: _Source

    @property
    def key(self) -> str:
        """The Redis key of the run."""
        return self._source.key

    @property
    def last_seq(self) -> int:
        """The producer's seq of the last event this reader took in (resume after it)."""
        return self._source.last_seq


class _RemoteRun(_RemoteInfo, GraphRunStream):
    """A sync run stream over a published run (see ``attach``)."""

    def __init__(self, source: _Source, mux: StreamMux, flags: _Flags) -> None:
        self._source = source
        self._flags = flags
        GraphRunStream.__init__(self, None, mux, wire_pump=False)
        mux.bind_pump(self._pump_next)

    def _pump_next(self) -> bool:
        """One step: the buffered entries up to the next new subgraph handle.

        A step stops after an event that created a handle, so its consumer
        subscribes before the subgraph's events are pushed (as in a local run).
        """
        if self._exhausted:
            return False
        source = self._source
        held = source.take_held()
        if held is not None:  # met by the previous step, after its events
            self._end(held)
            return False
        if not source.buffer:
            try:
                source.fetch()
            except (AttachConnectionError, RunIdleError):
                raise  # the run stays open: read again to go on
            except Exception as exc:  # noqa: BLE001 - ends the run
                self._end(exc)
                return False
            if not source.buffer:
                return True
        flags = self._flags
        flags.new_handle = False
        mux = self._mux
        push = mux.push
        pushed = False
        while source.buffer:
            event, err = source.step_item(mux, pushed)
            if event is None:
                return True
            if event is _END:
                if err is None:
                    self._finish()
                else:
                    self._end(err)
                return False
            try:
                push(event)
            except Exception as exc:  # noqa: BLE001 - ends the run
                self._end(exc)
                return False
            pushed = True
            if flags.new_handle:
                break
        return True


class _AsyncRemoteRun(_RemoteInfo, AsyncGraphRunStream):
    """An async run stream over a published run (see ``aattach``)."""

    def __init__(self, source: _Source, mux: StreamMux, flags: _Flags) -> None:
        self._source = source
        self._flags = flags
        self._flight = _SingleFlight()
        self._fetching: Optional[asyncio.Task[Any]] = None
        self._aborting = False
        AsyncGraphRunStream.__init__(self, None, mux, wire_pump=False)
        mux.bind_apump(self._apump_next)

    async def _apump_next(self) -> bool:
        pump = self._pump
        if pump.exhausted:
            return False
        flight = self._flight
        if flight.busy:  # another consumer is stepping: its step may feed us
            await flight.wait()
            return not pump.exhausted
        flight.busy = True
        try:
            return await self._astep(pump, flight)
        finally:
            flight.release()

    async def _astep(self, pump: Any, flight: _SingleFlight) -> bool:
        if self._flags.new_handle or flight.yield_next:
            # Let consumers subscribe to what the last step handed out.  A new
            # subgraph handle gets a few loop turns: a consumer commonly hands
            # it to a task of its own (create_task / gather), which subscribes
            # only once it has started.
            turns = _HANDLE_TURNS if self._flags.new_handle else 1
            self._flags.new_handle = False
            flight.yield_next = False
            for _ in range(turns):
                await asyncio.sleep(0)
            if pump.exhausted:
                return False
        source = self._source
        mux = self._mux
        held = source.take_held()
        if held is not None:  # met by the previous step, after its events
            await pump.end(held)
            return False
        if not source.buffer:
            self._fetching = asyncio.current_task()
            try:
                await source.afetch()
            except (AttachConnectionError, RunIdleError):
                raise  # the run stays open: read again to go on
            except asyncio.CancelledError:
                if self._aborting:
                    uncancel = getattr(asyncio.current_task(), "uncancel", None)
                    if uncancel is not None:
                        uncancel()
                    return False
                raise  # the reader was cancelled: nothing consumed, nothing lost
            except Exception as exc:  # noqa: BLE001 - ends the run
                await pump.end(exc)
                return False
            finally:
                self._fetching = None
            if not source.buffer:
                return True
        flags = self._flags
        apush = mux.apush
        pushed = False
        while source.buffer:
            event, err = source.step_item(mux, pushed)
            if event is None:
                return True
            if event is _END:
                if err is None:
                    await pump.finish()
                else:
                    await pump.end(err)
                return False
            try:
                await apush(event)
            except Exception as exc:  # noqa: BLE001 - ends the run
                await pump.end(exc)
                return False
            pushed = True
            if flags.new_handle or pump.exhausted:
                break
        return True

    async def abort(self) -> None:
        """Stop reading: a consumer blocked in ``XREAD`` is released; projections end."""
        self._aborting = True
        task = self._fetching
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        await self._pump.abort()


def _check_attach_args(key: Any, after_seq: Any, count: Any, block: Any, wait_timeout: Any,
                       idle_timeout: Any) -> Tuple[str, int, int, float, float, Optional[float]]:
    key = _check_key(key)
    if isinstance(after_seq, bool) or not isinstance(after_seq, int):
        raise TypeError(f"after_seq must be an int >= 0, got {after_seq!r}")
    if after_seq < 0:
        raise ValueError(f"after_seq must be an int >= 0, got {after_seq!r}")
    count = _check_count("count", count, allow_none=False)
    block = _check_seconds("block", block, allow_none=False)
    wait_timeout = _check_seconds("wait_timeout", wait_timeout, allow_none=False, allow_zero=True)
    idle_timeout = _check_seconds("idle_timeout", idle_timeout)
    return key, after_seq, count, block, wait_timeout, idle_timeout  # type: ignore[return-value]


def attach(client: Any, key: str, *, after_seq: int = 0, count: int = 512,
           block: float = 1.0, wait_timeout: float = 10.0,
           idle_timeout: Optional[float] = None) -> GraphRunStream:
    """Attach to a published run: a sync run stream with the producer's projections.

    The run stream has ``values``, ``lifecycle``, ``subgraphs`` (handles),
    ``updates``, ``custom``, ``checkpoints``, ``debug``; iterating it yields the
    raw main log with the producer's ``seq``; ``output`` / ``interrupted`` /
    ``interrupts`` drive it to the end and re-raise the run's error (a builtin
    exception class as itself, another as ``RemoteRunError``).  Reading is
    driven by the caller's iteration (``XREAD BLOCK``), with no thread.

    Args:
        client: a ``redis.Redis``.
        key: the run's stream key.
        after_seq: yield the events after this seq (0: from the start).  A
            resumed reader gets subgraph handles only for subgraphs that start
            after it.
        count: entries per ``XREAD``.
        block: seconds one ``XREAD`` blocks before the reader checks the key.
        wait_timeout: seconds to wait for a key that does not exist yet; then
            the run fails with ``RunNotFoundError``.
        idle_timeout: seconds without any new entry (and no end entry) after
            which a read raises ``RunIdleError`` naming the key and the last
            seq: a producer that died without ending its run.  The run stays
            open (read again to wait another ``idle_timeout``, or attach anew
            with ``after_seq=run.last_seq``).  ``None`` (the default) waits
            as long as the run lasts.

    Errors while reading: trimmed history raises ``StreamLagError`` once (then
    the run continues at the oldest retained event); a lost connection raises
    ``AttachConnectionError`` naming the key (the run stays open: read again,
    or attach anew with ``after_seq=run.last_seq``); an entry that is not
    valid wire format fails the run with a ``ValueError`` naming the key and
    the entry id; ``idle_timeout`` raises ``RunIdleError`` (the run stays open).
    """
    key, after_seq, count, block, wait_timeout, idle_timeout = _check_attach_args(
        key, after_seq, count, block, wait_timeout, idle_timeout)
    if _is_async_client(client):
        raise TypeError("attach() needs a sync redis.Redis client; use aattach() with redis.asyncio")
    flags = _Flags()
    mux = StreamMux(factories=_remote_factories(flags), _assign_seq=False)
    return _RemoteRun(_Source(client, key, after_seq, count, block, wait_timeout, idle_timeout), mux, flags)


def aattach(client: Any, key: str, *, after_seq: int = 0, count: int = 512,
            block: float = 1.0, wait_timeout: float = 10.0,
            idle_timeout: Optional[float] = None) -> AsyncGraphRunStream:
    """Async twin of ``attach`` (``client`` a ``redis.asyncio.Redis``); no ``await`` needed.

    Several tasks may read projections at once (one ``XREAD`` in flight);
    ``await run.abort()`` releases a reader blocked in ``XREAD``.  A reader
    task cancelled mid-``XREAD`` loses nothing: the run stays as it was.
    """
    key, after_seq, count, block, wait_timeout, idle_timeout = _check_attach_args(
        key, after_seq, count, block, wait_timeout, idle_timeout)
    if not _is_async_client(client):
        raise TypeError("aattach() needs a redis.asyncio.Redis client; use attach() with redis.Redis")
    flags = _Flags()
    mux = StreamMux(factories=_remote_factories(flags), is_async=True, _assign_seq=False)
    return _AsyncRemoteRun(_Source(client, key, after_seq, count, block, wait_timeout, idle_timeout), mux, flags)
