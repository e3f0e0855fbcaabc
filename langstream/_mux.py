"""Alias of ``langstream.mux`` under LangGraph's module name (``langgraph.stream._mux``)."""

from langstream.mux import StreamMux, TransformerFactory

__all__ = ["StreamMux", "TransformerFactory"]
