"""The live page: one self-contained HTML document (styles and script inlined).

The files live beside this module in ``static/`` (package data); the page
needs nothing from the network but its own events URL.
"""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

_STATIC = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return (_STATIC / name).read_text(encoding="utf-8")


def render_page(key: str) -> str:
    """The page for run ``key``, with the page's CSS and JS inlined."""
    # A JSON string inside <script>: escape "<" so "</script>" in a key is harmless.
    key_json = json.dumps(key).replace("<", "\\u003c")
    values = {"TITLE": html.escape(key), "STYLE": _asset("page.css"),
              "KEY_JSON": key_json, "SCRIPT": _asset("page.js")}
    # One pass, so text substituted in is never scanned again.
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], _asset("page.html"))
