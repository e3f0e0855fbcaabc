"""The README's Redis section: every ```python block runs as pasted (fresh process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from redis_helpers import redis_url  # noqa: F401 - fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    start = text.index("## Remote runs: Redis Streams")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_section_has_python_blocks():
    assert len(_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(redis_url, index, tmp_path):
    path = tmp_path / "block.py"
    path.write_text(_blocks()[index], encoding="utf-8")
    env = dict(os.environ, REDIS_URL=redis_url,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                         env=env, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
