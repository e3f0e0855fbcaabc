# Declarations Cython reads when it compiles run_stream.py (an "augmenting"
# .pxd): they change how the compiled module stores things, never what it
# does; the .py file stays the one implementation, and the pure module.
#
# _AsyncPump, compiled, is an extension type: its methods read and write
# their own attributes in the instance struct instead of through the
# generic attribute lookup (the async pump's step is the hot path of every
# async run).  It is internal: nothing subclasses it or patches it.
#
# Keep these declarations equal to _AsyncPump.__slots__ ("__weakref__"
# included): an attribute missing here would be an AttributeError on the
# compiled module only.  tests/test_compiled_modules.py checks that they agree.
# _pump_c finds these attributes in the instance (see _slot_offset there).

cdef class _AsyncPump:
    cdef public object run
    cdef public object mux
    cdef public object graph_aiter
    cdef public object exhausted
    cdef public object pumping
    cdef public object pump_task
    cdef public object waiters
    cdef public object readers
    cdef public object handoff
    cdef public object handoff_wakes
    cdef public object wakes
    cdef public object passer
    cdef public object aborting
    cdef public object aborted
    cdef public object settled
    cdef public object yield_next
    cdef public object loop
    cdef public object deferred
    cdef public object bounded
    cdef public object dispatch
    cdef public object closing
    cdef public object closer
    cdef public object children_seen
    cdef public object settle
    cdef public object shared
    cdef object __weakref__
