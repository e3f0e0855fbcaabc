"""Issue 10: a child mux (one per subgraph) is built cheaply, with the same
results and errors as before.

Registration caches what a transformer's class decides (its routing
predicate, whether it needs an event loop, whether its ``aprocess`` is the
default) and reads instance overrides from ``getattr``; a child shares its
root's checked factories.  These tests pin the behaviour those shortcuts must
keep: instance-level overrides win over the class cache (and do not poison
it), and a factory that misbehaves only at a subgraph's scope fails the run
with the error its transformer gives at the root.  Every test runs on both
event-log backends, and on both lanes where a run is involved.
"""

from __future__ import annotations

import asyncio

import pytest

from langstream import (
    StreamChannel,
    StreamMux,
    StreamTransformer,
    ValuesTransformer,
    astream_events,
    stream_events,
)
from langstream.run_stream import DEFAULT_FACTORIES

LANES = ["sync", "async"]


def _part(method, ns, data):
    return {"type": method, "ns": tuple(ns), "data": data}


def _sub_parts():
    """A root value, one subgraph ``a:1`` with two values, a root value."""
    return [
        _part("values", (), {"i": 0}),
        _part("values", ("a:1",), {"i": 1}),
        _part("values", ("a:1",), {"i": 2}),
        _part("tasks", (), {"id": "1", "name": "a", "error": None, "result": {},
                            "interrupts": []}),
        _part("values", (), {"i": 3}),
    ]


def _run_output(lane, parts, transformers):
    """``run.output`` on the lane: ``(output, None)`` or ``(None, error)``."""
    if lane == "sync":
        run = stream_events(iter(parts), transformers=transformers)
        try:
            return run.output, None
        except Exception as exc:  # noqa: BLE001 - compared by the caller
            return None, exc

    async def main():
        async def agen():
            for p in parts:
                yield p

        run = astream_events(agen(), transformers=transformers)
        try:
            return await run.output(), None
        except Exception as exc:  # noqa: BLE001 - compared by the caller
            return None, exc

    return asyncio.run(main())


class _Counter(StreamTransformer):
    """Declares a route (values at its scope only) and counts what it sees."""

    supports_sync = True

    def __init__(self, scope=()):
        super().__init__(scope)
        self.seen = []

    def init(self):
        return {}

    @classmethod
    def _route(cls, method, at_scope):
        return at_scope and method == "values"

    def process(self, event):
        self.seen.append((event["method"], list(event["params"]["namespace"])))
        return True


def _events():
    from langstream import convert_to_protocol_event

    return [
        convert_to_protocol_event(_part("values", (), {"i": 0})),
        convert_to_protocol_event(_part("updates", (), {"n": {}})),
        convert_to_protocol_event(_part("values", ("x:1",), {"i": 1})),
    ]


# ------------------------------------------------- the __init__ chain


def _builtin_classes():
    """Every built-in transformer class (the token ones with langchain-core)."""
    import langstream
    from langstream._messages import langchain_core_available

    names = ["Values", "Updates", "Custom", "Checkpoints", "Debug", "Tasks",
             "Lifecycle", "Subgraph"]
    if langchain_core_available():
        names += ["Messages", "AllMessages"]
    return [getattr(langstream, f"{name}Transformer") for name in names]


@pytest.mark.parametrize("builtin", _builtin_classes(), ids=lambda c: c.__name__)
def test_a_mixin_between_a_builtin_and_its_base_is_initialised(backend, builtin):
    """A built-in's ``__init__`` calls its base directly only for an instance
    of exactly its class; in a subclass, a cooperative mix-in the MRO puts
    between the built-in and ``StreamTransformer`` still has its ``__init__``
    run, as ``super()`` would run it."""

    class Mixin(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.mixed = tuple(scope)

        def init(self):
            return {}

    mixed = type("Mixed", (builtin, Mixin), {})
    assert mixed.__mro__.index(Mixin) < mixed.__mro__.index(StreamTransformer)
    made = mixed(("a:1",))
    assert made.mixed == ("a:1",)
    assert made.scope == ("a:1",)
    # the built-in's own state is set too, as for an instance of its class
    plain = builtin(("a:1",))
    assert set(vars(plain)) <= set(vars(made))
    mux = StreamMux(factories=[mixed])
    child = mux._make_child(("a:1",))
    assert child._transformers[0].mixed == ("a:1",)


# ------------------------------------------------- instance overrides win


@pytest.mark.parametrize("is_async", [False, True])
def test_an_instance_routing_override_wins_over_the_class_cache(backend, is_async):
    """The class's routing predicate is cached per class; an instance that
    holds its own ``_routing`` is routed by it, before and after the cache
    exists, and does not change what the other instances get."""
    plain_before = _Counter(())
    wide = _Counter(())
    wide._routing = lambda: None  # no predicate: every event
    plain_after = _Counter(())
    mux = StreamMux([plain_before, wide, plain_after], is_async=is_async)
    for event in _events():
        if is_async:
            asyncio.run(mux.apush(event))
        else:
            mux.push(event)
    assert plain_before.seen == [("values", [])]
    assert plain_after.seen == [("values", [])]
    assert wide.seen == [("values", []), ("updates", []), ("values", ["x:1"])]


def test_an_instance_needs_loop_override_wins_and_does_not_poison_the_cache(backend):
    class Flexible(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            return True

    StreamMux([Flexible()])  # the class answer (no loop needed) is cached
    strict = Flexible()
    strict._needs_event_loop = lambda: True
    with pytest.raises(RuntimeError, match="Flexible requires an async run"):
        StreamMux([strict])
    StreamMux([Flexible()])  # the class answer is still "no loop needed"
    StreamMux([strict], is_async=True)  # fine on an async run


def test_an_instance_aprocess_override_is_awaited(backend):
    """The default ``aprocess`` is skipped (``process`` called directly); an
    instance that holds its own ``aprocess`` gets it awaited instead."""
    calls = []

    class Plain(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            calls.append(("process", id(self)))
            return True

    first, special, last = Plain(), Plain(), Plain()

    async def own_aprocess(event):
        calls.append(("aprocess", id(special)))
        return False  # keeps the event out of the main log

    special.aprocess = own_aprocess
    mux = StreamMux([first, special, last], is_async=True)

    async def main():
        reader = mux._events.__aiter__()
        await mux.apush(_events()[0])
        mux.close()
        return [e async for e in reader]

    assert asyncio.run(main()) == []
    assert calls == [("process", id(first)), ("aprocess", id(special)), ("process", id(last))]


def test_a_subclass_overriding_process_is_not_routed_by_its_parent_route(backend):
    class Everything(_Counter):
        def process(self, event):
            self.seen.append((event["method"], list(event["params"]["namespace"])))
            return True

    routed, overriding = _Counter(()), Everything(())
    mux = StreamMux([routed, overriding])
    for event in _events():
        mux.push(event)
    assert routed.seen == [("values", [])]
    assert len(overriding.seen) == 3


def test_registration_leaves_transformer_attributes_alone(backend):
    """Registering reads a transformer through ``getattr`` only: whatever
    the instance holds is what it reads afterwards."""
    values = ValuesTransformer(())
    mux = StreamMux([values])
    assert mux.transformer_by_key("values") is values
    assert values.scope == () and values._log is mux.extensions["values"]


# ------------------------------- built-in classes answered once per class


def _values_factory_with(**attrs):
    """A factory (not the class itself) that changes the built-in instance."""
    def factory(scope):
        made = ValuesTransformer(scope)
        for name, value in attrs.items():
            setattr(made, name, value)
        return made
    return factory


class _BelowRootOnly:
    """A factory that builds ``factory``'s transformer only below the root."""

    def __init__(self, factory):
        self.factory = factory

    def __call__(self, scope):
        return self.factory(scope) if scope else _Counter(scope)


def test_a_factory_that_changes_a_builtin_instance_is_read_per_instance(backend):
    """Built-in classes are asked once (their ``__init__`` sets no hook); a
    factory that is not the class may change the instance, and that wins,
    at the root and in every child."""
    strict = _values_factory_with(_needs_event_loop=lambda: True)
    with pytest.raises(RuntimeError, match="ValuesTransformer requires an async run"):
        StreamMux(factories=[strict])
    root = StreamMux(factories=[ValuesTransformer, _BelowRootOnly(strict)])
    with pytest.raises(RuntimeError, match="ValuesTransformer requires an async run"):
        root._make_child(("a:1",))
    quiet = StreamMux(factories=[_values_factory_with(_native=False)])
    assert quiet.native_keys == set()
    child = quiet._make_child(("a:1",))
    assert child.native_keys == set()
    plain = StreamMux(factories=[ValuesTransformer])
    assert plain.native_keys == {"values"}
    assert plain._make_child(("a:1",)).native_keys == {"values"}


def test_a_prebuilt_builtin_instance_is_read_per_instance(backend):
    """A pre-built transformer may have been changed after construction."""
    changed = ValuesTransformer(())
    changed._needs_event_loop = lambda: True
    with pytest.raises(RuntimeError, match="ValuesTransformer requires an async run"):
        StreamMux([changed])
    routed_everywhere = ValuesTransformer(())
    routed_everywhere._routing = lambda: None  # every event, as process sees it
    mux = StreamMux([routed_everywhere, _Counter(())])
    assert mux._route("updates", True) == (routed_everywhere,)
    assert StreamMux([ValuesTransformer(())])._route("updates", True) == ()


@pytest.mark.parametrize("lane", LANES)
def test_a_subclass_of_a_builtin_is_asked_per_instance(backend, lane):
    """The promise is read from the class's own body: a subclass whose
    ``__init__`` sets a flag on the instance is not taken for its parent,
    in the root mux and in every subgraph's."""

    class StrictValues(ValuesTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            if scope:  # (only below the root: the root's instance is plain)
                self._needs_event_loop = lambda: True

    class SeenValues(ValuesTransformer):
        _key = "seen_values"

        def __init__(self, scope=()):
            super().__init__(scope)
            self.seen = []

        def process(self, event):
            self.seen.append(event["method"])
            return super().process(event)

    root = StreamMux(factories=[StrictValues])
    with pytest.raises(RuntimeError, match="StrictValues requires an async run"):
        root._make_child(("a:1",))
    StreamMux(factories=[StrictValues], is_async=True)._make_child(("a:1",))
    made = []

    def factory(scope):
        made.append(SeenValues(scope))
        return made[-1]

    parts = _sub_parts()
    parts.insert(2, _part("updates", ("a:1",), {"n": {"i": 1}}))
    output, error = _run_output(lane, parts, [factory])
    assert error is None and output == {"i": 3}
    # (its process overrides the class's: no route of its parent's applies,
    # it sees every event of its mux)
    assert [t.scope for t in made] == [(), ("a:1",)]
    assert made[1].seen == ["values", "updates", "values"]


# ------------------------------------- errors at a subgraph's scope only


class _ChildOnly:
    """A factory that builds a plain transformer at the root and ``bad(scope)``
    below it."""

    def __init__(self, bad):
        self.bad = bad

    def __call__(self, scope):
        return self.bad(scope) if scope else _Counter(scope)


class _NotADict(StreamTransformer):
    supports_sync = True

    def init(self):
        return ["values"]

    def process(self, event):
        return True


class _TakesValues(StreamTransformer):
    supports_sync = True

    def init(self):
        return {"values": StreamChannel()}

    def process(self, event):
        return True


class _NeedsLoop(StreamTransformer):
    requires_async = True

    def init(self):
        return {}

    def process(self, event):
        return True


def _root_error(bad, is_async=False):
    with pytest.raises(Exception) as exc:
        StreamMux(factories=[*DEFAULT_FACTORIES, bad], is_async=is_async)
    return exc.value


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("bad", [_NotADict, _TakesValues])
def test_a_transformer_failing_registration_in_a_child_fails_the_run(backend, lane, bad):
    """Same error type and message as the same transformer at the root."""
    expected = _root_error(bad, is_async=lane == "async")
    out, err = _run_output(lane, _sub_parts(), [_ChildOnly(bad)])
    assert out is None
    assert type(err) is type(expected)
    assert str(err) == str(expected)


def test_a_transformer_needing_a_loop_in_a_child_fails_a_sync_run(backend):
    expected = _root_error(_NeedsLoop)
    out, err = _run_output("sync", _sub_parts(), [_ChildOnly(_NeedsLoop)])
    assert out is None
    assert type(err) is RuntimeError and str(err) == str(expected)
    assert "_NeedsLoop requires an async run" in str(err)
    out, err = _run_output("async", _sub_parts(), [_ChildOnly(_NeedsLoop)])
    assert err is None and out == {"i": 3}


@pytest.mark.parametrize("lane", LANES)
def test_a_factory_returning_a_non_transformer_in_a_child_names_the_factory(backend, lane):
    factory = _ChildOnly(lambda scope: 42)
    out, err = _run_output(lane, _sub_parts(), [factory])
    assert out is None
    assert type(err) is TypeError
    assert f"factory {factory!r} returned int 42" in str(err)


def test_a_channel_shared_by_two_keys_is_refused_as_already_bound(backend):
    class Twice(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel()

        def init(self):
            return {"one": self.ch, "two": self.ch}

        def process(self, event):
            return True

    with pytest.raises(RuntimeError, match="already bound"):
        StreamMux([Twice()])
    root = StreamMux(factories=[ValuesTransformer])
    root._factories.append(Twice)  # (the root's list is the one children use)
    with pytest.raises(RuntimeError, match="already bound"):
        root._make_child(("a:1",))


# ------------------------------------------------------ what a child gets


@pytest.mark.parametrize("is_async", [False, True])
def test_child_channels_are_bound_like_the_roots(backend, is_async):
    root = StreamMux(factories=list(DEFAULT_FACTORIES), is_async=is_async, maxlen=3)
    child = root._make_child(("a:1",))
    assert child._factories is root._factories
    assert sorted(child.native_keys) == sorted(root.native_keys)
    assert list(child.extensions) == list(root.extensions)
    for key, channel in child.extensions.items():
        assert channel is not root.extensions[key]
        assert channel._is_async is is_async and channel.maxlen == 3
        assert type(channel._log) is type(root.extensions[key]._log)
        assert child.transformer_by_key(key).scope == ("a:1",)
    labels = [label for label, _ in root._shared.bp.channels]
    if is_async:
        assert "a:1:values" in labels and "a:1:<main log>" in labels
    else:
        assert labels == []


def test_child_projections_share_the_roots_sequence(backend):
    """Pushes to the projections of a root and of its child are numbered
    from one sequence (what ``interleave`` orders by)."""
    root = StreamMux(factories=[ValuesTransformer])
    child = root._make_child(("a:1",))
    mine, theirs = root.extensions["values"], child.extensions["values"]
    a, b = iter(mine), iter(theirs)
    mine.push("r1")
    theirs.push("c1")
    mine.push("r2")
    assert (a.peek_seq(), b.peek_seq()) == (1, 2)
    assert [next(a), next(a), next(b)] == ["r1", "r2", "c1"]


def test_a_named_channel_in_a_child_forwards_to_the_childs_main_log(backend):
    class Progress(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel("progress")

        def init(self):
            return {"progress": self.ch}

        def process(self, event):
            return True

    root = StreamMux(factories=[Progress])
    child = root._make_child(("a:1",))
    raw = iter(child._events)
    child.extensions["progress"].push({"p": 1})
    event = next(raw)
    assert event["method"] == "custom:progress"
    assert event["params"]["data"] == {"p": 1} and event["params"]["namespace"] == []
    assert "seq" not in event  # a child never numbers main-log events


# ------------------------------------------ channels before a mux binds them


def test_unbound_channels_do_not_share_state(backend):
    """Channels no mux has bound yet need no log of their own until they
    change state: closing or failing one leaves every other one open."""
    first, second, third = StreamChannel(), StreamChannel("named"), StreamChannel()
    for channel in (first, second, third):
        channel.push("before any mux")
        assert not channel.closed and channel.error is None
    first.close()
    boom = ValueError("early")
    second.fail(boom)
    assert first.closed and first.error is None
    assert second.closed and second.error is boom
    assert not third.closed and third.error is None
    assert repr(third) == "<StreamChannel name=None unbound open maxlen=None>"


def test_a_channel_closed_before_registration_stays_closed(backend):
    class Early(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel()
            self.ch.close()

        def init(self):
            return {"early": self.ch}

        def process(self, event):
            return True

    root = StreamMux(factories=[Early, ValuesTransformer])
    assert root.extensions["early"].closed
    assert list(root.extensions["early"]) == []
    child = root._make_child(("a:1",))
    assert child.extensions["early"].closed and not child.extensions["values"].closed


def test_pushes_to_unbound_channels_never_reach_a_reader(backend):
    """A channel bound by hand (``_bind`` alone) reads only its own items."""
    lone = StreamChannel()
    lone._bind(is_async=False)
    reader = iter(lone)
    StreamChannel().push("someone else's")
    lone.push("mine")
    lone.close()
    assert list(reader) == ["mine"]


@pytest.mark.parametrize("maxlen, exc_type", [(0, ValueError), (True, TypeError),
                                              ("3", TypeError)])
def test_a_bounded_channel_still_checks_maxlen(backend, maxlen, exc_type):
    with pytest.raises(exc_type, match="maxlen"):
        StreamChannel(maxlen=maxlen)
    assert StreamChannel(maxlen=3).maxlen == 3
