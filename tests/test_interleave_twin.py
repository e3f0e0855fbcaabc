"""Issue 10: ``GraphRunStream.interleave`` and its compiled twin.

On the C event log ``run.interleave(...)`` is ``langstream._pump_c.Interleaver``;
the generator ``GraphRunStream._interleave`` is its behavioural twin (and
what the pure backend runs).  Each scenario runs through ``interleave`` and
through the generator on fresh runs and must give the same items, in the
same order, and the same error at the same point; the lifecycle tests pin
when subscriptions are taken and released.  Every test runs on both
event-log backends (on the pure one both sides are the generator: the
scenarios then check the generator against the expected results).
"""

from __future__ import annotations

import gc

import pytest

from langstream import (
    StreamChannel,
    StreamLagError,
    StreamTransformer,
    UpdatesTransformer,
    stream_events,
)
from langstream import _bench
from langstream import _eventlog_py
from langstream import eventlog as _el
from langstream import run_stream as _rs

from helpers import replay, updates, values


def _compiled(run) -> bool:
    return _rs._Interleaver is not None and type(run._mux._events._log) is _rs._CEventLog


def test_the_c_backend_uses_the_compiled_interleaver(backend):
    run = stream_events(iter([values({"i": 0})]))
    it = run.interleave("values")
    if backend == "c":
        assert type(it) is _rs._Interleaver
    else:
        assert type(it).__name__ == "generator"
    assert list(it) == [("values", {"i": 0})]


def _both(make_run, consume):
    """``consume(run, iterate)`` through ``interleave`` and through the
    generator: ``(items, error)`` of each."""
    outcomes = []
    for iterate in (
        lambda run, *names: run.interleave(*names),
        lambda run, *names: run._interleave(names),
    ):
        run = make_run()
        got = []
        try:
            consume(run, iterate, got)
            err = None
        except Exception as exc:  # noqa: BLE001 - compared below
            err = exc
        outcomes.append((got, None if err is None else (type(err), str(err))))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def _flat(run, iterate, got):
    for name, item in iterate(run, "values", "lifecycle", "subgraphs"):
        if name == "subgraphs":
            got.append(("handle", item.path))
            for sub_name, sub_item in iterate(item, "values", "subgraphs"):
                got.append((f"sub-{sub_name}", getattr(sub_item, "path", sub_item)))
        else:
            got.append((name, item))


def test_agent_stream_with_nested_handles_same_order(backend):
    parts = _bench.agent_parts(600, depth=2)
    got, err = _both(lambda: stream_events(iter(parts)), _flat)
    assert err is None
    root_values = [p["data"] for p in parts if p["type"] == "values" and not p["ns"]]
    assert [item for name, item in got if name == "values"] == root_values
    assert any(name == "handle" for name, _ in got)
    assert any(name == "sub-values" for name, _ in got)


class _Ticker(StreamTransformer):
    """``ticks``: one item per ``updates`` event; ``stop_after`` ends the
    channel (closed, or failed with ``fail_with``) after that many."""

    stop_after = 2
    fail_with = None

    def __init__(self, scope=()):
        super().__init__(scope)
        self.ch = StreamChannel()
        self.n = 0

    def init(self):
        return {"ticks": self.ch}

    def process(self, event):
        if event["method"] == "updates" and not self.ch.closed:
            self.n += 1
            self.ch.push(self.n)
            if self.n == self.stop_after:
                if self.fail_with is None:
                    self.ch.close()
                else:
                    self.ch.fail(self.fail_with)
        return True


def _steps(n):
    out = []
    for i in range(n):
        out.append(values({"i": i}))
        out.append(updates({"node": {"i": i}}))
    return out


def _names_items(run, iterate, got):
    got.extend(iterate(run, "values", "ticks", "updates"))


def test_a_projection_ending_before_the_others(backend):
    got, err = _both(
        lambda: stream_events(replay(_steps(4)), transformers=[UpdatesTransformer, _Ticker]),
        _names_items,
    )
    assert err is None
    assert [i for n, i in got if n == "ticks"] == [1, 2]
    assert [i["i"] for n, i in got if n == "values"] == [0, 1, 2, 3]
    assert len([n for n, _ in got if n == "updates"]) == 4
    # push order: the second tick comes right after the second updates item
    assert got.index(("ticks", 2)) > got.index(("updates", {"node": {"i": 1}}))


def test_a_projection_failing_raises_its_error_after_the_items_before_it(backend):
    class Failing(_Ticker):
        fail_with = ValueError("ticks broke")

    got, err = _both(
        lambda: stream_events(replay(_steps(4)), transformers=[UpdatesTransformer, Failing]),
        _names_items,
    )
    assert err == (ValueError, "ticks broke")
    assert ("ticks", 2) in got and ("values", {"i": 3}) not in got


def test_a_run_error_propagates_the_same(backend):
    got, err = _both(
        lambda: stream_events(replay(_steps(2), ValueError("mid-run")),
                              transformers=[UpdatesTransformer]),
        lambda run, iterate, got: got.extend(iterate(run, "values", "updates")),
    )
    assert err == (ValueError, "mid-run")
    assert [n for n, _ in got] == ["values", "updates", "values", "updates"]


def test_a_lagging_projection_on_a_bounded_run_behaves_the_same(backend):
    class Burst(StreamTransformer):
        """Three items per ``updates`` event: more than maxlen=2 in one step."""

        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel()

        def init(self):
            return {"burst": self.ch}

        def process(self, event):
            if event["method"] == "updates":
                for k in range(3):
                    self.ch.push(k)
            return True

    got, err = _both(
        lambda: stream_events(replay(_steps(3)), transformers=[Burst], maxlen=2),
        lambda run, iterate, got: got.extend(iterate(run, "values", "burst")),
    )
    # the burst overran the bound before the reader got to it: it lags
    assert got == [("values", {"i": 0})]
    assert err is not None and err[0] is StreamLagError


# ------------------------------------------------------- subscriptions


@pytest.mark.parametrize("names, exc_type, words", [
    (("values", "nope"), KeyError, "unknown projection 'nope'"),
    (("values", "lifecycle"), RuntimeError, "already has a subscriber"),
])
def test_errors_come_at_the_first_item_and_release_what_was_taken(backend, names, exc_type,
                                                                  words):
    run = stream_events(iter([values({"i": 0}), values({"i": 1})]))
    if exc_type is RuntimeError:
        lifecycle = iter(run.lifecycle)  # taken before
    it = run.interleave(*names)  # nothing happens yet
    assert run.values._subscribed is False
    with pytest.raises(exc_type, match=words):
        next(it)
    with pytest.raises(StopIteration):
        next(it)  # the iteration is over
    assert run.values._subscribed is False
    assert list(run.values) == [{"i": 0}, {"i": 1}]  # can be subscribed again
    if exc_type is RuntimeError:
        assert list(lifecycle) == []


def test_a_projection_that_is_not_a_channel_is_refused(backend):
    class Plain(StreamTransformer):
        def init(self):
            return {"plain": 42}

        def process(self, event):
            return True

    run = stream_events(iter([values({"i": 0})]), transformers=[lambda scope: Plain(scope)])
    with pytest.raises(TypeError, match="needs StreamChannel projections, got int for 'plain'"):
        next(run.interleave("values", "plain"))
    assert list(run.values) == [{"i": 0}]


def test_close_before_the_first_item_takes_nothing(backend):
    run = stream_events(iter([values({"i": 0})]))
    it = run.interleave("values")
    it.close()
    with pytest.raises(StopIteration):
        next(it)
    assert list(run.values) == [{"i": 0}]


def test_close_mid_way_releases_and_is_idempotent(backend):
    run = stream_events(replay(_steps(3)), transformers=[UpdatesTransformer])
    it = run.interleave("values", "updates")
    assert next(it) == ("values", {"i": 0})
    assert run.values._subscribed and run.updates._subscribed
    it.close()
    it.close()
    assert not run.values._subscribed and not run.updates._subscribed
    with pytest.raises(StopIteration):
        next(it)
    assert [v["i"] for v in run.values] == [1, 2]


def test_exhaustion_releases_and_stays_exhausted(backend):
    run = stream_events(replay(_steps(2)), transformers=[UpdatesTransformer])
    it = run.interleave("values", "updates")
    assert len(list(it)) == 4
    assert not run.values._subscribed
    with pytest.raises(StopIteration):
        next(it)


def test_an_abandoned_iteration_is_released_when_collected(backend):
    run = stream_events(replay(_steps(3)), transformers=[UpdatesTransformer])
    for name, item in run.interleave("values", "updates"):
        break  # the iterator is dropped here
    gc.collect()
    assert not run.values._subscribed and not run.updates._subscribed
    assert [v["i"] for v in run.values] == [1, 2]


def test_a_projection_on_another_event_log_hands_over_to_the_generator(backend):
    """A projection whose log is not the run's event-log type (here: the
    pure one on a run of either backend) is read by the generator."""
    class Foreign(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel()

        def init(self):
            return {"foreign": self.ch}

        def process(self, event):
            if event["method"] == "updates":
                self.ch.push(event["params"]["data"])
            return True

    def make_run():
        run = stream_events(replay(_steps(3)), transformers=[UpdatesTransformer, Foreign])
        channel = run.extensions["foreign"]
        channel._log = _eventlog_py.EventLog(None)  # its own sequence
        return run

    run = make_run()
    it = run.interleave("values", "foreign")
    got = list(it)
    assert [n for n, _ in got].count("foreign") == 3
    assert [i["i"] for n, i in got if n == "values"] == [0, 1, 2]
    assert not run.values._subscribed and not run.extensions["foreign"]._subscribed
    if _el.BACKEND == "c" and backend == "c":
        assert type(it) is _rs._Interleaver
