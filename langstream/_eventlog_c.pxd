# Declarations of the compiled event log (see _eventlog_c.pyx).
cimport cython
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
    cdef object __weakref__


@cython.final
@cython.no_gc_clear
cdef class Cursor:
    cdef ls_cursor c
    cdef EventLog log
    cdef object request_more
    cdef object __weakref__

    cdef void _release(self) noexcept
