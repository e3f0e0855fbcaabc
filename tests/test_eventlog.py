"""Event log contract tests (DESIGN.md, "Event log contract").

Every test takes the ``eventlog`` fixture and so runs on both backends.
"""

from __future__ import annotations

import gc
import pickle
import platform
import sys
import threading
import time
import weakref

import pytest

from langstream.errors import StreamLagError

CPYTHON = platform.python_implementation() == "CPython"


class Obj:
    """A weak-referenceable payload."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Obj({self.n})"


def collect():
    """Run the collector until finalizers and what they free are done (PyPy
    needs more than one pass)."""
    for _ in range(3):
        gc.collect()


def drain(cur):
    return list(cur)


# -- numbering ---------------------------------------------------------------


def test_counter_numbers(eventlog):
    c = eventlog.SeqCounter()
    assert c.value == 0
    assert [c.next() for _ in range(5)] == [1, 2, 3, 4, 5]
    assert c.value == 5


def test_push_returns_sequence_numbers(eventlog):
    log = eventlog.EventLog()
    assert log.last_seq == 0
    cur = log.cursor()
    assert [log.push(x) for x in "abc"] == [1, 2, 3]
    assert log.last_seq == 3
    assert cur.peek_seq() == 1
    assert drain(cur) == ["a", "b", "c"]
    assert cur.peek_seq() is None


def test_shared_counter_orders_two_logs(eventlog):
    counter = eventlog.SeqCounter()
    a = eventlog.EventLog(counter=counter)
    b = eventlog.EventLog(counter=counter)
    ca, cb = a.cursor(), b.cursor()
    assert a.push("a1") == 1
    assert b.push("b1") == 2
    assert a.push("a2") == 3
    assert counter.value == 3
    assert a.last_seq == 3 and b.last_seq == 2
    assert ca.peek_seq() == 1
    assert next(ca) == "a1"
    assert ca.peek_seq() == 3
    assert cb.peek_seq() == 2
    assert drain(ca) == ["a2"] and drain(cb) == ["b1"]


def test_private_counters_are_independent(eventlog):
    a, b = eventlog.EventLog(), eventlog.EventLog()
    assert a.push(1) == 1 and b.push(1) == 1 and a.push(2) == 2


def test_counter_type_checked(eventlog):
    with pytest.raises(TypeError, match="counter"):
        eventlog.EventLog(counter=object())
    with pytest.raises(TypeError, match="counter"):
        eventlog.EventLog(counter=5)


def test_counter_from_other_backend_rejected(eventlog):
    import langstream._eventlog_py as py

    if eventlog is py:
        pytest.skip("only meaningful for the compiled backend")
    with pytest.raises(TypeError, match="counter"):
        eventlog.EventLog(counter=py.SeqCounter())


# -- lazy subscribe, cursors -------------------------------------------------


def test_lazy_subscribe(eventlog):
    log = eventlog.EventLog()
    assert log.push("lost") == 1
    assert len(log) == 0
    cur = log.cursor()
    assert cur.pending == 0
    assert log.push("kept") == 2
    assert len(log) == 1
    assert cur.pending == 1
    assert cur.peek_seq() == 2
    assert drain(cur) == ["kept"]


def test_not_stored_without_cursor_releases_item(eventlog):
    log = eventlog.EventLog()
    o = Obj()
    ref = weakref.ref(o)
    log.push(o)
    del o
    collect()
    assert ref() is None


def test_several_cursors(eventlog):
    log = eventlog.EventLog()
    c1 = log.cursor()
    log.push(1)
    c2 = log.cursor()
    log.push(2)
    log.push(3)
    assert log.cursor_count == 2
    assert next(c2) == 2
    assert len(log) == 3
    assert drain(c1) == [1, 2, 3]
    assert len(log) == 1  # c2 has not read 3
    assert c1.pending == 0 and c2.pending == 1
    assert drain(c2) == [3]
    assert len(log) == 0


def test_cursor_is_iterator(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    assert iter(cur) is cur
    log.push("x")
    assert next(cur) == "x"
    with pytest.raises(StopIteration):
        next(cur)
    log.push("y")  # a later next() sees items pushed since
    assert next(cur) == "y"


def test_cursor_close(eventlog):
    log = eventlog.EventLog()
    c1 = log.cursor()
    c2 = log.cursor()
    log.push(1)
    log.push(2)
    assert next(c1) == 1
    assert len(log) == 2
    c2.close()
    c2.close()  # idempotent
    assert log.cursor_count == 1
    assert len(log) == 1  # item 1 was only needed by c2
    with pytest.raises(StopIteration):
        next(c2)
    assert c2.pending == 0 and c2.peek_seq() is None
    c1.close()
    assert len(log) == 0 and log.cursor_count == 0


def test_cursor_gc_releases_hold(eventlog):
    log = eventlog.EventLog()
    c1 = log.cursor()
    c2 = log.cursor()
    o = Obj()
    ref = weakref.ref(o)
    log.push(o)
    del o
    assert next(c1) is ref()
    assert ref() is not None  # c2 still holds it
    del c2
    collect()
    assert log.cursor_count == 1
    assert len(log) == 0
    assert ref() is None


def test_log_survives_while_cursor_lives(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    log.push("a")
    log.close()
    del log
    collect()
    assert drain(cur) == ["a"]


def test_cursor_on_closed_log(eventlog):
    log = eventlog.EventLog()
    log.close()
    cur = log.cursor()
    with pytest.raises(StopIteration):
        next(cur)


# -- reclamation -------------------------------------------------------------


def test_item_released_once_every_cursor_read_it(eventlog):
    log = eventlog.EventLog()
    c1, c2 = log.cursor(), log.cursor()
    o = Obj()
    ref = weakref.ref(o)
    log.push(o)
    del o
    assert next(c1) is ref()
    collect()
    assert ref() is not None
    assert next(c2) is ref()
    collect()
    assert ref() is None


def test_items_released_when_log_dropped(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    objs = [Obj(i) for i in range(10)]
    refs = [weakref.ref(o) for o in objs]
    for o in objs:
        log.push(o)
    del objs, o
    del log, cur
    collect()
    assert all(r() is None for r in refs)


@pytest.mark.skipif(not CPYTHON, reason="sys.getrefcount is CPython-only")
def test_refcount_returns_after_many_cycles(eventlog):
    sentinel = object()
    start = sys.getrefcount(sentinel)
    log = eventlog.EventLog()
    cur = log.cursor()
    for _ in range(100_000):
        log.push(sentinel)
        next(cur)
    assert sys.getrefcount(sentinel) == start
    # several cursors, bounded, and a log dropped while it still holds items
    log2 = eventlog.EventLog(maxlen=7)
    c1, c2 = log2.cursor(), log2.cursor()
    for i in range(1000):
        log2.push(sentinel)
        if i % 3 == 0:
            try:
                next(c1)
            except StreamLagError:
                pass
    assert sys.getrefcount(sentinel) > start
    del log2, c1, c2
    assert sys.getrefcount(sentinel) == start
    log3 = eventlog.EventLog()
    c3 = log3.cursor()
    for _ in range(100):
        log3.push(sentinel)
    del log3, c3
    assert sys.getrefcount(sentinel) == start
    del log, cur


# -- close / fail ------------------------------------------------------------


def test_close_then_drain_then_stop(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    log.push(1)
    log.push(2)
    log.close()
    assert log.closed and log.error is None
    assert drain(cur) == [1, 2]
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(cur)


def test_push_after_close_raises(eventlog):
    log = eventlog.EventLog()
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.push(1)
    assert log.last_seq == 0


def test_fail_reraises_same_error(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    log.push(1)
    err = ValueError("boom")
    log.fail(err)
    assert log.closed and log.error is err
    assert next(cur) == 1
    for _ in range(3):
        with pytest.raises(ValueError) as info:
            next(cur)
        assert info.value is err
    with pytest.raises(RuntimeError):
        log.push(2)


def test_first_terminal_call_wins(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    log.close()
    log.fail(ValueError("late"))
    assert log.error is None
    with pytest.raises(StopIteration):
        next(cur)

    log2 = eventlog.EventLog()
    cur2 = log2.cursor()
    first = KeyError("first")
    log2.fail(first)
    log2.fail(ValueError("second"))
    log2.close()
    assert log2.error is first
    with pytest.raises(KeyError) as info:
        next(cur2)
    assert info.value is first


def test_fail_accepts_base_exception(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    err = KeyboardInterrupt()
    log.fail(err)
    with pytest.raises(KeyboardInterrupt):
        next(cur)


@pytest.mark.parametrize("bad", ["oops", 1, None, ValueError])
def test_fail_needs_exception(eventlog, bad):
    log = eventlog.EventLog()
    with pytest.raises(TypeError, match="exc"):
        log.fail(bad)
    assert not log.closed


# -- request_more (the pump) ------------------------------------------------


def test_no_pump_is_non_blocking(eventlog):
    log = eventlog.EventLog()
    cur = log.cursor()
    with pytest.raises(StopIteration):
        next(cur)
    assert not log.closed


def test_pump_pushes_items(eventlog):
    log = eventlog.EventLog()
    source = iter(range(5))
    calls = []

    def pump():
        calls.append(1)
        for x in source:
            log.push(x)
            return True
        log.close()
        return False

    cur = log.cursor(pump)
    assert list(cur) == [0, 1, 2, 3, 4]
    assert log.closed
    assert len(calls) == 6


def test_pump_that_produces_nothing_yet(eventlog):
    log = eventlog.EventLog()
    budget = {"n": 3}

    def pump():
        if budget["n"] > 0:
            budget["n"] -= 1
            return True  # "made progress" but pushed nothing this time
        return False

    cur = log.cursor(pump)
    with pytest.raises(StopIteration):
        next(cur)
    assert budget["n"] == 0
    log.push("later")
    assert next(cur) == "later"


def test_pump_returning_false_but_pushing(eventlog):
    log = eventlog.EventLog()

    def pump():
        log.push("last")
        return False

    cur = log.cursor(pump)
    assert next(cur) == "last"


def test_pump_failing_log(eventlog):
    log = eventlog.EventLog()
    err = RuntimeError("graph died")

    def pump():
        log.fail(err)
        return True

    cur = log.cursor(pump)
    with pytest.raises(RuntimeError) as info:
        next(cur)
    assert info.value is err


def test_pump_exception_propagates(eventlog):
    log = eventlog.EventLog()

    def pump():
        raise ZeroDivisionError

    cur = log.cursor(pump)
    with pytest.raises(ZeroDivisionError):
        next(cur)
    log.push(1)
    assert next(cur) == 1


def test_request_more_must_be_callable(eventlog):
    log = eventlog.EventLog()
    with pytest.raises(TypeError, match="request_more"):
        log.cursor(42)


# -- bounded logs -------------------------------------------------------------


def test_bounded_lag(eventlog):
    log = eventlog.EventLog(maxlen=3)
    assert log.maxlen == 3
    cur = log.cursor()
    for i in range(1, 9):
        assert log.push(i) == i
        assert len(log) <= 3
    assert len(log) == 3
    assert cur.pending == 3
    assert cur.peek_seq() == 6
    with pytest.raises(StreamLagError) as info:
        next(cur)
    assert info.value.missed == 5
    assert isinstance(info.value, RuntimeError)
    assert "5" in str(info.value)
    assert drain(cur) == [6, 7, 8]


def test_bounded_lag_only_for_cursors_that_missed(eventlog):
    log = eventlog.EventLog(maxlen=2)
    fast, slow = log.cursor(), log.cursor()
    for i in range(1, 6):
        log.push(i)
        assert next(fast) == i
    # slow cursor held back the retained items; 3 evicted under it
    assert len(log) == 2
    with pytest.raises(StreamLagError) as info:
        next(slow)
    assert info.value.missed == 3
    assert next(slow) == 4
    log.push(6)
    assert next(fast) == 6
    assert drain(slow) == [5, 6]
    assert len(log) == 0


def test_bounded_lag_then_close(eventlog):
    log = eventlog.EventLog(maxlen=1)
    cur = log.cursor()
    log.push(1)
    log.push(2)
    log.fail(ValueError("x"))
    with pytest.raises(StreamLagError) as info:
        next(cur)
    assert info.value.missed == 1
    assert next(cur) == 2
    with pytest.raises(ValueError):
        next(cur)


def test_bounded_evicted_item_released(eventlog):
    log = eventlog.EventLog(maxlen=1)
    cur = log.cursor()
    o = Obj()
    ref = weakref.ref(o)
    log.push(o)
    del o
    log.push("next")
    collect()
    assert ref() is None
    assert cur.pending == 1


def test_stream_lag_error_api():
    e = StreamLagError(4)
    assert e.missed == 4 and isinstance(e, RuntimeError)
    assert "4 item(s)" in str(e)
    e2 = pickle.loads(pickle.dumps(StreamLagError(2, "custom")))
    assert e2.missed == 2 and str(e2) == "custom"


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, exc",
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        ("3", TypeError),
        (True, TypeError),
        (False, TypeError),
        (object(), TypeError),
    ],
)
def test_bad_maxlen(eventlog, bad, exc):
    with pytest.raises(exc) as info:
        eventlog.EventLog(maxlen=bad)
    msg = str(info.value)
    assert "maxlen" in msg
    assert repr(bad) in msg


def test_good_maxlen(eventlog):
    assert eventlog.EventLog().maxlen is None
    assert eventlog.EventLog(None).maxlen is None
    assert eventlog.EventLog(1).maxlen == 1
    assert eventlog.EventLog(maxlen=10**6).maxlen == 10**6


# -- threads ------------------------------------------------------------------


def test_threaded_pushes(eventlog, lock_impl):
    n_threads, per_thread = 4, 100_000
    log = eventlog.EventLog()
    cur = log.cursor()
    start = threading.Barrier(n_threads)
    seqs = [[] for _ in range(n_threads)]

    def worker(t):
        out = seqs[t]
        push = log.push
        start.wait()
        for i in range(per_thread):
            out.append(push((t, i)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = n_threads * per_thread
    assert log.last_seq == total
    assert len(log) == total
    items = []
    seen = []
    while True:
        s = cur.peek_seq()
        if s is None:
            break
        seen.append(s)
        items.append(next(cur))
    assert seen == list(range(1, total + 1))  # storage order == seq order
    assert sorted(s for out in seqs for s in out) == list(range(1, total + 1))
    for t in range(n_threads):
        mine = [i for (tt, i) in items if tt == t]
        assert mine == list(range(per_thread))
        assert seqs[t] == sorted(seqs[t])
    # the item stamped s is the one whose push returned s
    by_seq = dict(zip(seen, items))
    for t in range(n_threads):
        for i in (0, per_thread // 2, per_thread - 1):
            assert by_seq[seqs[t][i]] == (t, i)


def test_threaded_producer_consumer(eventlog, lock_impl):
    log = eventlog.EventLog()
    cur = log.cursor()
    n = 50_000
    got = []

    def produce():
        for i in range(n):
            log.push(i)
        log.close()

    th = threading.Thread(target=produce)
    th.start()
    while True:
        try:
            got.append(next(cur))
        except StopIteration:
            if log.closed and cur.pending == 0:
                try:
                    got.append(next(cur))
                except StopIteration:
                    break
    th.join()
    assert got == list(range(n))


@pytest.fixture
def fast_switching():
    """Switch threads often: more interleavings, and no 5 ms GIL waits."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def _run_threads(n, target):
    start = threading.Barrier(n)

    def run(t):
        start.wait()
        target(t)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


@pytest.fixture(params=["default", "list"])
def record_impl(request, eventlog, monkeypatch):
    """On the pure twin, run once more with the portable ``last_seq`` record
    (the one PyPy uses) instead of ``heappushpop``."""
    if request.param == "list":
        if not eventlog.__name__.endswith("_py"):
            pytest.skip("pure twin only")
        monkeypatch.setattr(eventlog, "_record", eventlog._record_list)
    return request.param


@pytest.mark.parametrize("shared", [False, True])
def test_threaded_pushes_without_cursor(eventlog, shared, record_impl, fast_switching):
    """The lock-free (no cursor) push: every number used once, per-thread
    order, and ``last_seq`` is the highest number pushed to the log."""
    n_threads, per_thread = 4, 50_000
    counter = eventlog.SeqCounter() if shared else None
    log = eventlog.EventLog(counter=counter)
    other = eventlog.EventLog(counter=counter) if shared else None
    seqs = [[] for _ in range(n_threads)]

    def worker(t):
        out = seqs[t]
        push = log.push if other is None or t % 2 else other.push
        for i in range(per_thread):
            out.append(push(i))

    _run_threads(n_threads, worker)
    total = n_threads * per_thread
    assert sorted(s for out in seqs for s in out) == list(range(1, total + 1))
    for out in seqs:
        assert out == sorted(out)
    if other is None:
        assert log.last_seq == total
    else:
        assert log.last_seq == max(max(seqs[t]) for t in range(1, n_threads, 2))
        assert other.last_seq == max(max(seqs[t]) for t in range(0, n_threads, 2))
        assert counter.value == total
    assert len(log) == 0 and log.cursor_count == 0


@pytest.mark.parametrize("shared", [False, True])
def test_threaded_subscribe_while_pushing(eventlog, shared, record_impl, lock_impl,
                                         fast_switching):
    """A cursor opened while other threads push sees every item pushed after
    it: no hole in what it reads, whatever the pushes raced with."""
    counter = eventlog.SeqCounter() if shared else None
    log = eventlog.EventLog(counter=counter)
    noise = eventlog.EventLog(counter=counter) if shared else None
    n_producers = 3
    stop = threading.Event()
    pushed = [[] for _ in range(n_producers)]  # (seq) pushed to ``log``
    failures = []

    def producer(t):
        out = pushed[t]
        push = log.push
        other = noise.push if noise is not None else None
        while not stop.is_set():
            out.append(push(t))
            if other is not None:
                other(t)

    def subscriber():
        try:
            for _ in range(100):
                cur = log.cursor()
                seen = []
                while len(seen) < 20:
                    s = cur.peek_seq()
                    if s is None:
                        time.sleep(0)
                        continue
                    seen.append(s)
                    next(cur)
                cur.close()
                assert seen == sorted(seen), seen
                failures.append(seen)  # checked against ``pushed`` below
        finally:
            stop.set()

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_producers)]
    threads.append(threading.Thread(target=subscriber))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    mine = sorted(s for out in pushed for s in out)
    index = {s: i for i, s in enumerate(mine)}
    for seen in failures:
        i = index[seen[0]]
        assert seen == mine[i : i + len(seen)]  # no hole
    assert log.last_seq == mine[-1]
    assert log.cursor_count == 0 and len(log) == 0


def test_threaded_close_while_pushing(eventlog, lock_impl, fast_switching):
    """``close()`` racing with lock-free pushes: after close every push
    raises, and ``last_seq`` is settled once ``close()`` returned."""
    for _ in range(10):
        log = eventlog.EventLog()
        results = [[] for _ in range(3)]

        def worker(t):
            out = results[t]
            try:
                while True:
                    out.append(log.push(t))
            except RuntimeError:
                pass

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        time.sleep(0.002)
        log.close()
        after_close = log.last_seq
        for th in threads:
            th.join()
        total = sum(len(out) for out in results)
        assert log.last_seq == after_close == total
        assert sorted(s for out in results for s in out) == list(range(1, total + 1))
        with pytest.raises(RuntimeError):
            log.push(0)


@pytest.fixture(params=["default", "other"])
def lock_impl(request, eventlog, monkeypatch):
    """On the pure twin, run once more with the other kind of lock than this
    interpreter's (``Lock`` on CPython, ``_TokenLock`` on PyPy): both are used."""
    if request.param == "other":
        if not eventlog.__name__.endswith("_py"):
            pytest.skip("pure twin only")
        token = eventlog._TokenLock
        other = threading.Lock if eventlog._new_lock is token else token
        monkeypatch.setattr(eventlog, "_new_lock", other)
    return request.param


@pytest.mark.parametrize("maxlen", [None, 8])
def test_threaded_readers_and_pushers(eventlog, maxlen, lock_impl, fast_switching):
    """Threads pushing to one log while other threads each read their own
    cursor (``peek_seq`` then ``next``, the lock-free checks of both): every
    item pushed after a cursor opened is read by it or counted in a
    ``StreamLagError`` (bounded log), in sequence order, each pusher's items
    in their order."""
    n_pushers, per_pusher, n_readers = 3, 20_000, 3
    log = eventlog.EventLog(maxlen)
    cursors = [log.cursor() for _ in range(n_readers)]
    results = [None] * n_readers
    pushed = [[] for _ in range(n_pushers)]

    def push(t):
        out = pushed[t]
        for i in range(per_pusher):
            out.append(log.push((t, i)))

    def read(r):
        cur = cursors[r]
        seqs, items, missed = [], [], 0
        while True:
            seq = cur.peek_seq()
            try:
                item = next(cur)
            except StreamLagError as exc:
                missed += exc.missed
                continue
            except StopIteration:
                if log.closed and cur.pending == 0:
                    try:
                        items.append(next(cur))
                    except StopIteration:
                        break
                continue
            if seq is not None:
                seqs.append(seq)
            items.append(item)
        results[r] = (seqs, items, missed)

    readers = [threading.Thread(target=read, args=(r,)) for r in range(n_readers)]
    for th in readers:
        th.start()
    _run_threads(n_pushers, push)
    log.close()
    for th in readers:
        th.join()
    total = n_pushers * per_pusher
    assert sorted(s for out in pushed for s in out) == list(range(1, total + 1))
    for seqs, items, missed in results:
        assert len(items) + missed == total
        if maxlen is None:
            assert missed == 0
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for t in range(n_pushers):
            mine = [i for (tt, i) in items if tt == t]
            assert mine == sorted(mine) and len(set(mine)) == len(mine)
    assert log.cursor_count == n_readers
    for cur in cursors:
        cur.close()
    assert len(log) == 0


def test_threads_sharing_one_cursor(eventlog, lock_impl, fast_switching):
    """Several threads reading through one cursor while another pushes: each
    item is read exactly once (a thread whose item another took first waits
    for the next one)."""
    n, n_readers = 30_000, 3
    log = eventlog.EventLog()
    cur = log.cursor()
    got = [[] for _ in range(n_readers)]

    def read(r):
        out = got[r]
        while True:
            try:
                out.append(next(cur))
            except StopIteration:
                if log.closed and cur.pending == 0:
                    return

    readers = [threading.Thread(target=read, args=(r,)) for r in range(n_readers)]
    for th in readers:
        th.start()
    for i in range(n):
        log.push(i)
    log.close()
    for th in readers:
        th.join()
    assert sorted(x for out in got for x in out) == list(range(n))
    for out in got:
        assert out == sorted(out)


def test_cursor_finalized_while_its_log_is_locked(eventlog, lock_impl):
    """Pure twin: a cursor the collector finalizes while this very thread
    holds its log's lock (as when a collection runs inside ``push``) hands
    its hold over instead of changing the log under the lock (or blocking
    on it); the next operation releases it."""
    if not eventlog.__name__.endswith("_py"):
        pytest.skip("pure twin only (the C twin has no lock: the GIL serializes it)")
    log = eventlog.EventLog()
    keep = log.cursor()
    cur = log.cursor()
    item = Obj(1)
    ref = weakref.ref(item)
    log.push(item)
    del item
    assert next(keep).n == 1  # only ``cur`` still needs the item
    with log._lock:
        del cur
        collect()
        assert log.cursor_count == 1  # counted out at once
        assert len(log._items) == 1 and len(log._states) == 2  # not changed under the lock
    assert len(log) == 0  # the next operation released its hold
    collect()
    assert ref() is None
    assert log.cursor_count == 1 and keep.pending == 0
    log.push(Obj(2))
    assert next(keep).n == 2


def _token_lock():
    from langstream._eventlog_py import _TokenLock

    return _TokenLock()


def test_token_lock_rules():
    """The pure twin's PyPy lock: a plain (not re-entrant) mutex; a
    non-blocking acquire fails while anyone holds it, its own thread too."""
    lock = _token_lock()
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(False) is False  # not re-entrant
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    with lock:
        assert lock.locked()
        got = []
        th = threading.Thread(target=lambda: got.append(lock.acquire(blocking=False)))
        th.start()
        th.join()
        assert got == [False]
    assert not lock.locked()


def test_token_lock_excludes_threads(fast_switching):
    """Threads that find the token taken wait for it (yielding the GIL):
    a read-modify-write with a switch in the middle loses no update, and a
    waiter gets the lock once its holder lets go."""
    lock = _token_lock()
    n_threads, per_thread = 4, 3_000
    state = [0]
    inside = []

    def work(t):
        for i in range(per_thread):
            with lock:
                inside.append(t)
                assert len(inside) == 1  # nobody else in here
                value = state[0]
                if i % 16 == 0:
                    time.sleep(0)  # let the others try meanwhile
                state[0] = value + 1
                inside.pop()

    _run_threads(n_threads, work)
    assert state[0] == n_threads * per_thread and not lock.locked()

    lock.acquire()
    got = []
    th = threading.Thread(target=lambda: got.append(lock.acquire()))
    th.start()
    time.sleep(0.01)
    assert got == [] and th.is_alive()  # waiting, not failed
    lock.release()
    th.join(5)
    assert got == [True] and lock.locked()
    lock.release()


# -- backend selection ----------------------------------------------------------


def test_backend_fixture_patches_eventlog(backend):
    import langstream.eventlog as el

    assert el.BACKEND == backend
    expected = "langstream._eventlog_c" if backend == "c" else "langstream._eventlog_py"
    assert el.EventLog.__module__ == expected
    assert el.Cursor.__module__ == expected
    assert el.SeqCounter.__module__ == expected
    log = el.EventLog()
    cur = log.cursor()
    log.push(1)
    assert isinstance(cur, el.Cursor) and next(cur) == 1


def _backend_in_subprocess(env_value):
    import os
    import subprocess

    env = dict(os.environ)
    env.pop("LANGSTREAM_NO_EXTENSIONS", None)
    if env_value is not None:
        env["LANGSTREAM_NO_EXTENSIONS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import langstream.eventlog as e; print(e.BACKEND)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_no_extensions_env_selects_python():
    assert _backend_in_subprocess("1") == "python"


def test_default_backend(request):
    from conftest import c_backend_skip_reason

    if c_backend_skip_reason(request.config) is not None:
        pytest.skip("the C backend is not expected here")
    # On CPython the compiled backend must have been built and chosen.
    assert _backend_in_subprocess(None) == "c"
    assert _backend_in_subprocess("0") == "c"


def test_same_exception_classes(eventlog):
    import langstream
    import langstream.eventlog as el

    assert eventlog.StreamLagError is StreamLagError
    assert el.StreamLagError is StreamLagError
    assert langstream.StreamLagError is StreamLagError


# -- garbage collection of cycles through stored items ----------------------------


def test_cycle_through_stored_item_is_collected(eventlog):
    # item -> cursor -> log -> (stored) item: only the collector can free it,
    # so the log must show its stored items to the collector.
    log = eventlog.EventLog()
    cur = log.cursor()
    holder = Obj()
    holder.cur = cur
    ref = weakref.ref(holder)
    log_ref = weakref.ref(log)
    log.push(holder)
    log.push(Obj(1))
    del holder, cur, log
    collect()
    assert ref() is None
    assert log_ref() is None


def test_cycle_through_pump_is_collected(eventlog):
    class Stream:
        pass

    s = Stream()
    s.log = eventlog.EventLog()
    s.cur = s.log.cursor(lambda: s.log.push(1) and False)
    s.log.push(s)  # the stream is also an unread item of its own log
    ref = weakref.ref(s)
    del s
    collect()
    assert ref() is None


def test_classes_are_subscriptable(eventlog):
    # annotations such as EventLog[dict] must work at run time on both twins
    assert eventlog.EventLog[int] is not None
    assert eventlog.Cursor[int] is not None


@pytest.mark.skipif(not CPYTHON, reason="the warning is for CPython only")
def test_missing_c_module_warns_and_falls_back():
    import os
    import subprocess

    code = (
        "import sys, warnings\n"
        "sys.modules['langstream._eventlog_c'] = None\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import langstream.eventlog as e\n"
        "assert e.BACKEND == 'python', e.BACKEND\n"
        "assert any('pure-Python backend' in str(x.message) for x in w), w\n"
        "print('ok')\n"
    )
    env = dict(os.environ)
    env.pop("LANGSTREAM_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_readme_event_log_example(backend):
    """The README's "Event log" example runs as written, on both backends."""
    import os
    import re

    readme = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md is not beside the tests")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"## Event log\n.*?```python\n(.*?)```", text, re.S)
    assert match, "README.md has no python example under '## Event log'"
    exec(compile(match.group(1), "README.md", "exec"), {})
