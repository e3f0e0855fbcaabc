"""Stream a real LangGraph graph through langstream (the ``langgraph`` extra).

``stream_graph(graph, input)`` asks the graph for exactly the stream modes the
registered transformers need (the union of their ``required_stream_modes``),
with ``subgraphs=True`` and ``version="v2"``, and returns a
``GraphRunStream`` over it; ``astream_graph`` is the async twin.  Nothing here
imports LangGraph: any object with LangGraph's ``stream`` / ``astream``
signature works.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from langstream.mux import StreamMux
from langstream.run_stream import (
    DEFAULT_FACTORIES,
    AsyncGraphRunStream,
    GraphRunStream,
    _factories,
)

__all__ = ["astream_graph", "required_stream_modes", "stream_graph"]


def required_stream_modes(mux: StreamMux) -> List[str]:
    """The stream modes the transformers of ``mux`` need, sorted."""
    modes = set()
    for transformer in mux._transformers:
        modes.update(getattr(transformer, "required_stream_modes", ()))
    return sorted(modes)


def _mux(transformers: Sequence[Callable[[Tuple[str, ...]], Any]], scope: Sequence[str],
         maxlen: Optional[int], is_async: bool) -> StreamMux:
    return StreamMux(
        factories=[*DEFAULT_FACTORIES, *_factories(transformers)],
        scope=tuple(scope),
        maxlen=maxlen,
        is_async=is_async,
    )


def stream_graph(
    graph: Any,
    input: Any,
    config: Optional[dict] = None,
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Sequence[str] = (),
    maxlen: Optional[int] = None,
    **kwargs: Any,
) -> GraphRunStream:
    """Run ``graph`` with ``input`` and stream it through langstream (sync).

    Args:
        graph: a compiled LangGraph graph (anything with ``.stream``).
        input, config: passed to ``graph.stream``.
        transformers: extra transformer factories.
        scope: the namespace the run owns (``()`` unless the graph runs inside
            another graph's node).
        maxlen: bound for the logs (see ``StreamMux``).
        **kwargs: passed to ``graph.stream`` (``stream_mode``, ``subgraphs``
            and ``version`` are set here).

    Raises:
        TypeError: ``stream_mode``, ``subgraphs`` or ``version`` was passed.
    """
    _reject(kwargs)
    mux = _mux(transformers, scope, maxlen, False)
    parts = graph.stream(input, config, stream_mode=required_stream_modes(mux),
                         subgraphs=True, version="v2", **kwargs)
    return GraphRunStream(iter(parts), mux)


def astream_graph(
    graph: Any,
    input: Any,
    config: Optional[dict] = None,
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Sequence[str] = (),
    maxlen: Optional[int] = None,
    **kwargs: Any,
) -> AsyncGraphRunStream:
    """Async twin of ``stream_graph`` (uses ``graph.astream``); no ``await`` needed."""
    _reject(kwargs)
    mux = _mux(transformers, scope, maxlen, True)
    parts = graph.astream(input, config, stream_mode=required_stream_modes(mux),
                          subgraphs=True, version="v2", **kwargs)
    return AsyncGraphRunStream(parts.__aiter__(), mux)


def _reject(kwargs: dict) -> None:
    for key in ("stream_mode", "subgraphs", "version"):
        if key in kwargs:
            raise TypeError(
                f"{key}= is set by langstream (it asks for the modes its transformers "
                f"need, with subgraphs=True and version='v2'); got {key}={kwargs[key]!r}"
            )
