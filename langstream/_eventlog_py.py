"""Pure-Python event log: ``SeqCounter``, ``EventLog`` and ``Cursor``.

This is the twin of the compiled ``langstream._eventlog_c`` backend and has the
same observable behaviour (see the "Event log contract" in DESIGN.md).  It is
used on PyPy, where no C compiler was found at install time, or when
``LANGSTREAM_NO_EXTENSIONS=1`` is set.  Type checkers read this module (see
``langstream.eventlog``), so its annotations are the public typing of both.

Implementation notes
--------------------
* Items live in one deque of (sequence number, item) addressed by *absolute*
  indices: ``_base`` is the absolute index of the oldest retained item,
  ``_tail`` the index the next stored item gets, and every cursor keeps the
  absolute index of the next item it will read.  The retained items are
  exactly those not yet read by the slowest open cursor.
* One lock per log guards every change of the stored items and of the
  cursor states; while a cursor is open, the sequence number is taken and the
  item stored under that lock, so storage order is sequence order.  No user
  code ever runs while the lock is held: references that the log lets go of
  (evicted or reclaimed items) are dropped after the lock is released, and
  ``request_more`` is called outside it.
* The lock is a ``threading.Lock`` on CPython and, on PyPy, a
  ``_TokenLock``: one token in a list, taken with ``pop`` and put back with
  ``append`` (a thread that finds it taken yields the GIL until it is
  back).  On PyPy 7.3 an uncontended round trip of it costs about 1 ns, of
  an ``RLock`` 14 ns and of a ``Lock`` 52 ns (its ``acquire`` reads the
  clock for its timeout); a push and a read take it once each, so on PyPy
  the token saves about a sixth of scenario S.  On CPython the ``Lock``'s
  C methods are cheaper than a Python-level class.  The one thing that can
  run on a thread while that thread holds the lock is a finalizer (the
  collector may run one at any allocation); ``Cursor.__del__`` never blocks
  and never takes the lock: when a non-blocking ``acquire`` fails (held by
  any thread, its own included) it hands its state over to the log
  (``_dead``) instead, so it never changes the log under a lock held by a
  method half-way through.  (No other finalizer of langstream touches a
  log; one of the user's that pushed to this very log is not supported: it
  would wait for its own thread forever, with either lock.)
* Lock-free fast paths.  Only single calls into built-in (C, or on PyPy
  interpreter-level) code are relied on to be atomic under the GIL; they run
  no Python code, so no other thread can run in the middle of one:
  - ``SeqCounter`` is an ``itertools.count``; its ``value`` is read from the
    count's ``repr``.
  - ``push`` with no open cursor (nothing to store) goes through the *gate*,
    ``zip(takewhile(not_, repeat(flag)), count)``: one ``next()`` on it checks
    that ``flag`` (a list) is still empty *and* takes the number, atomically.
    Opening the first cursor, ``close()`` and ``fail()`` append to ``flag``
    under the lock, which shuts that gate for good (``takewhile`` never
    resumes); releasing the last cursor of an open log builds a new gate.  So a
    lock-free push either took its number before a cursor opened (it is
    ordered before the open, nothing to store) or falls back to the lock.
  - ``last_seq`` of a log on its own counter is the counter's value; a log on
    a shared counter records its numbers with ``heapq.heappushpop`` on a
    one-item heap (CPython: one C call, an atomic running max) or, where
    ``_heapq`` is not compiled (PyPy), appends them to a list that is folded
    to its max now and then; ``last_seq`` is the max of that record.
  - ``cursor_count`` is the length of ``_live`` (one entry per open cursor).
  - ``Cursor.__next__`` on an open log with nothing unread returns to the
    pump without the lock: the read position never passes ``_tail`` and
    ``_tail`` is written (under the lock) only after the item is stored, so
    reading ``pos >= _tail`` then ``not _closed`` proves the cursor had
    nothing to read at the moment ``_tail`` was read.  ``peek_seq`` answers
    None the same way (``pos >= _tail``: nothing unread, closed or not).
    The converse check is only a hint: ``pos < _tail`` read without the lock
    may be stale when another thread reads through the same cursor, so the
    locked read re-checks, and when the item is gone waits for the next one.
* The log holds a cursor's *state* (position and lag), never the cursor
  itself, so a cursor that is dropped without ``close()`` is finalized by the
  garbage collector, which releases its hold.
"""

from __future__ import annotations

import operator
import sys
import threading
from time import sleep as _sleep
from collections import deque
from itertools import count, repeat, takewhile
from operator import not_
from typing import Any, Callable, Deque, Generic, List, Optional, Tuple, TypeVar

from langstream.errors import StreamLagError

__all__ = ["SeqCounter", "EventLog", "Cursor", "StreamLagError"]

T = TypeVar("T")


_MAXLEN_MAX = sys.maxsize


def _check_maxlen(maxlen: object) -> Optional[int]:
    """Validate ``maxlen`` (None or an int from 1 to ``sys.maxsize``, not a
    bool) and return it; both backends use this one check."""
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
    if value > _MAXLEN_MAX:
        raise ValueError(
            f"maxlen must be at most {_MAXLEN_MAX} (sys.maxsize) or None for an "
            f"unbounded log, got {maxlen!r}"
        )
    return value


def _check_exc(exc: object) -> BaseException:
    if not isinstance(exc, BaseException):
        raise TypeError(
            f"exc must be an exception instance, got {exc!r} "
            f"({type(exc).__name__})"
        )
    return exc


def _count_value(counter: "count[int]") -> int:
    """The last number an ``itertools.count(1)`` handed out (its repr is
    ``count(<next>)``; reading it is one C call)."""
    return int(repr(counter)[6:-1]) - 1


def _record_list(rec: List[int], seq: int) -> None:
    """Record ``seq`` in ``rec`` so that ``max(rec)`` is the largest number
    recorded (the portable twin of ``heappushpop`` on a one-item heap).

    ``append`` is atomic; the list is folded to its max every 64 items, under
    one module lock (the only thing that removes items), so the max is never
    absent and the list stays short."""
    rec.append(seq)
    if len(rec) > 64:
        with _fold_lock:
            n = len(rec)
            rec[0:n] = [max(rec[:n])]


_fold_lock = threading.Lock()


class _TokenLock:
    """A mutex made of one token in a list: ``acquire`` pops it, ``release``
    puts it back (PyPy's lock for the logs; see the module notes).

    ``list.pop`` and ``list.append`` are single interpreter-level calls,
    atomic under the GIL, so exactly one thread holds the token.  Taken
    uncontended it costs two list operations, which the JIT inlines, where a
    ``threading.RLock`` round trip costs about 14 ns.  A thread that finds
    the token taken yields the GIL with ``time.sleep(0)`` until it is back:
    the log's own holders never block, never wait for another thread and
    run no user code while they hold it, so the wait is as short as their
    critical section.  Like a ``threading.Lock``, it is not re-entrant and
    a non-blocking ``acquire`` fails while anyone holds it.
    """

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token = [True]

    def acquire(self, blocking: bool = True) -> bool:
        token = self._token
        try:
            token.pop()
        except IndexError:
            if not blocking:
                return False
            _await_token(token)
        return True

    def release(self) -> None:
        token = self._token
        if token:
            raise RuntimeError("release unlocked lock")
        token.append(True)

    def locked(self) -> bool:
        return not self._token

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def _await_token(token: List[bool]) -> None:
    """Yield the GIL until the token of a ``_TokenLock`` can be taken (its
    holder is running a short critical section on another thread)."""
    while True:
        _sleep(0)
        try:
            token.pop()
            return
        except IndexError:
            pass


# the lock of a log (see the module notes)
_new_lock = _TokenLock if sys.implementation.name == "pypy" else threading.Lock

try:  # CPython: a C function, atomic under the GIL (ints compare in C)
    from _heapq import heappushpop as _record
except ImportError:  # PyPy (pure-Python heapq): append and fold
    _record = _record_list


class SeqCounter:
    """A thread-safe source of sequence numbers: 1, 2, 3 ...

    Several logs built on one counter stamp their items from one sequence,
    so items of different logs can be ordered against each other.
    """

    __slots__ = ("_count", "_next", "__weakref__")

    def __init__(self) -> None:
        self._count = count(1)  # next() is one atomic C call
        self._next = self._count.__next__

    def next(self) -> int:
        """Hand out the next number (the first call returns 1)."""
        return self._next()

    @property
    def value(self) -> int:
        """The last number handed out (0 before the first ``next()``)."""
        return _count_value(self._count)

    def __repr__(self) -> str:
        return f"<SeqCounter value={self.value}>"


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
        "_count",
        "_cnext",
        "_rec",
        "_fast",
        "_flag",
        "_maxlen",
        "_items",
        "_base",
        "_tail",
        "_states",
        "_live",
        "_dead",
        "_closed",
        "_error",
        "_error_tb",
        "__weakref__",
    )

    def __init__(
        self, maxlen: Optional[int] = None, *, counter: Optional[SeqCounter] = None
    ) -> None:
        self._maxlen = _check_maxlen(maxlen)
        if counter is None:
            self._counter = SeqCounter()
            # every number of its own counter is one of its pushes:
            # ``last_seq`` is the counter's value, nothing to record
            self._rec: Optional[List[int]] = None
        elif isinstance(counter, SeqCounter):
            self._counter = counter
            self._rec = [0]  # running max of this log's numbers (see _record)
        else:
            raise TypeError(
                "counter must be None or a SeqCounter of the same backend "
                f"({__name__}), got {counter!r} ({type(counter).__name__})"
            )
        self._count = self._counter._count
        self._cnext = self._counter._next
        self._lock = _new_lock()
        self._items: Deque[Tuple[int, Any]] = deque()  # (seq, item)
        self._base = 0
        self._tail = 0  # == _base + len(_items), written after a store
        self._states: List[_CursorState] = []
        self._live: List[None] = []  # one entry per open cursor
        self._dead: List[_CursorState] = []  # states of finalized cursors
        self._closed = False
        self._error: Optional[BaseException] = None
        self._error_tb: Any = None  # its traceback when the log failed
        self._flag: List[None] = []
        self._fast: Optional[Callable[[], Any]] = None
        self._open_gate_locked()

    # -- writing -----------------------------------------------------------

    def push(self, item: T) -> int:
        """Stamp ``item`` with the next sequence number, store it, return it.

        With no open cursor the item is not stored, but the number is still
        consumed.  On a bounded log that is full, the oldest item is evicted.
        Raises ``RuntimeError`` if the log is closed.
        """
        fast = self._fast
        if fast is not None:  # no open cursor (a hint: the gate decides)
            try:
                seq = fast()[1]
            except StopIteration:  # a cursor opened, or the log closed
                pass
            else:
                rec = self._rec
                if rec is not None:
                    _record(rec, seq)
                return seq
        garbage = None
        lock = self._lock
        lock.acquire()  # (cheaper than ``with`` on CPython: no bound methods)
        try:
            if self._closed:
                raise RuntimeError("cannot push to a closed EventLog")
            if self._dead:
                garbage = self._reap_locked()
            seq = self._cnext()
            rec = self._rec
            if rec is not None:
                _record(rec, seq)
            if self._states:
                items = self._items
                items.append((seq, item))
                self._tail += 1
                maxlen = self._maxlen
                if maxlen is not None and len(items) > maxlen:
                    garbage = items.popleft()
                    base = self._base + 1
                    self._base = base
                    for st in self._states:
                        if st.pos < base:
                            st.pos = base
                            st.lag += 1
        finally:
            lock.release()
        del garbage  # dropped outside the lock: its finalizer may re-enter
        return seq

    def close(self) -> None:
        """Close the log: cursors read what is retained, then stop.

        Only the first of ``close()`` / ``fail()`` has an effect.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._shut_gate_locked()

    def fail(self, exc: BaseException) -> None:
        """Close the log with an error: cursors read what is retained, then
        raise ``exc`` (the same object on every later read).

        ``exc`` must be an exception instance (``TypeError`` otherwise).  Only
        the first of ``close()`` / ``fail()`` has an effect.
        """
        _check_exc(exc)
        with self._lock:
            if not self._closed:
                self._error = exc
                # every read re-raises ``exc`` from this traceback, so repeated
                # reads never grow it
                self._error_tb = exc.__traceback__
                self._closed = True
                self._shut_gate_locked()

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
        if self._dead:
            with self._lock:
                garbage = self._reap_locked()  # noqa: F841 (dropped after lock)
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
        rec = self._rec
        if rec is None:
            return _count_value(self._count)
        return max(rec)

    @property
    def cursor_count(self) -> int:
        """Number of open cursors."""
        return len(self._live)

    def __repr__(self) -> str:
        state = "failed" if self._error is not None else (
            "closed" if self._closed else "open"
        )
        return (
            f"<EventLog {state} maxlen={self._maxlen} len={len(self._items)} "
            f"last_seq={self.last_seq} cursors={len(self._live)}>"
        )

    # -- internals (call with the lock held) -------------------------------

    def _open_gate_locked(self) -> None:
        """Let pushes take numbers without the lock (no cursor, log open)."""
        flag: List[None] = []
        self._flag = flag
        self._fast = zip(takewhile(not_, repeat(flag)), self._count).__next__

    def _shut_gate_locked(self) -> None:
        """From now on every push takes the lock (until the gate reopens)."""
        if self._fast is not None:
            self._fast = None
            self._flag.append(None)  # the old gate's takewhile stops for good

    def _open_locked(self) -> _CursorState:
        if self._dead:
            self._reap_locked()  # nothing stored can be dropped by this
        self._shut_gate_locked()  # before the cursor exists
        st = _CursorState(self._tail)
        self._states.append(st)
        self._live.append(None)
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
        if not states and not self._closed:
            self._open_gate_locked()
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
        popleft = items.popleft
        for _ in range(drop):
            garbage.append(popleft())
        self._base += drop
        return garbage

    def _reap_locked(self) -> list:
        """Release the states of cursors finalized while the lock was busy
        (their ``_live`` entries are already gone)."""
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
        while True:
            # Nothing unread on an open log: no need for the lock (see the
            # module notes: pos <= _tail always, and lag > 0 implies pos < _tail).
            if st.pos >= log._tail and not log._closed:  # type: ignore[union-attr]
                if not self._pump():
                    raise StopIteration
                log = self._log
                if log is None:  # (closed from another thread meanwhile)
                    raise StopIteration
                st = self._st
            lock = log._lock
            lock.acquire()
            try:
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
                        return items[idx][1]
                    # Reading the oldest retained item frees its slot
                    # unless another cursor is still on it (only this one
                    # moved).
                    base = log._base
                    states = log._states
                    if len(states) > 1:
                        for other in states:
                            if other.pos == base:
                                return items[0][1]
                    log._base = base + 1
                    return items.popleft()[1]
                if log._closed:
                    if log._error is not None:
                        err = log._error.with_traceback(log._error_tb)
                        # the error's traceback keeps this frame: it must
                        # not keep the cursor alive (the C twin's frame
                        # holds no Python reference to it)
                        del self
                        raise err
                    raise StopIteration
            finally:
                lock.release()
            # (only when another thread read the item from this same cursor
            # between the check above and the lock: wait for the next one)

    def _pump(self) -> bool:
        """Call ``request_more`` until this cursor has something to read or
        its log closed (True), or it returns a false value first (False).

        (A method of its own, so that ``__next__`` loops back only in the
        rare case above: on PyPy a loop taken once per item would be
        compiled apart and entered through a call on every read.)
        """
        request_more = self._request_more
        if request_more is None:
            return False
        while True:
            more = request_more()
            # request_more may have closed this very cursor (as the C twin
            # does, re-read the state: a closed cursor only stops)
            log = self._log
            if log is None:
                return False
            if self._st.pos < log._tail or log._closed:  # type: ignore[union-attr]
                return True
            if not more:
                return False

    def peek_seq(self) -> Optional[int]:
        """Sequence number of the next unread item, or None."""
        log = self._log
        if log is None:
            return None
        st = self._st
        if st.pos >= log._tail:  # type: ignore[union-attr]
            return None  # nothing unread (no need for the lock, as in __next__)
        with log._lock:
            idx = st.pos - log._base  # type: ignore[union-attr]
            items = log._items
            return items[idx][0] if idx < len(items) else None

    @property
    def pending(self) -> int:
        """Number of unread items retained for this cursor."""
        log = self._log
        if log is None:
            return 0
        with log._lock:
            return log._tail - self._st.pos  # type: ignore[union-attr]

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
            log._live.pop()
            garbage = log._release_locked(st)  # type: ignore[arg-type]
        del garbage  # released after the lock

    def __del__(self) -> None:
        log = getattr(self, "_log", None)
        if log is None:
            return
        st = self._st
        self._log = None
        self._st = None
        log._live.pop()  # atomic: cursor_count is right at once
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
