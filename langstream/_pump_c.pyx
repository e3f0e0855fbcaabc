# cython: language_level=3
"""Compiled pump of the sync run stream (the run-stream layer's hot path).

``PartDispatcher(mux)`` is ``StreamMux._push_part_fast`` in C (used by both
lanes).  ``SyncPump(run, mux, graph_iter, fallback)`` is a callable with the exact
behaviour of ``GraphRunStream._pump_next`` (the pure-Python implementation,
which it calls as ``fallback`` for the rare paths: postponed forwards, an
ended run, a non-dict part).  It pulls one part, validates it, and
dispatches it through the mux's fast routes without building a protocol
event when nothing can observe that event.  Used for runs whose logs are the
C event log (it calls that log's C-level API directly).
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t

from langstream._eventlog_c cimport EventLog

from time import time as _time

from langstream.protocol import MAX_NAMESPACE_DEPTH
from langstream.transformers import (
    CheckpointsTransformer,
    CustomTransformer,
    DebugTransformer,
    TasksTransformer,
    UpdatesTransformer,
    ValuesTransformer,
)

# built-in projections whose ``_fast_part`` the pump runs inline (exact types
# only: a subclass may override anything)
cdef object _VALUES_FAST = ValuesTransformer._fast_part
cdef dict _PLAIN_FAST = {
    cls: cls._fast_part
    for cls in (UpdatesTransformer, CustomTransformer, CheckpointsTransformer,
                DebugTransformer, TasksTransformer)
}


cdef Py_ssize_t _MAX_DEPTH = MAX_NAMESPACE_DEPTH
cdef object _MISSING = object()
cdef object _SLOW = object()  # a route that needs the protocol event


cdef class _Op:
    """One compiled handler of a fast route."""

    cdef int kind          # 0: call ``target(part)``; 1: values; 2: plain projection
    cdef object target     # the handler (0) or the transformer (1, 2)
    cdef object channel    # its StreamChannel (1, 2)
    cdef EventLog log      # that channel's log (1, 2)


cdef tuple _compile(tuple handlers):
    """Compile a fast route: built-in projections on a C log run inline."""
    ops = []
    for handler in handlers:
        op = _Op()
        owner = getattr(handler, "__self__", None)
        func = getattr(handler, "__func__", None)
        channel = getattr(owner, "_log", None)
        log = getattr(channel, "_log", None)
        if type(log) is EventLog and type(owner) is ValuesTransformer and func is _VALUES_FAST:
            op.kind = 1
        elif type(log) is EventLog and func is not None and _PLAIN_FAST.get(type(owner)) is func:
            op.kind = 2
        else:
            op.kind = 0
            op.target = handler
            ops.append(op)
            continue
        op.target = owner
        op.channel = channel
        op.log = log
        ops.append(op)
    return tuple(ops)


cdef class PartDispatcher:
    """``StreamMux._push_part_fast`` in C: validate a part and dispatch it
    through the fast routes; returns ``None`` when done, else
    ``(event, method, at_scope)`` for the protocol-event path."""

    cdef object mux
    cdef object scope_list
    cdef EventLog events_log
    cdef dict ops_at_scope   # method -> compiled ops, or _SLOW
    cdef dict ops_below
    cdef bint root_scope
    cdef bint assign_seq

    def __cinit__(self, mux):
        self.mux = mux
        self.scope_list = mux._scope_list
        self.events_log = mux._events._log
        self.ops_at_scope = {}
        self.ops_below = {}
        self.root_scope = not mux._scope_list
        self.assign_seq = mux._assign_seq
        mux._route_listeners.append(self)

    def _invalidate(self):
        """The mux's routes changed (a transformer was registered)."""
        self.ops_at_scope.clear()
        self.ops_below.clear()

    def __call__(self, part):
        return self.dispatch(part)

    cpdef object dispatch(self, object part):
        cdef PyObject* found
        cdef Py_ssize_t i, n
        if type(part) is not dict:
            return self.mux._push_part_fast(part)
        # Exact types are checked here; anything else (a malformed part, or
        # an accepted subclass) takes the mux's general path, which runs the
        # one validation of ``protocol.split_part`` (same result, same error).
        found = PyDict_GetItem(part, "type")
        if found == NULL:
            return self.mux._push_part_fast(part)
        method = <object>found
        found = PyDict_GetItem(part, "ns")
        if found == NULL:
            return self.mux._push_part_fast(part)
        ns = <object>found
        found = PyDict_GetItem(part, "data")
        if found == NULL:
            return self.mux._push_part_fast(part)
        data = <object>found
        if type(method) is not str:
            return self.mux._push_part_fast(part)
        ns_type = type(ns)
        if ns_type is not tuple and ns_type is not list:
            return self.mux._push_part_fast(part)
        found = PyDict_GetItem(part, "interrupts")
        cdef bint has_interrupts = found != NULL
        if found == NULL:
            interrupts = ()
        else:
            interrupts = <object>found
            if type(interrupts) is not tuple and type(interrupts) is not list:
                return self.mux._push_part_fast(part)
        part_interrupts = interrupts
        n = len(ns)
        if n:
            if n > _MAX_DEPTH:
                return self.mux._push_part_fast(part)
            for i in range(n):
                if type(ns[i]) is not str:
                    return self.mux._push_part_fast(part)
            at_scope = list(ns) == self.scope_list
        else:
            at_scope = self.root_scope
        mux = self.mux
        if at_scope and method == "values":
            mux._latest = data
            if interrupts:
                mux._interrupted = True
                mux._interrupts.extend(interrupts)
        else:
            interrupts = None
        cdef EventLog log = self.events_log
        cdef _Op op
        cdef uint64_t seq
        # (the fast route whoever reads the main log: see StreamMux._push_part_fast)
        cache = self.ops_at_scope if at_scope else self.ops_below
        found = PyDict_GetItem(cache, method)
        if found == NULL:
            fast = mux._fast_route(method, at_scope)
            compiled = _SLOW if fast is None else _compile(fast)
            cache[method] = compiled
        else:
            compiled = <object>found
        if compiled is _SLOW:  # the event path: the event protocol._build_event builds
            params = {"namespace": list(ns) if n else [],
                      "timestamp": int(_time() * 1000), "data": data}
            if has_interrupts:
                params["interrupts"] = part_interrupts
            return ({"type": "event", "method": method, "params": params}, method, at_scope)
        cdef bint keep = True
        for item in <tuple>compiled:
            op = <_Op>item
            if op.kind == 0:
                if op.target(part) is False:
                    keep = False
                continue
            if op.kind == 1:  # ValuesTransformer._fast_part, inline
                # (routed only for values parts at scope: ``interrupts``
                # was read and checked above)
                target = op.target
                target._latest = data
                if interrupts:
                    target._interrupted = True
                    target._interrupts.extend(interrupts)
            if op.log.is_closed():  # the channel's rules when closed
                op.channel.push(data)
            else:
                op.log.push_nowait(data)
        if not keep:  # (like a process() returning False)
            return None
        if not log.has_cursors():
            log.push_nowait(None)
            return None
        # someone reads the main log: the event protocol._build_event builds
        params = {"namespace": list(ns) if n else [],
                  "timestamp": int(_time() * 1000), "data": data}
        if has_interrupts:
            params["interrupts"] = part_interrupts
        event = {"type": "event", "method": method, "params": params}
        if log.is_closed():  # (the mux's rules for a closed main log)
            mux._append(event)
        else:
            seq = log.push_seq(event)
            if self.assign_seq:
                event["seq"] = seq
        return None


cdef class SyncPump:
    """One pump step per call; returns ``False`` once the run has ended."""

    cdef object run
    cdef object mux
    cdef object it
    cdef list deferred  # the mux tree's postponed forwards (cleared in place)
    cdef object fallback
    cdef PartDispatcher dispatcher
    cdef public bint done  # set by the run when it ends (its ``_exhausted``)
    cdef bint stepping  # a step is under way (the pump is not re-entrant)

    def __cinit__(self, run, mux, graph_iter, fallback):
        self.run = run
        self.mux = mux
        self.it = graph_iter
        self.deferred = mux._shared.deferred
        self.fallback = fallback
        self.dispatcher = PartDispatcher(mux)

    def __call__(self):
        if self.done:
            return self.fallback()
        if self.stepping:
            raise self.run._reentry_error()
        if self.deferred:
            return self.fallback()
        self.stepping = True
        try:
            return self.step()
        finally:
            self.stepping = False

    cdef object step(self):
        try:
            part = next(self.it, _MISSING)
            if part is _MISSING:
                self.run._finish()
                return False
            route = self.dispatcher.dispatch(part)
            if route is not None:
                self.mux._dispatch(route[0], route[1], route[2])
        except Exception as exc:
            self.run._end(exc)
            return False
        except BaseException as exc:
            self.run._end(exc)
            raise
        return True
