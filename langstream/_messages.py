"""Token streaming: ``run.messages``, one langchain-core stream per model call.

A graph run with LangGraph's v2 message switch on (the LangGraph adapter
sets it, as ``stream_events(version="v3")`` does) emits ``messages`` parts
whose data is ``(payload, metadata)``: ``payload`` is a message protocol
event (``message-start``, ``content-block-start``, ``content-block-delta``,
``content-block-finish``, ``message-finish``, ``error``) and
``metadata["run_id"]`` names the model call it belongs to.

``MessagesTransformer`` turns these into langchain-core ``ChatModelStream``
objects (``AsyncChatModelStream`` on the async lane): one per model call,
pushed to ``run.messages`` at the call's first event, fed every later event
of that call, finished by its ``message-finish``.  It only looks at events
of its own scope, so each subgraph handle has its own ``messages``.

``AllMessagesTransformer`` is the opt-in companion for consumers that want
every model call at any depth below the run's scope, from the root:
``run.all_messages`` (each stream's ``namespace`` says where the call ran).

langchain-core is imported lazily, at the first message event: importing
``langstream`` (or running a graph that calls no model) never imports it, and
the core keeps no runtime dependency.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from langstream.channel import StreamChannel
from langstream.protocol import _scope_list_of
from langstream.transformers import _BUILTIN_EXACT, StreamTransformer

__all__ = [
    "AllMessagesTransformer",
    "MessagesTransformer",
    "langchain_core_available",
]

_EXTRA_HINT = (
    "token streaming needs langchain-core: install the 'langgraph' extra "
    "(pip install -e '.[langgraph]' in a checkout)"
)

_available: Optional[bool] = None


def langchain_core_available() -> bool:
    """True when langchain-core can be imported (checked without importing it)."""
    global _available
    if _available is None:
        try:
            _available = importlib.util.find_spec("langchain_core") is not None
        except (ImportError, ValueError):  # pragma: no cover - broken install
            _available = False
    return _available


class _LangChain:
    """The langchain-core names the transformers use, imported on first need."""

    loaded = False
    ChatModelStream: Any = None
    AsyncChatModelStream: Any = None
    AIMessageChunk: Any = None
    BaseMessage: Any = None
    ToolMessage: Any = None
    message_to_events: Any = None

    @classmethod
    def load(cls) -> None:
        if cls.loaded:
            return
        try:
            from langchain_core.language_models import chat_model_stream
            from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
        except ImportError as exc:
            raise ImportError(f"{_EXTRA_HINT}; importing it failed: {exc}") from exc
        try:  # a private helper of langchain-core: replays a whole message
            from langchain_core.language_models._compat_bridge import message_to_events
        except ImportError:  # pragma: no cover - older langchain-core
            message_to_events = None
        cls.ChatModelStream = chat_model_stream.ChatModelStream
        cls.AsyncChatModelStream = chat_model_stream.AsyncChatModelStream
        cls.AIMessageChunk = AIMessageChunk
        cls.BaseMessage = BaseMessage
        cls.ToolMessage = ToolMessage
        cls.message_to_events = message_to_events
        cls.loaded = True


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(value).__name__} {text}"


def _pair(data: Any) -> Any:
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data
    raise TypeError(
        "a 'messages' event's data must be a (payload, metadata) pair, "
        f"got {_describe(data)}"
    )


def _metadata(metadata: Any) -> Any:
    if metadata is None:
        return {}
    if type(metadata) is dict or isinstance(metadata, Mapping):  # (the ABC test is slow)
        return metadata
    raise TypeError(
        "a 'messages' event's metadata (data[1]) must be a mapping, "
        f"got {_describe(metadata)}"
    )


class MessagesTransformer(StreamTransformer):
    """``run.messages``: one langchain-core chat-model stream per model call.

    Each item is a ``ChatModelStream`` (sync run) or ``AsyncChatModelStream``
    (async run) with typed projections: ``msg.text`` (iterate the text
    deltas; ``str(msg.text)`` / ``await msg.text`` for the whole text),
    ``msg.reasoning``, ``msg.tool_calls``, ``msg.output`` (the assembled
    ``AIMessage``, usage included).  Reading any of them drives the run.

    The stream is pushed at the call's first event (``message-start``), fed
    every later event of the call and finished by its ``message-finish``; a
    node that returns a whole ``AIMessage`` gets an already-finished stream.
    Tool results (``role == "tool"``) and v1 ``AIMessageChunk`` payloads
    are not projected.  When the run fails, every stream still open fails
    with the run's error; when it ends while a call is still open, that
    stream fails with a ``RuntimeError`` (nobody waits forever).

    Only events of the transformer's own scope are projected (a subgraph's
    calls are on its handle's ``messages``); see ``AllMessagesTransformer``
    for every depth at once.

    Raises:
        ImportError: langchain-core is not installed (the ``langgraph``
            extra).
    """

    _plain_instances = True

    _native = True
    required_stream_modes = ("messages",)
    _key = "messages"

    def __init__(self, scope: Tuple[str, ...] = ()) -> None:
        if type(self) in _BUILTIN_EXACT:  # (see there)
            StreamTransformer.__init__(self, scope)
        else:
            super().__init__(scope)
        if not langchain_core_available():
            raise ImportError(f"{type(self).__name__}: {_EXTRA_HINT}")
        self._log: StreamChannel[Any] = StreamChannel()
        self._scope_list: List[str] = _scope_list_of(self.scope)
        self._depth = len(self.scope)
        self._is_async: Optional[bool] = None
        self._pump_fn: Optional[Callable[[], bool]] = None
        self._apump_fn: Optional[Callable[[], Any]] = None
        # model call (its metadata's run_id as a str, "" without one) -> its open stream
        self._by_run: Dict[Any, Any] = {}
        # model calls not projected (tool messages) until their finish
        self._ignored: Set[Any] = set()

    def init(self) -> Dict[str, Any]:
        return {self._key: self._log}

    def _on_register(self, mux: Any) -> None:
        self._is_async = bool(mux.is_async)

    def _let_go(self) -> None:
        """Its mux has ended: no stream is made any more (the pump would tie
        the mux in a cycle); the streams made keep theirs."""
        self._pump_fn = self._apump_fn = None

    def _bind_pump(self, fn: Callable[[], bool]) -> None:
        self._pump_fn = fn
        for stream in self._by_run.values():
            if not self._is_async:
                stream.set_request_more(fn)

    def _bind_apump(self, fn: Callable[[], Any]) -> None:
        self._apump_fn = fn
        for stream in self._by_run.values():
            if self._is_async:
                stream.set_arequest_more(fn)

    @classmethod
    def _route(cls, method: str, at_scope: bool) -> bool:
        return at_scope and method == "messages"

    # ------------------------------------------------------------ streams

    def _wants(self, ns: List[str]) -> bool:
        return ns == self._scope_list

    def _stream_namespace(self, ns: List[str]) -> List[str]:
        # like LangGraph: a stream of the run's own scope says []
        return []

    def _new_stream(self, ns: List[str], node: Optional[str], message_id: Optional[str]) -> Any:
        is_async = self._is_async
        if is_async is None:  # not registered on a mux (driven by hand)
            is_async = self._apump_fn is not None or self._pump_fn is None
        if is_async:
            stream = _LangChain.AsyncChatModelStream(
                namespace=self._stream_namespace(ns), node=node, message_id=message_id
            )
            if self._apump_fn is not None:
                stream.set_arequest_more(self._apump_fn)
        else:
            stream = _LangChain.ChatModelStream(
                namespace=self._stream_namespace(ns), node=node, message_id=message_id
            )
            if self._pump_fn is not None:
                stream.set_request_more(self._pump_fn)
        return stream

    def process(self, event: Any) -> bool:
        if event["method"] != "messages":
            return True
        params = event["params"]
        ns = params["namespace"]
        if not self._wants(ns):
            return True
        data = params["data"]
        if type(data) is not tuple or len(data) != 2:
            data = _pair(data)
        payload, metadata = data
        if type(metadata) is not dict:
            metadata = _metadata(metadata)
        # (the call's key as LangGraph makes it: the run_id as a str, "" when
        # there is none; a str, the common case, costs one type check)
        run_id = metadata.get("run_id", "")
        if type(run_id) is not str:
            run_id = str(run_id)
        if type(payload) is dict or isinstance(payload, Mapping):
            if "event" not in payload:
                return True
            # the hot path: a token of a call already open (while a tool
            # message holds the same key, its events go nowhere, as the
            # general path below decides)
            stream = self._by_run.get(run_id)
            if (stream is not None and payload.get("event") == "content-block-delta"
                    and not (self._ignored and run_id in self._ignored)):
                stream.dispatch(payload)
                return True
            if not _LangChain.loaded:  # the first model event of the process
                _LangChain.load()
            self._on_protocol_event(payload, run_id, ns, metadata.get("langgraph_node"))
            return True
        if not _LangChain.loaded:
            _LangChain.load()
        if (
            isinstance(payload, _LangChain.BaseMessage)
            and not isinstance(payload, _LangChain.AIMessageChunk)
            and not isinstance(payload, _LangChain.ToolMessage)
        ):
            self._on_whole_message(payload, ns, metadata.get("langgraph_node"))
        return True

    def _on_protocol_event(self, payload: Mapping[str, Any], run_key: Any,
                           ns: List[str], node: Optional[str]) -> None:
        kind = payload.get("event")
        if kind == "message-start":
            if payload.get("role") == "tool":
                self._ignored.add(run_key)
                return
            message_id = payload.get("message_id")
            stream = self._new_stream(
                ns, node, None if message_id is None else str(message_id)
            )
            previous = self._by_run.pop(run_key, None)
            if previous is not None and not previous.done:
                previous.fail(RuntimeError(
                    f"model call {run_key!r} started a new message before "
                    "finishing this one"
                ))
            self._by_run[run_key] = stream
            self._log.push(stream)
            stream.dispatch(payload)
            return
        if run_key in self._ignored:
            if kind == "message-finish":
                self._ignored.discard(run_key)
            return
        stream = self._by_run.get(run_key)
        if stream is None:
            return
        # (after an ``error`` event the call keeps its key, as under
        # LangGraph: its later events still reach the failed stream, and a
        # run that fails fails it again, with the run's error)
        if kind == "message-finish":
            del self._by_run[run_key]
        stream.dispatch(payload)

    def _on_whole_message(self, message: Any, ns: List[str], node: Optional[str]) -> None:
        replay = _LangChain.message_to_events
        if replay is None:  # pragma: no cover - older langchain-core
            return
        stream = self._new_stream(ns, node, message.id)
        for item in replay(message, message_id=message.id):
            stream.dispatch(item)
        self._log.push(stream)

    # ------------------------------------------------------------ the end

    def _take_open(self) -> List[Any]:
        streams = list(self._by_run.values())
        self._by_run.clear()
        self._ignored.clear()
        return streams

    def finalize(self) -> None:
        """A call still open when the run ends fails (its readers stop waiting)."""
        for stream in self._take_open():
            if not stream.done:
                stream.fail(RuntimeError(
                    "the run ended before this model call finished "
                    "(no 'message-finish' event arrived)"
                ))

    def fail(self, err: BaseException) -> None:
        """Every stream still open fails with the run's error; so does one
        an ``error`` event failed already (its error becomes the run's, as
        under LangGraph)."""
        for stream in self._take_open():
            stream.fail(err)


class AllMessagesTransformer(MessagesTransformer):
    """``run.all_messages``: every model call at any depth below the scope.

    The same streams as ``MessagesTransformer`` (one per model call, pushed
    at its first event), for the run's own calls and those of every
    subgraph at any depth, in the order the calls start; each stream's
    ``namespace`` is the full namespace of the graph that made the call
    (``[]`` for the root graph, ``["sub:<task id>", "inner:<task id>"]`` two
    levels down).  Not in the default pipeline: register it with
    ``transformers=[AllMessagesTransformer]``.
    """

    _plain_instances = True

    _key = "all_messages"

    @classmethod
    def _route(cls, method: str, at_scope: bool) -> bool:
        return method == "messages"

    def _wants(self, ns: List[str]) -> bool:
        depth = self._depth
        return len(ns) >= depth and (not depth or ns[:depth] == self._scope_list)

    def _stream_namespace(self, ns: List[str]) -> List[str]:
        return list(ns)


_BUILTIN_EXACT.update((MessagesTransformer, AllMessagesTransformer))


def default_message_factories() -> Tuple[Any, ...]:
    """``(MessagesTransformer,)`` when langchain-core is importable, else ``()``."""
    return (MessagesTransformer,) if langchain_core_available() else ()


def missing_messages_hint() -> str:
    """Why ``run.messages`` is missing, for the ``AttributeError``."""
    return _EXTRA_HINT
