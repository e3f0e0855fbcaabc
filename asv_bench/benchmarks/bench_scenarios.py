"""The stream scenarios of ``python -m langstream bench`` (issue 10), in asv.

S values at the root (consumer on ``run.values``), R the raw main log, M a
mixed agent stream with subgraphs (values + lifecycle + every handle's
values), D subgraphs five levels deep, C many concurrent runs on one event
loop.  The inputs, consumers and contenders are those of
``langstream._bench`` (one definition for both tools): the parts are
prebuilt and handed over as fresh shallow copies; LangGraph runs the same
pipeline as langstream (values, lifecycle, subgraphs).

Each measured thing has a ``time_`` benchmark and a ``track_`` figure in ns
per part (best of three, so asv's statistics on ``time_`` and the readable
unit sit side by side), plus ``peakmem_`` for memory.
"""

from __future__ import annotations

import asyncio
import itertools
import platform
from typing import Any, Callable, Dict, List, Tuple

from ._common import BACKENDS, SCENARIO_WARMUP_TIME, SMOKE, best_of, load_backend, scale

N = scale(10_000)
C_RUNS = 20 if SMOKE else 200  # scenario C: runs of C_PARTS parts, all on one event loop
C_PARTS = 100
SINGLE = ["S", "R", "M", "D"]
LANES = ["sync", "async"]


def _bench_module() -> Any:
    try:
        from langstream import _bench
    except ImportError as exc:  # an older commit without the scenarios
        raise NotImplementedError(f"langstream._bench has no scenarios here: {exc}") from None
    if not hasattr(_bench, "SCENARIOS"):
        raise NotImplementedError("langstream._bench has no scenarios at this commit")
    return _bench


class _Base:
    """Builds one contender of one scenario; ``_once()`` runs it and returns seconds."""

    warmup_time = SCENARIO_WARMUP_TIME  # (long enough for PyPy's JIT to settle)

    fn: Callable[[List[Any], int], Any]
    parts: List[Any]
    runs: int
    lane: str

    def _prepare(self, key: str, scenario: Any, lane: str, backend: str = "") -> None:
        bench = _bench_module()
        scen = bench.SCENARIOS[scenario] if isinstance(scenario, str) else scenario
        if lane not in scen.lanes:
            raise NotImplementedError(f"scenario {scenario} has no {lane} lane")
        backends: Dict[str, Any] = {backend: load_backend(backend)} if backend else {}
        lg = None
        if key == bench.LG:
            lg = bench._langgraph()
            if lg is None:
                raise NotImplementedError("langgraph is not installed")
        factory = bench.sync_contender if lane == "sync" else bench.async_contender
        self.fn = factory(key, scen, backends, lg)
        if scen.concurrent:
            self.parts, self.runs = scen.build(C_PARTS), C_RUNS
        else:
            self.parts, self.runs = scen.build(N), 1
        self.lane = lane
        self.loop = asyncio.new_event_loop() if lane == "async" else None

    def teardown(self, *args: Any) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.close()
            self.loop = None

    def _once(self) -> Tuple[float, int]:
        if self.loop is not None:
            elapsed, items = self.loop.run_until_complete(self.fn(self.parts, self.runs))
        else:
            elapsed, items = self.fn(self.parts, self.runs)
        return elapsed / 1e9, items

    def _ns_per_part(self) -> float:
        total = len(self.parts) * self.runs
        return best_of(lambda: self._once()) / total * 1e9


class Scenarios(_Base):
    """langstream on both backends: S, R, M, D on both lanes, C (async)."""

    params = [SINGLE + ["C"], LANES, BACKENDS]
    param_names = ["scenario", "lane", "backend"]

    def setup(self, scenario: str, lane: str, backend: str) -> None:
        key = "langstream-c" if backend == "c" else "langstream-python"
        self._prepare(key, scenario, lane, backend)

    def time_run(self, scenario: str, lane: str, backend: str) -> None:
        self._once()

    def peakmem_run(self, scenario: str, lane: str, backend: str) -> None:
        self._once()

    def track_ns_per_part(self, scenario: str, lane: str, backend: str) -> float:
        return self._ns_per_part()

    track_ns_per_part.unit = "ns/part"  # type: ignore[attr-defined]


class ScenariosFloor(_Base):
    """The floor: the same prebuilt parts, fresh shallow copies, iterated directly."""

    params = [SINGLE + ["C"], LANES]
    param_names = ["scenario", "lane"]

    def setup(self, scenario: str, lane: str) -> None:
        self._prepare("bare", scenario, lane)

    def time_bare(self, scenario: str, lane: str) -> None:
        self._once()

    def track_bare_ns_per_part(self, scenario: str, lane: str) -> float:
        return self._ns_per_part()

    track_bare_ns_per_part.unit = "ns/part"  # type: ignore[attr-defined]


class ScenariosLangGraph(_Base):
    """LangGraph 1.2 with the same pipeline (values, lifecycle, subgraphs), same producer."""

    params = [SINGLE + ["C"], LANES]
    param_names = ["scenario", "lane"]
    timeout = 300

    def setup(self, scenario: str, lane: str) -> None:
        self._prepare("langgraph", scenario, lane)

    def time_langgraph(self, scenario: str, lane: str) -> None:
        self._once()

    def peakmem_langgraph(self, scenario: str, lane: str) -> None:
        self._once()

    def track_langgraph_ns_per_part(self, scenario: str, lane: str) -> float:
        return self._ns_per_part()

    track_langgraph_ns_per_part.unit = "ns/part"  # type: ignore[attr-defined]


class ScenariosRatios:
    """The issue's ratios measured side by side: LangGraph / langstream (c) and
    langstream (c) / bare generator (same pipeline, same producer)."""

    params = [SINGLE + ["C"], LANES]
    param_names = ["scenario", "lane"]
    timeout = 300

    def setup(self, scenario: str, lane: str) -> None:
        self.ls, self.bare, self.lg = Scenarios(), ScenariosFloor(), ScenariosLangGraph()
        self.ls.setup(scenario, lane, "c")
        self.bare.setup(scenario, lane)
        try:
            self.lg.setup(scenario, lane)
        except NotImplementedError:
            self.lg = None  # type: ignore[assignment]

    def teardown(self, scenario: str, lane: str) -> None:
        for b in (getattr(self, "ls", None), getattr(self, "bare", None), getattr(self, "lg", None)):
            if b is not None:
                b.teardown()

    def track_langgraph_over_langstream(self, scenario: str, lane: str) -> float:
        if self.lg is None:
            raise NotImplementedError("langgraph is not installed")
        return self.lg._ns_per_part() / self.ls._ns_per_part()

    track_langgraph_over_langstream.unit = "x"  # type: ignore[attr-defined]

    def track_langstream_over_bare(self, scenario: str, lane: str) -> float:
        return self.ls._ns_per_part() / self.bare._ns_per_part()

    track_langstream_over_bare.unit = "x"  # type: ignore[attr-defined]


def _depth_parts(depth: int, n: int) -> List[Any]:
    return _bench_module().agent_parts(n, depth=depth)


class CostPerNestingLevel:
    """Scenario D's consumer on agent streams whose subgraphs nest ``depth``
    levels (sync, C backend when compiled): ns per part as depth grows."""

    params = [[1, 2, 3, 4, 5]]
    param_names = ["depth"]

    def setup(self, depth: int) -> None:
        bench = _bench_module()
        backend = "c" if "c" in bench.available_backends() else "python"
        key = "langstream-c" if backend == "c" else "langstream-python"
        self.fn = bench.sync_contender(key, bench.SCENARIOS["D"],
                                       {backend: load_backend(backend)}, None)
        self.parts = _depth_parts(depth, N)

    def time_depth(self, depth: int) -> None:
        self.fn(self.parts, 1)

    def track_depth_ns_per_part(self, depth: int) -> float:
        return best_of(lambda: self.fn(self.parts, 1)) / len(self.parts) * 1e9

    track_depth_ns_per_part.unit = "ns/part"  # type: ignore[attr-defined]


class CostPerReader:
    """Scenario M's parts (sync) with 0..3 extra readers besides ``run.values``:
    the raw main log, ``lifecycle``, ``subgraphs`` (and each handle's values)."""

    params = [[0, 1, 2, 3]]
    param_names = ["extra_readers"]

    def setup(self, extra_readers: int) -> None:
        bench = _bench_module()
        backend = "c" if "c" in bench.available_backends() else "python"
        self.switch_module = load_backend(backend)
        self.bench = bench
        self.parts = bench.agent_parts(N)
        self.extra = extra_readers

    def _once(self) -> None:
        bench = self.bench
        from langstream.run_stream import stream_events

        names = ["values", "lifecycle", "subgraphs"][: 1 + max(0, self.extra - 1)]
        with bench.use_backend(self.switch_module):
            run = stream_events(bench.producer(self.parts))
            raw = iter(run) if self.extra >= 1 else None
            for name, item in run.interleave(*names):
                if name == "subgraphs":
                    for _v in item.values:
                        pass
                if raw is not None:
                    for _e in raw:
                        break
            if raw is not None:
                for _e in raw:
                    pass

    def time_readers(self, extra_readers: int) -> None:
        self._once()

    def track_readers_ns_per_part(self, extra_readers: int) -> float:
        return best_of(self._once) / len(self.parts) * 1e9

    track_readers_ns_per_part.unit = "ns/part"  # type: ignore[attr-defined]


SUBGRAPH_CALLS = scale(2_000)


def _subgraph_calls(calls: int) -> List[Any]:
    """An input snapshot, then ``calls`` root steps that each call a subgraph
    of one step: ten parts a call (the task's start, then inside the
    subgraph its input snapshot and one step's five parts, then the task's
    result, ``updates`` and ``values`` at the root).  The step's ``tasks``
    part is what LangGraph discovers a subgraph by."""
    parts = _bench_module().iter_agent_parts(depth=1, sub_every=1, sub_steps=1)
    return list(itertools.islice(parts, 1 + 10 * calls))


class CostPerSubgraph(_Base):
    """The fixed cost of one subgraph, in us: its discovery, child mux and
    handle, the routes of its namespace, its end and teardown, with
    scenario M's consumer (values + lifecycle + the handle's values), for
    langstream on both backends and LangGraph on the same pipeline.  Most
    of M's and D's cost per part is this, spread over the parts of each
    subgraph."""

    params = [LANES, ["langstream-c", "langstream-python", "langgraph"]]
    param_names = ["lane", "contender"]

    def setup(self, lane: str, contender: str) -> None:
        backend = {"langstream-c": "c", "langstream-python": "python"}.get(contender, "")
        self._prepare(contender, "M", lane, backend)
        self.parts = _subgraph_calls(SUBGRAPH_CALLS)

    def time_subgraphs(self, lane: str, contender: str) -> None:
        self._once()

    def track_us_per_subgraph(self, lane: str, contender: str) -> float:
        return best_of(self._once) / SUBGRAPH_CALLS * 1e6

    track_us_per_subgraph.unit = "us/subgraph"  # type: ignore[attr-defined]


class CostPerUnreadSubgraph(CostPerSubgraph):
    """``CostPerSubgraph`` with a consumer that reads the run's values and
    lifecycle but no handle (``subgraphs`` unread, as a UI that shows the
    root's state does): langstream then builds no child mux, LangGraph
    builds its handles all the same.  In us per subgraph."""

    def setup(self, lane: str, contender: str) -> None:
        bench = _bench_module()
        backend = {"langstream-c": "c", "langstream-python": "python"}.get(contender, "")
        root_only = bench.Scenario("M-root", "M's stream, values + lifecycle, no handle",
                                   bench.agent_parts, bench.consume_root, bench.aconsume_root)
        self._prepare(contender, root_only, lane, backend)
        self.parts = _subgraph_calls(SUBGRAPH_CALLS)


class IdleRun:
    """What one idle open run holds (async; values, lifecycle, subgraphs and
    the raw log subscribed, nothing pulled): traced bytes and the objects
    the collector tracks, per run (CPython only).  Scenario C's collector
    time grows with the second: each full pass walks them in every live
    run."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        if platform.python_implementation() != "CPython":
            raise NotImplementedError("tracemalloc and gc.get_objects need CPython")
        self.backends = {backend: load_backend(backend)}

    def _per_run(self, function: str) -> float:
        bench = _bench_module()
        if not hasattr(bench, function):  # (an older commit)
            raise NotImplementedError(f"langstream._bench has no {function} here")
        (per_run,) = getattr(bench, function)(self.backends).values()
        return float(per_run)

    def track_traced_bytes_per_idle_run(self, backend: str) -> float:
        return self._per_run("idle_run_memory")

    track_traced_bytes_per_idle_run.unit = "bytes/run"  # type: ignore[attr-defined]

    def track_tracked_objects_per_idle_run(self, backend: str) -> float:
        return self._per_run("idle_run_objects")

    track_tracked_objects_per_idle_run.unit = "objects/run"  # type: ignore[attr-defined]
