# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled event log: ``SeqCounter``, ``EventLog`` and ``Cursor``.

Cython classes over the C ring buffer of ``csrc/ring.c``; same observable
behaviour as the pure-Python twin ``langstream._eventlog_py`` (see DESIGN.md,
"Event log contract").  The ring stores borrowed ``PyObject *`` pointers; this
module owns the references: it INCREFs an item when the ring stores it and
DECREFs it when the ring hands it back (evicted, reclaimed, or the log is
freed), always after the ring is consistent again, because a DECREF may run
arbitrary Python code that re-enters the log.  No method releases the GIL or
calls Python code while the ring is being changed, so pushes from several
threads are serialized by the GIL.
"""

cimport cython
from cpython.ref cimport PyObject, Py_XINCREF, Py_XDECREF
from libc.stdint cimport uint64_t

from langstream._ring cimport (
    ls_ring,
    LS_DETACHED, LS_EMPTY, LS_LAG, LS_NOMEM, LS_OK, ls_counter_init,
    ls_counter_next, ls_counter_value, ls_ring_cursor_close,
    ls_ring_cursor_open, ls_ring_destroy, ls_ring_init, ls_ring_len,
    ls_ring_next, ls_ring_peek, ls_ring_pending, ls_ring_push,
    ls_ring_reclaim_one, ls_ring_take_oldest,
)

from types import GenericAlias

from langstream._eventlog_py import _check_exc, _check_maxlen
from langstream.errors import StreamLagError

__all__ = ["SeqCounter", "EventLog", "Cursor", "StreamLagError"]

cdef extern from *:
    """
    /* Hand a reference the ring owned over to Cython as a new reference. */
    static CYTHON_INLINE PyObject *__pyx_ls_steal(void *p) { return (PyObject *)p; }
    """
    object ls_steal "__pyx_ls_steal" (void *p)


cdef extern from "Python.h":
    ctypedef int (*visitproc)(PyObject *, void *)
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *)
    ctypedef int (*inquiry)(PyObject *)
    ctypedef struct _TypeObject "PyTypeObject":
        traverseproc tp_traverse
        inquiry tp_clear


@cython.final
cdef class SeqCounter:
    """A thread-safe source of sequence numbers: 1, 2, 3 ...

    Several logs built on one counter stamp their items from one sequence,
    so items of different logs can be ordered against each other.
    """

    def __cinit__(self):
        ls_counter_init(&self.c)

    def next(self):
        """Hand out the next number (the first call returns 1)."""
        return ls_counter_next(&self.c)

    @property
    def value(self):
        """The last number handed out (0 before the first ``next()``)."""
        return ls_counter_value(&self.c)

    def __repr__(self):
        return f"<SeqCounter value={ls_counter_value(&self.c)}>"


@cython.final
@cython.no_gc_clear
cdef class EventLog:
    """An append-only log of items, each stamped with a sequence number.

    ``maxlen`` is None (unbounded) or an int >= 1: the most items the log
    keeps unread by its slowest cursor; beyond that the oldest is evicted and
    the cursors that missed it raise :class:`StreamLagError` on their next
    read.  ``counter`` is a :class:`SeqCounter` shared with other logs (by
    default the log has its own sequence).

    Items are stored only while at least one cursor is open (lazy subscribe),
    and each is released as soon as every open cursor has read it.
    """

    __class_getitem__ = classmethod(GenericAlias)  # EventLog[T], as the twin

    def __cinit__(self, maxlen=None, *, counter=None):
        # The object memory is zeroed, so an early raise leaves a ring that
        # __dealloc__ can safely destroy.
        # (None, the common case, needs no call into the shared check)
        self.maxlen_ = None if maxlen is None else _check_maxlen(maxlen)
        if counter is None:
            counter = SeqCounter()
        elif not isinstance(counter, SeqCounter):
            raise TypeError(
                "counter must be None or a SeqCounter of the same backend "
                f"({__name__}), got {counter!r} ({type(counter).__name__})"
            )
        self.counter = <SeqCounter>counter
        ls_ring_init(&self.ring,
                     0 if self.maxlen_ is None else <size_t>self.maxlen_,
                     &self.counter.c)

    def __dealloc__(self):
        cdef void *item
        # No cursor is open here (cursors keep their log alive).
        while ls_ring_take_oldest(&self.ring, &item):
            Py_XDECREF(<PyObject *>item)
        ls_ring_destroy(&self.ring)

    # -- writing -----------------------------------------------------------

    def push(self, item):
        """Stamp ``item`` with the next sequence number, store it, return it.

        With no open cursor the item is not stored, but the number is still
        consumed.  On a bounded log that is full, the oldest item is evicted.
        Raises ``RuntimeError`` if the log is closed.
        """
        cdef uint64_t seq
        self._push(item, &seq)
        return seq

    cdef int _push(self, object item, uint64_t *seq) except -1:
        cdef void *evicted = NULL
        cdef int code
        if self.closed_:
            raise RuntimeError("cannot push to a closed EventLog")
        code = ls_ring_push(&self.ring, <void *>item, seq, &evicted)
        if code == LS_OK:
            Py_XINCREF(<PyObject *>item)
            if evicted != NULL:
                Py_XDECREF(<PyObject *>evicted)  # the ring is consistent now
        elif code == LS_NOMEM:
            raise MemoryError("EventLog.push: out of memory")
        return 0

    # -- C-level API (declared and documented in _eventlog_c.pxd) -----------

    cdef int push_nowait(self, object item) except -1:
        cdef uint64_t seq
        return self._push(item, &seq)

    cdef uint64_t push_seq(self, object item) except 0:
        cdef uint64_t seq
        self._push(item, &seq)
        return seq

    def close(self):
        """Close the log: cursors read what is retained, then stop.

        Only the first of ``close()`` / ``fail()`` has an effect.
        """
        self.closed_ = True

    def fail(self, exc):
        """Close the log with an error: cursors read what is retained, then
        raise ``exc`` (the same object on every later read).

        ``exc`` must be an exception instance (``TypeError`` otherwise).  Only
        the first of ``close()`` / ``fail()`` has an effect.
        """
        _check_exc(exc)
        if not self.closed_:
            self.closed_ = True
            self.error_ = exc
            # every read re-raises ``exc`` from this traceback, so repeated
            # reads never grow it
            self.error_tb_ = exc.__traceback__

    # -- reading -----------------------------------------------------------

    def cursor(self, request_more=None):
        """Open a reader positioned at the next push.

        ``request_more`` is the pump: called when the cursor finds nothing to
        read on an open log, it should produce items (push them) and return a
        true value while it produced something.  Without it, reading an empty
        open log raises ``StopIteration`` at once.
        """
        return Cursor(self, request_more)

    # -- introspection -----------------------------------------------------

    def __len__(self):
        """Number of retained items (unread by the slowest open cursor)."""
        return ls_ring_len(&self.ring)

    @property
    def maxlen(self):
        """The bound on retained items, or None when unbounded."""
        return self.maxlen_

    @property
    def closed(self):
        """True once ``close()`` or ``fail()`` was called."""
        return self.closed_

    @property
    def error(self):
        """The exception given to ``fail()``, or None."""
        return self.error_

    @property
    def last_seq(self):
        """Sequence number of the most recent push to this log (0 before)."""
        return self.ring.last_seq

    @property
    def cursor_count(self):
        """Number of open cursors."""
        return self.ring.ncursors

    def __repr__(self):
        state = "failed" if self.error_ is not None else (
            "closed" if self.closed_ else "open")
        return (
            f"<EventLog {state} maxlen={self.maxlen_} "
            f"len={ls_ring_len(&self.ring)} last_seq={self.ring.last_seq} "
            f"cursors={self.ring.ncursors}>"
        )


cdef class Puller:
    """Base of the compiled pumps (internal): a ``request_more`` callable
    whose ``pull`` a :class:`Cursor` calls directly when its log has
    nothing unread (calling the object does the same)."""

    cdef object pull(self):
        raise NotImplementedError

    def __call__(self):
        return self.pull()


@cython.final
@cython.no_gc_clear
cdef class Cursor:
    """An iterator over the items pushed to an :class:`EventLog` after it was
    opened, in push order.

    Create one with :meth:`EventLog.cursor`.  ``close()`` (or garbage
    collection of the cursor) releases its hold on the log's items.
    """

    __class_getitem__ = classmethod(GenericAlias)  # Cursor[T], as the twin

    def __cinit__(self, EventLog log not None, request_more=None):
        self.c.slot = LS_DETACHED
        if request_more is not None and not callable(request_more):
            raise TypeError(
                f"request_more must be None or a callable, got {request_more!r}"
            )
        if ls_ring_cursor_open(&log.ring, &self.c) != LS_OK:
            raise MemoryError("EventLog.cursor: out of memory")
        self.log = log
        self.request_more = request_more
        if isinstance(request_more, Puller):
            self.puller = <Puller>request_more

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        """Unregister from the ring, then DECREF what no cursor needs."""
        cdef EventLog log = self.log
        cdef void *item
        if log is None:
            return
        self.log = None
        ls_ring_cursor_close(&log.ring, &self.c)
        while ls_ring_reclaim_one(&log.ring, &item):
            Py_XDECREF(<PyObject *>item)
        # `log` (a local reference) kept the log alive until here.

    def __iter__(self):
        return self

    def __next__(self):
        """Return the next unread item.

        Raises :class:`StreamLagError` once if items were evicted before this
        cursor read them (the next call returns the oldest retained item).  On
        an empty open log, calls ``request_more`` until an item arrives, the
        log closes, or it returns a false value; with still nothing to read,
        raises ``StopIteration`` (a later call may return newer items).  On a
        closed, drained log raises ``StopIteration`` or the log's error.
        """
        cdef EventLog log
        cdef void *item
        cdef uint64_t seq, missed
        cdef int reclaimed = 0
        cdef int code
        cdef bint more = True
        while True:
            log = self.log
            if log is None:
                raise StopIteration
            code = ls_ring_next(&log.ring, &self.c, &item, &seq, &reclaimed)
            if code == LS_OK:
                if reclaimed:
                    return ls_steal(item)  # the ring's reference moves to us
                return <object>item
            if code == LS_LAG:
                missed = self.c.lag
                self.c.lag = 0
                raise StreamLagError(missed)
            if log.closed_:
                if log.error_ is not None:
                    raise log.error_.with_traceback(log.error_tb_)
                raise StopIteration
            if self.request_more is None or not more:
                raise StopIteration
            if self.puller is not None:  # (the compiled pump: no Python call)
                more = self.puller.pull()
            else:
                more = self.request_more()

    def peek_seq(self):
        """Sequence number of the next unread item, or None."""
        cdef uint64_t seq
        if self.log is None or not ls_ring_peek(&self.log.ring, &self.c, &seq):
            return None
        return seq

    @property
    def pending(self):
        """Number of unread items retained for this cursor."""
        if self.log is None:
            return 0
        return ls_ring_pending(&self.log.ring, &self.c)

    @property
    def closed(self):
        """True once this cursor was closed."""
        return self.log is None

    def close(self):
        """Release this cursor's hold on the log (idempotent).  Items that only
        it still needed are dropped; later reads raise ``StopIteration``."""
        self._release()

    def __repr__(self):
        if self.log is None:
            return "<Cursor closed>"
        return f"<Cursor pending={self.pending} log={self.log!r}>"


# -- garbage collection ----------------------------------------------------------
#
# The ring's items are references this module owns, but Cython's generated
# tp_traverse only knows the declared attributes.  Without help, a cycle that
# runs through a stored item (item -> cursor -> log -> item, e.g. a run stream
# that is itself an unread item of one of its projections) would look
# externally referenced to the collector and leak.  So EventLog's tp_traverse
# is wrapped to also visit every retained item.  And since a cycle may consist
# only of a log, its items and its cursors (``log.push(cursor)``, or a tuple
# holding the cursor: neither the log nor a tuple can be cleared), Cursor gets
# a tp_clear that closes it the proper way (unregistered from the ring, then
# the items no cursor needs released), which breaks every such cycle.  (The
# generated tp_clear is off, ``no_gc_clear``: it would drop ``log`` without
# unregistering the cursor from the ring.)

cdef traverseproc _base_log_traverse = NULL
cdef Py_ssize_t _ring_offset = 0


cdef int _log_traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    cdef ls_ring *r = <ls_ring *>((<char *>o) + _ring_offset)
    cdef uint64_t i
    cdef int rc
    if _base_log_traverse != NULL:
        rc = _base_log_traverse(o, visit, arg)
        if rc:
            return rc
    i = r.head
    while i < r.tail:
        rc = visit(<PyObject *>r.items[i & r.mask], arg)
        if rc:
            return rc
        i += 1
    return 0


cdef void _install_log_traverse() except *:
    global _base_log_traverse, _ring_offset
    cdef EventLog probe = EventLog()
    cdef _TypeObject *tp = <_TypeObject *><PyObject *>EventLog
    _ring_offset = <char *>&probe.ring - <char *><PyObject *>probe
    if tp.tp_traverse != <traverseproc>_log_traverse:
        _base_log_traverse = tp.tp_traverse
        tp.tp_traverse = <traverseproc>_log_traverse


cdef int _cursor_clear(PyObject *o) noexcept:
    cdef Cursor cur = <Cursor>o
    cur._release()
    cur.request_more = None
    cur.puller = None
    return 0


cdef void _install_cursor_clear() except *:
    cdef _TypeObject *tp = <_TypeObject *><PyObject *>Cursor
    tp.tp_clear = <inquiry>_cursor_clear


_install_log_traverse()
_install_cursor_clear()
