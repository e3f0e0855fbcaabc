"""API parity with LangGraph's ``langgraph.stream`` package.

Every public name of ``langgraph.stream`` and of its modules (``_mux``,
``stream_channel``, ``_convert``, ``_types``, ``transformers``, ``run_stream``)
exists at the same path in langstream, with the same parameters (names, kinds,
defaults), the same members (methods stay methods, properties stay
properties, coroutines stay coroutines), and the same behaviour on a few
calls each (error types, event shapes, run results), on both backends and
both lanes.  Differences DESIGN.md lists as deliberate are asserted as
exactly those differences (``DELIBERATE`` below).

Needs LangGraph (the ``langgraph`` extra): see ``_langgraph_support`` for
where a missing extra skips this module and where it fails it.
"""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest
from _langgraph_support import require_langgraph

require_langgraph(module_level=True)

import langgraph.stream as lg_stream  # noqa: E402
import langgraph.stream._mux as lg_mux  # noqa: E402
import langgraph.stream.transformers as lg_transformers  # noqa: E402

from helpers import areplay, arun, replay, updates, values  # noqa: E402
import langstream  # noqa: E402
import langstream._mux as ls_mux  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*v3 streaming protocol.*")

MODULES = ["", "._mux", ".stream_channel", "._convert", "._types", ".transformers",
           ".run_stream"]

# name (or "Class.member") -> why langstream differs; DESIGN.md lists each
DELIBERATE = {
    # "maxlen is real": the mux takes the bound for its logs (keyword-only,
    # defaulting to None, so every LangGraph call is still valid)
    "StreamMux.__init__": "extra keyword-only maxlen=None",
    "StreamMux": "extra keyword-only maxlen=None",
}

# names LangGraph's modules import from elsewhere (typing, collections.abc,
# langchain-core, langgraph.errors): not part of the streaming API
def _public_names(module):
    out = []
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        owner = getattr(obj, "__module__", "") or ""
        if owner.startswith("langgraph.stream") or name in getattr(module, "__all__", ()):
            out.append(name)
    return out


PARITY_NAMES = [
    (path, name)
    for path in MODULES
    for name in _public_names(importlib.import_module("langgraph.stream" + path))
]


def _params(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()
            if not p.name.startswith("_")]


def _same_params(lg, ls, what):
    a, b = _params(lg), _params(ls)
    if what in DELIBERATE and a is not None and b is not None:
        extra = [p for p in b if p not in a]
        assert all(kind is inspect.Parameter.KEYWORD_ONLY and default is None
                   for _n, kind, default in extra), (what, extra)
        b = [p for p in b if p in a]
    assert a == b, f"{what}: LangGraph {a} vs langstream {b}"


@pytest.mark.parametrize("path,name", PARITY_NAMES,
                         ids=[f"{p or '.'}:{n}" for p, n in PARITY_NAMES])
def test_name_exists_with_a_compatible_signature(path, name):
    lg_obj = getattr(importlib.import_module("langgraph.stream" + path), name)
    ls_module = importlib.import_module("langstream" + path)
    assert hasattr(ls_module, name), f"langstream{path} lacks {name}"
    ls_obj = getattr(ls_module, name)
    if inspect.isclass(lg_obj):
        assert inspect.isclass(ls_obj), name
        if "__init__" in vars(lg_obj):
            _same_params(lg_obj.__init__, ls_obj.__init__, f"{name}.__init__")
        for member, lg_static in vars(lg_obj).items():
            if member.startswith("_") and member not in (
                    "__iter__", "__aiter__", "__enter__", "__exit__", "__aenter__",
                    "__aexit__", "__next__", "__anext__"):
                continue
            where = f"{name}.{member}"
            assert hasattr(ls_obj, member), f"langstream {name} lacks {member}"
            ls_static = inspect.getattr_static(ls_obj, member)
            if isinstance(lg_static, property):
                assert isinstance(ls_static, property), f"{where} is not a property"
                continue
            lg_fn = getattr(lg_static, "__func__", lg_static)
            ls_fn = getattr(ls_static, "__func__", ls_static)
            if inspect.isfunction(lg_fn):
                assert callable(ls_fn), where
                assert type(lg_static) is type(ls_static) or not isinstance(
                    lg_static, (staticmethod, classmethod)), where
                assert inspect.iscoroutinefunction(lg_fn) == inspect.iscoroutinefunction(
                    ls_fn), f"{where}: coroutine or not"
                _same_params(lg_fn, ls_fn, where)
    elif inspect.isfunction(lg_obj):
        _same_params(lg_obj, ls_obj, name)


def test_subgraph_status_values():
    assert typing.get_args(langstream.SubgraphStatus) == typing.get_args(
        lg_stream.SubgraphStatus)


def test_typed_dict_keys():
    for name in ("ProtocolEvent", "LifecyclePayload"):
        lg_keys = set(getattr(lg_stream, name).__annotations__)
        ls_keys = set(getattr(langstream, name).__annotations__)
        assert lg_keys <= ls_keys, (name, lg_keys - ls_keys)


# ------------------------------------------------------------------ behaviour


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as exc:  # noqa: BLE001 - compared between the two
        return type(exc), None


async def _aoutcome(awaitable):
    try:
        return "ok", await awaitable
    except Exception as exc:  # noqa: BLE001 - compared between the two
        return type(exc), None


def _sample_mux(api, mux_module, is_async=False):
    class Sample(api.StreamTransformer):
        def __init__(self, scope=()):
            super().__init__(scope)
            self.channel = api.StreamChannel("sample")

        def init(self):
            return {"sample": self.channel}

        def process(self, event):
            return True

    mux = mux_module.StreamMux([Sample()], is_async=is_async)
    return mux, mux.extensions["sample"]


def _bare_transformer(api, body):
    class Bare(api.StreamTransformer):
        def init(self):
            return body.get("init", lambda: {})()

        def process(self, event):
            return True

    if "aprocess" in body:
        async def aprocess(self, event):
            return True
        Bare.aprocess = aprocess
    return Bare


def _drain(it):
    return list(it)


CALLS = {
    "iter before bind": lambda api, m: iter(api.StreamChannel()),
    "aiter before bind": lambda api, m: api.StreamChannel().__aiter__(),
    "tee before bind": lambda api, m: api.StreamChannel().tee(2),
    "maxlen 0": lambda api, m: api.StreamChannel(maxlen=0),
    "maxlen -1": lambda api, m: api.StreamChannel(maxlen=-1),
    "aiter on a sync mux": lambda api, m: _sample_mux(api, m)[1].__aiter__(),
    "iter on an async mux": lambda api, m: iter(_sample_mux(api, m, True)[1]),
    "atee on a sync mux": lambda api, m: _sample_mux(api, m)[1].atee(2),
    "tee on an async mux": lambda api, m: _sample_mux(api, m, True)[1].tee(2),
    "second subscriber": lambda api, m: [iter(c) for c in [_sample_mux(api, m)[1]] * 2],
    "tee after iter": lambda api, m: [iter(c) and c.tee(2) for c in [_sample_mux(api, m)[1]]],
    "tee(0)": lambda api, m: _sample_mux(api, m)[1].tee(0),
    "atee(0)": lambda api, m: _sample_mux(api, m, True)[1].atee(0),
    "init returns a list": lambda api, m: m.StreamMux(
        [_bare_transformer(api, {"init": lambda: [1]})()]),
    "projection key owned twice": lambda api, m: m.StreamMux(
        [_bare_transformer(api, {"init": lambda: {"k": 1}})(),
         _bare_transformer(api, {"init": lambda: {"k": 2}})()]),
    "async transformer on a sync mux": lambda api, m: m.StreamMux(
        [_bare_transformer(api, {"aprocess": True})()]),
}


def _push_after_close(api, m):
    mux, channel = _sample_mux(api, m)
    reader = iter(channel)  # (kept: a collected reader has let go)
    channel.close()
    channel.push(1)
    return reader


def _read_after_fail(api, m):
    mux, channel = _sample_mux(api, m)
    it = iter(channel)
    channel.push(1)
    channel.fail(KeyError("boom"))
    return _drain(it)


def _mux_round_trip(api, m):
    mux, channel = _sample_mux(api, m)
    it = iter(channel)
    main = iter(mux._events)
    mux.push(api_convert(api)({"type": "values", "ns": (), "data": {"a": 1}}))
    channel.push("x")
    mux.close()
    mux.close()  # (a second close does nothing)
    return _drain(it), [(e["method"], e["params"]["data"]) for e in main]


def api_convert(api):
    if api is langstream:
        return langstream.convert_to_protocol_event
    from langgraph.stream._convert import convert_to_protocol_event

    return convert_to_protocol_event


CALLS["push after close"] = _push_after_close
CALLS["read after fail"] = _read_after_fail
CALLS["mux push, forward, close"] = _mux_round_trip


@pytest.mark.parametrize("call", sorted(CALLS))
def test_same_outcome_as_langgraph(backend, call):
    fn = CALLS[call]
    lg = _outcome(lambda: fn(lg_stream, lg_mux))
    ls = _outcome(lambda: fn(langstream, ls_mux))
    if lg[0] == "ok" and ls[0] == "ok":
        if call == "mux push, forward, close":
            assert lg[1] == ls[1]
        return
    assert lg[0] == ls[0], f"{call}: LangGraph raised {lg[0]}, langstream {ls[0]}"


PARTS = [
    {"type": "values", "ns": (), "data": {"a": 1}},
    {"type": "values", "ns": (), "data": {"a": 1}, "interrupts": ({"value": "q"},)},
    {"type": "updates", "ns": ("child:1",), "data": {"node": {"a": 2}}},
    {"type": "custom", "ns": ["x:1", "y:2"], "data": [1, 2]},
    {"type": "messages", "ns": (), "data": ("chunk", {"langgraph_node": "n"})},
    {"type": "tasks", "ns": (), "data": {"id": "t", "name": "n", "input": {}, "triggers": []}},
    {"type": "checkpoints", "ns": (), "data": {"config": {}}},
    {"type": "debug", "ns": (), "data": {"step": 1}},
]


def _shape(event):
    event = dict(event)
    params = dict(event.pop("params"))
    params.pop("timestamp", None)
    event.pop("seq", None)
    return event, params


@pytest.mark.parametrize("part", PARTS, ids=[p["type"] for p in PARTS])
def test_convert_to_protocol_event_shape(part):
    from langgraph.stream._convert import convert_to_protocol_event as lg_convert

    from langstream._convert import convert_to_protocol_event as ls_convert

    assert _shape(ls_convert(part)) == _shape(lg_convert(part))
    assert isinstance(ls_convert(part)["params"].get("timestamp"), int)


# ------------------------------------------------------------------ runs


RUN_PARTS = [
    values({"i": 0}),
    updates({"n": {"i": 1}}),
    values({"i": 1}),
    values({"i": 1}, interrupts=[{"value": "ask", "id": "x"}]),
]


def _lg_run(parts, is_async, state=None):
    factories = [lg_transformers.ValuesTransformer, lg_transformers.LifecycleTransformer,
                 lg_transformers.SubgraphTransformer]
    mux = lg_mux.StreamMux(factories=factories, is_async=is_async)
    if is_async:
        return lg_stream.AsyncGraphRunStream(areplay(parts, state=state), mux)
    return lg_stream.GraphRunStream(replay(parts, state=state), mux)


def _ls_run(parts, is_async, state=None):
    if is_async:
        return langstream.astream_events(areplay(parts, state=state))
    return langstream.stream_events(replay(parts, state=state))


def _sync_results(make, parts):
    run = make(parts, False)
    seen = [type(run).__name__]
    seen.append([v for v in run.values])
    seen += [run.output, run.interrupted, run.interrupts]
    run = make(parts, False)
    seen.append([(name, item) for name, item in run.interleave("values")])
    state = {}
    run = make(parts, False, state)
    with run as entered:
        seen.append(entered is run)
        seen.append(next(iter(run.values)))
    seen.append((state["finally"], state["pulled"], _outcome(lambda: run.output)))
    state = {}
    run = make(parts, False, state)
    reader = iter(run.values)
    next(reader)
    run.abort()
    run.abort()
    seen.append((state["finally"], list(reader), _outcome(lambda: run.output)))
    run = make(parts, False)
    seen.append([e["method"] for e in run])
    return seen


async def _async_results(make, parts):
    run = make(parts, True)
    seen = [type(run).__name__]
    seen.append([v async for v in run.values])
    seen += [await run.output(), await run.interrupted(), await run.interrupts()]
    state = {}
    run = make(parts, True, state)
    async with run as entered:
        seen.append(entered is run)
        seen.append(await run.values.__aiter__().__anext__())
    seen.append((state["finally"], state["pulled"], await _aoutcome(run.output())))
    state = {}
    run = make(parts, True, state)
    reader = run.values.__aiter__()
    await reader.__anext__()
    await run.abort()
    await run.abort()
    seen.append((state["finally"], [v async for v in reader], await _aoutcome(run.output())))
    run = make(parts, True)
    seen.append([e["method"] async for e in run])
    return seen


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_run_stream_results_match_langgraph(backend, lane):
    names = {"GraphRunStream", "AsyncGraphRunStream"}
    if lane == "sync":
        lg, ls = _sync_results(_lg_run, RUN_PARTS), _sync_results(_ls_run, RUN_PARTS)
    else:
        lg = arun(_async_results(_lg_run, RUN_PARTS))
        ls = arun(_async_results(_ls_run, RUN_PARTS))
    assert lg[0] in names and ls[0] == lg[0]
    assert ls[1:] == lg[1:]


class _Boom(Exception):
    pass


def _raising(parts, is_async):
    if is_async:
        async def gen():
            for part in parts:
                yield part
            raise _Boom("graph failed")
        return gen()

    def gen():
        yield from parts
        raise _Boom("graph failed")
    return gen()


@pytest.mark.parametrize("lane", ["sync", "async"])
def test_a_failing_graph_fails_like_langgraph(backend, lane):
    def make(api):
        if api == "lg":
            mux = lg_mux.StreamMux(factories=[lg_transformers.ValuesTransformer],
                                   is_async=lane == "async")
            cls = lg_stream.AsyncGraphRunStream if lane == "async" else lg_stream.GraphRunStream
            return cls(_raising(RUN_PARTS[:1], lane == "async"), mux)
        if lane == "async":
            return langstream.astream_events(_raising(RUN_PARTS[:1], True))
        return langstream.stream_events(_raising(RUN_PARTS[:1], False))

    def sync_outcome(api):
        run = make(api)
        items = []
        with pytest.raises(_Boom):
            for item in run.values:
                items.append(item)
        with pytest.raises(_Boom):
            run.output
        return items

    async def async_outcome(api):
        run = make(api)
        items = []
        with pytest.raises(_Boom):
            async for item in run.values:
                items.append(item)
        with pytest.raises(_Boom):
            await run.output()
        return items

    if lane == "sync":
        assert sync_outcome("ls") == sync_outcome("lg") == [{"i": 0}]
    else:
        assert arun(async_outcome("ls")) == arun(async_outcome("lg")) == [{"i": 0}]
