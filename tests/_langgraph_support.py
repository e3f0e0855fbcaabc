"""Whether the LangGraph integration tests can run here.

They need the ``langgraph`` extra (LangGraph and langchain-core).  Where it is
not installed they are skipped, except when it is required: with
``LANGSTREAM_REQUIRE_LANGGRAPH=1`` (``.ci/run`` sets it in its CPython leg) or
``CI=true`` on CPython, a missing extra FAILS them (never a silent skip).
"""

from __future__ import annotations

import os
import platform

import pytest


def langgraph_required() -> bool:
    """True where a missing ``langgraph`` extra is a failure."""
    if os.environ.get("LANGSTREAM_REQUIRE_LANGGRAPH", "") not in ("", "0"):
        return True
    return (
        os.environ.get("CI", "").lower() == "true"
        and platform.python_implementation() == "CPython"
        and os.environ.get("LANGSTREAM_REQUIRE_LANGGRAPH", "") != "0"
    )


def require_langgraph(module_level: bool = False) -> None:
    """Skip the calling test (or, with ``module_level``, the whole module)
    when LangGraph is missing, or fail when it is required here."""
    try:
        import langchain_core  # noqa: F401
        import langgraph.graph  # noqa: F401
        import langgraph.stream  # noqa: F401
    except ImportError as exc:
        if langgraph_required():
            pytest.fail(
                f"the 'langgraph' extra is required here but missing ({exc}); "
                "install it: pip install -e '.[langgraph]'",
                pytrace=False,
            )
        pytest.skip(f"the optional 'langgraph' extra is not installed ({exc})",
                    allow_module_level=module_level)
