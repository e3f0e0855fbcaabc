"""langstream: the streaming layer for in-process agent runs."""

from langstream.errors import StreamLagError

__all__ = ["StreamLagError"]
