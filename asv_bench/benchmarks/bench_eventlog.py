"""The event log (``SeqCounter``, ``EventLog``, ``Cursor``) on each backend."""

from __future__ import annotations

from langstream.errors import StreamLagError

from ._common import BACKENDS, load_backend, scale

N = scale(20_000)
FILL = scale(200_000)


class EventLogSuite:
    """Push and read ``N`` items through one log."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.mod = load_backend(backend)
        self.item = object()

    def _push_read(self) -> None:
        log = self.mod.EventLog()
        cur = log.cursor()
        push, nxt, item = log.push, cur.__next__, self.item
        for _ in range(N):
            push(item)
            nxt()

    def _batched(self) -> None:
        log = self.mod.EventLog()
        cur = log.cursor()
        push, item, batch = log.push, self.item, range(64)
        for _ in range(N // 64):
            for _ in batch:
                push(item)
            for _ in cur:
                pass

    def _two_cursors(self) -> None:
        log = self.mod.EventLog()
        a, b = log.cursor(), log.cursor()
        push, na, nb, item = log.push, a.__next__, b.__next__, self.item
        for _ in range(N):
            push(item)
            na()
            nb()

    def _no_cursor(self) -> None:
        log = self.mod.EventLog()
        push, item = log.push, self.item
        for _ in range(N):
            push(item)

    def _bounded_evicting(self) -> None:
        log = self.mod.EventLog(maxlen=1024)
        cur = log.cursor()  # never reads: every push past 1024 evicts  # noqa: F841
        push, item = log.push, self.item
        for _ in range(N):
            push(item)

    def _shared_counter(self) -> None:
        counter = self.mod.SeqCounter()
        logs = [self.mod.EventLog(counter=counter) for _ in range(3)]
        cursors = [log.cursor() for log in logs]
        item = self.item
        for i in range(N):
            logs[i % 3].push(item)
            next(cursors[i % 3])

    def time_push_read(self, backend: str) -> None:
        self._push_read()

    def time_push64_read64(self, backend: str) -> None:
        self._batched()

    def time_push_read_two_cursors(self, backend: str) -> None:
        self._two_cursors()

    def time_push_no_cursor(self, backend: str) -> None:
        self._no_cursor()

    def time_push_bounded_evicting(self, backend: str) -> None:
        self._bounded_evicting()

    def time_shared_counter_three_logs(self, backend: str) -> None:
        self._shared_counter()


class EventLogMemory:
    """Items retained by an unread cursor, unbounded vs ``maxlen=1024``."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.mod = load_backend(backend)

    def _fill(self, maxlen: object) -> None:
        log = self.mod.EventLog(maxlen)
        cur = log.cursor()
        push = log.push
        for i in range(FILL):
            push((i, "payload"))
        while True:  # a bounded log raises StreamLagError once, then goes on
            try:
                for _ in cur:
                    pass
                break
            except StreamLagError:
                continue

    def time_fill_unbounded(self, backend: str) -> None:
        self._fill(None)

    def peakmem_fill_unbounded(self, backend: str) -> None:
        self._fill(None)

    def time_fill_bounded(self, backend: str) -> None:
        self._fill(1024)

    def peakmem_fill_bounded(self, backend: str) -> None:
        self._fill(1024)
