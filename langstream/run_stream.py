"""Run streams: the consumer's iteration is the pump.

``GraphRunStream`` (sync) and ``AsyncGraphRunStream`` pull one stream part
at a time from the graph, turn it into a protocol event and push it through
the mux, whenever a consumer of any projection (or of the raw main log)
runs out of items.  There is no background thread and no background task.

Subgraphs get handles (``SubgraphRunStream`` / ``AsyncSubgraphRunStream``)
built by ``SubgraphTransformer``; iterating a handle drives the root pump.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import weakref
from collections import deque as _deque
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

from langstream import eventlog as _el
from langstream._messages import default_message_factories, missing_messages_hint
from langstream.channel import StreamChannel
from langstream.mux import StreamMux, _check_scope
from langstream.transformers import (
    LifecycleTransformer,
    StreamTransformer,
    SubgraphStatus,
    SubgraphTransformer,
    ValuesTransformer,
    _scheduled_tasks,
    _set_handle_types,
    _task_agent,
)

if TYPE_CHECKING:  # pragma: no cover
    from types import TracebackType

    from langstream.protocol import StreamPart
    from langstream.transformers import LifecyclePayload

from langstream.protocol import (  # (LangGraph's module has both too)
    ProtocolEvent,
    convert_to_protocol_event,
)

__all__ = [
    "AsyncGraphRunStream",
    "AsyncSubgraphRunStream",
    "GraphRunStream",
    "SubgraphRunStream",
    "SubgraphStatus",
    "SubgraphTransformer",
    "astream_events",
    "stream_events",
]

_logger = logging.getLogger("langstream")
_CEventLog = _PartDispatcher = _SyncPump = None
_Interleaver: Any = None
_ReaderSteps: Any = None
_RESUME_AGAIN: Any = None
_READER_ENDED: Any = None
if _el.BACKEND == "c":  # not with LANGSTREAM_NO_EXTENSIONS, PyPy or no compiler
    try:
        from langstream._eventlog_c import EventLog as _CEventLog
        from langstream._pump_c import PartDispatcher as _PartDispatcher
        from langstream._pump_c import SyncPump as _SyncPump
    except ImportError:  # the pump failed to build while the event log did not
        _CEventLog = _PartDispatcher = _SyncPump = None
    else:
        try:
            from langstream._pump_c import Interleaver as _Interleaver
            from langstream._pump_c import READER_ENDED as _READER_ENDED
            from langstream._pump_c import RESUME_AGAIN as _RESUME_AGAIN
            from langstream._pump_c import ReaderSteps as _ReaderSteps
        except ImportError:  # pragma: no cover - a pump built before it existed
            _Interleaver = _ReaderSteps = None
        try:
            from langstream._pump_c import install_reader_anext as _install_reader_anext
        except ImportError:  # pragma: no cover - a pump built before it existed
            pass
        else:
            _install_reader_anext()  # (``channel._set_anext``, and the C slot)


def _compiled_pump_fits(mux: StreamMux) -> bool:
    """The compiled pump drives runs whose logs are the C event log."""
    return _SyncPump is not None and type(mux._events._log) is _CEventLog
_get_running_loop = asyncio.get_running_loop
try:  # Python >= 3.12: a C function
    from _asyncio import current_task as _c_current_task  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - version dependent
    _c_current_task = None
_tasks_by_loop = getattr(asyncio.tasks, "_current_tasks", None)
if _c_current_task is not None:  # pragma: no cover - version dependent
    _current_task = _c_current_task
elif isinstance(_tasks_by_loop, dict):
    # Python < 3.12: ``asyncio.current_task`` is a Python wrapper around this
    # dict; reading it directly keeps the per-step cost at two C calls.
    def _current_task() -> Optional[asyncio.Task[Any]]:
        return _tasks_by_loop.get(_get_running_loop())  # type: ignore[union-attr]
else:  # pragma: no cover
    _current_task = asyncio.current_task
# the current task of a given loop, in one C call where possible
if _c_current_task is not None:  # pragma: no cover - version dependent
    _task_of = _c_current_task
elif isinstance(_tasks_by_loop, dict):
    _task_of = _tasks_by_loop.get
else:  # pragma: no cover
    _task_of = asyncio.current_task


_Future = asyncio.Future
_base_create_future = asyncio.BaseEventLoop.create_future


def _new_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """``loop.create_future()``; for asyncio's own loops, the very future it
    makes, without its Python frame (a waiting consumer makes one per wait)."""
    if type(loop).create_future is _base_create_future:
        return _Future(loop=loop)
    return loop.create_future()


_MISSING = object()


class _Ahead:
    """A part the pump pulled ahead (``_MISSING``: the graph ended), or the
    error the graph raised then (see ``_announced_agent``)."""

    __slots__ = ("part", "error")

    def __init__(self, part: Any, error: Optional[BaseException] = None) -> None:
        self.part = part
        self.error = error


def _starts_namespace(mux: Any, event: Any) -> bool:
    """Whether a tracker of ``mux`` would start a namespace at ``event``."""
    ns = event["params"]["namespace"]
    # (a loop: compiled, a generator expression costs a generator and a
    # closure for every event that may start one)
    for transformer in mux._transformers:
        would = getattr(transformer, "_would_discover", None)
        if would is not None and would(ns):
            return True
    return False


def _announced_agent(part: Any, ns: Any) -> Optional[str]:
    """The agent name (``lc_agent_name``) a task start at ``ns`` announces.

    A subgraph's first event is its input snapshot, and it is discovered
    there, before any task of it: the pump then pulls the next part first
    (it is dispatched in the next step), and when that is the subgraph's
    first task naming an agent, the namespace is started with that name
    (and its tool-call cause), as LangGraph, which discovers subgraphs at
    their first task, names it.  Never raises: the part is validated when
    it is dispatched.
    """
    # (an exact dict first: ``isinstance`` against the ABC is the slow test)
    if (type(part) is not dict and not isinstance(part, Mapping)) or part.get("type") != "tasks":
        return None
    part_ns = part.get("ns")
    if not isinstance(part_ns, (tuple, list)) or list(part_ns) != list(ns):
        return None
    return _task_agent(part.get("data"))


def _keep_ahead(shared: Any, ns: Any, part: Any, error: Optional[BaseException] = None) -> None:
    """Keep the part read ahead of the snapshot at ``ns`` (or the error the
    graph raised then) for the next step, which takes the pump's general
    path (a ``None`` forward), and the agent name it announces for the
    snapshot's dispatch (``_announced_agent``)."""
    shared.ahead = _Ahead(part, error)
    if error is None:
        name = _announced_agent(part, ns)
        if name is not None:
            shared.hints[tuple(ns)] = name
    shared.deferred.append((None, None, None))


def _run_error(exc: BaseException) -> BaseException:
    """The error a run ends with: a stray ``StopIteration`` /
    ``StopAsyncIteration`` (not the graph's own exhaustion) would read as a
    normal end to every consumer, so it becomes a ``RuntimeError``."""
    if isinstance(exc, (StopIteration, StopAsyncIteration)):
        err = RuntimeError(
            f"{type(exc).__name__} raised while dispatching a part; only the "
            "graph's own exhaustion may end a run"
        )
        err.__cause__ = exc
        return err
    return exc


def _check_stall(value: Any) -> float:
    """Validate ``stall_warning_after``: a finite number of seconds > 0
    (``ValueError`` otherwise, whatever the type, as since its introduction)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            "stall_warning_after must be a finite number of seconds > 0, got "
            f"{value!r} ({type(value).__name__})"
        )
    if not (0 < value < float("inf")):  # (also rejects nan)
        raise ValueError(
            f"stall_warning_after must be a finite number of seconds > 0, got {value!r}"
        )
    return float(value)


def _missing_projection(run: Any, name: str) -> AttributeError:
    mux = run.__dict__.get("_mux")
    keys = sorted(mux.native_keys) if mux is not None else []
    hint = f"; {missing_messages_hint()}" if name == "messages" else ""
    return AttributeError(
        f"{type(run).__name__!r} object has no attribute {name!r} "
        f"(registered projections: {', '.join(keys) or 'none'}){hint}"
    )


def _close_sync_iter(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - best effort during teardown
            _logger.debug("closing the graph iterator raised", exc_info=True)


async def _close_async_iter(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - best effort during teardown
            _logger.debug("closing the graph iterator raised", exc_info=True)


class _RunState:
    """What both run streams share: projections as attributes, and the run's
    results (latest snapshot, interrupts), which the mux tracks for its scope
    whether or not anyone subscribes."""

    _mux: StreamMux
    _scope_list: List[str]

    def _init_state(self, mux: StreamMux) -> None:
        self._mux = mux
        self.extensions: Mapping[str, Any] = MappingProxyType(mux.extensions)
        self._exhausted = False
        self._scope_list = mux._scope_list  # (shared, never mutated)
        for key in mux.native_keys:
            setattr(self, key, mux.extensions[key])

    def __getattr__(self, name: str) -> Any:
        raise _missing_projection(self, name)

    # the mux tracks the snapshots and interrupts of its scope
    @property
    def _latest(self) -> Any:
        return self._mux._latest

    @property
    def _interrupted(self) -> bool:
        return self._mux._interrupted

    @property
    def _interrupts(self) -> List[Any]:
        return self._mux._interrupts

    def _raise_if_failed(self) -> None:
        err = self._mux._events._log.error
        if err is not None:
            raise err.with_traceback(self._mux._failed_tb(err))


class GraphRunStream(_RunState):
    """A sync run: iterate any projection, or the run itself, to drive it.

    Args:
        graph_iter: the graph's iterator of stream parts, or ``None`` for a
            run driven by an outer pump (a subgraph handle).
        mux: the ``StreamMux`` holding the projections and the main log.
        wire_pump: bind this run's pump to the mux (``False`` for handles
            that inherit their parent's pump).

    Native projections are attributes (``run.values``, ``run.lifecycle``,
    ``run.subgraphs``, ...); every projection is in ``run.extensions``.
    Iterating the run yields the raw main log (protocol events with
    ``seq``).  ``output``, ``interrupted`` and ``interrupts`` drive the run to
    its end.  Leaving a ``with`` block (or ``abort()``) closes the graph
    iterator and the mux.
    """

    values: StreamChannel[Dict[str, Any]]
    lifecycle: StreamChannel[LifecyclePayload]
    subgraphs: StreamChannel[SubgraphRunStream]
    messages: StreamChannel[Any]  # langchain-core ChatModelStream per model call
    updates: StreamChannel[Dict[str, Any]]
    custom: StreamChannel[Any]
    checkpoints: StreamChannel[Dict[str, Any]]
    debug: StreamChannel[Dict[str, Any]]
    tasks: StreamChannel[Dict[str, Any]]

    def __init__(
        self,
        graph_iter: Optional[Iterator[Any]],
        mux: StreamMux,
        *,
        wire_pump: bool = True,
    ) -> None:
        self._graph_iter = graph_iter
        self._init_state(mux)
        if wire_pump:
            if graph_iter is not None and _compiled_pump_fits(mux):
                # the compiled twin of ``_pump_next`` (same behaviour)
                self._pump_next = _SyncPump(  # type: ignore[method-assign]
                    self, mux, graph_iter, GraphRunStream._pump_next.__get__(self)
                )
            mux.bind_pump(self._pump_next)

    # ------------------------------------------------------------------ pump

    def _pump_next(self) -> bool:
        """Advance the run by one step; ``False`` once it has ended."""
        if self._exhausted:
            return False
        if self._stepping:
            raise self._reentry_error()
        self._stepping = True
        try:
            return self._step()
        finally:
            self._stepping = False

    _stepping = False  # a step is under way (the pump is not re-entrant)

    def _reentry_error(self) -> RuntimeError:
        """The error of a pump call made from inside a step of the same run."""
        return RuntimeError(
            "re-entrant pump: this run was pulled from inside one of its own steps "
            "(while the graph produced or the mux dispatched a part), e.g. a "
            "transformer's process() reading run.output or iterating the run or "
            "one of its projections, or the graph iterating its own run. A step "
            "cannot wait for itself (the event being dispatched is not in the log "
            "yet): read the event the transformer is given instead."
        )

    def _step(self) -> bool:
        mux = self._mux
        shared = mux._shared
        if shared.deferred:
            try:
                forwarded = mux._flush_deferred()
            except Exception as exc:  # noqa: BLE001 - ends the run
                self._end(exc)
                return False
            except BaseException as exc:  # (as for a part: ends the run, re-raised)
                self._end(exc)
                raise
            if shared.ahead is None or shared.deferred:
                return True
            if forwarded:  # (the part pulled ahead: in the step after this one)
                shared.deferred.append((None, None, None))
                return True
            # (the step in which the part pulled ahead would have been pulled)
        graph_iter = self._graph_iter
        if graph_iter is None:
            return False
        try:
            ahead = shared.ahead
            if ahead is None:
                part = next(graph_iter, _MISSING)
            else:
                shared.ahead = None
                if ahead.error is not None:
                    raise ahead.error
                part = ahead.part
            if part is _MISSING:  # the graph's own exhaustion: the only normal end
                self._finish()
                return False
            # (the compiled dispatcher when the C pump made one: this step
            # is its fallback, e.g. for the part read ahead of a snapshot)
            dispatcher = mux._part_dispatcher
            route = (mux._push_part_fast(part) if dispatcher is None
                     else dispatcher.dispatch(part))
            if route is not None:
                self._dispatch_route(route)
            return True
        except Exception as exc:  # noqa: BLE001 - ends the run
            self._end(exc)
            return False
        except BaseException as exc:
            self._end(exc)
            raise

    def _dispatch_route(self, route: Tuple[Any, str, bool]) -> None:
        """Dispatch a part on the event path (``route``: its protocol event,
        method and whether it is at the run's scope); a subgraph's input
        snapshot that starts a namespace pulls the next part first (see
        ``_announced_agent``)."""
        event, method, at_scope = route
        mux = self._mux
        shared = mux._shared
        if (method == "values" and not at_scope and shared.ahead is None
                and self._graph_iter is not None and _starts_namespace(mux, event)):
            ns = event["params"]["namespace"]
            try:
                part = next(self._graph_iter, _MISSING)
            except Exception as exc:  # noqa: BLE001 - raised by the next step
                _keep_ahead(shared, ns, None, exc)
            else:
                _keep_ahead(shared, ns, part)
            try:
                mux._dispatch(event, method, at_scope)
            finally:
                shared.hints.clear()
            return
        mux._dispatch(event, method, at_scope)

    def _finish(self) -> None:
        self._exhausted = True
        self._stop_pump()
        self._graph_iter = None
        mux = self._mux
        try:
            while mux._shared.deferred:
                mux._flush_deferred()
            mux.close()
        except Exception as exc:  # noqa: BLE001 - close() already failed the logs
            if not mux._events._log.closed:
                mux.fail(exc)

    def _stop_pump(self) -> None:
        """Tell the compiled pump (if any) that the run is over, and let go of
        it (it holds the run: a cycle); ``_pump_next`` is the method again,
        which does the same for an ended run."""
        pump = self.__dict__.pop("_pump_next", None)
        if pump is not None:
            pump.done = True

    def _end(self, exc: BaseException) -> None:
        """Fail the run with ``exc`` and close the graph iterator."""
        exc = _run_error(exc)
        self._exhausted = True
        self._stop_pump()
        graph_iter = self._graph_iter
        self._graph_iter = None
        self._mux._shared.deferred.clear()
        self._mux._shared.ahead = None
        try:
            self._mux.fail(exc)
        finally:
            if graph_iter is not None:
                _close_sync_iter(graph_iter)

    def _drive(self) -> None:
        pump = self._pump_next
        while pump():
            pass

    # ------------------------------------------------------------- lifecycle

    def abort(self) -> None:
        """Stop the run: close the graph iterator (its ``finally`` runs) and the mux.

        Consumers see the projections end normally.  Idempotent.
        """
        self._exhausted = True
        self._stop_pump()
        graph_iter = self._graph_iter
        self._graph_iter = None
        if graph_iter is not None:
            _close_sync_iter(graph_iter)
        mux = self._mux
        if mux._assign_seq:  # the root run drops postponed forwards
            mux._shared.deferred.clear()
            mux._shared.ahead = None
        try:
            mux.close()
        except Exception:  # noqa: BLE001 - the run is being abandoned
            _logger.debug("closing the mux during abort raised", exc_info=True)

    def __enter__(self) -> GraphRunStream:
        return self

    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.abort()

    # --------------------------------------------------------------- results

    @property
    def output(self) -> Optional[Dict[str, Any]]:
        """Drive the run to its end and return the last snapshot (re-raises its error)."""
        self._drive()
        self._raise_if_failed()
        return self._latest

    @property
    def interrupted(self) -> bool:
        """Drive the run to its end; ``True`` if a snapshot carried interrupts."""
        self._drive()
        self._raise_if_failed()
        return self._interrupted

    @property
    def interrupts(self) -> List[Any]:
        """Drive the run to its end and return every interrupt payload."""
        self._drive()
        self._raise_if_failed()
        return self._interrupts

    def __iter__(self) -> Iterator[ProtocolEvent]:
        """Subscribe to the raw main log (single subscriber)."""
        return iter(self._mux._events)

    def interleave(self, *names: str) -> Iterator[Tuple[str, Any]]:
        """Yield ``(name, item)`` across the named projections in push order.

        The projections are subscribed when the iteration starts (at its
        first item) and released when it ends (exhausted, failed, closed
        with ``close()``, or garbage-collected).

        Raises:
            KeyError: a name is not a registered projection.
            TypeError: a projection is not a sync ``StreamChannel``.
            RuntimeError: a projection already has a subscriber.
        """
        if _Interleaver is not None and type(self._mux._events._log) is _CEventLog:
            # the compiled twin of ``_interleave`` (same behaviour); it falls
            # back to it when a projection's log is not the C event log
            return _Interleaver(self, names)
        return self._interleave(names)

    def _interleave_open(self, names: Sequence[str]) -> List[Tuple[str, Any, StreamChannel[Any]]]:
        """Subscribe the named projections: ``(name, cursor, channel)`` each.

        On an error, what was subscribed is released before it propagates.
        """
        readers: List[Tuple[str, Any, StreamChannel[Any]]] = []
        subscribed: List[StreamChannel[Any]] = []
        try:
            for name in names:
                try:
                    channel = self.extensions[name]
                except KeyError:
                    raise KeyError(
                        f"unknown projection {name!r}; registered: "
                        f"{', '.join(sorted(self.extensions)) or 'none'}"
                    ) from None
                if not isinstance(channel, StreamChannel):
                    raise TypeError(
                        f"interleave() needs StreamChannel projections, got "
                        f"{type(channel).__name__} for {name!r}"
                    )
                channel._subscribe(False, "tee")
                subscribed.append(channel)
                readers.append((name, channel._log.cursor(), channel))
        except BaseException:
            _interleave_release(readers, subscribed)
            raise
        return readers

    def _interleave(
        self,
        names: Sequence[str],
        readers: Optional[List[Tuple[str, Any, StreamChannel[Any]]]] = None,
    ) -> Iterator[Tuple[str, Any]]:
        """The body of ``interleave`` (``readers``: already subscribed)."""
        if readers is None:
            readers = self._interleave_open(names)
        try:
            # (name, peek_seq, cursor, log) per projection still open; the
            # log is read from the channel once: it does not change while
            # the channel has a subscriber
            live = [(name, cursor.peek_seq, cursor, channel._log)
                    for name, cursor, channel in readers]
            pump = self._mux._pump_fn
            while live:
                # one pass: the projection whose next item is oldest, and
                # whether one has ended (a closed log with no unread item;
                # on PyPy a second loop per part would be compiled apart)
                best = None
                best_seq = 0
                ended = False
                for reader in live:
                    seq = reader[1]()
                    if seq is None:
                        if best is None and reader[3].closed:  # (moot once one has an item)
                            ended = True
                    elif best is None or seq < best_seq:
                        best = reader
                        best_seq = seq
                if best is not None:
                    yield best[0], next(best[2])
                    continue
                # nothing to read: drop the projections that ended, then pump
                if ended:
                    remaining = []
                    for other in live:
                        log = other[3]
                        if log.closed:
                            if log.error is not None:
                                raise log.error.with_traceback(
                                    self._mux._failed_tb(log.error))
                        else:
                            remaining.append(other)
                    live = remaining
                if live and (pump is None or not pump()):
                    if all(reader[1]() is None for reader in live):
                        if all(reader[3].closed for reader in live):
                            continue
                        break
        finally:
            _interleave_release(readers, [channel for _n, _c, channel in readers])


def _interleave_release(readers: List[Tuple[str, Any, Any]], subscribed: List[Any]) -> None:
    """Close the cursors of ``readers`` and let the channels be subscribed again."""
    for _name, cursor, _channel in readers:
        cursor.close()
    for channel in subscribed:
        channel._subscribed = False


# loop turns the async pump gives before it forwards a new handle's first
# event (``_AsyncPump.step``): the consumer that got the handle runs, then
# the tasks it started for it, then the tasks those start (a nested gather),
# so all of them subscribe before any event reaches the handle ...
_FLUSH_TURNS = 2
# ... and more, up to these, while no projection of the handle has a
# subscriber yet: a consumer that reads handles one at a time first winds
# down its reading of the previous one (a turn per nested gather)
_FLUSH_TURNS_MAX = 8
# steps without the async pump's shortcuts after a subgraph handle is made:
# loop turns for a consumer that subscribes to a second projection of the
# handle after reading the first ...
_SETTLE_STEPS = 8
# ... cut to these once a projection of the newest handle has a subscriber
# (a consumer subscribes to what it wants together, in one loop body or from
# tasks it starts together; the window then only costs the run)
_SETTLE_SUBSCRIBED = 2


def _loop_idle(loop: Any, but: Any = None) -> bool:
    """True when nothing is ready to run on ``loop`` (asyncio's own loops:
    their ready queue is empty) but the callback handle ``but`` (the run's
    pending hand-off, a no-op while a task pumps), so no consumer can
    subscribe in the next turn that could not in this one; False when it
    cannot tell."""
    ready = getattr(loop, "_ready", None)
    if type(ready) is not _deque:
        return False
    return not ready or (len(ready) == 1 and ready[0] is but)


class _YieldOnce:
    """Awaited, gives the event loop one turn, as ``asyncio.sleep(0)`` does
    (a bare yield: the task runs again at the next turn), without its two
    Python frames (the pump yields a few times per subgraph)."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(_ONE_YIELD)


_ONE_YIELD = (None,)
_YIELD = _YieldOnce()


def _newest_subscribed(shared: Any) -> bool:
    """Whether a projection (or the main log) of the child mux made last has
    a subscriber."""
    ref = shared.newest
    child = ref() if ref is not None else None
    if child is None:
        return False
    if child._events._subscribed:
        return True
    for channel in child._channels:
        if channel._subscribed:
            return True
    return False


def _done_callbacks(fut: Any) -> List[Any]:
    """The done callbacks of an asyncio future or task (C or Python)."""
    try:
        entries = fut._callbacks
    except AttributeError:
        return []
    return [entry[0] if type(entry) is tuple else entry for entry in entries or ()]


def _describe_task(task: Any) -> str:
    """A task (a reader's, for the stall warning): its name, its coroutine
    and what it waits on."""
    if task is None:
        return "no task (it subscribed outside one)"
    try:
        coro = task.get_coro()
        what = f"task {task.get_name()!r} ({getattr(coro, '__qualname__', type(coro).__name__)})"
    except Exception:  # noqa: BLE001 - a foreign task-like object: its repr
        return repr(task)
    if task.done():
        return what + ", which has ended"
    awaited = getattr(task, "_fut_waiter", None)
    if awaited is None:
        return what + ", which is running or ready to run"
    if isinstance(awaited, asyncio.Task):
        return f"{what}, which awaits task {awaited.get_name()!r}{_await_site(coro)}"
    return f"{what}, which awaits a {type(awaited).__name__} (not this run){_await_site(coro)}"


def _await_site(coro: Any) -> str:
    """Where the suspended coroutine ``coro`` waits, for the stall warning:
    the innermost function of its ``await`` chain (say ``Semaphore.acquire``)
    and the innermost line of the program's own code on the way there; ""
    when it cannot tell (a coroutine without frames, a foreign awaitable:
    the warning must never fail)."""
    try:
        return _await_site_of(coro)
    except Exception:  # noqa: BLE001 - see above
        return ""


def _frame_name(frame: Any) -> str:
    """A frame's function: its qualified name (3.11+), ``Type.method`` for a
    method before that, else its name."""
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
    if qualname is not None:
        return qualname
    if code.co_argcount and code.co_varnames[0] == "self":
        owner = frame.f_locals.get("self")
        if owner is not None:
            return f"{type(owner).__name__}.{code.co_name}"
    return code.co_name


def _await_site_of(coro: Any) -> str:
    frames = []
    for _ in range(64):  # (the chain of awaits, outermost first)
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is None:
            break
    # (a pure-Python future's own ``__await__``, as on PyPy, says nothing more)
    frames = [frame for frame in frames if frame.f_code.co_filename != _FUTURES_FILE]
    if not frames:
        return ""
    innermost = frames[-1]
    own = [frame for frame in frames if not _is_library_file(frame.f_code.co_filename)]
    site = f" in {_frame_name(innermost)}"
    if own and own[-1] is not innermost:
        frame = own[-1]
        site += (f", from {_frame_name(frame)} at "
                 f"{_short_path(frame.f_code.co_filename)}:{frame.f_lineno}")
    elif own:
        site += f" at {_short_path(innermost.f_code.co_filename)}:{innermost.f_lineno}"
    return site


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_FUTURES_FILE = asyncio.futures.__file__
_LANGSTREAM_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_library_file(path: str) -> bool:
    """Whether ``path`` is asyncio's or langstream's own code (not the program's)."""
    return path.startswith(_ASYNCIO_DIR) or path.startswith(_LANGSTREAM_DIR)


def _short_path(path: str) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # (another drive)
        return path
    return path if relative.startswith("..") else relative


# how many tasks and futures ``_resolved_by`` looks through at most
_CANDIDATES_MAX = 512


def _closure_of(fn: Any) -> Dict[str, Any]:
    """The variables a function's closure holds, by name (none: empty)."""
    cells = getattr(fn, "__closure__", None)
    if not cells:
        return {}
    found = {}
    for name, cell in zip(getattr(fn.__code__, "co_freevars", ()), cells):
        try:
            found[name] = cell.cell_contents
        except ValueError:  # (an empty cell)
            pass
    return found


class _AsyncPump:
    """The single-flight pump of an async run: its state and its step.

    A slotted object of its own (not the run stream, whose ``__getattr__``
    makes every attribute read slower): ``step`` is the hot path.
    """

    __slots__ = (
        "run", "mux", "graph_aiter", "exhausted", "pumping", "pump_task", "waiters", "readers",
        "handoff", "handoff_wakes", "wakes", "passer",
        "aborting", "aborted", "settled", "yield_next", "loop", "deferred", "bounded",
        "dispatch", "closing", "closer", "children_seen", "settle", "shared", "__weakref__",
    )

    def __init__(self, run: AsyncGraphRunStream, mux: StreamMux,
                 graph_aiter: Optional[AsyncIterator[Any]]) -> None:
        # (weakly: a subgraph handle and its pump would otherwise hold each
        # other, and with them the ended subgraph's mux, until a collection)
        self.run = weakref.ref(run)
        self.mux = mux
        self.graph_aiter = graph_aiter
        self.exhausted = False
        self.pumping = False
        self.pump_task: Optional[asyncio.Task[Any]] = None
        self.waiters: List[asyncio.Future[Any]] = []
        # projection readers waiting for their own data: (future, reader);
        # woken when their log has an item or closes (see ``step``)
        self.readers: List[Tuple[asyncio.Future[Any], Any]] = []
        # the pending _handoff callback's handle (None: none is scheduled)
        self.handoff: Optional[asyncio.Handle] = None
        # readers woken so far by steps (wake_readers), and by the time the
        # pending hand-off was scheduled: woken since, they are still to run
        self.wakes = 0
        self.handoff_wakes = 0
        # the task whose step just woke waiting readers (it lets them pump
        # on; see ``step``), until it or another task takes the pump
        self.passer: Optional[asyncio.Task[Any]] = None
        self.aborting = False
        self.aborted = False
        self.settled: Optional[asyncio.Future[Any]] = None
        # set while abort() tears the run down outside a pump step: consumers
        # that ask for more wait for it (the run is finished once it is done)
        self.closing: Optional[asyncio.Future[Any]] = None
        self.closer: Optional[asyncio.Task[Any]] = None  # the task running abort()
        self.yield_next = True
        # An async run belongs to the event loop that first pumps it; the loop
        # is cached because asyncio.get_running_loop() costs a system call per
        # call on some Python versions.
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        # the shared lists the pump checks each step (kept, never replaced)
        # the child muxes (handles) made so far, and how many more steps go
        # without the shortcuts since the last one was made (see ``step``)
        self.children_seen = 0
        self.settle = 0
        self.shared = mux._shared
        self.deferred = mux._shared.deferred
        self.bounded = mux._shared.bp.channels
        # the part dispatcher: compiled with the C event log, else the mux's own
        # (a subgraph handle's pump never pulls: its parent's does)
        self.dispatch: Any = (
            None if graph_aiter is None
            else _PartDispatcher(mux).dispatch if _compiled_pump_fits(mux)
            else mux._push_part_fast
        )

    # projection readers pass themselves to ``step``, which returns their next
    # item (``_AsyncChannelIterator.__anext__``)
    _steps_for_readers = True

    async def step(self, reader: Any = None, end: Any = None) -> Any:
        """Advance the run by one step, or wait for the task that is doing it.

        Without a ``reader`` (``output()``, a handle, any other caller):
        returns ``True`` when a step completed (here or in another task),
        ``False`` once the run has ended.

        ``reader`` is a projection reader (``_AsyncChannelIterator``, with
        ``_cursor`` and ``_log``) asking for its next item: the step returns
        that item, stepping again as long as the reader has none, and raises
        the log's error or ``StopAsyncIteration`` at its end.  One coroutine
        per item: the reader's ``__anext__`` awaits this directly.  The
        compiled reader step passes its marker as ``end``: the step returns
        it instead of raising ``StopAsyncIteration`` (the compiled step
        raises it where the reader awaits, without a traceback entry for
        every frame in between).

        A reader that finds the pump busy waits until its own log has an item
        or closes, instead of waking after every step; a reader that pumps
        keeps pulling while the parts it dispatches give nobody anything to
        read (no item for it, no waiter to wake).  Every step that gives a
        waiting reader data wakes it at once, as before; when the pumping
        task returns with its own data while readers still wait, a callback
        hands the pump on to them unless that task pumps again first.  A
        reader whose step woke others and gave it nothing steps aside: the
        readers it woke pump on once they have read (the pump goes to the
        consumer that is reading), and the same callback gives it the pump
        back if none of them asks for more.

        A new handle's first event is forwarded to it at the start of the
        next step, after ``_FLUSH_TURNS`` loop turns (up to
        ``_FLUSH_TURNS_MAX`` while none of its projections has a subscriber):
        a consumer that got the handle subscribes to its projections when
        its task next runs, a task it starts for them a turn later, a nested
        gather's a turn after that, and one that reads handles one at a time
        gets to the new one only once it has wound down its reading of the
        last one; pushes to a log nobody subscribes to are not stored.
        (Fewer turns when nothing else is ready to run, the run's own
        pending hand-off aside: then no task could subscribe in the next
        one either.  For the same reason the step that follows a step that
        woke other consumers goes back to the loop first only when something
        else is ready to run.)
        The pull-ahead shortcut is off for the ``_SETTLE_STEPS`` steps
        that follow the making of a handle (``_SETTLE_SUBSCRIBED`` once one
        of its projections has a subscriber): meanwhile every step ends
        after one part, and the next one goes back to the event loop first
        when anything else is ready to run (waiting consumers are woken
        only when they have data).  A handle's events are pushed to it only
        once its parent saw them, so the window restarts with every new
        handle, at any depth.
        """
        ended = False  # (a reader's) the run has ended
        cursor = reader._cursor if reader is not None else None
        while True:
            if cursor is not None:
                # the reader's item, once a step gave it one
                if cursor.pending:
                    return reader._take()
                if reader._log.closed:
                    return reader._ended(end)  # (raises, unless given ``end``)
                if ended:
                    if end is not None:
                        return end
                    raise StopAsyncIteration
            if self.exhausted:
                if self.pumping or self.closing is not None:
                    await self.wait_finished()
                if reader is None:
                    return False
                ended = True
                continue
            shared = self.shared
            if shared.children != self.children_seen:  # a handle was made: settle
                self.children_seen = shared.children
                self.settle = _SETTLE_STEPS
            # whose data ends the step: the reader's, but nobody's in particular
            # while a new handle settles
            settle = self.settle
            if settle > _SETTLE_SUBSCRIBED and _newest_subscribed(shared):
                settle = self.settle = _SETTLE_SUBSCRIBED
            own = None if settle else reader
            if self.pumping:
                # (a reader waits for its own data, also while a new handle
                # settles: the settling pump's steps go back to the loop)
                more = await self.wait_step(reader)
                if reader is None:
                    return more
                ended = not more
                continue
            loop = self.loop
            if loop is None:
                loop = self.loop = _get_running_loop()
            task = _task_of(loop)
            if task is None:  # not a task of the run's loop: another loop?
                self.check_loop()
            if self.passer is not None:
                if self.passer is task and reader is not None:
                    # this task's last step woke readers and gave it nothing:
                    # they pump on once they have read (the pump goes to the
                    # consumer that is reading, as on the sync lane); it
                    # waits for its own data, and takes the pump back if
                    # none of them does (the hand-off)
                    self.passer = None
                    self.schedule_handoff()
                    ended = not await self.wait_step(reader)
                    continue
                self.passer = None
            if settle:
                self.settle = settle - 1
            self.pumping = True
            self.pump_task = task
            pulling = False
            try:
                while True:
                    if self.yield_next or self.deferred or self.bounded:
                        if self.yield_next or self.deferred:
                            # Before the first part, and after a step that woke
                            # other consumers, let them run: tasks started together
                            # (gather) subscribe before anything is dispatched
                            # (pushes to a projection nobody subscribes to are not
                            # stored), and a consumer whose data just arrived reads
                            # it, and subscribes to the handles it got, before the
                            # next part is pulled.  (Not when nothing else is
                            # ready to run: they all ran, this task last.)
                            self.yield_next = False
                            if not _loop_idle(loop, self.handoff):
                                await _YIELD
                        if self.deferred:
                            for turn in range(_FLUSH_TURNS_MAX):
                                if _loop_idle(loop, self.handoff):
                                    break  # (nothing else can run to subscribe)
                                if turn >= _FLUSH_TURNS and _newest_subscribed(shared):
                                    break
                                await _YIELD
                            forwarded = await self.mux._aflush_deferred()
                            if shared.ahead is None or self.deferred:
                                more = True
                                break
                            if forwarded:  # (the part pulled ahead: next step)
                                self.deferred.append((None, None, None))
                                more = True
                                break
                            # (the step in which the part pulled ahead would
                            # have been pulled: on to it)
                        if self.bounded:
                            await self.wait_for_room()
                        if self.exhausted:
                            more = False
                            break
                    # (the end of the run and abort() both clear ``graph_aiter``)
                    graph_aiter = self.graph_aiter
                    if graph_aiter is None:
                        more = False
                        break
                    pulling = True
                    try:
                        ahead = shared.ahead
                        if ahead is None:
                            part = await graph_aiter.__anext__()
                        else:
                            shared.ahead = None
                            if ahead.error is not None:
                                raise ahead.error
                            part = ahead.part
                            if part is _MISSING:
                                raise StopAsyncIteration
                    except StopAsyncIteration:  # the graph's own exhaustion
                        more = await self.finish()
                        break
                    route = self.dispatch(part)
                    if route is not None:
                        await self.dispatch_route(route)
                    pulling = False
                    more = True
                    # (the common cases first: the reader's item, no reader)
                    if cursor is not None and cursor.pending:
                        item = next(cursor)  # (``reader._take()``, inline)
                        if reader._bp is not None:
                            reader._bp.wake()
                        return item
                    if own is None:
                        if settle:
                            # (the next step goes back to the loop first
                            # when anything else is ready to run: tasks
                            # subscribe to the new handle)
                            self.yield_next = True
                        break
                    if self.waiters or self.deferred or own._log.closed:
                        break
                    if shared.children != self.children_seen:  # a new handle (see the docstring)
                        break
                    if self.readers and self.any_reader_ready():
                        break
                    # nothing to read for anyone: pull the next part at once
            except asyncio.CancelledError as exc:
                more = await self.after_cancel(exc, pulling)
            except BaseException as exc:
                more = await self.after_error(exc)
            finally:
                if self.waiters or self.readers or self.settled is not None:
                    self.end_step()
                else:  # (end_step, inline for the common case)
                    self.pumping = False
                    self.pump_task = None
            if reader is None:
                return more
            ended = not more

    def reader_steps(self) -> Optional[Callable[[Any], Awaitable[Any]]]:
        """What one unbounded projection reader calls instead of
        ``step(reader)``: the compiled twin of this step's common case
        (``_pump_c.ReaderSteps``), for a run on the C event log; ``None``
        elsewhere (then ``step``)."""
        dispatcher = getattr(self.dispatch, "__self__", None)
        if _ReaderSteps is None or type(dispatcher) is not _PartDispatcher:
            return None
        return _ReaderSteps(self, dispatcher, _task_of)  # type: ignore[no-any-return]

    async def resume(self, reader: Any, kind: int, what: Any, pulling: bool) -> Any:
        """The rest of a step that the compiled reader step began and hands
        over (it holds the pump): ``kind`` 0, the event path of the part
        routed ``what``; 1, the graph is exhausted; 2, the pull or the
        dispatch raised ``what``.  Handled as ``step`` handles them; then
        returns the reader's item, or at its end raises its log's error or
        returns ``_pump_c.READER_ENDED`` (as ``step(reader, end)`` does),
        or, with neither yet, ``_pump_c.RESUME_AGAIN``: the compiled step
        takes the next step."""
        cursor = reader._cursor
        more = True
        try:
            if kind == 0:
                await self.dispatch_route(what)
                pulling = False
                if cursor.pending:
                    item = next(cursor)  # (an unbounded reader: ``_take``)
                    return item
            elif kind == 1:
                more = await self.finish()
            else:
                raise what
        except asyncio.CancelledError as exc:
            more = await self.after_cancel(exc, pulling)
        except BaseException as exc:
            more = await self.after_error(exc)
        finally:
            self.end_step()
        if cursor.pending:
            return reader._take()
        if reader._log.closed:
            return reader._ended(_READER_ENDED)
        if not more:
            return _READER_ENDED
        return _RESUME_AGAIN

    async def dispatch_route(self, route: Tuple[Any, str, bool]) -> None:
        """``GraphRunStream._dispatch_route`` of the async lane."""
        event, method, at_scope = route
        mux = self.mux
        shared = self.shared
        graph_aiter = self.graph_aiter
        if (method == "values" and not at_scope and shared.ahead is None
                and graph_aiter is not None and _starts_namespace(mux, event)):
            ns = event["params"]["namespace"]
            try:
                part = await graph_aiter.__anext__()
            except StopAsyncIteration:
                _keep_ahead(shared, ns, _MISSING)
            except Exception as exc:  # noqa: BLE001 - raised by the next step
                _keep_ahead(shared, ns, None, exc)
            else:
                _keep_ahead(shared, ns, part)
            try:
                await mux._adispatch(event, method, at_scope)
            finally:
                shared.hints.clear()
            return
        await mux._adispatch(event, method, at_scope)

    def any_reader_ready(self) -> bool:
        """Whether a waiting reader has an item, an ended log or its future
        done (the compiled reader step asks its twin,
        ``_pump_c._any_reader_ready``)."""
        for waiter, reader in self.readers:
            if reader._cursor.pending or reader._log.closed or waiter.done():
                return True
        return False

    def check_loop(self) -> None:
        """Raise if this run is being pumped from an event loop that is not its own."""
        running = _get_running_loop()
        own = self.loop
        if own is not None and running is not own:
            state = "closed" if own.is_closed() else (
                "running (in another thread)" if own.is_running() else "not running")
            raise RuntimeError(
                "this async run belongs to the event loop that first pumped it "
                f"({own!r}, now {state}); it cannot be continued in another event "
                f"loop ({running!r}). Consume a run within one event loop "
                "(one asyncio.run)."
            )

    def reentry_error(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"deadlock: the task that is pumping this run ({what}) awaited the run "
            "itself, e.g. a transformer's aprocess/afinalize/afail awaiting "
            "run.output() or iterating one of the run's projections. A step "
            "cannot wait for itself: read the event the transformer is given, "
            "or hand the work to schedule()."
        )

    async def wait_step(self, reader: Any = None) -> bool:
        """Another task is pumping: wait for its step (a ``reader``: for its
        own data, see ``step``), then report it."""
        loop = self.loop
        # (the task of the run's own loop: asking for the running loop costs
        # a system call per call on some Python versions)
        task = _task_of(loop) if loop is not None else _current_task()
        if task is self.pump_task:
            raise self.reentry_error("dispatching a part")
        if task is None:  # not a task of the run's loop: another loop?
            self.check_loop()
        waiter = _new_future(self.loop)  # type: ignore[arg-type]
        if reader is not None:
            self.readers.append((waiter, reader))
        else:
            self.waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
        return not self.exhausted

    async def wait_finished(self) -> None:
        """The run is ending (its finishing is under way): wait until it is
        done, so no consumer takes a run that is still finishing for ended."""
        task = _current_task()
        if task is self.closer or (self.pumping and task is self.pump_task):
            # the finishing task itself (e.g. an afinalize reading the run):
            # the pump is over for it
            return
        if task is not None and task in _scheduled_tasks:
            raise RuntimeError(
                "deadlock: a task started with StreamTransformer.schedule() awaited "
                "its run while the run is finishing, and finishing waits for that "
                "task; read the run's projections from outside its transformers"
            )
        if self.pumping:
            waiter = _new_future(_get_running_loop())
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        closing = self.closing
        if closing is not None and not closing.done():
            await asyncio.shield(closing)

    def end_step(self) -> None:
        """A step is over: let the waiting consumers (and abort) go on."""
        task = self.pump_task
        self.pumping = False
        self.pump_task = None
        waiters = self.waiters
        if waiters:
            self.waiters = []
            self.yield_next = True
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self.readers and self.wake_readers(self.exhausted) and not self.exhausted:
            self.passer = task  # (it lets them pump on: see ``step``)
        settled = self.settled
        if settled is not None and not settled.done():
            settled.set_result(None)

    def wake_readers(self, everyone: bool) -> bool:
        """Wake the waiting readers that have data (``everyone``: all of them);
        if some still wait, schedule a hand-off of the pump to them.  Returns
        whether it woke one."""
        keep = []
        woke = False
        for entry in self.readers:
            waiter, reader = entry
            if waiter.done():
                continue
            if everyone or reader._cursor.pending or reader._log.closed:
                waiter.set_result(None)
                woke = True
            else:
                keep.append(entry)
        self.readers = keep
        if woke:
            self.yield_next = True
            self.wakes += 1
        if keep:
            self.schedule_handoff()
        return woke

    def schedule_handoff(self) -> None:
        """Make sure a waiting reader takes the pump over if nobody pumps
        before the loop's next turn (``_handoff``)."""
        if self.handoff is None and self.loop is not None:
            self.handoff_wakes = self.wakes
            self.handoff = self.loop.call_soon(self._handoff)

    def _handoff(self) -> None:
        """The pumping task stopped pumping: a waiting reader takes over
        (after the readers a step woke since it was scheduled have run:
        they pump on when they ask for more)."""
        self.handoff = None
        if self.pumping or not self.readers:
            return
        if self.wakes != self.handoff_wakes:
            self.schedule_handoff()
            return
        self.wake_readers(True)

    async def after_cancel(self, exc: BaseException, pulling: bool) -> bool:
        """The task driving the pump was cancelled during a step."""
        if self.aborting:
            # abort() cancelled the pull on purpose: the run just stops
            uncancel = getattr(_current_task(), "uncancel", None)
            if uncancel is not None:
                uncancel()
            self.exhausted = True
            return False
        if pulling:
            # Cancelled after the pull began: the graph received the
            # cancellation, so end the run with a clear error rather than
            # truncate it silently.  (A cancel while waiting for room or for
            # the event loop loses nothing.)
            await self.end(RuntimeError(
                "the run was cancelled: the task driving its pump was "
                "cancelled while the graph was producing or dispatching a part"
            ))
        raise exc

    async def after_error(self, exc: BaseException) -> bool:
        """A step raised: end the run with ``exc`` (re-raised unless an Exception)."""
        await self.end(exc)
        if not isinstance(exc, Exception):
            raise exc
        return False

    def _pumped_by_reader_of(self, channel: Any) -> bool:
        """Whether the task pumping is an async reader of ``channel`` that has
        items to read (given since it began the step with none)."""
        task = self.pump_task
        if task is None:
            return False
        for ref in self.mux._shared.bp.readers:
            reader = ref()
            if (reader is not None and reader._task is task
                    and reader._channel is channel and reader._cursor.pending):
                return True
        return False

    def _holding_full(self, channel: Any) -> List[Any]:
        """The async readers of ``channel`` that hold it full (``maxlen``
        items unread)."""
        limit = channel._limit
        holding = []
        for ref in self.mux._shared.bp.readers:
            reader = ref()
            if reader is None or reader._channel is not channel:
                continue
            cursor = reader._cursor
            if not cursor.closed and cursor.pending >= limit:
                holding.append(reader)
        return holding

    def _read_by_waiting_tasks(self, channel: Any) -> bool:
        """Whether every reader of ``channel`` holding it full belongs to a
        task that waits for this run to take a step, not for a read of
        ``channel`` (``_waits_for_a_step``)."""
        found = False
        for reader in self._holding_full(channel):
            if not self._waits_for_a_step(reader._task, 0):
                return False
            found = True
        return found

    def _waits_for_a_step(self, task: Any, depth: int) -> bool:
        """Whether ``task`` can only go on once this run takes a step: it is
        the task pumping (its step is what waits for room), it awaits one of
        this pump's waiters (``wait_step``, ``wait_finished``) for nothing it
        could read now, or what it awaits can only be resolved by such tasks
        (``_settled_by_a_step``).  A task waiting on anything else (a sleep,
        I/O, an event) may come back on its own: False."""
        if task is None or depth > 16:
            return False
        if task is self.pump_task:
            return True  # (the step it takes waits for room: this very wait)
        # (what the task awaits: ``_fut_waiter`` of asyncio's tasks, C and
        # Python alike)
        awaited = getattr(task, "_fut_waiter", None)
        if awaited is None:
            return False
        for waiter in self.waiters:  # (any step: output(), a model call's text)
            if waiter is awaited:
                return True
        for waiter, reader in self.readers:  # (its reader's next item)
            if waiter is awaited:
                return not (reader._cursor.pending or reader._log.closed)
        return self._settled_by_a_step(awaited, depth + 1)

    def _settled_by_a_step(self, fut: Any, depth: int) -> bool:
        """Whether the future ``fut`` can only be resolved once this run
        takes a step: it is a task that waits for one (``_waits_for_a_step``),
        or a ``gather``, a task group's exit (asyncio's or anyio's), an
        ``asyncio.wait_for`` (before 3.12), an ``asyncio.wait``, an
        ``asyncio.as_completed`` or an ``asyncio.shield``, each of whose
        pending tasks or futures is so (``_resolved_by``)."""
        if isinstance(fut, asyncio.Task):
            return self._waits_for_a_step(fut, depth)
        if depth > 16:
            return False
        children = getattr(fut, "_children", None)  # (a ``gather``)
        if type(children) is not list:
            children = self._resolved_by(fut)
            if children is None:
                return False
        pending = [child for child in children if not child.done()]
        return bool(pending) and all(
            self._settled_by_a_step(child, depth + 1) for child in pending)

    def _resolved_by(self, awaited: Any) -> Optional[List[Any]]:
        """The tasks or futures whose completion resolves the plain future
        ``awaited``, when it is a task group's exit (asyncio's or anyio's:
        all of the group's tasks), an ``asyncio.wait_for`` before 3.12 (the
        task it wraps), an ``asyncio.wait`` (its tasks, when all of them are
        found), the next item of an ``asyncio.as_completed`` (the tasks not
        done yet) or an ``asyncio.shield`` (what it shields); else None.

        Each resolves its future from a done callback of what it waits for,
        which only those refer to.  They are looked for among the tasks
        waiting for this run (the readers', and those awaiting the pump's
        waiters) and what waits for those (a task awaiting one, a ``gather``
        or a ``shield`` of one), as ``awaited`` must wait on one of them to
        wait for a step.
        """
        seen = set()
        candidates: List[Any] = []

        def add(fut: Any) -> None:
            if id(fut) not in seen and len(candidates) < _CANDIDATES_MAX:
                seen.add(id(fut))
                candidates.append(fut)

        for ref in self.mux._shared.bp.readers:
            reader = ref()
            task = reader._task if reader is not None else None
            if task is not None:
                add(task)
        for waiter in (*self.waiters, *[waiter for waiter, _reader in self.readers]):
            for callback in _done_callbacks(waiter):
                task = getattr(callback, "__self__", None)  # (a task's wake-up)
                if isinstance(task, asyncio.Task):
                    add(task)
        waited: List[Any] = []  # (the tasks of an ``asyncio.wait``)
        pending = -1
        i = 0
        while i < len(candidates):
            fut = candidates[i]
            i += 1
            for callback in _done_callbacks(fut):
                if (type(callback) is partial and callback.args
                        and callback.args[0] is awaited):  # (wait_for's release)
                    return [fut]
                owner = getattr(callback, "__self__", None)
                if isinstance(owner, asyncio.Task):  # (a task awaiting ``fut``)
                    add(owner)
                    continue
                cells = _closure_of(callback)
                # a task group's (asyncio's: a bound method; anyio's: a
                # closure over the group): its exit awaits ``_on_completed_fut``
                # until its ``_tasks`` are done
                for group in (owner, cells.get("self")):
                    if group is not None and getattr(group, "_on_completed_fut", None) is awaited:
                        members = getattr(group, "_tasks", None)
                        return list(members) if members else None
                # wait's ``_on_completion``: its waiter, and how many are left
                if cells.get("waiter") is awaited and type(cells.get("counter")) is int:
                    waited.append(fut)
                    pending = cells["counter"]
                    continue
                # as_completed's: the next item waits on its queue until
                # one of the futures not done yet is (3.13: a bound method of
                # its iterator)
                todo, done = cells.get("todo"), cells.get("done")
                if done is None and owner is not None:
                    todo, done = getattr(owner, "_todo", None), getattr(owner, "_done", None)
                getters = getattr(done, "_getters", None)
                if isinstance(todo, set) and getters is not None:
                    if any(getter is awaited for getter in getters):
                        return list(todo)
                    continue
                outer = cells.get("outer")
                if outer is None:
                    continue
                if outer is awaited and getattr(callback, "__name__", "") == "_inner_done_callback":
                    return [fut]  # (shield's: it resolves its outer future)
                add(outer)  # (what waits on ``fut``: a gather, or a shield)
        return waited if waited and len(waited) == pending else None

    def _holders(self, channel: Any) -> str:
        """The readers holding ``channel`` full, for the stall warning: the
        task each read from last and what that task waits on."""
        found = [_describe_task(reader._task) for reader in self._holding_full(channel)]
        if not found:
            return ""
        return " It is held full by a reader in " + "; and one in ".join(found) + "."

    async def wait_for_room(self) -> None:
        """Backpressure: wait until every subscribed bounded log has room."""
        bp = self.mux._shared.bp
        full = bp.full()
        if full is None:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        warned = False
        collected = False
        while full is not None and not self.exhausted:
            if bp.release_stuck():
                # a reader that can no longer read held it full: it let go
                full = bp.full()
                continue
            if self._pumped_by_reader_of(full[1]):
                # The task pumping is the reader of the full log: it began
                # this step with nothing to read, and scheduled work has
                # filled its log since.  It reads once this step is over
                # (one more step's events, as the bound allows); waiting here
                # would wait for itself.
                return
            if self._read_by_waiting_tasks(full[1]):
                # Its readers' tasks wait for this run themselves, for
                # something else than their item there (a handle's values or
                # a model call's text read inside the loop over ``subgraphs``
                # or ``messages``, directly or through a gather, a task
                # group, wait, wait_for, as_completed or shield;
                # ``output()``): they come back to
                # read only once the run moves on, so the log holds more than
                # its bound meanwhile instead of the run stalling.
                return
            if self.waiters:
                # Readers parked until this step ends may have been given
                # items since (by scheduled work) in the very log that is
                # full: let them read now, or they and the pump wait on each
                # other.  (One with nothing to read parks again.)
                waiters = self.waiters
                self.waiters = []
                for parked in waiters:
                    if not parked.done():
                        parked.set_result(None)
            if self.readers:
                self.wake_readers(False)  # (the readers parked with items)
            waiter = loop.create_future()
            bp.waiter = waiter
            timer = loop.call_later(0.05, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if bp.waiter is waiter:
                    bp.waiter = None
            elapsed = loop.time() - start
            if not collected and elapsed > 0.5:
                # an abandoned reader only lets go once it is collected
                # (immediately on CPython, at the next collection on PyPy)
                collected = True
                gc.collect()
            run = self.run()
            after = run.stall_warning_after if run is not None else 5.0
            if not warned and elapsed >= after:
                warned = True
                _logger.warning(
                    "langstream: the pump has waited %.1f s for room in projection %r "
                    "(maxlen=%s): is a subscriber not reading it?%s",
                    elapsed, full[0], full[1]._limit, self._holders(full[1]),
                )
            full = bp.full()

    async def finish(self) -> bool:
        """The graph is exhausted: flush, then close the mux; returns False."""
        self.exhausted = True
        self.graph_aiter = None
        mux = self.mux
        try:
            while mux._shared.deferred:
                await mux._aflush_deferred()
            await mux.aclose()
        except Exception as exc:  # noqa: BLE001 - fail the logs with it
            await mux.afail(exc)
            mux._finish_channels(exc)
        return False

    async def end(self, exc: BaseException) -> None:
        """End the run with ``exc`` and close the graph iterator."""
        exc = _run_error(exc)
        self.exhausted = True
        graph_aiter = self.graph_aiter
        self.graph_aiter = None
        self.mux._shared.deferred.clear()
        self.mux._shared.ahead = None
        try:
            await self.mux.afail(exc)
        finally:
            if graph_aiter is not None:
                await _close_async_iter(graph_aiter)

    async def abort(self) -> None:
        """See ``AsyncGraphRunStream.abort``."""
        if self.aborted:
            closing = self.closing
            if closing is not None and not closing.done():
                await asyncio.shield(closing)
            return
        self.aborted = True
        self.aborting = True
        self.exhausted = True
        closing = self.closing = asyncio.get_running_loop().create_future()
        self.closer = _current_task()
        try:
            await self.teardown()
        finally:
            self.closing = None
            self.closer = None
            if not closing.done():
                closing.set_result(None)

    async def teardown(self) -> None:
        """The body of ``abort``."""
        graph_aiter = self.graph_aiter
        self.graph_aiter = None
        task = self.pump_task
        if self.pumping and task is not None and task is not asyncio.current_task():
            self.settled = asyncio.get_running_loop().create_future()
            task.cancel()
            await asyncio.shield(self.settled)
        if graph_aiter is not None:
            await _close_async_iter(graph_aiter)
        mux = self.mux
        if mux._assign_seq:
            # the root run drops postponed forwards; a subgraph handle leaves
            # its siblings' first events alone (as on the sync lane)
            mux._shared.deferred.clear()
            mux._shared.ahead = None
        try:
            await mux.aclose()
        except Exception:  # noqa: BLE001 - the run is being abandoned
            _logger.debug("closing the mux during abort raised", exc_info=True)
            mux._finish_channels(None)
        waiters = self.waiters
        self.waiters = []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.readers:
            self.wake_readers(True)
        mux._shared.bp.wake()


class AsyncGraphRunStream(_RunState):
    """An async run: ``async for`` over any projection, or the run, drives it.

    Concurrent consumers share one single-flight pump: at most one task
    advances the graph iterator, and a consumer whose data arrives through
    another task's step wakes at once.  With a ``maxlen``, the pump waits
    before each pull until every subscribed bounded log has room
    (backpressure), so no reader ever lags; a pump stalled on one log for
    ``stall_warning_after`` seconds logs a warning naming it.

    ``await run.output()`` / ``interrupted()`` / ``interrupts()`` drive the run
    to its end; ``await run.abort()`` (or leaving ``async with``) cancels an
    in-flight pull so the cancellation reaches the graph.  A run belongs to
    the event loop that first pumps it.
    """

    values: StreamChannel[Dict[str, Any]]
    lifecycle: StreamChannel[LifecyclePayload]
    subgraphs: StreamChannel[AsyncSubgraphRunStream]
    messages: StreamChannel[Any]  # langchain-core AsyncChatModelStream per model call
    updates: StreamChannel[Dict[str, Any]]
    custom: StreamChannel[Any]
    checkpoints: StreamChannel[Dict[str, Any]]
    debug: StreamChannel[Dict[str, Any]]
    tasks: StreamChannel[Dict[str, Any]]

    _stall_warning_after: float = 5.0

    @property
    def stall_warning_after(self) -> float:
        """Seconds the pump may wait on one full log before it logs a warning
        (default 5; a finite number > 0, else ``ValueError``)."""
        return self._stall_warning_after

    @stall_warning_after.setter
    def stall_warning_after(self, value: float) -> None:
        self._stall_warning_after = _check_stall(value)

    def __init__(
        self,
        graph_aiter: Optional[AsyncIterator[Any]],
        mux: StreamMux,
        *,
        wire_pump: bool = True,
    ) -> None:
        self._pump = _AsyncPump(self, mux, graph_aiter)
        self._init_state(mux)
        if wire_pump:
            # the pump's own step (no extra frame through the method below)
            self._apump_next = self._pump.step  # type: ignore[method-assign]
            mux.bind_apump(self._apump_next)

    # the pump's state, under the names LangGraph's run stream uses
    @property
    def _exhausted(self) -> bool:
        return self._pump.exhausted

    @_exhausted.setter
    def _exhausted(self, value: bool) -> None:
        self._pump.exhausted = value

    @property
    def _pumping(self) -> bool:
        return self._pump.pumping

    @property
    def _graph_aiter(self) -> Optional[AsyncIterator[Any]]:
        return self._pump.graph_aiter

    async def _apump_next(self) -> bool:
        """Advance the run by one step (see ``_AsyncPump.step``)."""
        return await self._pump.step()

    async def _adrive(self) -> None:
        pump = self._apump_next
        while await pump():
            pass

    # ------------------------------------------------------------- lifecycle

    async def abort(self) -> None:
        """Stop the run: cancel an in-flight pull, close the graph iterator and the mux.

        The cancellation reaches the graph's awaiting code (its ``finally``
        blocks run); consumers see the projections end.  Idempotent.
        """
        await self._pump.abort()

    async def __aenter__(self) -> AsyncGraphRunStream:
        return self

    def __await__(self) -> Generator[Any, None, AsyncGraphRunStream]:
        """``await run`` is the run itself, so LangGraph's
        ``async with await graph.astream_events(...)`` pattern works too."""
        return self
        yield  # pragma: no cover - makes this a generator

    async def __aexit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.abort()

    # --------------------------------------------------------------- results

    async def output(self) -> Optional[Dict[str, Any]]:
        """Drive the run to its end and return the last snapshot (re-raises its error)."""
        await self._adrive()
        self._raise_if_failed()
        return self._latest

    async def interrupted(self) -> bool:
        """Drive the run to its end; ``True`` if a snapshot carried interrupts."""
        await self._adrive()
        self._raise_if_failed()
        return self._interrupted

    async def interrupts(self) -> List[Any]:
        """Drive the run to its end and return every interrupt payload."""
        await self._adrive()
        self._raise_if_failed()
        return self._interrupts

    def __aiter__(self) -> AsyncIterator[ProtocolEvent]:
        """Subscribe to the raw main log (single subscriber)."""
        return self._mux._events.__aiter__()


def _resolve(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# ------------------------------------------------------------- subgraph handles


class _SubgraphInfo:
    path: Tuple[str, ...]
    graph_name: Optional[str]
    trigger_call_id: Optional[str]
    status: SubgraphStatus
    error: Optional[str]
    _seen_terminal: bool

    def _init_info(self, path: Sequence[str], graph_name: Optional[str],
                   trigger_call_id: Optional[str]) -> None:
        self.path = tuple(path)
        self.graph_name = graph_name
        self.trigger_call_id = trigger_call_id
        self.status = "started"
        self.error = None
        self._seen_terminal = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} path={self.path!r} graph_name={self.graph_name!r} "
            f"status={self.status!r}>"
        )


class SubgraphRunStream(_SubgraphInfo, GraphRunStream):
    """Sync handle of a subgraph: a run stream scoped to its namespace.

    ``path``, ``graph_name``, ``trigger_call_id``, ``status`` (a
    ``SubgraphStatus``) and ``error`` (the error text when it failed).
    Iterating its projections drives the root run.
    """

    def __init__(
        self,
        mux: StreamMux,
        *,
        path: Tuple[str, ...],
        graph_name: Optional[str] = None,
        trigger_call_id: Optional[str] = None,
    ) -> None:
        self._parent_pump_fn: Optional[Callable[[], bool]] = mux._pump_fn
        GraphRunStream.__init__(self, None, mux, wire_pump=False)
        self._init_info(path, graph_name, trigger_call_id)

    def _pump_next(self) -> bool:
        if (
            self._exhausted
            or self._seen_terminal
            or self._mux._events._log.closed
            or self._parent_pump_fn is None
        ):
            return False
        return self._parent_pump_fn()


class AsyncSubgraphRunStream(_SubgraphInfo, AsyncGraphRunStream):
    """Async handle of a subgraph (see ``SubgraphRunStream``)."""

    def __init__(
        self,
        mux: StreamMux,
        *,
        path: Tuple[str, ...],
        graph_name: Optional[str] = None,
        trigger_call_id: Optional[str] = None,
    ) -> None:
        self._parent_apump_fn: Optional[Callable[[], Awaitable[bool]]] = mux._apump_fn
        AsyncGraphRunStream.__init__(self, None, mux, wire_pump=False)
        self._init_info(path, graph_name, trigger_call_id)

    async def _apump_next(self) -> bool:
        if (
            self._exhausted
            or self._seen_terminal
            or self._mux._events._log.closed
            or self._parent_apump_fn is None
        ):
            return False
        return await self._parent_apump_fn()


_set_handle_types(SubgraphRunStream, AsyncSubgraphRunStream)


# ------------------------------------------------------------------ entry points


def _factories(transformers: Iterable[Any]) -> List[Callable[[Tuple[str, ...]], Any]]:
    if transformers is None:
        return []
    if isinstance(transformers, (str, bytes)) or not isinstance(transformers, Iterable):
        raise TypeError(
            f"transformers must be a sequence of factories, got {transformers!r}"
        )
    out = []
    for spec in transformers:
        if isinstance(spec, StreamTransformer):
            raise TypeError(
                "transformers must be scope-aware factories (a transformer class or "
                f"`lambda scope: {type(spec).__name__}(scope, ...)`), got a pre-built "
                f"instance of {type(spec).__name__}"
            )
        if not callable(spec):
            raise TypeError(f"transformers must be callables factory(scope), got {spec!r}")
        out.append(spec)
    return out


DEFAULT_FACTORIES: Tuple[Callable[[Tuple[str, ...]], Any], ...] = (
    ValuesTransformer,
    *default_message_factories(),  # MessagesTransformer, with langchain-core
    LifecycleTransformer,
    SubgraphTransformer,
)
"""The default pipeline of ``stream_events`` / ``astream_events``: values,
messages (when langchain-core is importable), lifecycle, subgraphs."""


def stream_events(
    parts: Iterable[StreamPart],
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Sequence[str] = (),
    maxlen: Optional[int] = None,
) -> GraphRunStream:
    """Stream any iterable of v2 stream parts through the default pipeline.

    Args:
        parts: stream parts (``{"type", "ns", "data"}``), e.g. from
            ``graph.stream(..., subgraphs=True, version="v2")``.
        transformers: extra transformer factories (classes or
            ``lambda scope: T(scope, ...)``), registered after the built-ins
            (``values``, ``lifecycle``, ``subgraphs``).
        scope: the namespace the run owns (``()`` for a root run).
        maxlen: bound for the main log and every projection (see
            ``StreamMux``).

    Returns:
        A ``GraphRunStream``; nothing is pulled until it is iterated.
    """
    try:
        graph_iter = iter(parts)
    except TypeError:
        raise TypeError(f"parts must be an iterable of stream parts, got {parts!r}") from None
    mux = StreamMux(
        factories=[*DEFAULT_FACTORIES, *_factories(transformers)],
        scope=_check_scope(scope),
        maxlen=maxlen,
    )
    return GraphRunStream(graph_iter, mux)


class _AsyncOverSync:
    """A plain iterable of parts as the async iterator the async pump pulls.

    A class, not an async generator: one that is never started (a run
    refused before it pulls) must not warn, and a compiled async generator
    would ("coroutine was never awaited").  ``aclose`` closes the iterable's
    iterator (a generator's ``finally`` runs when the run is aborted).
    """

    __slots__ = ("_it",)

    def __init__(self, parts: Iterable[Any]) -> None:
        self._it: Optional[Iterator[Any]] = iter(parts)

    def __aiter__(self) -> _AsyncOverSync:
        return self

    async def __anext__(self) -> Any:
        it = self._it
        if it is None:
            raise StopAsyncIteration
        try:
            return next(it)
        except StopIteration:
            self._it = None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        it, self._it = self._it, None
        if it is not None:
            close = getattr(it, "close", None)
            if close is not None:
                close()


def astream_events(
    aparts: AsyncIterable[StreamPart] | Iterable[StreamPart],
    *,
    transformers: Sequence[Callable[[Tuple[str, ...]], Any]] = (),
    scope: Sequence[str] = (),
    maxlen: Optional[int] = None,
    stall_warning_after: Optional[float] = None,
) -> AsyncGraphRunStream:
    """Async twin of ``stream_events``: returns the run stream itself (no ``await``).

    Args:
        aparts: an async iterable of stream parts (a plain iterable is
            accepted too).
        transformers, scope, maxlen: as for ``stream_events``; with a
            ``maxlen`` the pump applies backpressure.
        stall_warning_after: seconds before a pump stalled on a full log
            logs a warning (default 5).
    """
    if hasattr(aparts, "__aiter__"):
        graph_aiter = aparts.__aiter__()  # type: ignore[union-attr]
    elif isinstance(aparts, Iterable):
        graph_aiter = _AsyncOverSync(aparts)
    else:
        raise TypeError(f"aparts must be an async iterable of stream parts, got {aparts!r}")
    if stall_warning_after is not None:
        stall_warning_after = _check_stall(stall_warning_after)
    mux = StreamMux(
        factories=[*DEFAULT_FACTORIES, *_factories(transformers)],
        scope=_check_scope(scope),
        maxlen=maxlen,
        is_async=True,
    )
    run = AsyncGraphRunStream(graph_aiter, mux)
    if stall_warning_after is not None:
        run.stall_warning_after = stall_warning_after
    return run
