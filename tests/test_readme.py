"""Every ```python block of README.md runs as pasted, alone, in a fresh file.

A block that needs an optional extra is marked with an HTML comment on the
line(s) just before its opening fence::

    <!-- requires: langgraph -->

(several extras: ``<!-- requires: langgraph, redis -->``).  Where an extra is
missing the block is skipped, with the extra named in the skip reason; in CI
(``CI=true``) it fails instead, so a missing install step cannot hide.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Tuple

import pytest

from _langgraph_support import langgraph_required
from redis_helpers import redis_url  # noqa: F401 - fixture for the Redis blocks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# extra name (pyproject's optional-dependencies) -> modules it provides
EXTRAS = {
    "langgraph": ("langgraph", "langchain_core"),
    "redis": ("redis",),
    "server": ("starlette", "uvicorn"),
    "plot": ("matplotlib",),
    "bench": ("asv", "numpy"),
}

_FENCE = re.compile(r"^```(\w*)\s*$")
_REQUIRES = re.compile(r"^<!--\s*requires:\s*([\w\-, ]+?)\s*-->\s*$")


class Block(NamedTuple):
    line: int  # 1-based line of the opening fence
    code: str
    requires: Tuple[str, ...]


def python_blocks(text: str) -> List[Block]:
    """The ```python blocks of ``text``, with the extras their marker names."""
    blocks: List[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if lang == "python":
            requires: Tuple[str, ...] = ()
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            if k >= 0:
                r = _REQUIRES.match(lines[k].strip())
                if r:
                    requires = tuple(x.strip() for x in r.group(1).split(",") if x.strip())
            blocks.append(Block(start + 1, "\n".join(lines[start + 1:j]) + "\n", requires))
        i = j + 1
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5, [b.line for b in BLOCKS]


def test_marker_parsing() -> None:
    text = "x\n<!-- requires: langgraph, redis -->\n```python\nprint(1)\n```\n```sh\nls\n```\n"
    (block,) = python_blocks(text)
    assert block == Block(3, "print(1)\n", ("langgraph", "redis"))


def test_markers_name_known_extras() -> None:
    for block in BLOCKS:
        for extra in block.requires:
            assert extra in EXTRAS, f"README.md line {block.line}: unknown extra {extra!r}"


def _missing(extras: Tuple[str, ...]) -> List[str]:
    return [
        f"{extra} ({mod})"
        for extra in extras
        for mod in EXTRAS.get(extra, ())
        if importlib.util.find_spec(mod) is None
    ]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_pasted(block: Block, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    missing = _missing(block.requires)
    if missing:
        reason = (f"README.md line {block.line} needs the optional extra(s) "
                  f"{', '.join(missing)}, not installed")
        # the langgraph extra is installed in CI's CPython leg only (not on PyPy)
        required = (langgraph_required() if set(block.requires) == {"langgraph"}
                    else os.environ.get("CI", "").lower() == "true")
        if required:
            pytest.fail(reason + " (required here: install it in .ci/run)", pytrace=False)
        pytest.skip(reason)
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = dict(os.environ)
    if "redis" in block.requires:  # the blocks read REDIS_URL: point it at the test server
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=str(tmp_path), env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, (
        f"README.md block at line {block.line} failed (exit {proc.returncode}):\n"
        f"{block.code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
