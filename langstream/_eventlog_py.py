"""Pure-Python event log: ``SeqCounter``, ``EventLog`` and ``Cursor``.

This is the twin of the compiled ``langstream._eventlog_c`` backend and has the
same observable behaviour (see the "Event log contract" in DESIGN.md).  It is
used on PyPy, where no C compiler was found at install time, or when
``LANGSTREAM_NO_EXTENSIONS=1`` is set.  Type checkers read this module (see
``langstream.eventlog``), so its annotations are the public typing of both.

Implementation notes
--------------------
* Items live in two deques (item, sequence number) addressed by *absolute*
  indices: ``_base`` is the absolute index of the oldest retained item, and
  every cursor keeps the absolute index of the next item it will read.  The
  retained items are exactly those not yet read by the slowest open cursor.
* One ``threading.Lock`` per log guards every state change; the sequence
  number is taken and the item stored under the same lock, so storage order is
  sequence order.  No user code ever runs while the lock is held: references
  that the log lets go of (evicted or reclaimed items) are dropped after the
  lock is released, and ``request_more`` is called outside it.
* The log holds a cursor's *state* (position and lag), never the cursor
  itself, so a cursor that is dropped without ``close()`` is finalized by the
  garbage collector, which releases its hold.
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from typing import Any, Callable, Deque, Generic, List, Optional, TypeVar

from langstream.errors import StreamLagError

__all__ = ["SeqCounter", "EventLog", "Cursor", "StreamLagError"]

T = TypeVar("T")


def _check_maxlen(maxlen: object) -> Optional[int]:
    """Validate ``maxlen`` (None or an int >= 1, not a bool) and return it."""
    if maxlen is None:
        return None
    if isinstance(maxlen, bool):
        raise TypeError(
            f"maxlen must be a positive int or None (an int >= 1), got {maxlen!r} (a bool)"
        )
    try:
        value = operator.index(maxlen)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"maxlen must be a positive int or None (an int >= 1), got {maxlen!r} "
            f"({type(maxlen).__name__})"
        ) from None
    if value < 1:
        raise ValueError(f"maxlen must be a positive int or None (an int >= 1), got {maxlen!r}")
    return value


def _check_exc(exc: object) -> BaseException:
    if not isinstance(exc, BaseException):
        raise TypeError(
            f"exc must be an exception instance, got {exc!r} "
            f"({type(exc).__name__})"
        )
    return exc


class SeqCounter:
    """A thread-safe source of sequence numbers: 1, 2, 3 ...

    Several logs built on one counter stamp their items from one sequence,
    so items of different logs can be ordered against each other.
    """

    __slots__ = ("_lock", "_value", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def next(self) -> int:
        """Hand out the next number (the first call returns 1)."""
        with self._lock:
            value = self._value + 1
            self._value = value
        return value

    @property
    def value(self) -> int:
        """The last number handed out (0 before the first ``next()``)."""
        return self._value

    def __repr__(self) -> str:
        return f"<SeqCounter value={self._value}>"


class _CursorState:
    """What the log knows about one open cursor (never the cursor itself)."""

    __slots__ = ("pos", "lag")

    def __init__(self, pos: int) -> None:
        self.pos = pos  # absolute index of the next item to read
        self.lag = 0  # items evicted before this cursor read them


class EventLog(Generic[T]):
    """An append-only log of items, each stamped with a sequence number.

    ``maxlen`` is None (unbounded) or an int >= 1: the most items the log
    keeps unread by its slowest cursor; beyond that the oldest is evicted and
    the cursors that missed it raise :class:`StreamLagError` on their next
    read.  ``counter`` is a :class:`SeqCounter` shared with other logs (by
    default the log has its own sequence).

    Items are stored only while at least one cursor is open (lazy subscribe),
    and each is released as soon as every open cursor has read it.
    """

    __slots__ = (
        "_lock",
        "_counter",
        "_own_counter",
        "_maxlen",
        "_items",
        "_seqs",
        "_base",
        "_states",
        "_dead",
        "_closed",
        "_error",
        "_last_seq",
        "__weakref__",
    )

    def __init__(
        self, maxlen: Optional[int] = None, *, counter: Optional[SeqCounter] = None
    ) -> None:
        self._maxlen = _check_maxlen(maxlen)
        if counter is None:
            self._counter = SeqCounter()
            self._own_counter = True
        elif isinstance(counter, SeqCounter):
            self._counter = counter
            self._own_counter = False
        else:
            raise TypeError(
                "counter must be None or a SeqCounter of the same backend "
                f"({__name__}), got {counter!r} ({type(counter).__name__})"
            )
        self._lock = threading.Lock()
        self._items: Deque[Any] = deque()
        self._seqs: Deque[int] = deque()
        self._base = 0
        self._states: List[_CursorState] = []
        self._dead: List[_CursorState] = []  # states of finalized cursors
        self._closed = False
        self._error: Optional[BaseException] = None
        self._last_seq = 0

    # -- writing -----------------------------------------------------------

    def push(self, item: T) -> int:
        """Stamp ``item`` with the next sequence number, store it, return it.

        With no open cursor the item is not stored, but the number is still
        consumed.  On a bounded log that is full, the oldest item is evicted.
        Raises ``RuntimeError`` if the log is closed.
        """
        garbage = None
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot push to a closed EventLog")
            if self._dead:
                garbage = self._reap_locked()
            if self._own_counter:
                counter = self._counter
                seq = counter._value + 1
                counter._value = seq
            else:
                seq = self._counter.next()
            self._last_seq = seq
            if self._states:
                items = self._items
                items.append(item)
                self._seqs.append(seq)
                maxlen = self._maxlen
                if maxlen is not None and len(items) > maxlen:
                    garbage = items.popleft()
                    self._seqs.popleft()
                    base = self._base + 1
                    self._base = base
                    for st in self._states:
                        if st.pos < base:
                            st.pos = base
                            st.lag += 1
        del garbage  # dropped outside the lock: its finalizer may re-enter
        return seq

    def close(self) -> None:
        """Close the log: cursors read what is retained, then stop.

        Only the first of ``close()`` / ``fail()`` has an effect.
        """
        with self._lock:
            if not self._closed:
                self._closed = True

    def fail(self, exc: BaseException) -> None:
        """Close the log with an error: cursors read what is retained, then
        raise ``exc`` (the same object on every later read).

        ``exc`` must be an exception instance (``TypeError`` otherwise).  Only
        the first of ``close()`` / ``fail()`` has an effect.
        """
        _check_exc(exc)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._error = exc

    # -- reading -----------------------------------------------------------

    def cursor(
        self, request_more: Optional[Callable[[], Any]] = None
    ) -> "Cursor[T]":
        """Open a reader positioned at the next push.

        ``request_more`` is the pump: called when the cursor finds nothing to
        read on an open log, it should produce items (push them) and return a
        true value while it produced something.  Without it, reading an empty
        open log raises ``StopIteration`` at once.
        """
        return Cursor(self, request_more)

    # -- introspection -----------------------------------------------------

    def __len__(self) -> int:
        """Number of retained items (unread by the slowest open cursor)."""
        return len(self._items)

    @property
    def maxlen(self) -> Optional[int]:
        """The bound on retained items, or None when unbounded."""
        return self._maxlen

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``fail()`` was called."""
        return self._closed

    @property
    def error(self) -> Optional[BaseException]:
        """The exception given to ``fail()``, or None."""
        return self._error

    @property
    def last_seq(self) -> int:
        """Sequence number of the most recent push to this log (0 before)."""
        return self._last_seq

    @property
    def cursor_count(self) -> int:
        """Number of open cursors."""
        with self._lock:
            if self._dead:
                garbage = self._reap_locked()  # noqa: F841 (dropped after lock)
            return len(self._states)

    def __repr__(self) -> str:
        state = "failed" if self._error is not None else (
            "closed" if self._closed else "open"
        )
        return (
            f"<EventLog {state} maxlen={self._maxlen} len={len(self._items)} "
            f"last_seq={self._last_seq} cursors={len(self._states)}>"
        )

    # -- internals (call with the lock held) -------------------------------

    def _open_locked(self) -> _CursorState:
        if self._dead:
            self._reap_locked()  # nothing stored can be dropped by this
        st = _CursorState(self._base + len(self._items))
        self._states.append(st)
        return st

    def _release_locked(self, st: _CursorState) -> list:
        """Forget cursor state ``st``; return the items no cursor needs."""
        states = self._states
        for i, other in enumerate(states):
            if other is st:
                del states[i]
                break
        else:
            return []
        return self._reclaim_locked()

    def _reclaim_locked(self) -> list:
        """Drop items every open cursor has read; return them (to be released
        by the caller after the lock)."""
        items = self._items
        if not items:
            return []
        states = self._states
        if states:
            drop = min(s.pos for s in states) - self._base
        else:
            drop = len(items)
        if drop <= 0:
            return []
        garbage = []
        seqs = self._seqs
        popleft = items.popleft
        for _ in range(drop):
            garbage.append(popleft())
            seqs.popleft()
        self._base += drop
        return garbage

    def _reap_locked(self) -> list:
        """Release the states of cursors finalized while the lock was busy."""
        dead = self._dead
        garbage: list = []
        while dead:
            garbage.extend(self._release_locked(dead.pop()))
        return garbage


class Cursor(Generic[T]):
    """An iterator over the items pushed to an :class:`EventLog` after it was
    opened, in push order.

    Create one with :meth:`EventLog.cursor`.  ``close()`` (or garbage
    collection of the cursor) releases its hold on the log's items.
    """

    __slots__ = ("_log", "_st", "_request_more", "__weakref__")

    def __init__(
        self, log: EventLog[T], request_more: Optional[Callable[[], Any]] = None
    ) -> None:
        if not isinstance(log, EventLog):
            raise TypeError(
                f"log must be an EventLog of the same backend ({__name__}), "
                f"got {log!r} ({type(log).__name__})"
            )
        if request_more is not None and not callable(request_more):
            raise TypeError(
                f"request_more must be None or a callable, got {request_more!r}"
            )
        self._request_more = request_more
        with log._lock:
            self._st: Optional[_CursorState] = log._open_locked()
        self._log: Optional[EventLog[T]] = log

    def __iter__(self) -> "Cursor[T]":
        return self

    def __next__(self) -> T:
        """Return the next unread item.

        Raises :class:`StreamLagError` once if items were evicted before this
        cursor read them (the next call returns the oldest retained item).  On
        an empty open log, calls ``request_more`` until an item arrives, the
        log closes, or it returns a false value; with still nothing to read,
        raises ``StopIteration`` (a later call may return newer items).  On a
        closed, drained log raises ``StopIteration`` or the log's error.
        """
        log = self._log
        if log is None:
            raise StopIteration
        st = self._st
        lock = log._lock
        more = True
        while True:
            with lock:
                if log._dead:
                    garbage = log._reap_locked()  # noqa: F841 (after lock)
                if st.lag:  # type: ignore[union-attr]
                    missed = st.lag  # type: ignore[union-attr]
                    st.lag = 0  # type: ignore[union-attr]
                    raise StreamLagError(missed)
                items = log._items
                idx = st.pos - log._base  # type: ignore[union-attr]
                if idx < len(items):
                    st.pos += 1  # type: ignore[union-attr]
                    if idx:
                        return items[idx]
                    # Reading the oldest retained item frees its slot unless
                    # another cursor is still on it (only this one moved).
                    base = log._base
                    states = log._states
                    if len(states) > 1:
                        for other in states:
                            if other.pos == base:
                                return items[0]
                    log._seqs.popleft()
                    log._base = base + 1
                    return items.popleft()
                if log._closed:
                    if log._error is not None:
                        raise log._error
                    raise StopIteration
            request_more = self._request_more
            if request_more is None or not more:
                raise StopIteration
            more = request_more()

    def peek_seq(self) -> Optional[int]:
        """Sequence number of the next unread item, or None."""
        log = self._log
        if log is None:
            return None
        with log._lock:
            idx = self._st.pos - log._base  # type: ignore[union-attr]
            seqs = log._seqs
            return seqs[idx] if idx < len(seqs) else None

    @property
    def pending(self) -> int:
        """Number of unread items retained for this cursor."""
        log = self._log
        if log is None:
            return 0
        with log._lock:
            return log._base + len(log._items) - self._st.pos  # type: ignore[union-attr]

    @property
    def closed(self) -> bool:
        """True once this cursor was closed."""
        return self._log is None

    def close(self) -> None:
        """Release this cursor's hold on the log (idempotent).  Items that only
        it still needed are dropped; later reads raise ``StopIteration``."""
        log = self._log
        if log is None:
            return
        st = self._st
        self._log = None
        self._st = None
        with log._lock:
            garbage = log._release_locked(st)  # type: ignore[arg-type]
        del garbage  # released after the lock

    def __del__(self) -> None:
        log = getattr(self, "_log", None)
        if log is None:
            return
        st = self._st
        self._log = None
        self._st = None
        # The collector may run this while this very thread holds the lock
        # (e.g. inside push()); never block here: hand over to the log then.
        lock = log._lock
        if lock.acquire(False):
            try:
                garbage = log._release_locked(st)  # noqa: F841
            finally:
                lock.release()
        else:
            log._dead.append(st)

    def __repr__(self) -> str:
        if self._log is None:
            return "<Cursor closed>"
        return f"<Cursor pending={self.pending} log={self._log!r}>"
