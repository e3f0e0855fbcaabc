# Declarations Cython reads when it compiles channel.py (an "augmenting"
# .pxd): they change how the compiled module stores things, never what it
# does; the .py file stays the one implementation, and the pure module.
#
# _ChannelCore, compiled, is an extension type: its methods (every method
# of StreamChannel) read and write these attributes in the instance instead
# of through the generic attribute lookup.  StreamChannel, its only
# subclass, stays a plain class (generic, with an instance dict); ``name``,
# which a subclass may redefine, is its slot, not declared here.
#
# Keep this list equal to _ChannelCore.__slots__: an attribute missing here
# would be an AttributeError on the compiled module only.
# tests/test_compiled_modules.py checks that they agree.
# _pump_c finds _arequest_more in the instance (see _slot_offset there).

cdef class _ChannelCore:
    cdef public object _maxlen
    cdef public object _log
    cdef public object _limit
    cdef public object _is_async
    cdef public object _subscribed
    cdef public object _request_more
    cdef public object _arequest_more
    cdef public object _wired
    cdef public object _mux
    cdef public object _bp
