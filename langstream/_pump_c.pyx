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

from cpython.dict cimport PyDict_Contains, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.long cimport PyLong_FromLongLong
from libc.time cimport time_t
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.stdint cimport uint64_t

from langstream._eventlog_c cimport EventLog, Puller

import sys
from collections import deque
from time import time as _time

cdef extern from "<time.h>" nogil:
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_REALTIME


# the last timestamp made, reused while the millisecond lasts (most events of
# a busy run share it: one int fewer to allocate and free per event)
cdef long long _last_ms = -1
cdef object _last_stamp = None


cdef inline object _now_ms():
    """``int(time.time() * 1000)`` (wall-clock ms, as protocol._build_event
    stamps events) without a float and two calls per event."""
    global _last_ms, _last_stamp
    cdef timespec ts
    cdef long long ms
    if clock_gettime(CLOCK_REALTIME, &ts) != 0:
        return int(_time() * 1000)
    ms = <long long>ts.tv_sec * 1000 + ts.tv_nsec // 1000000
    if ms != _last_ms:
        _last_stamp = PyLong_FromLongLong(ms)
        _last_ms = ms
    return _last_stamp

cdef extern from *:
    """
    /* PyDict_GetItem without its save and restore of the error state on
       every call (a borrowed reference, or NULL when ``key`` is missing; an
       error raised by the lookup is dropped, as PyDict_GetItem drops it). */
    static PyObject *ls_dict_get(PyObject *d, PyObject *key) {
        PyObject *v = PyDict_GetItemWithError(d, key);
        if (v == NULL && PyErr_Occurred())
            PyErr_Clear();
        return v;
    }
    """
    PyObject* ls_dict_get(object d, object key)

cdef extern from *:
    """
    /* The keys table of a dict, as CPython 3.11-3.13 lay it out
       (``Include/internal/pycore_dict.h``; the API does not expose it).
       Used only once ``ls_shape_init`` has checked it against a real dict
       of this interpreter (``ls_layout_checked``); see ``ls_shape``. */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED) && !defined(PYPY_VERSION)
    #define LS_SHAPES 1
    typedef struct {  /* struct _dictkeysobject, CPython 3.11-3.13 */
        Py_ssize_t dk_refcnt;
        uint8_t dk_log2_size;
        uint8_t dk_log2_index_bytes;
        uint8_t dk_kind;  /* 0: general entries (with the hash) */
        uint32_t dk_version;
        Py_ssize_t dk_usable;
        Py_ssize_t dk_nentries;
        char dk_indices[];
    } ls_keys;
    #else
    #define LS_SHAPES 0
    #endif
    static int ls_layout_checked = 0;

    /* A part's four fields in one pass over its entries (borrowed
       references; NULL where the part lacks the key).  The pass only
       decides when every key *is* one of the four names: the interned
       strings a literal ``{"type": ...}`` in Python or Cython code uses.
       Any other key (an extra one, or an equal string that is another
       object, e.g. from ``json.loads``) returns 0 and the caller looks the
       fields up by hash instead, so the result never differs.  With the
       layout checked, a combined table's entries are read in place (what
       ``PyDict_Next`` does, without a call per entry). */
    static int ls_part_fields(PyObject *part, PyObject *k_type, PyObject *k_ns,
                              PyObject *k_data, PyObject *k_interrupts,
                              PyObject **fields) {
        Py_ssize_t pos = 0, left = PyDict_GET_SIZE(part);
        PyObject *key, *value;
        PyObject **entry = NULL;  /* the entries read in place (NULL: PyDict_Next) */
        fields[0] = fields[1] = fields[2] = fields[3] = NULL;
    #if LS_SHAPES
        if (ls_layout_checked && ((PyDictObject *)part)->ma_values == NULL) {
            ls_keys *keys = (ls_keys *)((PyDictObject *)part)->ma_keys;
            /* (str keys only, the entries ``ls_shape_init`` checked: a key
               and a value each; deleted ones included, with no value) */
            if (keys->dk_kind == 1) {
                entry = (PyObject **)(keys->dk_indices
                                      + ((size_t)1 << keys->dk_log2_index_bytes));
                left = keys->dk_nentries;
            }
        }
    #endif
        /* (no call past the last entry) */
        while (left-- > 0) {
            if (entry != NULL) {
                key = entry[0];
                value = entry[1];
                entry += 2;
                if (value == NULL)  /* (a deleted entry) */
                    continue;
            } else if (!PyDict_Next(part, &pos, &key, &value)) {
                break;
            }
            if (key == k_type) fields[0] = value;
            else if (key == k_ns) fields[1] = value;
            else if (key == k_data) fields[2] = value;
            else if (key == k_interrupts) fields[3] = value;
            else return 0;
        }
        return 1;
    }
    """
    int ls_part_fields(object part, object k_type, object k_ns, object k_data,
                       object k_interrupts, PyObject** fields)


from langstream.channel import StreamChannel, _AsyncChannelIterator, _set_anext
from langstream.mux import _Forward, _Guards, _forget_stale
from langstream.protocol import MAX_NAMESPACE_DEPTH
from langstream.transformers import (
    CheckpointsTransformer,
    CustomTransformer,
    DebugTransformer,
    LifecycleTransformer,
    SubgraphTransformer,
    TasksTransformer,
    UpdatesTransformer,
    ValuesTransformer,
    _SubtreeTracker,
    _TaskBelow,
)

# built-in projections whose ``_fast_part`` the pump runs inline (exact types
# only: a subclass may override anything)
cdef object _VALUES_FAST = ValuesTransformer._fast_part
cdef dict _PLAIN_FAST = {
    cls: cls._fast_part
    for cls in (UpdatesTransformer, CustomTransformer, CheckpointsTransformer,
                DebugTransformer, TasksTransformer)
}


# the built-in subtree trackers, whose ``tasks`` handlers the pump skips for
# parts that change nothing they keep (``transformers._idle_task_part``)
cdef object _TRACKER_FAST = _SubtreeTracker._fast_part
cdef object _TRACKER_RECORD = _SubtreeTracker._record_part
cdef tuple _TRACKERS = (LifecycleTransformer, SubgraphTransformer)


cdef bint _idle_task_part(object tracker, object data, object parent):
    """``transformers._idle_task_part`` (the same test, in C)."""
    cdef PyObject* found
    if type(data) is not dict:
        return False
    if PyDict_Contains(data, "result"):
        if tracker._tool_calls:
            return False
        if parent is None:
            return True
        by_task = tracker._by_task
        if not by_task:
            return True
        found = ls_dict_get(data, "id")
        if found == NULL or not isinstance(<object>found, str):
            return True
        return not PyDict_Contains(by_task, (parent, <object>found))
    found = ls_dict_get(data, "input")
    if found == NULL or type(<object>found) is not dict:
        return False
    found = ls_dict_get(<object>found, "tool_call")
    return found == NULL or <object>found is None


cdef Py_ssize_t _MAX_DEPTH = MAX_NAMESPACE_DEPTH
# a part's keys, interned (what a literal key in Python code is)
cdef object _K_TYPE = sys.intern("type")
cdef object _K_NS = sys.intern("ns")
cdef object _K_DATA = sys.intern("data")
cdef object _K_INTERRUPTS = sys.intern("interrupts")
cdef object _MISSING = object()
cdef enum:
    _AT_SLOTS = 8  # methods a dispatcher finds by identity (there are 7)
cdef object _SLOW = object()  # a route that needs the protocol event


cdef class _Op:
    """One compiled handler of a fast route."""

    cdef int kind          # 0: call ``target(part)``; 1: values; 2: plain projection;
                           # 3: hand the part to a child mux (below the scope);
                           # 4: the route's guards (checked before any op; no op)
                           # 5: a built-in tracker's ``tasks`` handler (returns
                           # False), called unless the part is idle for it
    cdef object target     # the handler (0, 5), the transformer (1, 2), the child's
                           # dispatcher (3), the mux._Guards (4)
    cdef object tracker    # the handler's tracker (5)
    cdef object parent     # the namespace whose task results it closes (5; None:
                           # it only keeps tool calls, see ``_idle_task_part``)
    cdef object channel    # its StreamChannel (1, 2)
    cdef EventLog log      # that channel's log (1, 2)
    # (3) the child's compiled route for this route's method and namespace,
    # and the tree epoch (the int object) it was kept in: while the epoch is
    # that object, the child's ``below`` would return the same route
    cdef object below_ops
    cdef object below_epoch


cdef tuple _compile(tuple handlers):
    """Compile a fast route: built-in projections on a C log run inline."""
    ops = []
    for handler in handlers:
        op = _Op()
        if type(handler) is _Forward:
            op.kind = 3
            op.target = _dispatcher_of(handler.mux)
            ops.append(op)
            continue
        if type(handler) is _Guards:
            op.kind = 4
            op.target = handler
            ops.append(op)
            continue
        if type(handler) is _TaskBelow and type(handler.tracker) in _TRACKERS:
            op.kind = 5
            op.target = handler
            op.tracker = handler.tracker
            op.parent = handler.ns
            ops.append(op)
            continue
        owner = getattr(handler, "__self__", None)
        func = getattr(handler, "__func__", None)
        if (func is _TRACKER_FAST or func is _TRACKER_RECORD) and type(owner) in _TRACKERS:
            op.kind = 5
            op.target = handler
            op.tracker = owner
            op.parent = owner.scope if func is _TRACKER_FAST else None
            ops.append(op)
            continue
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


cdef PartDispatcher _dispatcher_of(object mux):
    """The compiled dispatcher of ``mux`` (made once, kept on the mux)."""
    found = mux._part_dispatcher
    if found is None:
        found = PartDispatcher(mux)
    return <PartDispatcher>found


cdef class PartDispatcher:
    """``StreamMux._push_part_fast`` in C: validate a part and dispatch it
    through the fast routes; returns ``None`` when done, else
    ``(event, method, at_scope)`` for the protocol-event path."""

    cdef object mux
    cdef object shared
    cdef list scope_list
    cdef tuple scope
    cdef Py_ssize_t scope_len
    cdef EventLog events_log
    cdef dict ops_at_scope   # method -> compiled ops, or _SLOW
    # the first methods routed at the scope since the routes last changed,
    # and their compiled ops: found by identity (a graph's method strings
    # are its interned literals) before ``ops_at_scope`` is asked
    cdef list at_cache       # [method, ops, method, ops, ...]
    cdef dict ops_below      # method -> {namespace tuple: compiled ops, or _SLOW}
    cdef object below_epoch  # the tree epoch ``ops_below`` was made in
    cdef bint root_scope
    cdef bint assign_seq
    cdef Py_ssize_t latest  # where the mux keeps ``_latest`` (0: no slot)

    def __cinit__(self, mux):
        self.mux = mux
        self.latest = _latest_offset(type(mux))
        self.shared = mux._shared
        self.scope_list = mux._scope_list
        self.scope = tuple(mux._scope_list)
        self.scope_len = len(self.scope_list)
        self.events_log = mux._events._log
        self.ops_at_scope = {}
        self.at_cache = []
        self.ops_below = {}
        self.below_epoch = -1
        self.root_scope = not mux._scope_list
        self.assign_seq = mux._assign_seq
        mux._route_listeners = (*mux._route_listeners, self)
        mux._part_dispatcher = self

    def _invalidate(self):
        """The mux's routes changed (a transformer was registered)."""
        self.ops_at_scope.clear()
        del self.at_cache[:]
        self.ops_below.clear()

    def __call__(self, part):
        return self.dispatch(part)

    cpdef object dispatch(self, object part):
        cdef PyObject* fields[4]
        cdef Py_ssize_t i, n
        if type(part) is not dict:
            return self.mux._push_part_fast(part)
        # Exact types are checked here; anything else (a malformed part, or
        # an accepted subclass) takes the mux's general path, which runs the
        # one validation of ``protocol.split_part`` (same result, same error).
        if not ls_part_fields(part, _K_TYPE, _K_NS, _K_DATA, _K_INTERRUPTS, fields):
            fields[0] = ls_dict_get(part, _K_TYPE)
            fields[1] = ls_dict_get(part, _K_NS)
            fields[2] = ls_dict_get(part, _K_DATA)
            fields[3] = ls_dict_get(part, _K_INTERRUPTS)
        if fields[0] == NULL or fields[1] == NULL or fields[2] == NULL:
            return self.mux._push_part_fast(part)
        method = <object>fields[0]
        ns = <object>fields[1]
        data = <object>fields[2]
        if type(method) is not str:
            return self.mux._push_part_fast(part)
        ns_type = type(ns)
        if ns_type is not tuple and ns_type is not list:
            return self.mux._push_part_fast(part)
        if fields[3] != NULL:
            interrupts = <object>fields[3]
            if type(interrupts) is not tuple and type(interrupts) is not list:
                return self.mux._push_part_fast(part)
        else:
            interrupts = None
        n = len(ns)
        if n:
            if n > _MAX_DEPTH:
                return self.mux._push_part_fast(part)
            for i in range(n):
                if type(ns[i]) is not str:
                    return self.mux._push_part_fast(part)
        out = self.route(part, method, ns, n, data, interrupts, None, None)
        return out if type(out) is tuple else None

    cdef object route(self, object part, str method, object ns, Py_ssize_t n, object data,
                      object interrupts, object ev, _Op via):
        """Dispatch a validated part through this mux's fast route
        (``interrupts``: the part's, read once by ``dispatch``; None when
        it has none).

        At the root (``via`` None) returns ``(event, method, at_scope)``
        when the part needs the event path; a parent's hand-over (``via``:
        the parent's op that hands it over) always completes here.
        Otherwise returns the protocol event if one was built (by this mux
        or a child below it, shared by all), else None.
        """
        cdef PyObject* found
        cdef Py_ssize_t i
        cdef bint at_scope
        cdef bint nested = via is not None
        cdef _Op op
        if n != self.scope_len:
            at_scope = False
        elif n == 0:
            at_scope = True
        else:
            at_scope = True
            for i in range(n):
                if ns[i] != self.scope_list[i]:
                    at_scope = False
                    break
        mux = self.mux
        if at_scope:
            if method == "values":
                if self.latest:
                    _put(mux, self.latest, data)
                else:
                    mux._latest = data
                if interrupts is not None and _nonempty(interrupts):
                    mux._interrupted = True
                    mux._interrupts.extend(interrupts)
            compiled = None
            cache = self.at_cache
            for i in range(0, PyList_GET_SIZE(cache), 2):
                if <PyObject*>PyList_GET_ITEM(cache, i) == <PyObject*>method:
                    compiled = <object>PyList_GET_ITEM(cache, i + 1)
                    break
            if compiled is None:
                found = ls_dict_get(self.ops_at_scope, method)
                if found == NULL:
                    fast = mux._fast_route(method, True)
                    compiled = _SLOW if fast is None else _compile(fast)
                    self.ops_at_scope[method] = compiled
                else:
                    compiled = <object>found
                # (kept as ``ops_at_scope`` keeps it; ``_invalidate`` empties
                # both, in place)
                if PyList_GET_SIZE(cache) < 2 * _AT_SLOTS:
                    cache.append(method)
                    cache.append(compiled)
        elif nested:
            compiled = self.below_via(method, ns if type(ns) is tuple else tuple(ns), via)
        else:
            compiled = self.below(method, ns if type(ns) is tuple else tuple(ns))
        if not nested and compiled is not _SLOW and (<tuple>compiled):
            op = <_Op>(<tuple>compiled)[0]
            # a guard sends the part to the event path before any op runs
            # (a parent's guards include those of the routes it hands down to)
            if op.kind == 4 and op.target.check(part):
                compiled = _SLOW
        if compiled is _SLOW:
            if ev is None:  # the event protocol._build_event builds
                ev = _event(method, ns, n, data, interrupts)
            if not nested:
                return (ev, method, at_scope)
            # (a parent found this route fast in the same tree epoch; a
            # handler before the hand-over changed the tree since)
            mux._dispatch_inline(ev, method, at_scope)
            return ev
        cdef EventLog log = self.events_log
        cdef PartDispatcher child
        cdef bint keep = True
        for item in <tuple>compiled:
            op = <_Op>item
            if op.kind == 0:
                if op.target(part) is False:
                    keep = False
                continue
            if op.kind == 3:  # the child mux of the part's subtree
                child = <PartDispatcher>op.target
                if not child.events_log.is_closed():
                    ev = child.route(part, method, ns, n, data, interrupts, ev, op)
                continue
            if op.kind == 4:  # (the guards: checked above)
                continue
            if op.kind == 5:  # (it returns False: the part stays out of the log)
                keep = False
                if not _idle_task_part(op.tracker, data, op.parent):
                    op.target(part)
                continue
            if op.kind == 1:  # ValuesTransformer._fast_part, inline
                # (routed only for values parts at scope: ``interrupts``
                # was read above)
                target = op.target
                _put(target, _values_latest, data)
                if interrupts is not None and _nonempty(interrupts):
                    target._interrupted = True
                    target._interrupts.extend(interrupts)
            if op.log.is_closed():  # the channel's rules when closed
                op.channel.push(data)
            else:
                op.log.push_nowait(data)
        if not keep:  # (like a process() returning False)
            return ev
        if ev is None:
            if not log.has_cursors():
                log.push_nowait(None)
                return None
            # someone reads the main log: the event protocol._build_event builds
            if self.assign_seq and not log.is_closed():
                return _numbered(log, method, ns, n, data, interrupts)
            ev = _event(method, ns, n, data, interrupts)
        # (an event built below is numbered here as it enters this log)
        if log.is_closed():  # (the mux's rules for a closed main log)
            mux._append(ev)
        elif self.assign_seq:
            PyDict_SetItem(ev, "seq", log.push_seq(ev))  # (ev: a dict, built by _event)
        else:
            log.push_nowait(ev)
        return ev

    cdef object below_via(self, str method, tuple key, _Op via):
        """``below``, for a part a parent's op ``via`` hands over: the route
        that op saw last, while the tree epoch has not moved since it was
        kept (then ``below`` would find that very route: a kept route changes
        only when the epoch moves, or when this mux ends, and a parent hands
        nothing to an ended mux); one pair of dict lookups (and a hash of
        the namespace) fewer per part and per level below the first."""
        epoch = self.shared.epoch
        if via.below_epoch is epoch:  # (an int object: a new one at every change)
            return via.below_ops
        compiled = self.below(method, key)
        if compiled is not _SLOW and self.shared.epoch is epoch:  # (kept by ``below``)
            via.below_ops = compiled
            via.below_epoch = epoch
        return compiled

    cdef object below(self, str method, tuple key):
        """The compiled route of ``method`` parts at namespace ``key``, below
        the scope (see ``StreamMux._below_route``), for this tree epoch."""
        cdef PyObject* found
        epoch = self.shared.epoch
        if epoch != self.below_epoch:
            _forget_stale(self.ops_below, self.shared, self.below_epoch, self.scope)
            self.below_epoch = epoch
        found = ls_dict_get(self.ops_below, method)
        if found == NULL:
            by_ns = self.ops_below[method] = {}
        else:
            by_ns = <object>found
            found = ls_dict_get(by_ns, key)
            if found != NULL:
                return <object>found
        fast = self.mux._below_route(method, key, False)  # (kept here, compiled)
        if fast is None:  # (never kept: see ``StreamMux._below_route``)
            return _SLOW
        compiled = _compile(fast)
        if self.shared.epoch == epoch:
            by_ns[key] = compiled
            self.shared.kept = True
        return compiled


cdef inline bint _nonempty(object seq):
    """``bool(seq)`` of a part's ``interrupts`` (a tuple or a list)."""
    if type(seq) is tuple:
        return PyTuple_GET_SIZE(seq) != 0
    if type(seq) is list:
        return PyList_GET_SIZE(seq) != 0
    return bool(seq)


cdef extern from *:
    """
    /* Dicts of a fixed set of keys made by copying a template, not key by
       key.  ``PyDict_Copy`` of a small combined-table dict clones its keys
       table (one allocation and a memcpy); the copy's values then sit at
       fixed offsets in that table, and are swapped in place for the real
       ones: no hashing, probing or insertion per key.  That is about 840
       instructions fewer for an event's two dicts than eight
       ``PyDict_SetItem`` calls (CPython 3.11).

       The offsets come from the keys-table layout of CPython 3.11-3.13
       (``Include/internal/pycore_dict.h``), which the API does not expose,
       so ``ls_shape_init`` checks them on a copy of the template: each
       computed slot must hold the template's key and its own sentinel
       value, in order.  On any other version, a free-threaded build, or a
       failed check, the shape is left off (``n == 0``) and the caller builds
       its dicts key by key, with the same result.  ``ls_shape_make``
       checks every copy's slots hold the template's sentinels before it
       writes, so a copy made some other way is never written into. */
    #define LS_SHAPE_MAX 5  /* (the most a table of 8 slots holds) */
    typedef struct {
        PyObject *tmpl;
        Py_ssize_t n;
        Py_ssize_t off[LS_SHAPE_MAX];
        PyObject *key[LS_SHAPE_MAX];
        PyObject *sentinel[LS_SHAPE_MAX];
        uint8_t log2_size;
    } ls_shape;


    /* 1: shape ready; 0: left off (build key by key); -1: error set.
       ``tmpl``: a dict of str keys whose values are the placeholders, and
       which the collector tracks (so that its copies are tracked too). */
    static int ls_shape_init(ls_shape *s, PyObject *tmpl) {
        s->n = 0;
        s->tmpl = NULL;
    #if LS_SHAPES
        Py_ssize_t count = PyDict_GET_SIZE(tmpl), pos = 0, i = 0;
        PyObject *key, *value;
        /* (the template must be tracked by the collector, so that its
           copies are: they hold lists and the parts' data) */
        if (count < 1 || count > LS_SHAPE_MAX || !PyObject_GC_IsTracked(tmpl))
            return 0;
        PyObject *copy = PyDict_Copy(tmpl);
        if (copy == NULL)
            return -1;
        PyDictObject *mp = (PyDictObject *)copy;
        ls_keys *keys = (ls_keys *)mp->ma_keys;
        if (mp->ma_values != NULL || keys->dk_nentries != count
                || keys->dk_log2_index_bytes > 3 || keys->dk_log2_size > 3) {
            Py_DECREF(copy);
            return 0;
        }
        Py_ssize_t esize = (keys->dk_kind == 0 ? 3 : 2) * (Py_ssize_t)sizeof(PyObject *);
        char *entries = keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes);
        while (PyDict_Next(tmpl, &pos, &key, &value)) {
            PyObject **slot_key = (PyObject **)(entries + i * esize + esize - 2 * sizeof(PyObject *));
            PyObject **slot_value = slot_key + 1;
            if (*slot_key != key || *slot_value != value) {
                Py_DECREF(copy);
                return 0;
            }
            s->off[i] = (char *)slot_value - (char *)keys;
            s->key[i] = key;
            s->sentinel[i] = value;
            i++;
        }
        s->log2_size = keys->dk_log2_size;
        if (keys->dk_kind == 1)  /* (str keys: the entries ``ls_part_fields`` reads) */
            ls_layout_checked = 1;
        Py_DECREF(copy);
        Py_INCREF(tmpl);
        s->tmpl = tmpl;
        s->n = i;
        return 1;
    #else
        (void)tmpl;
        return 0;
    #endif
    }

    /* A copy of the shape's template holding ``values`` (new references
       taken), or NULL with no error set when the shape is left off or the
       copy's table is not laid out as the shape says (the caller then
       builds the dict key by key), or NULL with an error set. */
    static PyObject *ls_shape_make(ls_shape *s, PyObject **values) {
    #if LS_SHAPES
        if (s->n == 0)
            return NULL;
        PyObject *copy = PyDict_Copy(s->tmpl);
        if (copy == NULL)
            return NULL;
        char *keys = (char *)((PyDictObject *)copy)->ma_keys;
        Py_ssize_t i;
        if (((PyDictObject *)copy)->ma_values != NULL)
            goto other;
        for (i = 0; i < s->n; i++)
            if (*(PyObject **)(keys + s->off[i]) != s->sentinel[i])
                goto other;
        for (i = 0; i < s->n; i++) {
            PyObject **slot = (PyObject **)(keys + s->off[i]);
            Py_INCREF(values[i]);
            *slot = values[i];
            Py_DECREF(s->sentinel[i]);  /* (the template keeps its own) */
        }
        return copy;  /* (tracked: a copy of a tracked dict is) */
    other:
        Py_DECREF(copy);
        return NULL;
    #else
        (void)s; (void)values;
        return NULL;
    #endif
    }

    /* ``d[shape's key i] = value`` for a dict ``ls_shape_make`` made whose
       slot ``i`` still holds the template's sentinel (1), without a lookup;
       0 (nothing done) when the dict is not in that state any more: the
       caller then sets the key the usual way. */
    static int ls_shape_put(ls_shape *s, PyObject *d, Py_ssize_t i, PyObject *value) {
    #if LS_SHAPES
        PyDictObject *mp = (PyDictObject *)d;
        ls_keys *keys = (ls_keys *)mp->ma_keys;
        if (mp->ma_values != NULL || mp->ma_used != s->n || keys->dk_nentries != s->n
                || keys->dk_log2_size != s->log2_size)
            return 0;
        PyObject **slot = (PyObject **)((char *)keys + s->off[i]);
        if (slot[-1] != s->key[i] || slot[0] != s->sentinel[i])
            return 0;
        Py_INCREF(value);
        *slot = value;
        Py_DECREF(s->sentinel[i]);
        return 1;
    #else
        (void)s; (void)d; (void)i; (void)value;
        return 0;
    #endif
    }

    /* -1 when an error is set (for Cython to propagate), else 0. */
    static int ls_error_set(void) { return PyErr_Occurred() ? -1 : 0; }
    """
    ctypedef struct ls_shape:
        Py_ssize_t n
    int ls_shape_init(ls_shape *s, object tmpl) except -1
    PyObject* ls_shape_make(ls_shape *s, PyObject **values)
    int ls_shape_put(ls_shape *s, object d, Py_ssize_t i, object value)
    int ls_error_set() except -1


# the protocol event's dicts, in ``protocol._build_event``'s key order; the
# templates' values are distinct lists (tracked, as the events must be).  An
# event the main log numbers as soon as it is made has its ``seq`` key from
# the start, holding None until ``_numbered`` puts the number there: the same
# keys in the same order as an event numbered by ``d["seq"] = seq``.
cdef ls_shape _EVENT_SHAPE, _NUMBERED_SHAPE, _PARAMS_SHAPE, _PARAMS_INTERRUPTS_SHAPE
ls_shape_init(&_EVENT_SHAPE, {"type": [], "method": [], "params": []})
ls_shape_init(&_NUMBERED_SHAPE, {"type": [], "method": [], "params": [], "seq": None})
ls_shape_init(&_PARAMS_SHAPE, {"namespace": [], "timestamp": [], "data": []})
ls_shape_init(&_PARAMS_INTERRUPTS_SHAPE,
              {"namespace": [], "timestamp": [], "data": [], "interrupts": []})
cdef str _EVENT = "event"


def _event_shapes():
    """How many of the event's four dict shapes are made by copying a
    template (4 on CPython 3.11-3.13; 0 elsewhere: built key by key)."""
    return ((_EVENT_SHAPE.n != 0) + (_NUMBERED_SHAPE.n != 0) + (_PARAMS_SHAPE.n != 0)
            + (_PARAMS_INTERRUPTS_SHAPE.n != 0))


cdef dict _event(str method, object ns, Py_ssize_t n, object data, object interrupts,
                 bint numbered=False):
    """The protocol event of a validated part (``protocol._build_event``);
    ``interrupts`` is the part's (None: it has none).  ``numbered``: for
    ``_numbered``, which numbers it at once."""
    cdef PyObject* values[4]
    cdef PyObject* made
    namespace = list(ns) if n else []
    stamp = _now_ms()
    values[0] = <PyObject*>namespace
    values[1] = <PyObject*>stamp
    values[2] = <PyObject*>data
    if interrupts is None:
        made = ls_shape_make(&_PARAMS_SHAPE, values)
    else:
        values[3] = <PyObject*>interrupts
        made = ls_shape_make(&_PARAMS_INTERRUPTS_SHAPE, values)
    if made != NULL:
        params = <dict>made
        Py_DECREF(params)  # (``made`` was a new reference; ``params`` took one)
    else:
        ls_error_set()
        params = {"namespace": namespace, "timestamp": stamp, "data": data}
        if interrupts is not None:
            params["interrupts"] = interrupts
    values[0] = <PyObject*>_EVENT
    values[1] = <PyObject*>method
    values[2] = <PyObject*>params
    if numbered:
        values[3] = <PyObject*>None
        made = ls_shape_make(&_NUMBERED_SHAPE, values)
    else:
        made = ls_shape_make(&_EVENT_SHAPE, values)
    if made != NULL:
        event = <dict>made
        Py_DECREF(event)
        return event
    ls_error_set()
    return {"type": "event", "method": method, "params": params}


cdef dict _numbered(EventLog log, str method, object ns, Py_ssize_t n, object data,
                    object interrupts):
    """The event of a part, pushed to the open main log ``log`` and numbered
    there (``ev["seq"] = log.push(ev)``)."""
    ev = _event(method, ns, n, data, interrupts, True)
    seq = log.push_seq(ev)
    if not ls_shape_put(&_NUMBERED_SHAPE, ev, 3, seq):
        PyDict_SetItem(ev, "seq", seq)
    return ev


cdef class SyncPump(Puller):
    """One pump step per call; returns ``False`` once the run has ended.

    A ``Puller``: the C event log's cursors call ``pull`` directly."""

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

    cdef object pull(self):
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
                self.run._dispatch_route(route)
        except Exception as exc:
            self.run._end(exc)
            return False
        except BaseException as exc:
            self.run._end(exc)
            raise
        return True


# ------------------------------------------------------------------ interleave

from langstream._eventlog_c cimport Cursor
from langstream._ring cimport ls_ring_peek
from cpython.exc cimport PyErr_SetNone


cdef inline object _pull(object pump):
    """Call a pump: a compiled one through its vtable."""
    if isinstance(pump, Puller):
        return (<Puller>pump).pull()
    return pump()


cdef class Interleaver:
    """``GraphRunStream.interleave(*names)`` in C, for runs on the C event log.

    Same behaviour as the generator ``GraphRunStream._interleave`` (its
    behavioural twin): nothing happens until the first ``next()``, which
    subscribes the projections (``run._interleave_open``: same errors); each
    ``next()`` returns the unread item with the lowest sequence number across
    them as ``(name, item)``, pumping the run while there is none; a
    projection that ended is dropped (its error, if it failed, is raised);
    the subscriptions are released when the iteration ends, fails, is
    closed with ``close()`` or is garbage-collected.  When a projection's log
    is not the C event log it hands over to the generator.
    """

    cdef object run
    cdef tuple names
    cdef list readers     # (name, cursor, channel), as run._interleave_open gave
    cdef list live_names  # per projection still open:
    cdef list live_cursors
    cdef list live_logs
    cdef object pump
    cdef object fallback  # the generator, when it took over
    cdef bint started
    cdef bint done
    cdef bint running

    def __cinit__(self, run, names):
        self.run = run
        self.names = tuple(names)

    def __iter__(self):
        return self

    def __next__(self):
        if self.fallback is not None:
            return next(self.fallback)
        if self.done:
            raise StopIteration
        if self.running:
            raise ValueError("generator already executing")
        self.running = True
        try:
            if not self.started:
                self.started = True
                try:
                    self._open()
                except BaseException:
                    self.done = True
                    raise
                if self.fallback is not None:
                    return next(self.fallback)
            try:
                return self._step()
            except BaseException:  # (StopIteration too: the iteration is over)
                self._release()
                raise
        finally:
            self.running = False

    cdef _open(self):
        readers = self.run._interleave_open(self.names)
        self.readers = readers
        for entry in readers:
            if type(entry[1]) is not Cursor:
                self.fallback = self.run._interleave(self.names, readers)
                return
        self.live_names = [entry[0] for entry in readers]
        self.live_cursors = [entry[1] for entry in readers]
        self.live_logs = [(<Cursor>entry[1]).log for entry in readers]
        self.pump = self.run._mux._pump_fn

    cdef object _step(self):
        cdef Py_ssize_t i, n, best
        cdef uint64_t seq, best_seq = 0
        cdef bint ended
        cdef Cursor cursor
        cdef EventLog log
        cdef list names = self.live_names
        cdef list cursors = self.live_cursors
        cdef list logs = self.live_logs
        pump = self.pump
        while True:
            n = len(cursors)
            if n == 0:
                raise StopIteration
            # one pass: the projection whose next item is oldest, and
            # whether one has ended (a closed log with no unread item)
            best = -1
            ended = False
            for i in range(n):
                cursor = <Cursor>cursors[i]
                if cursor.log is not None and ls_ring_peek(&cursor.log.ring, &cursor.c, &seq):
                    if best < 0 or seq < best_seq:
                        best = i
                        best_seq = seq
                elif best < 0 and (<EventLog>logs[i]).is_closed():  # (moot once one has an item)
                    ended = True
            if best >= 0:
                return (names[best], next(cursors[best]))
            # nothing to read: drop the projections that ended, then pump
            if ended:
                i = 0
                while i < len(logs):
                    log = <EventLog>logs[i]
                    if log.is_closed():
                        error = log.error_
                        if error is not None:
                            raise error.with_traceback(self.run._mux._failed_tb(error))
                        del names[i]
                        del cursors[i]
                        del logs[i]
                    else:
                        i += 1
            n = len(cursors)
            if n and (pump is None or not _pull(pump)):
                for i in range(n):
                    cursor = <Cursor>cursors[i]
                    if cursor.log is not None and ls_ring_peek(&cursor.log.ring, &cursor.c, &seq):
                        break
                else:  # nothing to read
                    for i in range(n):
                        if not (<EventLog>logs[i]).is_closed():
                            raise StopIteration  # (the generator's ``break``)
                    # every one has ended: the next round drops them

    cdef void _release(self):
        """End the iteration: close the cursors, release the subscriptions."""
        self.done = True
        readers = self.readers
        self.readers = None
        self.live_names = self.live_cursors = self.live_logs = None
        if readers is None:
            return
        for entry in readers:
            try:
                entry[1].close()
            except BaseException:  # (a C cursor's close never raises)
                pass
        for entry in readers:
            try:
                entry[2]._subscribed = False
            except BaseException:
                pass

    def close(self):
        """Stop the iteration and release the subscriptions (idempotent)."""
        if self.fallback is not None:
            self.fallback.close()
            return
        if self.running:
            raise ValueError("generator already executing")
        self._release()

    def __del__(self):
        if self.fallback is None and self.readers is not None:
            self._release()


# ------------------------------------------------------------ async reader step
#
# ``AsyncReaderStep`` is ``await _AsyncPump.step(reader)`` (run_stream.py) for
# an unbounded projection reader of a run on the C event log, compiled for
# the common case: the pump is free and nothing is pending (no handle
# settling, no postponed forward, no bounded log, no consumer to let run
# first: one the last step woke is still to run).  It also takes the
# step's bookkeeping for that case: after a step that woke consumers it
# lets them run first only when something else is ready to run (else it
# clears the flag and pulls), and it forgets the task that last passed the
# pump on (that task itself steps aside: the Python step).  Then it pulls
# the graph's next part itself, dispatches it with the compiled
# ``PartDispatcher`` and returns the reader's item, as the step's inner
# loop does; it drives the graph's ``__anext__()`` awaitable directly, so
# an item costs no coroutine frame.  In every other case it hands over to
# the Python step: before any change (``pump.step(reader)``, a fresh step),
# or in the middle of its step (``pump.resume(...)``: the event path of a
# part, or an error or cancellation raised by the pull or the dispatch),
# after which it only forwards.  The pump's state is read and written in its
# ``__slots__`` directly (their offsets are looked up once per class), so the
# Python step and this one share one state, field for field.

cimport cython
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
    int T_OBJECT_EX
    int READONLY

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef extern from *:
    """
    /* 1: the iterator yielded *out; 0: it returned *out; -1: it raised. */
    static int ls_send(PyObject *iter, PyObject *arg, PyObject **out) {
    #if PY_VERSION_HEX >= 0x030A0000
        PySendResult r = PyIter_Send(iter, arg, out);
        return r == PYGEN_NEXT ? 1 : (r == PYGEN_RETURN ? 0 : -1);
    #else
        if (arg == Py_None && PyIter_Check(iter))
            *out = Py_TYPE(iter)->tp_iternext(iter);
        else
            *out = PyObject_CallMethod(iter, "send", "O", arg);
        if (*out != NULL)
            return 1;
        return _PyGen_FetchStopIterationValue(out) == 0 ? 0 : -1;
    #endif
    }
    """
    int ls_send(object it, object arg, PyObject** out) except -1

cdef extern from *:
    """
    /* The type's am_send (Python >= 3.10): an awaiting coroutine gets the
       result without a StopIteration (PyIter_Send uses it). */
    static void ls_set_am_send(PyTypeObject *t, void *fn) {
    #if PY_VERSION_HEX >= 0x030A0000
        if (t->tp_as_async != NULL)
            t->tp_as_async->am_send = (sendfunc)fn;
    #endif
    }
    """
    void ls_set_am_send(PyTypeObject* t, void* fn)

cdef extern from *:
    """
    /* aiter.__anext__() through the type's slot (no bound method). */
    static PyObject *ls_anext(PyObject *aiter) {
        PyTypeObject *t = Py_TYPE(aiter);
        if (t->tp_as_async != NULL && t->tp_as_async->am_anext != NULL)
            return t->tp_as_async->am_anext(aiter);
        return PyObject_CallMethod(aiter, "__anext__", NULL);
    }

    /* Cython's coroutine type (``ls_set_cy_coro``): driven directly, as
       CPython's own coroutines are. */
    static PyTypeObject *ls_cy_coro = NULL;
    static void ls_set_cy_coro(PyObject *t) { ls_cy_coro = (PyTypeObject *)t; }

    /* What ``await aw`` iterates: ``aw`` itself for a coroutine (CPython's
       or Cython's), a generator-based coroutine or an object whose
       ``__await__`` is itself (an async generator's ``__anext__()``); else
       its ``__await__()`` (a Future's iterator), checked as ``await``
       checks it.  NULL with TypeError when ``await`` would refuse it. */
    static PyObject *ls_await_iter(PyObject *aw) {
        PyTypeObject *t = Py_TYPE(aw);
        unaryfunc getter;
        PyObject *it;
        if (PyCoro_CheckExact(aw) || t == ls_cy_coro) {
            Py_INCREF(aw);
            return aw;
        }
        if (PyGen_CheckExact(aw)) {
            PyObject *code = PyObject_GetAttrString(aw, "gi_code");
            long flags = 0;
            if (code == NULL)
                return NULL;
            if (PyCode_Check(code))
                flags = ((PyCodeObject *)code)->co_flags;
            Py_DECREF(code);
            if (flags & CO_ITERABLE_COROUTINE) {
                Py_INCREF(aw);
                return aw;
            }
        }
        getter = t->tp_as_async != NULL ? t->tp_as_async->am_await : NULL;
        if (getter == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "object %.100s can't be used in 'await' expression",
                         t->tp_name);
            return NULL;
        }
        if (getter == PyObject_SelfIter && PyIter_Check(aw)) {
            Py_INCREF(aw);
            return aw;
        }
        it = getter(aw);
        if (it == NULL)
            return NULL;
        if (PyCoro_CheckExact(it) || Py_TYPE(it) == ls_cy_coro) {
            Py_DECREF(it);
            PyErr_SetString(PyExc_TypeError, "__await__() returned a coroutine");
            return NULL;
        }
        if (!PyIter_Check(it)) {
            PyErr_Format(PyExc_TypeError,
                         "__await__() returned non-iterator of type '%.100s'",
                         Py_TYPE(it)->tp_name);
            Py_DECREF(it);
            return NULL;
        }
        return it;
    }

    /* aiter.__anext__(), as ``await`` iterates it; NULL with the error set. */
    static PyObject *ls_anext_iter(PyObject *aiter) {
        PyObject *aw = ls_anext(aiter), *it;
        if (aw == NULL)
            return NULL;
        it = ls_await_iter(aw);
        Py_DECREF(aw);
        return it;
    }
    """
    void ls_set_cy_coro(object t)
    # (unchecked: -1 / NULL leave the error set for the caller, which takes
    # it with ``ls_reraise`` only when there is one, so the per-item path
    # keeps no exception state of its own)
    int ls_send_raw "ls_send" (object it, object arg, PyObject** out)
    PyObject* ls_anext_iter(object aiter)


async def _probe():
    pass


def _cython_coroutine_type():
    coro = _probe()
    coro.close()
    return type(coro)


ls_set_cy_coro(_cython_coroutine_type())

cdef extern from *:
    """
    /* next(it) unchecked: NULL with the error set (StopIteration when the
       iterator just ended, as next() raises it). */
    static PyObject *ls_next_raw(PyObject *it) {
        PyObject *r = Py_TYPE(it)->tp_iternext(it);
        if (r == NULL && !PyErr_Occurred())
            PyErr_SetNone(PyExc_StopIteration);
        return r;
    }
    /* Raise the error already set (the caller got NULL / -1 unchecked). */
    static int ls_reraise(void) { return -1; }
    """
    PyObject* ls_next_raw(object it)
    int ls_reraise() except -1


class _Slotted:
    __slots__ = ("x",)

cdef object _MEMBER_DESCRIPTOR = type(_Slotted.__dict__["x"])
cdef object _AGAIN = object()  # (a pump step ended without the reader's item)
# what ``_AsyncPump.resume`` returns when the step it finished gave the
# reader nothing: the compiled step goes on
RESUME_AGAIN = _AGAIN

# what ``AsyncReaderStep`` hands ``_AsyncPump.resume`` over for
cdef int _RESUME_ROUTE = 0  # a part for the event path: (event, method, at_scope)
cdef int _RESUME_END = 1    # the graph is exhausted
cdef int _RESUME_ERROR = 2  # the pull or the dispatch raised this


cdef dict _LATEST_OFFSETS = {}  # mux class -> where it keeps ``_latest`` (or 0)


cdef Py_ssize_t _latest_offset(object cls) except -1:
    """Where instances of the mux class ``cls`` keep ``_latest``: its slot,
    or 0 when a subclass made it something else (then it is set as an
    attribute)."""
    found = _LATEST_OFFSETS.get(cls)
    if found is None:
        try:
            found = _slot_offset(cls, "_latest")
        except TypeError:
            found = 0
        _LATEST_OFFSETS[cls] = found
    return found


# where a ValuesTransformer keeps ``_latest`` (the values op runs only for
# that exact class)
cdef Py_ssize_t _values_latest = 0


cdef object _GETSET_DESCRIPTOR = type(type.__dict__["__dict__"])


cdef Py_ssize_t _declared_offset(object cls, str name) except -1:
    """Where instances of ``cls``, an extension type Cython compiled from a
    package module, keep the attribute ``name`` its ``.pxd`` declares
    ``cdef public object`` (e.g. ``run_stream._AsyncPump``).

    Cython stores such an attribute as an object pointer in the instance
    and exposes it through a getset descriptor, which does not say where.
    So it is found once per class: a marker set through the descriptor on
    a fresh instance is looked for among the instance's pointers, and the
    place is checked with a second marker before it is trusted."""
    cdef Py_ssize_t size = (<PyTypeObject*>cls).tp_basicsize
    cdef Py_ssize_t off, found = -1
    cdef PyObject** slots
    if not isinstance(cls, type) or (<PyTypeObject*>cls).tp_dictoffset != 0:
        raise TypeError(f"{cls!r}.{name}: not a compiled class without an instance dict")
    probe = cls.__new__(cls)
    slots = <PyObject**><PyObject*>probe
    marker = object()
    setattr(probe, name, marker)
    for off in range(<Py_ssize_t>(sizeof(PyObject) // sizeof(PyObject*)),
                     size // <Py_ssize_t>sizeof(PyObject*)):
        if slots[off] == <PyObject*>marker:
            if found != -1:
                raise TypeError(f"{cls.__name__}.{name}: found twice in the instance")
            found = off
    if found == -1:
        raise TypeError(f"{cls.__name__}.{name} is not kept in the instance")
    marker = object()
    setattr(probe, name, marker)
    if slots[found] != <PyObject*>marker or getattr(probe, name) is not marker:
        raise TypeError(f"{cls.__name__}.{name} is not kept in one place")
    setattr(probe, name, None)
    return found * <Py_ssize_t>sizeof(PyObject*)


cdef Py_ssize_t _slot_offset(object cls, str name) except -1:
    """Where the ``__slots__`` attribute ``name`` of ``cls`` lives in its
    instances: a slot of a Python class (its member descriptor says where),
    or an attribute a compiled module declared in its ``.pxd`` (see
    ``_declared_offset``)."""
    cdef PyMemberDef* member
    descr = None
    for klass in cls.__mro__:
        descr = klass.__dict__.get(name)
        if descr is not None:
            break
    if type(descr) is _GETSET_DESCRIPTOR and descr.__objclass__ is klass:
        return _declared_offset(klass, name)
    if type(descr) is not _MEMBER_DESCRIPTOR:
        raise TypeError(f"{cls.__name__}.{name} is not a __slots__ attribute")
    member = (<PyMemberDescrObject*><PyObject*>descr).d_member
    if member.type != T_OBJECT_EX or member.flags & READONLY:
        raise TypeError(f"{cls.__name__}.{name} is not a writable object slot")
    return member.offset


cdef inline bint _true(object value) except -1:
    """``bool(value)`` for the pump's state (bools, ints, lists, None) without
    a call for those."""
    if value is True:
        return True
    if value is False or value is None:
        return False
    if type(value) is list:
        return PyList_GET_SIZE(value) != 0
    if type(value) is int:
        return value != 0
    return bool(value)


cdef inline object _get(object obj, Py_ssize_t offset):
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>obj) + offset))[0]
    if value == NULL:
        raise AttributeError(offset)
    return <object>value


cdef extern from *:
    """
    /* The pump's tests of its own slots (the flags and counters of an
       ``_AsyncPump`` and its ``_Shared``), in place: no reference taken.
       An unset slot raises AttributeError, as reading it would. */
    static PyObject *ls_zero = NULL;  /* the int 0 (CPython's cached one) */
    static int ls_slot_unset(void) {
        PyErr_SetString(PyExc_AttributeError, "an _AsyncPump slot is unset");
        return -1;
    }
    static CYTHON_INLINE int ls_slot_true(PyObject *obj, Py_ssize_t offset) {
        PyObject *v = *(PyObject **)((char *)obj + offset);
        if (v == Py_True) return 1;
        if (v == Py_False || v == Py_None) return 0;
        if (v == NULL) return ls_slot_unset();
        if (PyList_CheckExact(v)) return PyList_GET_SIZE(v) != 0;
        if (v == ls_zero) return 0;
        return PyObject_IsTrue(v);
    }
    static CYTHON_INLINE int ls_slot_is(PyObject *obj, Py_ssize_t offset, PyObject *what) {
        PyObject *v = *(PyObject **)((char *)obj + offset);
        if (v == NULL) return ls_slot_unset();
        return v == what;
    }
    /* ``a.<slot> != b.<slot>``: the same object is equal (a counter is
       copied from one slot to the other). */
    static CYTHON_INLINE int ls_slots_differ(PyObject *a, Py_ssize_t offset_a,
                                             PyObject *b, Py_ssize_t offset_b) {
        PyObject *x = *(PyObject **)((char *)a + offset_a);
        PyObject *y = *(PyObject **)((char *)b + offset_b);
        if (x == y) return x == NULL ? ls_slot_unset() : 0;
        if (x == NULL || y == NULL) return ls_slot_unset();
        return PyObject_RichCompareBool(x, y, Py_NE);
    }
    """
    PyObject* ls_zero
    int _true_at "ls_slot_true" (object obj, Py_ssize_t offset) except -1
    int _is_at "ls_slot_is" (object obj, Py_ssize_t offset, object what) except -1
    int _differ_at "ls_slots_differ" (object a, Py_ssize_t offset_a, object b,
                                      Py_ssize_t offset_b) except -1

_zero = 0
ls_zero = <PyObject*>_zero  # (a module global keeps it)


cdef inline void _put(object obj, Py_ssize_t offset, object value):
    cdef PyObject** slot = <PyObject**>((<char*><PyObject*>obj) + offset)
    cdef PyObject* old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject*>value
    Py_XDECREF(old)


cdef object _deque = deque


cdef bint _loop_idle(object loop, object but) except -1:
    """``run_stream._loop_idle`` (its compiled twin): nothing is ready to
    run on ``loop`` (an asyncio loop's ready queue is empty) but the
    callback handle ``but``; False when it cannot tell."""
    ready = getattr(loop, "_ready", None)
    if type(ready) is not _deque:
        return False
    n = len(ready)
    return n == 0 or (n == 1 and ready[0] is but)


cdef extern from *:
    """
    /* The C function of a method descriptor that takes no arguments (as
       ``method_vectorcall_NOARGS`` calls it), or NULL for anything else. */
    static PyCFunction ls_noargs_function(PyObject *descr) {
        PyMethodDef *def;
        if (Py_TYPE(descr) != &PyMethodDescr_Type)
            return NULL;
        def = ((PyMethodDescrObject *)descr)->d_method;
        if ((def->ml_flags & ~METH_COEXIST) != METH_NOARGS)
            return NULL;
        return def->ml_meth;
    }
    """
    ctypedef PyObject* (*PyCFunction)(PyObject*, PyObject*)
    PyCFunction ls_noargs_function(object descr)


# asyncio's future class (its C twin where the interpreter has one) and its
# ``done``: a waiter of that exact class is asked through the method itself,
# without looking ``done`` up on the instance first; through its C function
# where it has one (asyncio's C future: a call about 200 instructions
# shorter than through the descriptor, and M async asks twice a part)
from asyncio import Future as _Future
cdef object _future_done = _Future.done
cdef PyCFunction _future_done_c = ls_noargs_function(_future_done)


cdef inline bint _done(object waiter) except -1:
    """``waiter.done()``."""
    cdef PyObject* r
    if type(waiter) is _Future:
        if _future_done_c != NULL:
            r = _future_done_c(<PyObject*>waiter, NULL)
            if r == NULL:
                ls_error_set()  # (raises what ``done()`` raised)
            result = <object>r
            Py_DECREF(result)
            return result is True
        return _future_done(waiter) is True
    return bool(waiter.done())


def _future_done_is_direct():
    """Whether ``_done`` calls asyncio's C future's ``done`` directly."""
    return _future_done_c != NULL


def _waiter_done(waiter):
    """``_done(waiter)``, for the tests."""
    return _done(waiter)


cdef bint _any_reader_ready(object readers) except -1:
    """``_AsyncPump.any_reader_ready()`` (its compiled twin): whether a
    waiting reader of ``readers`` (``(future, reader)`` pairs) has an item,
    an ended log or a future already done."""
    cdef uint64_t seq
    if not _true(readers):
        return False
    for entry in readers:
        waiter, reader = entry
        if type(reader) is _READER:  # (its slots, and the C log's state, read directly)
            cursor = _get(reader, _reader_cursor)
            log = _get(reader, _reader_log)
            if type(cursor) is Cursor and type(log) is EventLog:
                if ((<Cursor>cursor).log is not None
                        and ls_ring_peek(&(<Cursor>cursor).log.ring, &(<Cursor>cursor).c, &seq)):
                    return True
                if (<EventLog>log).is_closed() or _done(waiter):
                    return True
                continue
        if reader._cursor.pending or reader._log.closed or _done(waiter):
            return True
    return False


cdef class _PumpLayout:
    """The slot offsets of one ``_AsyncPump`` class (and of its ``_Shared``)."""

    cdef Py_ssize_t exhausted, pumping, pump_task, loop, yield_next, graph_aiter
    cdef Py_ssize_t waiters, readers, settled, children_seen, settle, children, handoff
    cdef Py_ssize_t passer

    def __cinit__(self, type pump_cls, type shared_cls):
        self.exhausted = _slot_offset(pump_cls, "exhausted")
        self.pumping = _slot_offset(pump_cls, "pumping")
        self.pump_task = _slot_offset(pump_cls, "pump_task")
        self.loop = _slot_offset(pump_cls, "loop")
        self.yield_next = _slot_offset(pump_cls, "yield_next")
        self.graph_aiter = _slot_offset(pump_cls, "graph_aiter")
        self.waiters = _slot_offset(pump_cls, "waiters")
        self.readers = _slot_offset(pump_cls, "readers")
        self.settled = _slot_offset(pump_cls, "settled")
        self.children_seen = _slot_offset(pump_cls, "children_seen")
        self.settle = _slot_offset(pump_cls, "settle")
        self.handoff = _slot_offset(pump_cls, "handoff")
        self.passer = _slot_offset(pump_cls, "passer")
        self.children = _slot_offset(shared_cls, "children")


cdef dict _LAYOUTS = {}


cdef class ReaderSteps:
    """``_AsyncPump.reader_steps()``: the maker of one reader's
    ``AsyncReaderStep`` (one per item), ``make(reader)``."""

    cdef object pump
    cdef object shared
    cdef list deferred
    cdef list bounded
    cdef PartDispatcher dispatcher
    cdef object task_of
    cdef dict tasks  # the loop -> task dict when ``task_of`` is its ``get``
    cdef _PumpLayout layout
    cdef Cursor cursor  # the reader's (fixed for it), once seen
    cdef EventLog log

    def __cinit__(self, pump, PartDispatcher dispatcher, task_of):
        key = (type(pump), type(pump.shared))
        layout = _LAYOUTS.get(key)
        if layout is None:
            layout = _LAYOUTS[key] = _PumpLayout(*key)
        self.layout = <_PumpLayout>layout
        self.pump = pump
        self.shared = pump.shared
        self.deferred = pump.deferred
        self.bounded = pump.bounded
        self.dispatcher = dispatcher
        self.task_of = task_of
        owner = getattr(task_of, "__self__", None)
        if type(owner) is dict and getattr(task_of, "__name__", None) == "get":
            self.tasks = <dict>owner

    def __call__(self, reader):
        """The awaitable of ``reader``'s next item (always the same reader)."""
        return self.make(reader)

    cdef object make(self, object reader):
        if self.cursor is None:
            cursor = reader._cursor
            log = reader._log
            if type(cursor) is not Cursor or type(log) is not EventLog:
                return self.pump.step(reader)  # (a log of the pure backend)
            self.cursor = <Cursor>cursor
            self.log = <EventLog>log
        cdef AsyncReaderStep step = AsyncReaderStep.__new__(AsyncReaderStep)
        step.steps = self
        step.reader = reader
        step.cursor = self.cursor
        step.log = self.log
        return step


# what the Python step returns at a reader's end instead of raising
# StopAsyncIteration (``_AsyncPump.step``'s ``end``): the compiled step
# raises it where the reader awaits, with no traceback entry for each frame
# it would otherwise cross
cdef object _ENDED = object()
READER_ENDED = _ENDED


@cython.final
@cython.freelist(8)
cdef class AsyncReaderStep:
    """The awaitable of one ``__anext__`` of an unbounded projection reader
    (see the notes above): returns the reader's next item."""

    cdef ReaderSteps steps
    cdef object reader
    cdef Cursor cursor
    cdef EventLog log
    cdef object aw       # the graph's __anext__() awaitable under way (state 1)
    cdef object inner    # the Python coroutine it handed over to (state 2)
    cdef int state       # 0 not started; 1 pulling; 2 handed over; 3 done

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._out(None, None)

    def send(self, value):
        return self._out(value, None)

    def throw(self, typ, val=None, tb=None):
        if val is None:
            exc = typ() if isinstance(typ, type) else typ
        elif isinstance(val, BaseException):
            exc = val
        else:
            exc = typ(val)
        if tb is not None:
            exc = exc.with_traceback(tb)
        return self._out(None, exc)

    def close(self):
        """Like a coroutine's ``close()``: ``GeneratorExit`` where it waits
        (pulling: the Python step's handling of it ends the step)."""
        cdef ReaderSteps s = self.steps
        state = self.state
        self.state = 3
        if state == 2:
            inner = self.inner
            self.inner = None
            inner.close()
        elif state == 1:
            aw = self.aw
            self.aw = None
            try:
                close = getattr(aw, "close", None)  # (as ``await`` closes it)
                if close is not None:
                    close()
            finally:
                coro = s.pump.resume(self.reader, _RESUME_ERROR, GeneratorExit(), True)
                try:
                    coro.send(None)
                except (GeneratorExit, StopIteration):
                    pass
                else:
                    coro.close()
                    raise RuntimeError("coroutine ignored GeneratorExit")

    def __del__(self):
        if self.state == 1 or self.state == 2:
            self.close()

    cdef object _out(self, object value, object exc):
        out = self._step(value, exc)
        if self.state == 3:
            if out is _ENDED:
                raise StopAsyncIteration
            raise StopIteration(out)
        return out

    cdef object _step(self, object value, object exc):
        if self.state == 2:
            out = self._forward(value, exc)
        elif self.state == 1:
            out = self._drive(value, exc)
        elif self.state == 0:
            if exc is not None:
                self.state = 3
                raise exc
            out = _AGAIN
        else:
            raise RuntimeError("cannot reuse already awaited coroutine")
        while out is _AGAIN:
            out = self._begin()
        return out

    cdef object _forward(self, object value, object exc):
        cdef PyObject* res = NULL
        cdef int r
        inner = self.inner
        try:
            if exc is not None:
                try:
                    return inner.throw(exc)
                except StopIteration as stop:  # (it returned after all)
                    out = stop.value
            else:
                r = ls_send(inner, value, &res)
                out = <object>res
                Py_XDECREF(res)
                if r == 1:
                    return out
        except BaseException:
            self.state = 3
            self.inner = None
            raise
        self.inner = None
        # (``resume`` ended the step it finished without an item for the
        # reader: the next step is this one's again)
        self.state = 0 if out is _AGAIN else 3
        return out

    cdef object _hand_over(self, object coro):
        self.inner = coro
        self.state = 2
        return self._forward(None, None)

    cdef object _hand_over_resume(self, int kind, object what, bint pulling):
        cdef ReaderSteps s = self.steps
        return self._hand_over(s.pump.resume(self.reader, kind, what, pulling))

    cdef object _begin(self):
        """Between pump steps: the reader's item, or a step of its own."""
        cdef ReaderSteps s = self.steps
        cdef _PumpLayout lay = s.layout
        cdef uint64_t seq
        cdef PyObject* found
        cdef Cursor cursor = self.cursor
        pump = s.pump
        if cursor.log is not None and ls_ring_peek(&cursor.log.ring, &cursor.c, &seq):
            self.state = 3
            return next(cursor)
        if (self.log.is_closed() or _true_at(pump, lay.exhausted)
                or _true_at(pump, lay.pumping) or _true_at(pump, lay.settle)
                or _differ_at(s.shared, lay.children, pump, lay.children_seen)
                or s.deferred or s.bounded):
            return self._hand_over(pump.step(self.reader, _ENDED))
        loop = _get(pump, lay.loop)
        graph_aiter = _get(pump, lay.graph_aiter)
        if loop is None or graph_aiter is None:
            return self._hand_over(pump.step(self.reader, _ENDED))
        # after a step that woke other consumers, the Python step lets them
        # run first; with nothing else ready to run, it only clears the flag
        # and pulls (done here too, below, once this step is sure to pull)
        yield_next = _true_at(pump, lay.yield_next)
        if yield_next and not _loop_idle(loop, _get(pump, lay.handoff)):
            return self._hand_over(pump.step(self.reader, _ENDED))
        if s.tasks is not None:
            found = ls_dict_get(s.tasks, loop)
            task = <object>found if found != NULL else None
        else:
            task = s.task_of(loop)
        if task is None:  # (not a task of the run's loop: the step says why)
            return self._hand_over(pump.step(self.reader, _ENDED))
        if not _is_at(pump, lay.passer, None):
            if _is_at(pump, lay.passer, task):  # (its last step woke readers: it steps aside)
                return self._hand_over(pump.step(self.reader, _ENDED))
            _put(pump, lay.passer, None)  # (as the Python step forgets it)
        _put(pump, lay.pumping, True)
        _put(pump, lay.pump_task, task)
        if yield_next:
            _put(pump, lay.yield_next, False)
        found = ls_anext_iter(graph_aiter)
        if found == NULL:  # (a StopAsyncIteration here ends the graph too)
            return self._failed(_RESUME_END, True)
        self.aw = <object>found
        Py_XDECREF(found)
        self.state = 1
        return self._drive(None, None)

    cdef object _failed(self, int kind, bint pulling):
        """The pull (``_RESUME_END``: its ``StopAsyncIteration`` is the
        graph's end) or the read (``_RESUME_ERROR``) just failed, its error
        set: hand it over to the Python step from inside the ``except`` that
        takes it, as the Python step's own ``except`` handles it."""
        self.aw = None
        try:
            ls_reraise()
        except StopAsyncIteration as end:  # the graph's own exhaustion
            if kind == _RESUME_END:
                return self._hand_over_resume(_RESUME_END, None, pulling)
            return self._hand_over_resume(_RESUME_ERROR, end, pulling)
        except BaseException as error:
            return self._hand_over_resume(_RESUME_ERROR, error, pulling)

    cdef void _end_step(self) except *:
        """The ``finally`` of the Python step: ``_AsyncPump.end_step()``, in C
        for the cases where it only lets go of the pump (no waiter, nothing
        settling, no waiting reader to wake: then it keeps every reader and
        schedules the hand-off to them, once)."""
        cdef ReaderSteps s = self.steps
        cdef _PumpLayout lay = s.layout
        pump = s.pump
        if _true_at(pump, lay.waiters) or not _is_at(pump, lay.settled, None):
            pump.end_step()
            return
        cdef bint reading = _true_at(pump, lay.readers)
        if reading and (_true_at(pump, lay.exhausted)
                        or _any_reader_ready(_get(pump, lay.readers))):
            pump.end_step()
            return
        _put(pump, lay.pumping, False)
        _put(pump, lay.pump_task, None)
        if reading and not _true_at(pump, lay.handoff):
            pump.schedule_handoff()

    cdef object _drive(self, object value, object exc):
        """Pulling (state 1): advance the graph's awaitable with ``value``
        or ``exc``; dispatch each part it returns, until the reader has an
        item (returned), the awaitable waits (what it yields is returned),
        the step ends without the item (``_AGAIN``) or hands over."""
        cdef ReaderSteps s = self.steps
        cdef _PumpLayout lay = s.layout
        cdef PyObject* res
        cdef int r
        cdef uint64_t seq
        cdef Cursor cursor = self.cursor
        pump = s.pump
        while True:
            res = NULL
            if exc is not None:
                thrown = exc
                exc = None
                try:
                    try:
                        throw = getattr(self.aw, "throw", None)
                        if throw is None:  # (``await`` raises it where it waits)
                            raise thrown
                        return throw(thrown)
                    except StopIteration as stop:
                        part = stop.value
                except StopAsyncIteration:  # the graph's own exhaustion
                    self.aw = None
                    return self._hand_over_resume(_RESUME_END, None, True)
                except BaseException as error:
                    self.aw = None
                    return self._hand_over_resume(_RESUME_ERROR, error, True)
            else:
                r = ls_send_raw(self.aw, value, &res)
                if r == -1:
                    return self._failed(_RESUME_END, True)
                part = <object>res
                Py_XDECREF(res)
                if r == 1:  # it waits: so does the task
                    return part
            self.aw = None
            try:
                route = s.dispatcher.dispatch(part)
            except BaseException as error:
                return self._hand_over_resume(_RESUME_ERROR, error, True)
            if route is not None:
                return self._hand_over_resume(_RESUME_ROUTE, route, True)
            if cursor.log is not None and ls_ring_peek(&cursor.log.ring, &cursor.c, &seq):
                res = ls_next_raw(cursor)
                if res == NULL:
                    return self._failed(_RESUME_ERROR, False)
                item = <object>res
                Py_XDECREF(res)
                self._end_step()
                self.state = 3
                return item
            if (_true_at(pump, lay.waiters) or s.deferred or self.log.is_closed()
                    or _differ_at(s.shared, lay.children, pump, lay.children_seen)
                    or (_true_at(pump, lay.readers)
                        and _any_reader_ready(_get(pump, lay.readers)))
                    or _true_at(pump, lay.yield_next) or s.bounded):
                self._end_step()
                self.state = 0
                return _AGAIN
            graph_aiter = _get(pump, lay.graph_aiter)
            if graph_aiter is None:
                self._end_step()
                self.state = 0
                return _AGAIN
            # nothing to read for anyone: pull the next part at once
            res = ls_anext_iter(graph_aiter)
            if res == NULL:
                return self._failed(_RESUME_END, True)
            self.aw = <object>res
            Py_XDECREF(res)
            value = None


cdef int _reader_step_send(object self, object arg, PyObject** out) except -1:
    """``AsyncReaderStep``'s am_send: 1 with what it yields, 0 with the
    reader's item, -1 with its error set (``PySendResult``)."""
    cdef AsyncReaderStep step = <AsyncReaderStep>self
    value = step._step(arg, None)
    if value is _ENDED:  # (set here, not raised: no traceback entry to make)
        PyErr_SetNone(StopAsyncIteration)
        return -1
    Py_INCREF(value)
    out[0] = <PyObject*>value
    return 0 if step.state == 3 else 1


ls_set_am_send(<PyTypeObject*>AsyncReaderStep, <void*>_reader_step_send)


_values_latest = _slot_offset(ValuesTransformer, "_latest")

# where a reader's ``_step``, ``_channel`` and ``_call`` live
cdef type _READER = _AsyncChannelIterator
cdef Py_ssize_t _reader_step = _slot_offset(_READER, "_step")
cdef Py_ssize_t _reader_channel = _slot_offset(_READER, "_channel")
cdef Py_ssize_t _reader_call = _slot_offset(_READER, "_call")
cdef Py_ssize_t _reader_cursor = _slot_offset(_READER, "_cursor")
cdef Py_ssize_t _reader_log = _slot_offset(_READER, "_log")
# and where a channel keeps ``_arequest_more``
cdef Py_ssize_t _channel_more = _slot_offset(StreamChannel, "_arequest_more")


def reader_anext(self):
    """The compiled twin of ``channel._AsyncChannelIterator.__anext__`` (the
    same three lines, reading the reader's slots directly): hand the reader
    to its run's pump step directly when the pump reads for it (its
    ``ReaderSteps``, called in C), else take the general ``_anext``.
    ``langstream.run_stream`` installs it on the class when this module is
    in use (``install_reader_anext``)."""
    return _reader_anext(self)


cdef object _reader_anext(object self):
    """``reader_anext``'s body; also the class's ``am_anext`` slot (see
    ``install_reader_anext``)."""
    if type(self) is not _READER:  # (a subclass: its own slots, if any)
        if self._step is self._channel._arequest_more:
            return self._call(self)
        return self._anext()
    channel = _get(self, _reader_channel)
    if type(channel) is StreamChannel:
        more = _get(channel, _channel_more)
    else:  # (a subclass: its own attribute, if it made one)
        more = channel._arequest_more
    if _get(self, _reader_step) is more:
        call = _get(self, _reader_call)
        if type(call) is ReaderSteps:
            return (<ReaderSteps>call).make(self)
        return call(self)
    return self._anext()


cdef extern from *:
    """
    /* A heap type's am_anext: ``async for`` (GET_ANEXT) calls it directly,
       without looking ``__anext__`` up on the type and calling it. */
    static void ls_set_am_anext(PyTypeObject *t, void *fn) {
        if (t->tp_as_async != NULL)
            t->tp_as_async->am_anext = (unaryfunc)fn;
    }
    """
    void ls_set_am_anext(PyTypeObject* t, void* fn)


def install_reader_anext():
    """Make ``reader_anext`` the ``__anext__`` of ``channel._AsyncChannelIterator``
    (``channel._set_anext``) and its C body the class's ``am_anext`` slot,
    which ``async for`` calls directly.  Assigning ``__anext__`` on the class
    again (e.g. ``channel._PY_ANEXT`` back) resets the slot as CPython does
    for any class attribute; subclasses look their ``__anext__`` up as usual."""
    _set_anext(reader_anext)
    if _READER.__dict__.get("__anext__") is reader_anext:
        ls_set_am_anext(<PyTypeObject*>_READER, <void*>_reader_anext)
