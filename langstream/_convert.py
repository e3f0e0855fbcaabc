"""Alias of the converter under LangGraph's module name (``langgraph.stream._convert``)."""

from langstream.protocol import ProtocolEvent, StreamPart, convert_to_protocol_event

__all__ = ["ProtocolEvent", "StreamPart", "convert_to_protocol_event"]
