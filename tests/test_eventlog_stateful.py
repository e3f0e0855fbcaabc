"""Model-based (hypothesis stateful) test of the event log, on both backends.

Random sequences of push / open cursor / read / close cursor / close / fail
on unbounded and bounded logs are run against a naive reference model in
which every open cursor keeps its own queue of unread items.  Each backend
must agree with the model on every returned item, sequence number, lag count
(``StreamLagError.missed``), terminal error and introspection value.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    precondition,
    invariant,
    rule,
    run_state_machine_as_test,
)

from langstream.errors import StreamLagError


class ModelCursor:
    def __init__(self) -> None:
        self.queue: list = []  # unread (seq, item)
        self.lag = 0
        self.open = True


def make_machine(mod):
    class EventLogMachine(RuleBasedStateMachine):
        cursors = Bundle("cursors")

        def __init__(self) -> None:
            super().__init__()
            self.log = None
            self.maxlen = None
            self.seq = 0
            self.closed = False
            self.error = None
            self.models = []  # ModelCursor per opened cursor, by index

        @initialize(maxlen=st.sampled_from([None, 1, 2, 3, 5]))
        def make_log(self, maxlen):
            self.log = mod.EventLog(maxlen=maxlen)
            self.maxlen = maxlen

        def open_models(self):
            return [m for m in self.models if m.open]

        @rule(target=cursors)
        def open_cursor(self):
            cur = self.log.cursor()
            self.models.append(ModelCursor())
            return (len(self.models) - 1, cur)

        @rule(item=st.integers(), count=st.integers(1, 4))
        def push(self, item, count):
            for i in range(count):
                self.push_one(("item", item, i))

        def push_one(self, obj):
            if self.closed:
                with pytest.raises(RuntimeError):
                    self.log.push(obj)
                return
            self.seq += 1
            assert self.log.push(obj) == self.seq
            open_models = self.open_models()
            for m in open_models:
                m.queue.append((self.seq, obj))
            if self.maxlen is not None and open_models:
                longest = max(len(m.queue) for m in open_models)
                if longest > self.maxlen:
                    for m in open_models:
                        if len(m.queue) == longest:
                            del m.queue[0]
                            m.lag += 1

        @rule(entry=cursors, times=st.integers(1, 4))
        def read(self, entry, times):
            idx, cur = entry
            m = self.models[idx]
            for _ in range(times):
                if not m.open:
                    assert cur.peek_seq() is None and cur.pending == 0
                    with pytest.raises(StopIteration):
                        next(cur)
                elif m.lag:
                    with pytest.raises(StreamLagError) as info:
                        next(cur)
                    assert info.value.missed == m.lag
                    m.lag = 0
                elif m.queue:
                    seq, obj = m.queue.pop(0)
                    assert cur.peek_seq() == seq
                    assert next(cur) is obj
                elif self.error is not None:
                    with pytest.raises(type(self.error)) as info:
                        next(cur)
                    assert info.value is self.error
                else:
                    with pytest.raises(StopIteration):
                        next(cur)

        @rule(entry=consumes(cursors))
        def close_cursor(self, entry):
            idx, cur = entry
            cur.close()
            self.models[idx].open = False
            self.models[idx].queue.clear()
            self.models[idx].lag = 0

        @precondition(lambda self: self.seq > 3)
        @rule()
        def close(self):
            self.log.close()
            self.closed = True

        @precondition(lambda self: self.seq > 3)
        @rule(message=st.text(max_size=5))
        def fail(self, message):
            err = ValueError(message)
            self.log.fail(err)
            if not self.closed:
                self.closed = True
                self.error = err

        @invariant()
        def agrees_with_model(self):
            if self.log is None:
                return
            open_models = self.open_models()
            assert self.log.cursor_count == len(open_models)
            expect_len = max((len(m.queue) for m in open_models), default=0)
            assert len(self.log) == expect_len
            if self.maxlen is not None:
                assert len(self.log) <= self.maxlen
            assert self.log.last_seq == self.seq
            assert self.log.closed == self.closed
            assert self.log.error is self.error

    return EventLogMachine


def test_event_log_matches_model(eventlog):
    machine = make_machine(eventlog)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_pending_and_peek_match_model(eventlog):
    """A deterministic long run checking ``pending`` after every step."""
    import random

    rng = random.Random(1234)
    for maxlen in (None, 1, 4, 16):
        log = eventlog.EventLog(maxlen=maxlen)
        curs = []
        models = []
        seq = 0
        for _ in range(3000):
            op = rng.random()
            if op < 0.45:
                seq += 1
                assert log.push(seq) == seq
                live = [m for m in models if m is not None]
                for m in live:
                    m.queue.append(seq)
                if maxlen is not None and live:
                    longest = max(len(m.queue) for m in live)
                    if longest > maxlen:
                        for m in live:
                            if len(m.queue) == longest:
                                del m.queue[0]
                                m.lag += 1
            elif op < 0.8 and curs:
                i = rng.randrange(len(curs))
                if models[i] is None:
                    continue
                m = models[i]
                if m.lag:
                    with pytest.raises(StreamLagError) as info:
                        next(curs[i])
                    assert info.value.missed == m.lag
                    m.lag = 0
                elif m.queue:
                    assert next(curs[i]) == m.queue.pop(0)
                else:
                    with pytest.raises(StopIteration):
                        next(curs[i])
            elif op < 0.9 and len(curs) < 6:
                curs.append(log.cursor())
                models.append(ModelCursor())
            elif curs:
                i = rng.randrange(len(curs))
                curs[i].close()
                models[i] = None
            for c, m in zip(curs, models):
                if m is None:
                    assert c.pending == 0 and c.peek_seq() is None
                else:
                    assert c.pending == len(m.queue)
                    assert c.peek_seq() == (m.queue[0] if m.queue else None)
