"""Projections: ``StreamChannel``, a single-subscriber view on an event log.

A transformer pushes items into a channel; the consumer iterates it with
``for`` (sync run) or ``async for`` (async run).  Each channel owns one
``EventLog``.  Pushes made while nobody subscribes are not stored (lazy
subscribe), and an item is released as soon as every reader has read it.
"""

from __future__ import annotations

import asyncio
import copyreg
import weakref
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar,
)

from langstream import eventlog as _el

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import AsyncIterator, Awaitable, Iterator

__all__ = ["StreamChannel"]

T = TypeVar("T")


def _slotted_reduce(obj: Any) -> Tuple[Any, ...]:
    """``obj.__reduce_ex__()`` as for a plain slotted object: made anew from
    its class, then given its instance dict and every slot it has set.

    The public classes over a compiled core (``StreamChannel``,
    ``StreamMux``) use it: compiled, the core's attributes are not slots,
    and the reduction Cython would generate knows only those, so a copy
    (``copy.copy``) would lose the public class's own; this way a copy is
    the same compiled or not.  A subclass's own ``__reduce__`` is honoured,
    as ``object.__reduce_ex__`` honours it."""
    if type(obj).__reduce__ is not object.__reduce__:
        return obj.__reduce__()  # type: ignore[no-any-return]
    slots: Dict[str, Any] = {}
    for klass in type(obj).__mro__:
        names = klass.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name in ("__dict__", "__weakref__") or name in slots:
                continue
            try:
                slots[name] = getattr(obj, name)
            except AttributeError:  # (never set)
                pass
    return (copyreg.__newobj__, (type(obj),),
            (getattr(obj, "__dict__", None) or None, slots or None))


def _check_n(n: Any, method: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{method}() n must be an int >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"{method}() n must be an int >= 1, got {n!r}")
    return n


class _Backpressure:
    """Shared by a root mux and its children: bounded logs and the waiting pump."""

    __slots__ = ("channels", "waiter", "readers")

    def __init__(self) -> None:
        # (label, channel) for every channel whose log has a maxlen
        self.channels: list[tuple[str, StreamChannel[Any]]] = []
        # the future the async pump awaits while a log is full
        self.waiter: Any = None
        # weak references to the async readers of those channels (a list
        # from the first one on: most runs have none)
        self.readers: Sequence[Any] = ()

    def track(self, reader: Any) -> None:
        """Remember an async reader of a bounded channel (weakly); dead
        entries are pruned as the list grows, so it stays bounded by the
        readers alive."""
        readers = self.readers
        if type(readers) is not list:
            readers = self.readers = []
        readers.append(weakref.ref(reader))
        if len(readers) >= 32 and len(readers) & (len(readers) - 1) == 0:
            readers[:] = [ref for ref in readers if ref() is not None]

    def release_stuck(self) -> bool:
        """Release the readers that can no longer read and hold a bounded
        log full; True if any was released.

        The rule: a reader whose consuming task has ended (done or
        cancelled), or that was cancelled while it waited for an item and
        has not read since, keeps its place until the pump needs room in a
        log it holds full; then it lets go of its subscription, so it cannot
        stall the run.  Its next read (if any) raises ``RuntimeError``.
        """
        released = False
        keep = []
        for ref in self.readers:
            reader = ref()
            if reader is None or reader._state == _RELEASED or reader._cursor.closed:
                continue
            keep.append(ref)
            task = reader._task
            if not (reader._state == _CANCELLED or (task is not None and task.done())):
                continue
            limit = reader._channel._limit
            if limit is not None and reader._cursor.pending >= limit:
                reader._release_stuck()
                released = True
        self.readers = keep
        return released

    def full(self) -> Optional[Tuple[str, "StreamChannel[Any]"]]:
        """Return the first subscribed, open log that has no room, if any."""
        closed = False
        for entry in self.channels:
            ch = entry[1]
            log = ch._log
            if log.closed:
                closed = True
                continue
            if len(log) >= ch._limit:
                return entry
        if closed:
            self.channels[:] = [e for e in self.channels if not e[1]._log.closed]
        return None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


_READING, _CANCELLED, _RELEASED = 0, 1, 2
_NO_STEP = object()  # (``_AsyncChannelIterator._step``: no pump is it)

# The log of every unbounded channel no mux has bound yet, one per event-log
# class.  Nothing can read a channel before it is bound (subscribing raises),
# so what is pushed to it then is never stored and needs no log of its own:
# the mux gives the channel its log when it binds it (``_bind_mux``), and
# ``close``/``fail``/a subscription before that give it a private one.  This
# spares an event log per projection (a child mux per subgraph binds five).
# Never closed, never read: no cursor is ever opened on it.
_UNBOUND_LOGS: Dict[Any, Any] = {}


def _unbound_log(log_type: Any) -> Any:
    log = _UNBOUND_LOGS[log_type] = log_type()
    return log


class _AsyncChannelIterator(Generic[T]):
    """``async for`` over one cursor of a channel's log, pumping when empty."""

    __slots__ = ("_cursor", "_channel", "_log", "_bp", "_state",
                 "_task", "_more", "_for_me", "_step", "_call", "__weakref__")

    def __init__(self, channel: StreamChannel[T]) -> None:
        self._channel = channel
        self._log = channel._log
        self._bp = channel._bp  # fixed when the mux adopted the channel
        self._cursor = channel._log.cursor()
        # the pump as last seen, and whether it takes this reader (a run's
        # own pump does: it then wakes this reader only for its own data)
        self._more: Any = None
        self._for_me = False
        self._adopt(channel._arequest_more)
        # _READING; _CANCELLED: cancelled while waiting, not read since;
        # _RELEASED: it let go of its subscription (see release_stuck)
        self._state = _READING
        self._task: Any = None  # the task that last waited on it (bounded logs)
        if self._bp is not None:
            try:
                self._task = asyncio.current_task()
            except RuntimeError:  # no running loop
                pass
            self._bp.track(self)

    def _release_stuck(self) -> None:
        self._state = _RELEASED
        self._cursor.close()

    def __aiter__(self) -> _AsyncChannelIterator[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        """The next item, pumping the run while there is none.

        A reader of a bounded run that was cancelled while it waited here (or
        whose task has ended) keeps its place until the pump needs room in a
        log it holds full; then it releases its subscription (so it cannot
        stall the run), and its next read raises ``RuntimeError`` (items were
        not kept for it).  Reading again before that keeps it subscribed.

        A run's own pump reads for the reader (``_AsyncPump.step(reader)``
        returns the reader's next item): an unbounded reader awaits that step
        directly, one coroutine per item (on the C event log the step's
        compiled twin, ``_pump_c.AsyncReaderStep``: no coroutine); a bounded
        one goes through ``_anext``, which ends in the same step (and any
        other pump there).
        """
        if self._step is self._channel._arequest_more:
            return self._call(self)  # type: ignore[no-any-return]
        return self._anext()

    async def _anext(self) -> T:
        """``__anext__``: the general case."""
        if self._state:
            if self._state == _RELEASED:
                raise RuntimeError(
                    f"this reader of {self._channel!r} was cancelled while it waited "
                    "(or its task ended), and released its subscription when the run "
                    f"needed room in it (maxlen={self._channel._limit}): the items "
                    "pushed since were not kept for it"
                )
            self._state = _READING
        cursor = self._cursor
        while True:
            # An async-bound channel's log is unbounded (the pump applies
            # backpressure instead), so a reader never lags: ``pending`` tells
            # whether ``next`` has an item, without raising StopIteration.
            if cursor.pending:
                return self._take()
            if self._log.closed:
                self._ended()
            more = self._channel._arequest_more
            if more is None:
                raise StopAsyncIteration
            if more is not self._more:
                self._adopt(more)
            if self._for_me:  # the pump reads for this reader (see __anext__)
                if self._bp is None:
                    return await more(self)  # type: ignore[no-any-return]
                self._task = asyncio.current_task()
                try:
                    return await more(self)  # type: ignore[no-any-return]
                except asyncio.CancelledError:
                    self._state = _CANCELLED
                    raise
            if self._bp is None:
                produced = await more()
            else:
                self._task = asyncio.current_task()
                try:
                    produced = await more()
                except asyncio.CancelledError:
                    self._state = _CANCELLED
                    raise
            if not produced and not cursor.pending and not self._log.closed:
                raise StopAsyncIteration

    def _adopt(self, more: Any) -> None:
        """Remember the pump ``more``, and whether it reads for this reader.

        ``_step`` is the pump that ``__anext__`` hands the reader to directly:
        one that reads for it, when the reader is unbounded (then it is never
        cancelled into another state nor released: see ``_Backpressure``).
        """
        self._more = more
        pump = getattr(more, "__self__", None)
        self._for_me = getattr(pump, "_steps_for_readers", False) is True
        self._step = more if self._for_me and self._bp is None else _NO_STEP
        # what ``__anext__`` calls with the reader: the pump's compiled
        # reader step where it has one, else its step
        steps = pump.reader_steps() if self._step is more else None
        self._call = more if steps is None else steps

    def _take(self) -> T:
        """The pending item (``cursor.pending`` is true)."""
        item = next(self._cursor)
        if self._bp is not None:
            self._bp.wake()
        return item  # type: ignore[no-any-return]

    def _ended(self, end: Any = None) -> Any:
        """The log is closed and drained: raise its error, else
        StopAsyncIteration, or return ``end`` when one is given (the marker
        of the compiled reader step, which raises it itself: see
        ``_AsyncPump.step``)."""
        try:
            next(self._cursor)  # the log's error, or the end
        except StopIteration:
            pass
        if end is not None:
            return end
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: release this reader's hold on the log."""
        self._cursor.close()
        if self._channel._bp is not None:
            self._channel._bp.wake()


# the definition of ``_AsyncChannelIterator.__anext__`` (a compiled twin may
# stand in for it on the class, see ``_set_anext``)
_PY_ANEXT = _AsyncChannelIterator.__anext__


def _set_anext(anext: Any) -> None:
    """Called with the compiled twin of ``_AsyncChannelIterator.__anext__``
    (``_pump_c.reader_anext``, by ``_pump_c.install_reader_anext`` when
    ``langstream.run_stream`` uses the compiled pump; ``_PY_ANEXT`` puts the
    definition back)."""
    _AsyncChannelIterator.__anext__ = anext  # type: ignore[method-assign]


class _ChannelCore:
    """What ``StreamChannel`` is made of: the channel's state and every method.

    A base of its own so that, compiled, it is an extension type
    (``channel.pxd`` declares its attributes: its methods read and write
    them in the instance instead of looking them up) while ``StreamChannel``
    itself stays a plain class: generic, patchable, subclassable, with an
    instance dict.  Only ``StreamChannel`` derives from it.
    """

    # every attribute the class sets is a slot (here, or ``name`` in
    # ``StreamChannel``): a channel per projection of every child mux is
    # made without an instance dict, and the compiled reader reads
    # ``_arequest_more`` (every async read) in place
    __slots__ = ("_maxlen", "_log", "_limit", "_is_async", "_subscribed",
                 "_request_more", "_arequest_more", "_wired", "_mux", "_bp")

    def __reduce_ex__(self, protocol: Any) -> Tuple[Any, ...]:
        return _slotted_reduce(self)  # (a copy keeps ``name`` too: see there)

    def _setup(self, maxlen: Optional[int]) -> None:
        """``StreamChannel.__init__`` after the name (here, so that compiled
        it sets the attributes in the instance)."""
        self._maxlen = maxlen
        if maxlen is None:
            log = _UNBOUND_LOGS.get(_el.EventLog)
            self._log = log if log is not None else _unbound_log(_el.EventLog)
        else:
            self._log = _el.EventLog(maxlen)  # validates maxlen
        self._limit: Optional[int] = maxlen
        self._is_async: Optional[bool] = None
        self._subscribed = False
        self._request_more: Optional[Callable[[], bool]] = None
        self._arequest_more: Optional[Callable[[], Awaitable[bool]]] = None
        # the method a push is forwarded to the main log as (by ``_mux``)
        self._wired: Optional[str] = None
        self._mux: Any = None
        self._bp: Optional[_Backpressure] = None

    # ------------------------------------------------------------------ state

    @property
    def maxlen(self) -> Optional[int]:
        """The bound of this channel (its own, or the mux's once bound)."""
        return self._limit

    @property
    def closed(self) -> bool:
        """True once the run has ended (closed or failed)."""
        return self._log.closed

    @property
    def error(self) -> Optional[BaseException]:
        """The error the channel was failed with, or ``None``."""
        return self._log.error

    @property
    def _closed(self) -> bool:
        return self._log.closed

    @property
    def _error(self) -> Optional[BaseException]:
        return self._log.error

    def __repr__(self) -> str:
        state = "failed" if self._log.error is not None else (
            "closed" if self._log.closed else "open")
        mode = {None: "unbound", True: "async", False: "sync"}[self._is_async]
        return f"<StreamChannel name={self.name!r} {mode} {state} maxlen={self._limit}>"

    # ---------------------------------------------------------------- binding

    def _bind(self, *, is_async: bool) -> None:
        """Fix the iteration mode (called once by the mux)."""
        if self._is_async is not None:
            raise RuntimeError("StreamChannel is already bound")
        self._is_async = bool(is_async)

    def _bind_mux(self, mux: Any) -> None:
        """Attach to a mux: share its counter and inherit its ``maxlen``."""
        self._bind_to(mux, self._is_async, mux.maxlen, mux._shared.counter)

    def _bind_to(self, mux: Any, is_async: Optional[bool], maxlen: Optional[int],
                 counter: Any) -> Optional[int]:
        """Set the iteration mode, then attach to ``mux`` (its ``maxlen`` and
        sequence ``counter``); returns the channel's bound.  ``_bind_mux``
        is this with the mode already set; the mux calls it directly for a
        plain ``StreamChannel`` no one has bound yet (compiled, it sets the
        attributes in the instance: a child mux per subgraph binds five)."""
        self._is_async = is_async
        self._mux = mux
        limit = self._maxlen if self._maxlen is not None else maxlen
        self._limit = limit
        log = self._log
        if log.cursor_count == 0 and not log.closed:
            # On the async lane the pump applies backpressure before a log can
            # overflow, so the log itself is unbounded and never evicts.
            self._log = _el.EventLog(None if is_async else limit, counter=counter)
        return limit

    def _wire(self, method: str) -> None:
        """Forward every push to the main log of the channel's mux, as a
        ``method`` event (called by the mux that bound the channel)."""
        self._wired = method

    # --------------------------------------------------------------- producer

    def push(self, item: T) -> None:
        """Append ``item`` for the subscriber (if any) and auto-forward it.

        A closed channel with no subscriber keeps nothing, but still
        auto-forwards (as LangGraph's does): the main log loses nothing.

        Raises:
            RuntimeError: the channel is closed and has a subscriber.
        """
        log = self._log
        if log.closed:
            if log.cursor_count:
                raise RuntimeError(
                    f"Cannot push to a closed StreamChannel (name={self.name!r})"
                )
            if self._wired is not None:
                self._mux._forward(self._wired, item)
            return
        log.push(item)
        if self._wired is not None:
            self._mux._forward(self._wired, item)

    def _own_log(self) -> None:
        """Give a channel no mux has bound yet a log of its own (see
        ``_UNBOUND_LOGS``) before it changes state."""
        if self._log is _UNBOUND_LOGS.get(type(self._log)):
            self._log = _el.EventLog(self._maxlen)

    def close(self) -> None:
        """Mark the channel complete; the subscriber drains what is left."""
        if self._is_async is None:
            self._own_log()
        self._log.close()
        if self._bp is not None:
            self._bp.wake()

    def fail(self, err: BaseException) -> None:
        """Fail the channel: the subscriber drains what is left, then gets ``err``."""
        if self._is_async is None:
            self._own_log()
        self._log.fail(err)
        if self._bp is not None:
            self._bp.wake()

    # ---------------------------------------------------------- subscription

    def _subscribe(self, is_async: bool, fan_out: str) -> None:
        if self._is_async is None:
            raise TypeError(
                "StreamChannel has not been bound yet: register its transformer "
                "with a StreamMux first."
            )
        if self._is_async and not is_async:
            raise TypeError(
                "This StreamChannel is bound to async mode (an async run): "
                "use 'async for' instead."
            )
        if not self._is_async and is_async:
            raise TypeError(
                "This StreamChannel is bound to sync mode (a sync run): "
                "use 'for' instead."
            )
        if self._subscribed:
            named = f" {self.name!r}" if self.name else ""
            raise RuntimeError(
                f"StreamChannel{named} already has a subscriber; "
                f"use .{fan_out}(n) for fan-out."
            )
        self._own_log()  # (bound without a mux's log: ``_bind`` alone)
        self._subscribed = True

    def tee(self, n: int = 2) -> Tuple[Iterator[T], ...]:
        """Subscribe and return ``n`` independent readers of every item.

        The branches are cursors on the one log (no per-branch copy); an
        item is released once every branch has read it.

        Raises:
            ValueError / TypeError: ``n`` is not an int >= 1.
            TypeError / RuntimeError: as for ``iter()``.
        """
        _check_n(n, "tee")
        self._subscribe(False, "tee")
        log = self._log
        pump = self._request_more
        return tuple(log.cursor(pump) for _ in range(n))

    def atee(self, n: int = 2) -> Tuple[AsyncIterator[T], ...]:
        """Async ``tee``: ``n`` independent async readers of every item."""
        _check_n(n, "atee")
        self._subscribe(True, "atee")
        return tuple(_AsyncChannelIterator(self) for _ in range(n))


class StreamChannel(_ChannelCore, Generic[T]):
    """A single-subscriber projection backed by an ``EventLog``.

    Args:
        name: When set, the owning ``StreamMux`` forwards every ``push`` to
            its main log as a protocol event whose method is ``name`` (for a
            native transformer) or ``custom:name`` (any other transformer).
            Without a name the channel is local to in-process consumers.
        maxlen: ``None`` (default: the mux's ``maxlen``) or an int >= 1.  On
            a sync run a reader that falls more than ``maxlen`` items behind
            gets ``StreamLagError``; on an async run the pump waits for the
            reader instead (backpressure).

    Raises:
        ValueError / TypeError: ``maxlen`` is not ``None`` or an int >= 1.

    Iterate it once (``for`` on a sync run, ``async for`` on an async
    run); a second subscriber raises ``RuntimeError``: use ``tee(n)`` /
    ``atee(n)`` for fan-out.  The mux closes or fails the channel when the
    run ends.
    """

    # ``name`` is public (a subclass may redefine it); the rest of the state
    # is the core's; a ``__dict__`` stays for attributes of the user's own
    __slots__ = ("name", "__dict__", "__weakref__")

    def __init__(self, name: Optional[str] = None, *, maxlen: Optional[int] = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"StreamChannel name must be a str or None, got {name!r}")
        self.name = name
        self._setup(maxlen)

    # (the entry points of iteration are the plain class's own: an extension
    # type's ``__iter__`` is a slot wrapper, with no signature to inspect)
    def __iter__(self) -> Iterator[T]:
        """Subscribe (once) and return a reader that pumps the run when empty.

        Raises:
            TypeError: the channel is unbound or bound to an async run.
            RuntimeError: the channel already has a subscriber.
        """
        self._subscribe(False, "tee")
        return self._log.cursor(self._request_more)

    def __aiter__(self) -> AsyncIterator[T]:
        """Subscribe (once) and return an async reader that pumps when empty.

        Raises:
            TypeError: the channel is unbound or bound to a sync run.
            RuntimeError: the channel already has a subscriber.
        """
        self._subscribe(True, "atee")
        return _AsyncChannelIterator(self)
