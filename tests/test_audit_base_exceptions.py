"""A ``BaseException`` (``KeyboardInterrupt``, ``GeneratorExit``, ...) raised
while a step dispatches reaches the consumer and ends the run with it, whether
the event was a root part or a subgraph's first event (dispatched from the
postponed-forward list).  (Sync lane: the async lane routes both paths
through one handler, and asyncio itself re-raises a task's
``KeyboardInterrupt`` out of the loop.)  Before, the postponed path let it through without
ending the run: a consumer that carried on saw the run complete normally,
with the interrupted dispatch lost."""

from __future__ import annotations

import pytest

from helpers import values
from langstream import StreamTransformer, stream_events

PARTS = [values({"i": 0}), values({"i": 0}, ns=("a:1",)), values({"i": 1}, ns=("a:1",)),
         values({"i": 1})]


def _raising_in(scope, exc_type):
    raised = []

    class Raises(StreamTransformer):
        def init(self):
            return {}

        def process(self, event):
            if tuple(self.scope) == scope and not raised:
                raised.append(event)  # once: a later event must not end the run instead
                raise exc_type("in process")
            return True

    return Raises


@pytest.mark.parametrize("scope", [(), ("a:1",)], ids=["root", "subgraph"])
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, GeneratorExit])
def test_sync_base_exception_in_dispatch_ends_the_run(backend, scope, exc_type):
    run = stream_events(list(PARTS), transformers=[_raising_in(scope, exc_type)])
    with pytest.raises(exc_type):
        for handle in run.subgraphs:
            list(handle.values)
    with pytest.raises(exc_type):  # the run ended with it: no silent success
        run.output
    with pytest.raises(exc_type):  # every projection failed with it
        list(run.values)

