"""The compiled sync pump (``langstream._pump_c``) is used with the C event log and
behaves exactly like the pure-Python ``GraphRunStream._pump_next``."""

from __future__ import annotations

import platform
from collections import OrderedDict

import pytest

import langstream
from langstream.run_stream import GraphRunStream


def test_pump_follows_the_backend(backend):
    run = langstream.stream_events(iter(()))
    if backend == "c":
        if platform.python_implementation() == "CPython":
            try:
                from langstream._pump_c import SyncPump
            except ImportError as exc:  # the build is broken: never a silent skip
                pytest.fail(f"langstream._pump_c is missing on CPython: {exc}")
            assert isinstance(run._pump_next, SyncPump)
    else:
        assert run._pump_next.__func__ is GraphRunStream._pump_next


def _outcome(parts):
    run = langstream.stream_events(parts, transformers=[langstream.UpdatesTransformer])
    values = iter(run.values)
    updates = iter(run.updates)
    got = []
    try:
        for v in values:
            got.append(("values", v))
        got.extend(("updates", u) for u in updates)
        return got, run.output, None
    except Exception as exc:  # noqa: BLE001 - compared below
        return got, None, (type(exc), str(exc))


MAPPING_PARTS = [
    OrderedDict(type="values", ns=(), data={"n": 1}, interrupts=()),
    {"type": "updates", "ns": [], "data": {"node": {"n": 2}}},
    {"type": "values", "ns": ("child:1",), "data": {"n": 9}, "interrupts": ()},
    {"type": "values", "ns": (), "data": {"n": 2}, "interrupts": [{"value": "ask"}]},
]


@pytest.mark.parametrize("bad", [
    {"type": "values", "ns": "oops", "data": 1},
    {"type": "values", "ns": (1,), "data": 1},
    {"type": 3, "ns": (), "data": 1},
    {"ns": (), "data": 1},
    {"type": "values", "ns": ()},
    {"type": "values", "ns": (), "data": 1, "interrupts": "x"},
    ["not", "a", "mapping"],
])
def test_same_outcome_on_both_pumps(backend, bad):
    got, output, error = _outcome(iter(MAPPING_PARTS + [bad]))
    assert [v for k, v in got if k == "values"] == [{"n": 1}, {"n": 2}]
    assert output is None and error is not None
    assert error[0] in (TypeError, ValueError)
    # the message names the offending field or the part
    assert any(word in error[1] for word in ("'ns'", "'type'", "'data'", "'interrupts'", "mapping"))


def test_mapping_parts_and_interrupts(backend):
    run = langstream.stream_events(iter(MAPPING_PARTS))
    assert list(run.values) == [{"n": 1}, {"n": 2}]
    assert run.output == {"n": 2}
    assert run.interrupted is True and run.interrupts == [{"value": "ask"}]


def test_pump_called_or_pulled_by_a_cursor(backend):
    """A cursor pulls the run's pump (on the C backend through the compiled
    pump's C entry, not a Python call); calling the pump from Python is the
    same step: both advance one part, both say False once the run ended,
    both raise the re-entry error from inside a step, and the graph's error
    reaches the reader either way."""
    seen = []

    def graph():
        for n in range(4):
            yield {"type": "values", "ns": (), "data": {"n": n}}
            if n == 2:
                try:
                    run._pump_next()  # the graph pulling its own run
                except RuntimeError as exc:
                    seen.append(str(exc))
        raise KeyError("boom")

    run = langstream.stream_events(graph())
    values = iter(run.values)
    assert run._pump_next() is True  # a Python call: one part
    assert next(values) == {"n": 0}
    assert next(values) == {"n": 1}  # pulled by the cursor
    assert run._pump_next() is True
    assert next(values) == {"n": 2}
    assert next(values) == {"n": 3}
    assert seen and "re-entrant pump" in seen[0]
    with pytest.raises(KeyError, match="boom") as first:
        next(values)
    assert run._pump_next() is False
    with pytest.raises(KeyError) as again:  # (a failed log: every read)
        next(values)
    assert again.value is first.value
