"""The sync pump is not re-entrant: pulling a run from inside one of its own
steps (a transformer's ``process()`` reading ``run.output`` or iterating the run
or a projection, or the graph iterating its own run) fails the run with a
``RuntimeError`` that says why, on both backends (pure and compiled pump).

Before: nested pumping silently dropped the event being dispatched from the
main log (it entered a log the nested pump had already closed), and a graph
that pulled its own run got Python's "generator already executing"
``ValueError``.  The async lane's twin is ``test_reliability``'s item-6 test.
"""

from __future__ import annotations

import pytest

from helpers import values
from langstream import StreamTransformer, stream_events


def _self_pulling(holder, how):
    class SelfPulling(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            if event["method"] == "values" and not holder.get("done"):
                holder["done"] = True
                run = holder["run"]
                if how == "output":
                    run.output
                elif how == "values":
                    for _ in run.values:
                        pass
                else:
                    for _ in run:
                        pass
            return True

    return SelfPulling


# (a projection pulled both by the consumer and from process() is the
# one-subscriber error instead, so those two pairs are not here)
PAIRS = [(how, consumer) for how in ("output", "values", "run")
         for consumer in ("output", "values", "run") if how == "output" or how != consumer]


@pytest.mark.parametrize("how,consumer", PAIRS)
def test_process_pulling_its_own_run_fails_the_run_clearly(backend, how, consumer):
    holder = {}
    parts = [values({"i": i}) for i in range(3)]
    run = holder["run"] = stream_events(
        (p for p in parts), transformers=[_self_pulling(holder, how)])
    with pytest.raises(RuntimeError, match="re-entrant pump") as info:
        if consumer == "output":
            run.output
        elif consumer == "values":
            list(run.values)
        else:
            list(run)
    assert "process()" in str(info.value)
    # the run failed with that error: every later read says so
    with pytest.raises(RuntimeError, match="re-entrant pump"):
        run.output


def test_graph_iterating_its_own_run_is_a_clear_error(backend):
    holder = {}

    def graph():
        yield values({"i": 0})
        for _ in holder["run"].values:  # the graph pulling the run it feeds
            pass
        yield values({"i": 1})

    run = holder["run"] = stream_events(graph())
    items = []
    with pytest.raises(RuntimeError, match="re-entrant pump"):
        for event in run:
            items.append(event["params"]["data"])
    assert items == [{"i": 0}]
    with pytest.raises(RuntimeError, match="re-entrant pump"):
        run.output


def test_finalize_reading_its_run_still_sees_what_is_there(backend):
    # finishing is not a step: a finalize() may read what the run holds
    seen = []
    holder = {}

    class ReadsAtEnd(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            return True

        def finalize(self):
            seen.append(holder["run"].output)

    run = holder["run"] = stream_events([values({"i": 0}), values({"i": 1})],
                                        transformers=[ReadsAtEnd])
    assert list(run.values) == [{"i": 0}, {"i": 1}]
    assert seen == [{"i": 1}]
    assert run.output == {"i": 1}
