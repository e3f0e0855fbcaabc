"""Transformers: the ``StreamTransformer`` base and the built-in projections.

A transformer watches protocol events flowing through a ``StreamMux`` and
builds projections from them (usually ``StreamChannel`` instances returned
by ``init()``).  The built-ins here need no run stream; the subgraph
transformer, which builds run-stream handles, lives in
``langstream.run_stream``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Optional, Tuple

from langstream.channel import StreamChannel
from langstream.mux import _Forward, _Guarded
from langstream.protocol import ProtocolEvent, _interrupts_of, _scope_list_of

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Coroutine

    from langstream.mux import StreamMux

import sys

if sys.version_info >= (3, 11):  # pragma: no cover - version dependent
    from typing import Literal, NotRequired, TypedDict
else:  # pragma: no cover - version dependent
    from typing_extensions import Literal, NotRequired, TypedDict

__all__ = [
    "CheckpointsTransformer",
    "LifecycleCause",
    "CustomTransformer",
    "DebugTransformer",
    "AllMessagesTransformer",
    "LifecyclePayload",
    "LifecycleTransformer",
    "MessagesTransformer",
    "StreamTransformer",
    "SubgraphStatus",
    "SubgraphTransformer",
    "TasksTransformer",
    "UpdatesTransformer",
    "ValuesTransformer",
]

_logger = logging.getLogger("langstream")

SubgraphStatus = Literal["started", "completed", "failed", "interrupted", "drained"]
"""The status of a subgraph: ``started`` until its terminal status arrives.

``drained``: the run stopped at a superstep boundary because LangGraph's
``RunControl.request_drain()`` was called (``GraphDrained``); not a failure,
so no error text."""


class LifecycleCause(TypedDict):
    """What triggered a subgraph: the tool call that spawned a named subagent."""

    type: str
    tool_call_id: str


class LifecyclePayload(TypedDict, total=False):
    """One item of the ``lifecycle`` projection (and of a ``lifecycle`` event)."""

    event: SubgraphStatus
    namespace: List[str]
    graph_name: NotRequired[str]
    trigger_call_id: NotRequired[str]
    cause: NotRequired[LifecycleCause]
    error: NotRequired[str]


def _owner(cls: type, name: str) -> Optional[type]:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass
    return None


# the order in which scheduled tasks failed, across transformers (the first
# failure is the run's error)
_FAILURES = itertools.count()


def _keep_failure(transformer: Any, tasks: set) -> Callable[[Any], None]:
    """The done callback of a task scheduled under ``on_error="raise"``: it
    leaves ``tasks`` (the pending ones); if it failed, its error is taken
    (asyncio does not report it as never retrieved) and kept, in the order
    of failure, on ``transformer._stream_failed`` until the mux raises it."""

    def done(task: Any) -> None:
        tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            failed = getattr(transformer, "_stream_failed", None)
            if failed is None:
                failed = transformer._stream_failed = []
            failed.append((next(_FAILURES), error))

    return done


class StreamTransformer(ABC):
    """Base class of every transformer: observe events, build projections.

    Subclasses implement ``init()`` (return the projection dict) and
    ``process()`` (sync lane) or ``aprocess()`` (async lane).  ``process``
    returns ``True`` to keep the event in the main log, ``False`` to keep it
    out.  ``finalize``/``fail`` (and their async twins) are optional: the mux
    closes or fails the channels of the projection by itself.

    A transformer takes one positional argument, its ``scope`` (the
    namespace its mux owns, ``()`` for the root), so the class itself is a
    valid factory.

    Class flags:
        requires_async: needs a running event loop (e.g. calls ``schedule``
            from ``process``); registering it on a sync mux raises.
        supports_sync: overrides async hooks but still works on the sync lane.
        required_stream_modes: stream modes the graph must emit for it.
        before_builtins: register ahead of the other transformers of its
            group (for transformers that mutate events).
        _native: expose its projection keys as run-stream attributes.
        _plain_instances: read from the class's own body only (a subclass
            does not inherit it): its ``__init__`` sets none of the hooks
            and flags registration reads on the instance, so a mux asks the
            class once instead of every instance (the built-ins set it;
            ``langstream.mux._plain_facts``).
    """

    requires_async: ClassVar[bool] = False
    supports_sync: ClassVar[bool] = False
    required_stream_modes: ClassVar[Tuple[str, ...]] = ()
    before_builtins: ClassVar[bool] = False
    _native: ClassVar[bool] = False

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        self.scope: Tuple[str, ...] = tuple(scope)

    @abstractmethod
    def init(self) -> Dict[str, Any]:
        """Return the projection dict (keys become ``run.extensions`` entries)."""

    def process(self, event: ProtocolEvent) -> bool:
        """Observe ``event`` on the sync lane; return ``False`` to suppress it."""
        raise NotImplementedError(f"{type(self).__name__} must override process() or aprocess()")

    async def aprocess(self, event: ProtocolEvent) -> bool:
        """Observe ``event`` on the async lane (default: ``process``).

        The mux awaits it before the next transformer sees the event.
        """
        return self.process(event)

    # (this default only returns ``process(event)``: the async dispatch calls
    # ``process`` for it directly, without a coroutine per event)
    aprocess._langstream_calls_process = True  # type: ignore[attr-defined]

    def finalize(self) -> None:
        """Called once when the run ends normally (sync lane)."""

    async def afinalize(self) -> None:
        """Called once when the run ends normally (async lane; default: ``finalize``).

        Every task started with ``schedule()`` has finished by then.
        """
        self.finalize()

    def fail(self, err: BaseException) -> None:
        """Called once when the run ends with ``err`` (sync lane)."""

    async def afail(self, err: BaseException) -> None:
        """Called once when the run ends with ``err`` (async lane; default: ``fail``).

        Tasks started with ``schedule()`` have been cancelled and awaited.
        """
        self.fail(err)

    def _on_register(self, mux: Any) -> None:
        """Hook called by the mux after registration (default: nothing)."""

    # ----------------------------------------------------------- scheduling

    def schedule(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        on_error: Literal["log", "raise"] = "log",
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the run.

        The mux awaits every scheduled task before ``afinalize`` and cancels
        them before ``afail``.

        Args:
            coro: the coroutine to run.
            on_error: ``"log"`` logs an exception and carries on; ``"raise"``
                fails the run with it when the mux closes (also when the task
                failed long before).

        Raises:
            RuntimeError: no running event loop (a sync run).
            ValueError: ``on_error`` is not ``"log"`` or ``"raise"``.
        """
        if on_error not in ("log", "raise"):
            if hasattr(coro, "close"):
                coro.close()
            raise ValueError(f"on_error must be 'log' or 'raise', got {on_error!r}")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if hasattr(coro, "close"):
                coro.close()
            raise RuntimeError(
                f"{type(self).__name__}.schedule() requires a running event loop: "
                "use it on an async run (astream_events), and set "
                "requires_async = True on the class so a sync run rejects it at "
                "registration."
            ) from None
        task = asyncio.ensure_future(self._logged(coro) if on_error == "log" else coro)
        if on_error == "log" and hasattr(coro, "close"):
            # a wrapper cancelled before it started never awaits ``coro``:
            # close it (a no-op once it has finished) so it is not leaked
            task.add_done_callback(lambda _task, _coro=coro: _coro.close())
        tasks: Optional[set] = getattr(self, "_stream_scheduled_tasks", None)
        if tasks is None:
            tasks = set()
            self._stream_scheduled_tasks = tasks
        tasks.add(task)
        # (under "raise" the error of a task that fails is kept until the
        # mux closes or fails the run: a failure before then is raised too)
        task.add_done_callback(tasks.discard if on_error == "log" else _keep_failure(self, tasks))
        _scheduled_tasks.add(task)
        return task

    @staticmethod
    async def _logged(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            _logger.exception("a task scheduled by a StreamTransformer failed")
            return None

    # ------------------------------------------------------ mux integration

    @classmethod
    def _needs_event_loop(cls) -> bool:
        """True when the transformer cannot run on a sync mux."""
        if cls.requires_async:
            return True
        if cls.supports_sync:
            return False
        return any(
            getattr(cls, name) is not getattr(StreamTransformer, name)
            for name in ("aprocess", "afinalize", "afail")
        )

    def _fast_handler(self) -> Optional[Callable[[Any], None]]:
        """The ``_fast_part`` handler the mux may call instead of ``process``."""
        return _trusted_fast_part(self)

    def _fast_handler_at(self, method: str, at_scope: bool) -> Optional[Callable[[Any], Any]]:
        """The fast handler for parts of ``method`` at (or below) the scope."""
        return self._fast_handler()

    @classmethod
    def _routing(cls) -> Optional[Callable[[str, bool], bool]]:
        """The ``_route(method, at_scope)`` predicate, if it can be trusted.

        A class may declare which events it wants; the mux then skips it for
        the others.  The declaration is ignored when a subclass overrides
        ``process``/``aprocess`` below the class that declared it.
        """
        owner = _owner(cls, "_route")
        if owner is None:
            return None
        for name in ("process", "aprocess"):
            defined = _owner(cls, name)
            if defined is not None and not issubclass(owner, defined):
                return None
        return getattr(cls, "_route")


# every task started by ``StreamTransformer.schedule`` (while it exists): a run
# that is finishing awaits these, so they must not wait for it
_scheduled_tasks: "weakref.WeakSet[asyncio.Task[Any]]" = weakref.WeakSet()


def _trusted_fast_part(transformer: Any) -> Optional[Callable[[Any], None]]:
    """The transformer's ``_fast_part(part)`` handler, if it can be trusted.

    Built-in projections can take a stream part directly, so the mux can skip
    building the protocol event when nothing else needs it.  Like
    ``_route``, it is ignored when a subclass overrides ``process`` or
    ``aprocess`` below the class that defined it.
    """
    cls = type(transformer)
    trusted = _TRUSTED_FAST.get(cls)
    if trusted is None:
        trusted = _TRUSTED_FAST[cls] = _trusts_fast_part(cls)
    return transformer._fast_part if trusted else None


# per class: may its ``_fast_part`` stand in for ``process`` (a child mux per
# subgraph asks again for the same classes)
_TRUSTED_FAST: Dict[type, bool] = {}


def _trusts_fast_part(cls: type) -> bool:
    owner = _owner(cls, "_fast_part")
    if owner is None or cls._routing() is None:  # type: ignore[attr-defined]
        return False
    for name in ("process", "aprocess"):
        defined = _owner(cls, name)
        if defined is not None and not issubclass(owner, defined):
            return False
    return True


def transformer_requires_async(transformer: StreamTransformer) -> bool:
    """True if ``transformer`` needs a running event loop (an async run).

    That is: it sets ``requires_async``, or it overrides ``aprocess``,
    ``afinalize`` or ``afail`` without declaring ``supports_sync``.
    """
    return type(transformer)._needs_event_loop()


# The built-in transformer classes (filled in at the end of the module and
# by ``langstream._messages``).  For an instance of exactly one of them the
# class after each ``__init__``'s own in the MRO is known, so the built-in
# ``__init__`` chain calls it directly: ``super()`` costs a super object and
# a walk of the MRO, for each transformer of every child mux.  An instance of
# any other class (a subclass, a mix-in) goes through ``super()``.
_BUILTIN_EXACT: set = set()


class _ScopedProjection(StreamTransformer):
    """Pushes ``params["data"]`` of one method's events at exactly its scope."""

    _native = True
    _method: ClassVar[str] = ""
    _key: ClassVar[str] = ""

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) in _BUILTIN_EXACT:
            StreamTransformer.__init__(self, scope)
        else:
            super().__init__(scope)
        self._log: StreamChannel[Any] = StreamChannel()
        self._scope_list: List[str] = _scope_list_of(self.scope)

    def init(self) -> Dict[str, Any]:
        return {self._key: self._log}

    @classmethod
    def _route(cls, method: str, at_scope: bool) -> bool:
        return at_scope and method == cls._method

    def process(self, event: ProtocolEvent) -> bool:
        if event["method"] == self._method:
            params = event["params"]
            if params["namespace"] == self._scope_list:
                self._log.push(params["data"])
        return True

    def _fast_part(self, part: Mapping[str, Any]) -> None:
        # routed here only for this method at exactly this scope
        self._log.push(part["data"])


class ValuesTransformer(_ScopedProjection):
    """``run.values``: the state snapshots of the run's own scope.

    Keeps the latest snapshot and the interrupts even when nobody
    subscribes (``latest``, ``interrupted``, ``interrupts``).
    """

    # (a slot: the compiled dispatcher stores each snapshot directly)
    __slots__ = ("_latest",)

    _plain_instances = True

    required_stream_modes = ("values",)
    _method = "values"
    _key = "values"
    _route = _ScopedProjection.__dict__["_route"]

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) is ValuesTransformer:
            _ScopedProjection.__init__(self, scope)
        else:
            super().__init__(scope)
        self._latest: Any = None
        self._interrupted = False
        self._interrupts: List[Any] = []

    @property
    def latest(self) -> Any:
        """The most recent snapshot, or ``None``."""
        return self._latest

    @property
    def interrupted(self) -> bool:
        """True once a snapshot carried interrupts."""
        return self._interrupted

    @property
    def interrupts(self) -> List[Any]:
        """Every interrupt seen, in order."""
        return self._interrupts

    @property
    def error(self) -> Optional[BaseException]:
        """The error that ended the run, or ``None``."""
        return self._log._log.error

    def process(self, event: ProtocolEvent) -> bool:
        if event["method"] == "values":
            params = event["params"]
            if params["namespace"] == self._scope_list:
                data = params["data"]
                self._latest = data
                interrupts = params.get("interrupts")
                if interrupts:
                    self._interrupted = True
                    self._interrupts.extend(interrupts)
                self._log.push(data)
        return True

    def _fast_part(self, part: Mapping[str, Any]) -> None:
        data = part["data"]
        self._latest = data
        interrupts = _interrupts_of(part)
        if interrupts:
            self._interrupted = True
            self._interrupts.extend(interrupts)
        log = self._log._log
        if log.closed:  # the channel's own rules for a closed channel
            self._log.push(data)
        else:
            log.push(data)


class UpdatesTransformer(_ScopedProjection):
    """``run.updates``: ``{node: update}`` after each step, at the run's scope."""

    _plain_instances = True

    required_stream_modes = ("updates",)
    _method = "updates"
    _key = "updates"


class CustomTransformer(_ScopedProjection):
    """``run.custom``: payloads written by nodes' stream writers, at the run's scope."""

    _plain_instances = True

    required_stream_modes = ("custom",)
    _method = "custom"
    _key = "custom"


class CheckpointsTransformer(_ScopedProjection):
    """``run.checkpoints``: checkpoint payloads at the run's scope."""

    _plain_instances = True

    required_stream_modes = ("checkpoints",)
    _method = "checkpoints"
    _key = "checkpoints"


class DebugTransformer(_ScopedProjection):
    """``run.debug``: debug payloads at the run's scope."""

    _plain_instances = True

    required_stream_modes = ("debug",)
    _method = "debug"
    _key = "debug"


class TasksTransformer(_ScopedProjection):
    """``run.tasks``: raw task start/result payloads at the run's scope."""

    _plain_instances = True

    required_stream_modes = ("tasks",)
    _method = "tasks"
    _key = "tasks"


# ---------------------------------------------------------------- subgraphs


def parse_segment(segment: str) -> Tuple[Optional[str], Optional[str]]:
    """Split a ``"name:task_id"`` namespace segment into ``(name, task_id)``."""
    name, sep, task_id = segment.partition(":")
    return (name or None), (task_id if sep else None)


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _status_from_exception(err: BaseException) -> Tuple[SubgraphStatus, Optional[str]]:
    # LangGraph's exception classes, recognised by name (no import needed)
    for klass in type(err).__mro__:
        if klass.__name__ == "GraphDrained":
            return "drained", None
        if klass.__name__ == "GraphInterrupt":
            return "interrupted", None
    return "failed", str(err)


def _status_from_result(data: Mapping[str, Any]) -> Tuple[SubgraphStatus, Optional[str]]:
    if data.get("interrupts"):
        return "interrupted", None
    error = data.get("error")
    if error:
        return "failed", str(error)
    return "completed", None


def _task_agent(data: Any) -> Optional[str]:
    """The agent name (``lc_agent_name``) a task start's ``data`` announces
    in its ``metadata``, or ``None`` (a task result, no metadata, a name
    that is not a str).  Never raises."""
    # (exact dicts and None first: ``isinstance`` against the ABC is the slow test)
    if (type(data) is not dict and not isinstance(data, Mapping)) or "result" in data:
        return None
    metadata = data.get("metadata")
    if type(metadata) is not dict and (metadata is None or not isinstance(metadata, Mapping)):
        return None
    name = metadata.get("lc_agent_name")
    return name if isinstance(name, str) else None


class _SubtreeTracker(StreamTransformer):
    """Discovers namespaces below the scope and tracks them to a terminal status.

    A namespace is discovered at the first event, of any method, inside its
    subtree; it ends when its parent's ``tasks`` result for the task id of
    its ``name:task_id`` segment arrives, or when the run ends.  ``tasks``
    events are folded into the projections and kept out of the main log.
    Nothing is kept about an ended namespace (memory is bounded by what is
    open): an event that arrives for it after its end starts it again.
    """

    required_stream_modes = ("tasks",)
    _all_depths: ClassVar[bool] = True

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) in _BUILTIN_EXACT:
            StreamTransformer.__init__(self, scope)
        else:
            super().__init__(scope)
        self._depth = len(self.scope)
        self._scope_list: List[str] = _scope_list_of(self.scope)
        # the namespaces started and not ended (a dict as a set: an empty
        # dict is not tracked by the collector, an empty set is)
        self._seen: Dict[Tuple[str, ...], None] = {}
        # namespace -> (graph_name, trigger_call_id), in discovery order
        self._open: Dict[Tuple[str, ...], Tuple[Optional[str], Optional[str]]] = {}
        # (parent namespace, task id) -> namespace it closes
        self._by_task: Dict[Tuple[Tuple[str, ...], str], Tuple[str, ...]] = {}
        # task id -> id of the tool call it runs (from task inputs), so a
        # subagent can name the tool call that spawned it
        self._tool_calls: Dict[str, str] = {}
        # the cause of the namespace being started (read by _on_started)
        self._pending_cause: Optional[LifecycleCause] = None
        # the state its mux tree shares (set at registration): a namespace
        # that ends bumps its epoch (routes below a scope depend on it)
        self._tree: Any = None

    def _on_register(self, mux: Any) -> None:
        self._tree = mux._shared

    def _changed(self, prefix: Tuple[str, ...]) -> None:
        """The namespace ``prefix`` ended (or, ``prefix`` being the scope,
        everything this tracker knew of): the routes kept for the namespaces
        of its subtree, on every mux of the tree, are stale."""
        tree = self._tree
        if tree is not None:
            tree.changed(prefix)

    @staticmethod
    def _route(method: str, at_scope: bool) -> bool:
        return method == "tasks" or not at_scope

    # hooks -------------------------------------------------------------
    def _on_started(self, ns: Tuple[str, ...], graph_name: Optional[str],
                    trigger_call_id: Optional[str]) -> None:
        raise NotImplementedError

    def _on_terminal(self, ns: Tuple[str, ...], status: SubgraphStatus,
                     error: Optional[str]) -> None:
        raise NotImplementedError

    # bookkeeping -------------------------------------------------------
    def _discover(self, ns: List[str], event: Any = None) -> List[Tuple[str, ...]]:
        """Start every namespace of ``ns``'s path not seen yet; return them.

        ``event`` is the event that discovered them: when it is a task start
        at the namespace itself whose metadata names an agent
        (``lc_agent_name``, set by LangChain's ``create_agent``), that name
        is the namespace's ``graph_name``, and the tool call that spawned it
        (if any) its ``cause``.
        """
        depth = self._depth
        if len(ns) <= depth or (depth and ns[:depth] != self._scope_list):
            return []
        if self._all_depths:
            key = tuple(ns)
            if key in self._seen:
                return []
            keys = [tuple(ns[:k]) for k in range(depth + 1, len(ns) + 1)]
        else:
            key = tuple(ns[: depth + 1])
            if key in self._seen:
                return []
            keys = [key]
        agent = None
        if event is not None and event["method"] == "tasks" and len(ns) == len(keys[-1]):
            agent = _task_agent(event["params"]["data"])
        elif self._tree is not None and self._tree.hints:
            # (discovered by its input snapshot: the name its first task
            # announces, which the pump read ahead; see ``run_stream``)
            agent = self._tree.hints.get(keys[-1])
        started = []
        for key in keys:
            if key in self._seen:
                continue
            # (no route changes: a part that discovers takes the event path,
            # and routes that would discover are never kept, see
            # ``StreamMux._below_route``)
            self._seen[key] = None
            graph_name, task_id = parse_segment(key[-1])
            cause: Optional[LifecycleCause] = None
            if agent is not None and key == keys[-1]:
                graph_name = agent
                tool_call_id = self._tool_calls.get(task_id) if task_id else None
                if tool_call_id is not None:
                    cause = {"type": "toolCall", "tool_call_id": tool_call_id}
            self._open[key] = (graph_name, task_id)
            if task_id is not None:
                self._by_task[(key[:-1], task_id)] = key
            started.append(key)
            self._pending_cause = cause
            try:
                self._on_started(key, graph_name, task_id)
            finally:
                self._pending_cause = None
        return started

    def _would_discover(self, ns: List[str]) -> bool:
        """Whether an event at ``ns`` would start a namespace (``_discover``)."""
        depth = self._depth
        if len(ns) <= depth or (depth and ns[:depth] != self._scope_list):
            return False
        return (tuple(ns) if self._all_depths else tuple(ns[: depth + 1])) not in self._seen

    def _record_tool_call(self, data: Any) -> None:
        """Remember which tool call a starting task runs (for ``cause``)."""
        # (``type(x) is dict`` first: the ABC check costs ten times more, and
        # every ``tasks`` event comes through here)
        if type(data) is not dict and not isinstance(data, Mapping):
            return
        if "result" in data:
            # the task ended: its subagent (if any) was discovered by now, so
            # its tool call is let go (long runs stay bounded)
            if self._tool_calls:
                task_id = data.get("id")
                if isinstance(task_id, str):
                    self._tool_calls.pop(task_id, None)
            return
        payload = data.get("input")
        if type(payload) is dict:
            tool_call = payload.get("tool_call")
            if tool_call is None:
                return
        task_id = data.get("id")
        if type(task_id) is not str and not isinstance(task_id, str):
            return
        call_id = None
        if _is_mapping(payload) and _is_mapping(payload.get("tool_call")):
            call_id = payload["tool_call"].get("id")
        elif isinstance(payload, list):
            for call in payload:
                if _is_mapping(call) and isinstance(call.get("id"), str):
                    call_id = call["id"]
                    break
        if isinstance(call_id, str):
            self._tool_calls[task_id] = call_id

    def _ended(self, ns: List[str], data: Any) -> Optional[Tuple[Tuple[str, ...], SubgraphStatus, Optional[str]]]:
        """The namespace a task result closes, with its status, if any."""
        if (type(data) is not dict and not isinstance(data, Mapping)) or "result" not in data:
            return None
        if not self._by_task:  # no subgraph is waiting for its parent's task result
            return None
        task_id = data.get("id")
        if not isinstance(task_id, str):
            return None
        self._tool_calls.pop(task_id, None)  # the task is over
        child = self._by_task.pop((tuple(ns), task_id), None)
        if child is None or child not in self._open:
            return None
        del self._open[child]
        # an ended namespace is forgotten: memory is bounded by what is open
        self._seen.pop(child, None)
        self._changed(child)
        status, error = _status_from_result(data)
        return child, status, error

    def _fast_handler_at(self, method: str, at_scope: bool) -> Optional[Callable[[Any], Any]]:
        # a task event at the scope itself discovers nothing: the part is
        # enough (below the scope the event is forwarded, so it is built)
        if not at_scope or method != "tasks":
            return None
        return self._fast_handler()

    def _fast_part(self, part: Mapping[str, Any]) -> bool:
        """``process`` of a ``tasks`` part at the scope (routed only for those)."""
        data = part["data"]
        if _idle_task_part(self, data, self.scope):
            return False
        self._record_tool_call(data)
        if self._by_task:
            ended = self._ended(self._scope_list, data)
            if ended is not None:
                self._on_terminal(*ended)
        return False

    def _fast_handler_below(self, method: str, ns: Tuple[str, ...]) -> Optional[Tuple[Any, ...]]:
        """What ``process`` does with parts of ``method`` at ``ns`` (below the
        scope), as ops, while nothing opens or ends (the mux asks again
        then); ``None`` when such a part would discover a namespace."""
        depth = self._depth
        if len(ns) > depth and ns[:depth] == self.scope and ns not in self._seen:
            return None  # (it discovers: the event path)
        if method != "tasks":
            return ()
        return (_TaskBelow(self, ns),)

    def _record_part(self, part: Mapping[str, Any]) -> bool:
        """The tool-call bookkeeping of a ``tasks`` part below the scope."""
        data = part["data"]
        if not _idle_task_part(self, data, None):
            self._record_tool_call(data)
        return False

    def process(self, event: ProtocolEvent) -> bool:
        params = event["params"]
        ns = params["namespace"]
        is_task = event["method"] == "tasks"
        if is_task:
            self._record_tool_call(params["data"])
        if len(ns) > self._depth:
            self._discover(ns, event)
        if is_task:
            ended = self._ended(ns, params["data"])
            if ended is not None:
                self._on_terminal(*ended)
            return False
        return True

    def _close_open(self, status: SubgraphStatus, error: Optional[str]) -> None:
        if self._open or self._seen:
            self._changed(self.scope)
        first: Optional[BaseException] = None
        # oldest first, a parent before its children (as LangGraph orders them)
        for ns in list(self._open):
            del self._open[ns]
            try:
                self._on_terminal(ns, status, error)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first is None:
                    first = exc
        self._by_task.clear()
        self._seen.clear()
        self._tool_calls.clear()
        if first is not None:
            raise first

    def finalize(self) -> None:
        """Namespaces still open when the run ends normally are ``completed``."""
        self._close_open("completed", None)

    def fail(self, err: BaseException) -> None:
        """Namespaces still open when the run fails get the run's status."""
        status, error = _status_from_exception(err)
        self._close_open(status, error)


def _idle_task_part(tracker: _SubtreeTracker, data: Any,
                    parent: Optional[Tuple[str, ...]]) -> bool:
    """Whether a ``tasks`` part's data changes nothing ``tracker`` keeps: a
    task start that runs no tool call, or a result while no tool call waits
    and no subgraph waits for this task's result (most ``tasks`` parts;
    checked before the bookkeeping calls, which cost more than the check).

    ``parent`` is the namespace of the part, whose task results can end a
    subgraph the caller closes (``_ended``), or ``None`` when the caller
    only keeps tool calls.  The test is ``_ended``'s own: a result ends
    nothing unless ``(parent, id)`` is a key of ``_by_task`` (at every
    depth of a nested run, most results below a tracker's scope end
    nothing it keeps while its own children are open)."""
    if type(data) is not dict:
        return False
    if "result" in data:
        if tracker._tool_calls:
            return False
        if parent is None or not tracker._by_task:
            return True
        task_id = data.get("id")
        return not isinstance(task_id, str) or (parent, task_id) not in tracker._by_task
    payload = data.get("input")
    return type(payload) is dict and payload.get("tool_call") is None


class _TaskBelow:
    """A tracker's ``process`` of ``tasks`` parts at one namespace below its
    scope (already discovered): the tool-call bookkeeping, and the end of
    the namespace a task result closes."""

    __slots__ = ("tracker", "ns")

    def __init__(self, tracker: _SubtreeTracker, ns: Tuple[str, ...]) -> None:
        self.tracker = tracker
        self.ns = ns

    def __call__(self, part: Mapping[str, Any]) -> bool:
        tracker = self.tracker
        data = part["data"]
        if _idle_task_part(tracker, data, self.ns):
            return False
        tracker._record_tool_call(data)
        ended = tracker._ended(self.ns, data)
        if ended is not None:
            tracker._on_terminal(*ended)
        return False


class LifecycleTransformer(_SubtreeTracker):
    """``run.lifecycle``: ``started`` and terminal payloads for every subgraph.

    Tracks namespaces at every depth below its scope.  Its channel is named
    ``lifecycle``, so each payload also enters the main log as a
    ``lifecycle`` event.  Payload: ``event`` (a ``SubgraphStatus``),
    ``namespace``, ``graph_name``, ``trigger_call_id``, ``cause`` (on
    ``started``, for a subagent spawned by a tool call) and, on failure,
    ``error``.
    """

    _plain_instances = True

    _native = True

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) is LifecycleTransformer:
            _SubtreeTracker.__init__(self, scope)
        else:
            super().__init__(scope)
        self._channel: StreamChannel[LifecyclePayload] = StreamChannel("lifecycle")
        # namespace -> (graph_name, trigger_call_id) as started
        self._names: Dict[Tuple[str, ...], Tuple[Optional[str], Optional[str]]] = {}

    def init(self) -> Dict[str, Any]:
        return {"lifecycle": self._channel}

    def _payload(self, status: SubgraphStatus, ns: Tuple[str, ...]) -> LifecyclePayload:
        payload: LifecyclePayload = {"event": status, "namespace": list(ns)}
        graph_name, task_id = self._names.get(ns) or parse_segment(ns[-1])
        if graph_name:
            payload["graph_name"] = graph_name
        if task_id is not None:
            payload["trigger_call_id"] = task_id
        return payload

    def _on_started(self, ns: Tuple[str, ...], graph_name: Optional[str],
                    trigger_call_id: Optional[str]) -> None:
        self._names[ns] = (graph_name, trigger_call_id)
        payload = self._payload("started", ns)
        if self._pending_cause is not None:
            payload["cause"] = self._pending_cause
        self._channel.push(payload)

    def _on_terminal(self, ns: Tuple[str, ...], status: SubgraphStatus,
                     error: Optional[str]) -> None:
        payload = self._payload(status, ns)
        self._names.pop(ns, None)
        if error is not None:
            payload["error"] = error
        self._channel.push(payload)


# Subgraph handles are run streams (a higher layer): ``langstream.run_stream``
# hands their classes down here when it is imported.
_HANDLE_TYPES: Dict[bool, Any] = {}


def _set_handle_types(sync_cls: Any, async_cls: Any) -> None:
    """Called by ``langstream.run_stream``: the handle class of each lane.

    Also binds them here as ``SubgraphRunStream`` / ``AsyncSubgraphRunStream``,
    the names LangGraph's ``transformers`` module has (without an upward import).
    """
    _HANDLE_TYPES[False] = sync_cls
    _HANDLE_TYPES[True] = async_cls
    globals()["SubgraphRunStream"] = sync_cls
    globals()["AsyncSubgraphRunStream"] = async_cls


def _own_transformers_only(factories: Any) -> bool:
    """Whether every factory is one of langstream's own transformer classes
    (the class itself: a plain instance of it, nothing else runs)."""
    for factory in factories:
        if (not isinstance(factory, type)
                or factory.__module__ not in _OWN_MODULES
                or factory.__dict__.get("_plain_instances") is not True):
            return False
    return True


# the modules of langstream's own transformer classes
_OWN_MODULES = frozenset({"langstream.transformers", "langstream._messages"})


class SubgraphTransformer(_SubtreeTracker):
    """``run.subgraphs``: one handle per direct child subgraph of the scope.

    A child is discovered at the first event inside its subtree; its handle
    wraps a child mux built from the same factories at the child's scope,
    and every later event of the subtree is forwarded into it (the first one
    at the start of the next pump step, so a consumer that receives the
    handle can subscribe to its projections before it arrives).
    Grandchildren appear on the child handle's own ``subgraphs``.
    """

    _plain_instances = True

    _native = True
    supports_sync = True
    _all_depths = False
    _route = _SubtreeTracker.__dict__["_route"]

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) is SubgraphTransformer:
            _SubtreeTracker.__init__(self, scope)
        else:
            super().__init__(scope)
        self._log: StreamChannel[Any] = StreamChannel()
        self._handles: Dict[Tuple[str, ...], Any] = {}
        # namespace -> the hand-over to its handle's mux, as the ops of a
        # route below the scope (``_fast_handler_below``): made once per
        # handle, not once per route; kept and dropped with ``_handles``
        # (None until the first handle: an idle run keeps no dict for it)
        self._forwards: Optional[Dict[Tuple[str, ...], Tuple[_Forward]]] = None
        self._mux: Optional[StreamMux] = None
        # whether every child's pipeline is langstream's own transformers
        # (None: not asked yet; see ``_own_children``)
        self._own: Optional[bool] = None

    def init(self) -> Dict[str, Any]:
        return {"subgraphs": self._log}

    def _on_register(self, mux: Any) -> None:
        _SubtreeTracker._on_register(self, mux)
        self._mux = mux

    def _let_go(self) -> None:
        """Its mux has ended: the back-reference (a cycle) is not needed."""
        self._mux = None

    def _on_started(self, ns: Tuple[str, ...], graph_name: Optional[str],
                    trigger_call_id: Optional[str]) -> None:
        mux = self._mux
        if mux is None or mux._factories is None:
            # a mux of pre-built transformers cannot clone them into a child
            # scope: no handles (any error from a factory fails the run)
            return
        if not self._log._log.cursor_count:
            # Nobody reads this scope's subgraphs: the handle would be pushed
            # to a log nobody subscribes to, which keeps nothing, so no
            # consumer could ever receive it.  When the child's pipeline is
            # langstream's own transformers, which do nothing anyone could
            # see without the handle, it is not built (the lifecycle, the
            # raw log and the parts of the subtree do not depend on it).
            if self._own_children():
                return
        child = mux._make_child(ns)
        cls = _HANDLE_TYPES.get(child.is_async)
        if cls is None:  # pragma: no cover - langstream/__init__ imports run_stream
            raise RuntimeError(
                "subgraph handles are defined in langstream.run_stream; import it first"
            )
        handle = cls(child, path=ns, graph_name=graph_name, trigger_call_id=trigger_call_id)
        self._handles[ns] = handle
        forwards = self._forwards
        if forwards is None:
            forwards = self._forwards = {}
        forwards[ns] = (_Forward(child),)
        self._log.push(handle)

    def _route_event(self, event: ProtocolEvent) -> Tuple[Any, bool]:
        """The handle ``event`` goes to and whether it was just discovered."""
        ns = event["params"]["namespace"]
        depth = self._depth
        if len(ns) <= depth:
            return None, False
        key = tuple(ns[: depth + 1])
        handle = self._handles.get(key)
        if handle is None:
            # (a known handle's key starts with the scope: checked only here)
            if (depth and ns[:depth] != self._scope_list) or key in self._seen:
                return None, False
            self._discover(ns, event)
            handle = self._handles.get(key)
            return handle, True
        if handle._mux._events._log.closed:
            return None, False
        return handle, False

    @staticmethod
    def _mark(handle: Any, status: SubgraphStatus, error: Optional[str]) -> bool:
        if handle._seen_terminal:
            return False
        handle._seen_terminal = True
        handle.status = status
        if error is not None and handle.error is None:
            handle.error = error
        return True

    def _on_terminal(self, ns: Tuple[str, ...], status: SubgraphStatus,
                     error: Optional[str]) -> None:
        # an ended handle is let go (and its namespace forgotten: see ``_ended``)
        handle = self._handles.pop(ns, None)
        if handle is None:
            return
        self._forwards.pop(ns, None)  # type: ignore[union-attr]  (made with the handle)
        if not self._mark(handle, status, error):
            return
        if status == "failed":
            handle._mux.fail(RuntimeError(error or "subgraph failed"))
        else:
            handle._mux.close()

    async def _aon_terminal(self, ns: Tuple[str, ...], status: SubgraphStatus,
                            error: Optional[str]) -> None:
        handle = self._handles.pop(ns, None)
        if handle is None:
            return
        self._forwards.pop(ns, None)  # type: ignore[union-attr]  (made with the handle)
        if not self._mark(handle, status, error):
            return
        if status == "failed":
            await handle._mux.afail(RuntimeError(error or "subgraph failed"))
        else:
            await handle._mux.aclose()

    def _own_children(self) -> bool:
        """Whether the child muxes are built from langstream's own
        transformers only: they do nothing anyone could see without their
        handle, and closing or failing one awaits nothing (no hook of theirs
        is a coroutine that waits, none schedules a task)."""
        own = self._own
        if own is None:
            mux = self._mux
            factories = mux._factories if mux is not None else None
            own = self._own = factories is not None and _own_transformers_only(factories)
        return own

    def _fast_handler_at(self, method: str, at_scope: bool) -> Optional[Callable[[Any], Any]]:
        if self._mux is None:
            return None
        handler = _SubtreeTracker._fast_handler_at(self, method, at_scope)
        if handler is None or not self._mux.is_async or self._own_children():
            return handler
        # (async lane: a task result that ends a child closes the child's mux
        # with an await, unless it is langstream's own pipeline, whose close
        # awaits nothing: such a part takes the event path)
        return _Guarded(self._ends_child, handler)

    def _ends_child(self, part: Mapping[str, Any]) -> bool:
        """True when ``part`` (a ``tasks`` part at the scope) ends a child."""
        if not self._by_task:
            return False
        data = part["data"]
        if (type(data) is not dict and not isinstance(data, Mapping)) or "result" not in data:
            return False
        task_id = data.get("id")
        if not isinstance(task_id, str):
            return False
        # (a child discovered while nobody read the subgraphs has no handle,
        # hence no mux to close)
        child = self._by_task.get((self.scope, task_id))
        return child is not None and child in self._handles

    # the tracker's own (declared here too: a ``_fast_part`` is trusted only
    # when its class also defines ``process``/``aprocess`` or derives from it)
    _fast_part = _SubtreeTracker._fast_part

    def _fast_handler_below(self, method: str, ns: Tuple[str, ...]) -> Optional[Tuple[Any, ...]]:
        """``process`` of parts below the scope, as ops: the tool-call
        bookkeeping of a ``tasks`` part, then the hand-over to the open child
        whose subtree holds ``ns`` (a task result there ends nothing this
        tracker opened: its children's tasks run at its own scope).
        ``None`` when the part would discover the child."""
        depth = self._depth
        key = ns[: depth + 1]
        forwards = self._forwards
        forward = forwards.get(key) if forwards else None
        if forward is None:
            if (depth and ns[:depth] != self.scope) or key in self._seen:
                target: Tuple[Any, ...] = ()
            else:
                return None  # (it discovers the child: the event path)
        elif forward[0].mux._events._log.closed:
            target = ()
        else:
            target = forward
        if method != "tasks":
            return target
        return (self._record_part, *target)

    def process(self, event: ProtocolEvent) -> bool:
        if event["method"] == "tasks":
            self._record_tool_call(event["params"]["data"])
        handle, new = self._route_event(event)
        if handle is not None:
            if new:
                self._mux._defer(handle._mux, handle, event)  # type: ignore[union-attr]
            else:
                handle._mux.push(event)
        if event["method"] == "tasks":
            params = event["params"]
            ended = self._ended(params["namespace"], params["data"])
            if ended is not None:
                self._on_terminal(*ended)
            return False
        return True

    async def aprocess(self, event: ProtocolEvent) -> bool:
        if event["method"] == "tasks":
            self._record_tool_call(event["params"]["data"])
        handle, new = self._route_event(event)
        if handle is not None:
            if new:
                self._mux._defer(handle._mux, handle, event)  # type: ignore[union-attr]
            else:
                await handle._mux.apush(event)
        if event["method"] == "tasks":
            params = event["params"]
            ended = self._ended(params["namespace"], params["data"])
            if ended is not None:
                await self._aon_terminal(*ended)
            return False
        return True

    def _take_open(self) -> List[Any]:
        """Take this transformer's handles still open, oldest first."""
        if self._open or self._seen:
            self._changed(self.scope)
        self._open.clear()
        self._by_task.clear()
        self._seen.clear()
        self._tool_calls.clear()
        handles = [h for h in self._handles.values() if not h._seen_terminal]
        self._handles.clear()
        if self._forwards:
            self._forwards.clear()
        return handles

    def _open_handles(self) -> List[Any]:
        """Take the handles still open (the scope is ending): these, and the
        open handles below them at every depth, children before their
        parent and the newest sibling first.

        Taking the whole subtree at once makes the teardown iterative: when a
        handle's mux is closed its own subgraphs are already closed, so no
        close recurses into the next level, however deep the namespaces.
        """
        order: List[Any] = []
        stack: List[SubgraphTransformer] = [self]
        while stack:
            tracker = stack.pop()
            for handle in tracker._take_open():
                order.append(handle)
                for below in handle._mux._transformers:
                    if isinstance(below, SubgraphTransformer):
                        stack.append(below)
        order.reverse()
        return order

    def finalize(self) -> None:
        first: Optional[BaseException] = None
        for handle in self._open_handles():
            self._mark(handle, "completed", None)
            try:
                handle._mux.close()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first is None:
                    first = exc
        if first is not None:
            raise first

    async def afinalize(self) -> None:
        first: Optional[BaseException] = None
        for handle in self._open_handles():
            self._mark(handle, "completed", None)
            try:
                await handle._mux.aclose()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def fail(self, err: BaseException) -> None:
        status, error = _status_from_exception(err)
        for handle in self._open_handles():
            self._mark(handle, status, error)
            try:
                handle._mux.fail(err)
            except Exception:  # noqa: BLE001 - keep failing the others
                _logger.warning("failing subgraph %r raised", handle.path, exc_info=True)

    async def afail(self, err: BaseException) -> None:
        status, error = _status_from_exception(err)
        for handle in self._open_handles():
            self._mark(handle, status, error)
            try:
                await handle._mux.afail(err)
            except Exception:  # noqa: BLE001 - keep failing the others
                _logger.warning("failing subgraph %r raised", handle.path, exc_info=True)


_BUILTIN_EXACT.update((
    ValuesTransformer, UpdatesTransformer, CustomTransformer, CheckpointsTransformer,
    DebugTransformer, TasksTransformer, LifecycleTransformer, SubgraphTransformer,
))


def __getattr__(name: str) -> Any:
    # the token transformers live in ``langstream._messages`` (which imports
    # this module); re-exported lazily, and without importing langchain-core
    if name in ("MessagesTransformer", "AllMessagesTransformer"):
        from langstream import _messages

        return getattr(_messages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
