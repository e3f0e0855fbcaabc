"""Stream a real LangGraph graph through langstream (the ``langgraph`` extra).

``stream_graph(graph, input)`` runs the graph exactly as LangGraph's own
``graph.stream_events(input, version="v3")`` does, and returns a langstream
``GraphRunStream`` over it; ``astream_graph`` is the async twin (the run it
returns can also be awaited, as ``astream_events(version="v3")``'s can):

- the same config switch: model calls stream LangGraph's v2 message events
  (``message-start``, ``content-block-delta``, ... ``message-finish``), so
  ``run.messages`` streams tokens and message payloads and state snapshots
  are the ones LangGraph's v3 run produces;
- the same pipeline order: values, messages, lifecycle, subgraphs, then the
  graph's compile-time ``transformers`` (``graph.stream_transformers``),
  then the ``transformers=`` of the call;
- the same stream modes: the union of the transformers'
  ``required_stream_modes``, with ``subgraphs=True`` and ``version="v2"``;
- the same scope: called from inside a node of an outer graph, the run owns
  the caller's namespace (its ``checkpoint_ns``), so its ``values``,
  ``messages`` and ``output`` are its own graph's.

LangGraph itself is imported only when a graph is run.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, Callable, List, Optional, Sequence, Tuple

from langstream.mux import StreamMux
from langstream.run_stream import (
    DEFAULT_FACTORIES,
    AsyncGraphRunStream,
    GraphRunStream,
    _factories,
)

__all__ = ["astream_graph", "caller_namespace", "required_stream_modes", "stream_graph"]

# LangGraph's config keys (``langgraph._internal._constants``), with their
# values as a fallback should the private module move
_MESSAGES_V2_KEY = "__pregel_stream_messages_v2"
_CHECKPOINT_NS_KEY = "checkpoint_ns"
_NS_SEP = "|"


def required_stream_modes(mux: StreamMux) -> List[str]:
    """The stream modes the transformers of ``mux`` need, sorted."""
    modes = set()
    for transformer in mux._transformers:
        modes.update(getattr(transformer, "required_stream_modes", ()))
    return sorted(modes)


def _constants() -> Tuple[str, str, str]:
    try:
        from langgraph._internal import _constants as c
    except ImportError:  # pragma: no cover - depends on LangGraph's layout
        return _MESSAGES_V2_KEY, _CHECKPOINT_NS_KEY, _NS_SEP
    return (
        getattr(c, "CONFIG_KEY_STREAM_MESSAGES_V2", _MESSAGES_V2_KEY),
        getattr(c, "CONFIG_KEY_CHECKPOINT_NS", _CHECKPOINT_NS_KEY),
        getattr(c, "NS_SEP", _NS_SEP),
    )


def _merged_config(graph: Any, config: Optional[dict]) -> Mapping[str, Any]:
    """The config the graph will run with: its own, the caller's (the
    config of the node we are called from, through the context variable)
    and ``config``, as LangGraph merges them."""
    try:
        from langgraph._internal._config import ensure_config
    except ImportError:  # pragma: no cover - depends on LangGraph's layout
        try:
            from langchain_core.runnables.config import ensure_config as _ensure
        except ImportError:
            return config or {}

        def ensure_config(*configs: Any) -> Any:
            merged: dict = {}
            for item in configs:
                if item:
                    for key, value in item.items():
                        if key == "configurable":
                            merged.setdefault(key, {}).update(value or {})
                        else:
                            merged[key] = value
            return _ensure(merged)  # type: ignore[arg-type]

    return ensure_config(getattr(graph, "config", None), config)


def _calls_before(configurable: Mapping[str, Any]) -> int:
    """How many graphs the calling task has already run.

    LangGraph gives the n-th graph run inside one task (n > 0) the namespace
    ``<task namespace>|n``: it counts them with the task's scratchpad
    counter when the run starts.  The counter's next value is read here
    without advancing it; anything unexpected counts as a first call.
    """
    try:
        from langgraph._internal import _constants as c

        key = getattr(c, "CONFIG_KEY_SCRATCHPAD", "__pregel_scratchpad")
    except ImportError:  # pragma: no cover - depends on LangGraph's layout
        key = "__pregel_scratchpad"
    counter = getattr(configurable.get(key), "subgraph_counter", None)
    if counter is None:
        return 0
    step = getattr(counter, "_counter", None)
    if step is None:  # not used yet: the next call is the first
        return 0
    count = getattr(step, "__self__", None)
    if not isinstance(count, itertools.count):
        return 0
    match = re.fullmatch(r"count\((\d+)\)", repr(count))
    return int(match.group(1)) if match else 0


def caller_namespace(graph: Any, config: Optional[dict] = None) -> Tuple[str, ...]:
    """The namespace a run of ``graph`` started here owns: ``()`` at the top
    level, the calling task's namespace (``("node:<task id>", ...)``) when
    called from inside a node of another graph, plus LangGraph's ``"<n>"``
    segment for the n-th later run inside the same task."""
    _, ns_key, sep = _constants()
    configurable = _merged_config(graph, config).get("configurable", {})
    ns = configurable.get(ns_key)
    if not ns:
        return ()
    scope = tuple(ns.split(sep))
    before = _calls_before(configurable)
    return (*scope, str(before)) if before else scope


def _messages_v2(config: Optional[dict]) -> dict:
    key = _constants()[0]
    if config is None:
        return {"configurable": {key: True}}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (a RunnableConfig) or None, got {config!r}")
    configurable = config.get("configurable") or {}
    return {**config, "configurable": {**configurable, key: True}}


def _pipeline(graph: Any, transformers: Any) -> List[Callable[[Tuple[str, ...]], Any]]:
    # LangGraph's order; a transformer projecting LangGraph's own
    # StreamChannel is refused by the mux when it registers (it says why)
    compiled = getattr(graph, "stream_transformers", None) or ()
    return [*DEFAULT_FACTORIES, *_factories(compiled), *_factories(transformers)]


def _check_graph(graph: Any, method: str) -> None:
    if not callable(getattr(graph, method, None)):
        raise TypeError(
            f"graph must be a compiled LangGraph graph (an object with a .{method}() "
            f"method, e.g. StateGraph(...).compile()), got {type(graph).__name__}: {graph!r}"
        )


def _reject(kwargs: dict) -> None:
    # version="v3" is what a LangGraph user passes to stream_events: accepted
    if kwargs.get("version") == "v3":
        del kwargs["version"]
    for key in ("stream_mode", "subgraphs", "version"):
        if key in kwargs:
            raise TypeError(
                f"{key}= is set by langstream, as by LangGraph's stream_events(version='v3') "
                "(stream_mode is the union of the transformers' required_stream_modes, "
                "subgraphs=True, and the graph streams v2 parts into the v3 run; "
                f"version='v3' is accepted); got {key}={kwargs[key]!r}"
            )


def _scope(graph: Any, config: Optional[dict], scope: Optional[Sequence[str]]) -> Tuple[str, ...]:
    if scope is None:
        return caller_namespace(graph, config)
    return tuple(scope)


def stream_graph(
    graph: Any,
    input: Any,
    config: Optional[dict] = None,
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Optional[Sequence[str]] = None,
    maxlen: Optional[int] = None,
    **kwargs: Any,
) -> GraphRunStream:
    """Run ``graph`` with ``input`` and stream it through langstream (sync).

    The drop-in for ``graph.stream_events(input, config, version="v3")``.

    Args:
        graph: a compiled LangGraph graph (anything with ``.stream``).
        input: the graph input, or a ``Command(resume=...)``.
        config: the run's config (``thread_id`` etc.).
        transformers: extra transformer factories (classes or
            ``lambda scope: T(scope, ...)``), registered after the graph's
            compile-time ones.
        scope: the namespace the run owns; by default the caller's
            (``()`` at the top level, the calling task's inside a node).
        maxlen: bound for the logs (see ``StreamMux``).
        **kwargs: passed to ``graph.stream`` (``interrupt_before``,
            ``control``, ``context``, ...).

    Raises:
        TypeError: ``graph`` has no ``stream`` method; ``stream_mode`` or
            ``subgraphs`` was passed, or a ``version`` other than ``"v3"``; a
            transformer returns LangGraph's own ``StreamChannel`` (at
            registration).
    """
    _check_graph(graph, "stream")
    _reject(kwargs)
    mux = StreamMux(
        factories=_pipeline(graph, transformers),
        scope=_scope(graph, config, scope),
        maxlen=maxlen,
        is_async=False,
    )
    parts = graph.stream(input, _messages_v2(config), stream_mode=required_stream_modes(mux),
                         subgraphs=True, version="v2", **kwargs)
    return GraphRunStream(iter(parts), mux)


def astream_graph(
    graph: Any,
    input: Any,
    config: Optional[dict] = None,
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Optional[Sequence[str]] = None,
    maxlen: Optional[int] = None,
    **kwargs: Any,
) -> AsyncGraphRunStream:
    """Async twin of ``stream_graph`` (uses ``graph.astream``).

    The run stream is returned directly; awaiting it gives the same run, so
    both ``async with astream_graph(g, x) as run:`` and LangGraph's
    ``async with await astream_graph(g, x) as run:`` work.
    """
    _check_graph(graph, "astream")
    _reject(kwargs)
    mux = StreamMux(
        factories=_pipeline(graph, transformers),
        scope=_scope(graph, config, scope),
        maxlen=maxlen,
        is_async=True,
    )
    parts = graph.astream(input, _messages_v2(config), stream_mode=required_stream_modes(mux),
                          subgraphs=True, version="v2", **kwargs)
    return AsyncGraphRunStream(parts.__aiter__(), mux)
