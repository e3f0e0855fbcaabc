"""Alias of ``langstream.mux`` under LangGraph's module name (``langgraph.stream._mux``)."""

from langstream.channel import StreamChannel
from langstream.mux import StreamMux, TransformerFactory
from langstream.protocol import ProtocolEvent
from langstream.transformers import StreamTransformer, transformer_requires_async

__all__ = [
    "ProtocolEvent",
    "StreamChannel",
    "StreamMux",
    "StreamTransformer",
    "TransformerFactory",
    "transformer_requires_async",
]
