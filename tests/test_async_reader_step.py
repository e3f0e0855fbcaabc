"""An async projection reader awaits its run's pump step directly, and the
step returns the reader's next item (``_AsyncPump.step(reader)``, issue 10);
on the C event log the reader awaits the compiled twin of that step's
common case (``_pump_c.AsyncReaderStep``), which hands over to the step for
everything else.

Every test compares three routes: ``direct`` (as a reader is made: the
compiled step where there is one, awaited from the compiled twin of
``__anext__``), ``step`` (the Python step, from the Python ``__anext__``) and
the general one: the same run whose pump readers cannot hand themselves to
(a plain wrapper around the step, as the Redis publisher installs), so each
reader pumps, gets ``True`` / ``False`` back and reads its log itself.
Items, order, errors and cancellation outcomes must be the same on all
three, on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from helpers import areplay, arun, custom, updates, values
from langstream import astream_events, channel, run_stream
from langstream.transformers import CustomTransformer, UpdatesTransformer

ROUTES = ("direct", "step", "general")


def _restore_anext(saved: Any) -> None:
    """Put a reader class's ``__anext__`` back; the compiled one as the run
    stream installs it (with its C slot, which any assignment resets)."""
    if getattr(saved, "__name__", None) == "reader_anext":
        from langstream import _pump_c

        _pump_c.install_reader_anext()
        assert channel._AsyncChannelIterator.__anext__ is saved
    else:
        channel._AsyncChannelIterator.__anext__ = saved


@contextlib.contextmanager
def _route(route: str) -> Iterator[None]:
    """On the ``step`` route the readers made get no compiled step, and
    ``__anext__`` is the Python method (not its compiled twin)."""
    saved = run_stream._ReaderSteps
    saved_anext = channel._AsyncChannelIterator.__anext__
    if route == "step":
        run_stream._ReaderSteps = None
        channel._AsyncChannelIterator.__anext__ = channel._PY_ANEXT
    try:
        yield
    finally:
        run_stream._ReaderSteps = saved
        _restore_anext(saved_anext)


def _parts(n: int = 12) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for i in range(n):
        out.append(values({"i": i}))
        if i % 2:
            out.append(updates({"node": {"i": i}}))
        if i % 3 == 0:
            out.append(custom({"c": i}))
    return out


def _open(aparts: Any, route: str, transformers: Any = (), **kwargs: Any) -> Any:
    run = astream_events(aparts, transformers=[UpdatesTransformer, CustomTransformer,
                                               *transformers], **kwargs)
    if route == "general":
        step = run._pump.step

        async def plain_step() -> bool:  # (no ``__self__``: readers pump, then read)
            return await step()

        run._mux.bind_apump(plain_step)
    return run


async def _read(it: Any, limit: Optional[int] = None,
                items: Optional[List[Any]] = None) -> Tuple[List[Any], Any]:
    """``(items, error)`` of an async iterator: up to ``limit`` items, then what
    ended it (``items``: the list to read into, kept if the reading is cancelled)."""
    if items is None:
        items = []
    while limit is None or len(items) < limit:
        try:
            items.append(await it.__anext__())
        except StopAsyncIteration:
            return items, "end"
        except Exception as exc:  # noqa: BLE001 - returned to the test
            return items, (type(exc).__name__, str(exc))
    return items, None


def _both(make: Any) -> Any:
    """Run ``make(route)`` on both routes; assert they agree; return the result."""
    results = {}
    for route in ROUTES:
        with _route(route):
            results[route] = arun(make(route))
    assert results["direct"] == results["general"]
    assert results["step"] == results["general"]
    return results["direct"]


def _events(items: List[Any]) -> List[Any]:
    return [(e["method"], tuple(e["params"]["namespace"]), e["params"]["data"]) for e in items]


@pytest.mark.parametrize("route", ["direct", "step"])
def test_the_direct_routes_are_taken(backend: str, route: str) -> None:
    """(The comparisons below are not vacuous: a reader awaits the compiled
    step on the C event log, else the pump's step itself.)"""

    async def direct() -> Any:
        run = astream_events(areplay(_parts(2)))
        it = run.values.__aiter__()
        awaitable = it.__anext__()
        anext = type(it).__anext__
        if backend == "c" and route == "direct":
            assert type(awaitable).__name__ == "AsyncReaderStep"
            assert asyncio.iscoroutine(awaitable)  # (create_task takes it)
        else:
            assert awaitable.cr_code is run._pump.step.__code__  # the pump's step itself
        if route == "step" or run_stream._ReaderSteps is None:
            assert anext is channel._PY_ANEXT
        else:  # (the compiled twin of ``__anext__`` where the compiled pump is)
            assert anext is not channel._PY_ANEXT and anext.__name__ == "reader_anext"
        return await awaitable

    with _route(route):
        assert arun(direct()) == {"i": 0}


async def _by_hand(awaitable: Any) -> Tuple[str, Any]:
    """Await ``awaitable`` through its iterator's ``send``, as a task does
    without the C send slot (Python 3.9, or a hand-written driver): what it
    yields is waited for, then it is sent ``None``."""
    it = awaitable.__await__()
    while True:
        try:
            yielded = it.send(None)
        except StopIteration as stop:
            return "item", stop.value
        except StopAsyncIteration:
            return "end", None
        except Exception as exc:  # noqa: BLE001 - returned to the test
            return "error", (type(exc).__name__, str(exc))
        if yielded is None:
            await asyncio.sleep(0)
        else:
            await yielded  # (a future: resumed once it is done)


@pytest.mark.parametrize("fails", [False, True])
def test_an_anext_driven_by_send_ends_like_an_await(backend: str, fails: bool) -> None:
    """The end (``StopAsyncIteration``) or the error of a reader reaches a
    driver that sends into the awaitable, as it reaches an ``await``."""

    async def main(route: str) -> Any:
        run = _open(areplay(_parts(6), *([ValueError("boom")] if fails else []),
                            yield_every=1), route)
        vals, upd = run.values.__aiter__(), run.updates.__aiter__()
        got: List[Any] = []
        while not got or got[-1][0] == "item":
            got.append(await _by_hand(vals.__anext__()))
        got.append(await _by_hand(vals.__anext__()))  # (and again)
        return got, await _read(upd)

    got, upd = _both(main)
    end = ("error", ("ValueError", "boom")) if fails else ("end", None)
    assert got == [("item", {"i": i}) for i in range(6)] + [end, end]
    assert upd == ([{"node": {"i": i}} for i in (1, 3, 5)], end[1] if fails else "end")


@pytest.mark.parametrize("yield_every", [0, 1, 3])
def test_one_reader_same_items_error_and_end(backend: str, yield_every: int) -> None:
    async def main(route: str) -> Any:
        run = _open(areplay(_parts(), ValueError("boom"), yield_every=yield_every), route)
        it = run.values.__aiter__()
        got = await _read(it)
        again = await _read(it)  # reading on after the error: the error again
        return got, again

    got, again = _both(main)
    assert got == ([{"i": i} for i in range(12)], ("ValueError", "boom"))
    assert again == ([], ("ValueError", "boom"))


def test_end_is_repeated(backend: str) -> None:
    async def main(route: str) -> Any:
        run = _open(areplay(_parts(3)), route)
        it = run.updates.__aiter__()
        return await _read(it), await _read(it)

    assert _both(main) == (([{"node": {"i": 1}}], "end"), ([], "end"))


@pytest.mark.parametrize("yield_every", [0, 2])
def test_concurrent_readers_each_get_their_own_items_in_order(backend: str,
                                                             yield_every: int) -> None:
    parts = _parts()

    async def main(route: str) -> Any:
        run = _open(areplay(parts, yield_every=yield_every), route)
        its = (run.values.__aiter__(), run.updates.__aiter__(), run.custom.__aiter__(),
               run.__aiter__())
        v, u, c, log = await asyncio.gather(*(_read(it) for it in its))
        return v, u, c, (_events(log[0]), log[1])

    v, u, c, log = _both(main)
    assert v == ([{"i": i} for i in range(12)], "end")
    assert u == ([{"node": {"i": i}} for i in range(1, 12, 2)], "end")
    assert c == ([{"c": i} for i in range(0, 12, 3)], "end")
    assert [m for m, _, _ in log[0]].count("values") == 12


def _interleaving(make: Any) -> List[Any]:
    """Run ``make(route, trace)`` on the ``direct`` and ``step`` routes; assert
    both traces are the same; return it."""
    traces = {}
    for route in ("direct", "step"):
        trace: List[Any] = []
        with _route(route):
            arun(make(route, trace))
        traces[route] = trace
    assert traces["direct"] == traces["step"]
    return traces["direct"]


async def _traced(parts: List[Dict[str, Any]], trace: List[Any], yield_every: int) -> Any:
    k = 0
    async for part in areplay(parts, yield_every=yield_every):
        k += 1
        trace.append(("pull", k))
        yield part


@pytest.mark.parametrize("yield_every", [0, 2])
def test_concurrent_readers_take_turns_as_on_the_step(backend: str, yield_every: int) -> None:
    """Who pulls which part, and which reader reads what between two pulls,
    is the same when the readers await the compiled step as when they await
    the Python step: e.g. after a step that woke waiting readers, those
    readers read before the next pull, unless nothing else is ready to run."""
    parts = _parts(30)

    async def main(route: str, trace: List[Any]) -> None:
        run = _open(_traced(parts, trace, yield_every), route)

        async def read(name: str, it: Any) -> None:
            async for _item in it:
                trace.append((name, asyncio.current_task().get_name()))

        names = ("values", "updates", "custom")
        await asyncio.gather(*(asyncio.create_task(read(n, run.extensions[n]), name=n)
                               for n in names))

    trace = _interleaving(main)
    assert sum(1 for t in trace if t[0] == "pull") == len(parts)
    # (not vacuous: the readers do take turns between pulls)
    assert len({t[0] for t in trace[:12]} - {"pull"}) > 1


@pytest.mark.parametrize("yield_every", [0, 3])
def test_handle_readers_take_turns_as_on_the_step(backend: str, yield_every: int) -> None:
    """The same with subgraph handles: values, lifecycle, and inside the
    subgraphs loop each handle's values (the bench's mixed agent program)."""
    from langstream import _bench

    parts = _bench.agent_parts(160)

    async def main(route: str, trace: List[Any]) -> None:
        run = astream_events(_traced(parts, trace, yield_every))
        pump = run._pump

        async def read(name: str, it: Any) -> None:
            async for _item in it:
                # (and the pump's turn-taking state the two steps keep alike:
                # whether the next step lets woken consumers run first, and
                # which task's step last woke readers)
                passer = pump.passer
                trace.append((name, asyncio.current_task().get_name(), pump.yield_next,
                              passer.get_name() if passer is not None else None))

        async def handles() -> None:
            async for handle in run.subgraphs:
                trace.append(("handle", handle.path))
                await read("handle values", handle.values)

        await asyncio.gather(
            asyncio.create_task(read("values", run.values), name="values"),
            asyncio.create_task(read("lifecycle", run.lifecycle), name="lifecycle"),
            asyncio.create_task(handles(), name="handles"))

    trace = _interleaving(main)
    assert sum(1 for t in trace if t[0] == "pull") == len(parts)
    assert sum(1 for t in trace if t[0] == "handle") >= 2


def test_a_reader_subscribing_halfway_sees_what_follows(backend: str) -> None:
    async def main(route: str) -> Any:
        run = _open(areplay(_parts()), route)
        first = await _read(run.values.__aiter__(), limit=5)
        log_it = run.__aiter__()  # the raw main log, subscribed halfway
        upd_it = run.updates.__aiter__()
        rest = await asyncio.gather(_read(log_it), _read(upd_it))
        return first, (_events(rest[0][0]), rest[0][1]), rest[1]

    first, log, upd = _both(main)
    assert first == ([{"i": i} for i in range(5)], None)
    assert log[1] == "end"
    assert [d for m, _, d in log[0] if m == "values"] == [{"i": i} for i in range(5, 12)]
    assert upd[0] == [{"node": {"i": i}} for i in range(5, 12, 2)]


def _blocking_graph(parts: List[Dict[str, Any]], at: int, gate: Dict[str, Any]) -> Any:
    async def graph() -> Any:
        try:
            for i, p in enumerate(parts):
                if i == at:
                    gate["waiting"].set()
                    await gate["release"].wait()
                yield dict(p)
        finally:
            gate["closed"] = True

    return graph()


def _gated(parts: List[Dict[str, Any]], at: int, route: str) -> Tuple[Any, Dict[str, Any]]:
    """A run of ``_blocking_graph`` on ``route`` (in a running loop), and its gate."""
    gate = {"waiting": asyncio.Event(), "release": asyncio.Event(), "closed": False}
    return _open(_blocking_graph(parts, at, gate), route), gate


def test_cancel_while_pulling_ends_the_run_with_a_clear_error(backend: str) -> None:
    parts = [values({"i": i}) for i in range(6)]

    async def main(route: str) -> Any:
        run, gate = _gated(parts, 3, route)
        it = run.values.__aiter__()
        other = run.updates.__aiter__()
        read: List[Any] = []
        task = asyncio.ensure_future(_read(it, items=read))
        await gate["waiting"].wait()  # the reader's task is inside the pull
        task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        return cancelled, read, await _read(other), await _read(it), gate["closed"]

    cancelled, read, other, again, closed = _both(main)
    assert cancelled and closed
    assert read == [{"i": i} for i in range(3)]
    assert other[0] == [] and other[1][0] == "RuntimeError"
    assert "cancelled while the graph was producing" in other[1][1]
    # the cancelled reader reads on: the same error
    assert again == ([], other[1])


def test_cancel_while_waiting_for_another_pump_loses_nothing(backend: str) -> None:
    parts = [values({"i": i}) if i % 2 == 0 else updates({"n": {"i": i}}) for i in range(10)]

    async def main(route: str) -> Any:
        run, gate = _gated(parts, 4, route)
        vals = run.values.__aiter__()
        upds = run.updates.__aiter__()
        first = await _read(upds, limit=1)  # pumps values 0, updates 1
        pumping = asyncio.ensure_future(_read(vals))  # pumps until the gate
        await gate["waiting"].wait()
        kept: List[Any] = []
        waiting = asyncio.ensure_future(_read(upds, items=kept))  # waits for the pumping task
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        waiting.cancel()
        try:
            await waiting
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        gate["release"].set()
        rest = await _read(upds)
        return first, cancelled, (kept + rest[0], rest[1]), await pumping

    first, cancelled, upd, vals = _both(main)
    assert first == ([{"n": {"i": 1}}], None)
    assert cancelled
    # what the cancelled read had, then what the next read gets: nothing lost
    assert upd == ([{"n": {"i": i}} for i in (3, 5, 7, 9)], "end")
    assert vals == ([{"i": i} for i in (0, 2, 4, 6, 8)], "end")


@pytest.mark.parametrize("maxlen", [1, 2])
def test_maxlen_backpressure_with_a_slow_reader(backend: str, maxlen: int) -> None:
    parts = _parts(20)

    async def main(route: str) -> Any:
        run = _open(areplay(parts), route, maxlen=maxlen)
        vals = run.values.__aiter__()
        log = run.__aiter__()

        async def slow(it: Any) -> Any:
            items: List[Any] = []
            while True:
                try:
                    items.append(await it.__anext__())
                except StopAsyncIteration:
                    return items
                await asyncio.sleep(0)
                await asyncio.sleep(0)

        v, events = await asyncio.gather(slow(vals), _read(log))
        return v, (_events(events[0]), events[1])

    v, log = _both(main)
    assert v == [{"i": i} for i in range(20)]
    assert log[1] == "end"
    assert [d for m, _, d in log[0] if m == "values"] == v


def test_transformer_error_reaches_every_reader(backend: str) -> None:
    from langstream import StreamTransformer

    class Bad(StreamTransformer):
        def init(self) -> Dict[str, Any]:
            return {}

        def process(self, event: Any) -> bool:
            if event["method"] == "updates":
                raise KeyError("bad transformer")
            return True

    async def main(route: str) -> Any:
        run = _open(areplay(_parts()), route, transformers=[Bad])
        v, log = await asyncio.gather(_read(run.values.__aiter__()), _read(run.__aiter__()))
        return v, (_events(log[0]), log[1])

    v, log = _both(main)
    assert v[1] == log[1] and v[1][0] == "KeyError"
    assert [m for m, _, _ in log[0]] == ["values", "custom", "values"]
    assert v[0] == [{"i": 0}, {"i": 1}]


def test_closing_a_read_while_it_pulls_ends_the_run_like_the_step(backend: str) -> None:
    """A read's awaitable closed while the graph is producing (its awaiting
    coroutine was dropped): ``GeneratorExit`` where it pulled, the pump is
    free again and every reader gets the run's end, as on the step."""
    parts = [values({"i": i}) for i in range(6)]

    async def main(route: str) -> Any:
        run, gate = _gated(parts, 3, route)
        it = run.values.__aiter__()
        other = run.updates.__aiter__()
        got = [await it.__anext__() for _ in range(3)]
        awaitable = it.__anext__()
        waits_on = awaitable.send(None)  # the graph waits at the gate
        pumping = run._pump.pumping
        awaitable.close()
        ends = []
        for reader in (other, it):
            try:
                ends.append(await _read(reader))
            except BaseException as exc:  # noqa: BLE001 - GeneratorExit is the run's error
                ends.append(repr(exc))
        return got, isinstance(waits_on, asyncio.Future), pumping, run._pump.pumping, ends

    got, waited, pumping_before, pumping_after, ends = _both(main)
    assert got == [{"i": i} for i in range(3)]
    assert waited and pumping_before and not pumping_after
    assert ends == ["GeneratorExit()", "GeneratorExit()"]


def test_a_read_runs_as_a_task_and_is_cancelled_like_the_step(backend: str) -> None:
    """``asyncio.create_task(reader.__anext__())`` works on every route (the
    compiled step is a coroutine to asyncio), and cancelling that task while
    the graph produces ends the run with the step's clear error."""
    parts = [values({"i": i}) for i in range(6)]

    async def main(route: str) -> Any:
        run, gate = _gated(parts, 1, route)
        it = run.values.__aiter__()
        first = await asyncio.create_task(it.__anext__())
        task = asyncio.create_task(it.__anext__())
        await gate["waiting"].wait()
        task.cancel()
        try:
            await task
            outcome = "done"
        except asyncio.CancelledError:
            outcome = "cancelled"
        return first, outcome, await _read(run.updates.__aiter__()), gate["closed"]

    first, outcome, after, closed = _both(main)
    assert first == {"i": 0} and outcome == "cancelled" and closed
    assert after[0] == [] and "cancelled while the graph was producing" in after[1][1]


def test_an_awaited_read_cannot_be_awaited_again(backend: str) -> None:
    async def main(route: str) -> Any:
        run = _open(areplay(_parts(3)), route)
        it = run.values.__aiter__()
        awaitable = it.__anext__()
        item = await awaitable
        try:
            await awaitable
        except RuntimeError as exc:
            return item, "cannot reuse" in str(exc)
        return item, False

    assert _both(main) == ({"i": 0}, True)


def test_reads_under_a_tracer_get_the_same_items(backend: str) -> None:
    """With a trace function set (coverage, debuggers), an awaiting coroutine
    takes a read's result through ``send``/``__next__`` and ``StopIteration``
    instead of the fast protocol: the items are the same."""
    import sys

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return tracer

    async def main(route: str) -> Any:
        run = _open(areplay(_parts(), ValueError("boom"), yield_every=3), route)
        return await _read(run.values.__aiter__())

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        traced = _both(main)
    finally:
        sys.settrace(previous)
    assert traced == _both(main)
    assert traced == ([{"i": i} for i in range(12)], ("ValueError", "boom"))


class _Awaiting:
    """An awaitable of its own class: ``__await__`` gives the loop a turn
    (a bare ``yield``, as ``asyncio.sleep(0)`` does), then returns ``value``."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __await__(self) -> Any:
        yield
        return self._value


class _SyncRaisingAnext:
    """An async iterator whose ``__anext__`` is a plain method: it returns
    an awaitable per part (a done Future, or an ``_Awaiting``) and raises
    its end (or ``error``) at once, from the call itself, as the ``async
    for`` protocol allows."""

    def __init__(self, parts: List[Dict[str, Any]], error: Optional[BaseException],
                 kind: str) -> None:
        self._parts = iter(parts)
        self._error = error
        self._kind = kind

    def __aiter__(self) -> "_SyncRaisingAnext":
        return self

    def __anext__(self) -> Any:
        part = next(self._parts, None)
        if part is None:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        if self._kind == "awaitable":
            return _Awaiting(part)
        future = asyncio.get_running_loop().create_future()
        future.set_result(part)
        return future


@pytest.mark.parametrize("kind", ["future", "awaitable"])
@pytest.mark.parametrize("error", [None, ValueError("boom")])
def test_an_anext_returning_any_awaitable_and_raising_at_once(
        backend: str, error: Optional[BaseException], kind: str) -> None:
    """What ``__anext__()`` returns is awaited as ``await`` does (not only
    coroutines and async generators), and its end or error raised by the
    call itself ends or fails the run, on every route."""
    async def main(route: str) -> Any:
        run = _open(_SyncRaisingAnext(_parts(), error, kind), route)
        its = (run.values.__aiter__(), run.updates.__aiter__())
        return await _read(its[0]), await _read(its[1])

    got, updates_read = _both(main)
    ending = "end" if error is None else ("ValueError", "boom")
    assert got == ([{"i": i} for i in range(12)], ending)
    assert updates_read == ([{"node": {"i": i}} for i in range(1, 12, 2)], ending)


def test_an_anext_returning_what_await_refuses_fails_the_run(backend: str) -> None:
    class _NotAwaitable:
        def __aiter__(self) -> "_NotAwaitable":
            return self

        def __anext__(self) -> Any:
            return values({"i": 0})  # (a part, not an awaitable of one)

    async def main(route: str) -> Any:
        run = _open(_NotAwaitable(), route)
        return await _read(run.values.__aiter__())

    items, error = _both(main)
    assert items == [] and error[0] == "TypeError"
    assert "can't be used in 'await' expression" in error[1]


def test_a_channel_subclass_is_read_like_a_channel(backend: str) -> None:
    """A projection on a ``StreamChannel`` subclass is read the same on every
    route (the compiled read reads ``_arequest_more`` from the base class's
    slot only for the exact class)."""
    from langstream import StreamChannel, StreamTransformer

    class Mine(StreamChannel):
        pass

    class Customs(StreamTransformer):
        def __init__(self, scope: Tuple[str, ...] = ()) -> None:
            super().__init__(scope)
            self.out = Mine("customs")

        def init(self) -> Dict[str, Any]:
            return {"customs": self.out}

        def process(self, event: Any) -> bool:
            if event["method"] == "custom":
                self.out.push(event["params"]["data"]["c"])
            return True

    async def main(route: str) -> Any:
        run = _open(areplay(_parts(), yield_every=2), route, transformers=[Customs])
        its = (run.extensions["customs"].__aiter__(), run.values.__aiter__())
        return await asyncio.gather(_read(its[0]), _read(its[1]))

    customs, got = _both(main)
    assert customs == ([0, 3, 6, 9], "end")
    assert got == ([{"i": i} for i in range(12)], "end")


def test_async_for_calls_the_reader_class_anext_of_the_moment(backend: str) -> None:
    """``async for`` over a projection calls the reader class's ``__anext__``
    as it is now: the compiled pump's C slot (``install_reader_anext``)
    stands in for ``reader_anext`` only while that is the class's, and any
    other ``__anext__`` assigned to the class is called instead, item by item."""
    saved = channel._AsyncChannelIterator.__anext__
    calls: List[int] = []

    def counting(self: Any) -> Any:
        calls.append(1)
        return saved(self)

    async def main() -> List[Any]:
        run = astream_events(areplay(_parts(3)))
        return [v async for v in run.values]

    expected = [{"i": 0}, {"i": 1}, {"i": 2}]
    assert arun(main()) == expected and not calls
    channel._AsyncChannelIterator.__anext__ = counting
    try:
        assert arun(main()) == expected
    finally:
        _restore_anext(saved)
    assert len(calls) == 4  # (three items, then the end)
    assert arun(main()) == expected and len(calls) == 4


def test_the_compiled_step_asks_a_waiter_if_it_is_done_as_done_does() -> None:
    """The compiled step checks whether a waiting reader's future is done
    (a cancelled reader, or one already woken) to hand the step over; on
    asyncio's C future it calls ``done``'s C function directly. Whatever
    the call, the answer must be ``waiter.done()``'s, for every state.
    (The pure step calls ``waiter.done()`` itself.)"""
    _pump_c = pytest.importorskip("langstream._pump_c")  # (CPython builds only)

    class OwnFuture(asyncio.Future):  # (not asyncio's exact class: asked by method)
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for make in (loop.create_future, lambda: OwnFuture(loop=loop)):
            pending, finished, failed, cancelled = make(), make(), make(), make()
            finished.set_result(None)
            failed.set_exception(ValueError("x"))
            cancelled.cancel()
            for waiter in (pending, finished, failed, cancelled):
                assert _pump_c._waiter_done(waiter) is waiter.done()
            failed.exception()  # (retrieved: no warning at collection)

    asyncio.run(main())
    # asyncio's C future is asked through ``done``'s C function
    assert _pump_c._future_done_is_direct() is (asyncio.Future.__module__ == "_asyncio")
