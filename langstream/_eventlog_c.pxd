# Declarations of the compiled event log (see _eventlog_c.pyx).
cimport cython
from libc.stdint cimport uint64_t
from langstream._ring cimport ls_counter, ls_cursor, ls_ring


@cython.final
cdef class SeqCounter:
    cdef ls_counter c
    cdef object __weakref__


@cython.final
@cython.no_gc_clear
cdef class EventLog:
    cdef ls_ring ring
    cdef SeqCounter counter
    cdef object maxlen_
    cdef bint closed_
    cdef object error_
    cdef object error_tb_
    cdef object __weakref__

    # -- C-level API ------------------------------------------------------
    # For other Cython modules (the compiled pump):
    #
    #     from langstream._eventlog_c cimport EventLog
    #     cdef EventLog log = ...      # a typed reference: no attribute lookup
    #
    # A module that cimports EventLog needs ``csrc`` on its include path (the
    # struct above embeds ``ls_ring`` from csrc/ring.h); it does not link
    # csrc/ring.c: the inline methods below only read fields, the others are
    # called through EventLog's vtable.  None of them releases the GIL.

    # Same as ``log.cursor_count != 0``; never raises.
    cdef inline bint has_cursors(self) noexcept:
        return self.ring.ncursors != 0

    # Same as ``log.cursor_count`` (as a C integer); never raises.
    cdef inline size_t n_cursors(self) noexcept:
        return self.ring.ncursors

    # Same as ``log.closed``; never raises.
    cdef inline bint is_closed(self) noexcept:
        return self.closed_

    # Same as ``log.last_seq`` (as a C integer); never raises.
    cdef inline uint64_t last_seq_c(self) noexcept:
        return self.ring.last_seq

    # Same as ``log.push(item)`` without building the Python int: returns 0,
    # or -1 with RuntimeError("cannot push to a closed EventLog") (closed log)
    # or MemoryError set.  With no open cursor the item is not stored but a
    # number is still consumed, exactly like ``push``.
    cdef int push_nowait(self, object item) except -1

    # Same as ``log.push(item)``, returning the sequence number as a C integer
    # (always >= 1); 0 means an exception is set (as with ``push``).
    cdef uint64_t push_seq(self, object item) except 0

    # The shared body of push / push_nowait / push_seq (module-internal).
    cdef int _push(self, object item, uint64_t *seq) except -1


# The base of the compiled pumps (``_pump_c.SyncPump``): a ``request_more``
# a Cursor calls through this vtable slot, not through a Python call.
# ``pull()`` is what calling the object does (``__call__``).
cdef class Puller:
    cdef object pull(self)


@cython.final
@cython.no_gc_clear
cdef class Cursor:
    cdef ls_cursor c
    cdef EventLog log
    cdef object request_more
    cdef Puller puller  # ``request_more`` when it is a Puller, else None
    cdef object __weakref__

    cdef void _release(self) noexcept
