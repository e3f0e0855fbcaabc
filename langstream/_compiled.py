"""Which of langstream's Python modules run compiled.

On CPython the build (``setup.py``) also compiles some of the package's own
Python modules with Cython, unchanged: the same source file is the pure
module and, compiled, the fast one.  There is no second implementation to
drift from the first.  ``langstream/__init__.py`` imports this module before
any other, and it decides, once per process, where each of them is loaded
from:

* the compiled module, when it exists, extensions are not disabled, and it
  was compiled from the ``.py`` file that is there now;
* the ``.py`` file, when ``LANGSTREAM_NO_EXTENSIONS`` is set (to anything
  but ``""`` or ``"0"``, as for the event log), or when the ``.py`` file
  changed after the build (a warning names the modules and the rebuild
  command: an edit is never silently shadowed by an older build).

The build records what it compiled in ``langstream/_compiled_sources.py``:
for each compiled file (named with its interpreter's ABI tag, so builds for
two interpreters in one checkout keep their own entries), the size,
modification time and SHA-256 of the source it was compiled from.  A source whose
size and time still match is trusted without reading it; otherwise its hash
decides (a reinstall from a wheel changes the times, not the contents).

``compiled_modules()`` says which modules run compiled in this process.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from typing import Any, Dict, FrozenSet, Optional, Sequence, Tuple

from langstream.eventlog import _extensions_disabled

__all__ = ["PY_COMPILED", "compiled_modules"]

# The modules the build compiles (in import order), named in the package.
PY_COMPILED: Tuple[str, ...] = (
    "protocol",
    "channel",
    "mux",
    "transformers",
    "_messages",
    "run_stream",
)

_PACKAGE = "langstream"
_HERE = os.path.dirname(os.path.abspath(__file__))


def source_digest(path: str) -> str:
    """The SHA-256 of a file, as the build records it (hex)."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _compiled_file(folder: str, name: str) -> Optional[str]:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def _matches(source: str, record: Any) -> bool:
    """Whether ``source`` is the file the build compiled (``record``: its
    ``(size, mtime_ns, sha256)`` at build time)."""
    try:
        size, mtime_ns, digest = record
        st = os.stat(source)
    except (TypeError, ValueError, OSError):
        return False
    if st.st_size != size:
        return False
    if st.st_mtime_ns == mtime_ns:
        return True
    try:
        return source_digest(source) == digest
    except OSError:
        return False


def stale_modules(folder: str, records: Optional[Dict[str, Any]],
                  names: Sequence[str] = PY_COMPILED) -> Tuple[str, ...]:
    """The modules of ``names`` whose compiled file in ``folder`` was not
    built from the ``.py`` file there now (``records``: the build's
    ``SOURCES``, keyed by compiled file name, or ``None`` when it recorded
    nothing)."""
    stale = []
    for name in names:
        source = os.path.join(folder, name + ".py")
        compiled = _compiled_file(folder, name)
        if compiled is None or not os.path.isfile(source):
            continue  # (nothing compiled, or nothing to prefer: the default import)
        record = None if records is None else records.get(os.path.basename(compiled))
        if record is None or not _matches(source, record):
            stale.append(name)
    return tuple(stale)


class _SourceFirst:
    """A meta-path finder that loads the given modules of the package from
    their ``.py`` files, even where a compiled module sits beside them."""

    def __init__(self, folder: str, names: FrozenSet[str]) -> None:
        self.folder = folder
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in self.names:
            return None
        source = os.path.join(self.folder, name + ".py")
        if not os.path.isfile(source):
            return None
        return importlib.util.spec_from_file_location(fullname, source)

    def invalidate_caches(self) -> None:  # (the importlib protocol)
        pass


def _install() -> None:
    """Decide once, before any of ``PY_COMPILED`` is imported."""
    folder = _HERE
    if _extensions_disabled():
        names = frozenset(n for n in PY_COMPILED if _compiled_file(folder, n) is not None)
    else:
        if all(_compiled_file(folder, n) is None for n in PY_COMPILED):
            return  # (PyPy, a pure build, or a checkout not built: nothing to choose)
        try:
            from langstream import _compiled_sources  # type: ignore[attr-defined]
            records: Optional[Dict[str, Any]] = dict(_compiled_sources.SOURCES)
        except (ImportError, AttributeError, TypeError, ValueError):
            records = None
        names = frozenset(stale_modules(folder, records))
        if names:
            listed = ", ".join(f"langstream.{n}" for n in PY_COMPILED if n in names)
            warnings.warn(
                f"langstream: {listed} changed since the build compiled "
                f"{'them' if len(names) > 1 else 'it'}; running the .py source "
                "(slower). Rebuild to compile the change: pip install -e . (or "
                "python setup.py build_ext --inplace in a checkout).",
                RuntimeWarning,
                stacklevel=3,
            )
    if not names:
        return
    loaded = [n for n in names if f"{_PACKAGE}.{n}" in sys.modules]
    if loaded:  # pragma: no cover - langstream/__init__ imports this first
        raise RuntimeError(f"langstream._compiled was imported after {loaded!r}")
    sys.meta_path.insert(0, _SourceFirst(folder, names))


def compiled_modules() -> Tuple[str, ...]:
    """The modules of ``PY_COMPILED`` imported in this process that run
    compiled (their module is an extension module)."""
    out = []
    for name in PY_COMPILED:
        module = sys.modules.get(f"{_PACKAGE}.{name}")
        spec = getattr(module, "__spec__", None)
        if spec is not None and isinstance(
            spec.loader, importlib.machinery.ExtensionFileLoader
        ):
            out.append(name)
    return tuple(out)


_install()
