"""Measure push+read cost per item of the event-log backends (no asv needed).

    python asv_bench/measure.py            # every backend available here
    LANGSTREAM_NO_EXTENSIONS=1 python asv_bench/measure.py

Prints ns/item for: one cursor (push then read each item), a batch pattern
(push 64, read 64), and two cursors; best of several repeats.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time

try:
    import langstream  # noqa: F401  (installed)
except ImportError:  # run from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N = 200_000
REPEAT = 5


def _one_by_one(mod, n):
    log = mod.EventLog()
    cur = log.cursor()
    push = log.push
    nxt = cur.__next__
    item = object()
    t0 = time.perf_counter()
    for _ in range(n):
        push(item)
        nxt()
    return time.perf_counter() - t0


def _batched(mod, n):
    log = mod.EventLog()
    cur = log.cursor()
    push = log.push
    item = object()
    batch = range(64)
    t0 = time.perf_counter()
    for _ in range(n // 64):
        for _ in batch:
            push(item)
        for _ in cur:
            pass
    return time.perf_counter() - t0


def _two_cursors(mod, n):
    log = mod.EventLog()
    a, b = log.cursor(), log.cursor()
    push = log.push
    na, nb = a.__next__, b.__next__
    item = object()
    t0 = time.perf_counter()
    for _ in range(n):
        push(item)
        na()
        nb()
    return time.perf_counter() - t0


def _bounded_lagging(mod, n):
    log = mod.EventLog(maxlen=1024)
    log.cursor()  # never reads: every push past 1024 evicts
    push = log.push
    item = object()
    t0 = time.perf_counter()
    for _ in range(n):
        push(item)
    return time.perf_counter() - t0


CASES = {
    "push+read (1 cursor)": _one_by_one,
    "push 64 + read 64": _batched,
    "push+read (2 cursors)": _two_cursors,
    "push, bounded, evicting": _bounded_lagging,
}


def main() -> None:
    backends = ["python"]
    if platform.python_implementation() == "CPython" and os.environ.get(
        "LANGSTREAM_NO_EXTENSIONS", ""
    ) in ("", "0"):
        backends.insert(0, "c")
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    for name in backends:
        mod = importlib.import_module(
            "langstream._eventlog_c" if name == "c" else "langstream._eventlog_py"
        )
        for label, fn in CASES.items():
            fn(mod, N // 10)  # warm-up (and JIT on PyPy)
            best = min(fn(mod, N) for _ in range(REPEAT))
            print(f"{impl:16} {name:7} {label:26} {best / N * 1e9:8.1f} ns/item")


if __name__ == "__main__":
    main()
