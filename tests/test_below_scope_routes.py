"""Issue 10: parts below a mux's scope take a route decided once per namespace.

A part of an open subgraph is handed, as a part, from the root mux down to
the child mux of its subtree; the protocol event is built only where a main
log has a reader, once, and shared by every mux on the way.  These tests
compare that route with the protocol-event path (the same transformers as
subclasses overriding ``process``, which the mux never routes fast) on
deep streams with failing and interrupted subgraphs, raw readers at every
depth, handles aborted midway and transformers registered mid-run.

Every test runs on both event-log backends (``backend`` fixture) and, where
a run is involved, on both lanes.
"""

from __future__ import annotations

import asyncio

import pytest

import langstream
from langstream import StreamMux, ValuesTransformer, _bench
from langstream.run_stream import AsyncGraphRunStream, GraphRunStream
from langstream.transformers import (
    CustomTransformer,
    LifecycleTransformer,
    SubgraphTransformer,
    UpdatesTransformer,
)

LANES = ["sync", "async"]

# the trackers as subclasses overriding process (never routed fast)
from test_fast_paths import _SlowLifecycle, _SlowSubgraphs  # noqa: E402


FAST = [ValuesTransformer, UpdatesTransformer, CustomTransformer, LifecycleTransformer,
        SubgraphTransformer]


class _UsersSubgraphs(SubgraphTransformer):
    """A user's subclass of the subgraph tracker (same behaviour): with it the
    pipeline is no longer langstream's own, so closing a child may await.
    It says its instances are plain, so its pipeline's routes are kept as
    recipes like the built-ins'."""

    _plain_instances = True


# FAST with a class of the user's own
GUARDED = [ValuesTransformer, UpdatesTransformer, CustomTransformer, LifecycleTransformer,
           _UsersSubgraphs]
SLOW = [ValuesTransformer, UpdatesTransformer, CustomTransformer, _SlowLifecycle,
        _SlowSubgraphs]


def _task(ns, tid, name, **end):
    data = {"id": tid, "name": name}
    if end:
        data.update({"error": None, "result": {}, "interrupts": []}, **end)
    else:
        data.update({"input": {}, "triggers": ()})
    return {"type": "tasks", "ns": ns, "data": data}


def _whole_steps(parts):
    """``parts`` up to the last root snapshot (no subgraph left open: a sync
    consumer reading a handle depth-first would otherwise read it to the
    run's end before it saw the next handles)."""
    last = max(k for k, p in enumerate(parts) if p["type"] == "values" and not p["ns"])
    return parts[: last + 1]


def _deep_parts():
    """Nested subgraphs three deep, then an inner subgraph that fails and an
    outer one that is interrupted (each a few events deep), then more steps."""
    parts = _whole_steps(_bench.agent_parts(260, depth=3))
    o = ("outer:o1",)
    i = o + ("inner:i1",)
    parts += [
        _task((), "o1", "outer"),
        {"type": "values", "ns": o, "data": {"o": 0}, "interrupts": ()},
        {"type": "custom", "ns": o, "data": "o-working"},
        _task(o, "i1", "inner"),
        {"type": "values", "ns": i, "data": {"i": 0}, "interrupts": ()},
        {"type": "updates", "ns": i, "data": {"n": {"i": 1}}},
        {"type": "custom", "ns": i, "data": "i-working"},
        {"type": "values", "ns": i, "data": {"i": 1}, "interrupts": ()},
        _task(o, "i1", "inner", error="inner broke"),
        {"type": "values", "ns": o, "data": {"o": 1}, "interrupts": ({"value": "ask"},)},
        _task((), "o1", "outer", interrupts=[{"value": "ask", "id": "q"}]),
        # a late part of the ended subgraph starts it again
        {"type": "values", "ns": o, "data": {"o": "late"}, "interrupts": ()},
    ]
    parts += _whole_steps(_bench.agent_parts(60)[1:])
    return parts


def _strip(events):
    return [(e.get("seq"), e["method"], list(e["params"]["namespace"]), e["params"]["data"],
             e["params"].get("interrupts")) for e in events]


_NAMES = ("values", "updates", "custom", "lifecycle", "subgraphs")


def _tree_sync(run, top=True):
    raw = iter(run)  # every handle's main log, read from its first event
    got = {name: [] for name in _NAMES}
    got["handles"] = got.pop("subgraphs")
    names = _NAMES if top else tuple(n for n in _NAMES if n != "lifecycle") + ("lifecycle",)
    for name, item in run.interleave(*names):
        if name == "subgraphs":
            try:
                sub = _tree_sync(item, False)
            except RuntimeError as exc:  # a failed subgraph
                sub = repr(exc)
            got["handles"].append((tuple(item.path), item.status, item.error, sub))
        else:
            got[name].append(item)
    got["raw"] = _strip(raw)
    return got


async def _tree_async(run, its=None):
    if its is None:
        its = {name: getattr(run, name).__aiter__() for name in _NAMES}
        its["raw"] = run.__aiter__()
    got = {name: [] for name in _NAMES}
    got["handles"] = got.pop("subgraphs")

    async def drain(name):
        async for item in its[name]:
            got[name].append(item)

    async def raw():
        got["raw"] = _strip([e async for e in its["raw"]])

    async def handles():
        tasks = []
        async for handle in its["subgraphs"]:
            sub = {name: getattr(handle, name).__aiter__() for name in _NAMES}
            sub["raw"] = handle.__aiter__()
            tasks.append((handle, asyncio.ensure_future(_tree_async(handle, sub))))
        for handle, task in tasks:
            try:
                tree = await task
            except RuntimeError as exc:  # a failed subgraph
                tree = repr(exc)
            got["handles"].append((tuple(handle.path), handle.status, handle.error, tree))

    await asyncio.gather(*(drain(n) for n in _NAMES if n != "subgraphs"), handles(), raw())
    return got


def _observe(parts, factories, lane):
    from helpers import areplay, arun, replay

    if lane == "sync":
        return _tree_sync(GraphRunStream(replay(parts), StreamMux(factories=factories)))
    run = AsyncGraphRunStream(areplay(parts), StreamMux(factories=factories, is_async=True))
    return arun(_tree_async(run))


@pytest.mark.parametrize("lane", LANES)
def test_parts_below_the_scope_give_what_the_event_path_gives(backend, lane):
    """Every projection and every main log at every depth (subscribed from
    the start), statuses and errors: the same as on the protocol-event path,
    event for event, seq for seq."""
    parts = _deep_parts()
    fast = _observe(parts, FAST, lane)
    slow = _observe(parts, SLOW, lane)
    assert fast == slow
    # the scenario is what it claims: nested handles, a failed and an
    # interrupted subgraph, and the late part that starts one again
    paths = [h[0] for h in fast["handles"]]
    assert paths.count(("outer:o1",)) == 2
    outer = fast["handles"][paths.index(("outer:o1",))]
    assert outer[1] == "interrupted"
    assert [(h[0], h[1], h[2], h[3]) for h in outer[3]["handles"]] == [
        (("outer:o1", "inner:i1"), "failed", "inner broke", "RuntimeError('inner broke')")]
    assert outer[3]["values"] == [{"o": 0}, {"o": 1}] and outer[3]["custom"] == ["o-working"]
    assert any(h[3]["handles"] and h[3]["handles"][0][3]["handles"] for h in fast["handles"])
    # a handle's main log holds its subtree's events, numbered by the root
    # (its own lifecycle channel's forwards are its own, without a seq)
    seqs = [e[0] for e in outer[3]["raw"] if e[1] != "lifecycle"]
    assert seqs and seqs == sorted(seqs) and all(isinstance(s, int) for s in seqs)
    assert all(e[2][:1] == ["outer:o1"] for e in outer[3]["raw"] if e[1] != "lifecycle")


@pytest.mark.parametrize("lane", LANES)
def test_an_event_built_below_is_shared_and_numbered_by_the_root(backend, lane):
    """With no reader on the root's main log, a handle's reader still gets
    events numbered by the root; with readers at both, they hold the very
    same event objects."""
    from helpers import areplay, arun, replay

    parts = _bench.agent_parts(60)

    def sync(read_root):
        run = langstream.stream_events(replay(parts))
        root_raw = iter(run) if read_root else None
        handle = next(iter(run.subgraphs))
        child = list(handle)
        return child, (list(root_raw) if read_root else [])

    async def asyn(read_root):
        run = langstream.astream_events(areplay(parts))
        root_it = run.__aiter__() if read_root else None
        handle = await run.subgraphs.__aiter__().__anext__()
        child = [e async for e in handle]
        rest = [e async for e in root_it] if read_root else []
        return child, rest

    for read_root in (False, True):
        child, root = sync(read_root) if lane == "sync" else arun(asyn(read_root))
        assert child and all(isinstance(e["seq"], int) for e in child)
        assert [e["seq"] for e in child] == sorted(e["seq"] for e in child)
        if read_root:
            by_seq = {e["seq"]: e for e in root}
            for e in child:
                assert by_seq[e["seq"]] is e


def test_a_handle_aborted_midway_gets_nothing_more_and_the_run_goes_on(backend):
    """Aborting a handle in the middle of its subgraph: the rest of that
    subgraph's parts are not forwarded to it, the run and its other
    projections carry on exactly as on the event path."""
    from helpers import replay

    parts = _bench.agent_parts(140, depth=2)

    def observe(factories):
        run = GraphRunStream(replay(parts), StreamMux(factories=factories))
        raw = iter(run)
        got = []
        for name, item in run.interleave("values", "lifecycle", "subgraphs"):
            if name != "subgraphs":
                got.append((name, item))
                continue
            values = iter(item.values)
            got.append(("first", next(values)))
            item.abort()
            got.append(("after-abort", list(values), item.status))
        return got, _strip(raw), run.output

    fast, slow = observe(FAST), observe(SLOW)
    assert fast == slow
    assert sum(1 for g in fast[0] if g[0] == "after-abort") >= 2


def _spy_class(seen):
    """A transformer class that appends every event it processes to ``seen``
    as ``(method, namespace, data)``."""
    class Spy(langstream.StreamTransformer):
        supports_sync = True

        def init(self):
            return {}

        def process(self, event):
            seen.append((event["method"], list(event["params"]["namespace"]),
                         event["params"]["data"]))
            return True

    return Spy


@pytest.mark.parametrize("lane", LANES)
def test_a_transformer_registered_on_a_handle_mid_run_sees_the_rest(backend, lane):
    """Registering a transformer on a child mux while its subgraph runs
    changes the routes below every scope: it sees each later event of the
    subtree, in order."""
    from helpers import areplay, arun, replay

    parts = _whole_steps(_bench.agent_parts(80))  # one subgraph: the 10th root step

    expected = [(p["type"], list(p["ns"]), p["data"]) for p in parts
                if len(p["ns"]) == 1]
    expected = expected[1:]  # (the input snapshot arrives before the spy)

    def sync():
        seen = []
        run = langstream.stream_events(replay(parts))
        for handle in run.subgraphs:
            values = iter(handle.values)
            next(values)
            handle._mux._register(_spy_class(seen)(tuple(handle.path)))
            list(values)
        run.output
        return seen

    async def asyn():
        seen = []
        run = langstream.astream_events(areplay(parts))
        async for handle in run.subgraphs:
            values = handle.values.__aiter__()
            await values.__anext__()
            handle._mux._register(_spy_class(seen)(tuple(handle.path)))
            async for _ in values:
                pass
        await run.output()
        return seen

    seen = sync() if lane == "sync" else arun(asyn())
    assert seen == expected and seen


def _three_deep_steps(steps):
    """Subgraphs nested three deep, ``steps`` steps of the innermost, then
    every subgraph ends (its parent's task result), innermost first."""
    a = ("sub1:a",)
    b = a + ("sub2:b",)
    c = b + ("sub3:c",)
    parts = [{"type": "values", "ns": (), "data": {"s": 0}, "interrupts": ()}]
    for ns, (parent, tid, name) in ((a, ((), "a", "sub1")), (b, (a, "b", "sub2")),
                                    (c, (b, "c", "sub3"))):
        parts += [_task(parent, tid, name),
                  {"type": "values", "ns": ns, "data": {name: 0}, "interrupts": ()}]
    for k in range(steps):
        parts += [_task(c, f"t{k}", "tool"),
                  {"type": "custom", "ns": c, "data": f"working {k}"},
                  {"type": "updates", "ns": c, "data": {"tool": {"k": k}}},
                  _task(c, f"t{k}", "tool", result={"k": k}),
                  {"type": "values", "ns": c, "data": {"k": k}, "interrupts": ()}]
    parts += [_task(b, "c", "sub3", result={}), _task(a, "b", "sub2", result={}),
              _task((), "a", "sub1", result={}),
              {"type": "values", "ns": (), "data": {"s": 1}, "interrupts": ()}]
    return parts


@pytest.mark.parametrize("lane", LANES)
def test_a_transformer_registered_above_a_deep_namespace_sees_its_later_parts(backend, lane):
    """Parts three levels deep go through the routes of every mux above
    them; registering a transformer on the outermost handle while they flow
    changes those routes: it sees every later event of its subtree, in
    order, as on the event path."""
    from helpers import areplay, arun, replay

    parts = _three_deep_steps(8)

    def sync(factories):
        seen = []
        run = GraphRunStream(replay(parts), StreamMux(factories=factories))
        outer = next(iter(run.subgraphs))
        inner = next(iter(next(iter(outer.subgraphs)).subgraphs))
        values = iter(inner.values)
        got = [next(values) for _ in range(4)]  # (its input snapshot, then 3 steps)
        outer._mux._register(_spy_class(seen)(tuple(outer.path)))
        got += list(values)
        run.output
        return got, seen

    async def asyn(factories):
        seen = []
        run = AsyncGraphRunStream(areplay(parts), StreamMux(factories=factories, is_async=True))
        outer = await run.subgraphs.__aiter__().__anext__()
        middle = await outer.subgraphs.__aiter__().__anext__()
        inner = await middle.subgraphs.__aiter__().__anext__()
        values = inner.values.__aiter__()
        got = [await values.__anext__() for _ in range(4)]
        outer._mux._register(_spy_class(seen)(tuple(outer.path)))
        got += [v async for v in values]
        await run.output()
        return got, seen

    fast = sync(FAST) if lane == "sync" else arun(asyn(FAST))
    slow = sync(SLOW) if lane == "sync" else arun(asyn(SLOW))
    assert fast == slow
    got, seen = fast
    assert got == [{"sub3": 0}] + [{"k": k} for k in range(8)]
    deep = [item for item in seen if len(item[1]) == 3]
    # every later step of the innermost subgraph, in order (the step whose
    # values was read last may have been pumped past already)
    custom = [data for method, _, data in deep if method == "custom"]
    assert custom == [f"working {k}" for k in range(8 - len(custom), 8)] and len(custom) >= 4


def test_routes_below_the_scope_are_per_namespace_and_only_for_trusted_trackers(backend):
    """White box: once a namespace is open the root routes its parts fast
    (to the child as parts); before it is discovered, or with trackers that
    override ``process``, it takes the event path."""
    ns = ("sub:t1",)
    for factories, fast in ((FAST, True), (SLOW, False)):
        mux = StreamMux(factories=factories)
        assert mux._below_route("values", ns) is None  # (it would discover it)
        mux.push_part(_task((), "t1", "sub"))
        mux.push_part({"type": "values", "ns": ns, "data": 1})
        mux._flush_deferred()
        assert (mux._below_route("values", ns) is not None) is fast
        assert (mux._below_route("custom", ns) is not None) is fast
        mux.push_part(_task((), "t1", "sub", result={"r": 1}))
        assert mux._below_route("values", ns) is None  # ended: it would start again
        mux.close()


def test_async_tasks_are_fast_unless_they_end_a_subgraph(backend):
    """On the async lane a task part takes the fast route, at the scope and
    below it, except a result that ends a subgraph whose mux may need an
    await to close (a pipeline with a class of the user's own): the guard
    sends that one to the event path before any handler runs, wherever the
    part is dispatched (a parent's route carries the guards of the routes it
    hands parts down to)."""
    from helpers import areplay, arun

    from langstream.mux import _Guards

    parts = _whole_steps(_bench.agent_parts(140, depth=2))
    mux = StreamMux(factories=GUARDED, is_async=True)
    root_route = mux._fast_route("tasks", True)
    assert root_route is not None and type(root_route[0]) is _Guards
    sub = next(p for p in parts if p["type"] == "tasks" and p["data"]["name"] == "sub1")
    tid = sub["data"]["id"]
    end = next(p for p in parts if p["type"] == "tasks" and p["data"]["id"] == tid
               and "result" in p["data"])
    child_ns = (f"sub1:{tid}",)
    inner = next(p for p in parts if p["type"] == "tasks" and p["ns"] == child_ns
                 and p["data"]["name"] == "sub2")
    inner_end = next(p for p in parts if p["type"] == "tasks" and p["ns"] == child_ns
                     and p["data"]["id"] == inner["data"]["id"] and "result" in p["data"])
    tool = next(p for p in parts if p["type"] == "tasks" and p["ns"] == child_ns
                and p["data"]["name"] == "tool")

    async def main():
        run = AsyncGraphRunStream(areplay(parts), mux)
        seen = {}

        async def child(h):
            async for g in h.subgraphs:
                # the grandchild is open: its parent's task result at the
                # child's scope ends it (guarded at the root); a tool task
                # part there goes fast
                route = mux._below_route("tasks", child_ns)
                seen["below"] = route
                seen["checks"] = (route[0].check(inner_end), route[0].check(tool))
                await g.output()
            await h.output()

        async def handles():
            first = True
            async for h in run.subgraphs:
                if first:
                    seen["root"] = root_route[0].check(end)
                    await child(h)
                    first = False
                else:
                    await h.output()

        await asyncio.gather(handles(), run.output())
        return seen

    seen = arun(main())
    assert seen["root"] is True
    assert seen["below"] is not None and type(seen["below"][0]) is _Guards
    assert seen["checks"] == (True, False)
    assert not root_route[0].check(end)  # (ended: nothing left to close)


def test_async_own_pipeline_ends_subgraphs_on_the_fast_route(backend):
    """With langstream's own transformers, closing a child awaits nothing, so
    on the async lane a task result that ends a subgraph takes the fast route
    like any task part (no guard), and the run is the same as with a guarded
    pipeline: raw log, values, lifecycle, and every handle's values and
    status at every depth, failed subgraphs included."""
    from helpers import arun

    parts = _bench.agent_parts(300, depth=3)
    # a subgraph that fails: its parent's task result carries the error
    failed = next(p for p in parts if p["type"] == "tasks" and p["ns"]
                  and "result" in p["data"] and p["data"]["name"].startswith("sub"))
    failed["data"] = dict(failed["data"], error="boom", result=None)

    async def observe(factories):
        mux = StreamMux(factories=factories, is_async=True)
        tasks_route = mux._fast_route("tasks", True)
        run = AsyncGraphRunStream(_bench.aproducer(parts), mux)

        async def drain(it):
            out = []
            try:
                async for x in it:
                    out.append(x)
            except RuntimeError as exc:  # (a failed subgraph's projections)
                out.append(f"error: {exc}")
            return out

        async def tree(subgraphs):
            out = []
            try:
                async for h in subgraphs:
                    vals, kids = await asyncio.gather(drain(h.values), tree(h.subgraphs))
                    out.append((h.path, vals, kids, h.status, h.error))
            except RuntimeError as exc:  # (a failed subgraph's projections)
                out.append(f"error: {exc}")
            return out

        raw, values, lifecycle, handles = await asyncio.gather(
            drain(run), drain(run.values), drain(run.lifecycle), tree(run.subgraphs))
        raw = [(e["seq"], e["method"], e["params"]["namespace"], e["params"]["data"])
               for e in raw]
        return tasks_route, (raw, values, lifecycle, handles, await run.output())

    own_route, own = arun(observe(FAST))
    guarded_route, guarded = arun(observe(GUARDED))
    from langstream.mux import _Guards
    assert own_route is not None and not any(type(op) is _Guards for op in own_route)
    assert guarded_route is not None and type(guarded_route[0]) is _Guards
    assert own == guarded
    statuses = []

    def walk(handles):
        for handle in handles:
            if isinstance(handle, tuple):
                statuses.append(handle[3])
                walk(handle[2])

    walk(own[3])
    assert "failed" in statuses and "completed" in statuses


def test_route_shapes_are_shared_but_never_keep_a_transformer_alive(backend):
    """Child muxes of one pipeline reuse the positions its routers pick
    (computed once per pipeline shape); a router bound to an instance is
    used for its own mux only and not kept by that cache."""
    import gc
    import weakref

    class Picky(langstream.StreamTransformer):
        supports_sync = True

        def __init__(self, scope=()):
            super().__init__(scope)
            self.seen = []
            # an instance's own routing (not the class's), which refers to
            # the instance: wants custom only
            self.wanted = "custom"
            self._routing = lambda: (lambda method, at_scope: method == self.wanted)

        def init(self):
            return {}

        def process(self, event):
            self.seen.append(event["method"])
            return True

    picky = Picky()
    mux = StreamMux(factories=FAST, transformers=[picky])
    for part in ({"type": "values", "ns": (), "data": 1},
                 {"type": "custom", "ns": (), "data": 2},
                 {"type": "updates", "ns": (), "data": 3}):
        mux.push_part(part)
    assert picky.seen == ["custom"]
    child_a = mux._make_child(("a:1",))
    child_b = mux._make_child(("b:2",))
    for child in (child_a, child_b):
        assert [type(t) for t in child._route("values", True)] == [ValuesTransformer]
    assert child_a._route("values", True)[0] is not child_b._route("values", True)[0]
    mux.close()
    ref = weakref.ref(picky)
    del picky, mux, child_a, child_b
    gc.collect()
    assert ref() is None


def _tool_call_parts():
    """Agents calling tools that run subagents, two levels deep: task starts
    whose input names a tool call (one as a dict, one as a list of calls),
    subagents named by ``lc_agent_name``, results that end tasks while tool
    calls are pending, and plain task starts and results in between."""
    def start(ns, tid, name, payload=None, agent=None):
        data = {"id": tid, "name": name, "input": payload if payload is not None else {},
                "triggers": ()}
        if agent is not None:
            data["metadata"] = {"lc_agent_name": agent}
        return {"type": "tasks", "ns": ns, "data": data}

    a = ("tools:p1",)
    b = a + ("tools:q1",)
    c = ("tools:p2",)
    return [
        {"type": "values", "ns": (), "data": {"s": 0}, "interrupts": ()},
        start((), "m1", "model"),
        _task((), "m1", "model"),
        start((), "p1", "tools", {"tool_call": {"id": "call_1", "name": "research"}}),
        start(a, "r1", "model", agent="researcher"),
        {"type": "values", "ns": a, "data": {"a": 0}, "interrupts": ()},
        _task(a, "r1", "model"),
        start(a, "q1", "tools", [{"id": "call_2", "name": "lookup"}, {"id": "call_3"}]),
        start(b, "h1", "model", agent="helper"),
        {"type": "custom", "ns": b, "data": "h-working"},
        _task(b, "h1", "model"),
        start(a, "plain", "model"),
        _task(a, "plain", "model"),
        _task(a, "q1", "tools"),
        {"type": "values", "ns": a, "data": {"a": 1}, "interrupts": ()},
        _task((), "p1", "tools"),
        start((), "p2", "tools", {"tool_call": {"id": "call_4", "name": "research"}}),
        start((), "p3", "tools", {"tool_call": {"id": "call_5", "name": "unused"}}),
        start(c, "r2", "model", agent="researcher"),
        _task(c, "r2", "model", error="tool broke"),
        _task((), "p3", "tools"),
        _task((), "p2", "tools"),
        {"type": "values", "ns": (), "data": {"s": 1}, "interrupts": ()},
    ]


@pytest.mark.parametrize("lane", LANES)
def test_tool_call_causes_on_the_fast_route_match_the_event_path(backend, lane):
    """The trackers' ``tasks`` handlers skip the parts that change nothing
    they keep; subagents started by tool calls at every depth still name
    the tool call, exactly as on the event path."""
    parts = _tool_call_parts()
    fast = _observe(parts, FAST, lane)
    slow = _observe(parts, SLOW, lane)
    assert fast == slow
    causes = [(tuple(p["namespace"]), p.get("cause"), p.get("graph_name"))
              for p in fast["lifecycle"] if p["event"] == "started"]
    assert causes == [
        (("tools:p1",), {"type": "toolCall", "tool_call_id": "call_1"}, "researcher"),
        (("tools:p1", "tools:q1"), {"type": "toolCall", "tool_call_id": "call_2"}, "helper"),
        (("tools:p2",), {"type": "toolCall", "tool_call_id": "call_4"}, "researcher"),
    ]
    nested = fast["handles"][0][3]["lifecycle"]
    assert [(p["event"], p.get("cause")) for p in nested if p["event"] == "started"] == [
        ("started", {"type": "toolCall", "tool_call_id": "call_2"})]


def _reused_task_id_parts():
    """A task id reused at two depths: inside a subgraph, a task with the id
    of the task that runs that subgraph in its parent, started and ended
    there while the subgraph stays open; results at every depth while
    subgraphs wait and a tool call is pending; then the real results."""
    o = ("outer:a1",)
    i = o + ("inner:t1",)
    x = i + ("agent:t2",)
    tool = {"type": "tasks", "ns": i, "data": {
        "id": "t2", "name": "tools", "input": {"tool_call": {"id": "call_7", "name": "ask"}},
        "triggers": ()}}
    return [
        {"type": "values", "ns": (), "data": {"s": 0}, "interrupts": ()},
        _task((), "a1", "outer"),
        {"type": "values", "ns": o, "data": {"o": 0}, "interrupts": ()},
        _task(o, "t1", "inner"),
        {"type": "values", "ns": i, "data": {"i": 0}, "interrupts": ()},
        # the decoys: same ids as the tasks that run ``inner`` and ``outer``,
        # one level down; they end nothing
        _task(i, "t1", "step"),
        _task(i, "t1", "step", result={"decoy": 1}),
        _task(o, "a1", "step"),
        _task(o, "a1", "step", result={"decoy": 2}),
        {"type": "values", "ns": i, "data": {"i": 1}, "interrupts": ()},
        tool,
        {"type": "tasks", "ns": x, "data": {"id": "x1", "name": "model", "input": {},
                                            "triggers": (), "metadata": {"lc_agent_name": "asker"}}},
        {"type": "values", "ns": x, "data": {"x": 0}, "interrupts": ()},
        _task(x, "t2", "step"),
        _task(x, "t2", "step", result={"decoy": 3}),  # (the tool task's id, one level up)
        {"type": "custom", "ns": x, "data": "x-working"},
        _task(i, "t2", "tools", result={"tool": "done"}),  # ends ``agent``
        {"type": "values", "ns": i, "data": {"i": 2}, "interrupts": ()},
        _task(o, "t1", "inner", result={"i": 2}),
        {"type": "values", "ns": o, "data": {"o": 1}, "interrupts": ()},
        _task((), "a1", "outer"),
        {"type": "values", "ns": (), "data": {"s": 1}, "interrupts": ()},
    ]


@pytest.mark.parametrize("lane", LANES)
def test_a_result_ends_only_the_subgraph_its_own_namespace_waits_for(backend, lane):
    """The trackers skip a task result that ends nothing they keep, at every
    depth: a result at a subgraph's namespace whose id is that of the task
    that runs the subgraph, one level up, ends nothing; the result at the
    parent's namespace ends it.  As on the event path."""
    parts = _reused_task_id_parts()
    fast = _observe(parts, FAST, lane)
    slow = _observe(parts, SLOW, lane)
    assert fast == slow
    ends = [(tuple(p["namespace"]), p["event"]) for p in fast["lifecycle"]
            if p["event"] != "started"]
    assert ends == [
        (("outer:a1", "inner:t1", "agent:t2"), "completed"),
        (("outer:a1", "inner:t1"), "completed"),
        (("outer:a1",), "completed"),
    ]
    # no namespace was started twice: the decoys ended none
    starts = [tuple(p["namespace"]) for p in fast["lifecycle"] if p["event"] == "started"]
    assert len(starts) == len(set(starts)) == 3
    outer = fast["handles"][0][3]
    inner = outer["handles"][0]
    assert inner[:3] == (("outer:a1", "inner:t1"), "completed", None)
    assert inner[3]["values"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    agent_starts = [p for p in outer["lifecycle"] if p["event"] == "started"
                    and p["namespace"][-1] == "agent:t2"]
    assert agent_starts[0]["cause"] == {"type": "toolCall", "tool_call_id": "call_7"}


def _interleaved_parts():
    """Two sibling subgraphs open at once, each with a child of its own,
    their parts interleaved; one child ends while everything else goes on,
    then its parent ends while that parent's other child is still open; late
    parts of both ended namespaces start them again, while the sibling's
    subtree keeps receiving parts throughout, then ends."""
    a = ("a:ta",)
    b = ("b:tb",)
    ax, ay, by = a + ("x:tx",), a + ("y:ty",), b + ("y:ty2",)

    def v(ns, value):
        return {"type": "values", "ns": ns, "data": {"v": value}, "interrupts": ()}

    def c(ns, value):
        return {"type": "custom", "ns": ns, "data": value}

    return [
        v((), 0),
        _task((), "ta", "a"), _task((), "tb", "b"),
        v(a, "a0"), v(b, "b0"),
        _task(a, "tx", "x"), _task(a, "ty", "y"), _task(b, "ty2", "y"),
        v(ax, "ax0"), v(ay, "ay0"), v(by, "by0"), c(ax, "ax-c"), c(by, "by-c"),
        v(a, "a1"), v(b, "b1"), v(ax, "ax1"), v(by, "by1"),
        _task(a, "tx", "x", result={"r": "x"}),  # a child ends ...
        v(ay, "ay1"), v(by, "by2"), c(b, "b-c"), v(a, "a2"),  # ... the rest goes on
        v(ax, "ax-late"),  # a late part of the ended child starts it again
        c(ay, "ay-c"), v(by, "by3"),
        _task((), "ta", "a", result={"r": "a"}),  # a parent ends, a child still open
        v(b, "b2"), v(by, "by4"), c(by, "by-c2"),
        v(ay, "ay-late"), v(a, "a-late"),  # late parts under the ended parent
        v(by, "by5"),
        _task(b, "ty2", "y", result={"r": "y"}),
        v(b, "b3"),
        _task((), "tb", "b", result={"r": "b"}),
        v((), 1),
    ]


@pytest.mark.parametrize("lane", LANES)
def test_an_ending_namespace_leaves_the_routes_of_the_others_as_they_were(backend, lane):
    """Routes kept below a scope are dropped for the subtree of a namespace
    that ends, not for its siblings: interleaved open subgraphs at two
    depths, ends in the middle of them and late parts that start ended ones
    again give what the protocol-event path gives, at every depth."""
    parts = _interleaved_parts()
    fast = _observe(parts, FAST, lane)
    slow = _observe(parts, SLOW, lane)
    assert fast == slow
    root_values = [p["data"] for p in parts if p["type"] == "values" and not p["ns"]]
    assert fast["values"] == root_values
    paths = [h[0] for h in fast["handles"]]
    # ``a`` ended and started again; ``b`` ran throughout
    assert paths.count(("a:ta",)) == 2 and paths.count(("b:tb",)) == 1
    b_handle = fast["handles"][paths.index(("b:tb",))]
    assert b_handle[1] == "completed"
    if lane == "async":  # (a sync consumer reads handles depth-first)
        b_tree = b_handle[3]
        assert b_tree["values"] == [{"v": x} for x in ("b0", "b1", "b2", "b3")]
        by_tree = b_tree["handles"][0][3]
        assert by_tree["values"] == [{"v": f"by{k}"} for k in range(6)]
        assert by_tree["custom"] == ["by-c", "by-c2"]


def test_a_route_kept_for_a_sibling_survives_an_end_and_a_restart_is_rediscovered(backend):
    """White box: after a namespace ends, its sibling's kept route is still
    the one kept (not recomputed), and the ended one would be discovered
    again (its route is not kept)."""
    a, b = ("a:ta",), ("b:tb",)
    mux = StreamMux(factories=FAST)
    for part in (_task((), "ta", "a"), _task((), "tb", "b"),
                 {"type": "values", "ns": a, "data": 1},
                 {"type": "values", "ns": b, "data": 1}):
        mux.push_part(part)
        mux._flush_deferred()
    kept_a = mux._below_route("values", a)
    kept_b = mux._below_route("values", b)
    assert kept_a is not None and kept_b is not None
    mux.push_part(_task((), "ta", "a", result={}))
    assert mux._below_route("values", a) is None  # (it would start ``a`` again)
    assert mux._below_route("values", b) is kept_b
    mux.close()


def test_the_dispatchers_route_below_the_scope_is_kept_once(backend):
    """White box: a run's part dispatcher keeps one route per open
    namespace and method.  The compiled one (C log) keeps it compiled and
    the mux keeps no second copy to drop when the namespace ends; the pure
    one is the mux's own, which keeps it."""
    from langstream import run_stream

    ns = ("sub:t1",)
    mux = StreamMux(factories=FAST)
    compiled = run_stream._compiled_pump_fits(mux)
    assert compiled is (backend == "c")
    dispatch = run_stream._PartDispatcher(mux).dispatch if compiled else mux._push_part_fast
    for part in (_task((), "t1", "sub"), {"type": "values", "ns": ns, "data": 1},
                 {"type": "custom", "ns": ns, "data": 2}, {"type": "custom", "ns": ns, "data": 3}):
        route = dispatch(part)
        if route is not None:  # (the discovering snapshot: the event path)
            mux._dispatch(*route)
        mux._flush_deferred()
    kept = mux._below.get("custom", {})
    if compiled:
        assert ns not in kept
    else:
        assert kept.get(ns) is not None and mux._below_route("custom", ns) is kept[ns]
    mux.close()


@pytest.mark.parametrize("first", LANES)
def test_child_routes_are_the_same_whichever_lane_made_them_first(backend, first):
    """A child mux binds its routes at its scope from what the first child
    of the same pipeline found (per lane: on the async lane a task result
    that ends a subgraph is guarded); running one lane first changes
    nothing the other lane gives."""
    from langstream import mux as mux_mod

    parts = _deep_parts()
    order = LANES if first == "sync" else LANES[::-1]
    mux_mod._RECIPES.clear()
    warm = {lane: _observe(parts, GUARDED, lane) for lane in order}
    for lane in LANES:
        mux_mod._RECIPES.clear()
        assert _observe(parts, GUARDED, lane) == warm[lane]
    assert any(key[0][0] is True for key in mux_mod._RECIPES)  # (the async lane's own)

    # white box: a route bound from a recipe is the one the child would find
    def shape(route):
        if route is None:
            return None
        out = []
        for op in route:
            checks = getattr(op, "checks", None)
            if checks is not None:
                out.append(("guards", [(c.__func__, type(c.__self__)) for c in checks]))
            else:
                out.append((op.__func__, type(op.__self__)))
        return out

    def routes(is_async, factories):
        root = StreamMux(factories=factories, is_async=is_async)
        child = root._make_child(("sub:1",))
        return {m: shape(child._fast_route(m, True))
                for m in ("values", "tasks", "custom", "updates", "debug")}

    for lanes in (LANES, LANES[::-1]):
        for factories in (GUARDED, FAST):
            mux_mod._RECIPES.clear()
            bound = {lane: (routes(lane == "async", factories), routes(lane == "async", factories))
                     for lane in lanes}
            for lane in LANES:
                made, from_recipe = bound[lane]
                assert made == from_recipe
            if factories is GUARDED:
                assert bound["sync"][0]["tasks"] != bound["async"][0]["tasks"]
            else:  # (langstream's own: closing a child awaits nothing)
                assert bound["sync"][0]["tasks"] == bound["async"][0]["tasks"]


def test_what_an_end_makes_stale(backend):
    """White box (``_Shared.changed`` / ``_forget_stale``): an end drops the
    kept routes of its subtree only, on a mux whose scope holds it; an end
    elsewhere leaves a mux's routes alone, an end above its scope drops them
    all; a registration (None) drops everything; the same end told again
    with no route kept since is one change; a mux that missed more changes
    than are kept drops everything."""
    from langstream.mux import _CHANGES_KEPT, _forget_stale, _Shared

    def kept():
        return {"values": {("a:1",): 1, ("a:1", "x:1"): 2, ("b:1",): 3, ("ab:1",): 4},
                "tasks": {("a:1",): 5, ("b:1", "a:1"): 6}}

    shared = _Shared()
    routes = kept()
    since = shared.epoch
    shared.changed(("a:1",))
    shared.changed(("a:1",))  # (another tracker ending the same namespace)
    assert len(shared.changes) == 1
    _forget_stale(routes, shared, since, ())
    assert routes == {"values": {("b:1",): 3, ("ab:1",): 4}, "tasks": {("b:1", "a:1"): 6}}

    shared.kept = True  # (a route was kept in between: the end counts again)
    shared.changed(("a:1",))
    assert len(shared.changes) == 2

    # a child mux's view: its scope's subtree only
    since = shared.epoch
    shared.changed(("c:1",))
    child = {"values": {("b:1", "y:1"): 1}}
    _forget_stale(child, shared, since, ("b:1",))
    assert child == {"values": {("b:1", "y:1"): 1}}  # (another subtree)
    shared.changed(("b:1",))
    _forget_stale(child, shared, since, ("b:1",))
    assert child == {}  # (its own namespace ended)

    routes = kept()
    since = shared.epoch
    shared.changed(None)
    _forget_stale(routes, shared, since, ())
    assert routes == {}

    routes = kept()
    since = shared.epoch
    for k in range(_CHANGES_KEPT + 1):
        shared.changed((f"z:{k}",))
    _forget_stale(routes, shared, since, ())
    assert routes == {}


@pytest.mark.parametrize("lane", LANES)
def test_a_route_made_on_an_ended_mux_is_not_the_pipelines_recipe(backend, lane):
    """An ended mux's subgraph tracker has let go of it, so its ``tasks``
    route is the event path; that must not become what the next child muxes
    of the same pipeline bind."""
    from langstream import mux as mux_mod

    is_async = lane == "async"
    mux_mod._RECIPES.clear()
    ended = StreamMux(factories=FAST, is_async=is_async)
    if is_async:
        from helpers import arun

        arun(ended.aclose())
    else:
        ended.close()
    assert ended._fast_route("tasks", True) is None
    root = StreamMux(factories=FAST, is_async=is_async)
    child = root._make_child(("sub:1",))
    assert child._fast_route("tasks", True) is not None


def _random_tree_parts(actions):
    """A stream built from ``actions`` (pairs of small ints): subgraphs
    started under the root or under an open one (up to three deep), events
    at open ones, ends (completed or failed), and late events at ended ones,
    interleaved in any order; root snapshots around it."""
    parts = [{"type": "values", "ns": (), "data": {"root": 0}, "interrupts": ()}]
    open_ns = [()]  # (the root: a parent for new subgraphs)
    ended = []
    count = 0
    for kind, pick in actions:
        count += 1
        if kind == 0 and open_ns:  # start a subgraph under an open namespace
            parent = open_ns[pick % len(open_ns)]
            if len(parent) < 3:
                tid = f"t{count}"
                parts.append(_task(parent, tid, "g"))
                ns = parent + (f"g:{tid}",)
                # (its first event discovers it; the next ones take routes)
                parts.append({"type": "values", "ns": ns, "data": {"in": count},
                              "interrupts": ()})
                open_ns.append(ns)
        elif kind in (1, 2) and len(open_ns) > 1:  # an event at an open subgraph
            ns = open_ns[1 + pick % (len(open_ns) - 1)]
            if kind == 1:
                parts.append({"type": "values", "ns": ns, "data": {"n": count},
                              "interrupts": ()})
            else:
                parts.append({"type": "custom", "ns": ns, "data": count})
        elif kind == 3 and len(open_ns) > 1:  # a subgraph ends
            ns = open_ns.pop(1 + pick % (len(open_ns) - 1))
            tid = ns[-1].split(":")[1]
            end = {"result": {"r": count}} if pick % 3 else {"error": f"e{count}"}
            parts.append(_task(ns[:-1], tid, "g", **end))
            ended.append(ns)
        elif kind == 4 and ended:  # a late event at an ended one
            ns = ended[pick % len(ended)]
            parts.append({"type": "values", "ns": ns, "data": {"late": count},
                          "interrupts": ()})
        elif kind == 5:
            parts.append({"type": "values", "ns": (), "data": {"root": count},
                          "interrupts": ()})
    parts.append({"type": "values", "ns": (), "data": {"root": "end"}, "interrupts": ()})
    return parts


@pytest.mark.parametrize("lane", LANES)
def test_random_trees_route_as_the_event_path_does(backend, lane):
    """Property: on any interleaving of subgraph starts, events, ends and
    late events up to three deep, the fast routes (kept per namespace,
    dropped per ended subtree, bound from recipes) give what the
    protocol-event path gives, at every depth."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from langstream import mux as mux_mod

    action = st.tuples(st.integers(0, 5), st.integers(0, 11))

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(action, min_size=1, max_size=40), st.booleans())
    # a child's events after its parent ended (they start the parent again)
    @example([(0, 0), (0, 1), (1, 1), (1, 2), (3, 0), (1, 1), (1, 1)], False)
    # a late event after a subgraph's own end, its sibling going on
    @example([(0, 0), (0, 0), (1, 0), (1, 1), (3, 1), (1, 1), (4, 0), (2, 0)], False)
    def check(actions, cold):
        if cold:
            mux_mod._RECIPES.clear()
        parts = _random_tree_parts(actions)
        assert _observe(parts, FAST, lane) == _observe(parts, SLOW, lane)

    check()
