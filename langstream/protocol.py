"""Protocol layer: stream parts in, protocol events out.

A *stream part* is what a LangGraph graph yields from
``graph.stream(..., subgraphs=True, version="v2")``: a mapping with
``type`` (the stream mode), ``ns`` (the namespace, a sequence of
``"name:task_id"`` segments) and ``data``; ``values`` parts also carry
``interrupts``.  A *protocol event* is the uniform envelope every
projection and the main event log work with.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Dict, List

if sys.version_info >= (3, 11):  # pragma: no cover - version dependent
    from typing import Literal, NotRequired, TypedDict
else:  # pragma: no cover - version dependent
    from typing_extensions import Literal, NotRequired, TypedDict

__all__ = ["ProtocolEvent", "StreamPart", "convert_to_protocol_event"]


class StreamPart(TypedDict):
    """A v2 stream part as yielded by a graph.

    ``interrupts`` is present on ``values`` parts only.
    """

    type: str
    ns: "tuple[str, ...] | list[str]"
    data: Any
    interrupts: NotRequired["tuple[Any, ...] | list[Any]"]


class _ProtocolEventParams(TypedDict):
    """The ``params`` of a protocol event.

    ``timestamp`` is wall-clock milliseconds since the epoch; it can go
    backwards when the clock is adjusted, so order events by ``seq``.
    """

    namespace: List[str]
    timestamp: int
    data: Any
    interrupts: NotRequired["tuple[Any, ...] | list[Any]"]


class ProtocolEvent(TypedDict):
    """One event of the protocol event log.

    ``seq`` is assigned by the root ``StreamMux`` when the event enters
    its main log (1, 2, 3, ... with no gap); child muxes never renumber.
    """

    type: Literal["event"]
    event_id: NotRequired[str]
    seq: NotRequired[int]
    method: str
    params: _ProtocolEventParams


_time = time.time
_REQUIRED = ("type", "ns", "data")

MAX_NAMESPACE_DEPTH = 128
"""The deepest namespace a stream part may have (segments in ``ns``).

Every level of a namespace is a subgraph with its own mux, and each level's
lifecycle tracks every depth below it, so the cost of a part grows faster
than its depth; a deeper part fails the run with a ``ValueError`` naming
the depth (never a ``RecursionError`` or a stall).  Real graphs nest a few
levels deep."""


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(value).__name__} {text}"


def _malformed(part: Any) -> Exception:
    """Build the exception that names what is wrong with ``part``."""
    if not isinstance(part, Mapping):
        return TypeError(
            "stream part must be a mapping with keys 'type', 'ns' and 'data', "
            f"got {_describe(part)}"
        )
    for key in _REQUIRED:
        if key not in part:
            return ValueError(
                f"stream part is missing the field {key!r}: {_describe(dict(part))}"
            )
    method = part["type"]
    if not isinstance(method, str):
        return TypeError(f"stream part field 'type' must be a str, got {_describe(method)}")
    ns = part["ns"]
    if isinstance(ns, (str, bytes)) or not isinstance(ns, (list, tuple)):
        return TypeError(
            "stream part field 'ns' must be a sequence (tuple or list) of str, "
            f"got {_describe(ns)}"
        )
    for segment in ns:
        if not isinstance(segment, str):
            return TypeError(
                "stream part field 'ns' must contain only str segments, "
                f"got {_describe(segment)} in {_describe(ns)}"
            )
    if len(ns) > MAX_NAMESPACE_DEPTH:
        return ValueError(
            f"stream part field 'ns' is {len(ns)} segments deep; namespaces up to "
            f"{MAX_NAMESPACE_DEPTH} segments deep are supported "
            "(langstream.protocol.MAX_NAMESPACE_DEPTH)"
        )
    if "interrupts" in part:
        interrupts = part["interrupts"]
        if isinstance(interrupts, (str, bytes)) or not isinstance(interrupts, (list, tuple)):
            return TypeError(
                "stream part field 'interrupts' must be a tuple or list, "
                f"got {_describe(interrupts)}"
            )
    return ValueError(f"malformed stream part: {_describe(part)}")  # pragma: no cover


def _as_str(value: str) -> str:
    """A ``str`` subclass (a str-enum member, say) as the plain ``str`` it holds."""
    return value if type(value) is str else str.__str__(value)


def split_part(part: Any) -> "tuple[str, List[str], Any]":
    """Validate a stream part; return ``(method, namespace list, data)``.

    The one validation every path uses (whoever subscribes, either
    backend): ``part`` is a mapping; ``type`` a str; ``ns`` a tuple or list
    of str, at most ``MAX_NAMESPACE_DEPTH`` deep; ``interrupts``, on any
    part that has it, a tuple or list.
    Subclasses are accepted (a str-enum ``type``, a namedtuple ``ns``, str
    subclass segments) and ``type`` / the segments come back as plain str.

    Raises:
        TypeError / ValueError: as ``convert_to_protocol_event``.
    """
    method, namespace, data, _interrupts = _split(part)
    return method, namespace, data


_ABSENT: Any = object()  # (a field the part does not have)


def _split(part: Any) -> "tuple[str, List[str], Any, Any]":
    """``split_part``, and the part's ``interrupts`` (``None`` without): the
    mux reads them once, here, with the rest."""
    if type(part) is not dict and not isinstance(part, Mapping):
        raise _malformed(part)
    try:
        method = part["type"]
        ns = part["ns"]
        data = part["data"]
    except Exception:
        raise _malformed(part) from None
    if type(method) is not str:
        if not isinstance(method, str):
            raise _malformed(part)
        method = _as_str(method)
    ns_type = type(ns)
    if ns_type is not tuple and ns_type is not list and (
        isinstance(ns, (str, bytes)) or not isinstance(ns, (tuple, list))
    ):
        raise _malformed(part)
    # (a dict is asked once; a Mapping of the user's as before: ``in``, then
    # the item)
    if type(part) is dict:
        interrupts = part.get("interrupts", _ABSENT)
    else:
        interrupts = part["interrupts"] if "interrupts" in part else _ABSENT
    if interrupts is _ABSENT:
        interrupts = None
    elif type(interrupts) is not tuple and type(interrupts) is not list and (
        not isinstance(interrupts, (tuple, list))
    ):
        raise _malformed(part)
    if not ns:
        return method, [], data, interrupts
    depth = len(ns)
    if depth > MAX_NAMESPACE_DEPTH:
        raise _malformed(part)
    # (the usual depths without the loop: on PyPy a loop run for every part
    # is compiled apart from the pump and entered through a call each time)
    if depth == 1:
        if type(ns[0]) is str:
            return method, [ns[0]], data, interrupts
    elif depth == 2:
        if type(ns[0]) is str and type(ns[1]) is str:
            return method, [ns[0], ns[1]], data, interrupts
    namespace = list(ns)
    for i, segment in enumerate(namespace):
        if type(segment) is not str:
            if not isinstance(segment, str):
                raise _malformed(part)
            namespace[i] = _as_str(segment)
    return method, namespace, data, interrupts


# the last scope ``_scope_list_of`` was asked for, and the list it gave
_last_scope: Any = ((), [])


def _scope_list_of(scope: Any) -> List[str]:
    """``list(scope)``, shared with the previous caller of an equal scope.

    A mux, its transformers and its run stream are made one after the
    other with the same scope, and each keeps it as a list (an event's
    namespace is a list, compared with it).  Sharing one list per scope
    instead of one per object leaves fewer objects alive per run for the
    collector to walk when many runs are open.  Nobody mutates the list.
    """
    global _last_scope
    last = _last_scope
    if last[0] == scope:
        return last[1]
    shared = list(scope)
    _last_scope = (scope, shared)
    return shared


def _interrupts_of(part: Any) -> Any:
    """A validated part's ``interrupts``, or ``None`` without: a dict is asked
    once, a Mapping of the user's as ``_split`` asks it (``in``, then the
    item), so every reader agrees with the validation."""
    if type(part) is dict:
        return part.get("interrupts")
    return part["interrupts"] if "interrupts" in part else None


def convert_to_protocol_event(part: StreamPart) -> ProtocolEvent:
    """Turn a v2 stream part into a protocol event.

    Args:
        part: A mapping with ``type``, ``ns`` and ``data`` (and
            ``interrupts`` on values parts).

    Returns:
        ``{"type": "event", "method": part["type"], "params": {"namespace":
        list(part["ns"]), "timestamp": <ms>, "data": part["data"]}}``, with
        ``params["interrupts"]`` when the part has ``interrupts``.

    Raises:
        TypeError: ``part`` is not a mapping, or ``type``/``ns``/``interrupts``
            has the wrong type; the message names the field and the value.
            Subclasses of str (``type``, namespace segments) and of
            tuple/list (``ns``, ``interrupts``) are accepted; ``method`` and
            the namespace segments of the event are plain str.
        ValueError: a required field is missing; the message names it.
    """
    method, namespace, data = split_part(part)
    return _build_event(method, namespace, data, part)


def _build_event(method: str, namespace: List[str], data: Any, part: Any) -> ProtocolEvent:
    """The protocol event of a part ``split_part`` has validated (the one
    builder: the compiled dispatcher builds the same dict inline)."""
    params: Dict[str, Any] = {
        "namespace": namespace,
        "timestamp": int(_time() * 1000),
        "data": data,
    }
    interrupts = _interrupts_of(part)  # (validated by split_part: never None there)
    if interrupts is not None:
        params["interrupts"] = interrupts
    return {"type": "event", "method": method, "params": params}  # type: ignore[return-value,typeddict-item]
