"""Dispatch: ``convert_to_protocol_event`` and ``StreamMux.push`` through the default pipeline."""

from __future__ import annotations

from ._common import BACKENDS, BackendSwitch, close_all, scale, values_parts

N = scale(20_000)


def _default_mux(is_async: bool = False) -> object:
    from langstream import DEFAULT_FACTORIES, StreamMux

    return StreamMux(factories=list(DEFAULT_FACTORIES), is_async=is_async)


class Convert:
    """Stream part -> protocol event (backend independent)."""

    def setup(self) -> None:
        self.parts = list(values_parts(N))
        self.nested = [
            {"type": "updates", "ns": ("sub:t1", "inner:t2"), "data": {"n": i}} for i in range(N)
        ]

    def time_convert_values_root(self) -> None:
        from langstream import convert_to_protocol_event as convert

        for part in self.parts:
            convert(part)

    def time_convert_updates_nested(self) -> None:
        from langstream import convert_to_protocol_event as convert

        for part in self.nested:
            convert(part)


class MuxPush:
    """``StreamMux.push`` of ``N`` root values events (default pipeline)."""

    params = [BACKENDS]
    param_names = ["backend"]

    def setup(self, backend: str) -> None:
        from langstream import convert_to_protocol_event as convert

        self.switch = BackendSwitch(backend)
        self.switch.activate()
        self.events = [convert(p) for p in values_parts(N)]

    def teardown(self, backend: str) -> None:
        close_all(self)

    def _push_unsubscribed(self) -> None:
        mux = _default_mux()
        push = mux.push
        for event in self.events:
            push(event)
        mux.close()

    def _push_values_subscribed(self) -> None:
        mux = _default_mux()
        values = iter(mux.extensions["values"])
        push, nxt = mux.push, values.__next__
        for event in self.events:
            push(event)
            nxt()
        mux.close()

    def _push_main_log_subscribed(self) -> None:
        mux = _default_mux()
        main = iter(mux._events)  # the raw main log, as ``iter(run)`` gives it
        values = iter(mux.extensions["values"])
        push, nm, nv = mux.push, main.__next__, values.__next__
        for event in self.events:
            push(event)
            nv()
            nm()
        mux.close()

    def time_push_unsubscribed(self, backend: str) -> None:
        self._push_unsubscribed()

    def time_push_values_subscribed(self, backend: str) -> None:
        self._push_values_subscribed()

    def time_push_values_and_main_log(self, backend: str) -> None:
        self._push_main_log_subscribed()

    def peakmem_push_values_subscribed(self, backend: str) -> None:
        self._push_values_subscribed()
