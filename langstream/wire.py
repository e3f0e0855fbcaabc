"""Wire format: protocol events to and from versioned JSON (v1).

One protocol event is one compact UTF-8 JSON object::

    {"v": 1, "seq": 7, "method": "values", "ns": ["sub:1"], "ts": 1732590000000,
     "data": {...}}

plus ``"interrupts": [...]`` when the event's ``params`` carry an
``interrupts`` field.  ``dumps`` / ``loads`` round-trip every event a built-in
projection produces: ``loads(dumps(event)) == event``, with the same
container types.

Data that JSON cannot hold as it is gets a *tag*: a JSON object whose key
``"__ls__"`` names the kind.

* ``{"__ls__": "tuple", "v": [...]}``: a tuple (JSON would turn it into a
  list).
* ``{"__ls__": "dict", "v": [[key, value], ...]}``: a dict with a key that is
  not a ``str`` (JSON would turn ``1`` into ``"1"``) or with the key
  ``"__ls__"`` itself.
* ``{"__ls__": "float", "v": "nan" | "inf" | "-inf"}``: a non-finite float
  (not valid JSON).
* ``{"__ls__": "lc", "v": <dumpd>}``: a langchain-core ``Serializable``
  (messages, message chunks, documents, ...) in langchain's own serialised form
  (``langchain_core.load.dumpd``), rebuilt with ``langchain_core.load.load``
  (which only rebuilds langchain's own classes).
* ``{"__ls__": "interrupt", "value": ..., "id": "..."}``: a LangGraph
  ``Interrupt``; rebuilt as ``langgraph.types.Interrupt`` when LangGraph is
  importable, else as the dict ``{"value": ..., "id": ...}``.

Anything else (``bytes``, ``datetime``, arbitrary objects, ...) is refused at
the producer with a ``TypeError`` naming the event's method, its ``seq`` and
the type: never a silent ``str()``.  Strings, ints, bools, ``None``, finite
floats, lists and dicts with ``str`` keys are plain JSON.

``loads`` raises ``ValueError`` saying what is wrong with bad input.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Dict, List, Union

__all__ = ["WIRE_VERSION", "dumps", "encode_value", "decode_value", "loads"]

WIRE_VERSION = 1
"""Version of the wire format written by ``dumps`` (the ``"v"`` field)."""

TAG = "__ls__"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads
_INF = float("inf")


class _Unencodable(TypeError):
    def __init__(self, value: Any) -> None:
        super().__init__(type(value))
        self.value = value


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _is_serializable(value: Any) -> bool:
    for klass in type(value).__mro__:
        if klass.__name__ == "Serializable" and klass.__module__.startswith("langchain_core"):
            return True
    return False


def _is_interrupt(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Interrupt" and cls.__module__.startswith("langgraph")


def _encode_object(value: Any) -> Dict[str, Any]:
    if _is_serializable(value):
        from langchain_core.load import dumpd

        return {TAG: "lc", "v": dumpd(value)}
    if _is_interrupt(value):
        return {TAG: "interrupt", "value": encode_value(value.value), "id": value.id}
    raise _Unencodable(value)


def _float(value: float) -> Any:
    if value != value:
        return {TAG: "float", "v": "nan"}
    if value == _INF:
        return {TAG: "float", "v": "inf"}
    if value == -_INF:
        return {TAG: "float", "v": "-inf"}
    return value


def encode_value(value: Any) -> Any:
    """Return the JSON-ready form of ``value`` (tags applied, see the module doc).

    Raises:
        TypeError: ``value`` holds an object the wire cannot carry.
    """
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is dict:
        for key in value:
            if type(key) is not str or key == TAG:
                return {TAG: "dict", "v": [[encode_value(k), encode_value(v)]
                                          for k, v in value.items()]}
        return {k: encode_value(v) for k, v in value.items()}
    if cls is list:
        return [encode_value(v) for v in value]
    if cls is tuple:
        return {TAG: "tuple", "v": [encode_value(v) for v in value]}
    if cls is float:
        return _float(value)
    # subclasses of the JSON types keep their JSON meaning
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, dict) and not _is_serializable(value):
        return encode_value(dict(value))
    if isinstance(value, tuple) and not _is_serializable(value):
        return {TAG: "tuple", "v": [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    return _encode_object(value)


def _plain(value: Any) -> bool:
    """True when ``value`` is plain JSON already (no tag needed anywhere)."""
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return True
    if cls is dict:
        for key, item in value.items():
            if type(key) is not str or key == TAG:
                return False
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            if not _plain(item):
                return False
        return True
    if cls is list:
        for item in value:
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            if not _plain(item):
                return False
        return True
    if cls is float:
        return value - value == 0.0  # finite
    return False


_EMPTY_TUPLE: Dict[str, Any] = {TAG: "tuple", "v": []}


def dumps(event: Any) -> str:
    """Encode one protocol event (with its ``seq``) as wire JSON.

    Raises:
        TypeError: the event has no int ``seq``, or its data holds an object
            the wire cannot carry (the message names the method, the seq and
            the type).
        ValueError: the event is not a protocol event (names the field).
    """
    try:
        seq = event["seq"]
        method = event["method"]
        params = event["params"]
        namespace = params["namespace"]
        data = params["data"]
        timestamp = params["timestamp"]
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"not a numbered protocol event (missing {exc}): {event!r:.200}"
        ) from None
    if type(seq) is not int:
        raise TypeError(f"event field 'seq' must be an int, got {seq!r}")
    doc: Dict[str, Any] = {"v": WIRE_VERSION, "seq": seq, "method": method,
                           "ns": namespace if type(namespace) is list else list(namespace),
                           "ts": timestamp, "data": data}
    has_interrupts = "interrupts" in params
    if has_interrupts:
        doc["interrupts"] = params["interrupts"]
    try:
        # data and interrupts are tagged independently: LangGraph's values
        # events carry interrupts=() (a tag) beside data that is plain JSON
        if not _plain(data):
            doc["data"] = encode_value(data)
        if has_interrupts:
            interrupts = doc["interrupts"]
            if type(interrupts) is tuple and not interrupts:
                doc["interrupts"] = _EMPTY_TUPLE
            elif not _plain(interrupts):
                doc["interrupts"] = encode_value(interrupts)
        return _dumps(doc)
    except _Unencodable as exc:
        raise TypeError(
            f"cannot put event seq={seq} method={method!r} on the wire: its data "
            f"holds a {_type_name(exc.value)} ({exc.value!r:.80}), which the wire "
            "format cannot carry (JSON types, tuples, langchain-core Serializable "
            "objects and LangGraph Interrupts only)"
        ) from None


# ------------------------------------------------------------------ decoding


def _decode_tag(obj: Dict[str, Any]) -> Any:
    kind = obj[TAG]
    if kind == "tuple":
        return tuple(obj["v"])
    if kind == "dict":
        out = {}
        for pair in obj["v"]:
            key, value = pair
            if isinstance(key, list):  # a list can't be a key; a tuple can
                raise ValueError(f"bad dict tag key {key!r}")
            out[key] = value
        return out
    if kind == "float":
        text = obj["v"]
        if text not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float tag {text!r}")
        return float(text)
    if kind == "lc":
        try:
            from langchain_core.load import load
        except ImportError:
            raise ValueError(
                "the data holds a langchain-core object; install langchain-core "
                "(the 'langgraph' extra) to read it"
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load() is marked beta
            return load(obj["v"], allowed_objects="core")
    if kind == "interrupt":
        try:
            from langgraph.types import Interrupt
        except ImportError:
            return {"value": obj["value"], "id": obj["id"]}
        return Interrupt(value=obj["value"], id=obj["id"])
    raise ValueError(f"unknown wire tag {kind!r}")


def _hook(obj: Dict[str, Any]) -> Any:
    if TAG in obj:
        return _decode_tag(obj)
    return obj


def decode_value(value: Any) -> Any:
    """Inverse of ``encode_value`` for an already-parsed JSON value."""
    return _loads(_dumps(value), object_hook=_hook)


def loads(text: Union[str, bytes, bytearray]) -> Dict[str, Any]:
    """Decode wire JSON into a protocol event (with its ``seq``).

    Raises:
        ValueError: ``text`` is not valid wire JSON: not JSON, not an object,
            another version, a missing or mistyped field, a bad tag (the
            message says which).
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise ValueError(f"wire event must be str or bytes, got {type(text).__name__}")
    try:
        if (b'"__ls__"' if not isinstance(text, str) else '"__ls__"') in text:
            doc = _loads(text, object_hook=_hook)
        else:
            doc = _loads(text)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError, bad tag
        raise ValueError(f"not valid wire JSON: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not valid wire JSON: malformed tag ({exc!r})") from None
    if type(doc) is not dict:
        raise ValueError(f"wire event must be a JSON object, got {type(doc).__name__}")
    version = doc.get("v")
    if version != WIRE_VERSION:
        raise ValueError(
            f"unsupported wire version {version!r} (this langstream reads v{WIRE_VERSION})"
        )
    for field, types in (("seq", int), ("method", str), ("ns", list), ("ts", int)):
        if field not in doc:
            raise ValueError(f"wire event is missing the field {field!r}")
        value = doc[field]
        if type(value) is not types:
            raise ValueError(
                f"wire event field {field!r} must be {types.__name__}, got {value!r:.80}"
            )
    if "data" not in doc:
        raise ValueError("wire event is missing the field 'data'")
    if doc["seq"] < 1:
        raise ValueError(f"wire event field 'seq' must be >= 1, got {doc['seq']}")
    ns: List[Any] = doc["ns"]
    for segment in ns:
        if type(segment) is not str:
            raise ValueError(f"wire event field 'ns' must hold str segments, got {ns!r:.80}")
    params: Dict[str, Any] = {"namespace": ns, "timestamp": doc["ts"], "data": doc["data"]}
    if "interrupts" in doc:
        interrupts = doc["interrupts"]
        if type(interrupts) is not list and type(interrupts) is not tuple:
            raise ValueError(
                f"wire event field 'interrupts' must be a list, got {interrupts!r:.80}"
            )
        params["interrupts"] = interrupts
    return {"type": "event", "seq": doc["seq"], "method": doc["method"], "params": params}

