"""Subgraph handles and lifecycle, sync lane (DESIGN.md "Run streams", issue 5).

Synthetic part sequences are shaped like LangGraph's: the parent's ``tasks``
start (id=T), then the child's events at ``("child:T",)`` (its input
snapshot first), then the parent's ``tasks`` result for T.

Every test takes the ``backend`` fixture so it runs on both event-log backends.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from helpers import (
    load_trace,
    ns_of,
    replay,
    subgraph_run,
    task_result,
    task_start,
    trace_iter,
    two_children_one_grandchild,
    updates,
    values,
)

from langstream import (
    StreamMux,
    SubgraphRunStream,
    SubgraphTransformer,
    UpdatesTransformer,
    ValuesTransformer,
    LifecycleTransformer,
    GraphRunStream,
    stream_events,
)


def snapshots_at(parts, ns) -> List[Any]:
    ns = tuple(ns)
    return [p["data"] for p in parts if p["type"] == "values" and tuple(p["ns"]) == ns]


def lifecycle_summary(payloads) -> List[Tuple[str, Tuple[str, ...]]]:
    return [(p["event"], tuple(p["namespace"])) for p in payloads]


# ------------------------------------------------------- two children, one grandchild


def test_root_subgraphs_yields_exactly_the_direct_children(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    handles = list(run.subgraphs)
    assert [h.path for h in handles] == [info["alpha"]["ns"], info["beta"]["ns"]]
    assert [h.graph_name for h in handles] == ["alpha", "beta"]
    assert [h.trigger_call_id for h in handles] == ["ta1", "tb2"]
    assert all(isinstance(h, SubgraphRunStream) for h in handles)
    assert all(h.status == "completed" and h.error is None for h in handles)
    assert run.output == info["root"]["snapshots"][-1]


def test_handle_values_hold_exactly_own_snapshots_including_input(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    got: Dict[str, List[Any]] = {}
    for sub in run.subgraphs:
        assert sub.status == "started"
        got[sub.graph_name] = list(sub.values)
        assert sub.status == "completed"
    assert got == {"alpha": info["alpha"]["snapshots"], "beta": info["beta"]["snapshots"]}
    assert got["alpha"][0] == {"who": "alpha", "i": 0}  # the input snapshot


def test_handle_values_subscribed_in_loop_read_after_loop(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    readers = {}
    for sub in run.subgraphs:
        readers[sub.graph_name] = iter(sub.values)
    assert {k: list(v) for k, v in readers.items()} == {
        "alpha": info["alpha"]["snapshots"], "beta": info["beta"]["snapshots"]}


def test_root_values_unaffected_by_children(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    root_vals = iter(run.values)
    for sub in run.subgraphs:
        list(sub.values)
    assert list(root_vals) == info["root"]["snapshots"]


def test_grandchild_on_child_handle_never_on_root(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    root_handles = []
    grand: Dict[Tuple[str, ...], Any] = {}
    grand_values: Dict[Tuple[str, ...], Any] = {}
    child_values: Dict[str, List[Any]] = {}
    for sub in run.subgraphs:
        root_handles.append(sub.path)
        child_values[sub.graph_name] = []
        for name, item in sub.interleave("values", "subgraphs"):
            if name == "values":
                child_values[sub.graph_name].append(item)
            else:
                grand[item.path] = item
                grand_values[item.path] = iter(item.values)
    assert root_handles == [info["alpha"]["ns"], info["beta"]["ns"]]
    assert list(grand) == [info["gamma"]["ns"]]
    g = grand[info["gamma"]["ns"]]
    assert g.graph_name == "gamma"
    assert g.trigger_call_id == "tg3"
    assert g.path == ("alpha:ta1", "gamma:tg3")
    assert g.status == "completed"
    assert list(grand_values[g.path]) == info["gamma"]["snapshots"]
    # the child handle's values do not include the grandchild's snapshots
    assert child_values == {"alpha": info["alpha"]["snapshots"], "beta": info["beta"]["snapshots"]}


def test_grandchild_handle_values_subscribed_inside_nested_loops(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    got = {}
    for sub in run.subgraphs:
        for g in sub.subgraphs:
            got[g.path] = list(g.values)
    assert got == {info["gamma"]["ns"]: info["gamma"]["snapshots"]}


def test_root_lifecycle_lists_all_namespaces_started_then_terminal(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    payloads = list(run.lifecycle)
    a, b, g = info["alpha"]["ns"], info["beta"]["ns"], info["gamma"]["ns"]
    assert lifecycle_summary(payloads) == [
        ("started", a), ("started", g), ("completed", g), ("completed", a),
        ("started", b), ("completed", b),
    ]
    by_ns = {tuple(p["namespace"]): p for p in payloads}
    assert by_ns[a]["graph_name"] == "alpha" and by_ns[a]["trigger_call_id"] == "ta1"
    assert by_ns[g]["graph_name"] == "gamma" and by_ns[g]["trigger_call_id"] == "tg3"
    assert by_ns[b]["graph_name"] == "beta" and by_ns[b]["trigger_call_id"] == "tb2"
    for p in payloads:
        assert isinstance(p["namespace"], list)
        assert "error" not in p


def test_child_lifecycle_tracks_only_its_subtree(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    got = {}
    for sub in run.subgraphs:
        got[sub.graph_name] = lifecycle_summary(sub.lifecycle)
    g = info["gamma"]["ns"]
    assert got == {"alpha": [("started", g), ("completed", g)], "beta": []}


def test_lifecycle_started_precedes_first_event_in_main_log(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    events = list(run)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for key in ("alpha", "beta", "gamma"):
        ns = list(info[key]["ns"])
        started = [i for i, e in enumerate(events) if e["method"] == "lifecycle"
                   and e["params"]["data"]["event"] == "started"
                   and e["params"]["data"]["namespace"] == ns]
        ended = [i for i, e in enumerate(events) if e["method"] == "lifecycle"
                 and e["params"]["data"]["event"] == "completed"
                 and e["params"]["data"]["namespace"] == ns]
        inside = [i for i, e in enumerate(events) if e["method"] != "lifecycle"
                  and e["params"]["namespace"][:len(ns)] == ns]
        assert len(started) == 1 and len(ended) == 1
        assert inside, key
        assert started[0] < inside[0]
        assert ended[0] > inside[-1]
    # lifecycle events in the main log are at the root namespace
    assert all(e["params"]["namespace"] == [] for e in events if e["method"] == "lifecycle")


def test_tasks_events_kept_out_of_main_logs(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    raw = iter(run)
    child_raw = {}
    for sub in run.subgraphs:
        child_raw[sub.graph_name] = list(sub)
    root_events = list(raw)
    assert all(e["method"] != "tasks" for e in root_events)
    n_non_tasks = sum(1 for p in parts if p["type"] != "tasks")
    assert len([e for e in root_events if e["method"] != "lifecycle"]) == n_non_tasks
    for name, evs in child_raw.items():
        assert evs, name
        assert all(e["method"] != "tasks" for e in evs)


def test_child_raw_log_shares_root_events_and_numbers(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    raw = iter(run)
    child_events = {}
    for sub in run.subgraphs:
        child_events[sub.graph_name] = list(sub)
    root_events = list(raw)
    by_id = {id(e): e for e in root_events}
    for name in ("alpha", "beta"):
        ns = list(info[name]["ns"])
        own = [e for e in child_events[name] if e["method"] != "lifecycle"]
        assert own
        for e in own:
            assert id(e) in by_id  # the same object as in the root log
            assert e["params"]["namespace"][:1] == ns
        seqs = [e["seq"] for e in own]
        assert seqs == sorted(seqs)
        expected = [e for e in root_events if e["method"] != "lifecycle"
                    and e["params"]["namespace"][:1] == ns]
        assert [e["seq"] for e in own] == [e["seq"] for e in expected]


def test_handle_output_is_its_last_snapshot(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    outs = {}
    for sub in run.subgraphs:
        outs[sub.graph_name] = sub.output
    assert outs == {"alpha": info["alpha"]["snapshots"][-1], "beta": info["beta"]["snapshots"][-1]}
    assert run.output == info["root"]["snapshots"][-1]


def test_handle_extra_projection_from_factories(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts), transformers=[UpdatesTransformer])
    got = {}
    for sub in run.subgraphs:
        got[sub.graph_name] = list(sub.updates)
    ns = info["beta"]["ns"]
    assert got["beta"] == [p["data"] for p in parts if p["type"] == "updates" and p["ns"] == ns]
    assert len(got["alpha"]) == 2


def test_handle_unknown_projection_attribute_error(backend):
    parts, _ = two_children_one_grandchild()
    run = stream_events(replay(parts))
    for sub in run.subgraphs:
        with pytest.raises(AttributeError) as info:
            sub.updates
        assert "values" in str(info.value)
        break
    run.abort()


# ------------------------------------------------------------ terminal states


def _one_child(*, error=None, interrupts=(), close=True, tail=True):
    snaps = [{"c": 0}, {"c": 1}]
    parts = [values({"r": 0})]
    parts += subgraph_run("child", "T1", (), snaps, error=error, interrupts=interrupts,
                          close=close)
    if tail:
        parts.append(values({"r": 1}))
    return parts, snaps, ns_of("child", "T1")


def test_failed_child_values_raise_and_status(backend):
    parts, snaps, ns = _one_child(error="ValueError('boom')")
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    handles = []
    seen = []
    for sub in run.subgraphs:
        handles.append(sub)
        with pytest.raises(Exception) as info:
            for v in sub.values:
                seen.append(v)
        assert "boom" in str(info.value)
    assert seen == snaps
    (h,) = handles
    assert h.status == "failed"
    assert "boom" in h.error
    with pytest.raises(Exception, match="boom"):
        h.output
    payloads = list(life)
    assert lifecycle_summary(payloads) == [("started", ns), ("failed", ns)]
    assert "boom" in payloads[1]["error"]
    assert payloads[1]["graph_name"] == "child" and payloads[1]["trigger_call_id"] == "T1"
    # the run itself carries on to its end
    assert run.output == {"r": 1}


def test_interrupted_child(backend):
    intr = [{"value": {"q": "ok?"}, "id": "i-1"}]
    parts, snaps, ns = _one_child(interrupts=intr)
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    got = []
    handles = []
    for sub in run.subgraphs:
        handles.append(sub)
        got.append(list(sub.values))  # ends normally
    assert got == [snaps]
    assert handles[0].status == "interrupted"
    assert handles[0].error is None
    payloads = list(life)
    assert lifecycle_summary(payloads) == [("started", ns), ("interrupted", ns)]
    assert "error" not in payloads[1]
    assert run.output == {"r": 1}


def test_interrupts_win_over_error(backend):
    parts, snaps, ns = _one_child(interrupts=[{"value": 1}], error="GraphInterrupt()")
    run = stream_events(replay(parts))
    assert lifecycle_summary(run.lifecycle) == [("started", ns), ("interrupted", ns)]


def test_child_open_when_run_ends_is_completed(backend):
    parts, snaps, ns = _one_child(close=False)
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    handles = []
    got = []
    for sub in run.subgraphs:
        handles.append(sub)
        got.append(list(sub.values))
    assert got == [snaps]
    assert handles[0].status == "completed"
    assert lifecycle_summary(life) == [("started", ns), ("completed", ns)]
    assert run.output == {"r": 1}


def test_child_open_at_end_as_last_event(backend):
    parts, snaps, ns = _one_child(close=False, tail=False)
    run = stream_events(replay(parts))
    got = []
    for sub in run.subgraphs:
        got.append(list(sub.values))
    assert got == [snaps]
    assert run.output == {"r": 0}


def test_run_fails_while_child_open(backend):
    parts, snaps, ns = _one_child(close=False, tail=False)
    boom = ConnectionError("lost the model")
    state: Dict[str, Any] = {}
    run = stream_events(replay(parts, boom, state))
    life = iter(run.lifecycle)
    handles = []
    seen = []
    with pytest.raises(ConnectionError):
        for sub in run.subgraphs:
            handles.append(sub)
            with pytest.raises(ConnectionError) as info:
                for v in sub.values:
                    seen.append(v)
            assert info.value is boom
    assert seen == snaps
    (h,) = handles
    assert h.status == "failed"
    assert "lost the model" in h.error
    with pytest.raises(ConnectionError):
        h.output
    payloads = []
    with pytest.raises(ConnectionError):
        for p in life:
            payloads.append(p)
    assert lifecycle_summary(payloads) == [("started", ns), ("failed", ns)]
    assert "lost the model" in payloads[1]["error"]
    with pytest.raises(ConnectionError):
        run.output
    assert state["finally"] is True


def test_run_fails_with_nested_open_children(backend):
    a = ns_of("a", "t1")
    g = ns_of("g", "t2", a)
    parts = [values({"r": 0}), task_start("t1", "a"), values({"a": 0}, a),
             task_start("t2", "g", a), values({"g": 0}, g)]
    boom = RuntimeError("deep failure")
    run = stream_events(replay(parts, boom))
    payloads = []
    with pytest.raises(RuntimeError, match="deep failure"):
        for p in run.lifecycle:
            payloads.append(p)
    summary = lifecycle_summary(payloads)
    assert summary[:2] == [("started", a), ("started", g)]
    assert sorted(summary[2:]) == sorted([("failed", a), ("failed", g)])
    # open namespaces end oldest first, a parent before its children, in
    # the order LangGraph's lifecycle ends them
    assert summary[2:] == [("failed", a), ("failed", g)]


def test_two_children_in_parallel(backend):
    a = ns_of("a", "ta")
    b = ns_of("b", "tb")
    parts = [values({"r": 0}), task_start("ta", "a"), task_start("tb", "b"),
             values({"a": 0}, a), values({"b": 0}, b), values({"a": 1}, a),
             values({"b": 1}, b),
             task_result("tb", "b"), task_result("ta", "a", error="oops"), values({"r": 1})]
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    readers = {}
    for sub in run.subgraphs:
        readers[sub.graph_name] = (sub, iter(sub.values))
    assert list(readers["b"][1]) == [{"b": 0}, {"b": 1}]
    assert readers["b"][0].status == "completed"
    assert readers["a"][0].status == "failed"
    with pytest.raises(Exception, match="oops"):
        list(readers["a"][1])
    assert lifecycle_summary(life) == [("started", a), ("started", b), ("completed", b),
                                      ("failed", a)]


def test_subgraph_discovered_by_non_values_event(backend):
    # the first event of the child is a custom event: the handle still sees
    # its later snapshots, and lifecycle 'started' precedes that event
    a = ns_of("a", "t1")
    parts = [values({"r": 0}), task_start("t1", "a"),
             {"type": "custom", "ns": a, "data": {"progress": 1}},
             values({"a": 0}, a), updates({"n": 1}, a), values({"a": 1}, a),
             task_result("t1", "a"), values({"r": 1})]
    run = stream_events(replay(parts))
    raw = iter(run)
    got = []
    for sub in run.subgraphs:
        got.append(list(sub.values))
    assert got == [[{"a": 0}, {"a": 1}]]
    events = list(raw)
    methods = [e["method"] for e in events]
    assert methods.index("lifecycle") < methods.index("custom")


def test_handle_exposes_subgraph_status_values(backend):
    from langstream import SubgraphStatus
    import typing

    assert set(typing.get_args(SubgraphStatus)) == {"started", "completed", "failed",
                                                    "interrupted", "drained"}


def test_subgraphs_on_a_direct_graph_run_stream(backend):
    parts, info = two_children_one_grandchild()
    mux = StreamMux(factories=[ValuesTransformer, LifecycleTransformer, SubgraphTransformer])
    run = GraphRunStream(iter(parts), mux)
    got = {}
    for sub in run.subgraphs:
        got[sub.graph_name] = list(sub.values)
    assert got == {"alpha": info["alpha"]["snapshots"], "beta": info["beta"]["snapshots"]}


def test_abort_inside_subgraph_loop(backend):
    parts, info = two_children_one_grandchild()
    state: Dict[str, Any] = {}
    run = stream_events(replay(parts, state=state))
    names = []
    for sub in run.subgraphs:
        names.append(sub.graph_name)
        next(iter(sub.values))
        run.abort()
    assert names == ["alpha"]
    assert state["finally"] is True


# ------------------------------------------------------------ recorded traces


def test_replay_nested_two_levels(backend):
    parts, err = load_trace("nested_two_levels")
    assert err is None
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    raw = iter(run)
    children = []
    grandchildren = []
    child_vals = {}
    grand_vals = {}
    for sub in run.subgraphs:
        children.append(sub)
        child_vals[sub.path] = []
        for name, item in sub.interleave("values", "subgraphs"):
            if name == "values":
                child_vals[sub.path].append(item)
            else:
                grandchildren.append(item)
                grand_vals[item.path] = iter(item.values)
    (child,) = children
    (grand,) = grandchildren
    child_ns = ("n_SUB:7f666d5f-ac97-4ca9-8e24-52cf03417f49",)
    grand_ns = child_ns + ("n_SUB:b07c2d28-c223-c3fc-0dc2-4f15dca3a5bd",)
    assert child.path == child_ns
    assert child.graph_name == "n_SUB"
    assert child.trigger_call_id == "7f666d5f-ac97-4ca9-8e24-52cf03417f49"
    assert grand.path == grand_ns
    assert grand.trigger_call_id == "b07c2d28-c223-c3fc-0dc2-4f15dca3a5bd"
    assert child_vals[child_ns] == snapshots_at(parts, child_ns)
    assert list(grand_vals[grand_ns]) == snapshots_at(parts, grand_ns)
    assert child.status == "completed" and grand.status == "completed"
    assert lifecycle_summary(life) == [("started", child_ns), ("started", grand_ns),
                                      ("completed", grand_ns), ("completed", child_ns)]
    events = list(raw)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert not any(e["method"] == "tasks" for e in events)
    assert run.output == snapshots_at(parts, ())[-1]


def test_replay_nested_custom_events_reach_each_level(backend):
    from langstream import CustomTransformer

    parts, _ = load_trace("nested_two_levels")
    run = stream_events(replay(parts), transformers=[CustomTransformer])
    root_custom = iter(run.custom)
    got = {}
    for sub in run.subgraphs:
        c = iter(sub.custom)
        for g in sub.subgraphs:
            got[g.path] = list(g.custom)
        got[sub.path] = list(c)
    assert [c["node"] for c in root_custom] == ["start", "end"]
    assert sorted((len(k), [c["node"] for c in v]) for k, v in got.items()) == [
        (1, ["a", "b"]), (2, ["x", "y"])]


def test_replay_failing_subgraph(backend):
    state: Dict[str, Any] = {}
    run = stream_events(trace_iter("failing_subgraph", state))
    parts, _ = load_trace("failing_subgraph")
    life = iter(run.lifecycle)
    handles = []
    child_seen = []
    with pytest.raises(ValueError, match="tool exploded"):
        for sub in run.subgraphs:
            handles.append(sub)
            with pytest.raises(Exception, match="tool exploded"):
                for v in sub.values:
                    child_seen.append(v)
    (h,) = handles
    ns = ("n_SUB:3f2f7ecc-3e46-8652-140d-cadfbad26a7f",)
    assert h.path == ns
    assert h.status == "failed"
    assert "tool exploded" in h.error
    assert child_seen == snapshots_at(parts, ns)
    payloads = []
    with pytest.raises(ValueError, match="tool exploded"):
        for p in life:
            payloads.append(p)
    assert lifecycle_summary(payloads) == [("started", ns), ("failed", ns)]
    assert "tool exploded" in payloads[1]["error"]
    with pytest.raises(ValueError, match="tool exploded"):
        run.output
    assert state["finally"] is True


def test_child_discovered_by_grandchild_event(backend):
    # the child's first event comes from inside its own subgraph
    a = ns_of("a", "t1")
    g = ns_of("g", "t2", a)
    parts = [values({"r": 0}), task_start("t1", "a"), task_start("t2", "g", a),
             values({"g": 0}, g), values({"g": 1}, g), task_result("t2", "g", a),
             values({"a": 1}, a), task_result("t1", "a"), values({"r": 1})]
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    got = {}
    child_vals = {}
    for sub in run.subgraphs:
        cv = iter(sub.values)
        for gh in sub.subgraphs:
            got[gh.path] = list(gh.values)
        child_vals[sub.path] = list(cv)
    assert got == {g: [{"g": 0}, {"g": 1}]}
    assert child_vals == {a: [{"a": 1}]}
    assert lifecycle_summary(life) == [("started", a), ("started", g), ("completed", g),
                                      ("completed", a)]


def test_handles_collected_first_then_read_later_keep_status(backend):
    parts, info = two_children_one_grandchild()
    run = stream_events(replay(parts))
    handles = list(run.subgraphs)
    # the run is over: every handle is terminal and its projections are closed
    for h in handles:
        assert h.status == "completed"
        assert list(h.values) == []
        assert h.output == info[h.graph_name]["snapshots"][-1]


def test_malformed_part_while_child_open_fails_child_and_run(backend):
    a = ns_of("a", "t1")
    parts = [values({"r": 0}), task_start("t1", "a"), values({"a": 0}, a),
             {"type": "values", "ns": ("a:t1", 3), "data": {}}, values({"a": 1}, a)]
    state: Dict[str, Any] = {}
    run = stream_events(replay(parts, state=state))
    life = iter(run.lifecycle)
    handles = []
    seen = []
    with pytest.raises((TypeError, ValueError)):
        for sub in run.subgraphs:
            handles.append(sub)
            with pytest.raises((TypeError, ValueError)) as info:
                for v in sub.values:
                    seen.append(v)
            assert "ns" in str(info.value)
    assert seen == [{"a": 0}]
    assert handles[0].status == "failed"
    payloads = []
    with pytest.raises((TypeError, ValueError)):
        for p in life:
            payloads.append(p)
    assert lifecycle_summary(payloads) == [("started", a), ("failed", a)]
    assert state["finally"] is True


class _RaisesInChild:
    """Factory: a transformer that raises on the ``at``-th event of a child scope."""

    def __init__(self, at):
        self.at = at

    def __call__(self, scope):
        from langstream import StreamTransformer

        at = self.at

        class ChildBomb(StreamTransformer):
            def __init__(self, scope):
                super().__init__(scope)
                self.n = 0

            def init(self):
                return {}

            def process(self, event):
                if self.scope:
                    self.n += 1
                    if self.n == at:
                        raise OverflowError("child transformer failed")
                return True

        return ChildBomb(scope)


@pytest.mark.parametrize("at", [1, 2])
def test_transformer_raising_in_child_mux_fails_the_run(backend, at):
    parts, info = two_children_one_grandchild()
    state: Dict[str, Any] = {}
    run = stream_events(replay(parts, state=state), transformers=[_RaisesInChild(at)])
    root_vals = iter(run.values)
    raw = iter(run)
    with pytest.raises(OverflowError):
        for sub in run.subgraphs:
            with pytest.raises(OverflowError):
                list(sub.values)
    with pytest.raises(OverflowError):
        list(root_vals)
    with pytest.raises(OverflowError):
        list(raw)
    with pytest.raises(OverflowError):
        run.output
    assert state["finally"] is True


def test_same_graph_name_two_task_ids_are_two_handles(backend):
    a1 = ns_of("tool", "t1")
    a2 = ns_of("tool", "t2")
    parts = [values({"r": 0})]
    parts += subgraph_run("tool", "t1", (), [{"k": 1}])
    parts += subgraph_run("tool", "t2", (), [{"k": 2}], error="bad")
    run = stream_events(replay(parts))
    life = iter(run.lifecycle)
    handles = list(run.subgraphs)
    assert [(h.path, h.graph_name, h.trigger_call_id, h.status) for h in handles] == [
        (a1, "tool", "t1", "completed"), (a2, "tool", "t2", "failed")]
    assert lifecycle_summary(life) == [("started", a1), ("completed", a1),
                                      ("started", a2), ("failed", a2)]


def test_scoped_run_stream_events(backend):
    parts, info = two_children_one_grandchild()
    a = info["alpha"]["ns"]
    sub_parts = [p for p in parts if tuple(p["ns"])[:1] == a]
    run = stream_events(replay(sub_parts), scope=a)
    life = iter(run.lifecycle)
    handles = list(run.subgraphs)
    assert [h.path for h in handles] == [info["gamma"]["ns"]]
    assert lifecycle_summary(life) == [("started", info["gamma"]["ns"]),
                                      ("completed", info["gamma"]["ns"])]
    assert run.output == info["alpha"]["snapshots"][-1]


def test_bounded_handle_values_lag_while_root_drives(backend):
    from langstream import StreamLagError

    snaps = [{"c": i} for i in range(6)]
    parts = [values({"r": 0})] + subgraph_run("child", "T1", (), snaps) + [values({"r": 1})]
    run = stream_events(replay(parts), maxlen=2)
    handle = next(iter(run.subgraphs))
    vals = iter(handle.values)
    assert run.output == {"r": 1}  # drives the run to its end
    with pytest.raises(StreamLagError) as info:
        next(vals)
    assert info.value.missed == len(snaps) - 2
    assert list(vals) == snaps[-2:]
