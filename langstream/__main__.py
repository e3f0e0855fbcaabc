"""Command line: ``python -m langstream demo [--async]`` and ``python -m langstream bench``.

``demo`` streams a built-in simulated agent run (steps, custom progress
events, a snapshot per step, a subgraph, one interrupt) and prints the
interleaved projections as they arrive, then the final output.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

from langstream import (
    CustomTransformer,
    UpdatesTransformer,
    astream_events,
    stream_events,
)
from langstream import eventlog as _el

_TASK_IDS = iter(f"{n:08x}-demo" for n in range(1, 1 << 30))


def _task(ns: tuple, name: str, state: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "tasks", "ns": ns, "data": {"id": next(_TASK_IDS), "name": name,
                                                 "input": dict(state), "triggers": [name]}}


def _result(ns: tuple, task: Dict[str, Any], update: Any, interrupts: List[Any] = ()) -> Dict[str, Any]:
    data = task["data"]
    return {"type": "tasks", "ns": ns, "data": {"id": data["id"], "name": data["name"],
                                                 "error": None, "result": update,
                                                 "interrupts": list(interrupts)}}


def simulated_agent_run(delay: float = 0.0) -> Iterator[Dict[str, Any]]:
    """Yield the v2 stream parts of a small agent run: plan, research (a
    subgraph with two tool calls), draft, and a human-approval interrupt."""
    state: Dict[str, Any] = {"question": "What changed in v3 streaming?", "notes": [], "draft": ""}

    def snap(ns: tuple, interrupts: List[Any] = ()) -> Dict[str, Any]:
        return {"type": "values", "ns": ns, "data": {k: (list(v) if isinstance(v, list) else v)
                                                      for k, v in state.items()},
                "interrupts": list(interrupts)}

    def pause() -> None:
        if delay:
            time.sleep(delay)

    root: tuple = ()
    yield snap(root)
    for node, note in (("plan", "split the question into 2 lookups"),):
        t = _task(root, node, state)
        yield t
        yield {"type": "custom", "ns": root, "data": {"node": node, "progress": "thinking"}}
        pause()
        state["notes"].append(note)
        yield {"type": "updates", "ns": root, "data": {node: {"notes": [note]}}}
        yield _result(root, t, {"notes": [note]})
        yield snap(root)
    # the research subgraph
    t = _task(root, "research", state)
    yield t
    sub = (f"research:{t['data']['id']}",)
    yield snap(sub)
    for tool in ("search_docs", "search_issues"):
        st = _task(sub, tool, state)
        yield st
        yield {"type": "custom", "ns": sub, "data": {"node": tool, "progress": "calling tool"}}
        pause()
        found = f"{tool}: 3 hits"
        state["notes"].append(found)
        yield {"type": "updates", "ns": sub, "data": {tool: {"notes": [found]}}}
        yield _result(sub, st, {"notes": [found]})
        yield snap(sub)
    yield _result(root, t, {"notes": state["notes"][-2:]})
    yield snap(root)
    t = _task(root, "draft", state)
    yield t
    for pct in (30, 70, 100):
        yield {"type": "custom", "ns": root, "data": {"node": "draft", "progress": f"{pct}%"}}
        pause()
    state["draft"] = "v3 streams are typed projections over one numbered event log."
    yield {"type": "updates", "ns": root, "data": {"draft": {"draft": state["draft"]}}}
    yield _result(root, t, {"draft": state["draft"]})
    yield snap(root)
    t = _task(root, "approve", state)
    yield t
    ask = {"value": {"question": "Publish this draft?"}, "id": "approve-1"}
    yield _result(root, t, None, [ask])
    yield snap(root, [ask])


async def _asimulated(delay: float) -> AsyncIterator[Dict[str, Any]]:
    for part in simulated_agent_run(0.0):
        if delay and part["type"] == "custom":
            await asyncio.sleep(delay)
        yield part


def _line(name: str, item: Any) -> str:
    if name == "values":
        return f"values     notes={len(item['notes'])} draft={item['draft'][:40]!r}"
    if name == "custom":
        return f"custom     {item['node']}: {item['progress']}"
    if name == "updates":
        return f"updates    {', '.join(item)}"
    if name == "lifecycle":
        return f"lifecycle  {item['event']} {'/'.join(item['namespace'])}"
    return f"{name:<10} {item!r}"


def _demo_sync(delay: float) -> int:
    print(f"langstream demo (sync, event-log backend: {_el.BACKEND})")
    with stream_events(simulated_agent_run(delay),
                       transformers=[UpdatesTransformer, CustomTransformer]) as run:
        for name, item in run.interleave("lifecycle", "values", "updates", "custom"):
            print("  " + _line(name, item))
        print(f"interrupted: {run.interrupted}  interrupts: {run.interrupts}")
        print(f"output: {run.output}")
    return 0


async def _demo_async(delay: float) -> int:
    print(f"langstream demo (async, event-log backend: {_el.BACKEND})")
    async with astream_events(_asimulated(delay),
                              transformers=[UpdatesTransformer, CustomTransformer]) as run:

        async def show(name: str) -> None:
            async for item in getattr(run, name):
                print("  " + _line(name, item))

        async def subgraphs() -> None:
            async for handle in run.subgraphs:
                print(f"  subgraph   {handle.graph_name} ({handle.trigger_call_id}) started")
                async for snapshot in handle.values:
                    print(f"    {handle.graph_name}.values notes={len(snapshot['notes'])}")
                print(f"  subgraph   {handle.graph_name} {handle.status}")

        await asyncio.gather(show("lifecycle"), show("values"), show("custom"), subgraphs())
        print(f"interrupted: {await run.interrupted()}  interrupts: {await run.interrupts()}")
        print(f"output: {await run.output()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m langstream``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m langstream")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream a simulated agent run")
    demo.add_argument("--async", dest="use_async", action="store_true",
                      help="use the async lane (astream_events)")
    demo.add_argument("--delay", type=float, default=0.05,
                      help="seconds each simulated node takes (default 0.05)")
    sub.add_parser("bench", help="benchmarks side by side (see --help)", add_help=False)
    sub.add_parser("attach", help="attach to a run published to Redis (see --help)",
                   add_help=False)
    sub.add_parser("serve", help="serve Redis-published runs as SSE + a live page (see --help)",
                   add_help=False)
    from langstream import _redis_cli  # demo --redis / attach

    if _redis_cli.wants(args):
        return _redis_cli.main(args)
    if args[:2] == ["bench", "redis"]:
        from langstream import _bench_redis

        return _bench_redis.main(args[2:])
    if args[:1] == ["bench"]:
        from langstream import _bench

        return _bench.main(args[1:])
    if args[:1] == ["serve"]:
        from langstream.server import main as serve_main

        return serve_main(args[1:])
    ns = parser.parse_args(args)
    if ns.delay < 0:
        parser.error(f"--delay must be >= 0, got {ns.delay}")
    if ns.use_async:
        return asyncio.run(_demo_async(ns.delay))
    return _demo_sync(ns.delay)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
