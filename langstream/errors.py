"""Exceptions shared by every langstream layer.

They live here, once, so that both event-log backends (the compiled
``langstream._eventlog_c`` and the pure-Python ``langstream._eventlog_py``)
raise the very same classes.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["StreamLagError"]


class StreamLagError(RuntimeError):
    """A cursor on a bounded event log fell behind and lost items.

    Raised by the cursor's next read after the log evicted items that the
    cursor had not read yet.  ``missed`` is how many it lost.  The cursor stays
    usable: the following read returns the oldest item still retained.
    """

    def __init__(self, missed: int, message: Optional[str] = None) -> None:
        missed = int(missed)
        if message is None:
            message = (
                f"cursor fell behind: {missed} item(s) evicted before it read "
                "them; read faster, or give the log a larger maxlen (or None)"
            )
        super().__init__(missed, message)
        #: Number of items the cursor lost since its previous read.
        self.missed = missed
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keeps pickling/copy faithful to __init__'s signature
        return (type(self), (self.missed, self.message))
