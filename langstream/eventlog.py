"""The event log: ``SeqCounter``, ``EventLog``, ``Cursor`` (and ``StreamLagError``).

Picks a backend once, at import:

* ``"c"``: the compiled ``langstream._eventlog_c`` (a C ring buffer behind
  Cython), used by default on CPython;
* ``"python"``: the pure-Python twin ``langstream._eventlog_py``, used when the
  environment variable ``LANGSTREAM_NO_EXTENSIONS`` is set (to anything but
  ``""`` or ``"0"``), or when the compiled module is missing (PyPy, or no C
  compiler at install time).

``BACKEND`` says which one was chosen.  Both backends behave the same and
raise the same exception classes (from ``langstream.errors``).  Higher layers
use ``from langstream import eventlog as _el`` and ``_el.EventLog`` so that the
test-suite can swap the backend at run time.
"""

from __future__ import annotations

import os
import platform
import warnings
from typing import TYPE_CHECKING

from langstream.errors import StreamLagError

__all__ = ["BACKEND", "SeqCounter", "EventLog", "Cursor", "StreamLagError"]


def _extensions_disabled() -> bool:
    value = os.environ.get("LANGSTREAM_NO_EXTENSIONS", "")
    return value not in ("", "0")


def _built_wanting_extensions() -> bool:
    """False when the installed build left the extensions out on purpose
    (``setup.py`` records it in ``langstream/_build_info.py``)."""
    try:
        from langstream import _build_info  # type: ignore[attr-defined]
    except ImportError:  # a source checkout: nothing recorded
        return True
    return bool(getattr(_build_info, "EXTENSIONS_WANTED", True))


if TYPE_CHECKING:
    from langstream._eventlog_py import Cursor, EventLog, SeqCounter

    BACKEND: str
else:
    if _extensions_disabled():
        from langstream._eventlog_py import Cursor, EventLog, SeqCounter

        BACKEND = "python"
    else:
        try:
            from langstream._eventlog_c import Cursor, EventLog, SeqCounter

            BACKEND = "c"
        except ImportError as exc:
            from langstream._eventlog_py import Cursor, EventLog, SeqCounter

            BACKEND = "python"
            if platform.python_implementation() == "CPython" and _built_wanting_extensions():
                # Expected on PyPy, or after a build with LANGSTREAM_NO_EXTENSIONS
                # set; otherwise it means the build fell back.
                warnings.warn(
                    "langstream: the C event-log extension is not available "
                    f"({exc}); using the pure-Python backend. For speed, install "
                    "a C compiler and reinstall (from a source checkout: "
                    "pip install -e .), or set LANGSTREAM_NO_EXTENSIONS=1 to "
                    "silence this warning.",
                    RuntimeWarning,
                    stacklevel=2,
                )
