"""Build script: compiles the C event-log backend where it can.

On CPython, unless ``LANGSTREAM_NO_EXTENSIONS`` is set (to anything but ""
or "0"), ``langstream/_eventlog_c.pyx`` is cythonized and compiled together
with ``csrc/ring.c``, and ``langstream/_pump_c.pyx`` (the sync run stream's
compiled pump) is cythonized too.  If Cython or the C compiler fails, the build prints a
warning and goes on: langstream then runs on its pure-Python backend.  On PyPy
no extension is built.  All metadata lives in pyproject.toml.
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


class optional_build_ext(build_ext):
    """``build_ext`` that never fails the install: on a compiler error it
    warns and leaves the pure-Python backend in charge."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # DistutilsPlatformError, CCompilerError, ...
            _warn(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _warn(f"{type(exc).__name__}: {exc}")


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
    try:
        return cythonize(
            [ext, pump],
            language_level=3,
            compiler_directives={"embedsignature": True},
        )
    except BaseException as exc:  # Cython compile errors raise SystemExit-ish
        if isinstance(exc, KeyboardInterrupt):
            raise
        _warn(f"Cython failed: {exc}")
        return []


if os.path.isfile(os.path.join(HERE, "langstream", "_eventlog_c.pyx")):
    EXT_MODULES = _extensions()
else:
    EXT_MODULES = []

setup(ext_modules=EXT_MODULES, cmdclass={"build_ext": optional_build_ext})
