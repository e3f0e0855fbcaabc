"""Nothing lost, nothing hung (issue 9): silent-loss, hang, leak and bad-input
defects found by adversarial testing.

Every test runs on both event-log backends (``backend`` / ``eventlog``
fixtures) and, where a run is involved, on both lanes.
"""

from __future__ import annotations

import asyncio
import gc
import collections
import enum
import math
import sys

import pytest

from helpers import adrain, adrain_outcome, areplay, arun, custom, updates, values
from langstream import (
    StreamChannel,
    StreamTransformer,
    astream_events,
    stream_events,
)

LANES = ("sync", "async")


def _outcome_sync(run):
    try:
        return run.output, None
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return None, exc


def _run_lane(lane, parts, transformers=(), read="values"):
    """Run ``parts`` on ``lane``; return (items read from ``read``, error, output-error)."""
    if lane == "sync":
        run = stream_events(iter(parts), transformers=transformers)
        items, err = [], None
        try:
            for item in getattr(run, read):
                items.append(item)
        except Exception as exc:  # noqa: BLE001
            err = exc
        _, out_err = _outcome_sync(run)
        return items, err, out_err

    async def main():
        run = astream_events(areplay(parts), transformers=transformers)
        items, err = await adrain_outcome(getattr(run, read))
        try:
            await run.output()
            out_err = None
        except Exception as exc:  # noqa: BLE001
            out_err = exc
        return items, err, out_err

    return arun(main())


# ------------------------------------------------------------------ item 3


class _StopInProcess(StreamTransformer):
    supports_sync = True

    def __init__(self, scope=()):
        super().__init__(scope)
        self.seen = 0

    def init(self):
        return {}

    def process(self, event):
        self.seen += 1
        if self.seen == 2:
            raise StopIteration
        return True


class _StopAsyncInAprocess(StreamTransformer):
    def init(self):
        return {}

    def process(self, event):  # pragma: no cover - async only
        return True

    async def aprocess(self, event):
        if event["method"] == "values" and event["params"]["data"]["i"] == 1:
            raise StopAsyncIteration
        return True


@pytest.mark.parametrize("lane", LANES)
def test_transformer_stop_iteration_fails_the_run(backend, lane):
    parts = [values({"i": i}) for i in range(4)]
    items, err, out_err = _run_lane(lane, parts, transformers=[_StopInProcess])
    for exc in (err, out_err):
        assert type(exc) is RuntimeError, exc
        assert "_StopInProcess" in str(exc) and "StopIteration" in str(exc)
        assert isinstance(exc.__cause__, StopIteration)
    # (the values projection, registered first, saw the event before the error)
    assert items == [{"i": 0}, {"i": 1}]


def test_transformer_stop_async_iteration_fails_the_async_run(backend):
    parts = [values({"i": i}) for i in range(4)]
    items, err, out_err = _run_lane("async", parts, transformers=[_StopAsyncInAprocess])
    for exc in (err, out_err):
        assert type(exc) is RuntimeError, exc
        assert "_StopAsyncInAprocess" in str(exc) and "StopAsyncIteration" in str(exc)
    assert items == [{"i": 0}, {"i": 1}]


class _StopInFinalize(StreamTransformer):
    supports_sync = True

    def init(self):
        return {}

    def process(self, event):
        return True

    def finalize(self):
        raise StopIteration


@pytest.mark.parametrize("lane", LANES)
def test_finalize_stop_iteration_fails_the_run(backend, lane):
    parts = [values({"i": i}) for i in range(2)]
    items, err, out_err = _run_lane(lane, parts, transformers=[_StopInFinalize])
    assert items == [{"i": 0}, {"i": 1}]
    for exc in (err, out_err):
        assert type(exc) is RuntimeError and "_StopInFinalize" in str(exc), exc


# ------------------------------------------------------------------ item 4


def test_cursor_closed_during_its_own_request_more(eventlog):
    log = eventlog.EventLog()
    holder = {}

    def more():
        holder["a"].close()
        log.push("x")
        return True

    holder["a"] = a = log.cursor(more)
    b = log.cursor()
    with pytest.raises(StopIteration):
        next(a)
    assert list(b) == ["x"]
    assert len(log) == 0


# ------------------------------------------------------------------ item 5


def _sub_parts():
    return [
        values({"i": 0}),
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "input": {}, "triggers": []}},
        values({"j": 0}, ns=("sub:t1",)),
        {"type": "tasks", "ns": (), "data": {"id": "t1", "name": "sub", "error": None,
                                             "result": {}, "interrupts": []}},
        values({"i": 1}),
    ]


def _picky(exc_type):
    """A transformer class (its own factory) that raises ``exc_type`` when
    built for any scope but the root."""
    class Picky(StreamTransformer):
        supports_sync = True

        def __init__(self, scope=()):
            if scope:
                raise exc_type("no child scopes here")
            super().__init__(scope)

        def init(self):
            return {}

        def process(self, event):
            return True

    return Picky


@pytest.mark.parametrize("exc_type", [RuntimeError, ValueError, KeyError, StopIteration])
@pytest.mark.parametrize("lane", LANES)
def test_factory_error_for_a_subgraph_scope_fails_the_run(backend, lane, exc_type):
    _, _, out_err = _run_lane(lane, _sub_parts(), transformers=[_picky(exc_type)])
    assert out_err is not None
    if exc_type is StopIteration:
        assert type(out_err) is RuntimeError and isinstance(out_err.__cause__, StopIteration)
    else:
        assert type(out_err) is exc_type


# ------------------------------------------------------------------ item 13


@pytest.mark.parametrize("method", ["custom", "updates", "values"])
@pytest.mark.parametrize("ns", [(), ("sub:t1",)])
@pytest.mark.parametrize("read", ["values", "raw", "output"])
@pytest.mark.parametrize("lane", LANES)
def test_bad_interrupts_fail_whoever_subscribes(backend, lane, read, ns, method):
    bad = {"type": method, "ns": ns, "data": 1, "interrupts": 5}
    parts = [values({"i": 0}), bad, values({"i": 1})]
    if lane == "sync":
        run = stream_events(iter(parts))
        with pytest.raises(TypeError, match="interrupts.*int 5"):
            if read == "values":
                list(run.values)
            elif read == "raw":
                list(run)
            run.output
    else:
        async def main():
            run = astream_events(areplay(parts))
            if read == "values":
                _, err = await adrain_outcome(run.values)
                assert isinstance(err, TypeError)
            elif read == "raw":
                _, err = await adrain_outcome(run)
                assert isinstance(err, TypeError)
            await run.output()

        with pytest.raises(TypeError, match="interrupts.*int 5"):
            arun(main())


# ------------------------------------------------------------------ item 14


class _Mode(str, enum.Enum):
    VALUES = "values"
    UPDATES = "updates"


class _Seg(str):
    pass


_NS = collections.namedtuple("_NS", "a")


class _Tup(tuple):
    pass


@pytest.mark.parametrize("lane", LANES)
def test_str_and_tuple_subclasses_are_accepted(backend, lane):
    parts = [
        {"type": _Mode.VALUES, "ns": (), "data": {"i": 0}, "interrupts": _Tup()},
        {"type": "values", "ns": _NS(_Seg("sub:t1")), "data": {"j": 0}, "interrupts": ()},
        {"type": "values", "ns": [], "data": {"i": 1}, "interrupts": _Tup(["stop"])},
    ]
    if lane == "sync":
        run = stream_events(iter(parts))
        raw = list(run)
        assert run.output == {"i": 1} and run.interrupts == ["stop"]
    else:
        async def main():
            run = astream_events(areplay(parts))
            raw = await adrain(run)
            assert await run.output() == {"i": 1}
            assert await run.interrupts() == ["stop"]
            return raw
        raw = arun(main())
    methods = [e["method"] for e in raw if e["method"] != "lifecycle"]
    assert methods == ["values", "values", "values"]
    assert all(type(e["method"]) is str for e in raw)
    namespaces = [e["params"]["namespace"] for e in raw if e["method"] == "values"]
    assert namespaces == [[], ["sub:t1"], []]
    assert all(type(s) is str for ns in namespaces for s in ns)


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_namespace_segments_are_checked_alike_at_every_depth(backend, lane, depth):
    """Depths 1 and 2 are validated without a loop (a PyPy fast path), depth
    3 and more with one: a str subclass in any position becomes a plain str
    on the raw log, and a segment that is not a str fails the run with the
    same error whatever the depth."""
    path = ["sub:t1", "inner:t2", "leaf:t3"][:depth]
    good = []
    for at in range(depth):
        ns = tuple(_Seg(s) if i == at else s for i, s in enumerate(path))
        good.append({"type": "custom", "ns": ns, "data": at})
    tasks_start = {"type": "tasks", "ns": tuple(path[:-1]),
                   "data": {"id": path[-1].split(":")[1], "name": "n", "input": {}}}
    parts = [{"type": "values", "ns": (), "data": {"i": 0}}, tasks_start, *good]
    if lane == "sync":
        raw = list(stream_events(iter(parts)))
    else:
        raw = arun(adrain(astream_events(areplay(parts))))
    customs = [e["params"]["namespace"] for e in raw if e["method"] == "custom"]
    assert customs == [path] * depth
    assert all(type(s) is str for ns in customs for s in ns)

    for at in range(depth):
        bad = {"type": "custom", "ns": tuple(7 if i == at else s for i, s in enumerate(path)),
               "data": None}
        items, err, out_err = _run_lane(lane, [parts[0], bad])
        assert items == [{"i": 0}]
        assert type(err) is TypeError and str(err) == (
            f"stream part field 'ns' must contain only str segments, got int 7 in tuple "
            f"{bad['ns']!r}"), err
        assert type(out_err) is TypeError and str(out_err) == str(err)


@pytest.mark.parametrize("lane", LANES)
def test_str_enum_type_routes_like_its_value(backend, lane):
    parts = [{"type": _Mode.VALUES, "ns": (), "data": {"i": i}, "interrupts": ()} for i in range(3)]
    items, err, out_err = _run_lane(lane, parts)
    assert (items, err, out_err) == ([{"i": 0}, {"i": 1}, {"i": 2}], None, None)


class _Subscriptable:
    def __getitem__(self, key):
        return {"type": "values", "ns": (), "data": 1}[key]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize(
    "bad, exc_type, words",
    [
        (_Subscriptable(), TypeError, ["stream part must be a mapping", "_Subscriptable"]),
        ({"type": 3, "ns": (), "data": 1}, TypeError, ["'type'", "int 3"]),
        ({"type": "values", "ns": "ab", "data": 1}, TypeError, ["'ns'", "str 'ab'"]),
        ({"type": "values", "ns": (1,), "data": 1}, TypeError, ["'ns'", "int 1"]),
        ({"type": "values", "ns": (), "data": 1, "interrupts": "x"}, TypeError, ["'interrupts'"]),
        ({"type": "values", "ns": ()}, ValueError, ["'data'"]),
    ],
)
def test_bad_parts_name_the_field(backend, lane, bad, exc_type, words):
    parts = [values({"i": 0}), bad]
    _, err, out_err = _run_lane(lane, parts)
    for exc in (err, out_err):
        assert type(exc) is exc_type, exc
        for word in words:
            assert word in str(exc), (word, str(exc))


# ------------------------------------------------------------------ item 15


@pytest.mark.parametrize("entry", ["sync", "async"])
@pytest.mark.parametrize("scope", ["child:1", b"child", None, 5, ("a", 1)])
def test_bad_scope_names_scope(backend, entry, scope):
    fn = stream_events if entry == "sync" else astream_events
    with pytest.raises(TypeError, match="scope") as info:
        fn([], scope=scope)
    assert repr(scope) in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0, -math.inf, True, "5"])
def test_bad_stall_warning_after_is_rejected(backend, bad):
    with pytest.raises((ValueError, TypeError), match="stall_warning_after") as info:
        astream_events([], stall_warning_after=bad)
    assert repr(bad) in str(info.value)
    run = astream_events([])
    with pytest.raises((ValueError, TypeError), match="stall_warning_after"):
        run.stall_warning_after = bad
    assert run.stall_warning_after == 5.0


@pytest.mark.parametrize("bad", [2 ** 64, 2 ** 63, sys.maxsize + 1, 10 ** 30])
def test_huge_maxlen_names_maxlen_on_both_backends(eventlog, bad):
    with pytest.raises(ValueError, match="maxlen") as info:
        eventlog.EventLog(bad)
    assert str(bad) in str(info.value)


def test_largest_maxlen_is_accepted(eventlog):
    log = eventlog.EventLog(sys.maxsize)
    assert log.maxlen == sys.maxsize
    cur = log.cursor()
    log.push(1)
    assert list(cur) == [1]


@pytest.mark.parametrize("bad", [2 ** 64, math.nan, "3"])
def test_huge_maxlen_on_runs_names_maxlen(backend, bad):
    for fn in (stream_events, astream_events):
        with pytest.raises((ValueError, TypeError), match="maxlen"):
            fn([], maxlen=bad)
    with pytest.raises((ValueError, TypeError), match="maxlen"):
        StreamChannel(maxlen=bad)


# ------------------------------------------------------------------ item 1


async def _until(pred, turns=1000):
    for _ in range(turns):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never reached")


def _finishing(run):
    pump = run._pump
    return pump.exhausted and (pump.pumping or pump.closing is not None)


def test_reader_waits_for_the_run_to_finish_its_scheduled_work(backend):
    """A reader that asks for more while the run awaits its scheduled tasks
    gets every item those tasks push, not a premature end."""

    async def main():
        gate = asyncio.Event()

        class Delayed(StreamTransformer):
            requires_async = True

            def __init__(self, scope=()):
                super().__init__(scope)
                self.ch = StreamChannel()

            def init(self):
                return {"delayed": self.ch}

            def process(self, event):
                if event["method"] == "values" and not self.scope:
                    self.schedule(self.later(event["params"]["data"]))
                return True

            async def later(self, data):
                await gate.wait()
                self.ch.push(data)

        parts = [values({"i": i}) for i in range(3)]
        run = astream_events(areplay(parts), transformers=[Delayed])
        out = asyncio.ensure_future(run.output())
        await _until(lambda: _finishing(run))
        reader = asyncio.ensure_future(adrain(run.extensions["delayed"]))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not reader.done(), "the reader ended while the run was still finishing"
        gate.set()
        assert await out == {"i": 2}
        assert await reader == [{"i": 0}, {"i": 1}, {"i": 2}]

    arun(main())


def test_concurrent_output_sees_the_error_while_the_run_fails(backend):
    """The graph raises while afail awaits a cancelled task's cleanup: a
    concurrent output() and reader get the error, never a clean end."""

    async def main():
        gate = asyncio.Event()
        working = asyncio.Event()

        class Slow(StreamTransformer):
            requires_async = True

            def init(self):
                return {}

            def process(self, event):
                if event["method"] == "values" and not self.scope:
                    self.schedule(self.work())
                return True

            async def work(self):
                working.set()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    await gate.wait()  # slow cleanup
                    raise

        async def graph():
            yield values({"i": 0})
            await working.wait()
            raise ValueError("boom")

        run = astream_events(graph(), transformers=[Slow])
        first = asyncio.ensure_future(run.output())
        await _until(lambda: _finishing(run))
        second = asyncio.ensure_future(run.output())
        reader = asyncio.ensure_future(adrain_outcome(run))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not second.done() and not reader.done()
        gate.set()
        for fut in (first, second):
            with pytest.raises(ValueError, match="boom"):
                await fut
        _, err = await reader
        assert isinstance(err, ValueError)

    arun(main())


def test_output_during_abort_waits_for_the_teardown(backend):
    async def main():
        gate = asyncio.Event()

        class SlowFinal(StreamTransformer):
            def init(self):
                return {}

            async def aprocess(self, event):
                return True

            async def afinalize(self):
                await gate.wait()

        run = astream_events(areplay([values({"i": 0})]), transformers=[SlowFinal])
        it = run.values.__aiter__()
        assert await it.__anext__() == {"i": 0}
        aborting = asyncio.ensure_future(run.abort())
        await _until(lambda: _finishing(run))
        out = asyncio.ensure_future(run.output())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not out.done()
        gate.set()
        await aborting
        assert await out == {"i": 0}
        assert run.values.closed

    arun(main())


# ------------------------------------------------------------------ item 2


def _two_sibling_parts():
    from helpers import subgraph_run

    return (
        [values({"i": 0})]
        + subgraph_run("a", "ta", (), [{"a": 0}, {"a": 1}])
        + subgraph_run("b", "tb", (), [{"b": 0}, {"b": 1}])
        + [values({"i": 1})]
    )


@pytest.mark.parametrize("lane", LANES)
def test_aborting_a_handle_keeps_a_siblings_first_event(backend, lane):
    if lane == "sync":
        run = stream_events(iter(_two_sibling_parts()))
        handles = []
        for handle in run.subgraphs:
            handles.append(handle)
            if len(handles) == 2:
                handles[0].abort()
                got = list(handle.values)
                break
        assert run.output == {"i": 1}
    else:
        async def main():
            run = astream_events(areplay(_two_sibling_parts()))
            handles = []
            async for handle in run.subgraphs:
                handles.append(handle)
                if len(handles) == 2:
                    await handles[0].abort()
                    got = await adrain(handle.values)
                    break
            assert await run.output() == {"i": 1}
            return got
        got = arun(main())
    assert got == [{"b": 0}, {"b": 1}]


def test_leaving_async_with_on_a_handle_keeps_a_siblings_first_event(backend):
    async def main():
        run = astream_events(areplay(_two_sibling_parts()))
        handles = []
        async for handle in run.subgraphs:
            handles.append(handle)
            if len(handles) == 2:
                async with handles[0]:
                    pass
                return await adrain(handle.values)

    assert arun(main()) == [{"b": 0}, {"b": 1}]


# ------------------------------------------------------------------ item 6


@pytest.mark.parametrize("how", ["output", "iterate"])
def test_aprocess_awaiting_its_own_run_raises_instead_of_hanging(backend, how):
    holder = {}

    class SelfAwaiting(StreamTransformer):
        def init(self):
            return {}

        async def aprocess(self, event):
            if event["method"] == "values" and not self.scope:
                run = holder["run"]
                if how == "output":
                    await run.output()
                else:
                    async for _ in run:
                        pass
            return True

    async def main():
        run = holder["run"] = astream_events(
            areplay([values({"i": 0}), values({"i": 1})]), transformers=[SelfAwaiting])
        items, err = await adrain_outcome(run.values)
        with pytest.raises(RuntimeError, match="deadlock"):
            await run.output()
        return items, err

    items, err = arun(main(), timeout=10)
    assert isinstance(err, RuntimeError) and "awaited the run itself" in str(err)
    assert items == [{"i": 0}]  # (the values projection saw it before the error)


# ------------------------------------------------------------------ item 7


def test_async_run_continued_in_another_loop_is_rejected(backend):
    run = astream_events(areplay([values({"i": i}) for i in range(5)]))

    async def first():
        it = run.values.__aiter__()
        return await it.__anext__()

    assert asyncio.run(first()) == {"i": 0}

    async def second():
        await run.output()

    with pytest.raises(RuntimeError, match="event loop") as info:
        asyncio.run(second())
    assert "first pumped it" in str(info.value) and "closed" in str(info.value)


def test_async_run_in_one_loop_after_another_loop_waited_is_rejected(backend):
    run = astream_events(areplay([values({"i": i}) for i in range(5)]))
    asyncio.run(run.values.__aiter__().__anext__())

    async def second():
        return await adrain(run)

    with pytest.raises(RuntimeError, match="another event"):
        asyncio.run(second())


# ------------------------------------------------------------------ item 8


@pytest.mark.parametrize("where", ["waiting", "task-ended"])
def test_cancelled_reader_of_a_bounded_run_lets_go(backend, where):
    """A consumer task cancelled while its iterator stays referenced (here
    in a list; a traceback does the same) releases its hold once the pump
    needs room: the run completes instead of stalling."""
    kept = []

    async def main():
        slow = asyncio.Event()
        got_first = asyncio.Event()

        async def graph():
            for i in range(50):
                if i == 1:
                    await slow.wait()
                yield values({"i": i})

        run = astream_events(graph(), maxlen=2)

        async def consumer():
            it = run.values.__aiter__()
            kept.append(it)
            async for _ in it:
                got_first.set()
                if where == "task-ended":
                    await asyncio.sleep(60)  # cancelled in its own body

        pump = asyncio.ensure_future(run.output())  # another task pumps
        task = asyncio.ensure_future(consumer())
        await got_first.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # (the consumer now waits, or sleeps)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        kept.append(task)
        slow.set()
        assert await pump == {"i": 49}
        with pytest.raises(RuntimeError, match="released its subscription"):
            await kept[0].__anext__()

    arun(main(), timeout=10)


def test_cancelled_read_then_read_again_keeps_every_item(backend):
    """Cancel one read (a timeout) and read on before the pump needs room:
    nothing is lost."""

    async def main():
        gate = asyncio.Event()

        async def graph():
            for i in range(6):
                if i == 2:
                    await gate.wait()
                yield values({"i": i})

        run = astream_events(graph(), maxlen=2)
        it = run.values.__aiter__()
        pump = None
        got = [await it.__anext__()]
        pump = asyncio.ensure_future(run.output())
        got.append(await it.__anext__())
        for _ in range(5):
            await asyncio.sleep(0)  # the pump now waits in the graph
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(it.__anext__(), 0.01)
        rest = asyncio.ensure_future(adrain(it))
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        got.extend(await rest)
        assert await pump == {"i": 5}
        return got

    assert arun(main()) == [{"i": i} for i in range(6)]


# ------------------------------------------------------------------ item 9


def _subgraph_stream(n, depth=2):
    """``n`` subgraphs one after another, each with a nested child and a
    tool-call task input, ended by their parents' task results."""
    yield values({"i": -1})
    for i in range(n):
        task = f"t{i}"
        ns = (f"sub:{task}",)
        yield {"type": "tasks", "ns": (), "data": {
            "id": task, "name": "sub", "triggers": [],
            "input": {"tool_call": {"id": f"call{i}"}}}}
        yield values({"i": i}, ns=ns)
        inner = ns
        for d in range(1, depth):
            gtask = f"g{i}-{d}"
            yield {"type": "tasks", "ns": inner, "data": {
                "id": gtask, "name": "inner", "input": {}, "triggers": []}}
            child = (*inner, f"inner:{gtask}")
            yield values({"d": d}, ns=child)
            yield {"type": "tasks", "ns": inner, "data": {
                "id": gtask, "name": "inner", "error": None, "result": {}, "interrupts": []}}
        yield {"type": "tasks", "ns": (), "data": {
            "id": task, "name": "sub", "error": None, "result": {}, "interrupts": []}}
        yield values({"i": i})


def _tracker_sizes(run):
    mux = run._mux
    sizes = 0
    for key in ("lifecycle", "subgraphs"):
        t = mux.transformer_by_key(key)
        sizes += len(t._seen) + len(t._open) + len(t._by_task) + len(t._tool_calls)
    return sizes


@pytest.mark.parametrize("lane", LANES)
def test_ended_subgraphs_leave_nothing_behind(backend, lane):
    """Per-subgraph state is bounded by what is open: after every ended
    subgraph the trackers hold nothing, and retained memory does not grow
    with the number of subgraphs seen."""
    def sync_run(n, check):
        run = stream_events(_subgraph_stream(n), maxlen=4)
        for handle in run.subgraphs:
            assert list(handle.values) == [{"i": int(handle.path[0][5:])}]
            check(run)
        return run

    async def async_run(n, check):
        run = astream_events(areplay(list(_subgraph_stream(n))), maxlen=4)
        async for handle in run.subgraphs:
            assert await adrain(handle.values) == [{"i": int(handle.path[0][5:])}]
            check(run)
        return run

    def bounded(run):
        assert _tracker_sizes(run) <= 8  # one subgraph (and its child) at a time

    if lane == "sync":
        run = sync_run(150, bounded)
        assert run.output == {"i": 149}
    else:
        run = arun(async_run(150, bounded))
    assert _tracker_sizes(run) == 0
    if sys.implementation.name != "cpython":
        return  # (no tracemalloc on PyPy: the bounded sizes above are the check)

    # retained memory at the end of a small and of a large run
    import tracemalloc

    def measure(n):
        tracemalloc.start()
        try:
            if lane == "sync":
                run = sync_run(n, lambda r: None)
                run.output
            else:
                run = arun(async_run(n, lambda r: None))
            gc.collect()
            size = tracemalloc.get_traced_memory()[0]
            del run
            return size
        finally:
            tracemalloc.stop()

    small, large = measure(50), measure(450)
    assert large - small < 40_000, (small, large)  # (before: ~667 bytes per subgraph)


# ------------------------------------------------------------------ item 10


def _tb_len(exc):
    n, tb = 0, exc.__traceback__
    while tb is not None:
        n += 1
        tb = tb.tb_next
    return n


@pytest.mark.parametrize("lane", LANES)
def test_repeated_reads_of_a_failed_run_do_not_grow_the_traceback(backend, lane):
    parts = [values({"i": 0})]

    def read_sync(run):
        try:
            run.output
        except ValueError as exc:
            return exc

    async def read_async(run):
        try:
            await run.output()
        except ValueError as exc:
            return exc

    if lane == "sync":
        run = stream_events(iter_fail(parts))
        lengths = [_tb_len(read_sync(run)) for _ in range(2000)]
    else:
        async def main():
            run = astream_events(areplay(parts, ValueError("boom")))
            return [_tb_len(await read_async(run)) for _ in range(2000)]
        lengths = arun(main())
    assert max(lengths) == lengths[1] == lengths[-1] < 20, lengths[:3]


def iter_fail(parts):
    yield from parts
    raise ValueError("boom")


def test_repeated_reads_of_a_failed_log_do_not_grow_the_traceback(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.fail(exc)
    lengths = []
    for _ in range(2000):
        with pytest.raises(ValueError) as info:
            next(cur)
        lengths.append(_tb_len(info.value))
    assert max(lengths) == lengths[-1] < 10


# ------------------------------------------------------------------ item 11


@pytest.mark.parametrize("shape", ["cursor", "tuple", "list"])
def test_cycle_through_an_unread_item_holding_a_cursor_is_collected(eventlog, shape):
    """log -> unread item -> cursor -> log: garbage once nothing else refers
    to it.  (Counted with gc.get_objects, not weakrefs: the collector clears
    weak references to unreachable objects even when it cannot free them.)"""

    def live():
        return sum(1 for o in gc.get_objects() if type(o) is eventlog.EventLog)

    for _ in range(3):  # (PyPy frees cursors with finalizers over several passes)
        gc.collect()
    before = live()
    for _ in range(200):
        log = eventlog.EventLog()
        cur = log.cursor()
        item = {"cursor": cur, "tuple": (cur, object()), "list": [cur]}[shape]
        log.push(item)
        del log, cur, item
    for _ in range(3):
        gc.collect()
    assert live() <= before  # (not 200 more)


# ------------------------------------------------------------------ item 12


def _deep_parts(depth):
    ns = tuple(f"n{k}:t{k}" for k in range(depth))
    return [values({"i": 0}), values({"deep": 1}, ns=ns), values({"i": 1})]


def _nest(frames, fn):
    """Call ``fn`` from ``frames`` frames deep (a consumer inside a deep stack)."""
    return fn() if frames == 0 else _nest(frames - 1, fn)


@pytest.mark.parametrize("lane", LANES)
def test_deepest_supported_namespace_runs_and_tears_down(backend, lane):
    from langstream.protocol import MAX_NAMESPACE_DEPTH

    parts = _deep_parts(MAX_NAMESPACE_DEPTH)
    if lane == "sync":
        def go():
            run = stream_events(iter(parts))
            lifecycle = list(run.lifecycle)
            return run.output, lifecycle
        out, lifecycle = _nest(500, go)
    else:
        async def main():
            run = astream_events(areplay(parts))
            lifecycle = await adrain(run.lifecycle)
            return await run.output(), lifecycle
        out, lifecycle = _nest(500, lambda: arun(main()))
    assert out == {"i": 1}
    started = [p for p in lifecycle if p["event"] == "started"]
    completed = [p for p in lifecycle if p["event"] == "completed"]
    assert len(started) == len(completed) == MAX_NAMESPACE_DEPTH


@pytest.mark.parametrize("depth", [129, 700, 5000])
@pytest.mark.parametrize("lane", LANES)
def test_too_deep_namespace_fails_the_run_naming_the_depth(backend, lane, depth):
    items, err, out_err = _run_lane(lane, _deep_parts(depth))
    assert items == [{"i": 0}]
    for exc in (err, out_err):
        assert type(exc) is ValueError, exc
        assert f"{depth} segments deep" in str(exc) and "128" in str(exc)


def test_too_deep_namespace_is_rejected_by_convert(backend):
    from langstream import convert_to_protocol_event

    with pytest.raises(ValueError, match="5000 segments deep"):
        convert_to_protocol_event(_deep_parts(5000)[1])


@pytest.mark.parametrize("how", ["complete", "fail"])
@pytest.mark.parametrize("lane", LANES)
def test_teardown_of_deep_subgraphs_is_iterative(backend, lane, how):
    """Ending a run with 128 nested open subgraphs closes them without
    recursing level by level: every scope's finalize/fail runs at about the
    same stack depth (not one frame or more per level)."""
    from langstream.protocol import MAX_NAMESPACE_DEPTH

    depths = {}

    def frame_depth():
        n, f = 0, sys._getframe()
        while f is not None:
            n += 1
            f = f.f_back
        return n

    class Probe(StreamTransformer):
        supports_sync = True

        def init(self):
            return {}

        def process(self, event):
            return True

        def finalize(self):
            depths[len(self.scope)] = frame_depth()

        def fail(self, err):
            depths[len(self.scope)] = frame_depth()

    parts = _deep_parts(MAX_NAMESPACE_DEPTH)[:2]
    error = ValueError("boom") if how == "fail" else None
    if lane == "sync":
        def gen():
            yield from parts
            if error is not None:
                raise error
        run = stream_events(gen(), transformers=[Probe])
        try:
            list(run.lifecycle)
        except ValueError:
            assert how == "fail"
    else:
        async def main():
            run = astream_events(areplay(parts, error), transformers=[Probe])
            await adrain_outcome(run.lifecycle)
        arun(main())
    assert len(depths) == MAX_NAMESPACE_DEPTH + 1
    assert max(depths.values()) - min(depths.values()) < 25, depths


@pytest.mark.parametrize("stop", [StopIteration, StopAsyncIteration])
@pytest.mark.parametrize("lane", LANES)
def test_a_factory_stop_names_the_factory_not_the_subgraph_tracker(backend, lane, stop):
    """A factory that raises StopIteration while a subgraph's pipeline is
    built fails the run with a RuntimeError naming that factory (not the
    subgraph tracker that happened to be building the child)."""
    _, _, out_err = _run_lane(lane, _sub_parts(), transformers=[_picky(stop)])
    assert type(out_err) is RuntimeError and isinstance(out_err.__cause__, stop)
    assert "factory" in str(out_err) and "Picky" in str(out_err)
    assert "SubgraphTransformer" not in str(out_err) and "('sub:t1',)" in str(out_err)
