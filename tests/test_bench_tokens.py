"""``python -m langstream bench --tokens N`` runs end to end on a tiny input.

No timing is asserted: only that every contender read every token (the
scenario checks the count itself) and the figures are reported.
"""

from __future__ import annotations

import json

from _langgraph_support import require_langgraph

from langstream import _bench


def test_bench_tokens_scenario(tmp_path, capsys):
    require_langgraph()
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "100", "--rounds", "1", "--warmup", "0", "--backend", "python",
                        "--tokens", "50", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    for lane in ("sync", "async"):
        table = doc["tokens"]["graph"][lane]
        assert set(table) == {"graph.stream", _bench.LS_PY, _bench.LG}
        assert all(len(v) == 1 and v[0] > 0 for v in table.values())
        replay = doc["tokens"]["replay"][lane]
        assert set(replay) == {_bench.LS_PY, _bench.LG}
        assert all(len(v) == 1 and v[0] > 0 for v in replay.values())
    printed = capsys.readouterr().out
    assert "token scenario: a fake model streams 50 tokens" in printed
    assert "streaming layer alone" in printed
    assert "ns/token median" in printed


def test_bench_without_tokens_reports_none(tmp_path):
    out = tmp_path / "bench.json"
    assert _bench.main(["--n", "50", "--rounds", "1", "--warmup", "0", "--sync-only",
                        "--backend", "python", "--no-langgraph", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["tokens"] is None
