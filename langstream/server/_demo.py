"""A simulated agent run for ``python -m langstream serve --demo``.

It yields LangGraph v2 stream parts (values, tasks, updates, custom, a
subgraph, and one model call streaming tokens as message events), slowly
enough to watch, and is published to Redis with
``langstream.integrations.redis.publish``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Iterator

ANSWER = ("langstream numbers every event of a run, so a browser that loses its "
          "connection resumes exactly where it stopped: no token twice, none missing.")


def demo_parts(delay: float = 0.05) -> Iterator[Dict[str, Any]]:
    """Stream parts of a small agent run; ``delay`` seconds between tokens."""
    state: Dict[str, Any] = {"question": "How does the page survive a reconnect?",
                             "notes": [], "answer": ""}

    def values(ns: tuple = ()) -> Dict[str, Any]:
        snap = {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
        return {"type": "values", "ns": ns, "data": snap, "interrupts": ()}

    def task(ns: tuple, tid: str, name: str, result: Any = None, done: bool = False) -> Dict[str, Any]:
        data: Dict[str, Any] = {"id": tid, "name": name}
        if done:
            data.update(error=None, result=result, interrupts=[])
        else:
            data.update(input={}, triggers=[name])
        return {"type": "tasks", "ns": ns, "data": data}

    yield values()
    yield task((), "t-plan", "plan")
    yield {"type": "custom", "ns": (), "data": {"node": "plan", "progress": "thinking"}}
    time.sleep(delay * 4)
    state["notes"].append("look up how SSE resumes")
    yield {"type": "updates", "ns": (), "data": {"plan": {"notes": state["notes"][-1:]}}}
    yield task((), "t-plan", "plan", {"notes": state["notes"][-1:]}, done=True)
    yield values()
    yield task((), "t-research", "research")
    sub = ("research:t-research",)
    yield values(sub)
    for tool in ("search_docs", "search_issues"):
        yield {"type": "custom", "ns": sub, "data": {"node": tool, "progress": "calling tool"}}
        time.sleep(delay * 4)
        state["notes"].append(f"{tool}: 3 hits")
        yield values(sub)
    yield task((), "t-research", "research", {"notes": state["notes"][-2:]}, done=True)
    yield values()
    yield task((), "t-answer", "answer")
    meta = {"run_id": "demo-answer", "langgraph_node": "answer"}
    yield {"type": "messages", "ns": (),
           "data": ({"event": "message-start", "role": "ai", "id": "msg-demo"}, meta)}
    yield {"type": "messages", "ns": (),
           "data": ({"event": "content-block-start", "index": 0,
                     "content": {"type": "text", "text": ""}}, meta)}
    words = ANSWER.split(" ")
    for i, word in enumerate(words):
        time.sleep(delay)
        text = word if i == len(words) - 1 else word + " "
        yield {"type": "messages", "ns": (),
               "data": ({"event": "content-block-delta", "index": 0,
                         "delta": {"type": "text-delta", "text": text}}, meta)}
    yield {"type": "messages", "ns": (),
           "data": ({"event": "content-block-finish", "index": 0,
                     "content": {"type": "text", "text": ANSWER}}, meta)}
    yield {"type": "messages", "ns": (), "data": ({"event": "message-finish"}, meta)}
    state["answer"] = ANSWER
    yield {"type": "updates", "ns": (), "data": {"answer": {"answer": ANSWER}}}
    yield task((), "t-answer", "answer", {"answer": ANSWER}, done=True)
    yield values()


def publish_demo(redis_url: str, key: str, delay: float = 0.05) -> None:
    """Publish one demo run to ``key`` (replacing a previous one), blocking."""
    import redis

    from langstream import stream_events
    from langstream.integrations.redis import publish

    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(key)
        with publish(stream_events(demo_parts(delay)), client, key, expire=3600) as run:
            for _ in run:
                pass
    finally:
        client.close()


def start_demo(redis_url: str, key: str, delay: float = 0.05) -> threading.Thread:
    """``publish_demo`` in a daemon thread (the server runs meanwhile)."""
    thread = threading.Thread(target=publish_demo, args=(redis_url, key, delay),
                              name="langstream-demo", daemon=True)
    thread.start()
    return thread
