"""Random part streams shaped like LangGraph agent runs, for the property
tests (the differential test against LangGraph, the async chaos test)."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any, AsyncIterator, Dict, Iterator, List, Tuple


class GraphFailed(Exception):
    """What a generated graph raises after its last part."""


def agent_stream(rng: random.Random, snapshots: bool = False) -> Tuple[List[Dict[str, Any]], bool]:
    """A random part stream shaped like a LangGraph run, and whether the
    graph raises after its last part.  With ``snapshots``, most subgraphs
    start with their input snapshot (``{"input": k}``), as a real graph
    streams them when ``values`` is on."""
    parts: List[Dict[str, Any]] = [
        {"type": "values", "ns": (), "data": {"v": 0}, "interrupts": []}]
    budget = [rng.randint(1, 20)]

    def steps(ns: Tuple[str, ...], depth: int) -> None:
        for k in range(rng.randint(1, 4)):
            if budget[0] <= 0 and k:
                return
            budget[0] -= 1
            task_id = "%08x" % rng.getrandbits(32)
            name = rng.choice(["a", "b", "sub"])
            roll = rng.random()
            if roll < 0.2:
                inp: Any = {"tool_call": {"id": "call_" + task_id, "name": "t", "args": {}}}
            elif roll < 0.3:
                inp = [{"id": "call_" + task_id, "name": "t", "args": {}}]
            else:
                inp = {"x": k}
            start = {"id": task_id, "name": name, "input": inp, "triggers": ["t"]}
            if rng.random() < 0.3:
                start["metadata"] = {"lc_agent_name": rng.choice(["agent_a", "agent_b", None])}
            parts.append({"type": "tasks", "ns": ns, "data": start})
            if rng.random() < 0.5:
                parts.append({"type": "custom", "ns": ns, "data": {"c": rng.randint(0, 9)}})
            error = None
            if depth < 3 and rng.random() < 0.35:
                child = ns + (f"{name}:{task_id}",)
                if snapshots and rng.random() < 0.8:
                    # (its input snapshot first, as a real graph streams it
                    # with values on; LangGraph's handle never sees it)
                    parts.append({"type": "values", "ns": child, "data": {"input": k},
                                  "interrupts": []})
                steps(child, depth + 1)
                if rng.random() < 0.5:
                    parts.append({"type": "values", "ns": child, "data": {"v": 9},
                                  "interrupts": []})
                if rng.random() < 0.1:
                    error = "node failed"
            if rng.random() < 0.7:
                parts.append({"type": "updates", "ns": ns, "data": {name: {"v": 1}}})
            interrupts = [{"value": "ask", "id": "i" + task_id}] if rng.random() < 0.1 else []
            if rng.random() < 0.85:  # (else the result never comes)
                parts.append({"type": "tasks", "ns": ns, "data": {
                    "id": task_id, "name": name, "error": error,
                    "result": None if error else {"v": 1}, "interrupts": interrupts}})
            if rng.random() < 0.7:
                parts.append({"type": "values", "ns": ns, "data": {"v": rng.randint(0, 9)},
                              "interrupts": interrupts if rng.random() < 0.5 else []})
            if rng.random() < 0.05:
                parts.append({"type": rng.choice(["checkpoints", "debug"]), "ns": ns,
                              "data": {"step": k}})

    steps((), 0)
    return parts, rng.random() < 0.15


def replay(parts: List[Dict[str, Any]], fails: bool,
           error: type = GraphFailed) -> Iterator[Dict[str, Any]]:
    """The graph of ``parts`` (a fresh copy of each), raising ``error("graph
    failed")`` after the last one when ``fails``."""
    for part in parts:
        yield copy.deepcopy(part)
    if fails:
        raise error("graph failed")


async def areplay(parts: List[Dict[str, Any]], fails: bool, rng: random.Random,
                  error: type = GraphFailed) -> AsyncIterator[Dict[str, Any]]:
    """``replay`` as an async graph that gives the loop a turn after some
    parts (``rng`` decides which)."""
    for part in parts:
        yield copy.deepcopy(part)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    if fails:
        raise error("graph failed")
