"""``python -m langstream bench redis`` runs end to end (a smoke test, no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from redis_helpers import redis_url  # noqa: F401 - fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_redis_reports_every_scenario(redis_url):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-m", "langstream", "bench", "redis", "--redis", redis_url, "-n", "300",
         "--runs", "5", "--rounds", "1", "--rate", "500", "--seconds", "0.3", "--json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.strip().startswith("publish, one run") for line in lines)
    assert any("5 runs in parallel" in line for line in lines)
    figures = json.loads(lines[-1])
    assert set(figures["one_run"]) == {"publish", "publish_bare", "read", "read_bare"}
    assert set(figures["parallel"]) == {"publish", "publish_bare", "read", "read_bare"}
    assert figures["latency"]["events"] == 150
    assert 0 < figures["latency"]["p50_ms"] <= figures["latency"]["p99_ms"]


def test_bench_redis_rejects_bad_counts(redis_url):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "langstream", "bench", "redis", "--redis",
                          redis_url, "-n", "0"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 2 and "-n must be >= 1, got 0" in out.stderr
