"""GraphRunStream, the sync lane (DESIGN.md "Run streams", "Bad input").

Every test takes the ``backend`` fixture so it runs on both event-log backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from helpers import custom, load_trace, replay, trace_iter, updates, values

import langstream
from langstream import (
    CustomTransformer,
    GraphRunStream,
    StreamChannel,
    StreamLagError,
    StreamMux,
    StreamTransformer,
    UpdatesTransformer,
    ValuesTransformer,
    stream_events,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def root_data(parts, method):
    return [p["data"] for p in parts if p["type"] == method and tuple(p["ns"]) == ()]


def simple_parts(n: int = 4) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = [values({"step": 0})]
    for i in range(1, n + 1):
        out.append(custom({"progress": i}))
        out.append(updates({f"node{i}": {"step": i}}))
        out.append(values({"step": i}))
    return out


# ------------------------------------------------------------------ basics


def test_iterating_values_yields_root_snapshots(backend):
    parts, err = load_trace("parallel_fanout")
    assert err is None
    run = stream_events(replay(parts))
    assert list(run.values) == root_data(parts, "values")


def test_nested_trace_values_are_root_only(backend):
    parts, _ = load_trace("nested_two_levels")
    run = stream_events(replay(parts))
    got = list(run.values)
    assert got == root_data(parts, "values")
    assert run.output == got[-1]


def test_output_without_iterating_values(backend):
    parts, _ = load_trace("long_linear_50")
    state: Dict[str, Any] = {}
    run = stream_events(replay(parts, state=state))
    assert run.output == root_data(parts, "values")[-1]
    assert state["pulled"] == len(parts)
    assert state["finally"] is True
    assert run.interrupted is False
    assert run.interrupts == []
    # repeated access is stable
    assert run.output == root_data(parts, "values")[-1]


def test_output_after_partial_iteration(backend):
    parts = simple_parts(4)
    run = stream_events(replay(parts))
    it = iter(run.values)
    assert next(it) == {"step": 0}
    assert run.output == {"step": 4}
    # the values reader still gets every snapshot
    assert list(it) == [{"step": i} for i in range(1, 5)]


def test_output_is_none_without_values(backend):
    run = stream_events(replay([custom(1), updates({"a": 1})]))
    assert run.output is None


def test_interrupt_trace(backend):
    parts, _ = load_trace("interrupt")
    run = stream_events(replay(parts))
    assert run.interrupted is True
    expected = [i for p in parts if p["type"] == "values" for i in p["interrupts"]]
    assert len(expected) == 1
    assert list(run.interrupts) == expected
    assert run.interrupts[0]["value"] == {"question": "approve?"}
    assert run.output == root_data(parts, "values")[-1]


def test_subgraph_interrupts_are_not_root_interrupts(backend):
    parts = [values({"s": 0}),
             {"type": "values", "ns": ("sub:1",), "data": {"x": 1},
              "interrupts": [{"value": "inner"}]},
             values({"s": 1})]
    run = stream_events(replay(parts))
    assert run.interrupted is False
    assert run.interrupts == []
    assert run.output == {"s": 1}


def test_graph_run_stream_direct(backend):
    parts = simple_parts(3)
    mux = StreamMux(factories=[ValuesTransformer, UpdatesTransformer, CustomTransformer])
    run = GraphRunStream(iter(parts), mux)
    ups = iter(run.updates)
    assert list(run.values) == root_data(parts, "values")
    assert list(ups) == root_data(parts, "updates")
    assert run.output == {"step": 3}
    assert run.extensions["custom"] is run.custom


def test_graph_run_stream_direct_prebuilt_transformers(backend):
    parts = simple_parts(2)
    mux = StreamMux([ValuesTransformer(), CustomTransformer()])
    run = GraphRunStream(iter(parts), mux)
    assert list(run.custom) == root_data(parts, "custom")
    assert run.output == {"step": 2}


def test_stream_events_extra_transformers_are_projections(backend):
    parts = simple_parts(2)
    run = stream_events(replay(parts), transformers=[UpdatesTransformer, CustomTransformer])
    assert {"values", "lifecycle", "subgraphs", "updates", "custom"} <= set(run.extensions)
    assert list(run.custom) == root_data(parts, "custom")


def test_stream_events_rejects_prebuilt_instance(backend):
    with pytest.raises(TypeError):
        stream_events([], transformers=[UpdatesTransformer()])


def test_nothing_pulled_before_iteration(backend):
    state: Dict[str, Any] = {}
    stream_events(replay(simple_parts(2), state=state))
    assert state.get("pulled", 0) == 0


def test_iterating_run_yields_raw_main_log_seq_1_to_n(backend):
    parts, _ = load_trace("parallel_fanout")
    run = stream_events(replay(parts))
    events = list(run)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # tasks parts are folded into the subgraph/lifecycle projections
    expected = [p for p in parts if p["type"] != "tasks"]
    assert [e["method"] for e in events] == [p["type"] for p in expected]
    assert [e["params"]["data"] for e in events] == [p["data"] for p in expected]
    assert all(e["type"] == "event" and e["params"]["namespace"] == [] for e in events)


def test_raw_main_log_single_subscriber(backend):
    run = stream_events(replay(simple_parts(1)))
    iter(run)
    with pytest.raises(RuntimeError, match="tee"):
        iter(run)


def test_projection_second_subscriber(backend):
    run = stream_events(replay(simple_parts(1)))
    iter(run.values)
    with pytest.raises(RuntimeError, match="tee"):
        iter(run.values)


def test_tee_branches_on_a_run(backend):
    parts = simple_parts(3)
    run = stream_events(replay(parts))
    a, b, c = run.values.tee(3)
    expected = root_data(parts, "values")
    assert list(b) == expected
    assert list(a) == expected
    assert list(c) == expected


def test_unknown_projection_attribute_error_lists_registered(backend):
    run = stream_events(replay(simple_parts(1)), transformers=[UpdatesTransformer])
    with pytest.raises(AttributeError) as info:
        run.no_such_projection
    msg = str(info.value)
    assert "no_such_projection" in msg
    for key in ("values", "lifecycle", "subgraphs", "updates"):
        assert key in msg
    assert not hasattr(run, "custom")


def test_extensions_read_only(backend):
    run = stream_events(replay(simple_parts(1)))
    assert run.extensions["values"] is run.values
    with pytest.raises(TypeError):
        run.extensions["values"] = StreamChannel()
    with pytest.raises(TypeError):
        del run.extensions["values"]
    with pytest.raises(TypeError):
        run.extensions["new"] = 1
    assert "new" not in run.extensions


def test_non_native_projection_only_in_extensions(backend):
    class Counter(StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.ch = StreamChannel()

        def init(self):
            return {"counter": self.ch}

        def process(self, event):
            self.ch.push(event["method"])
            return True

    run = stream_events(replay(simple_parts(1)), transformers=[Counter])
    assert "counter" in run.extensions
    with pytest.raises(AttributeError):
        run.counter
    assert list(run.extensions["counter"]) == ["values", "custom", "updates", "values"]


# ----------------------------------------------------------- failing runs


def failing_parts():
    return simple_parts(2)


def test_graph_raising_mid_run_reaches_every_consumer(backend):
    boom = ValueError("graph exploded")
    state: Dict[str, Any] = {}
    parts = failing_parts()
    run = stream_events(replay(parts, boom, state), transformers=[UpdatesTransformer,
                                                                 CustomTransformer])
    vals = iter(run.values)
    ups = iter(run.updates)
    raw = iter(run)
    got = []
    with pytest.raises(ValueError, match="graph exploded") as info:
        for v in vals:
            got.append(v)
    assert info.value is boom
    assert got == root_data(parts, "values")  # everything before the error
    with pytest.raises(ValueError, match="graph exploded"):
        assert list(ups) == root_data(parts, "updates")  # drains, then raises
    raw_got = []
    with pytest.raises(ValueError, match="graph exploded"):
        for e in raw:
            raw_got.append(e)
    assert len(raw_got) == len(parts)
    # a consumer that subscribes after the failure gets it too
    with pytest.raises(ValueError, match="graph exploded"):
        list(run.custom)
    with pytest.raises(ValueError, match="graph exploded"):
        list(run.lifecycle)
    with pytest.raises(ValueError, match="graph exploded") as info2:
        run.output
    assert info2.value is boom
    with pytest.raises(ValueError, match="graph exploded"):
        run.interrupted
    with pytest.raises(ValueError, match="graph exploded"):
        run.interrupts
    assert state["finally"] is True


def test_graph_raising_output_reraises(backend):
    boom = RuntimeError("boom at part 3")
    run = stream_events(replay(failing_parts()[:3], boom))
    with pytest.raises(RuntimeError, match="boom at part 3"):
        run.output
    # values consumer subscribed afterwards also sees the error (no hang)
    with pytest.raises(RuntimeError, match="boom at part 3"):
        list(run.values)


def test_graph_raising_immediately(backend):
    boom = KeyError("no parts at all")
    run = stream_events(replay([], boom))
    with pytest.raises(KeyError):
        list(run.values)
    with pytest.raises(KeyError):
        run.output


def test_failing_trace_every_consumer(backend):
    run = stream_events(trace_iter("failing_subgraph"))
    vals = iter(run.values)
    life = iter(run.lifecycle)
    with pytest.raises(ValueError, match="tool exploded"):
        list(vals)
    with pytest.raises(ValueError, match="tool exploded"):
        list(life)
    with pytest.raises(ValueError, match="tool exploded"):
        run.output


class ExplodingTransformer(StreamTransformer):
    """Raises from ``process`` on the ``at``-th event it sees."""

    at = 3

    def __init__(self, scope=()):
        super().__init__(scope)
        self.n = 0
        self.ch = StreamChannel()

    def init(self):
        return {"exploding": self.ch}

    def process(self, event):
        self.n += 1
        if self.n == self.at:
            raise LookupError("transformer blew up")
        self.ch.push(self.n)
        return True


def test_transformer_process_raising_fails_the_run(backend):
    state: Dict[str, Any] = {}
    parts = simple_parts(4)
    run = stream_events(replay(parts, state=state), transformers=[ExplodingTransformer])
    vals = iter(run.values)
    expl = iter(run.extensions["exploding"])
    raw = iter(run)
    with pytest.raises(LookupError, match="transformer blew up"):
        list(vals)
    with pytest.raises(LookupError, match="transformer blew up"):
        list(expl)
    with pytest.raises(LookupError, match="transformer blew up"):
        list(raw)
    with pytest.raises(LookupError, match="transformer blew up"):
        run.output
    # the graph iterator was closed and not pulled further
    assert state["finally"] is True
    assert state["pulled"] == ExplodingTransformer.at


def test_transformer_raising_output_directly(backend):
    state: Dict[str, Any] = {}
    run = stream_events(replay(simple_parts(4), state=state), transformers=[ExplodingTransformer])
    with pytest.raises(LookupError, match="transformer blew up"):
        run.output
    assert state["finally"] is True


def test_transformer_finalize_raising_fails_the_run(backend):
    class BadFinalize(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            return True

        def finalize(self):
            raise ArithmeticError("finalize failed")

    run = stream_events(replay(simple_parts(1)), transformers=[BadFinalize])
    vals = iter(run.values)
    with pytest.raises(ArithmeticError):
        list(vals)
    with pytest.raises(ArithmeticError):
        run.output


@pytest.mark.parametrize(
    "bad,exc,field",
    [
        ({"type": "values", "ns": "oops", "data": {}}, (TypeError, ValueError), "ns"),
        ({"type": "values", "data": {}}, (TypeError, ValueError), "ns"),
        ({"ns": (), "data": {}}, (TypeError, ValueError), "type"),
        ({"type": 5, "ns": (), "data": {}}, (TypeError, ValueError), "type"),
        ({"type": "values", "ns": ("a:1", None), "data": {}}, (TypeError, ValueError), "ns"),
        ("not a part", (TypeError, ValueError), "mapping"),
    ],
)
def test_malformed_part_fails_the_run(backend, bad, exc, field):
    state: Dict[str, Any] = {}
    parts = [values({"s": 0}), updates({"a": 1}), bad, values({"s": 1})]
    run = stream_events(replay(parts, state=state), transformers=[UpdatesTransformer])
    vals = iter(run.values)
    ups = iter(run.updates)
    assert next(vals) == {"s": 0}
    with pytest.raises(exc) as info:
        next(vals)
    assert field in str(info.value)
    with pytest.raises(exc):
        list(ups)
    with pytest.raises(exc):
        run.output
    assert state["finally"] is True
    assert state["pulled"] == 3


# ------------------------------------------------------------------ abort


def test_abort_mid_iteration_closes_generator(backend):
    state: Dict[str, Any] = {}
    run = stream_events(replay(simple_parts(10), state=state))
    got = []
    for v in run.values:
        got.append(v)
        if len(got) == 2:
            run.abort()
    assert got == [{"step": 0}, {"step": 1}]
    assert state["finally"] is True
    pulled = state["pulled"]
    assert pulled < len(simple_parts(10))
    # idempotent, and nothing is pulled afterwards
    run.abort()
    assert list(run.lifecycle) == []
    assert state["pulled"] == pulled


def test_abort_ends_other_consumers_normally(backend):
    run = stream_events(replay(simple_parts(5)), transformers=[UpdatesTransformer])
    ups = iter(run.updates)
    vals = iter(run.values)
    next(vals)
    run.abort()
    assert list(ups) == []
    assert list(vals) == []


def test_abort_before_start(backend):
    state: Dict[str, Any] = {}
    gen = replay(simple_parts(2), state=state)
    run = stream_events(gen)
    run.abort()
    assert list(run.values) == []
    assert state.get("pulled", 0) == 0


def test_with_block_closes_generator_on_break(backend):
    state: Dict[str, Any] = {}
    with stream_events(replay(simple_parts(10), state=state)) as run:
        for v in run.values:
            if v == {"step": 1}:
                break
        assert state["finally"] is False
    assert state["finally"] is True


def test_with_block_closes_generator_on_exception(backend):
    state: Dict[str, Any] = {}
    with pytest.raises(ZeroDivisionError):
        with stream_events(replay(simple_parts(10), state=state)) as run:
            for v in run.values:
                1 / 0
    assert state["finally"] is True


def test_with_block_returns_the_run(backend):
    run = stream_events(replay(simple_parts(1)))
    with run as entered:
        assert entered is run
        assert entered.output == {"step": 1}


# ------------------------------------------------------------- interleave


def test_interleave_three_projections_in_push_order(backend):
    parts, _ = load_trace("nested_two_levels")
    run = stream_events(replay(parts), transformers=[UpdatesTransformer, CustomTransformer])
    got = list(run.interleave("values", "updates", "custom"))
    expected = [(p["type"], p["data"]) for p in parts
                if p["ns"] == () and p["type"] in ("values", "updates", "custom")]
    assert got == expected


def test_interleave_synthetic_order(backend):
    parts = simple_parts(3)
    run = stream_events(replay(parts), transformers=[UpdatesTransformer, CustomTransformer])
    got = list(run.interleave("custom", "values", "updates"))
    assert got == [(p["type"], p["data"]) for p in parts]


def test_interleave_with_lifecycle(backend):
    parts, _ = load_trace("nested_two_levels")
    run = stream_events(replay(parts))
    got = list(run.interleave("values", "lifecycle"))
    names = [n for n, _ in got]
    assert names.count("lifecycle") == 4  # two namespaces: started + completed each
    assert [d for n, d in got if n == "values"] == root_data(parts, "values")
    # the subgraph starts after the root's second snapshot and ends before the third
    idx = [i for i, (n, _) in enumerate(got) if n == "lifecycle"]
    vidx = [i for i, (n, _) in enumerate(got) if n == "values"]
    assert vidx[1] < idx[0] and idx[-1] < vidx[2]


def test_interleave_unknown_name(backend):
    run = stream_events(replay(simple_parts(1)))
    with pytest.raises(KeyError) as info:
        list(run.interleave("values", "nope"))
    assert "nope" in str(info.value)


def test_interleave_propagates_run_error(backend):
    boom = ValueError("mid-run")
    run = stream_events(replay(simple_parts(2), boom), transformers=[UpdatesTransformer])
    got = []
    with pytest.raises(ValueError, match="mid-run"):
        for item in run.interleave("values", "updates"):
            got.append(item)
    assert [n for n, _ in got] == ["values", "updates", "values", "updates", "values"]


def test_interleave_yields_what_was_pushed_before_the_runs_error(backend):
    """Items pushed to the named projections while the consumer was busy
    elsewhere (here: reading ``run.values`` directly inside the loop) are
    all yielded, in push order, before the run's error.  (Deliberate
    difference: LangGraph raises as soon as one named projection is empty
    and failed, dropping what the others still hold.)"""
    boom = ValueError("late failure")
    run = stream_events(replay(simple_parts(3), boom), transformers=[UpdatesTransformer])
    got = []
    with pytest.raises(ValueError, match="late failure"):
        for name, item in run.interleave("updates", "lifecycle"):
            got.append((name, item))
            if len(got) == 1:
                # the pump runs to the end of the graph from here
                with pytest.raises(ValueError, match="late failure"):
                    list(run.values)
    assert [name for name, _ in got] == ["updates", "updates", "updates"]


def test_an_iterator_of_a_failed_run_raises_at_every_next(backend):
    """(Deliberate difference: LangGraph's generator raises once, then stops.)"""
    boom = ValueError("mid-run")
    run = stream_events(replay(simple_parts(1), boom))
    values, raw = iter(run.values), iter(run)
    assert next(values) == {"step": 0}
    assert next(values) == {"step": 1}
    for it in (values, raw, values):
        with pytest.raises(ValueError, match="mid-run"):
            for _ in range(10):
                next(it)
    with pytest.raises(ValueError, match="mid-run"):
        next(raw)


def test_interleave_releases_subscriptions(backend):
    run = stream_events(replay(simple_parts(3)), transformers=[UpdatesTransformer])
    it = run.interleave("values", "updates")
    assert next(it) == ("values", {"step": 0})
    it.close()
    # the channels can be subscribed again
    vals = iter(run.values)
    assert next(vals) == {"step": 1}


def test_interleave_subscribed_channel_raises(backend):
    run = stream_events(replay(simple_parts(1)))
    iter(run.values)
    with pytest.raises(RuntimeError):
        list(run.interleave("values", "lifecycle"))


# ---------------------------------------------------------- bounded (maxlen)


def many_parts(n: int) -> List[Dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(values({"i": i}))
        out.append(custom({"c": i}))
    return out


def test_maxlen_lagging_tee_branch_raises_stream_lag_error(backend):
    n = 7
    run = stream_events(replay(many_parts(n)), maxlen=2)
    fast, slow = run.values.tee(2)
    assert [v["i"] for v in fast] == list(range(n))
    with pytest.raises(StreamLagError) as info:
        next(slow)
    assert info.value.missed == n - 2
    assert isinstance(info.value, RuntimeError)
    # then continues with the oldest retained items
    assert [v["i"] for v in slow] == [n - 2, n - 1]


def test_maxlen_projection_lags_while_raw_log_drives(backend):
    n = 6
    run = stream_events(replay(many_parts(n)), transformers=[CustomTransformer], maxlen=2)
    vals = iter(run.values)
    raw = list(run)  # the raw main log drives the pump to the end
    assert len(raw) == 2 * n
    with pytest.raises(StreamLagError) as info:
        next(vals)
    assert info.value.missed == n - 2
    assert [v["i"] for v in vals] == [n - 2, n - 1]


def test_maxlen_raw_log_lags_while_projection_drives(backend):
    n = 5
    run = stream_events(replay(many_parts(n)), transformers=[CustomTransformer], maxlen=2)
    raw = iter(run)
    assert [c["c"] for c in run.custom] == list(range(n))
    with pytest.raises(StreamLagError) as info:
        next(raw)
    assert info.value.missed == 2 * n - 2
    rest = list(raw)
    assert [e["seq"] for e in rest] == [2 * n - 1, 2 * n]


def test_maxlen_lagging_projection_while_other_projection_drives(backend):
    n = 5
    run = stream_events(replay(many_parts(n)), transformers=[CustomTransformer], maxlen=2)
    vals = iter(run.values)
    cust = iter(run.custom)
    assert next(vals) == {"i": 0}
    assert [c["c"] for c in cust] == list(range(n))
    # values read 1 of n; n - 1 remained, 2 retained
    with pytest.raises(StreamLagError) as info:
        next(vals)
    assert info.value.missed == n - 1 - 2
    assert [v["i"] for v in vals] == [n - 2, n - 1]


def test_maxlen_readers_keeping_up_never_lag(backend):
    n = 20
    run = stream_events(replay(many_parts(n)), transformers=[CustomTransformer], maxlen=2)
    got = list(run.interleave("values", "custom"))
    assert len(got) == 2 * n
    assert run.output == {"i": n - 1}


def test_maxlen_one(backend):
    run = stream_events(replay(many_parts(3)), maxlen=1)
    a, b = run.values.tee(2)
    assert len(list(a)) == 3
    with pytest.raises(StreamLagError) as info:
        next(b)
    assert info.value.missed == 2
    assert list(b) == [{"i": 2}]


def test_stream_events_maxlen_validation(backend):
    with pytest.raises(ValueError, match="maxlen"):
        stream_events([], maxlen=0)
    with pytest.raises(TypeError, match="maxlen"):
        stream_events([], maxlen="2")


def test_stream_lag_error_exported(backend):
    assert langstream.StreamLagError is StreamLagError
    assert issubclass(StreamLagError, RuntimeError)


# ----------------------------------------------------------------- demo


def test_demo_runs(backend):
    env = dict(os.environ)
    if backend == "python":
        env["LANGSTREAM_NO_EXTENSIONS"] = "1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "langstream", "demo"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.lower()
    assert "output" in out  # prints the final output
    assert "interrupt" in out  # the simulated run has one interrupt


def test_raw_log_subscribed_late_sees_later_events_with_global_numbers(backend):
    parts = simple_parts(3)
    run = stream_events(replay(parts))
    vals = iter(run.values)
    next(vals)
    next(vals)  # pulled values, custom, updates, values
    raw = list(run)
    assert [e["seq"] for e in raw] == list(range(5, len(parts) + 1))
    assert [e["params"]["data"] for e in raw] == [p["data"] for p in parts[4:]]


def test_bounded_lifecycle_lags_while_values_drive(backend):
    parts = [values({"r": 0})]
    for i in range(4):
        t = f"t{i}"
        parts += [{"type": "tasks", "ns": (), "data": {"id": t, "name": "s", "input": None,
                                                       "triggers": []}},
                  values({"s": i}, (f"s:{t}",)),
                  {"type": "tasks", "ns": (), "data": {"id": t, "name": "s", "error": None,
                                                       "result": {}, "interrupts": []}}]
    parts.append(values({"r": 1}))
    run = stream_events(replay(parts), maxlen=2)
    life = iter(run.lifecycle)
    assert list(run.values) == [{"r": 0}, {"r": 1}]
    with pytest.raises(StreamLagError) as info:
        next(life)
    assert info.value.missed == 8 - 2
    assert [p["event"] for p in life] == ["started", "completed"]
