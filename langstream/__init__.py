"""langstream: the streaming layer for in-process agent runs.

A graph's pull-based stream of parts becomes a numbered protocol event log
plus typed projections (``run.values``, ``run.lifecycle``,
``run.subgraphs``, ...), driven by the consumer's own ``for`` / ``async for``.
The public API is that of LangGraph's ``langgraph.stream`` package.
"""

# (first: it decides whether the modules below load compiled or from source)
from langstream import _compiled  # noqa: F401  # isort: skip
from langstream._messages import AllMessagesTransformer, MessagesTransformer
from langstream.channel import StreamChannel
from langstream.errors import StreamLagError
from langstream.mux import StreamMux, TransformerFactory
from langstream.protocol import ProtocolEvent, StreamPart, convert_to_protocol_event
from langstream.run_stream import (
    DEFAULT_FACTORIES,
    AsyncGraphRunStream,
    AsyncSubgraphRunStream,
    GraphRunStream,
    SubgraphRunStream,
    SubgraphTransformer,
    astream_events,
    stream_events,
)
from langstream.transformers import (
    CheckpointsTransformer,
    CustomTransformer,
    DebugTransformer,
    LifecyclePayload,
    LifecycleTransformer,
    StreamTransformer,
    SubgraphStatus,
    TasksTransformer,
    UpdatesTransformer,
    ValuesTransformer,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FACTORIES",
    "AllMessagesTransformer",
    "AsyncGraphRunStream",
    "AsyncSubgraphRunStream",
    "CheckpointsTransformer",
    "CustomTransformer",
    "DebugTransformer",
    "GraphRunStream",
    "LifecyclePayload",
    "LifecycleTransformer",
    "MessagesTransformer",
    "ProtocolEvent",
    "StreamChannel",
    "StreamLagError",
    "StreamMux",
    "StreamPart",
    "StreamTransformer",
    "SubgraphRunStream",
    "SubgraphStatus",
    "SubgraphTransformer",
    "TasksTransformer",
    "TransformerFactory",
    "UpdatesTransformer",
    "ValuesTransformer",
    "astream_events",
    "convert_to_protocol_event",
    "stream_events",
]
