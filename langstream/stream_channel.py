"""Alias of ``langstream.channel`` under LangGraph's module name
(``langgraph.stream.stream_channel``)."""

from langstream.channel import StreamChannel, T

__all__ = ["StreamChannel", "T"]
