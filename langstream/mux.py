"""Dispatch: ``StreamMux``, the transformer pipeline and the main event log.

Every protocol event is offered to the registered transformers in order;
unless one of them returns ``False`` it is then appended to the main log.
The root mux numbers main-log events (``event["seq"]`` = 1, 2, 3, ...) at the
moment they enter the log.  Child muxes (one per discovered subgraph) run a
fresh pipeline built from the same factories at a deeper scope; they share
the event objects and never renumber them.

This module knows transformers only by their methods and flags (it sits
below ``langstream.transformers`` in the layer table).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from operator import itemgetter
from types import MethodType
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from langstream import eventlog as _el
from langstream.channel import StreamChannel, _Backpressure, _slotted_reduce
from langstream.protocol import _build_event, _interrupts_of, _scope_list_of, _split

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Awaitable

    from langstream.protocol import ProtocolEvent

__all__ = ["StreamMux", "TransformerFactory"]

TransformerFactory = Callable[[Tuple[str, ...]], Any]
"""A callable ``factory(scope) -> StreamTransformer``; a transformer class is one."""

_time = time.time


# Per-class answers of the class-level checks below (a child mux per
# subgraph registers the same classes again: computing them once per class
# keeps child muxes cheap).  Only used when the instance does not hold the
# method itself, which is told from what ``getattr`` returns, never from the
# instance's ``__dict__``: reading that makes CPython (3.11+) give the
# instance a real dict, for every transformer of every mux (more objects for
# the garbage collector, slower attribute reads).  An instance attribute that
# reads the same as the class's (the same function bound the same way)
# counts as the class's: the answer is the same.
#
# class -> (answer, what the attribute reads as on an instance that does not
# hold it: a bound method to compare, or None / the class's raw value)
_LOOP_BY_CLASS: Dict[type, Tuple[bool, Any]] = {}
_ROUTER_BY_CLASS: Dict[type, Tuple[Optional[Callable[[str, bool], bool]], Any]] = {}
# class -> (answer, the class's ``aprocess`` function)
_DIRECT_BY_CLASS: Dict[type, Tuple[bool, Any]] = {}
_UNSET: Any = object()


# (routers, method, at_scope) -> positions of the transformers routed there
_PICKED: Dict[Tuple[Any, ...], Tuple[int, ...]] = {}
_PICKED_MAX = 4096

# per pipeline of plain transformers (``_plain_facts``), lane, method and
# ``at_scope``: how its fast route at the scope is made, as ``(position,
# function)`` (a handler) and ``(position, check, function)`` (a guarded one)
# entries bound to the pipeline's transformers, or ``_NO_ROUTE`` (the event
# path).  Those classes' handlers depend on nothing but the class, the lane,
# the method and ``at_scope``: a child mux per subgraph binds the recipe
# instead of asking each transformer again.
_RECIPES: Dict[Tuple[Any, ...], Any] = {}
_NO_ROUTE: Any = object()
# the last pipeline shape a mux was made with: a child mux per subgraph, and
# every run of a server, keep that one tuple instead of an equal one each
_last_shape: Any = None


def _needs_event_loop(transformer: Any) -> bool:
    cls = type(transformer)
    check = getattr(transformer, "_needs_event_loop", None)
    found = _LOOP_BY_CLASS.get(cls)
    if found is not None:
        expected = found[1]
        if check is expected or (type(check) is MethodType and check == expected):
            return found[0]
    if check is not None:
        answer = bool(check())
    else:
        answer = bool(getattr(transformer, "requires_async", False))
    expected = getattr(cls, "_needs_event_loop", None)
    if check is expected or (type(check) is MethodType and check == expected):
        _LOOP_BY_CLASS[cls] = (answer, expected)
    return answer


def _fast(transformer: Any, method: str, at_scope: bool) -> Optional[Callable[[Any], Any]]:
    """The handler taking ``(method, at_scope)`` parts directly, if any.

    A handler returns ``False`` to keep the part's event out of the main log
    (like ``process``); anything else keeps it.
    """
    get = getattr(transformer, "_fast_handler_at", None)
    if get is not None:
        return get(method, at_scope)
    get = getattr(transformer, "_fast_handler", None)
    return get() if get is not None else None


def _calls_process(transformer: Any) -> bool:
    """True when ``transformer.aprocess`` is the base class's default, which
    only returns ``process(event)``: the async dispatch then calls ``process``
    itself instead of creating and awaiting a coroutine per event."""
    cls = type(transformer)
    found = _DIRECT_BY_CLASS.get(cls)
    if found is None:
        # (the class's function, whatever its type: compiled, this module's
        # functions are not ``FunctionType``; a bound method's ``__func__``
        # is compared with it below)
        aprocess = getattr(cls, "aprocess", None)
        found = _DIRECT_BY_CLASS[cls] = (
            getattr(aprocess, "_langstream_calls_process", False) is True,
            aprocess,
        )
    if not found[0]:
        return False
    # the instance's own ``aprocess`` (if any) is not the default
    got = getattr(transformer, "aprocess", None)
    return type(got) is MethodType and got.__func__ is found[1] and got.__self__ is transformer


def _router(transformer: Any) -> Optional[Callable[[str, bool], bool]]:
    """The transformer's routing predicate, if its class declares a trusted one."""
    cls = type(transformer)
    get = getattr(transformer, "_routing", None)
    found = _ROUTER_BY_CLASS.get(cls)
    if found is not None:
        expected = found[1]
        if get is expected or (type(get) is MethodType and get == expected):
            return found[0]
    router = get() if get is not None else None
    expected = getattr(cls, "_routing", None)
    if get is expected or (type(get) is MethodType and get == expected):
        _ROUTER_BY_CLASS[cls] = (router, expected)
    return router


class _Facts:
    """What registration asks of a transformer, answered once for a class
    whose instances are plain (see ``_plain_facts``)."""

    __slots__ = ("needs_loop", "router", "direct", "native", "pre", "on_register")

    def __init__(self, transformer: Any) -> None:
        cls = type(transformer)
        _check_transformer(transformer, "factory", cls)  # (the class is the factory)
        self.needs_loop = _needs_event_loop(transformer)
        self.router = _router(transformer)
        self.direct = _calls_process(transformer)
        self.native = bool(getattr(transformer, "_native", False))
        self.pre = bool(getattr(transformer, "before_builtins", False))
        self.on_register = getattr(cls, "_on_register", None)


# class -> its ``_Facts``, or None: the class does not promise plain instances
_FACTS_BY_CLASS: Dict[type, Optional[_Facts]] = {}


def _plain_facts(transformer: Any) -> Optional[_Facts]:
    """The registration answers of ``transformer``'s class, when the class
    says (``_plain_instances = True`` in its own body, not inherited) that
    its instances hold none of the hooks and flags registration reads, so
    the answers are the class's.  The built-in transformers say so: a child
    mux per subgraph then registers them without asking each instance again.
    A subclass asks per instance unless it says so itself."""
    cls = type(transformer)
    try:
        return _FACTS_BY_CLASS[cls]
    except KeyError:
        pass
    facts = _Facts(transformer) if cls.__dict__.get("_plain_instances") is True else None
    _FACTS_BY_CLASS[cls] = facts
    return facts


# (``_pick``, ``_class_routers_only`` and ``_shares_a_key`` are loops, not
# generator expressions inside the methods that use them: compiled, such a
# method would build a closure on every call, made for each route of every
# child mux)
def _pick(routers: List[Any], method: str, at_scope: bool) -> Tuple[int, ...]:
    """The positions of the transformers whose router lets ``(method,
    at_scope)`` parts in (``None``: no router, every part)."""
    picked = []
    for i, wants in enumerate(routers):
        if wants is None or wants(method, at_scope):
            picked.append(i)
    return tuple(picked)


def _class_routers_only(transformers: List[Any], routers: List[Any]) -> bool:
    """Whether every router is the one its transformer's class declares."""
    for transformer, router in zip(transformers, routers):
        if router is not None and _ROUTER_BY_CLASS.get(type(transformer), (None,))[0] is not router:
            return False
    return True


def _shares_a_key(projection: Dict[str, Any], extensions: Dict[str, Any]) -> bool:
    """Whether ``projection`` has a key ``extensions`` has."""
    for key in projection:
        if key in extensions:
            return True
    return False


def _key_conflict(transformer: Any, projection: Dict[str, Any], extensions: Dict[str, Any],
                  by_key: Dict[str, Any]) -> ValueError:
    """The error of a projection whose keys other transformers registered
    (a function of its own: compiled, a generator expression inside
    ``_register_all`` would make that method build a closure on every call)."""
    listed = ", ".join(
        f"{key!r} (owned by {type(by_key[key]).__name__})"
        for key in sorted(projection.keys() & extensions.keys())
    )
    return ValueError(
        f"Transformer {type(transformer).__name__} returned projection keys "
        f"that conflict with already-registered keys: {listed}"
    )


def _refuse_foreign_channels(transformer: Any, projection: Dict[str, Any]) -> None:
    """Refuse projections that are LangGraph's own ``StreamChannel``.

    langstream binds and drives only its own channels: one of LangGraph's
    would be registered but never bound, and fail much later, when a
    consumer iterates it ("has not been bound yet").
    """
    foreign = [
        key for key, value in projection.items()
        if not isinstance(value, StreamChannel)
        and type(value).__name__ == "StreamChannel"
        and type(value).__module__.startswith("langgraph.")
    ]
    if not foreign:
        return
    cls = type(transformer)
    advice = (
        f"use langstream.{cls.__name__} instead (the same projection, on langstream's log)"
        if cls.__module__.startswith("langgraph.stream")
        else "build it on langstream.StreamTransformer / langstream.StreamChannel "
        "(change the imports from langgraph.stream to langstream)"
    )
    raise TypeError(
        f"{cls.__name__} returns LangGraph's own StreamChannel for "
        f"{', '.join(repr(k) for k in foreign)}: langstream can only bind and drive "
        f"langstream.StreamChannel projections; {advice}"
    )


def _check_scope(scope: Any) -> Tuple[str, ...]:
    """Validate a scope (a tuple or list of str); return it as a tuple of str."""
    if isinstance(scope, (str, bytes)) or not isinstance(scope, (tuple, list)):
        raise TypeError(
            f"scope must be a tuple of str namespace segments, got {scope!r} "
            f"({type(scope).__name__})"
        )
    for segment in scope:
        if not isinstance(segment, str):
            raise TypeError(
                f"scope must be a tuple of str namespace segments, got {scope!r} "
                f"(segment {segment!r} is a {type(segment).__name__})"
            )
    return tuple(str.__str__(segment) for segment in scope)


def _stray_stop(transformer: Any, hook: str, exc: BaseException) -> RuntimeError:
    """The error a transformer's ``StopIteration``/``StopAsyncIteration`` becomes.

    Only the graph's own exhaustion ends a run; a stop raised by a
    transformer would read as a normal end to every ``for`` loop, so (as
    PEP 479 does for generators) it is turned into a ``RuntimeError`` that
    names the transformer.
    """
    err = RuntimeError(
        f"transformer {type(transformer).__name__}.{hook}() raised "
        f"{type(exc).__name__}; only the graph's own exhaustion may end a run"
    )
    err.__cause__ = exc
    return err


_STOPS = (StopIteration, StopAsyncIteration)


def _factory_stop(factory: Any, scope: Tuple[str, ...], exc: BaseException) -> RuntimeError:
    """The error a factory's ``StopIteration``/``StopAsyncIteration`` becomes
    (as for a transformer's, see ``_stray_stop``): it names the factory."""
    name = getattr(factory, "__qualname__", None) or repr(factory)
    return RuntimeError(
        f"transformer factory {name} raised {type(exc).__name__} while building the "
        f"pipeline of scope {scope!r}; only the graph's own exhaustion may end a run"
    )


def _is_stop(exc: BaseException) -> bool:
    """A stop, or the ``RuntimeError`` PEP 479 made of one inside a coroutine
    (e.g. the default ``aprocess``/``afinalize`` calling a sync hook)."""
    if isinstance(exc, _STOPS):
        return True
    return (
        type(exc) is RuntimeError
        and isinstance(exc.__cause__, _STOPS)
        and str(exc).endswith(" raised " + type(exc.__cause__).__name__)
    )


def _as_stop_error(transformer: Any, hook: str, exc: BaseException) -> BaseException:
    """``exc``, or the named ``RuntimeError`` when it is a transformer's stop."""
    if not _is_stop(exc):
        return exc
    return _stray_stop(transformer, hook, exc if isinstance(exc, _STOPS) else exc.__cause__)


class _Shared:
    """State shared by a root mux and all of its child muxes."""

    __slots__ = ("counter", "bp", "deferred", "children", "newest", "epoch", "changes", "kept",
                 "ahead", "hints")

    def __init__(self) -> None:
        # one sequence for every projection log, so pushes can be ordered
        # across projections (``interleave``)
        self.counter = _el.SeqCounter()
        self.bp = _Backpressure()
        # (child mux, run stream handle or None, event): forwards postponed to
        # the next pump step so a consumer can subscribe to a new handle first
        self.deferred: List[Tuple[Any, Any, Any]] = []
        # child muxes made so far: a step that made one may have handed out a
        # new handle, so the async pump lets consumers subscribe before it
        # pulls on (pushes to a log nobody subscribes to are not stored)
        self.children = 0
        # (a weak reference to) the child mux made last on the async lane:
        # the pump asks whether a consumer has subscribed to it yet
        self.newest: Any = None
        # bumped whenever a kept route may have become wrong (a namespace
        # ended anywhere, a transformer registered on any mux); ``changes``
        # says what each bump made stale: the routes of the namespaces in an
        # ended namespace's subtree, or (None) every route.  Each mux drops
        # those of its per-namespace routes below its scope (see
        # ``_forget_stale``; a discovery changes no kept route)
        self.epoch = 0
        # (None until the first change: most runs have none)
        self.changes: Optional[Deque[Tuple[int, Optional[Tuple[str, ...]]]]] = None
        # a route was kept since the last change (set where routes are kept)
        self.kept = False
        # the part the pump pulled ahead of a subgraph's input snapshot (see
        # ``GraphRunStream._dispatch_route``), to dispatch next, or None
        self.ahead: Any = None
        # namespace -> the agent name that part announced, while the
        # snapshot that discovers the namespace is dispatched
        self.hints: Dict[Tuple[str, ...], str] = {}

    def changed(self, prefix: Optional[Tuple[str, ...]]) -> None:
        """Kept routes of the namespaces in ``prefix``'s subtree (None: of
        every namespace) may be wrong from now on."""
        changes = self.changes
        if not self.kept and changes and changes[-1][1] == prefix:
            # (the same change again, no route kept since: e.g. each tracker
            # on the way up ending one namespace; nothing more is stale)
            return
        self.kept = False
        self.epoch += 1
        if changes is None:
            changes = self.changes = deque(maxlen=_CHANGES_KEPT)
        changes.append((self.epoch, prefix))


# how many of the tree's latest route changes are kept: a mux whose routes
# are older than all of them drops every route
_CHANGES_KEPT = 64

# (a failed scheduled task's error is kept as ``(order, error)``)
_ORDER = itemgetter(0)


def _forget_stale(routes: Dict[str, Dict[Tuple[str, ...], Any]], shared: _Shared,
                  since: int, scope: Tuple[str, ...]) -> None:
    """Drop the routes of ``routes`` (method -> {namespace: route}, kept by
    the mux of ``scope`` in epoch ``since``) that the tree's changes since
    then made stale."""
    if not routes:
        return
    changes = shared.changes
    if since < 0 or not changes or changes[0][0] > since + 1:
        routes.clear()  # (older than every change kept)
        return
    depth = len(scope)
    prefixes = []
    for i in range(len(changes) - 1, -1, -1):
        epoch, prefix = changes[i]
        if epoch <= since:
            break
        if prefix is None or len(prefix) <= depth:
            if prefix is None or scope[:len(prefix)] == prefix:
                routes.clear()  # (every route, or this mux's whole subtree)
                return
            continue  # (another subtree: none of this mux's routes)
        if prefix[:depth] == scope:
            prefixes.append(prefix)
    if not prefixes:
        return
    for by_ns in routes.values():
        if not by_ns:
            continue
        stale = []
        for ns in by_ns:
            n = len(ns)
            for prefix in prefixes:
                # (the last segment first: a task id, it tells them apart)
                k = len(prefix)
                if n >= k and ns[k - 1] == prefix[k - 1] and ns[:k] == prefix:
                    stale.append(ns)
                    break
        for ns in stale:
            del by_ns[ns]


class _Forward:
    """An op of a route below a mux's scope: hand the part to a child mux.

    A transformer's ``_fast_handler_below`` returns it (``SubgraphTransformer``
    for the open child whose subtree holds the namespace); the child then
    dispatches the same part through its own routes, and the protocol event,
    if anyone needs it, is built once and shared by every mux on the way.
    """

    __slots__ = ("mux",)

    def __init__(self, mux: Any) -> None:
        self.mux = mux


class _Guarded:
    """A fast handler that may run only when ``check(part)`` is false.

    When a check says true, the part takes the event path instead, decided
    before any handler of its route runs (e.g. on the async lane a task
    result that ends a subgraph, whose mux must be closed with an await).
    """

    __slots__ = ("check", "op")

    def __init__(self, check: Callable[[Any], bool], op: Callable[[Any], Any]) -> None:
        self.check = check
        self.op = op


class _Guards:
    """The first op of a fast route with guarded handlers, its own or those
    of the child routes it hands parts to: ``check(part)`` runs them all
    where the part is dispatched, before any op; as an op it does nothing."""

    __slots__ = ("checks",)

    def __init__(self, checks: Sequence[Callable[[Any], bool]]) -> None:
        self.checks = tuple(checks)

    def check(self, part: Any) -> bool:
        """True when a guard sends ``part`` to the event path."""
        for check in self.checks:
            if check(part):
                return True
        return False

    def __call__(self, part: Any) -> None:
        return None


def _with_guards(ops: List[Any], checks: List[Callable[[Any], bool]]) -> Tuple[Any, ...]:
    return (_Guards(checks), *ops) if checks else tuple(ops)


def _recipe_entry(recipe: List[Tuple[Any, ...]], transformers: List[Any], transformer: Any,
                  handler: Any, check: Any) -> Optional[List[Tuple[Any, ...]]]:
    """Add a handler (and its guard) to a route recipe, or return None when
    it is not a method of ``transformer`` (nothing to bind again)."""
    for part in (handler, check):
        if part is not None and (type(part) is not MethodType or part.__self__ is not transformer):
            return None
    position = next(i for i, t in enumerate(transformers) if t is transformer)
    if check is None:
        recipe.append((position, handler.__func__))
    else:
        recipe.append((position, check.__func__, handler.__func__))
    return recipe


def _bind_recipe(recipe: Any, transformers: List[Any]) -> Optional[Tuple[Any, ...]]:
    """The fast route a recipe makes for ``transformers`` (see ``_RECIPES``)."""
    if recipe is _NO_ROUTE:
        return None
    handlers = []
    checks = []
    for entry in recipe:
        transformer = transformers[entry[0]]
        if len(entry) == 3:
            checks.append(MethodType(entry[1], transformer))
        handlers.append(MethodType(entry[-1], transformer))
    return _with_guards(handlers, checks)


def _pipeline_list(items: Any, param: str) -> List[Any]:
    """``transformers`` / ``factories`` as a list (None: empty), or a TypeError
    naming the parameter; every factory must be callable."""
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise TypeError(f"{param} must be a sequence, got {type(items).__name__} {items!r}")
    out = list(items)
    if param == "factories":
        for factory in out:
            if not callable(factory):
                raise TypeError(
                    "factories must be callables factory(scope) -> StreamTransformer, "
                    f"got {type(factory).__name__} {factory!r}"
                )
    return out


def _check_transformer(transformer: Any, param: str, factory: Any) -> Any:
    """A transformer has ``init`` and ``process``; else a TypeError naming where
    it came from (``transformers``, or the factory that built it)."""
    if not (callable(getattr(transformer, "init", None))
            and callable(getattr(transformer, "process", None))):
        source = "transformers holds" if factory is None else f"factory {factory!r} returned"
        raise TypeError(
            f"{source} {type(transformer).__name__} {transformer!r}, which is not a "
            "StreamTransformer (an object with init() and process())"
        )
    return transformer


def _check_error(err: Any, method: str) -> None:
    if not isinstance(err, BaseException):
        raise TypeError(
            f"StreamMux.{method}() err must be an exception, got "
            f"{type(err).__name__} {err!r}"
        )


class _MuxCore:
    """What ``StreamMux`` is made of: its pipeline state and every method.

    A base of its own so that, compiled, it is an extension type (``mux.pxd``
    declares its attributes: its methods read and write them in the instance
    instead of looking them up) while ``StreamMux`` itself stays a plain
    class: patchable, subclassable, with an instance dict.  The attributes a
    subclass may redefine (the public ones, and ``_latest``, which the
    compiled dispatcher writes by its slot) are ``StreamMux``'s slots, so the
    methods here reach them by the ordinary lookup.  Only ``StreamMux``
    derives from it.
    """

    # every attribute the class sets is a slot (here or in ``StreamMux``): a
    # child mux per subgraph is made without an instance dict
    __slots__ = (
        "_scope_list", "_assign_seq", "_shared",
        "_transformers", "_channels", "_routers", "_direct", "_routes", "_fast_routes",
        "_below", "_below_epoch", "_route_listeners", "_part_dispatcher", "_interrupted",
        "_interrupts", "_transformer_by_key", "_factories",
        "_pump_fn", "_apump_fn", "_finished", "_error_tb", "_events", "_routed", "_shape",
    )

    def __reduce_ex__(self, protocol: Any) -> Tuple[Any, ...]:
        # (a copy keeps ``StreamMux``'s own slots too: see ``_slotted_reduce``)
        return _slotted_reduce(self)

    def _setup(
        self,
        transformers: Optional[Sequence[Any]],
        is_async: bool,
        factories: Optional[Sequence[TransformerFactory]],
        scope: Tuple[str, ...],
        maxlen: Optional[int],
        _assign_seq: bool,
        _shared: Optional[_Shared],
    ) -> None:
        """``StreamMux.__init__`` (here, so that compiled it sets the
        attributes in the instance)."""
        if _shared is None:  # (a child mux: checked by its root, segments from parts)
            _el.EventLog(maxlen)  # validate maxlen with the log's own message
            scope = _check_scope(scope)
            if factories is not None:
                factories = _pipeline_list(factories, "factories")
        elif factories is not None and type(factories) is not list:
            factories = _pipeline_list(factories, "factories")
        # (a child mux shares its root's checked list of factories)
        self.is_async = bool(is_async)
        self.scope: Tuple[str, ...] = scope
        self.maxlen = maxlen
        self._scope_list: List[str] = _scope_list_of(scope)
        self._assign_seq = _assign_seq
        self._shared = _shared if _shared is not None else _Shared()
        self._transformers: List[Any] = []
        self._channels: List[StreamChannel[Any]] = []
        self._routers: List[Optional[Callable[[str, bool], bool]]] = []
        # ids of the transformers whose aprocess is the default one (the
        # async dispatch calls their process directly); a dict as a set:
        # holding ints only, the collector never tracks it
        self._direct: Dict[int, None] = {}
        self._routes: Dict[Tuple[str, bool], Tuple[Any, ...]] = {}
        # keyed by the method for routes at the scope (the per-part lookup:
        # a str caches its hash, a tuple is hashed again on every lookup),
        # by (method, False) below it
        self._fast_routes: Dict[Any, Optional[Tuple[Callable[[Any], None], ...]]] = {}
        # routes of parts below the scope, per method and namespace (tuple):
        # the ops, or None for the event path; valid for one tree epoch
        self._below: Dict[str, Dict[Tuple[str, ...], Optional[Tuple[Any, ...]]]] = {}
        self._below_epoch = -1
        # compiled dispatchers caching routes; told when the routes change
        self._route_listeners: Tuple[Any, ...] = ()  # (a tuple: most stay empty)
        self._part_dispatcher: Any = None  # this mux's compiled one, if made
        # the latest snapshot and the interrupts at this scope (run results)
        self._latest: Any = None
        self._interrupted = False
        self._interrupts: List[Any] = []
        self.extensions: Dict[str, Any] = {}
        self.native_keys: set[str] = set()
        self._transformer_by_key: Dict[str, Any] = {}
        self._factories: Optional[List[TransformerFactory]] = factories  # type: ignore[assignment]
        self._pump_fn: Optional[Callable[[], bool]] = None
        self._apump_fn: Optional[Callable[[], Awaitable[bool]]] = None
        self._finished = False
        self._error_tb: Optional[Tuple[BaseException, Any]] = None

        # the main log: a channel of its own, numbered by its own counter
        events: StreamChannel[Any] = StreamChannel()
        events._bind(is_async=self.is_async)
        events._mux = self
        events._limit = maxlen
        events._log = _el.EventLog(None if self.is_async else maxlen)
        self._events = events
        if maxlen is not None and self.is_async:
            self._track_bounded(events, "<main log>")

        pre: List[Any] = []
        rest: List[Any] = []
        plain = True
        if factories is not None:
            for factory in factories:
                try:
                    made = factory(scope)
                except _STOPS as exc:  # (it would read as the end of the run)
                    raise _factory_stop(factory, scope, exc) from exc
                # (the class as its own factory: no code but the class's ran
                # on the instance, so a plain class's answers are its own)
                facts = _plain_facts(made) if factory is type(made) else None
                if facts is None:
                    plain = False
                    transformer = _check_transformer(made, "factory", factory)
                    (pre if getattr(transformer, "before_builtins", False) else rest).append(
                        (transformer, None)
                    )
                else:
                    (pre if facts.pre else rest).append((made, facts))
            self._register_all((*pre, *rest) if pre else rest)
            pre = []
            rest = []
        if transformers is not None:
            for transformer in _pipeline_list(transformers, "transformers"):
                _check_transformer(transformer, "transformers", None)
                (pre if getattr(transformer, "before_builtins", False) else rest).append(
                    transformer
                )
            for transformer in (*pre, *rest):
                self._register(transformer)
        self._routed: Any = _UNSET  # (``_routed_ids``, computed on first use)
        # the pipeline's classes (with the lane) while every transformer is a
        # plain one its factory made, else None (see ``_RECIPES``)
        self._shape: Any = None
        if plain and transformers is None and self._transformers:
            global _last_shape
            shape = (self.is_async, *[type(t) for t in self._transformers])
            if shape == _last_shape:
                shape = _last_shape
            else:
                _last_shape = shape
            self._shape = shape

    # ------------------------------------------------------------ registration

    def _register(self, transformer: Any) -> None:
        """Register one more transformer (at construction, or mid-run)."""
        self._register_all(((transformer, None),))
        self._shape = None  # (no longer a pipeline of plain transformers)
        # (mid-run, routes below a parent's scope may go through here; the
        # factories' transformers of a new child mux change no route in use)
        self._shared.changed(None)

    def _register_all(self, entries: Any) -> None:
        """Register transformers in order (``_register``, one after the other).

        ``entries`` holds ``(transformer, facts)`` pairs: the class's answers
        (``_plain_facts``) when the transformer is a plain instance just made
        by its class, else ``None`` (each is asked).
        """
        is_async = self.is_async
        my_scope = self.scope
        transformers = self._transformers
        routers = self._routers
        extensions = self.extensions
        by_key = self._transformer_by_key
        for transformer, facts in entries:
            if not is_async and (
                _needs_event_loop(transformer) if facts is None else facts.needs_loop
            ):
                raise RuntimeError(
                    f"{type(transformer).__name__} requires an async run: it needs a "
                    "running event loop (it overrides aprocess/afinalize/afail or sets "
                    "requires_async=True). Use an async run (astream_events / StreamMux(is_async=True)), "
                    "not a sync one."
                )
            projection = transformer.init()
            if type(projection) is not dict and not isinstance(projection, dict):
                raise TypeError(
                    f"{type(transformer).__name__}.init() must return a dict of "
                    f"projections, got {type(projection).__name__}: {projection!r}"
                )
            for value in projection.values():
                if type(value) is not StreamChannel:
                    _refuse_foreign_channels(transformer, projection)
                    break
            if extensions and _shares_a_key(projection, extensions):
                raise _key_conflict(transformer, projection, extensions, by_key)
            if facts is None:
                native = bool(getattr(transformer, "_native", False))
            else:
                native = facts.native
            transformers.append(transformer)
            # routing predicates speak of the transformer's own scope: trust them
            # only when it is this mux's
            scope = getattr(transformer, "scope", ())
            if (scope if type(scope) is tuple else tuple(scope)) != my_scope:
                routers.append(None)
            else:
                routers.append(_router(transformer) if facts is None else facts.router)
            if is_async and (_calls_process(transformer) if facts is None else facts.direct):
                self._direct[id(transformer)] = None  # (the mux keeps it: the id stays its own)
            self._routed = _UNSET
            if self._routes:
                self._routes.clear()
            if self._fast_routes:
                self._fast_routes.clear()
            for listener in self._route_listeners:
                listener._invalidate()
            native_keys = self.native_keys
            for key, value in projection.items():
                if type(value) is StreamChannel or isinstance(value, StreamChannel):
                    self._adopt_channel(key, value, native)
                extensions[key] = value
                by_key[key] = transformer
                if native:
                    native_keys.add(key)
            if facts is None:
                on_register = getattr(transformer, "_on_register", None)
                if on_register is not None:
                    on_register(self)
            elif facts.on_register is not None:
                facts.on_register(transformer, self)

    def _adopt_channel(self, key: str, channel: StreamChannel[Any], native: bool) -> None:
        is_async = self.is_async
        if type(channel) is StreamChannel and channel._is_async is None:
            limit = channel._bind_to(self, is_async, self.maxlen, self._shared.counter)
        else:
            channel._bind(is_async=is_async)
            channel._bind_mux(self)
            limit = channel._limit
        self._channels.append(channel)
        if self._pump_fn is not None:
            channel._request_more = self._pump_fn
        if self._apump_fn is not None:
            channel._arequest_more = self._apump_fn
        if limit is not None and is_async:
            self._track_bounded(channel, key)
        if channel.name is not None:
            method = channel.name if native else f"custom:{channel.name}"
            channel._wire(method)  # (pushes: self._forward(method, item))

    def _track_bounded(self, channel: StreamChannel[Any], key: str) -> None:
        """Put a bounded channel of an async run under backpressure."""
        if channel._limit is not None and self.is_async:
            label = key if not self.scope else f"{'/'.join(self.scope)}:{key}"
            channel._bp = self._shared.bp
            self._shared.bp.channels.append((label, channel))

    def transformer_by_key(self, key: str) -> Any:
        """Return the transformer that contributed projection ``key``, or ``None``."""
        return self._transformer_by_key.get(key)

    # ------------------------------------------------------------------ pumps

    def bind_pump(self, fn: Callable[[], bool]) -> None:
        """Wire the sync pump: readers of every projection call it when empty."""
        self._pump_fn = fn
        self._events._request_more = fn
        for ch in self._channels:
            ch._request_more = fn
        for transformer in self._transformers:
            bind = getattr(transformer, "_bind_pump", None)
            if bind is not None:
                bind(fn)

    def bind_apump(self, fn: Callable[[], Awaitable[bool]]) -> None:
        """Wire the async pump (the async counterpart of ``bind_pump``)."""
        self._apump_fn = fn
        self._events._arequest_more = fn
        for ch in self._channels:
            ch._arequest_more = fn
        for transformer in self._transformers:
            bind = getattr(transformer, "_bind_apump", None)
            if bind is not None:
                bind(fn)

    def _make_child(self, scope: Tuple[str, ...]) -> StreamMux:
        """Build a child mux with the same factories at a deeper ``scope``.

        Raises:
            RuntimeError: this mux was built without ``factories``.
        """
        if self._factories is None:
            raise RuntimeError(
                "StreamMux._make_child needs a mux built with factories=; "
                "pre-built transformers cannot be cloned into a child scope."
            )
        child = StreamMux(
            factories=self._factories,
            is_async=self.is_async,
            scope=scope,
            maxlen=self.maxlen,
            _assign_seq=False,
            _shared=self._shared,
        )
        shared = self._shared
        shared.children += 1
        if self.is_async:
            shared.newest = weakref.ref(child)
        if self._pump_fn is not None:
            child.bind_pump(self._pump_fn)
        if self._apump_fn is not None:
            child.bind_apump(self._apump_fn)
        return child

    def _defer(self, child: StreamMux, handle: Any, event: Any) -> None:
        """Forward ``event`` into ``child`` at the start of the next pump step
        (a ``None`` child forwards nothing: the next step only comes back
        to the pump's general path)."""
        self._shared.deferred.append((child, handle, event))

    def _flush_deferred(self) -> bool:
        """Run the forwards postponed by the previous pump step (sync lane);
        True when there was one (not only ``None`` children)."""
        batch = list(self._shared.deferred)  # (the list object is kept: the
        self._shared.deferred.clear()        # async pump holds a reference)
        forwarded = False
        for child, handle, event in batch:
            if child is None:
                continue
            forwarded = True
            if child._events._log.closed:
                continue
            child.push(event)
        return forwarded

    async def _aflush_deferred(self) -> bool:
        """Async counterpart of ``_flush_deferred``."""
        batch = list(self._shared.deferred)  # (the list object is kept: the
        self._shared.deferred.clear()        # async pump holds a reference)
        forwarded = False
        for child, handle, event in batch:
            if child is None:
                continue
            forwarded = True
            if child._events._log.closed:
                continue
            await child.apush(event)
        return forwarded

    # --------------------------------------------------------------- dispatch

    def _route(self, method: str, at_scope: bool) -> Tuple[Any, ...]:
        key = (method, at_scope)
        route = self._routes.get(key)
        if route is None:
            # which positions a pipeline's routers let in depends only on the
            # routers (trusted ones are class-level predicates): computed
            # once per pipeline shape, not once per child mux
            routers = self._routers
            shape = (tuple(routers), method, at_scope)
            picked = _PICKED.get(shape)
            if picked is None:
                picked = _pick(routers, method, at_scope)
                # (only the routers classes declare: an instance's own one is
                # kept out, or the cache could keep that instance alive)
                if _class_routers_only(self._transformers, routers):
                    if len(_PICKED) >= _PICKED_MAX:  # (method names come from parts)
                        _PICKED.clear()
                    _PICKED[shape] = picked
            transformers = self._transformers
            route = tuple([transformers[i] for i in picked])
            self._routes[key] = route
        return route

    def _routed_ids(self) -> Optional[set]:
        """The ids of the transformers with a trusted router (only they may
        have fast handlers), or ``None`` when every one has one."""
        routed = self._routed
        if routed is _UNSET:
            routers = self._routers
            routed = self._routed = (
                None if None not in routers
                else {id(t) for t, r in zip(self._transformers, routers) if r is not None}
            )
        return routed

    def _fast_route(self, method: str, at_scope: bool) -> Optional[Tuple[Callable[[Any], None], ...]]:
        key = method if at_scope else (method, False)
        if key not in self._fast_routes:
            shape = self._shape
            recipe = None
            if shape is not None:
                recipe = _RECIPES.get((shape, method, at_scope))
            if recipe is not None:
                route = _bind_recipe(recipe, self._transformers)
            else:
                route = self._make_fast_route(method, at_scope)
            self._fast_routes[key] = route
        return self._fast_routes[key]

    def _make_fast_route(self, method: str, at_scope: bool) -> Optional[Tuple[Any, ...]]:
        """The fast route of ``(method, at_scope)`` parts, asked of each
        transformer; kept as a recipe for the pipeline when it can be."""
        handlers: Optional[List[Any]] = []
        checks: List[Callable[[Any], bool]] = []
        recipe: Optional[List[Tuple[Any, ...]]] = [] if self._shape is not None else None
        transformers = self._transformers
        routed = self._routed_ids()
        for transformer in self._route(method, at_scope):
            handler = (_fast(transformer, method, at_scope)
                       if routed is None or id(transformer) in routed else None)
            if handler is None:
                handlers = None
                break
            if type(handler) is _Guarded:
                if recipe is not None:
                    recipe = _recipe_entry(recipe, transformers, transformer,
                                           handler.op, handler.check)
                checks.append(handler.check)
                handler = handler.op
            elif recipe is not None:
                recipe = _recipe_entry(recipe, transformers, transformer, handler, None)
            handlers.append(handler)
        route = _with_guards(handlers, checks) if handlers is not None else None
        shape = self._shape
        # (not from a mux that has ended: its trackers have let go of it, and
        # a route made now is not the one a live child of the pipeline gets)
        if shape is not None and not self._finished and (recipe is not None or handlers is None):
            if len(_RECIPES) >= _PICKED_MAX:  # (method names come from parts)
                _RECIPES.clear()
            _RECIPES[(shape, method, at_scope)] = (
                _NO_ROUTE if handlers is None else tuple(recipe)  # type: ignore[arg-type]
            )
        return route

    def _track_values(self, data: Any, interrupts: Any) -> None:
        self._latest = data
        if interrupts:
            self._interrupted = True
            self._interrupts.extend(interrupts)

    def _below_route(self, method: str, namespace: Tuple[str, ...],
                     keep: bool = True) -> Optional[Tuple[Any, ...]]:
        """The fast route of ``method`` parts at ``namespace``, below the scope.

        Decided once per namespace (and tree epoch): every transformer
        routed for the part must say, through ``_fast_handler_below`` (or a
        trusted ``_fast_part``), what it does with parts of that namespace:
        nothing, a handler, or a ``_Forward`` to the child mux whose subtree
        holds it, whose own route must be fast too.  ``None`` (the event
        path) when one cannot, e.g. when the part would discover a namespace.

        ``keep=False``: the caller keeps the route itself (the compiled
        dispatcher, which keeps its compiled form), so this mux does not
        keep a second copy to drop when the namespace ends.
        """
        epoch = self._shared.epoch
        if self._below_epoch != epoch:
            _forget_stale(self._below, self._shared, self._below_epoch, self.scope)
            self._below_epoch = epoch
        by_ns = self._below.get(method)
        if by_ns is not None:
            route = by_ns.get(namespace, _UNSET)  # (one tuple hash per part)
            if route is not _UNSET:
                return route
        ops: Optional[List[Any]] = []
        checks: List[Callable[[Any], bool]] = []
        routed = self._routed_ids()
        for transformer in self._route(method, False):
            if routed is not None and id(transformer) not in routed:
                ops = None
                break
            below = getattr(transformer, "_fast_handler_below", None)
            if below is not None:
                found = below(method, namespace)
            else:
                handler = _fast(transformer, method, False)
                found = None if handler is None else (handler,)
            if found is None:
                ops = None
                break
            for op in found:
                if type(op) is _Forward:
                    child_route = op.mux._route_for(method, namespace)
                    if child_route is None:
                        ops = None
                        break
                    if child_route and type(child_route[0]) is _Guards:
                        # (checked here, before this route's first op: the
                        # ops before the hand-over change nothing below)
                        checks.extend(child_route[0].checks)
                elif type(op) is _Guarded:
                    checks.append(op.check)
                    op = op.op
                ops.append(op)  # type: ignore[union-attr]
            if ops is None:
                break
        if ops is None:
            # (not kept: the part takes the event path, and when it discovers
            # a namespace the next part's route differs; a discovery changes
            # no route that is kept, so it does not move the epoch)
            return None
        route = _with_guards(ops, checks)
        if keep and self._below_epoch == self._shared.epoch:  # (a child's route may have moved it)
            by_ns = self._below.get(method)
            if by_ns is None:
                by_ns = self._below[method] = {}
            by_ns[namespace] = route
            self._shared.kept = True
        return route

    def _route_for(self, method: str, namespace: Any) -> Optional[Tuple[Any, ...]]:
        """The fast route of a part at ``namespace`` (a tuple or list), or None."""
        if len(namespace) == len(self._scope_list) and list(namespace) == self._scope_list:
            fast = self._fast_routes.get(method, False)
            return self._fast_route(method, True) if fast is False else fast
        return self._below_route(method, tuple(namespace))

    def _push_part_fast(self, part: Any) -> Optional[Tuple[Any, str, bool]]:
        """Validate ``part`` and dispatch it through its fast route if it has one.

        A fast route (every interested transformer takes parts directly) is
        taken whoever reads the main log: with a reader, the protocol event
        is built after the handlers ran and appended (numbered) as the event
        path would; without one it is never built and only its number is
        consumed.  Parts below the scope are routed per namespace (see
        ``_below_route``): to the child mux of their subtree, as parts.
        Returns ``None`` when the part was fully dispatched, else ``(event,
        method, at_scope)`` for the event path: the protocol event built
        from the part validated here (it is validated once).
        """
        method, namespace, data, interrupts = _split(part)
        at_scope = namespace == self._scope_list
        if at_scope:
            if method == "values":
                self._latest = data
                if interrupts:
                    self._interrupted = True
                    self._interrupts.extend(interrupts)
            fast = self._fast_routes.get(method, False)
            if fast is False:
                fast = self._fast_route(method, True)
        else:
            fast = self._below_route(method, tuple(namespace))
        if fast and type(fast[0]) is _Guards and fast[0].check(part):
            fast = None  # (a guard sends it to the event path, before any op ran)
        if fast is None:
            return _build_event(method, namespace, data, part), method, at_scope
        self._run_fast(fast, part, method, namespace, data, None)
        return None

    def _take_part(self, part: Any, method: str, namespace: List[str], data: Any,
                   event: Any) -> Any:
        """A part a parent's fast route forwards here (validated, in this
        mux's subtree); returns its protocol event if one was built."""
        at_scope = namespace == self._scope_list
        if at_scope and method == "values":
            interrupts = _interrupts_of(part)
            self._latest = data
            if interrupts:
                self._interrupted = True
                self._interrupts.extend(interrupts)
        fast = self._route_for(method, namespace)
        if fast is None:
            # (the parent found this route fast in the same tree epoch; a
            # handler earlier in its route changed the tree since): the
            # event path, as the parent's process() would have forwarded it
            if event is None:
                event = _build_event(method, namespace, data, part)
            self._dispatch_inline(event, method, at_scope)
            return event
        return self._run_fast(fast, part, method, namespace, data, event)

    def _dispatch_inline(self, event: Any, method: str, at_scope: bool) -> None:
        """``_dispatch`` from inside a fast route (no await possible)."""
        if self.is_async:
            direct = self._direct
            for transformer in self._route(method, at_scope):
                if id(transformer) not in direct:
                    raise RuntimeError(
                        f"internal error: a fast route reached {type(transformer).__name__}"
                        ".aprocess, which must be awaited; please report it"
                    )
        self._dispatch(event, method, at_scope)

    def _run_fast(self, fast: Tuple[Any, ...], part: Any, method: str, namespace: List[str],
                  data: Any, event: Any) -> Any:
        """Run a fast route's ops on ``part``, then the main log's rules;
        returns the protocol event if one was built (here or below)."""
        keep = True
        n = len(fast)
        if n == 1 and type(fast[0]) is not _Forward:
            # the common route, one handler: called without the loop (on PyPy
            # a loop run once per part is compiled apart from the pump and
            # entered through a call every time)
            keep = fast[0](part) is not False
        elif n == 2 and type(fast[0]) is not _Forward and type(fast[1]) is not _Forward:
            # two handlers (a task part at the scope: the trackers'
            # bookkeeping), the same way; both run, in order, as in the loop
            keep = (fast[0](part) is not False) & (fast[1](part) is not False)
        else:
            for op in fast:
                if type(op) is _Forward:
                    child = op.mux
                    if not child._events._log.closed:
                        event = child._take_part(part, method, namespace, data, event)
                elif op(part) is False:
                    keep = False
        if not keep:  # (like a process() returning False)
            return event
        log = self._events._log
        if event is not None:  # (built below: numbered here as it enters this log)
            self._append(event)
        elif log.cursor_count:
            event = _build_event(method, namespace, data, part)
            self._append(event)
        else:
            log.push(None)
        return event

    def push_part(self, part: Any) -> None:
        """Dispatch a v2 stream part (the pump's entry point; sync lane).

        Equivalent to ``push(convert_to_protocol_event(part))``.  When every
        transformer interested in the part takes parts directly and nobody
        reads the main log, the protocol event is never built (nobody could
        observe it); its sequence number is consumed all the same.

        Raises:
            TypeError / ValueError: the part is malformed (names the field).
        """
        route = self._push_part_fast(part)
        if route is not None:
            self._dispatch(route[0], route[1], route[2])

    async def apush_part(self, part: Any) -> None:
        """Async ``push_part``."""
        route = self._push_part_fast(part)
        if route is not None:
            await self._adispatch(route[0], route[1], route[2])

    def push(self, event: ProtocolEvent) -> None:
        """Run ``event`` through every transformer, then append it to the main log.

        Any transformer returning ``False`` keeps the event out of the main
        log; the others still see it and keep their side effects.  On the
        root mux the event gets its ``seq`` as it enters the log, so events
        forwarded by transformers during ``process`` come before it.
        """
        method = event["method"]
        params = event["params"]
        at_scope = params["namespace"] == self._scope_list
        if at_scope and method == "values":
            self._track_values(params["data"], params.get("interrupts"))
        self._dispatch(event, method, at_scope)

    def _dispatch(self, event: Any, method: str, at_scope: bool) -> None:
        route = self._routes.get((method, at_scope))
        if route is None:
            route = self._route(method, at_scope)
        keep = True
        try:
            for transformer in route:
                if not transformer.process(event):
                    keep = False
        except _STOPS as exc:
            raise _stray_stop(transformer, "process", exc) from exc
        if keep:
            self._append(event)

    async def apush(self, event: ProtocolEvent) -> None:
        """Async ``push``: awaits each transformer's ``aprocess`` in order."""
        method = event["method"]
        params = event["params"]
        at_scope = params["namespace"] == self._scope_list
        if at_scope and method == "values":
            self._track_values(params["data"], params.get("interrupts"))
        await self._adispatch(event, method, at_scope)

    async def _adispatch(self, event: Any, method: str, at_scope: bool) -> None:
        route = self._routes.get((method, at_scope))
        if route is None:
            route = self._route(method, at_scope)
        keep = True
        direct = self._direct
        try:
            for transformer in route:
                if id(transformer) in direct:  # (the default aprocess: process(event))
                    if not transformer.process(event):
                        keep = False
                elif not await transformer.aprocess(event):
                    keep = False
        except (StopIteration, StopAsyncIteration, RuntimeError) as exc:
            err = _as_stop_error(transformer, "aprocess", exc)
            if err is exc:
                raise
            raise err from err.__cause__
        if keep:
            self._append(event)

    def _append(self, event: Any) -> None:
        """Append ``event`` to the main log (numbering it on the root mux).

        Like a channel: after the run ended, an event nobody reads is
        dropped; with a reader, it is an error.
        """
        log = self._events._log
        try:
            seq = log.push(event)
        except RuntimeError:
            if not log.closed:
                raise
            if log.cursor_count:
                raise RuntimeError(
                    "Cannot push to a closed StreamChannel (the main log of a "
                    "run that has ended)"
                ) from None
            return
        if self._assign_seq:
            event["seq"] = seq

    def _forward(self, method: str, item: Any) -> None:
        """Append a protocol event for a push on a named channel.

        Forwarded events bypass the transformers (a transformer pushing to
        its own channel must not see that push again).
        """
        log = self._events._log
        if log.closed:
            return
        if not log.cursor_count:
            # nobody reads the main log: the event would never be seen, so
            # it is not built, only its number is taken (as on a fast route)
            log.push(None)
            return
        event = {
            "type": "event",
            "method": method,
            "params": {
                "namespace": [],
                "timestamp": int(_time() * 1000),
                "data": item,
            },
        }
        if self._assign_seq:
            event["seq"] = log.push(event)
        else:
            log.push(event)

    # --------------------------------------------------------------- teardown

    def _failed_tb(self, err: BaseException) -> Any:
        """The traceback ``err`` had when it ended the run: re-raising it from
        there on every read keeps repeated reads from growing it."""
        saved = self._error_tb
        if saved is None or saved[0] is not err:
            saved = self._error_tb = (err, err.__traceback__)
        return saved[1]

    def _finish_channels(self, err: Optional[BaseException]) -> None:
        if err is not None and self._error_tb is None:
            self._error_tb = (err, err.__traceback__)
        for ch in self._channels:
            if not ch._log.closed:
                if err is None:
                    ch.close()
                else:
                    ch.fail(err)
        if not self._events._log.closed:
            if err is None:
                self._events.close()
            else:
                self._events.fail(err)
        self._let_go()

    def _let_go(self) -> None:
        """The mux has ended: drop the references that only dispatch needs
        and that tie it in cycles (its channels' back-references, forwarding
        callbacks and pump, its routes, compiled dispatcher and pump).  An ended
        subgraph's mux, handle and projections are then freed as soon as
        nobody holds them, instead of waiting for the garbage collector,
        which every subgraph's objects would otherwise keep busy."""
        for ch in self._channels:
            ch._mux = None
            ch._wired = None
            # (a closed log is read without pumping; cursors keep their own)
            ch._request_more = ch._arequest_more = None
        events = self._events
        events._mux = None
        events._request_more = events._arequest_more = None
        self._pump_fn = self._apump_fn = None
        self._routes.clear()
        self._fast_routes.clear()
        self._below.clear()
        for listener in self._route_listeners:
            listener._invalidate()  # (its compiled routes hold child muxes)
        self._route_listeners = ()
        self._part_dispatcher = None
        for transformer in self._transformers:
            let_go = getattr(transformer, "_let_go", None)
            if let_go is not None:
                let_go()

    def close(self) -> None:
        """End the run normally: finalize every transformer, close every log.

        Every transformer is finalized even when a ``finalize()`` raises; the
        first such error then fails every projection (so every reader sees
        it) and is re-raised.
        """
        if self._finished:
            return
        self._finished = True
        first: Optional[BaseException] = None
        for transformer in self._transformers:
            try:
                transformer.finalize()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first is None:
                    first = _as_stop_error(transformer, "finalize", exc)
        # a finalize that raised ends the run with that error at every reader
        self._finish_channels(first)
        if first is not None:
            raise first

    def fail(self, err: BaseException) -> None:
        """End the run with ``err``: every transformer's ``fail``, every log failed.

        Raises:
            TypeError: ``err`` is not an exception (the mux is left as it was).
        """
        _check_error(err, "fail")
        if self._finished:
            return
        self._finished = True
        for transformer in self._transformers:
            try:
                transformer.fail(err)
            except BaseException:  # noqa: BLE001 - the run already failed
                pass
        self._finish_channels(err)

    def _scheduled(self) -> List[asyncio.Task[Any]]:
        return [
            task
            for transformer in self._transformers
            for task in list(getattr(transformer, "_stream_scheduled_tasks", ()))
            if not task.done()
        ]

    def _take_failed(self) -> List[BaseException]:
        """The errors of the tasks scheduled under ``on_error="raise"`` that
        failed so far, in the order they failed; they are forgotten."""
        failed: List[Tuple[int, BaseException]] = []
        for transformer in self._transformers:
            kept = getattr(transformer, "_stream_failed", None)
            if kept:
                failed.extend(kept)
                kept.clear()
        failed.sort(key=_ORDER)
        return [error for _order, error in failed]

    async def aclose(self) -> None:
        """Async ``close``: await scheduled tasks, then ``afinalize`` each transformer.

        A scheduled task that failed under ``on_error="raise"`` (or an
        ``afinalize`` that raises) is re-raised after every log is closed.
        """
        if self._finished:
            return
        first: Optional[BaseException] = None
        while True:
            # (a task that failed before now is raised as well)
            for error in self._take_failed():
                if first is None:
                    first = error
            pending = self._scheduled()
            if not pending:
                break
            results = await asyncio.gather(*pending, return_exceptions=True)
            # the errors kept under "raise" come in the order they happened
            # (their done callbacks ran before gather's); ``results`` only
            # adds what was not kept (a BaseException under "log")
            for error in self._take_failed():
                if first is None:
                    first = error
            for result in results:
                if (
                    first is None
                    and isinstance(result, BaseException)
                    and not isinstance(result, asyncio.CancelledError)
                ):
                    first = result
        if first is not None:
            await self.afail(first)
            raise first
        self._finished = True
        for transformer in self._transformers:
            try:
                await transformer.afinalize()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first is None:
                    first = _as_stop_error(transformer, "afinalize", exc)
        # a finalize that raised ends the run with that error at every reader
        self._finish_channels(first)
        if first is not None:
            raise first

    async def afail(self, err: BaseException) -> None:
        """Async ``fail``: cancel and await scheduled tasks, then ``afail`` each."""
        _check_error(err, "afail")
        if self._finished:
            return
        self._finished = True
        pending = self._scheduled()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._take_failed()  # (the run fails with ``err``: theirs are dropped)
        for transformer in self._transformers:
            try:
                await transformer.afail(err)
            except BaseException:  # noqa: BLE001 - the run already failed
                pass
        self._finish_channels(err)


class StreamMux(_MuxCore):
    """The transformer pipeline and the main event log of one run (or subgraph).

    Args:
        transformers: Pre-built transformer instances, registered on this mux
            only (they are not cloned into child muxes).
        is_async: ``True`` when the run is consumed with ``async for``.
        factories: ``factory(scope) -> transformer`` callables; run first,
            and run again for every child mux.
        scope: The namespace this mux owns; ``()`` for the root.
        maxlen: Bound of the main log and of every projection channel that
            does not set its own; child muxes inherit it.

    Raises:
        RuntimeError: a transformer needs the event loop but ``is_async`` is
            false.
        TypeError: a transformer's ``init()`` did not return a dict.
        ValueError: two transformers claim the same projection key (the
            message names both owners); ``maxlen`` is invalid.
    """

    # the compiled dispatcher stores ``_latest`` (the scope's newest
    # snapshot, written for every values part at the scope) in its slot; a
    # ``__dict__`` stays for attributes of the user's own
    __slots__ = (
        "_latest", "is_async", "scope", "maxlen", "extensions", "native_keys",
        "__dict__", "__weakref__",
    )

    def __init__(
        self,
        transformers: Optional[Sequence[Any]] = None,
        *,
        is_async: bool = False,
        factories: Optional[Sequence[TransformerFactory]] = None,
        scope: Tuple[str, ...] = (),
        maxlen: Optional[int] = None,
        _assign_seq: bool = True,
        _shared: Optional[_Shared] = None,
    ) -> None:
        self._setup(transformers, is_async, factories, scope, maxlen, _assign_seq, _shared)
