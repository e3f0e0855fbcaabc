"""``StreamMux``'s ``transformers`` and ``factories`` are validated with a
``TypeError`` naming the parameter and the value (before: ``'int' object is not
iterable`` / ``has no attribute 'init'``), and a factory that returns a
non-transformer for a subgraph scope fails the run with that error."""

from __future__ import annotations

import pytest

from helpers import areplay, arun, values
from langstream import (
    StreamMux,
    StreamTransformer,
    ValuesTransformer,
    astream_events,
    stream_events,
)


@pytest.mark.parametrize("kwargs,words", [
    ({"transformers": 5}, "transformers must be a sequence, got int 5"),
    ({"transformers": "ab"}, "transformers must be a sequence, got str 'ab'"),
    ({"transformers": [5]}, "transformers holds int 5, which is not a StreamTransformer"),
    ({"factories": 5}, "factories must be a sequence, got int 5"),
    ({"factories": [5]}, "factories must be callables factory(scope)"),
    ({"factories": [lambda scope: None]}, "returned NoneType None, which is not a StreamTransformer"),
])
def test_bad_pipeline_names_the_parameter(backend, kwargs, words):
    with pytest.raises(TypeError) as info:
        StreamMux(**kwargs)
    assert words in str(info.value)


def test_good_pipelines_still_register(backend):
    mux = StreamMux(factories=iter([ValuesTransformer]))
    assert list(mux.extensions) == ["values"]
    assert list(StreamMux(None, factories=None).extensions) == []


class _Plain(StreamTransformer):
    def init(self):
        return {}

    def process(self, event):
        return True


class _Marker:
    """A factory that builds a transformer at the root only."""

    def __call__(self, scope):
        return None if scope else _Plain(scope)


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_factory_returning_a_non_transformer_for_a_subgraph_fails_the_run(backend, lane):
    parts = [values({"i": 0}), values({"i": 1}, ns=("a:1",)), values({"i": 2})]
    if lane == "sync":
        run = stream_events(parts, transformers=[_Marker()])
        with pytest.raises(TypeError, match="not a StreamTransformer"):
            run.output
        return

    async def main():
        run = astream_events(areplay(parts), transformers=[_Marker()])
        with pytest.raises(TypeError, match="not a StreamTransformer"):
            await run.output()

    arun(main())
