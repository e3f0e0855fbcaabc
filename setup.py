"""Build script: compiles the C event-log backend where it can.

On CPython, unless ``LANGSTREAM_NO_EXTENSIONS`` is set (to anything but ""
or "0"), ``langstream/_eventlog_c.pyx`` is cythonized and compiled together
with ``csrc/ring.c``, and ``langstream/_pump_c.pyx`` (the sync run stream's
compiled pump) is cythonized too.  So are the package's own Python modules
listed in ``langstream._compiled.PY_COMPILED`` (the protocol, channels, the
mux, the transformers, messages and run streams), each compiled unchanged
from its ``.py`` file, which stays the pure module; the build records which
source it compiled (``langstream/_compiled_sources.py``) so that an edited
source is never shadowed by an older build (see ``langstream/_compiled.py``).
If Cython or the C compiler fails, the build prints a warning and goes on:
langstream then runs on its pure-Python backend.  On PyPy no extension is
built.  All metadata lives in pyproject.toml.

Two guards keep a wheel honest about its backend:

* compiled modules left in ``build/`` by an earlier build are deleted before
  this build starts, so a build that cannot compile never ships stale ones;
* ``langstream/_build_info.py`` is written into the built package, saying
  whether the extensions were left out on purpose (``LANGSTREAM_NO_EXTENSIONS``
  at build time, or PyPy): ``langstream.eventlog`` then does not warn about
  the missing compiled backend.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
FALLBACK = "falling back to the pure-Python backend"


def _warn(reason: str) -> None:
    line = "=" * 72
    sys.stderr.write(
        f"\n{line}\nlangstream: C extension could not be built ({reason}); "
        f"{FALLBACK}\n{line}\n\n"
    )


def _want_extension() -> bool:
    if platform.python_implementation() != "CPython":
        return False
    return os.environ.get("LANGSTREAM_NO_EXTENSIONS", "") in ("", "0")


# the package's Python modules compiled as they are (langstream/_compiled.py
# names them too, and a test checks that both lists agree)
PY_COMPILED = ("protocol", "channel", "mux", "transformers", "_messages", "run_stream")
COMPILED = ("_eventlog_c", "_pump_c", *PY_COMPILED)
SOURCES_RECORD = "_compiled_sources.py"


def _remove_stale_compiled(build_lib: str) -> None:
    """Delete compiled langstream modules an earlier build left in ``build_lib``."""
    for name in COMPILED:
        for path in glob.glob(os.path.join(build_lib, "langstream", name + ".*")):
            if path.endswith((".so", ".pyd")):
                os.remove(path)
    record = os.path.join(build_lib, "langstream", SOURCES_RECORD)
    if os.path.exists(record):
        os.remove(record)


class build_py_fresh(build_py):
    """``build_py`` that clears stale compiled modules from the build folder
    (``build_ext`` rebuilds them when it can) and records why extensions are
    absent when they are left out on purpose."""

    def run(self) -> None:
        _remove_stale_compiled(self.build_lib)
        super().run()
        if not self.dry_run:
            target = os.path.join(self.build_lib, "langstream", "_build_info.py")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(
                    '"""Written by setup.py at build time."""\n'
                    f"EXTENSIONS_WANTED = {_want_extension()!r}\n"
                )


class optional_build_ext(build_ext):
    """``build_ext`` that never fails the install: on a compiler error it
    warns and leaves the pure-Python backend in charge."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:  # (the modules compile side by side)
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self._built = set()  # (names of the extensions built, or up to date)
        try:
            super().run()
        except Exception as exc:  # DistutilsPlatformError, CCompilerError, ...
            _warn(f"{type(exc).__name__}: {exc}")
        if not self.dry_run:
            self._record_sources()

    def _record_sources(self) -> None:
        """Keep ``langstream/_compiled_sources.py`` beside the compiled
        modules: for each compiled file (by its name, which carries the
        interpreter's ABI tag), the size, mtime and SHA-256 of the ``.py`` it
        was compiled from.  Modules built now get their source's; entries of
        compiled files this build did not touch (another interpreter's, or a
        build with ``LANGSTREAM_NO_EXTENSIONS`` in a checkout built before)
        are kept while their file exists, so those are still compared with
        what they were really compiled from."""
        import ast
        import hashlib

        folder = os.path.dirname(self.get_ext_fullpath("langstream.mux"))
        record = os.path.join(folder, SOURCES_RECORD)
        entries = {}
        try:
            with open(record, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            for node in tree.body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SOURCES":
                    entries = dict(ast.literal_eval(node.value))
        except (OSError, SyntaxError, ValueError, TypeError):
            entries = {}
        entries = {k: v for k, v in entries.items()
                   if isinstance(k, str) and os.path.exists(os.path.join(folder, k))}
        for name in PY_COMPILED:
            compiled = self.get_ext_fullpath(f"langstream.{name}")
            if f"langstream.{name}" in self._built and os.path.exists(compiled):
                source = os.path.join(HERE, "langstream", name + ".py")
                st = os.stat(source)
                with open(source, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                entries[os.path.basename(compiled)] = (st.st_size, st.st_mtime_ns, digest)
        if not entries:
            if os.path.exists(record):
                os.remove(record)
            return
        os.makedirs(folder, exist_ok=True)
        lines = "".join(f"    {key!r}: {entries[key]!r},\n" for key in sorted(entries))
        with open(record, "w", encoding="utf-8") as fh:
            fh.write('"""Written by setup.py: for each compiled module, the source it was '
                     'compiled from (size, mtime_ns, sha256)."""\n')
            fh.write("SOURCES = {\n" + lines + "}\n")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
            self._built.add(ext.name)  # (built now, or up to date with its source)
        except Exception as exc:
            _warn(f"{type(exc).__name__}: {exc}")
            # never leave a half-built or stale module behind
            for path in (self.get_ext_fullpath(ext.name),):
                if os.path.exists(path):
                    os.remove(path)


def _extensions():
    if not _want_extension():
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except Exception as exc:  # Cython missing outside build isolation
        _warn(f"Cython is not available: {exc}")
        return []
    ext = Extension(
        "langstream._eventlog_c",
        sources=["langstream/_eventlog_c.pyx", "csrc/ring.c"],
        include_dirs=["csrc"],
        extra_compile_args=["-std=c11", "-O2"],
    )
    pump = Extension(
        "langstream._pump_c",
        sources=["langstream/_pump_c.pyx"],
        include_dirs=["csrc"],  # it cimports the EventLog type, which embeds the ring
        extra_compile_args=["-O2"],
    )
    # the package's own modules, compiled unchanged: their annotations are
    # for type checkers (``annotation_typing`` off: Cython would otherwise
    # reject, say, an ABCMeta where ``type`` is annotated)
    py_modules = [
        Extension(f"langstream.{name}", sources=[f"langstream/{name}.py"],
                  extra_compile_args=["-O2"])
        for name in PY_COMPILED
    ]
    try:
        modules = cythonize(
            [ext, pump],
            language_level=3,
            compiler_directives={"embedsignature": True},
        )
    except BaseException as exc:  # Cython compile errors raise SystemExit-ish
        if isinstance(exc, KeyboardInterrupt):
            raise
        _warn(f"Cython failed: {exc}")
        return []
    try:  # (apart: the event log does not depend on these)
        modules += cythonize(
            py_modules,
            language_level=3,
            compiler_directives={"annotation_typing": False},
            nthreads=os.cpu_count() or 1,
        )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        _warn(f"Cython failed on the package's modules, which run from source: {exc}")
    return modules


if os.path.isfile(os.path.join(HERE, "langstream", "_eventlog_c.pyx")):
    EXT_MODULES = _extensions()
else:
    EXT_MODULES = []

setup(
    ext_modules=EXT_MODULES,
    cmdclass={"build_ext": optional_build_ext, "build_py": build_py_fresh},
)
