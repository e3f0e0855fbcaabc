"""The async lane: AsyncGraphRunStream, async mux dispatch, scheduled work,
backpressure and cancellation (issue 4; DESIGN.md "Run streams").

Every test takes the ``backend`` fixture, so the whole stack runs on both
event-log backends.  Async code runs under ``asyncio.run`` (through
``helpers.arun``, which adds a liveness guard) inside plain sync tests, and
every asyncio primitive is created inside the running loop (Python 3.9).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from typing import Any, Dict, List

import pytest

from helpers import (
    adrain,
    adrain_outcome,
    areplay,
    arun,
    custom,
    load_trace,
    updates,
    values,
)
from langstream import (
    AsyncGraphRunStream,
    StreamChannel,
    StreamMux,
    StreamTransformer,
    UpdatesTransformer,
    astream_events,
    stream_events,
)


def _vals(n: int, start: int = 0) -> List[Dict[str, Any]]:
    return [values({"i": i}) for i in range(start, start + n)]


def _alternating(n: int) -> List[Dict[str, Any]]:
    """values i, updates i, values i+1, ...: two projections fed in turn."""
    out: List[Dict[str, Any]] = []
    for i in range(n):
        out.append(values({"i": i}))
        out.append(updates({"node": {"i": i}}))
    return out


class _Instrumented:
    """An async iterator of parts that records how many ``__anext__`` calls overlap."""

    def __init__(self, parts: List[Dict[str, Any]], turns: int = 3) -> None:
        self._parts = list(parts)
        self._i = 0
        self._turns = turns
        self.active = 0
        self.max_active = 0
        self.calls = 0

    def __aiter__(self) -> "_Instrumented":
        return self

    async def __anext__(self) -> Dict[str, Any]:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            for _ in range(self._turns):
                await asyncio.sleep(0)  # let every other consumer run meanwhile
            if self._i >= len(self._parts):
                raise StopAsyncIteration
            part = self._parts[self._i]
            self._i += 1
            return dict(part)
        finally:
            self.active -= 1


# ----------------------------------------------------------------- entry point


def test_astream_events_returns_the_run_not_a_coroutine(backend):
    """``astream_events`` takes an async iterable and returns the run itself.

    Built outside any event loop, consumed later inside ``asyncio.run``.
    """
    run = astream_events(areplay(_vals(3)))
    assert isinstance(run, AsyncGraphRunStream)

    async def main():
        # awaiting it (LangGraph's ``await graph.astream_events(...)``) gives the run
        assert await run is run
        return await adrain(run.values)

    assert arun(main()) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_async_run_raw_log_is_numbered_without_gaps(backend):
    async def main():
        run = astream_events(areplay(_alternating(5)))
        return await adrain(run)

    events = arun(main())
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert [e["method"] for e in events] == ["values", "updates"] * 5


def test_sync_iteration_of_async_projection_is_a_type_error(backend):
    run = astream_events(areplay(_vals(1)))
    with pytest.raises(TypeError):
        iter(run.values)


# ---------------------------------------------------- concurrent consumers


def test_concurrent_consumers_of_two_projections_see_everything_in_order(backend):
    n = 200

    async def main():
        run = astream_events(areplay(_alternating(n), yield_every=3),
                             transformers=[UpdatesTransformer])
        return await asyncio.gather(adrain(run.values), adrain(run.updates), adrain(run))

    vals, upds, raw = arun(main())
    assert vals == [{"i": i} for i in range(n)]
    assert upds == [{"node": {"i": i}} for i in range(n)]
    assert len(raw) == 2 * n
    assert [e["seq"] for e in raw] == list(range(1, 2 * n + 1))


def test_single_flight_pump_never_overlaps_source_calls(backend):
    """At most one task advances the graph iterator, however many consumers pull."""
    n = 60
    source = _Instrumented(_alternating(n), turns=3)

    async def main():
        run = astream_events(source, transformers=[UpdatesTransformer])
        a, b = run.values.atee(2)
        return await asyncio.gather(
            adrain(a), adrain(b), adrain(run.updates), adrain(run), run.output()
        )

    a, b, upds, raw, out = arun(main())
    assert source.max_active == 1
    # one call per part plus the final StopAsyncIteration; no extra pulls
    assert source.calls == 2 * n + 1
    assert a == b == [{"i": i} for i in range(n)]
    assert upds == [{"node": {"i": i}} for i in range(n)]
    assert len(raw) == 2 * n
    assert out == {"i": n - 1}


def test_single_flight_with_backpressure(backend):
    """Single flight holds while the pump also waits for room (maxlen=2)."""
    n = 40
    source = _Instrumented(_alternating(n), turns=2)

    async def slow(aiterable):
        out = []
        async for item in aiterable:
            out.append(item)
            for _ in range(3):
                await asyncio.sleep(0)
        return out

    async def main():
        run = astream_events(source, transformers=[UpdatesTransformer], maxlen=2)
        return await asyncio.gather(slow(run.values), adrain(run.updates), adrain(run))

    vals, upds, raw = arun(main())
    assert source.max_active == 1
    assert vals == [{"i": i} for i in range(n)]
    assert upds == [{"node": {"i": i}} for i in range(n)]
    assert len(raw) == 2 * n


def test_consumer_woken_by_another_tasks_step_without_a_further_step(backend):
    """Data pushed by another task's pump step reaches its consumer at once.

    The source yields ``values k`` and ``updates k`` and then blocks on an
    Event.  Both consumers must hold their item ``k`` while the source is
    still blocked: neither may need a further step to be woken.
    """
    k = 5

    async def main():
        gate = asyncio.Event()
        got_values = asyncio.Event()
        got_updates = asyncio.Event()
        state = {"blocked": False, "released": False}

        async def source():
            for i in range(k + 1):
                yield values({"i": i})
                yield updates({"node": {"i": i}})
            state["blocked"] = True
            await gate.wait()
            state["released"] = True
            yield values({"i": "after"})

        run = astream_events(source(), transformers=[UpdatesTransformer])
        seen_v: List[Any] = []
        seen_u: List[Any] = []

        async def read(channel, seen, flag):
            async for item in channel:
                seen.append(item)
                if item in ({"i": k}, {"node": {"i": k}}):
                    flag.set()

        tasks = [
            asyncio.ensure_future(read(run.values, seen_v, got_values)),
            asyncio.ensure_future(read(run.updates, seen_u, got_updates)),
        ]
        # liveness guard only: a consumer that waits for a further step hangs here
        await asyncio.wait_for(asyncio.gather(got_values.wait(), got_updates.wait()), 5)
        assert state["blocked"] and not state["released"]
        assert seen_v[-1] == {"i": k}
        assert seen_u[-1] == {"node": {"i": k}}
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return seen_v, seen_u

    seen_v, seen_u = arun(main())
    assert seen_v == [{"i": i} for i in range(k + 1)] + [{"i": "after"}]
    assert seen_u == [{"node": {"i": i}} for i in range(k + 1)]


def test_waiting_consumer_wakes_when_run_ends_in_another_task(backend):
    """A consumer waiting on the pump sees the end of the run pumped elsewhere."""

    async def main():
        gate = asyncio.Event()

        async def source():
            yield values({"i": 0})
            await gate.wait()
            yield updates({"node": 1})

        run = astream_events(source(), transformers=[UpdatesTransformer])
        t_values = asyncio.ensure_future(adrain(run.values))
        t_updates = asyncio.ensure_future(adrain(run.updates))
        for _ in range(10):
            await asyncio.sleep(0)
        gate.set()
        return await asyncio.wait_for(asyncio.gather(t_values, t_updates), 5)

    vals, upds = arun(main())
    assert vals == [{"i": 0}]
    assert upds == [{"node": 1}]


# ------------------------------------------------------------- backpressure


def test_backpressure_bounds_every_log_and_never_lags(backend):
    """10k events, maxlen=8, a slow values consumer and a fast raw-log reader.

    Measured from inside the source before each yield: no log ever retains
    more than maxlen plus one step's events (each part adds at most one item
    to each log), and nobody gets StreamLagError.
    """
    n = 10_000
    maxlen = 8
    per_step = 1
    peaks: Dict[str, int] = {}

    async def main():
        holder: Dict[str, Any] = {}

        async def source():
            for i in range(n):
                run = holder.get("run")
                if run is not None:
                    mux = run._mux
                    logs = [("<main log>", mux._events)] + [
                        (label, ch) for label, ch in mux._shared.bp.channels
                    ] + [("values", run.values)]
                    for label, ch in logs:
                        size = len(ch._log)
                        if size > peaks.get(label, -1):
                            peaks[label] = size
                yield values({"i": i})

        run = astream_events(source(), maxlen=maxlen)
        holder["run"] = run

        async def slow_values():
            out = []
            async for item in run.values:
                out.append(item["i"])
                for _ in range(3):
                    await asyncio.sleep(0)
            return out

        async def raw():
            return [e["params"]["data"]["i"] async for e in run if e["method"] == "values"]

        return await asyncio.gather(slow_values(), raw(), return_exceptions=True)

    slow_out, raw_out = arun(main(), timeout=60)
    for result in (slow_out, raw_out):
        assert not isinstance(result, BaseException), result
    assert slow_out == list(range(n))
    assert raw_out == list(range(n))
    assert peaks["values"] >= 1  # the probe did see the subscribed logs
    for label, peak in peaks.items():
        assert peak <= maxlen + per_step, (label, peak, peaks)


def test_backpressure_counts_the_slowest_atee_branch(backend):
    n = 300
    maxlen = 4
    peak = {"values": 0}

    async def main():
        holder: Dict[str, Any] = {}

        async def source():
            for i in range(n):
                run = holder.get("run")
                if run is not None:
                    peak["values"] = max(peak["values"], len(run.values._log))
                yield values({"i": i})

        run = astream_events(source(), maxlen=maxlen)
        holder["run"] = run
        fast, slow_branch = run.values.atee(2)

        async def slow():
            out = []
            async for item in slow_branch:
                out.append(item)
                for _ in range(5):
                    await asyncio.sleep(0)
            return out

        return await asyncio.gather(adrain(fast), slow())

    fast, slow = arun(main())
    assert fast == slow == [{"i": i} for i in range(n)]
    assert peak["values"] <= maxlen + 1


def test_stall_warning_site_never_fails_on_foreign_awaitables():
    """Where a holding task waits is read off its chain of awaits; an
    awaitable with odd or missing frames gives no site, never an error (the
    warning is logged from inside the pump's wait)."""
    from langstream.run_stream import _await_site

    class OddFrame:
        cr_frame = object()  # (no f_code)

    class Loop:
        @property
        def cr_frame(self):
            raise RuntimeError("boom")

    assert _await_site(OddFrame()) == ""
    assert _await_site(Loop()) == ""
    assert _await_site(None) == ""

    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        task = asyncio.ensure_future(sleeper())
        await asyncio.sleep(0)
        try:
            return _await_site(task.get_coro())
        finally:
            task.cancel()

    site = asyncio.run(main())
    assert site.startswith(" in sleep, from ") and "sleeper at " in site, site


def test_stall_warning_names_the_unread_projection(backend, caplog):
    """A subscriber that never reads stalls the pump; a warning names it."""

    me = []

    async def main():
        run = astream_events(areplay(_vals(50)), maxlen=2)
        run.stall_warning_after = 0.2
        never_read = run.values.__aiter__()  # subscribed, never read
        me.append(asyncio.current_task().get_name())
        # (the task's own coroutine: from 3.12 ``wait_for`` runs ``main``
        # inside the task that awaits it, not in a task of its own)
        me.append(asyncio.current_task().get_coro().__qualname__)
        drain = asyncio.ensure_future(adrain(run))
        try:
            for _ in range(200):  # liveness guard: at most ~10 s
                if any("values" in r.getMessage() for r in caplog.records
                       if r.levelno >= logging.WARNING):
                    break
                await asyncio.sleep(0.05)
        finally:
            await asyncio.wait_for(run.abort(), 5)
        raw = await asyncio.wait_for(drain, 5)
        del never_read
        return raw

    with caplog.at_level(logging.WARNING, logger="langstream"):
        raw = arun(main())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings, "no stall warning was logged"
    assert any("values" in r.getMessage() for r in warnings)
    # it names the task that subscribed and does not read, and what it awaits
    named = f"held full by a reader in task {me[0]!r} ({me[1]}), which awaits a Future"
    assert any(named in r.getMessage() for r in warnings), [r.getMessage() for r in warnings]
    # the run was stalled, not finished: the drainer saw only part of it
    assert len(raw) < 50


def test_stall_warning_after_is_configurable_from_astream_events(backend):
    run = astream_events(areplay(_vals(1)), stall_warning_after=0.3)
    assert run.stall_warning_after == pytest.approx(0.3)
    for bad in (0, -1, "1", True):
        with pytest.raises(ValueError):
            astream_events(areplay(_vals(1)), stall_warning_after=bad)


def test_abandoned_async_iterator_releases_its_cursor(backend):
    """Breaking out of ``async for`` and dropping the iterator unblocks the pump."""
    n = 60

    async def main():
        run = astream_events(areplay(_vals(n)), maxlen=3)
        first: List[Any] = []

        async def quitter():
            async for item in run.values:
                first.append(item)
                if len(first) == 2:
                    break
            # the iterator is dropped here

        await quitter()
        gc.collect()
        return first, await adrain(run)

    first, raw = arun(main(), timeout=20)
    assert first == [{"i": 0}, {"i": 1}]
    assert [e["params"]["data"] for e in raw if e["method"] == "values"][-1] == {"i": n - 1}


def test_abandoned_async_iterator_without_gc_collect(backend):
    """Even without an explicit collection (PyPy), the pump gets unstuck."""
    n = 30

    async def main():
        run = astream_events(areplay(_vals(n)), maxlen=2)

        async def quitter():
            async for item in run.values:
                if item["i"] == 1:
                    break

        raw_task = asyncio.ensure_future(adrain(run))
        await quitter()
        return await raw_task

    raw = arun(main(), timeout=20)
    assert len([e for e in raw if e["method"] == "values"]) == n


def test_explicit_aclose_of_reader_releases_its_cursor(backend):
    n = 30

    async def main():
        run = astream_events(areplay(_vals(n)), maxlen=2)
        raw_it = run.__aiter__()  # subscribed from the start
        reader = run.values.__aiter__()
        got = await reader.__anext__()
        await reader.aclose()
        raw = await adrain(raw_it)
        return got, raw, reader

    got, raw, _reader = arun(main(), timeout=20)
    assert got == {"i": 0}
    assert len([e for e in raw if e["method"] == "values"]) == n


# -------------------------------------------------------- scheduled work


class _Scheduling(StreamTransformer):
    """Schedules one coroutine per event; records what happened in ``log``."""

    requires_async = True
    log: List[str] = []
    on_error = "log"
    fail_at = 1

    def __init__(self, scope=()):
        super().__init__(scope)
        self.channel: StreamChannel[Any] = StreamChannel()
        self.count = 0

    def init(self):
        return {"scheduled": self.channel}

    async def _work(self, n):
        for _ in range(3):
            await asyncio.sleep(0)
        if n == self.fail_at:
            raise ValueError(f"scheduled work {n} failed")
        self.channel.push(n)
        type(self).log.append(f"task {n}")

    async def aprocess(self, event):
        if event["method"] == "values" and not event["params"]["namespace"]:
            self.count += 1
            self.schedule(self._work(self.count), on_error=type(self).on_error)
        return True

    async def afinalize(self):
        type(self).log.append("afinalize")


def test_scheduled_failure_under_log_is_logged_and_run_completes(backend, caplog):
    class T(_Scheduling):
        log: List[str] = []
        on_error = "log"

    async def main():
        run = astream_events(areplay(_vals(3)), transformers=[T])
        vals, raw = await asyncio.gather(adrain(run.values), adrain(run))
        return vals, raw, await run.output()

    with caplog.at_level(logging.ERROR, logger="langstream"):
        vals, raw, out = arun(main())
    assert vals == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert len(raw) == 3
    assert out == {"i": 2}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the failed scheduled task was not logged"
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in errors)
    assert T.log[-1] == "afinalize"
    assert sorted(T.log[:-1]) == ["task 2", "task 3"]


def test_scheduled_failure_under_raise_fails_the_run_everywhere(backend):
    class T(_Scheduling):
        log: List[str] = []
        on_error = "raise"

    async def main():
        run = astream_events(areplay(_vals(3)), transformers=[T])
        results = await asyncio.gather(
            adrain_outcome(run.values), adrain_outcome(run), run.output(),
            return_exceptions=True,
        )
        return results

    (vals, verr), (raw, rerr), out_err = arun(main())
    assert vals == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert len(raw) == 3
    for err in (verr, rerr, out_err):
        assert isinstance(err, ValueError), err
        assert "scheduled work 1 failed" in str(err)
    assert "afinalize" not in T.log


@pytest.mark.parametrize("readers", ["values+raw+output", "values"])
def test_scheduled_failure_long_before_the_end_still_fails_the_run(backend, readers):
    """A task scheduled under ``on_error="raise"`` that fails while the graph
    still runs (so it is no longer pending when the mux closes) fails the
    run at every reader all the same: its error is neither lost nor left
    to asyncio as "never retrieved"."""

    class T(_Scheduling):
        log: List[str] = []
        on_error = "raise"

        async def _work(self, n):
            if n == self.fail_at:
                raise ValueError(f"scheduled work {n} failed")
            self.channel.push(n)

    async def graph():
        for part in _vals(3):
            yield part
            for _ in range(5):  # (the failing task ends meanwhile)
                await asyncio.sleep(0)

    unretrieved: List[Any] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: unretrieved.append(context))
        run = astream_events(graph(), transformers=[T])
        if readers == "values":
            return [await adrain_outcome(run.values)]
        return await asyncio.gather(
            adrain_outcome(run.values), adrain_outcome(run), run.output(),
            return_exceptions=True,
        )

    results = arun(main())
    gc.collect()
    (vals, verr), *rest = results
    assert vals == [{"i": 0}, {"i": 1}, {"i": 2}]
    errors = [verr] + ([rest[0][1], rest[1]] if rest else [])
    for err in errors:
        assert isinstance(err, ValueError), err
        assert "scheduled work 1 failed" in str(err)
    assert unretrieved == []
    assert "afinalize" not in T.log


@pytest.mark.parametrize("when", ["before the close", "during the close"])
def test_the_first_scheduled_failure_is_the_runs_error(backend, when):
    """Two tasks scheduled under ``on_error="raise"`` fail, the later-scheduled
    one first: the run fails with the error that happened first, whether
    both failed while the graph still ran or while the close awaited them
    (the graph ends at once)."""
    before = when == "before the close"

    class T(_Scheduling):
        log: List[str] = []
        on_error = "raise"

        async def _work(self, n):
            # work 2 fails first (before: after 0 and 3 turns; during: 4 and 8)
            for _ in range(6 - 3 * n if before else 4 + 4 * (2 - n)):
                await asyncio.sleep(0)
            raise ValueError(f"scheduled work {n} failed")

    async def graph():
        for part in _vals(2):
            yield part
        for _ in range(10 if before else 0):
            await asyncio.sleep(0)

    async def main():
        run = astream_events(graph(), transformers=[T])
        return await adrain_outcome(run.values)

    vals, err = arun(main())
    assert vals == [{"i": 0}, {"i": 1}]
    assert isinstance(err, ValueError) and "scheduled work 2 failed" in str(err), err


def test_schedule_without_running_loop_raises_and_closes_the_coroutine(backend):
    class T(_Scheduling):
        pass

    t = T()

    async def work():
        return 1

    coro = work()
    with pytest.raises(RuntimeError, match="event loop"):
        t.schedule(coro)
    # the coroutine was closed, not leaked ("never awaited")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_schedule_rejects_bad_on_error(backend):
    t = _Scheduling()

    async def main():
        async def work():
            return 1

        with pytest.raises(ValueError, match="on_error"):
            t.schedule(work(), on_error="ignore")

    arun(main())


def test_aclose_awaits_scheduled_tasks_before_afinalize(backend):
    order: List[str] = []

    class Slow(StreamTransformer):
        requires_async = True

        def __init__(self, scope=()):
            super().__init__(scope)
            self.channel: StreamChannel[Any] = StreamChannel()

        def init(self):
            return {"late": self.channel}

        async def _later(self):
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(0.01)
            order.append("task done")
            self.channel.push("from task")

        async def aprocess(self, event):
            if event["params"]["data"] == {"i": 0}:
                self.schedule(self._later())
            return True

        async def afinalize(self):
            order.append("afinalize")
            self.channel.push("from afinalize")

    async def main():
        run = astream_events(areplay(_vals(2)), transformers=[Slow])
        late, vals = await asyncio.gather(adrain(run.extensions["late"]), adrain(run.values))
        return late, vals

    late, vals = arun(main())
    assert order == ["task done", "afinalize"]
    assert late == ["from task", "from afinalize"]
    assert vals == [{"i": 0}, {"i": 1}]


def test_afail_cancels_scheduled_tasks(backend):
    state = {"started": 0, "cancelled": 0, "finished": 0}

    class Forever(StreamTransformer):
        requires_async = True

        def init(self):
            return {}

        async def _forever(self):
            state["started"] += 1
            try:
                await asyncio.sleep(3600)
                state["finished"] += 1
            except asyncio.CancelledError:
                state["cancelled"] += 1
                raise

        async def aprocess(self, event):
            self.schedule(self._forever())
            return True

    async def main():
        # the source gives the loop a turn before each part, so the tasks start
        run = astream_events(areplay(_vals(2), RuntimeError("graph broke"), yield_every=1),
                             transformers=[Forever])
        return await adrain_outcome(run.values)

    vals, err = arun(main())
    assert vals == [{"i": 0}, {"i": 1}]
    assert isinstance(err, RuntimeError) and "graph broke" in str(err)
    assert state["finished"] == 0
    assert state["cancelled"] == state["started"] >= 1


@pytest.mark.parametrize("on_error", ["log", "raise"])
def test_scheduled_task_cancelled_before_it_started_leaves_no_unawaited_coroutine(
        backend, on_error):
    """afail cancels tasks that never got to run: no "never awaited" RuntimeWarning."""
    import warnings

    ran = {"n": 0}

    class Sched(StreamTransformer):
        requires_async = True

        def init(self):
            return {}

        async def _work(self):
            ran["n"] += 1

        async def aprocess(self, event):
            self.schedule(self._work(), on_error=on_error)
            return True

    async def main():
        # no suspension between parts: the tasks cannot start before the run fails
        run = astream_events(areplay(_vals(2), RuntimeError("graph broke")),
                             transformers=[Sched])
        return await adrain_outcome(run.values)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vals, err = arun(main())
        for _ in range(3):  # PyPy: finalizers run over several collections
            gc.collect()
    assert isinstance(err, RuntimeError)
    assert ran["n"] == 0
    unawaited = [w for w in caught if "never awaited" in str(w.message)]
    assert unawaited == [], [str(w.message) for w in unawaited]


# ------------------------------------------------------ async transformers


def test_aprocess_mutation_is_seen_by_later_transformers_and_projections(backend):
    seen_later: List[Any] = []

    class Tagger(StreamTransformer):
        before_builtins = True

        def init(self):
            return {}

        async def aprocess(self, event):
            await asyncio.sleep(0)  # really suspends before the mutation
            if event["method"] == "values":
                event["params"]["data"] = dict(event["params"]["data"], tagged=True)
            return True

    class Later(StreamTransformer):
        def init(self):
            return {}

        async def aprocess(self, event):
            seen_later.append(dict(event["params"]["data"]))
            return True

    async def main():
        run = astream_events(areplay(_vals(3)), transformers=[Tagger, Later])
        return await asyncio.gather(adrain(run.values), adrain(run))

    vals, raw = arun(main())
    expected = [{"i": i, "tagged": True} for i in range(3)]
    assert vals == expected
    assert seen_later == expected
    assert [e["params"]["data"] for e in raw] == expected


def test_aprocess_returning_false_keeps_event_out_of_main_log_only(backend):
    class Hide(StreamTransformer):
        def init(self):
            return {}

        async def aprocess(self, event):
            return event["method"] != "updates"

    async def main():
        run = astream_events(areplay(_alternating(3)),
                             transformers=[UpdatesTransformer, Hide])
        return await asyncio.gather(adrain(run.updates), adrain(run))

    upds, raw = arun(main())
    assert upds == [{"node": {"i": i}} for i in range(3)]
    assert [e["method"] for e in raw] == ["values"] * 3
    assert [e["seq"] for e in raw] == [1, 2, 3]


class _NeedsAsync(StreamTransformer):
    def init(self):
        return {"asyncy": StreamChannel()}

    async def aprocess(self, event):
        await asyncio.sleep(0)
        self.init  # noqa: B018 - no-op
        return True


class _RequiresAsync(StreamTransformer):
    requires_async = True

    def init(self):
        return {}

    def process(self, event):
        return True


class _SupportsSync(_NeedsAsync):
    supports_sync = True

    def process(self, event):
        return True


@pytest.mark.parametrize("cls", [_NeedsAsync, _RequiresAsync])
def test_transformer_needing_async_works_on_async_mux(backend, cls):
    async def main():
        run = astream_events(areplay(_vals(2)), transformers=[cls])
        return await adrain(run.values)

    assert arun(main()) == [{"i": 0}, {"i": 1}]
    StreamMux([cls()], is_async=True)  # pre-built on an async mux: fine too


@pytest.mark.parametrize("cls", [_NeedsAsync, _RequiresAsync])
def test_transformer_needing_async_fails_at_registration_on_sync_mux(backend, cls):
    with pytest.raises(RuntimeError, match=cls.__name__):
        StreamMux([cls()])
    state: Dict[str, Any] = {}

    def parts():
        state["pulled"] = True
        yield values({"i": 0})

    with pytest.raises(RuntimeError):
        stream_events(parts(), transformers=[cls])
    assert "pulled" not in state  # failed at registration, before any pull


def test_supports_sync_transformer_registers_on_sync_mux(backend):
    StreamMux([_SupportsSync()])
    run = stream_events(iter(_vals(2)), transformers=[_SupportsSync])
    assert list(run.values) == [{"i": 0}, {"i": 1}]


# ------------------------------------------------------------ abort / exit


def _stuck_source(state: Dict[str, Any], entered: "asyncio.Event"):
    async def source():
        try:
            yield values({"i": 0})
            entered.set()
            state["sleeping"] = True
            await asyncio.sleep(3600)
            yield values({"i": "never"})
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        finally:
            state["finally"] = True

    return source()


def test_abort_cancels_an_in_flight_pull(backend):
    state: Dict[str, Any] = {}

    async def main():
        entered = asyncio.Event()
        run = astream_events(_stuck_source(state, entered))
        consumer = asyncio.ensure_future(adrain_outcome(run.values))
        await asyncio.wait_for(entered.wait(), 5)
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # liveness guard: abort must return (it is expected well within 1 s)
        await asyncio.wait_for(run.abort(), 5)
        elapsed = loop.time() - t0
        result = await asyncio.wait_for(consumer, 5)
        await run.abort()  # idempotent
        return result, elapsed, run

    (items, err), elapsed, run = arun(main())
    assert state.get("finally") is True
    assert state.get("cancelled") is True  # the cancellation reached the graph
    assert items == [{"i": 0}]
    assert err is None  # consumers see the projections end
    assert run.values.closed
    assert elapsed < 5


def _sync_source(n: int, state: Dict[str, Any]):
    try:
        for i in range(n):
            state["pulled"] = i
            yield values({"i": i})
    finally:
        state["finally"] = True


def test_a_plain_iterable_is_streamed_on_the_async_lane(backend):
    state: Dict[str, Any] = {}

    async def main():
        run = astream_events(_sync_source(3, state))
        return await adrain(run.values), await run.output()

    got, output = arun(main())
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert output == {"i": 2}
    assert state["finally"] is True


@pytest.mark.parametrize("source_kind", ["async", "plain"])
def test_abort_from_the_pumping_task_itself(backend, source_kind):
    """abort() called by the consumer (not mid-pull) closes the graph iterator:
    an async generator, or the sync generator behind a plain iterable (its
    ``finally`` runs then, not whenever it is collected: it is kept alive)."""
    state: Dict[str, Any] = {}
    kept = []

    async def main():
        if source_kind == "async":
            source = areplay(_vals(10), state=state)
        else:
            source = _sync_source(10, state)
        kept.append(source)
        run = astream_events(source)
        got = []
        async for item in run.values:
            got.append(item)
            if len(got) == 2:
                await run.abort()
        return got

    got = arun(main())
    assert got == [{"i": 0}, {"i": 1}]
    assert state["finally"] is True
    if source_kind == "plain":
        assert state["pulled"] < 9


def test_a_plain_iterable_run_never_started_does_not_warn(backend):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = astream_events([values({"i": 0})])
        del run
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_async_with_aborts_on_exit(backend):
    state: Dict[str, Any] = {}

    async def main():
        entered = asyncio.Event()
        run = astream_events(_stuck_source(state, entered))
        async with run as same:
            assert same is run
            consumer = asyncio.ensure_future(adrain_outcome(run.values))
            await asyncio.wait_for(entered.wait(), 5)
            await asyncio.sleep(0)
        return await asyncio.wait_for(consumer, 5)

    items, err = arun(main())
    assert state.get("finally") is True
    assert state.get("cancelled") is True
    assert items == [{"i": 0}]
    assert err is None


def test_async_with_leaving_early_closes_source(backend):
    state: Dict[str, Any] = {}

    async def main():
        async with astream_events(areplay(_vals(10), state=state)) as run:
            async for item in run.values:
                if item["i"] == 3:
                    break
        return run

    run = arun(main())
    assert state["finally"] is True
    assert state["pulled"] < 10
    assert run.values.closed


# ------------------------------------------------------------ cancellation


def test_cancel_consumer_during_backpressure_wait_loses_nothing(backend):
    """A consumer cancelled while the pump waits for room does not wedge the others."""
    n = 20

    async def main():
        release = asyncio.Event()
        pulled = {"n": 0}

        async def source():
            for i in range(n):
                pulled["n"] += 1
                yield values({"i": i})

        run = astream_events(source(), maxlen=2)
        vit = run.values.__aiter__()  # subscribed; read only after `release`

        async def late_reader():
            await release.wait()
            return [item async for item in vit]

        reader = asyncio.ensure_future(late_reader())
        pumper = asyncio.ensure_future(adrain(run))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if len(run.values._log) >= 2 and run._pumping:
                break
        assert len(run.values._log) >= 2  # the pump is waiting for room
        pumper.cancel()
        try:
            await pumper
        except asyncio.CancelledError:
            pass
        del pumper
        release.set()
        vals = await asyncio.wait_for(reader, 10)
        return vals, await run.output()

    vals, out = arun(main(), timeout=20)
    assert vals == [{"i": i} for i in range(n)]
    assert out == {"i": n - 1}


def test_cancel_consumer_mid_pull_fails_run_with_clear_error(backend):
    """Cancelling the task that is pulling fails the run; the others are not wedged."""
    state: Dict[str, Any] = {}

    async def main():
        entered = asyncio.Event()
        run = astream_events(_stuck_source(state, entered), transformers=[UpdatesTransformer])
        puller = asyncio.ensure_future(adrain_outcome(run.values))
        await asyncio.wait_for(entered.wait(), 5)
        other = asyncio.ensure_future(adrain_outcome(run))
        upd = asyncio.ensure_future(adrain_outcome(run.updates))
        for _ in range(5):
            await asyncio.sleep(0)
        puller.cancel()
        try:
            await puller
        except asyncio.CancelledError:
            pass
        other_result = await asyncio.wait_for(other, 5)
        upd_result = await asyncio.wait_for(upd, 5)
        out_err = None
        try:
            await asyncio.wait_for(run.output(), 5)
        except Exception as exc:  # noqa: BLE001
            out_err = exc
        return other_result, upd_result, out_err

    (raw, raw_err), (upds, upd_err), out_err = arun(main())
    assert state.get("finally") is True
    for err in (raw_err, upd_err, out_err):
        assert isinstance(err, RuntimeError), err
        assert "cancel" in str(err)
    assert upds == []


# ------------------------------------------------------------------ errors


def test_run_error_reaches_every_consumer(backend):
    boom = ValueError("graph exploded at step 3")

    async def main():
        run = astream_events(areplay(_alternating(3), boom), transformers=[UpdatesTransformer])
        return await asyncio.gather(
            adrain_outcome(run.values),
            adrain_outcome(run.updates),
            adrain_outcome(run),
            run.output(),
            run.interrupted(),
            run.interrupts(),
            return_exceptions=True,
        )

    (vals, verr), (upds, uerr), (raw, rerr), out, intd, ints = arun(main())
    assert vals == [{"i": i} for i in range(3)]
    assert upds == [{"node": {"i": i}} for i in range(3)]
    assert len(raw) == 6
    for err in (verr, uerr, rerr, out, intd, ints):
        assert err is boom


def test_run_error_after_consumers_finished_is_reraised_by_output(backend):
    boom = KeyError("late")

    async def main():
        run = astream_events(areplay(_vals(2), boom))
        vals, err = await adrain_outcome(run.values)
        errs = []
        for call in (run.output, run.interrupted, run.interrupts):
            try:
                await call()
            except KeyError as exc:
                errs.append(exc)
        return vals, err, errs

    vals, err, errs = arun(main())
    assert vals == [{"i": 0}, {"i": 1}]
    assert err is boom
    assert errs == [boom, boom, boom]


@pytest.mark.parametrize("bad, exc_type, field", [
    ({"type": "values", "data": {}}, ValueError, "ns"),
    ({"type": 7, "ns": (), "data": {}}, TypeError, "type"),
    ({"type": "values", "ns": "root", "data": {}}, TypeError, "ns"),
    ("not a part", TypeError, "mapping"),
])
def test_malformed_part_fails_every_async_consumer(backend, bad, exc_type, field):
    state: Dict[str, Any] = {}

    async def source():
        try:
            yield values({"i": 0})
            yield bad
            yield values({"i": 1})
        finally:
            state["finally"] = True

    async def main():
        run = astream_events(source())
        return await asyncio.gather(
            adrain_outcome(run.values), adrain_outcome(run), run.output(),
            return_exceptions=True,
        )

    (vals, verr), (raw, rerr), out = arun(main())
    assert vals == [{"i": 0}]
    for err in (verr, rerr, out):
        assert isinstance(err, exc_type), err
        assert field in str(err)
    assert state["finally"] is True  # the graph iterator was closed


def test_transformer_error_fails_run_and_closes_source(backend):
    state: Dict[str, Any] = {}

    class Broken(StreamTransformer):
        def init(self):
            return {}

        async def aprocess(self, event):
            if event["params"]["data"] == {"i": 2}:
                raise LookupError("transformer broke")
            return True

    async def main():
        run = astream_events(areplay(_vals(5), state=state), transformers=[Broken])
        return await asyncio.gather(adrain_outcome(run.values), adrain_outcome(run))

    (vals, verr), (raw, rerr) = arun(main())
    assert isinstance(verr, LookupError) and isinstance(rerr, LookupError)
    assert vals[:2] == [{"i": 0}, {"i": 1}]
    assert state["finally"] is True
    assert state["pulled"] == 3


# ---------------------------------------------------------------- results


def test_output_interrupted_interrupts_with_the_interrupt_trace(backend):
    parts, error = load_trace("interrupt")
    assert error is None
    last = [p for p in parts if p["type"] == "values"][-1]

    async def main():
        run = astream_events(areplay(parts))
        # nobody iterates run.values: the methods drive the run themselves
        return await run.output(), await run.interrupted(), await run.interrupts()

    out, interrupted, interrupts = arun(main())
    assert out == last["data"]
    assert interrupted is True
    assert list(interrupts) == list(last["interrupts"])
    assert interrupts[0]["value"] == {"question": "approve?"}


def test_output_of_a_run_without_interrupts(backend):
    parts, _ = load_trace("parallel_fanout")

    async def main():
        run = astream_events(areplay(parts))
        vals = await adrain(run.values)
        return vals, await run.output(), await run.interrupted(), await run.interrupts()

    vals, out, interrupted, interrupts = arun(main())
    assert out == vals[-1] == {"v": "", "items": ["a", "b", "c", "d"]}
    assert interrupted is False
    assert list(interrupts) == []


def test_output_concurrently_with_a_consumer(backend):
    async def main():
        run = astream_events(areplay(_vals(50), yield_every=2))
        return await asyncio.gather(adrain(run.values), run.output(), run.output())

    vals, out1, out2 = arun(main())
    assert len(vals) == 50
    assert out1 == out2 == {"i": 49}


def test_output_of_a_run_with_no_parts_is_none(backend):
    async def main():
        run = astream_events(areplay([]))
        return await run.output(), await adrain(run.values)

    assert arun(main()) == (None, [])


# -------------------------------------------------------------------- atee


def test_atee_two_branches_each_see_every_item(backend):
    async def main():
        run = astream_events(areplay(_vals(100), yield_every=7))
        a, b = run.values.atee(2)
        with pytest.raises(RuntimeError, match="atee"):
            run.values.__aiter__()
        return await asyncio.gather(adrain(a), adrain(b))

    a, b = arun(main())
    assert a == b == [{"i": i} for i in range(100)]


def test_atee_branches_read_sequentially_without_maxlen(backend):
    async def main():
        run = astream_events(areplay(_vals(5)))
        a, b = run.values.atee(2)
        first = await adrain(a)
        second = await adrain(b)
        return first, second

    first, second = arun(main())
    assert first == second == [{"i": i} for i in range(5)]


def test_atee_argument_and_lane_checks(backend):
    run = astream_events(areplay(_vals(1)))
    for bad in (0, -1):
        with pytest.raises(ValueError):
            run.values.atee(bad)
    for bad in ("2", 2.0, True):
        with pytest.raises(TypeError):
            run.values.atee(bad)
    sync_run = stream_events(iter(_vals(1)))
    with pytest.raises(TypeError):
        sync_run.values.atee(2)


def test_atee_failure_reaches_every_branch(backend):
    boom = RuntimeError("kaput")

    async def main():
        run = astream_events(areplay(_vals(3), boom))
        a, b, c = run.values.atee(3)
        return await asyncio.gather(adrain_outcome(a), adrain_outcome(b), adrain_outcome(c))

    for items, err in arun(main()):
        assert items == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert err is boom


# --------------------------------------------------------- named channels


def test_custom_named_channel_is_forwarded_on_the_async_lane(backend):
    class Counter(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.channel: StreamChannel[Any] = StreamChannel("counter")
            self.n = 0

        def init(self):
            return {"counter": self.channel}

        async def aprocess(self, event):
            if event["method"] == "custom":
                self.n += 1
                self.channel.push(self.n)
            return True

    async def main():
        run = astream_events(areplay([custom("a"), custom("b")]), transformers=[Counter])
        return await asyncio.gather(adrain(run.extensions["counter"]), adrain(run))

    counts, raw = arun(main())
    assert counts == [1, 2]
    assert [e["method"] for e in raw] == ["custom:counter", "custom", "custom:counter", "custom"]
    assert [e["seq"] for e in raw] == [1, 2, 3, 4]
