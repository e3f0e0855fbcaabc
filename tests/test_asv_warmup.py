"""The asv suite's warm-up on PyPy (``asv_bench/benchmarks/_common.py``).

PyPy's JIT keeps compiling a scenario for several runs, longer than asv's
own warm-up; the scenario benchmarks call ``fn()`` until its last timings
agree (as ``python -m langstream bench --warmup auto`` does) before they
keep a best-of-three figure.  No timing is asserted: ``fn`` reports fake
durations through the module's clock.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "asv_bench" / "benchmarks" / "_common.py"


@pytest.fixture
def common(monkeypatch):
    spec = importlib.util.spec_from_file_location("langstream_asv_common", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "SMOKE", False)
    return module


class _FakeClock:
    """``fn()`` takes the next of ``durations`` (then the last one again)."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def clock(self):
        return self.now

    def fn(self):
        k = min(self.calls, len(self.durations) - 1)
        self.now += self.durations[k]
        self.calls += 1


def test_warm_up_stops_once_the_last_calls_agree(common, monkeypatch):
    fake = _FakeClock([9.0, 5.0, 2.0, 1.0, 1.05, 1.02, 1.0])
    monkeypatch.setattr(common, "_perf", fake.clock)
    monkeypatch.setattr(common, "WARMUP_MAX_SECONDS", 1e9)
    assert common.warm_up(fake.fn) == 6  # (1.0, 1.05, 1.02: within 10 %)


def test_warm_up_is_capped_by_calls_and_by_time(common, monkeypatch):
    fake = _FakeClock([1.0, 2.0] * 50)  # never steady
    monkeypatch.setattr(common, "_perf", fake.clock)
    monkeypatch.setattr(common, "WARMUP_MAX_SECONDS", 1e9)
    assert common.warm_up(fake.fn) == common.WARMUP_MAX_CALLS
    fake = _FakeClock([1.0, 2.0] * 50)
    monkeypatch.setattr(common, "_perf", fake.clock)
    monkeypatch.setattr(common, "WARMUP_MAX_SECONDS", 10.0)
    assert common.warm_up(fake.fn) == 7  # (1+2+1+2+1+2 = 9 s: one more call starts)


def test_best_of_warms_up_only_when_asked(common, monkeypatch):
    fake = _FakeClock([9.0, 5.0, 2.0, 1.0])
    monkeypatch.setattr(common, "_perf", fake.clock)
    monkeypatch.setattr(common, "WARMUP_MAX_SECONDS", 1e9)
    assert common.best_of(fake.fn, warm=False) == 2.0  # the three first calls
    fake = _FakeClock([9.0, 5.0, 2.0, 1.0])
    monkeypatch.setattr(common, "_perf", fake.clock)
    assert common.best_of(fake.fn, warm=True) == 1.0
    assert fake.calls == 6 + 3  # warm after 3 calls of 1.0 (4, 5, 6), then best of 3


def test_the_scenarios_warm_up_by_default_on_pypy_only(common):
    import platform

    pypy = platform.python_implementation() == "PyPy"
    assert common.PYPY is pypy
    assert common.best_of.__defaults__[-1] is pypy
    assert (common.SCENARIO_WARMUP_TIME > 1.0) if pypy else common.SCENARIO_WARMUP_TIME == -1
