"""``python -m langstream bench`` (langstream._bench): runs end to end on tiny inputs.

No timing is asserted: only that every scenario and contender runs, the
figures are well formed, the inputs have the advertised shape and the
backend swap is undone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from langstream import _bench, _compiled
from langstream import eventlog as el

TINY = ["--n", "120", "--run-parts", "30", "--runs", "3", "--rounds", "2", "--warmup", "0"]


def _has_langgraph() -> bool:
    return _bench._langgraph() is not None


def test_bench_runs_every_scenario(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main([*TINY, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["raw"]) == set(_bench.SCENARIOS) >= {"S", "R", "M", "D", "C"}
    assert doc["config"]["n"] == 120
    assert doc["config"]["scenarios"]["C"] == {
        "title": _bench.SCENARIOS["C"].title, "parts": 30, "runs": 3}
    assert doc["config"]["scenarios"]["M"]["parts"] == 120
    assert doc["machine"]["python_implementation"] == platform.python_implementation()
    assert "cpu_count" in doc["machine"] and "loadavg_start" in doc["machine"]
    # which figures came from compiled modules is on record
    assert doc["machine"]["langstream_compiled_modules"] == list(_compiled.compiled_modules())
    for scen, lanes in doc["raw"].items():
        expected_lanes = {"async"} if scen == "C" else {"sync", "async"}
        assert set(lanes) == expected_lanes, scen
        for lane, table in lanes.items():
            assert _bench.BARE in table and _bench.LS_PY in table
            if _has_langgraph():
                assert _bench.LG in table
            for samples in table.values():
                assert len(samples) == 2 and all(x > 0 for x in samples)
            s = doc["summary"][scen][lane][_bench.LS_PY]
            assert s["p10"] <= s["median"] <= s["p90"]
            assert "langstream-python/bare" in doc["ratios"][scen][lane]
            # the bare generator read every part of every run
            parts, runs = doc["config"]["scenarios"][scen]["parts"], doc["config"]["scenarios"][scen]["runs"]
            assert doc["items"][scen][lane][_bench.BARE] == parts * runs
    printed = capsys.readouterr()
    assert "compiled modules: " in printed.out
    assert "ns per part" in printed.out and "same transformer pipeline" in printed.out
    assert "[bench] S sync  round 1/2" in printed.err


def test_langstream_reads_what_langgraph_reads_at_the_root(tmp_path):
    """S and R: both run streams read the same number of items (same pipeline)."""
    if not _has_langgraph():
        pytest.skip("langgraph is not installed")
    out = tmp_path / "bench.json"
    assert _bench.main([*TINY, "--scenario", "S", "--json", str(out)]) == 0
    items = json.loads(out.read_text())["items"]["S"]
    for lane in ("sync", "async"):
        assert items[lane][_bench.LG] == items[lane][_bench.LS_PY] == 120


def test_bench_one_lane_one_scenario_one_backend(capsys):
    assert _bench.main(["--n", "100", "--rounds", "1", "--warmup", "0", "--async-only",
                        "--backend", "python", "--no-langgraph", "--scenario", "m"]) == 0
    out = capsys.readouterr().out
    assert "| M        | async" in out and "| sync" not in out and "| S " not in out


def test_process_clock(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "60", "--rounds", "1", "--warmup", "0", "--no-langgraph",
                        "--backend", "python", "--scenario", "S", "--clock", "process",
                        "--json", str(out)]) == 0
    assert json.loads(out.read_text())["config"]["clock"] == "process"
    assert "CPU time of this process" in capsys.readouterr().out
    assert _bench._perf is __import__("time").perf_counter_ns  # restored


def test_unknown_scenario_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _bench.main(["--scenario", "X"])
    assert exc.value.code == 2
    assert "unknown scenario 'X'" in capsys.readouterr().err


@pytest.mark.parametrize("interpreters", [False, True])
def test_a_scenario_without_the_lane_asked_for_is_a_usage_error(capsys, interpreters):
    """C runs async only: ``--scenario C --sync-only`` has nothing to run, and
    says so instead of printing an empty table."""
    argv = ["--scenario", "C", "--sync-only", "--no-langgraph", "--n", "40", "--rounds", "1"]
    assert _bench.main(argv + (["--interpreters"] if interpreters else [])) == 2
    err = capsys.readouterr().err
    assert "--sync-only: no sync lane in --scenario C" in err


def test_agent_parts_shape():
    parts = _bench.agent_parts(400, depth=5)
    assert len(parts) == 400
    depths = {len(p["ns"]) for p in parts}
    assert depths == {0, 1, 2, 3, 4, 5}
    # every task start has a result with the same id at the same namespace, in order
    open_tasks = {}
    for p in parts:
        if p["type"] == "tasks":
            key = (p["ns"], p["data"]["id"])
            if "input" in p["data"]:
                assert key not in open_tasks
                open_tasks[key] = p
            else:
                assert key in open_tasks
                del open_tasks[key]
    # a subgraph's namespace segment names its caller's task
    for p in parts:
        if p["ns"]:
            name, tid = p["ns"][-1].split(":")
            assert name.startswith("sub")
    m = _bench.agent_parts(200)
    assert {len(p["ns"]) for p in m} == {0, 1}
    assert {p["type"] for p in m} == {"values", "tasks", "custom", "updates"}


def test_producer_yields_fresh_shallow_copies():
    parts = _bench.values_parts(3)
    got = list(_bench.producer(parts))
    assert got == parts
    assert all(a is not b and a["data"] is b["data"] for a, b in zip(got, parts))


def test_register_scenario_hook(tmp_path):
    """A scenario registered from outside (the token scenario's way in) runs like the others."""
    scen = _bench.Scenario("Z", "values, again", _bench.values_parts,
                           _bench.consume_values, _bench.aconsume_values)
    _bench.register_scenario(scen)
    try:
        out = tmp_path / "bench.json"
        assert _bench.main(["--n", "50", "--rounds", "1", "--warmup", "0", "--no-langgraph",
                            "--backend", "python", "--scenario", "Z", "--json", str(out)]) == 0
        assert set(json.loads(out.read_text())["raw"]) == {"Z"}
    finally:
        del _bench.SCENARIOS["Z"]


def test_bench_memory_scenario(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "50", "--rounds", "1", "--warmup", "0", "--sync-only",
                        "--scenario", "S", "--backend", "python", "--no-langgraph", "--memory",
                        "--memory-parts", "300", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    mem = doc["memory"][_bench.LS_PY]
    assert mem["parts"] == 300 and mem["maxlen"] == 64 and mem["raw_events"] >= 300
    growth = doc["memory_growth"][_bench.LS_PY]
    assert [g["parts"] for g in growth] == [6, 60]
    idle = doc["idle_run_bytes"][_bench.LS_PY]
    objects = doc["idle_run_objects"][_bench.LS_PY]
    if platform.python_implementation() == "CPython":
        assert idle > 0 and objects > 0
    else:  # (neither tracemalloc nor a list of the collector's objects)
        assert idle is None and objects is None
    assert "per idle open run" in capsys.readouterr().out


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="gc.get_objects lists the tracked objects on CPython only")
def test_idle_run_objects_counts_what_each_run_holds():
    """The per-run count does not depend on how many runs are opened (it is
    what one run holds, not the measurement's own objects), and one more
    tracked object made with each run reads one more."""
    import gc

    from langstream import run_stream

    backends = _bench.available_backends()
    few = _bench.idle_run_objects(backends, runs=20)
    many = _bench.idle_run_objects(backends, runs=100)
    assert set(few) == set(many) == {_bench.LS_C if k == "c" else _bench.LS_PY for k in backends}
    for key, per_run in few.items():
        assert per_run > 10
        assert abs(per_run - many[key]) <= 1, (key, per_run, many[key])

    real = run_stream.astream_events
    held = []  # (made before the count: only what is appended to it counts)

    def holding_one_more(*args, **kwargs):
        # (not an attribute of the run: a new one can give the run an
        # instance dict of its own, one more object than asked for)
        held.append([object()])  # (a list is tracked, the plain object is not)
        return real(*args, **kwargs)

    run_stream.astream_events = holding_one_more
    try:
        more = _bench.idle_run_objects(backends, runs=20)
    finally:
        run_stream.astream_events = real
    assert gc.isenabled()
    for key, per_run in few.items():
        assert abs(more[key] - per_run - 1) < 0.01, (key, per_run, more[key])


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


def test_plot_one_chart_per_scenario(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert _bench.main(["--n", "60", "--rounds", "1", "--warmup", "0", "--no-langgraph",
                        "--backend", "python", "--scenario", "S", "--scenario", "M",
                        "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_title_names_every_ratio():
    title = _bench._ratio_title("M", {"sync": {"langgraph/langstream-c": 8.0,
                                               "langstream-c/bare": 3.5}})
    assert title.startswith("M") and "LG/ls-c 8.0x" in title and "ls-c/bare 3.5x" in title


def test_plot_without_matplotlib(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert _bench.main(["--plot", "x.png"]) == 2
    assert "pip install -e '.[plot]' in a checkout" in capsys.readouterr().err


def test_interpreters_mode(tmp_path, capsys):
    """One subprocess per interpreter (the PyPy one where it exists), one merged table."""
    out = tmp_path / "interp.json"
    assert _bench.main(["--interpreters", "--n", "60", "--rounds", "1", "--warmup", "0",
                        "--no-langgraph", "--scenario", "S", "--sync-only",
                        "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    labels = list(doc["interpreters"])
    assert any(label.endswith("(pure)") for label in labels)
    table = doc["merged"]["table"]["S"]["sync"]
    for label in labels:
        assert f"{label} langstream" in table and f"{label} bare" in table
    printed = capsys.readouterr().out
    assert "ls/bare" in printed and all(label in printed for label in labels)


def test_interpreters_mode_runs_each_scenario_in_a_fresh_process(tmp_path, capsys):
    """A scenario measured after another in one process would run on the JIT
    traces (and heap) the other left: each one gets its own, per interpreter."""
    out = tmp_path / "interp.json"
    assert _bench.main(["--interpreters", "--n", "40", "--rounds", "1", "--warmup", "0",
                        "--no-langgraph", "--scenario", "S", "--scenario", "R",
                        "--scenario", "C", "--sync-only", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["interpreters"]
    for label, run in doc["interpreters"].items():
        pids = run["machine"]["pids"]
        # (C has no sync lane: no process for it)
        assert sorted(pids) == ["R", "S"], label
        assert pids["S"] != pids["R"] and os.getpid() not in pids.values(), label
        assert sorted(run["summary"]) == ["R", "S"], label
    table = doc["merged"]["table"]
    assert sorted(table) == ["R", "S"] and all(list(table[k]) == ["sync"] for k in table)
    printed = capsys.readouterr().out
    assert "each scenario in a fresh subprocess" in printed


def test_merge_scenario_docs_keeps_every_scenario_and_both_loads():
    def doc(scen, pid, start, end):
        return {"machine": {"pid": pid, "loadavg_start": start, "loadavg_end": end},
                "config": {"n": 10, "scenarios": {scen: {"parts": 10}},
                           "warmup_rounds": {scen: {"sync": 1}}},
                "raw": {scen: {"sync": {}}}, "items": {scen: {"sync": {}}},
                "summary": {scen: {"sync": {}}}, "ratios": {scen: {"sync": {}}},
                "targets": [f"{scen} target"]}

    merged = _bench.merge_scenario_docs([doc("S", 11, [0.1], [0.2]),
                                         doc("M", 12, [0.3], [0.4])])
    assert merged["machine"]["pids"] == {"S": 11, "M": 12}
    assert merged["machine"]["loadavg_start"] == [0.1]
    assert merged["machine"]["loadavg_end"] == [0.4]
    for key in ("raw", "items", "summary", "ratios"):
        assert list(merged[key]) == ["S", "M"], key
    assert list(merged["config"]["scenarios"]) == ["S", "M"]
    assert merged["config"]["warmup_rounds"] == {"S": {"sync": 1}, "M": {"sync": 1}}
    assert merged["targets"] == ["S target", "M target"]


def test_interpreters_configs_put_the_repo_on_pythonpath():
    for label, exe, extra, env in _bench.interpreter_configs(None):
        assert env["PYTHONPATH"].split(os.pathsep)[0] == _bench._repo_root()
        assert "--backend" in extra
        if "(pure)" in label:
            assert env["LANGSTREAM_NO_EXTENSIONS"] == "1"


def test_bench_command_line_entry():
    proc = subprocess.run([sys.executable, "-m", "langstream", "bench", "--n", "40", "--rounds",
                           "1", "--warmup", "0", "--no-langgraph", "--scenario", "R"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| R " in proc.stdout


# ------------------------------------------------------------- warm-up


def test_steady_needs_the_last_rounds_within_the_spread():
    n = _bench.STEADY_ROUNDS
    assert not _bench.steady([100.0] * (n - 1))  # too few figures yet
    assert _bench.steady([900.0, 500.0] + [100.0] * n)  # only the last ones count
    edge = 100.0 * (1 + _bench.STEADY_SPREAD)
    assert _bench.steady([100.0] * (n - 1) + [edge])
    assert not _bench.steady([100.0] * (n - 1) + [edge * 1.01])


def test_auto_warmup_stops_when_steady_and_is_recorded(tmp_path, capsys, monkeypatch):
    """``--warmup auto`` warms up until every contender is steady (at least
    the steady window), records the rounds run, and never more than the cap."""
    monkeypatch.setattr(_bench, "AUTO_WARMUP_MAX", 4)
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "60", "--rounds", "1", "--warmup", "auto", "--no-langgraph",
                        "--backend", "python", "--scenario", "S", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["warmup"] == "auto"
    for lane in ("sync", "async"):
        warmed = doc["config"]["warmup_rounds"]["S"][lane]
        assert _bench.STEADY_ROUNDS <= warmed <= 4
        assert len(doc["raw"]["S"][lane][_bench.LS_PY]) == 1
    err = capsys.readouterr().err
    assert "[bench] S sync  warm-up 3" in err and "warm-up 5" not in err


def test_a_fixed_warmup_runs_that_many_rounds(tmp_path):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "60", "--rounds", "1", "--warmup", "2", "--no-langgraph",
                        "--backend", "python", "--scenario", "R", "--sync-only",
                        "--json", str(out)]) == 0
    assert json.loads(out.read_text())["config"]["warmup_rounds"] == {"R": {"sync": 2}}


@pytest.mark.parametrize("bad", ["-1", "soon", "1.5"])
def test_a_bad_warmup_names_the_option_and_the_value(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        _bench.main(["--warmup", bad])
    assert exc.value.code == 2
    assert f"--warmup must be a count >= 0 or 'auto', got {bad!r}" in capsys.readouterr().err


def test_gc_threshold_is_applied_recorded_and_restored(tmp_path, capsys):
    import gc

    out = tmp_path / "bench.json"
    argv = ["--n", "60", "--run-parts", "20", "--runs", "3", "--rounds", "1", "--warmup", "0",
            "--no-langgraph", "--scenario", "C", "--gc-threshold", "900,11,99",
            "--json", str(out)]
    if not hasattr(gc, "set_threshold"):  # PyPy: nothing to set, said so
        assert _bench.main(argv) == 2
        assert "has no thresholds to set" in capsys.readouterr().err
        return
    before = gc.get_threshold()
    seen = []

    scenario = _bench.SCENARIOS["C"]
    real = scenario.aconsume

    async def aconsume(run):
        seen.append(gc.get_threshold())
        return await real(run)

    scenario.aconsume = aconsume
    try:
        assert _bench.main(argv) == 0
    finally:
        scenario.aconsume = real
    assert seen and set(seen) == {(900, 11, 99)}
    assert gc.get_threshold() == before  # restored
    assert json.loads(out.read_text())["machine"]["gc_threshold"] == [900, 11, 99]
    assert "gc thresholds: 900, 11, 99  (--gc-threshold)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["", "7,x", "1,2,3,4", "-1"])
def test_a_bad_gc_threshold_names_the_option_and_the_value(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        _bench.main(["--gc-threshold", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--gc-threshold must be one to three counts >= 0" in err and f"got {bad!r}" in err
