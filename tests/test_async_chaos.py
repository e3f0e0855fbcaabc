"""Property test of the async lane's error and cancel paths, on both backends.

Random agent-shaped runs (``_agent_streams``), some bounded by a small
``maxlen``, read at once by four consumers: ``values``, ``lifecycle``, the
raw main log and the subgraph tree (each handle in a task of its own, as
the README advises under ``maxlen``).  At a random moment nothing happens,
one or two consumers are cancelled, or the run is aborted.  Whatever
happens: no consumer hangs, ``output()`` resolves, a started graph has its
``finally`` run, and a run left alone gives every consumer what the sync
lane gives.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Dict, List, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import langstream
from _agent_streams import GraphFailed, agent_stream, areplay, replay

TIMEOUT = 10.0
ACTIONS = ("none", "cancel", "cancel two", "abort")


def _sync_view(parts: List[Dict[str, Any]], fails: bool) -> Dict[str, Any]:
    run = langstream.stream_events(replay(parts, fails))
    values, lifecycle = iter(run.values), iter(run.lifecycle)
    raw = iter(run)
    seen: Dict[str, Any] = {}
    for name, it in (("raw", raw), ("values", values), ("lifecycle", lifecycle)):
        items: List[Any] = []
        try:
            for item in it:
                items.append(item["method"] if name == "raw" else item)
        except GraphFailed:
            items.append("GraphFailed")
        seen[name] = items
    return seen


async def _chaos(seed: int) -> Optional[str]:
    rng = random.Random(seed)
    parts, fails = agent_stream(rng, snapshots=rng.random() < 0.5)
    graph = {"started": False, "finally": False}

    async def source():
        graph["started"] = True
        inner = areplay(parts, fails, rng)
        try:
            async for part in inner:
                yield part
        finally:
            graph["finally"] = True
            await inner.aclose()

    maxlen = rng.choice([None, None, 1, 2, 8])
    run = langstream.astream_events(source(), maxlen=maxlen)

    async def drain(it: Any, as_method: bool = False) -> List[Any]:
        items: List[Any] = []
        try:
            async for item in it:
                items.append(item["method"] if as_method else item)
                if rng.random() < 0.2:
                    await asyncio.sleep(0)
        except GraphFailed:
            items.append("GraphFailed")
        return items

    async def tree(handle: Any, root: bool) -> int:
        async def children() -> int:
            tasks = []
            async for child in handle.subgraphs:
                tasks.append(asyncio.ensure_future(tree(child, False)))
            return sum(await asyncio.gather(*tasks))

        async def values() -> int:
            return 0 if root else len(await drain(handle.values))

        counts = await asyncio.gather(values(), children(), return_exceptions=True)
        return sum(c for c in counts if isinstance(c, int))

    consumers = {
        "values": asyncio.ensure_future(drain(run.values)),
        "lifecycle": asyncio.ensure_future(drain(run.lifecycle)),
        "raw": asyncio.ensure_future(drain(run, as_method=True)),
        "tree": asyncio.ensure_future(tree(run, True)),
    }
    action = rng.choice(ACTIONS)
    for _ in range(rng.randint(0, 30)):
        await asyncio.sleep(0)
    cancelled = set()
    if action in ("cancel", "cancel two"):
        for _ in range(1 if action == "cancel" else 2):
            name = rng.choice(sorted(consumers))
            consumers[name].cancel()
            cancelled.add(name)
    elif action == "abort":
        await asyncio.wait_for(run.abort(), TIMEOUT)

    done, pending = await asyncio.wait(list(consumers.values()), timeout=TIMEOUT)
    if pending:
        for task in pending:
            task.cancel()
        return f"{action} (maxlen={maxlen}): consumers hung: " + ", ".join(
            name for name, task in consumers.items() if task in pending)
    results: Dict[str, Any] = {}
    for name, task in consumers.items():
        if task.cancelled():
            if name not in cancelled:
                return f"{action} (maxlen={maxlen}): {name} was cancelled by the run"
            continue
        error = task.exception()
        results[name] = task.result() if error is None else f"{type(error).__name__}: {error}"
    try:
        await asyncio.wait_for(run.output(), TIMEOUT)
    except asyncio.TimeoutError:
        return f"{action} (maxlen={maxlen}): output() hung"
    except BaseException:  # noqa: BLE001 - the run's error: it ended
        pass
    if graph["started"] and not graph["finally"]:
        return f"{action} (maxlen={maxlen}): the graph was not closed"
    if action == "none":
        expected = _sync_view(parts, fails)
        for name in ("values", "lifecycle", "raw"):
            if results[name] != expected[name]:
                return f"none (maxlen={maxlen}): {name} differs from the sync lane"
    return None


@settings(max_examples=60, deadline=None, derandomize=True,
          # (the backend fixture selects the event log for every example)
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_no_consumer_hangs_and_the_graph_is_closed(backend, seed):
    problem = asyncio.run(_chaos(seed))
    assert problem is None, problem
