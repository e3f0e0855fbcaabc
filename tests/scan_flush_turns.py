"""Scan: how often the async pump's flush turns make langstream differ from LangGraph.

Not a test (pytest does not collect it): a measurement behind the setting
``langstream.run_stream._FLUSH_TURNS_MAX`` and the README's "Deliberate
differences".  For ``COUNT`` seeds drawn from ``random.Random(START)``, each
run of the async differential property (``test_langgraph_differential``), with
and without input snapshots, is observed through LangGraph once and through
langstream once per setting; every run that differs is counted as one where
langstream's consumer saw more than LangGraph's, or not (it missed something
LangGraph delivered, or saw something else).

    python tests/scan_flush_turns.py START COUNT 4,6,8

About 12 minutes for 20,000 seeds and four settings on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import warnings
from typing import Any, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

warnings.filterwarnings("ignore")

import test_langgraph_differential as differential  # noqa: E402
from _agent_streams import agent_stream  # noqa: E402

from langstream import run_stream  # noqa: E402


def _size(value: Any) -> int:
    """How many items an observation holds (values, handles, fields)."""
    if isinstance(value, dict):
        return 1 + sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_size(v) for v in value)
    return 1


def scan(start: int, count: int, settings: List[int]) -> Dict[int, Dict[str, List[Tuple[int, int]]]]:
    found: Dict[int, Dict[str, List[Tuple[int, int]]]] = {
        turns: {"more": [], "other": []} for turns in settings}
    saved = run_stream._FLUSH_TURNS_MAX
    rng = random.Random(start)
    try:
        for _ in range(count):
            seed = rng.randrange(2**32)
            for snapshots in (False, True):
                parts, fails = agent_stream(random.Random(seed), snapshots)
                lg = asyncio.run(differential.observe_async("lg", parts, fails, seed))
                for turns in settings:
                    run_stream._FLUSH_TURNS_MAX = turns
                    ls = asyncio.run(differential.observe_async("ls", parts, fails, seed))
                    if ls == lg:
                        continue
                    keys = [key for key in lg if ls.get(key) != lg[key]]
                    more = _size({k: ls.get(k) for k in keys}) > _size({k: lg[k] for k in keys})
                    found[turns]["more" if more else "other"].append((seed, int(snapshots)))
    finally:
        run_stream._FLUSH_TURNS_MAX = saved
    return found


def main(argv: List[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: python tests/scan_flush_turns.py START COUNT TURNS[,TURNS...]")
    start, count = int(argv[0]), int(argv[1])
    settings = [int(turns) for turns in argv[2].split(",")]
    for turns, kinds in scan(start, count, settings).items():
        print(f"{turns} turns: {len(kinds['more']) + len(kinds['other'])} of {2 * count} runs "
              f"differ; langstream saw more in {len(kinds['more'])}; the others "
              f"(seed, snapshots): {kinds['other'][:10]}")


if __name__ == "__main__":
    main(sys.argv[1:])
