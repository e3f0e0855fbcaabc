"""The package's Python modules that the build compiles unchanged
(``langstream._compiled``): where each is loaded from, and that an edited
source is never shadowed by an older build.

The unit tests run on every interpreter.  The end-to-end ones run a fresh
interpreter on a copy of this checkout's package and need its compiled
modules: they skip only where none can exist (PyPy, or a build made with
``LANGSTREAM_NO_EXTENSIONS``).
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from langstream import _compiled

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "langstream"


def test_setup_compiles_the_modules_the_loader_knows() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    (listed,) = [
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "PY_COMPILED" for t in node.targets)
    ]
    assert tuple(listed) == _compiled.PY_COMPILED
    for name in listed:
        assert (PACKAGE / f"{name}.py").is_file(), name


def _pxd_attributes(name: str, cls: str) -> list:
    """The attributes ``langstream/<name>.pxd`` declares for class ``cls``."""
    names = []
    inside = False
    for line in (PACKAGE / f"{name}.pxd").read_text().splitlines():
        if line.startswith("cdef class "):
            inside = line == f"cdef class {cls}:"
        elif inside and line.startswith("    cdef "):
            names.append(line.split()[-1])
    return names


# the classes a .pxd makes extension types when their module is compiled
DECLARED = [("run_stream", "_AsyncPump"), ("mux", "_MuxCore"), ("channel", "_ChannelCore")]


@pytest.mark.parametrize("module,cls", DECLARED)
def test_the_pxd_declarations_match_the_slots(module: str, cls: str) -> None:
    """A ``.pxd`` declares every slot of its class (an attribute it left out
    would be an AttributeError on the compiled module only)."""
    import importlib

    klass = getattr(importlib.import_module(f"langstream.{module}"), cls)
    declared = _pxd_attributes(module, cls)
    assert sorted(declared) == sorted(klass.__slots__)
    assert len(set(declared)) == len(declared)


def test_stream_mux_keeps_what_a_subclass_may_redefine() -> None:
    """``StreamMux``'s own slots are what users and the compiled dispatcher
    reach by the ordinary lookup (redefinable in a subclass); its core
    declares none of them."""
    from langstream.mux import StreamMux, _MuxCore

    public = {"_latest", "is_async", "scope", "maxlen", "extensions", "native_keys"}
    assert public | {"__dict__", "__weakref__"} == set(StreamMux.__slots__)
    assert not public & set(_MuxCore.__slots__)
    assert StreamMux.__bases__ == (_MuxCore,)


def test_stream_channel_keeps_its_name_and_an_instance_dict() -> None:
    """``StreamChannel`` stays a plain generic class over its core: ``name``
    (redefinable in a subclass) and the instance dict are its own slots,
    the rest of the state is the core's."""
    from typing import Generic

    from langstream.channel import StreamChannel, _ChannelCore

    assert set(StreamChannel.__slots__) == {"name", "__dict__", "__weakref__"}
    assert "name" not in _ChannelCore.__slots__
    assert StreamChannel.__bases__ == (_ChannelCore, Generic)
    channel = StreamChannel("tokens", maxlen=4)
    channel.note = "mine"  # (an attribute of the user's own)
    assert (channel.name, channel.maxlen, channel.note) == ("tokens", 4, "mine")
    assert StreamChannel[int] is not None  # (still generic)


# ------------------------------------------------------------- stale sources


def _fake_build(folder: Path, source: str = "X = 1\n") -> dict:
    """A folder with ``mux.py``, a (fake) compiled ``mux`` beside it, and the
    record a build would have written for it."""
    (folder / "mux.py").write_text(source)
    compiled = "mux" + importlib.machinery.EXTENSION_SUFFIXES[0]
    (folder / compiled).write_bytes(b"")
    st = os.stat(folder / "mux.py")
    return {compiled: (st.st_size, st.st_mtime_ns, _compiled.source_digest(str(folder / "mux.py")))}


def test_a_source_as_built_is_not_stale(tmp_path: Path) -> None:
    records = _fake_build(tmp_path)
    assert _compiled.stale_modules(str(tmp_path), records, ("mux",)) == ()


def test_an_edited_source_is_stale(tmp_path: Path) -> None:
    records = _fake_build(tmp_path)
    (tmp_path / "mux.py").write_text("X = 2\n")  # same size, new contents
    assert _compiled.stale_modules(str(tmp_path), records, ("mux",)) == ("mux",)


def test_same_contents_with_a_new_time_is_not_stale(tmp_path: Path) -> None:
    # (a reinstall from a wheel writes the same files at a later time)
    records = _fake_build(tmp_path)
    st = os.stat(tmp_path / "mux.py")
    os.utime(tmp_path / "mux.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _compiled.stale_modules(str(tmp_path), records, ("mux",)) == ()


def test_a_compiled_module_the_build_did_not_record_is_stale(tmp_path: Path) -> None:
    records = _fake_build(tmp_path)
    ((compiled, entry),) = records.items()
    assert _compiled.stale_modules(str(tmp_path), None, ("mux",)) == ("mux",)
    assert _compiled.stale_modules(str(tmp_path), {}, ("mux",)) == ("mux",)
    assert _compiled.stale_modules(str(tmp_path), {compiled: "garbage"}, ("mux",)) == ("mux",)
    # another interpreter's entry does not describe this compiled file
    assert _compiled.stale_modules(
        str(tmp_path), {"mux.other-abi.so": entry}, ("mux",)) == ("mux",)


def test_a_module_without_a_compiled_file_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "mux.py").write_text("X = 1\n")
    assert _compiled.stale_modules(str(tmp_path), None, ("mux",)) == ()


def test_the_source_first_finder_picks_the_py_file(tmp_path: Path) -> None:
    _fake_build(tmp_path)
    finder = _compiled._SourceFirst(str(tmp_path), frozenset({"mux"}))
    spec = finder.find_spec("langstream.mux")
    assert spec is not None and spec.origin == str(tmp_path / "mux.py")
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert finder.find_spec("langstream.channel") is None
    assert finder.find_spec("other.mux") is None


# ------------------------------------------------------- in a fresh process

PROBE = r"""
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import langstream
    from langstream import _compiled
    parts = [{"type": "values", "ns": (), "data": {"n": i}, "interrupts": ()} for i in range(3)]
    with langstream.stream_events(parts) as run:
        out = run.output
print(json.dumps({
    "compiled": list(_compiled.compiled_modules()),
    "origins": {n: sys.modules["langstream." + n].__spec__.origin for n in _compiled.PY_COMPILED},
    "output": out,
    "edited": getattr(sys.modules["langstream.mux"], "EDITED_BY_TEST", None),
    "warnings": [str(w.message) for w in caught],
}))
"""


def _has_compiled_modules() -> bool:
    return all(_compiled._compiled_file(str(PACKAGE), n) is not None
               for n in _compiled.PY_COMPILED)


needs_compiled = pytest.mark.skipif(
    not _has_compiled_modules(),
    reason="no compiled modules in this build (PyPy, or built with LANGSTREAM_NO_EXTENSIONS)")


def _probe(root: Path, no_extensions: bool) -> dict:
    env = dict(os.environ)
    env.pop("LANGSTREAM_NO_EXTENSIONS", None)
    if no_extensions:
        env["LANGSTREAM_NO_EXTENSIONS"] = "1"
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=str(root), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "langstream", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return tmp_path


@needs_compiled
def test_the_build_runs_compiled(tmp_path: Path) -> None:
    got = _probe(_copy_package(tmp_path), no_extensions=False)
    assert got["warnings"] == [], (
        "the compiled modules are older than their sources: rebuild "
        "(python setup.py build_ext --inplace)")
    assert got["compiled"] == list(_compiled.PY_COMPILED)
    assert got["output"] == {"n": 2}
    assert got["edited"] is None


@needs_compiled
def test_no_extensions_runs_every_module_from_source(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    got = _probe(root, no_extensions=True)
    assert got["compiled"] == []
    for name, origin in got["origins"].items():
        assert origin == str(root / "langstream" / f"{name}.py")
    assert got["output"] == {"n": 2}
    assert got["warnings"] == []


@needs_compiled
def test_an_edited_source_runs_as_edited_with_a_warning(tmp_path: Path) -> None:
    root = _copy_package(tmp_path)
    mux = root / "langstream" / "mux.py"
    mux.write_text(mux.read_text() + "\nEDITED_BY_TEST = 'yes'\n")
    got = _probe(root, no_extensions=False)
    (warning,) = got["warnings"]
    assert "langstream.mux changed since the build" in warning
    assert "pip install -e ." in warning
    assert got["origins"]["mux"] == str(mux)
    assert "mux" not in got["compiled"]
    assert set(got["compiled"]) == set(_compiled.PY_COMPILED) - {"mux"}
    assert got["edited"] == "yes"
    assert got["output"] == {"n": 2}


@needs_compiled
def test_the_compiled_async_pump_is_an_extension_type() -> None:
    """Compiled, ``_AsyncPump`` keeps its attributes in the instance (its
    ``.pxd``), and the compiled reader step finds each one there."""
    import asyncio

    from langstream import _compiled as compiled
    from langstream.run_stream import _AsyncPump

    if "run_stream" not in compiled.compiled_modules():
        pytest.skip("run_stream runs from source in this process")
    for name in _pxd_attributes("run_stream", "_AsyncPump"):
        if name != "__weakref__":
            assert type(_AsyncPump.__dict__[name]).__name__ == "getset_descriptor", name
    pump = _AsyncPump.__new__(_AsyncPump)
    with pytest.raises(AttributeError):
        pump.not_declared = 1  # (no instance dict)
    # the compiled step's view of the pump: an async run on the C event log
    from langstream import _bench
    from langstream.mux import StreamMux
    from langstream.run_stream import DEFAULT_FACTORIES, AsyncGraphRunStream

    parts = _bench.agent_parts(60)

    async def main() -> list:
        run = AsyncGraphRunStream(_bench.aproducer(parts),
                                  StreamMux(factories=list(DEFAULT_FACTORIES), is_async=True))
        # (the compiled reader step reads the pump's attributes where
        # ``_pump_c`` found them: made here, it has found them all)
        assert run._pump.reader_steps() is not None
        return [v async for v in run.values]

    with _bench.use_backend(_bench.available_backends()["c"]):
        got = asyncio.run(main())
    assert got == [p["data"] for p in parts if p["type"] == "values" and not p["ns"]]


# (module, core, public class, a slot of the public class, the first
# parameter of its signature, how to make one, a method to patch and its args)
SPLIT = [
    ("mux", "_MuxCore", "StreamMux", "_latest", "transformers", (),
     "transformer_by_key", ("values",)),
    ("channel", "_ChannelCore", "StreamChannel", "name", "name", ("x",), "__repr__", ()),
]


@needs_compiled
@pytest.mark.parametrize("module,core,public,slot,param,args,method,margs", SPLIT)
def test_a_compiled_core_is_an_extension_type_and_its_public_class_is_not(
        monkeypatch: pytest.MonkeyPatch, module: str, core: str, public: str, slot: str,
        param: str, args: tuple, method: str, margs: tuple) -> None:
    """Compiled, the core keeps its attributes in the instance; the public
    class over it stays a plain class: it can be patched, takes attributes
    of its own, and has its signature."""
    import importlib
    import inspect

    from langstream import _compiled as compiled

    if module not in compiled.compiled_modules():
        pytest.skip(f"{module} runs from source in this process")
    mod = importlib.import_module(f"langstream.{module}")
    core_cls, public_cls = getattr(mod, core), getattr(mod, public)
    for name in core_cls.__slots__:
        assert type(core_cls.__dict__[name]).__name__ == "getset_descriptor", name
    assert type(public_cls.__dict__[slot]).__name__ == "member_descriptor"
    assert list(inspect.signature(public_cls).parameters)[0] == param
    obj = public_cls(*args)
    obj.note = "mine"
    assert obj.note == "mine"
    monkeypatch.setattr(public_cls, method, lambda self, *a: "patched")
    assert getattr(obj, method)(*margs) == "patched"


@pytest.mark.parametrize("module,core,public,slot,param,args,method,margs", SPLIT)
def test_a_copy_of_a_public_class_over_a_core_keeps_every_attribute(
        module: str, core: str, public: str, slot: str, param: str, args: tuple,
        method: str, margs: tuple) -> None:
    """``copy.copy`` of a ``StreamMux`` or a ``StreamChannel`` keeps the
    public class's own slots, the core's state and the user's attributes,
    compiled or not (compiled, the core's attributes are not slots)."""
    import copy
    import importlib

    public_cls = getattr(importlib.import_module(f"langstream.{module}"), public)
    obj = public_cls(*args)
    obj.note = "mine"
    dup = copy.copy(obj)
    assert type(dup) is public_cls and dup is not obj
    assert getattr(dup, slot) == getattr(obj, slot) and dup.note == "mine"
    core_cls = getattr(importlib.import_module(f"langstream.{module}"), core)
    for name in core_cls.__slots__:
        assert getattr(dup, name) is getattr(obj, name), name

    class Own(public_cls):  # type: ignore[misc, valid-type]
        def __reduce__(self) -> tuple:  # (a subclass's own reduction is used)
            return (public_cls, args)

    assert type(copy.copy(Own(*args))) is public_cls
