"""Long runs keep no per-subgraph state once a subgraph has ended."""

from __future__ import annotations

import gc
import weakref

import langstream
from langstream import SubgraphTransformer


def _many_subgraphs(n):
    yield {"type": "values", "ns": (), "data": {"i": -1}, "interrupts": ()}
    for i in range(n):
        task = f"t{i}"
        yield {"type": "tasks", "ns": (), "data": {"id": task, "name": "sub", "input": {}, "triggers": []}}
        yield {"type": "values", "ns": (f"sub:{task}",), "data": {"i": i}, "interrupts": ()}
        yield {"type": "tasks", "ns": (), "data": {"id": task, "name": "sub", "error": None,
                                                   "result": {}, "interrupts": []}}
        yield {"type": "values", "ns": (), "data": {"i": i}, "interrupts": ()}


def test_ended_subgraph_handles_are_released(backend):
    run = langstream.stream_events(_many_subgraphs(200))
    refs = []
    for handle in run.subgraphs:
        refs.append(weakref.ref(handle))
        assert list(handle.values) == [{"i": len(refs) - 1}]
        assert handle.status == "completed"
        del handle
    assert len(refs) == 200
    assert run.output == {"i": 199}
    sub = run._mux.transformer_by_key("subgraphs")
    life = run._mux.transformer_by_key("lifecycle")
    assert isinstance(sub, SubgraphTransformer)
    assert sub._handles == {} and life._names == {} and life._open == {}
    gc.collect()
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
