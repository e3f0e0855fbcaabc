"""Shared pytest configuration.

Backend selection
-----------------
* ``eventlog`` fixture: parametrized over the two event-log backends and
  yields the backend *module* (``langstream._eventlog_c`` or
  ``langstream._eventlog_py``); test ids end in ``[c]`` / ``[python]``.
* ``backend`` fixture: parametrized the same way; monkeypatches
  ``langstream.eventlog`` (``EventLog``, ``Cursor``, ``SeqCounter``,
  ``BACKEND``) so that the whole stack, which reads ``_el.EventLog`` at call
  time, runs on the chosen backend.  Yields the backend name.

The C backend is skipped only where it cannot exist: on a Python other than
CPython, with ``--no-c-extensions``, or when ``LANGSTREAM_NO_EXTENSIONS`` is
set.  On CPython without those switches a missing compiled module FAILS the
tests that need it (the build is broken; never a silent skip).
"""

from __future__ import annotations

import importlib
import os
import platform

import pytest

BACKENDS = ("c", "python")
_MODULES = {"c": "langstream._eventlog_c", "python": "langstream._eventlog_py"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="skip the compiled event-log backend (test the pure-Python one only)",
    )


def c_backend_skip_reason(config: pytest.Config) -> "str | None":
    """Why the C backend is not expected here, or None if it must be tested."""
    if platform.python_implementation() != "CPython":
        return f"no C backend on {platform.python_implementation()}"
    if config.getoption("--no-c-extensions"):
        return "--no-c-extensions given"
    if os.environ.get("LANGSTREAM_NO_EXTENSIONS", "") not in ("", "0"):
        return "LANGSTREAM_NO_EXTENSIONS is set"
    return None


def load_backend(name: str, config: pytest.Config):
    """Import and return the event-log module of backend ``name`` ("c" or
    "python"), skipping or failing as described in this module's docstring."""
    if name == "c":
        reason = c_backend_skip_reason(config)
        if reason is not None:
            pytest.skip(reason)
        try:
            return importlib.import_module(_MODULES["c"])
        except ImportError as exc:
            pytest.fail(
                "the C event-log backend (langstream._eventlog_c) is missing on "
                f"CPython: {exc}. The extension did not build; rebuild it with "
                "`pip install -v -e .` (or `python setup.py build_ext --inplace`) "
                "and read the build log, or run the tests with "
                "--no-c-extensions / LANGSTREAM_NO_EXTENSIONS=1 on purpose.",
                pytrace=False,
            )
    return importlib.import_module(_MODULES[name])


@pytest.fixture(params=BACKENDS)
def eventlog(request: pytest.FixtureRequest):
    """The event-log backend module, once per backend."""
    return load_backend(request.param, request.config)


@pytest.fixture
def backend_name(eventlog) -> str:
    """Name ("c" or "python") of the module the ``eventlog`` fixture gave."""
    return "c" if eventlog.__name__.endswith("_c") else "python"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the whole stack on one backend: patches ``langstream.eventlog``."""
    module = load_backend(request.param, request.config)
    import langstream.eventlog as el

    monkeypatch.setattr(el, "EventLog", module.EventLog)
    monkeypatch.setattr(el, "Cursor", module.Cursor)
    monkeypatch.setattr(el, "SeqCounter", module.SeqCounter)
    monkeypatch.setattr(el, "BACKEND", request.param)
    return request.param
