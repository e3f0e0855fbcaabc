"""Subgraph handles and lifecycle on the async lane (issue 5, DESIGN.md).

``AsyncSubgraphRunStream`` handles from ``run.subgraphs``; iterating a
handle's projections drives the root pump.  Every test takes the
``backend`` fixture; async code runs under ``helpers.arun`` (asyncio.run
plus a liveness guard).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import Any, Dict, List, Tuple

import pytest

from helpers import (
    adrain,
    adrain_outcome,
    areplay,
    arun,
    load_trace,
    subgraph_run,
    task_result,
    task_start,
    two_children_one_grandchild,
    values,
)
from langstream import AsyncSubgraphRunStream, astream_events


def _snapshots(parts, ns) -> List[Any]:
    ns = tuple(ns)
    return [p["data"] for p in parts if p["type"] == "values" and tuple(p["ns"]) == ns]


def _namespaces(parts) -> List[Tuple[str, ...]]:
    seen: List[Tuple[str, ...]] = []
    for p in parts:
        ns = tuple(p["ns"])
        for k in range(1, len(ns) + 1):
            if ns[:k] not in seen:
                seen.append(ns[:k])
    return seen


async def _walk(handle_iter, out: Dict[Tuple[str, ...], Any], handles: List[Any]) -> None:
    """For every handle: subscribe to its values and subgraphs inside the loop body,
    then drain its values while walking its own children concurrently."""
    async for h in handle_iter:
        assert isinstance(h, AsyncSubgraphRunStream)
        handles.append(h)
        vit = h.values.__aiter__()
        sit = h.subgraphs.__aiter__()
        vals, _ = await asyncio.gather(adrain(vit), _walk(sit, out, handles))
        out[h.path] = vals


@pytest.mark.parametrize("yield_every", [0, 1])
def test_handles_see_every_snapshot_including_input_nested_trace(backend, yield_every):
    parts, error = load_trace("nested_two_levels")
    assert error is None
    child, grandchild = _namespaces(parts)[:2]

    async def main():
        run = astream_events(areplay(parts, yield_every=yield_every))
        out: Dict[Tuple[str, ...], Any] = {}
        handles: List[Any] = []
        root_vals, _ = await asyncio.gather(adrain(run.values),
                                            _walk(run.subgraphs.__aiter__(), out, handles))
        return root_vals, out, handles

    root_vals, out, handles = arun(main())
    assert root_vals == _snapshots(parts, ())
    assert [h.path for h in handles] == [child, grandchild]
    assert out[child] == _snapshots(parts, child)
    assert out[child][0] == {"v": "start", "items": ["start"]}  # the input snapshot
    assert out[grandchild] == _snapshots(parts, grandchild)
    assert out[grandchild][0] == {"v": "starta", "items": ["start", "a"]}
    for h in handles:
        assert h.graph_name == "n_SUB"
        assert h.trigger_call_id == h.path[-1].split(":", 1)[1]
        assert h.status == "completed"
        assert h.error is None


def test_values_inside_the_subgraphs_loop_sees_all_snapshots(backend):
    """The simple pattern: iterate each handle's values in the loop body."""
    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts))
        got = {}
        async for h in run.subgraphs:
            got[h.path] = (h.graph_name, h.trigger_call_id, await adrain(h.values), h.status)
        return got, await run.output()

    got, out = arun(main())
    assert got == {
        info["alpha"]["ns"]: ("alpha", "ta1", info["alpha"]["snapshots"], "completed"),
        info["beta"]["ns"]: ("beta", "tb2", info["beta"]["snapshots"], "completed"),
    }
    assert out == info["root"]["snapshots"][-1]


def test_values_inside_the_loop_while_another_task_pumps(backend):
    """Another consumer drives the run concurrently; the handle still sees its input."""
    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts))

        async def subs():
            got = {}
            async for h in run.subgraphs:
                got[h.path] = await adrain(h.values)
            return got

        return await asyncio.gather(adrain(run.values), adrain(run), subs())

    root_vals, raw, got = arun(main())
    assert root_vals == info["root"]["snapshots"]
    assert got == {info["alpha"]["ns"]: info["alpha"]["snapshots"],
                   info["beta"]["ns"]: info["beta"]["snapshots"]}
    # tasks events are folded into the projections and kept out of the main log
    assert "tasks" not in {e["method"] for e in raw}


def test_grandchild_is_on_the_child_handle_not_the_root(backend):
    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts))
        root_paths = []
        grand = {}
        async for h in run.subgraphs:
            root_paths.append(h.path)
            async for g in h.subgraphs:
                grand[g.path] = (g.graph_name, g.trigger_call_id, await adrain(g.values))
        return root_paths, grand

    root_paths, grand = arun(main())
    assert root_paths == [info["alpha"]["ns"], info["beta"]["ns"]]
    assert grand == {info["gamma"]["ns"]: ("gamma", "tg3", info["gamma"]["snapshots"])}


def test_handle_output_and_raw_log(backend):
    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts))
        outs = {}
        async for h in run.subgraphs:
            raw_it = h.__aiter__()
            out = await h.output()
            raw = await adrain(raw_it)
            outs[h.path] = (out, raw)
        return outs

    outs = arun(main())
    out, raw = outs[info["beta"]["ns"]]
    assert out == info["beta"]["snapshots"][-1]
    beta_vals = [e["params"]["data"] for e in raw if e["method"] == "values"]
    assert beta_vals == info["beta"]["snapshots"]
    assert all(e["params"]["namespace"] == list(info["beta"]["ns"]) for e in raw)
    # child muxes never renumber: the seqs are the root's, increasing
    seqs = [e["seq"] for e in raw]
    assert seqs == sorted(seqs)


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_on_the_async_lane_nested_trace(backend):
    parts, _ = load_trace("nested_two_levels")
    child, grandchild = _namespaces(parts)[:2]

    async def main():
        run = astream_events(areplay(parts))
        return await asyncio.gather(adrain(run.lifecycle), adrain(run))

    lifecycle, raw = arun(main())
    assert [(p["event"], tuple(p["namespace"])) for p in lifecycle] == [
        ("started", child),
        ("started", grandchild),
        ("completed", grandchild),
        ("completed", child),
    ]
    for p in lifecycle:
        assert p["graph_name"] == "n_SUB"
        assert p["trigger_call_id"] == p["namespace"][-1].split(":", 1)[1]
    # started precedes the subgraph's first event in the main log
    for ns in (child, grandchild):
        started = next(e["seq"] for e in raw if e["method"] == "lifecycle"
                       and e["params"]["data"]["event"] == "started"
                       and tuple(e["params"]["data"]["namespace"]) == ns)
        first = next(e["seq"] for e in raw if e["method"] != "lifecycle"
                     and tuple(e["params"]["namespace"][:len(ns)]) == ns)
        assert started < first
    assert [e["seq"] for e in raw] == list(range(1, len(raw) + 1))


def test_lifecycle_two_children_one_grandchild(backend):
    parts, info = two_children_one_grandchild()
    a, b, g = info["alpha"]["ns"], info["beta"]["ns"], info["gamma"]["ns"]

    async def main():
        run = astream_events(areplay(parts))
        child_lc = {}
        root_lc_task = asyncio.ensure_future(adrain(run.lifecycle))
        async for h in run.subgraphs:
            lc, _vals = await asyncio.gather(adrain(h.lifecycle), adrain(h.values))
            child_lc[h.path] = lc
        return await root_lc_task, child_lc

    root_lc, child_lc = arun(main())
    assert [(p["event"], tuple(p["namespace"])) for p in root_lc] == [
        ("started", a), ("started", g), ("completed", g), ("completed", a),
        ("started", b), ("completed", b),
    ]
    # a child's lifecycle tracks only its own subtree
    assert [(p["event"], tuple(p["namespace"])) for p in child_lc[a]] == [
        ("started", g), ("completed", g)]
    assert child_lc[b] == []


# ----------------------------------------------------------- terminal status


def test_failing_subgraph_trace(backend):
    parts, error = load_trace("failing_subgraph")
    assert isinstance(error, ValueError)
    (child,) = _namespaces(parts)

    async def main():
        run = astream_events(areplay(parts, error))
        lc_task = asyncio.ensure_future(adrain_outcome(run.lifecycle))
        handles = []
        subs_err = None
        try:
            async for h in run.subgraphs:
                handles.append((h, await adrain_outcome(h.values)))
        except ValueError as exc:  # the subgraphs projection fails with the run
            subs_err = exc
        root = await adrain_outcome(run.values)
        out_err = None
        try:
            await run.output()
        except Exception as exc:  # noqa: BLE001
            out_err = exc
        return await lc_task, handles, root, out_err, subs_err

    (lc, lc_err), handles, (root_vals, root_err), out_err, subs_err = arun(main())
    (h, (h_vals, h_err)), = handles
    assert h.path == child
    assert h.status == "failed"
    assert "tool exploded" in (h.error or "")
    assert h_vals == _snapshots(parts, child)
    assert h_err is not None and "tool exploded" in str(h_err)
    assert [(p["event"], tuple(p["namespace"])) for p in lc] == [
        ("started", child), ("failed", child)]
    assert "tool exploded" in lc[1]["error"]
    # the run's own error reaches the root consumers
    for err in (lc_err, root_err, out_err, subs_err):
        assert isinstance(err, ValueError) and str(err) == "tool exploded"


def test_interrupted_child(backend):
    intr = [{"value": "approve?", "id": "i1"}]
    parts = [values({"r": 0})]
    parts += subgraph_run("ask", "t1", (), [{"c": 0}, {"c": 1}], interrupts=intr)
    parts.append(values({"r": 1}, interrupts=intr))

    async def main():
        run = astream_events(areplay(parts))
        lc_task = asyncio.ensure_future(adrain(run.lifecycle))
        got = []
        async for h in run.subgraphs:
            got.append((h, await adrain_outcome(h.values)))
        return await lc_task, got, await run.interrupted(), await run.interrupts()

    lc, got, interrupted, interrupts = arun(main())
    (h, (vals, err)), = got
    assert h.status == "interrupted"
    assert vals == [{"c": 0}, {"c": 1}] and err is None
    assert [p["event"] for p in lc] == ["started", "interrupted"]
    assert interrupted is True
    assert list(interrupts) == intr


def test_child_still_open_when_the_run_ends_is_completed(backend):
    parts = [values({"r": 0})]
    parts += subgraph_run("open", "t9", (), [{"c": 0}, {"c": 1}], close=False)

    async def main():
        run = astream_events(areplay(parts))
        lc_task = asyncio.ensure_future(adrain(run.lifecycle))
        got = []
        async for h in run.subgraphs:
            got.append((h, await adrain_outcome(h.values)))
        return await lc_task, got

    lc, got = arun(main())
    (h, (vals, err)), = got
    assert vals == [{"c": 0}, {"c": 1}] and err is None
    assert h.status == "completed"
    assert [(p["event"], tuple(p["namespace"])) for p in lc] == [
        ("started", ("open:t9",)), ("completed", ("open:t9",))]


def test_run_failing_while_a_child_is_open(backend):
    boom = RuntimeError("graph died")
    parts = [values({"r": 0})]
    parts += subgraph_run("open", "t9", (), [{"c": 0}, {"c": 1}], close=False)

    async def main():
        run = astream_events(areplay(parts, boom))
        lc_task = asyncio.ensure_future(adrain_outcome(run.lifecycle))
        got = []
        subs_err = None
        try:
            async for h in run.subgraphs:
                got.append((h, await adrain_outcome(h.values)))
        except RuntimeError as exc:
            subs_err = exc
        return await lc_task, got, subs_err

    (lc, lc_err), got, subs_err = arun(main())
    (h, (vals, err)), = got
    assert vals == [{"c": 0}, {"c": 1}]
    assert err is boom
    assert h.status == "failed"
    assert "graph died" in (h.error or "")
    assert [p["event"] for p in lc] == ["started", "failed"]
    assert "graph died" in lc[1]["error"]
    assert lc_err is boom
    assert subs_err is boom


def test_abort_while_iterating_a_handle(backend):
    state: Dict[str, Any] = {}
    parts, info = two_children_one_grandchild()

    async def main():
        run = astream_events(areplay(parts, state=state))
        seen = []
        async with run:
            async for h in run.subgraphs:
                async for v in h.values:
                    seen.append(v)
                    break
                break
        return seen, run

    seen, run = arun(main())
    assert seen == [info["alpha"]["snapshots"][0]]
    assert state["finally"] is True
    assert run.subgraphs.closed and run.values.closed


def test_backpressure_with_subgraphs(backend):
    """maxlen applies to child projections too; nothing lags, everything arrives."""
    parts, info = two_children_one_grandchild()
    parts = parts * 1  # one run
    peaks: Dict[str, int] = {}

    async def main():
        holder: Dict[str, Any] = {}

        async def source():
            for p in parts:
                run = holder.get("run")
                if run is not None:
                    for label, ch in run._mux._shared.bp.channels:
                        peaks[label] = max(peaks.get(label, 0), len(ch._log))
                yield dict(p)

        run = astream_events(source(), maxlen=1)
        holder["run"] = run
        got = {}

        async def subs():
            async for h in run.subgraphs:
                got[h.path] = []
                async for v in h.values:
                    got[h.path].append(v)
                    await asyncio.sleep(0)

        root_vals, raw, _ = await asyncio.gather(adrain(run.values), adrain(run), subs())
        return root_vals, raw, got

    root_vals, raw, got = arun(main())
    assert root_vals == info["root"]["snapshots"]
    assert got == {info["alpha"]["ns"]: info["alpha"]["snapshots"],
                   info["beta"]["ns"]: info["beta"]["snapshots"]}
    # one step adds at most a handful of events per log (an event plus a
    # lifecycle forward); never an unbounded pile-up
    for label, peak in peaks.items():
        assert peak <= 1 + 2, (label, peak)


def _open_siblings(n: int) -> List[Dict[str, Any]]:
    """``n`` sibling subgraphs open at once (parallel branches): their tasks
    start together, their snapshots interleave, then their results come."""
    parts: List[Dict[str, Any]] = [values({"root": 0})]
    parts += [task_start(f"t{i}", "child", (), {}) for i in range(n)]
    parts += [values({"child": i, "k": k}, (f"child:t{i}",)) for k in range(2) for i in range(n)]
    parts += [task_result(f"t{i}", "child", (), {}) for i in range(n)]
    parts.append(values({"root": 1}))
    return parts


@pytest.mark.parametrize("other_reader", ["raw", "values"])
def test_bounded_run_read_one_handle_at_a_time_does_not_stall(backend, other_reader):
    """Handles read one at a time inside the subgraphs loop while more
    siblings than ``maxlen`` are open, another consumer driving the pump:
    the handle reader's task waits for the run (for the handle's values),
    not for its next handle, so the pump goes on instead of waiting for
    room in ``subgraphs`` for good.  The siblings it reaches late miss what
    they got before it subscribed to them (as without ``maxlen``)."""
    parts = _open_siblings(3)

    async def main():
        run = astream_events(areplay(parts), maxlen=1)

        async def one_at_a_time():
            return [(h.path, await adrain(h.values)) async for h in run.subgraphs]

        other = adrain(run) if other_reader == "raw" else adrain(run.values)
        return await asyncio.gather(one_at_a_time(), other)

    handles, other = arun(main(), timeout=10.0)
    assert handles[0] == (("child:t0",), [{"child": 0, "k": 0}, {"child": 0, "k": 1}])
    assert [path for path, _ in handles] == [(f"child:t{i}",) for i in range(3)]
    if other_reader == "values":
        assert other == [{"root": 0}, {"root": 1}]
    else:  # every snapshot, and the six lifecycle events (tasks parts stay out)
        methods = [event["method"] for event in other]
        assert (methods.count("values"), methods.count("lifecycle"), len(methods)) == (8, 6, 14)


def test_bounded_run_waits_for_no_task_that_waits_on_the_pumping_one(backend):
    """A task subscribes to two lifecycle branches, then awaits a gather of
    the task that reads the handles (and drives the pump): the branches fill
    up (maxlen=1), and their reader's task can only read them once that
    gather ends, which needs the run to go on.  The pump does not wait for
    it: everything is read, every branch gets every payload."""
    parts = [values({"root": 0})]
    for i in range(3):
        parts.extend(subgraph_run("child", f"c{i}", (), [{"child": i}]))
    parts.append(values({"root": 1}))

    async def main():
        run = astream_events(areplay(parts), maxlen=1)

        async def handles():
            return [await adrain(h.values) async for h in run.subgraphs]

        branches = run.lifecycle.atee(2)
        (got,) = await asyncio.gather(handles())
        return got, [await adrain(branch) for branch in branches]

    got, branches = arun(main(), timeout=10.0)
    assert got == [[{"child": i}] for i in range(3)]
    expected = [(event, [f"child:c{i}"]) for i in range(3) for event in ("started", "completed")]
    for branch in branches:
        assert [(p["event"], p["namespace"]) for p in branch] == expected


@pytest.mark.parametrize("with_sleeper", [False, True])
@pytest.mark.parametrize(
    "group", ["TaskGroup", "wait", "anyio", "as_completed", "shield(gather)", "shield(task)"])
def test_bounded_run_handle_read_by_a_group_of_tasks(backend, group, with_sleeper):
    """Each handle's values and lifecycle read by two tasks, inside the
    loop over ``subgraphs``, while more siblings than ``maxlen`` are open:
    the loop's task waits in a task group's exit (asyncio's or anyio's, which
    Starlette uses), an ``asyncio.wait``, ``asyncio.as_completed`` or an
    ``asyncio.shield`` (of a ``gather``, or of a task that awaits one) for
    readers that wait for the run, so the pump goes on (as for a ``gather``)
    instead of waiting for room in ``subgraphs`` for good.  With a third
    task that sleeps, it waits for room until the sleep ends (at most
    ``maxlen`` handles unread then), and goes on once only readers that wait
    for the run are left."""
    if group == "TaskGroup" and not hasattr(asyncio, "TaskGroup"):
        pytest.skip("asyncio.TaskGroup is 3.11+")
    anyio = pytest.importorskip("anyio") if group == "anyio" else None  # (the test extra's)
    parts = _open_siblings(3)

    async def main():
        run = astream_events(areplay(parts), maxlen=1)
        unread = []

        async def nap():
            await asyncio.sleep(0.02)
            unread.append(len(run.subgraphs._log))  # (handles not read yet)

        async def read_group(jobs):
            if group == "anyio":
                results = {}

                async def keep(i, job):
                    results[i] = await job

                async with anyio.create_task_group() as tg:
                    for i, job in enumerate(jobs):
                        tg.start_soon(keep, i, job)
                return [results[i] for i in range(len(jobs))]
            if group == "shield(gather)":
                return await asyncio.shield(asyncio.gather(*jobs))
            if group == "shield(task)":
                async def all_of():
                    return await asyncio.gather(*jobs)

                return await asyncio.shield(all_of())
            if group == "wait":
                tasks = [asyncio.ensure_future(job) for job in jobs]
                _done, pending = await asyncio.wait(tasks)
                assert not pending
            elif group == "as_completed":
                tasks = [asyncio.ensure_future(job) for job in jobs]
                for next_done in asyncio.as_completed(tasks):
                    await next_done
            else:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(job) for job in jobs]
            return [task.result() for task in tasks]

        async def per_handle():
            got = []
            async for h in run.subgraphs:
                jobs = [adrain(h.values), adrain(h.lifecycle)]
                if with_sleeper:
                    jobs.append(nap())
                vals, lc, *_ = await read_group(jobs)
                got.append((h.path, vals, lc, h.status))
            return got

        handles, root = await asyncio.gather(per_handle(), adrain(run.values))
        return handles, root, unread

    handles, root, unread = arun(main(), timeout=10.0)
    assert [path for path, *_ in handles] == [(f"child:t{i}",) for i in range(3)]
    assert handles[0][1] == [{"child": 0, "k": 0}, {"child": 0, "k": 1}]
    assert all(lc == [] and status == "completed" for _p, _v, lc, status in handles)
    assert root == [{"root": 0}, {"root": 1}]
    if with_sleeper:
        assert unread[0] == 1 and max(unread) <= 1, unread


def test_bounded_run_gated_by_a_semaphore_stalls_with_a_warning_naming_the_wait(
        backend, caplog):
    """A loop over ``subgraphs`` that waits on a semaphore before it takes
    the next handle (each reader releases it when its handle ends) waits on
    something the pump cannot trace to the run (README, ``maxlen``): the run
    stalls.  The stall warning says where the loop waits (``Semaphore.acquire``,
    from the loop's own line), and an abort ends everything."""
    parts = _open_siblings(6)
    where: List[int] = []

    async def main():
        run = astream_events(areplay(parts), maxlen=1)
        run.stall_warning_after = 0.2
        sem = asyncio.Semaphore(2)
        readers = []

        async def read(h):
            try:
                return await adrain_outcome(h.values)
            finally:
                sem.release()

        async def gated_loop():
            try:
                async for h in run.subgraphs:
                    where.append(sys._getframe().f_lineno + 1)
                    await sem.acquire()
                    readers.append(asyncio.ensure_future(read(h)))
            except RuntimeError:  # (the abort, seen by the loop)
                pass

        looping = asyncio.ensure_future(gated_loop())
        root = asyncio.ensure_future(adrain_outcome(run.values))
        for _ in range(200):  # liveness guard: at most ~10 s
            if any("subgraphs" in r.getMessage() for r in caplog.records
                   if r.levelno >= logging.WARNING):
                break
            await asyncio.sleep(0.05)
        stalled = not root.done()
        await asyncio.wait_for(run.abort(), 5)
        await asyncio.wait_for(asyncio.gather(looping, root, *readers), 5)
        return stalled

    with caplog.at_level(logging.WARNING, logger="langstream"):
        stalled = arun(main())
    assert stalled
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    pattern = (r"room in projection 'subgraphs' \(maxlen=1\).*which awaits a Future "
               r"\(not this run\) in Semaphore\.acquire, from \S*gated_loop at "
               r"\S*test_subgraphs_async\.py:(\d+)\.")
    found = [m for m in (re.search(pattern, text) for text in messages) if m]
    assert found, messages
    assert int(found[0].group(1)) == where[-1]


def test_bounded_run_handle_read_through_wait_for_does_not_stall(backend):
    """A handle's values read through ``asyncio.wait_for`` with a timeout
    inside the loop over ``subgraphs`` (before 3.12 it waits on a future of
    its own, resolved when the wrapped task ends): the pump sees that the
    wrapped reader waits for the run and goes on; nothing times out."""
    parts = _open_siblings(3)

    async def main():
        run = astream_events(areplay(parts), maxlen=1)

        async def per_handle():
            return [(h.path, await asyncio.wait_for(adrain(h.values), timeout=30.0))
                    async for h in run.subgraphs]

        return await asyncio.gather(per_handle(), adrain(run))

    handles, raw = arun(main(), timeout=10.0)
    assert handles[0] == (("child:t0",), [{"child": 0, "k": 0}, {"child": 0, "k": 1}])
    assert [path for path, _ in handles] == [(f"child:t{i}",) for i in range(3)]
    assert [event["method"] for event in raw].count("values") == 8
