"""Alias under LangGraph's module name (``langgraph.stream._types``)."""

from langstream.protocol import ProtocolEvent
from langstream.transformers import StreamTransformer, transformer_requires_async

__all__ = ["ProtocolEvent", "StreamTransformer", "transformer_requires_async"]
