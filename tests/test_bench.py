"""``python -m langstream bench`` (langstream._bench): runs end to end on tiny inputs.

No timing is asserted: only that every contender runs, the figures are
well formed and the backend swap is undone.
"""

from __future__ import annotations

import json
import platform

import pytest

from langstream import _bench
from langstream import eventlog as el


def test_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "300", "--rounds", "2", "--warmup", "0",
                        "--no-langgraph", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["n"] == 300
    assert doc["machine"]["python_implementation"] == platform.python_implementation()
    assert "cpu_count" in doc["machine"] and "loadavg_start" in doc["machine"]
    for lane in ("sync", "async"):
        table = doc["raw"][lane]
        assert _bench.BARE in table and _bench.LS_PY in table
        for samples in table.values():
            assert len(samples) == 2 and all(x > 0 for x in samples)
        summary = doc["summary"][lane][_bench.LS_PY]
        assert summary["p10"] <= summary["median"] <= summary["p90"]
        assert "langstream-python/bare" in doc["ratios"][lane]
    printed = capsys.readouterr()
    assert "ns/part median" in printed.out
    assert "[bench] sync  round 1/2" in printed.err


def test_bench_one_lane_and_backend(capsys):
    assert _bench.main(["--n", "100", "--rounds", "1", "--warmup", "0", "--async-only",
                        "--backend", "python", "--no-langgraph"]) == 0
    out = capsys.readouterr().out
    assert "| async |" in out and "| sync  |" not in out


def test_bench_memory_scenario(tmp_path):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "50", "--rounds", "1", "--warmup", "0", "--sync-only",
                        "--backend", "python", "--no-langgraph", "--memory",
                        "--memory-parts", "300", "--json", str(out)]) == 0
    mem = json.loads(out.read_text())["memory"][_bench.LS_PY]
    assert mem["parts"] == 300 and mem["maxlen"] == 64 and mem["raw_events"] >= 300


def test_use_backend_restores():
    saved = (el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND)
    pure = _bench.available_backends()["python"]
    with _bench.use_backend(pure):
        assert el.EventLog is pure.EventLog and el.BACKEND == "python"
    assert (el.EventLog, el.Cursor, el.SeqCounter, el.BACKEND) == saved


def test_summarize_matches_linear_percentiles():
    s = _bench.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 5.0
    assert s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(4.6)


def test_plot_without_matplotlib(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert _bench.main(["--plot", "x.png"]) == 2
    assert "pip install 'langstream[plot]'" in capsys.readouterr().err
