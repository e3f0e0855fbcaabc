# Declarations Cython reads when it compiles mux.py (an "augmenting" .pxd):
# they change how the compiled module stores things, never what it does; the
# .py file stays the one implementation, and the pure module.
#
# _MuxCore, compiled, is an extension type: its methods (every method of
# StreamMux) read and write these attributes in the instance instead of
# through the generic attribute lookup.  StreamMux, its only subclass, stays
# a plain class; the attributes a subclass may redefine are its slots, not
# declared here.
#
# Keep this list equal to _MuxCore.__slots__: an attribute missing here would
# be an AttributeError on the compiled module only.
# tests/test_compiled_modules.py checks that they agree.

cdef class _MuxCore:
    cdef public object _scope_list
    cdef public object _assign_seq
    cdef public object _shared
    cdef public object _transformers
    cdef public object _channels
    cdef public object _routers
    cdef public object _direct
    cdef public object _routes
    cdef public object _fast_routes
    cdef public object _below
    cdef public object _below_epoch
    cdef public object _route_listeners
    cdef public object _part_dispatcher
    cdef public object _interrupted
    cdef public object _interrupts
    cdef public object _transformer_by_key
    cdef public object _factories
    cdef public object _pump_fn
    cdef public object _apump_fn
    cdef public object _finished
    cdef public object _error_tb
    cdef public object _events
    cdef public object _routed
    cdef public object _shape
