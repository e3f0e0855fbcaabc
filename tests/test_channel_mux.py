"""StreamChannel and StreamMux (DESIGN.md "Projections, mux, transformers").

Every test takes the ``backend`` fixture so it runs on both event-log backends.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from langstream import (
    CheckpointsTransformer,
    CustomTransformer,
    DebugTransformer,
    StreamChannel,
    StreamMux,
    StreamTransformer,
    TasksTransformer,
    UpdatesTransformer,
    ValuesTransformer,
    convert_to_protocol_event,
)


def ev(method: str, data: Any = None, ns=()) -> Dict[str, Any]:
    part = {"type": method, "ns": tuple(ns), "data": data}
    if method == "values":
        part["interrupts"] = ()
    return convert_to_protocol_event(part)


class Echo(StreamTransformer):
    """Pushes the data of every event of ``method`` (any namespace) to channel ``key``."""

    key = "echo"
    method = "custom"
    channel_name = None

    def __init__(self, scope=(), *, key=None, name=None, log=None, native=None):
        super().__init__(scope)
        if key is not None:
            self.key = key
        if native is not None:
            self._native = native
        self.ch = StreamChannel(name if name is not None else self.channel_name)
        self.log = log if log is not None else []

    def init(self):
        return {self.key: self.ch}

    def process(self, event):
        self.log.append((self.key, event["method"], event["params"]["data"]))
        if event["method"] == self.method:
            self.ch.push(event["params"]["data"])
        return True


class NativeEcho(Echo):
    _native = True


class Suppress(StreamTransformer):
    """Returns False for ``method`` events; records what it saw."""

    def __init__(self, scope=(), *, method="secret", log=None):
        super().__init__(scope)
        self.method = method
        self.log = log if log is not None else []

    def init(self):
        return {}

    def process(self, event):
        self.log.append(("suppress", event["method"], event["params"]["data"]))
        return event["method"] != self.method


def drain(it) -> List[Any]:
    return list(it)


def drain_until_end(it) -> List[Any]:
    """Items until the reader stops or raises (the error is swallowed)."""
    out: List[Any] = []
    try:
        for item in it:
            out.append(item)
    except Exception:  # noqa: BLE001
        pass
    return out


# ------------------------------------------------------------- StreamChannel


def _bound_channel(name=None, **kw):
    t = Echo(name=name, **kw)
    mux = StreamMux([t])
    return mux, t


def test_lazy_subscribe_pushes_before_first_subscriber_not_stored(backend):
    mux, t = _bound_channel()
    mux.push(ev("custom", 1))
    mux.push(ev("custom", 2))
    reader = iter(t.ch)
    mux.push(ev("custom", 3))
    mux.push(ev("custom", 4))
    mux.close()
    assert drain(reader) == [3, 4]


def test_single_subscriber_second_raises_pointing_to_tee(backend):
    mux, t = _bound_channel()
    iter(t.ch)
    with pytest.raises(RuntimeError, match="tee"):
        iter(t.ch)
    with pytest.raises(RuntimeError, match="tee"):
        t.ch.tee(2)


def test_tee_after_tee_raises(backend):
    mux, t = _bound_channel()
    t.ch.tee(2)
    with pytest.raises(RuntimeError, match="tee"):
        iter(t.ch)


def test_iteration_before_binding_raises_type_error(backend):
    ch = StreamChannel()
    with pytest.raises(TypeError):
        iter(ch)
    with pytest.raises(TypeError):
        ch.tee(2)


def test_sync_iteration_of_async_bound_channel_raises_type_error(backend):
    t = Echo()
    StreamMux([t], is_async=True)
    with pytest.raises(TypeError):
        iter(t.ch)
    with pytest.raises(TypeError):
        t.ch.tee(2)


def test_async_iteration_of_sync_bound_channel_raises_type_error(backend):
    mux, t = _bound_channel()
    with pytest.raises(TypeError):
        t.ch.__aiter__()
    with pytest.raises(TypeError):
        t.ch.atee(2)


def test_wrong_mode_does_not_consume_the_subscription(backend):
    mux, t = _bound_channel()
    with pytest.raises(TypeError):
        t.ch.__aiter__()
    reader = iter(t.ch)  # the one real subscriber is still allowed
    mux.push(ev("custom", "x"))
    mux.close()
    assert drain(reader) == ["x"]


def test_tee3_each_branch_sees_every_item(backend):
    mux, t = _bound_channel()
    a, b, c = t.ch.tee(3)
    for i in range(5):
        mux.push(ev("custom", i))
    # branches read at different paces
    assert next(a) == 0
    assert [next(b) for _ in range(3)] == [0, 1, 2]
    mux.push(ev("custom", 5))
    mux.close()
    assert drain(a) == [1, 2, 3, 4, 5]
    assert drain(b) == [3, 4, 5]
    assert drain(c) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("n", [0, -1])
def test_tee_n_below_one_is_value_error(backend, n):
    mux, t = _bound_channel()
    with pytest.raises(ValueError):
        t.ch.tee(n)


def test_tee_bad_n_does_not_consume_the_subscription(backend):
    mux, t = _bound_channel()
    with pytest.raises(ValueError):
        t.ch.tee(0)
    (only,) = t.ch.tee(1)
    mux.push(ev("custom", 1))
    mux.close()
    assert drain(only) == [1]


def test_channel_close_drains_then_stops(backend):
    mux, t = _bound_channel()
    reader = iter(t.ch)
    mux.push(ev("custom", 1))
    t.ch.close()
    assert t.ch.closed
    assert drain(reader) == [1]


def test_channel_fail_drains_then_raises(backend):
    mux, t = _bound_channel()
    reader = iter(t.ch)
    mux.push(ev("custom", 1))
    boom = ValueError("boom")
    t.ch.fail(boom)
    assert next(reader) == 1
    with pytest.raises(ValueError, match="boom") as info:
        next(reader)
    assert info.value is boom
    assert t.ch.error is boom


@pytest.mark.parametrize("bad", [0, -3])
def test_channel_maxlen_bad_int_value_error(backend, bad):
    with pytest.raises(ValueError, match="maxlen"):
        StreamChannel(maxlen=bad)


@pytest.mark.parametrize("bad", ["3", 2.0, True, [1]])
def test_channel_maxlen_not_int_type_error(backend, bad):
    with pytest.raises(TypeError, match="maxlen"):
        StreamChannel(maxlen=bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_mux_maxlen_bad_int_value_error(backend, bad):
    with pytest.raises(ValueError, match="maxlen"):
        StreamMux(maxlen=bad)


@pytest.mark.parametrize("bad", ["2", 1.5, False])
def test_mux_maxlen_not_int_type_error(backend, bad):
    with pytest.raises(TypeError, match="maxlen"):
        StreamMux(maxlen=bad)


def test_channel_valid_maxlen(backend):
    assert StreamChannel(maxlen=1).maxlen == 1
    assert StreamChannel().maxlen is None


def test_channel_inherits_mux_maxlen_unless_it_sets_its_own(backend):
    own = Echo(key="own")
    own.ch = StreamChannel(maxlen=5)
    inherits = Echo(key="inherits")
    StreamMux([own, inherits], maxlen=3)
    assert own.ch.maxlen == 5
    assert inherits.ch.maxlen == 3


# ------------------------------------------------------- named channel forwarding


def test_named_channel_native_forwards_as_name(backend):
    t = NativeEcho(name="progress")
    mux = StreamMux([t])
    main = iter(mux._events)
    mux.push(ev("custom", {"p": 1}))
    mux.close()
    events = drain(main)
    assert [e["method"] for e in events] == ["progress", "custom"]
    assert events[0]["params"]["data"] == {"p": 1}
    assert events[0]["params"]["namespace"] == []
    assert events[0]["type"] == "event"
    assert isinstance(events[0]["params"]["timestamp"], int)


def test_named_channel_non_native_forwards_as_custom_name(backend):
    t = Echo(name="progress")
    mux = StreamMux([t])
    main = iter(mux._events)
    mux.push(ev("custom", 7))
    mux.close()
    events = drain(main)
    assert [e["method"] for e in events] == ["custom:progress", "custom"]
    assert events[0]["params"]["data"] == 7


def test_unnamed_channel_is_not_forwarded(backend):
    t = NativeEcho()
    mux = StreamMux([t])
    main = iter(mux._events)
    mux.push(ev("custom", 7))
    mux.close()
    assert [e["method"] for e in drain(main)] == ["custom"]


def test_named_channel_forwards_even_without_channel_subscriber(backend):
    t = Echo(name="p")
    mux = StreamMux([t])
    main = iter(mux._events)
    mux.push(ev("custom", 1))
    mux.close()
    assert [(e["method"], e["seq"]) for e in drain(main)] == [("custom:p", 1), ("custom", 2)]


def test_named_channel_forward_has_an_empty_namespace_in_any_scope(backend):
    # as in LangGraph: a forwarded channel event belongs to the mux it enters
    t = NativeEcho(("a:1",), name="p")
    mux = StreamMux([t], scope=("a:1",))
    main = iter(mux._events)
    mux.push(ev("custom", 1, ns=("a:1",)))
    mux.close()
    events = drain(main)
    assert events[0]["method"] == "p"
    assert events[0]["params"]["namespace"] == []


# ------------------------------------------------------------------ numbering


def test_main_log_numbering_one_to_n_no_gap(backend):
    mux = StreamMux([Suppress(method="secret"), Echo(name="fwd")])
    main = iter(mux._events)
    methods = ["values", "secret", "custom", "updates", "secret", "custom", "values"]
    for i, m in enumerate(methods):
        mux.push(ev(m, i))
    mux.close()
    events = drain(main)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # suppressed events are not in the log and leave no gap; forwarded ones are
    assert [e["method"] for e in events] == [
        "values", "custom:fwd", "custom", "updates", "custom:fwd", "custom", "values"]


def test_forwarded_event_numbered_before_its_cause(backend):
    t = NativeEcho(name="progress")
    mux = StreamMux([t])
    main = iter(mux._events)
    cause = ev("custom", "x")
    mux.push(cause)
    mux.close()
    fwd, orig = drain(main)
    assert orig is cause
    assert fwd["method"] == "progress"
    assert fwd["seq"] == 1 and cause["seq"] == 2


def test_numbering_counts_events_pushed_before_the_main_log_subscriber(backend):
    mux = StreamMux([])
    mux.push(ev("custom", 0))
    mux.push(ev("custom", 1))
    main = iter(mux._events)
    mux.push(ev("custom", 2))
    mux.close()
    (e,) = drain(main)
    assert e["params"]["data"] == 2
    assert e["seq"] == 3


# ---------------------------------------------------------------- suppression


def test_suppression_keeps_earlier_and_later_side_effects(backend):
    log: List[Any] = []
    before = Echo(key="before", log=log)
    before.method = "secret"
    sup = Suppress(method="secret", log=log)
    after = Echo(key="after", log=log)
    after.method = "secret"
    mux = StreamMux([before, sup, after])
    main = iter(mux._events)
    r_before = iter(before.ch)
    r_after = iter(after.ch)
    mux.push(ev("secret", "s"))
    mux.push(ev("custom", "c"))
    mux.close()
    assert [e["method"] for e in drain(main)] == ["custom"]
    assert drain(r_before) == ["s"]
    assert drain(r_after) == ["s"]
    assert log[:3] == [("before", "secret", "s"), ("suppress", "secret", "s"),
                       ("after", "secret", "s")]


def test_suppression_by_any_falsy_return(backend):
    class NoneReturner(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            return None

    mux = StreamMux([NoneReturner()])
    main = iter(mux._events)
    mux.push(ev("custom", 1))
    mux.close()
    assert drain(main) == []


# --------------------------------------------------------------- registration


def _order_transformer(tag, log, *, before=False):
    class Ordered(StreamTransformer):
        before_builtins = before

        def init(self):
            return {}

        def process(self, event):
            log.append(tag)
            return True

    Ordered.__name__ = f"Ordered_{tag}"
    return Ordered


def test_registration_order_factories_then_prebuilt_before_builtins_first(backend):
    log: List[str] = []
    F1 = _order_transformer("F1", log)
    F2 = _order_transformer("F2", log, before=True)
    F3 = _order_transformer("F3", log)
    F4 = _order_transformer("F4", log, before=True)
    P1 = _order_transformer("P1", log)
    P2 = _order_transformer("P2", log, before=True)
    P3 = _order_transformer("P3", log)
    mux = StreamMux([P1(), P2(), P3()], factories=[F1, F2, F3, F4])
    mux.push(ev("custom", 1))
    assert log == ["F2", "F4", "F1", "F3", "P2", "P1", "P3"]


def test_factories_called_with_mux_scope(backend):
    seen = []

    def factory(scope):
        seen.append(scope)
        return Echo(scope)

    StreamMux(factories=[factory], scope=("a:1",))
    assert seen == [("a:1",)]


def test_key_collision_names_both_owners(backend):
    class OwnerOne(Echo):
        pass

    class OwnerTwo(Echo):
        pass

    with pytest.raises(ValueError) as info:
        StreamMux([OwnerOne(key="dup"), OwnerTwo(key="dup")])
    msg = str(info.value)
    assert "OwnerOne" in msg and "OwnerTwo" in msg and "dup" in msg


def test_key_collision_with_builtin_factory(backend):
    class MyValues(Echo):
        pass

    with pytest.raises(ValueError) as info:
        StreamMux([MyValues(key="values")], factories=[ValuesTransformer])
    msg = str(info.value)
    assert "ValuesTransformer" in msg and "MyValues" in msg


@pytest.mark.parametrize("bad", [None, [], ("a", 1), "values"])
def test_init_returning_non_dict_is_type_error(backend, bad):
    class BadInit(StreamTransformer):
        def init(self):
            return bad

        def process(self, event):
            return True

    with pytest.raises(TypeError, match="BadInit|init"):
        StreamMux([BadInit()])


def test_extensions_native_keys_transformer_by_key(backend):
    native = NativeEcho(key="nat")
    plain = Echo(key="plain")
    mux = StreamMux([native, plain], factories=[ValuesTransformer])
    assert set(mux.extensions) == {"values", "nat", "plain"}
    assert mux.native_keys == {"values", "nat"}
    assert mux.transformer_by_key("nat") is native
    assert mux.transformer_by_key("plain") is plain
    assert isinstance(mux.transformer_by_key("values"), ValuesTransformer)
    assert mux.transformer_by_key("nope") is None
    assert mux.extensions["nat"] is native.ch


class OverridesAprocess(StreamTransformer):
    def init(self):
        return {}

    def process(self, event):
        return True

    async def aprocess(self, event):
        return True


class OverridesAfinalize(StreamTransformer):
    def init(self):
        return {}

    def process(self, event):
        return True

    async def afinalize(self):
        pass


class OverridesAfail(StreamTransformer):
    def init(self):
        return {}

    def process(self, event):
        return True

    async def afail(self, err):
        pass


class RequiresAsync(StreamTransformer):
    requires_async = True

    def init(self):
        return {}

    def process(self, event):
        return True


class SupportsSync(OverridesAprocess):
    supports_sync = True


@pytest.mark.parametrize("cls", [OverridesAprocess, OverridesAfinalize, OverridesAfail,
                                 RequiresAsync])
def test_event_loop_transformer_on_sync_mux_rejected_at_registration(backend, cls):
    with pytest.raises(RuntimeError, match=cls.__name__):
        StreamMux([cls()])
    with pytest.raises(RuntimeError):
        StreamMux(factories=[cls])


@pytest.mark.parametrize("cls", [OverridesAprocess, OverridesAfinalize, OverridesAfail,
                                 RequiresAsync, SupportsSync])
def test_event_loop_transformer_on_async_mux_accepted(backend, cls):
    StreamMux([cls()], is_async=True)


def test_supports_sync_allowed_on_sync_mux(backend):
    mux = StreamMux([SupportsSync()])
    mux.push(ev("custom", 1))
    mux.close()


def test_requires_async_wins_over_supports_sync(backend):
    class Both(SupportsSync):
        requires_async = True

    with pytest.raises(RuntimeError):
        StreamMux([Both()])


# -------------------------------------------------------------- close / fail


class Finalizer(StreamTransformer):
    def __init__(self, scope=(), *, tag, log, raises=None, key=None):
        super().__init__(scope)
        self.tag = tag
        self.log = log
        self.raises = raises
        self.ch = StreamChannel()
        self.key = key or tag

    def init(self):
        return {self.key: self.ch}

    def process(self, event):
        self.ch.push(event["params"]["data"])
        return True

    def finalize(self):
        self.log.append(("finalize", self.tag))
        if self.raises is not None:
            raise self.raises

    def fail(self, err):
        self.log.append(("fail", self.tag, err))
        if self.raises is not None:
            raise self.raises


def test_close_finalizes_every_transformer_and_reraises_first_error(backend):
    log: List[Any] = []
    e1 = ValueError("first")
    e2 = KeyError("second")
    ts = [Finalizer(tag="a", log=log), Finalizer(tag="b", log=log, raises=e1),
          Finalizer(tag="c", log=log, raises=e2), Finalizer(tag="d", log=log)]
    mux = StreamMux(ts)
    readers = [iter(t.ch) for t in ts]
    main = iter(mux._events)
    mux.push(ev("custom", 1))
    with pytest.raises(ValueError, match="first") as info:
        mux.close()
    assert info.value is e1
    assert log == [("finalize", "a"), ("finalize", "b"), ("finalize", "c"), ("finalize", "d")]
    for t, r in zip(ts, readers):
        assert t.ch.closed
        assert drain_until_end(r) == [1]  # ended (closed or failed), not hanging
    assert mux._events.closed
    assert [e["params"]["data"] for e in drain_until_end(main)] == [1]


def test_close_is_idempotent(backend):
    log: List[Any] = []
    mux = StreamMux([Finalizer(tag="a", log=log)])
    mux.close()
    mux.close()
    mux.fail(RuntimeError("late"))
    assert log == [("finalize", "a")]


def test_fail_fails_every_transformer_and_channel(backend):
    log: List[Any] = []
    boom = RuntimeError("run died")
    ts = [Finalizer(tag="a", log=log, raises=ValueError("x")), Finalizer(tag="b", log=log)]
    mux = StreamMux(ts)
    readers = [iter(t.ch) for t in ts]
    main = iter(mux._events)
    mux.push(ev("custom", 1))
    mux.fail(boom)  # a raising fail() does not stop the others, nor escape
    assert [entry[:2] for entry in log] == [("fail", "a"), ("fail", "b")]
    assert all(entry[2] is boom for entry in log)
    for r in readers:
        assert next(r) == 1
        with pytest.raises(RuntimeError, match="run died"):
            next(r)
    assert next(main)["params"]["data"] == 1
    with pytest.raises(RuntimeError, match="run died"):
        next(main)


# ----------------------------------------------------------------- scoping

BUILTINS = [
    (ValuesTransformer, "values"),
    (UpdatesTransformer, "updates"),
    (CustomTransformer, "custom"),
    (CheckpointsTransformer, "checkpoints"),
    (DebugTransformer, "debug"),
    (TasksTransformer, "tasks"),
]

_ALL_METHODS = ["values", "updates", "custom", "checkpoints", "debug", "tasks"]
_NAMESPACES = [(), ("a:1",), ("a:1", "b:2"), ("a:2",), ("z:9",)]


def _push_everything(mux):
    for ns in _NAMESPACES:
        for method in _ALL_METHODS:
            mux.push(ev(method, {"m": method, "ns": list(ns)}, ns=ns))


@pytest.mark.parametrize("cls,key", BUILTINS)
def test_builtin_root_scope_ignores_subgraph_events(backend, cls, key):
    mux = StreamMux(factories=[cls])
    reader = iter(mux.extensions[key])
    _push_everything(mux)
    mux.close()
    assert drain(reader) == [{"m": key, "ns": []}]


@pytest.mark.parametrize("cls,key", BUILTINS)
def test_builtin_scoped_mux_sees_only_its_namespace(backend, cls, key):
    mux = StreamMux(factories=[cls], scope=("a:1",))
    reader = iter(mux.extensions[key])
    _push_everything(mux)
    mux.close()
    assert drain(reader) == [{"m": key, "ns": ["a:1"]}]


@pytest.mark.parametrize("cls,key", BUILTINS)
def test_builtin_scoped_transformer_on_root_mux_sees_only_its_namespace(backend, cls, key):
    # a transformer built for scope ("a:1",) projects only ["a:1"] events,
    # whatever mux it is registered on
    t = cls(("a:1",))
    mux = StreamMux([t])
    reader = iter(mux.extensions[key])
    _push_everything(mux)
    mux.close()
    assert drain(reader) == [{"m": key, "ns": ["a:1"]}]


@pytest.mark.parametrize("cls,key", BUILTINS)
def test_builtin_projects_list_namespace_parts_too(backend, cls, key):
    mux = StreamMux(factories=[cls], scope=("a:1",))
    reader = iter(mux.extensions[key])
    mux.push(convert_to_protocol_event({"type": key, "ns": ["a:1"], "data": 1}))
    mux.close()
    assert drain(reader) == [1]


def test_builtins_are_native(backend):
    mux = StreamMux(factories=[cls for cls, _ in BUILTINS])
    assert mux.native_keys == {key for _, key in BUILTINS}


def test_values_transformer_keeps_latest_and_interrupts_without_subscriber(backend):
    t = ValuesTransformer()
    mux = StreamMux([t])
    mux.push(ev("values", {"s": 1}))
    mux.push(ev("values", {"s": 2}, ns=("a:1",)))
    mux.push(convert_to_protocol_event(
        {"type": "values", "ns": (), "data": {"s": 3}, "interrupts": [{"value": "q", "id": "i1"}]}))
    mux.push(convert_to_protocol_event(
        {"type": "values", "ns": ("a:1",), "data": {"s": 4}, "interrupts": [{"value": "sub"}]}))
    mux.close()
    assert t.latest == {"s": 3}
    assert t.interrupted is True
    assert t.interrupts == [{"value": "q", "id": "i1"}]


def test_values_transformer_not_interrupted_on_empty_interrupts(backend):
    t = ValuesTransformer()
    mux = StreamMux([t])
    mux.push(ev("values", {"s": 1}))
    assert t.interrupted is False
    assert t.interrupts == []


def test_builtins_keep_events_in_main_log(backend):
    mux = StreamMux(factories=[cls for cls, _ in BUILTINS])
    main = iter(mux._events)
    _push_everything(mux)
    mux.close()
    assert len(drain(main)) == len(_NAMESPACES) * len(_ALL_METHODS)


# ---------------------------------------------------------------- child muxes


def test_child_mux_shares_event_objects_and_never_renumbers(backend):
    root = StreamMux(factories=[ValuesTransformer, UpdatesTransformer])
    child = root._make_child(("a:1",))
    root_main = iter(root._events)
    child_main = iter(child._events)
    child_values = iter(child.extensions["values"])
    root_values = iter(root.extensions["values"])
    events = [ev("values", "r0"), ev("values", "c0", ns=("a:1",)), ev("updates", "c1", ns=("a:1",)),
              ev("values", "r1")]
    for e in events:
        root.push(e)
        if e["params"]["namespace"] == ["a:1"]:
            child.push(e)
    child.close()
    root.close()
    root_log = drain(root_main)
    child_log = drain(child_main)
    assert [e["seq"] for e in root_log] == [1, 2, 3, 4]
    assert root_log == events
    assert len(child_log) == 2
    assert child_log[0] is events[1] and child_log[1] is events[2]
    assert [e["seq"] for e in child_log] == [2, 3]  # numbers from the root, untouched
    assert drain(child_values) == ["c0"]
    assert drain(root_values) == ["r0", "r1"]


def test_child_mux_alone_does_not_assign_seq(backend):
    root = StreamMux(factories=[ValuesTransformer])
    child = root._make_child(("a:1",))
    main = iter(child._events)
    e = ev("values", 1, ns=("a:1",))
    child.push(e)
    child.close()
    (got,) = drain(main)
    assert got is e
    assert "seq" not in e


def test_child_mux_gets_fresh_transformers_from_factories(backend):
    made = []

    def factory(scope):
        t = Echo(scope)
        made.append(t)
        return t

    root = StreamMux(factories=[factory])
    child = root._make_child(("a:1",))
    assert len(made) == 2
    assert made[0].scope == () and made[1].scope == ("a:1",)
    assert child.scope == ("a:1",)
    assert child.extensions["echo"] is made[1].ch
    assert root.extensions["echo"] is made[0].ch


def test_child_mux_inherits_maxlen_and_mode(backend):
    root = StreamMux(factories=[ValuesTransformer], maxlen=4)
    child = root._make_child(("a:1",))
    assert child.maxlen == 4
    assert child.extensions["values"].maxlen == 4
    assert child.is_async is False


def test_make_child_without_factories_raises(backend):
    root = StreamMux([Echo()])
    with pytest.raises(RuntimeError, match="factories"):
        root._make_child(("a:1",))


def test_scope_validation(backend):
    with pytest.raises(TypeError):
        StreamMux(scope="a:1")
    with pytest.raises(TypeError):
        StreamMux(scope=("a:1", 2))
