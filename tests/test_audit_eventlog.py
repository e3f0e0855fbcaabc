"""Event-log twins agree after a failure: a dropped cursor that raised the
log's error lets go of the log like any other (found by a C-vs-pure
differential fuzz of cursor operations).  Before, the pure twin's cursor
stayed reachable from the error's traceback (its ``__next__`` frame held
``self``), so ``cursor_count`` stayed up and the cursor lived as long as the
log."""

from __future__ import annotations

import gc
import weakref


def _collect():
    for _ in range(3):  # (PyPy frees in passes)
        gc.collect()


def test_cursor_that_raised_the_error_is_released_when_dropped(eventlog):
    log = eventlog.EventLog()
    log.fail(ValueError("boom"))
    refs = []
    for _ in range(3):
        cursor = log.cursor()
        try:
            next(cursor)
        except ValueError:
            pass
        refs.append(weakref.ref(cursor))
        del cursor
    _collect()
    assert [ref() for ref in refs] == [None, None, None]
    assert log.cursor_count == 0
    assert isinstance(log.error, ValueError)


def test_reader_of_a_failed_log_with_items_is_released_too(eventlog):
    log = eventlog.EventLog(2)
    cursor = log.cursor()
    log.push("a")
    log.fail(KeyError("k"))
    assert next(cursor) == "a"
    try:
        next(cursor)
    except KeyError:
        pass
    ref = weakref.ref(cursor)
    del cursor
    _collect()
    assert ref() is None and log.cursor_count == 0 and len(log) == 0
