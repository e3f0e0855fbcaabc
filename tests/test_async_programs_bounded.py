"""Property test: random async consumer programs on bounded runs never hang.

Random agent-shaped runs (``_agent_streams``) with model calls inside some
tasks (two calls may interleave), run with a small ``maxlen`` (1 to 3), read
by a random program: at every level it subscribes to some of ``values``,
``messages`` (where langchain-core is installed), ``subgraphs`` (and, at the
root, the raw log and ``lifecycle``, or two or three ``atee`` branches of
it), then reads them either concurrently (``gather``, ``asyncio.wait``,
``asyncio.as_completed``, a shielded ``gather``, an anyio task group, or a
``TaskGroup`` from 3.11) or one after the other in one task
(some through ``asyncio.wait_for``); handles and model calls are read inline
(inside the loop that got them) or in tasks of their own; readers give the
loop a turn at random; some await ``output()``.  Every projection a program
subscribes to, it drains, so backpressure must never leave it waiting: the
program finishes, every reader it spawned finishes, and ``output()``
resolves.  (Inline reading under ``maxlen`` is the case the README's
``maxlen`` section describes: such readers are not waited for.)
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import langstream
from _agent_streams import GraphFailed, agent_stream, areplay
from langstream._messages import langchain_core_available

try:  # (Starlette's task groups; the test extra installs it)
    import anyio
except ImportError:  # pragma: no cover - outside the test extra
    anyio = None

TIMEOUT = 10.0
TOKENS = langchain_core_available()


def _call(run_id: str, ns: Any, node: str, words: List[str]) -> List[Dict[str, Any]]:
    meta = {"run_id": run_id, "langgraph_node": node}
    events: List[Dict[str, Any]] = [
        {"event": "message-start", "role": "ai", "id": f"msg-{run_id}"},
        {"event": "content-block-start", "index": 0, "content": {"type": "text", "text": ""}},
        *({"event": "content-block-delta", "index": 0,
           "delta": {"type": "text-delta", "text": w}} for w in words),
        {"event": "content-block-finish", "index": 0,
         "content": {"type": "text", "text": "".join(words)}},
        {"event": "message-finish"},
    ]
    return [{"type": "messages", "ns": ns, "data": (e, meta)} for e in events]


def token_agent_stream(rng: random.Random):
    """``agent_stream`` with one or two interleaved model calls after some
    task starts, at the task's namespace."""
    parts, fails = agent_stream(rng, rng.random() < 0.5)
    out: List[Dict[str, Any]] = []
    for part in parts:
        out.append(part)
        if part["type"] == "tasks" and "result" not in part["data"] and rng.random() < 0.4:
            calls = [_call(f"{part['data']['id']}-{k}", part["ns"], part["data"]["name"],
                           ["a", "b", "c"][:rng.randint(1, 3)])
                     for k in range(rng.choice([1, 1, 2]))]
            while any(calls):
                out.append(rng.choice([c for c in calls if c]).pop(0))
    return out, fails


async def _program(seed: int) -> Any:
    rng = random.Random(seed)
    parts, fails = token_agent_stream(rng)
    maxlen = rng.choice([1, 1, 2, 3])
    run = langstream.astream_events(areplay(parts, fails, rng), maxlen=maxlen,
                                    stall_warning_after=60)
    spawned: List[Any] = []

    async def a_turn() -> None:
        if rng.random() < 0.4:
            await asyncio.sleep(0)

    async def read_msg(msg: Any) -> None:
        try:
            if rng.random() < 0.5:
                async for _delta in msg.text:
                    await a_turn()
            else:
                await msg.text
        except (RuntimeError, GraphFailed):
            pass

    async def read_messages(stream: Any) -> None:
        inline = rng.random() < 0.5
        async for msg in stream.messages:
            if inline:
                await read_msg(msg)
            else:
                spawned.append(asyncio.ensure_future(read_msg(msg)))
            await a_turn()

    async def drain(it: Any) -> None:
        async for _item in it:
            await a_turn()

    async def read(stream: Any, root: bool) -> None:
        jobs = []
        if rng.random() < 0.7:
            jobs.append(lambda: drain(stream.values))
        if TOKENS and rng.random() < 0.6:
            jobs.append(lambda: read_messages(stream))
        if rng.random() < 0.7:
            handles_inline = rng.random() < 0.5

            async def handles() -> None:
                async for handle in stream.subgraphs:
                    if handles_inline:
                        await read(handle, False)
                    else:
                        spawned.append(asyncio.ensure_future(read(handle, False)))
                    await a_turn()
            jobs.append(handles)
        if root and rng.random() < 0.5:
            jobs.append(lambda: drain(stream))
        if root and rng.random() < 0.4:
            if rng.random() < 0.5:
                jobs.append(lambda: drain(stream.lifecycle))
            else:  # (subscribed here, read when the job's turn comes)
                for branch in stream.lifecycle.atee(rng.choice([2, 3])):
                    jobs.append(lambda branch=branch: drain(branch))
        async def safe(job: Any) -> None:
            try:
                await job()
            except (RuntimeError, GraphFailed):
                pass

        how = rng.random()
        if how < 0.3:
            await asyncio.gather(*[job() for job in jobs], return_exceptions=True)
        elif how < 0.38 and hasattr(asyncio, "TaskGroup"):
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(safe(job))
        elif how < 0.45 and anyio is not None:
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(safe, job)
        elif how < 0.52 and jobs:
            await asyncio.wait([asyncio.ensure_future(safe(job)) for job in jobs])
        elif how < 0.58 and jobs:
            for next_done in asyncio.as_completed([safe(job) for job in jobs]):
                await next_done
        elif how < 0.64:
            await asyncio.shield(asyncio.gather(*[safe(job) for job in jobs]))
        else:
            for job in jobs:
                try:
                    if rng.random() < 0.2:  # (3.9-3.11: a future of its own)
                        await asyncio.wait_for(job(), 2 * TIMEOUT)
                    else:
                        await job()
                except (RuntimeError, GraphFailed):
                    pass
        if rng.random() < 0.2:
            try:
                await stream.output()
            except (RuntimeError, GraphFailed):
                pass

    try:
        await asyncio.wait_for(read(run, True), TIMEOUT)
    except asyncio.TimeoutError:
        return f"maxlen={maxlen}: the program hung"
    except (RuntimeError, GraphFailed):
        pass
    if spawned:
        _done, pending = await asyncio.wait(spawned, timeout=TIMEOUT)
        if pending:
            return f"maxlen={maxlen}: {len(pending)} readers it spawned hung"
    try:
        await asyncio.wait_for(run.output(), TIMEOUT)
    except asyncio.TimeoutError:
        return f"maxlen={maxlen}: output() hung"
    except (RuntimeError, GraphFailed):
        pass
    return None


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_bounded_runs_never_leave_a_draining_program_waiting(backend, seed):
    problem = asyncio.run(_program(seed))
    assert problem is None, problem
