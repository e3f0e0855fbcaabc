"""Alias of ``langstream.channel`` under LangGraph's module name
(``langgraph.stream.stream_channel``)."""

from langstream.channel import StreamChannel

__all__ = ["StreamChannel"]
