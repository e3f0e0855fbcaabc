"""Sync run streams: scenario S (values parts at the root, consumer on ``run.values``)."""

from __future__ import annotations

from ._common import BACKENDS, BackendSwitch, close_all, scale, values_parts

N = scale(10_000)


class RunSync:
    """``stream_events`` over ``N`` root values parts, default pipeline."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        self.switch = BackendSwitch(backend)
        self.switch.activate()

    def teardown(self, backend: str) -> None:
        close_all(self)

    @staticmethod
    def _values(n: int = N) -> None:
        from langstream import stream_events

        run = stream_events(values_parts(n))
        for _v in run.values:
            pass

    @staticmethod
    def _raw_log() -> None:
        from langstream import stream_events

        run = stream_events(values_parts(N))
        for _e in run:
            pass

    @staticmethod
    def _output() -> None:
        from langstream import stream_events

        assert stream_events(values_parts(N)).output == {"step": N - 1}

    @staticmethod
    def _interleave() -> None:
        from langstream import stream_events

        run = stream_events(values_parts(N))
        for _pair in run.interleave("values", "lifecycle"):
            pass

    def time_values(self, backend: str) -> None:
        self._values()

    def peakmem_values(self, backend: str) -> None:
        self._values(10 * N)

    def time_raw_log(self, backend: str) -> None:
        self._raw_log()

    def time_output_unsubscribed(self, backend: str) -> None:
        self._output()

    def time_interleave(self, backend: str) -> None:
        self._interleave()


class FloorSync:
    """The floor: the same generator iterated directly."""

    @staticmethod
    def _bare() -> None:
        for _v in values_parts(N):
            pass

    def time_bare_generator(self) -> None:
        self._bare()
