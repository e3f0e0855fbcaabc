"""Which event-log backend ``import langstream`` picks, in a fresh interpreter.

With ``LANGSTREAM_NO_EXTENSIONS`` set no compiled module is imported at all;
without it CPython uses the compiled one (when this checkout has it built, as
the test-suite requires; see conftest.py); a pure build chosen on purpose
never warns, a build that fell back does, with a command that works.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import langstream

from conftest import c_backend_skip_reason

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import asyncio, json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    PRELUDE
    import langstream
    from langstream import eventlog
    parts = [{"type": "values", "ns": (), "data": {"n": i}, "interrupts": ()} for i in range(3)]
    with langstream.stream_events(parts) as run:
        out = run.output
    async def agen():
        for p in parts:
            yield p
    async def main():
        async with langstream.astream_events(agen()) as arun:
            return await arun.output()
    aout = asyncio.run(main())
print(json.dumps({
    "backend": eventlog.BACKEND,
    "compiled": sorted(m for m in sys.modules
                       if m in ("langstream._eventlog_c", "langstream._pump_c")),
    "pycompiled": list(langstream._compiled.compiled_modules()),
    "output": [out, aout],
    "warnings": [str(w.message) for w in caught],
}))
"""


def probe(no_extensions: bool, prelude: str = "pass") -> dict:
    env = dict(os.environ)
    env.pop("LANGSTREAM_NO_EXTENSIONS", None)
    if no_extensions:
        env["LANGSTREAM_NO_EXTENSIONS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = PROBE.replace("PRELUDE", prelude)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_no_extensions_imports_no_compiled_module() -> None:
    got = probe(no_extensions=True)
    assert got["backend"] == "python"
    assert got["compiled"] == []
    assert got["pycompiled"] == []
    assert got["output"] == [{"n": 2}, {"n": 2}]
    assert got["warnings"] == []


def test_default_backend(request: pytest.FixtureRequest) -> None:
    got = probe(no_extensions=False)
    assert got["output"] == [{"n": 2}, {"n": 2}]
    if platform.python_implementation() != "CPython":
        assert got["backend"] == "python" and got["compiled"] == []
        assert got["pycompiled"] == []
        assert got["warnings"] == []  # expected on PyPy: nothing to warn about
        return
    if request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions given")
    if c_backend_skip_reason(request.config) is not None and \
            importlib.util.find_spec("langstream._eventlog_c") is None:
        pytest.skip("LANGSTREAM_NO_EXTENSIONS is set and the compiled backend is not built")
    # CPython in a checkout where the suite runs: the compiled backend is built
    assert got["backend"] == "c"
    assert got["compiled"] == ["langstream._eventlog_c", "langstream._pump_c"]
    # the package's own modules, compiled by the same build (and not older
    # than their sources: else a warning says to rebuild)
    assert got["pycompiled"] == list(langstream._compiled.PY_COMPILED), got["warnings"]
    assert got["warnings"] == []


# the compiled module made unimportable, and the build record setup.py writes
_MISSING_C = "sys.modules['langstream._eventlog_c'] = None; sys.modules['langstream._pump_c'] = None"
_BUILD_INFO = ("import types; m = types.ModuleType('langstream._build_info'); "
               "m.EXTENSIONS_WANTED = {wanted}; sys.modules['langstream._build_info'] = m")


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="the fallback warning exists on CPython only")
def test_pure_build_chosen_on_purpose_does_not_warn() -> None:
    got = probe(False, f"{_MISSING_C}; {_BUILD_INFO.format(wanted=False)}")
    assert got["backend"] == "python"
    assert got["warnings"] == []


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="the fallback warning exists on CPython only")
@pytest.mark.parametrize("record", [True, None])
def test_failed_build_warns_with_a_working_command(record) -> None:
    prelude = _MISSING_C if record is None else f"{_MISSING_C}; {_BUILD_INFO.format(wanted=True)}"
    got = probe(False, prelude)
    assert got["backend"] == "python"
    (warning,) = got["warnings"]
    assert "pip install -e ." in warning
    assert "LANGSTREAM_NO_EXTENSIONS=1" in warning
