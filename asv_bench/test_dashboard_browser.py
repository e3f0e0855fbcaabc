"""The asv dashboard, built for real and loaded by headless Chromium offline.

Not part of the default test run (it builds asv environments: about a
minute); CI runs it explicitly::

    python -m pytest -q asv_bench/test_dashboard_browser.py

It builds a dashboard over the last two commits that change code, with small
inputs (``--smoke``) and one benchmark, on the interpreters named by
``LANGSTREAM_DASHBOARD_PYTHON`` (default ``cpython``; ``cpython,pypy`` adds a
PyPy environment), serves the published folder on a free local port, and
loads the benchmark's graph page in Debian's ``chromium`` with every other
address unreachable (host resolver rules and a dead proxy; only that port is
exempt).  It asserts that the graph was drawn (flot's canvas exists and has
painted pixels), that no script error happened and that nothing came from
the network, and saves a screenshot in ``build/dashboard-ci/``.

Chromium missing: skipped on a developer machine, a failure in CI (``CI=true``).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "dashboard-ci"
BENCH = "bench_eventlog.EventLogSuite.time_push_read"
PYTHONS = os.environ.get("LANGSTREAM_DASHBOARD_PYTHON", "cpython")

# injected at the top of the page by the test server only (the published file
# is not changed): records script errors, then reports what flot drew
PROBE = """<script>
window.__probe = {errors: [], cdn: "pending"};
window.addEventListener("error", function (e) {
  var t = e.target || {};
  __probe.errors.push(e.message || ("failed to load " + (t.src || t.href)));
}, true);
fetch("https://code.jquery.com/jquery-3.3.1.min.js").then(
  function () { __probe.cdn = "reachable"; }, function () { __probe.cdn = "blocked"; });
function __report() {
  var canvases = document.querySelectorAll("canvas.flot-base"), painted = 0;
  for (var i = 0; i < canvases.length; i++) {
    var c = canvases[i], d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (var j = 3; j < d.length; j += 4) { if (d[j] !== 0) { painted++; } }
  }
  var legend = Array.prototype.map.call(
    document.querySelectorAll(".legendLabel, #graph-display .legend td"),
    function (n) { return n.textContent; });
  var out = document.getElementById("__probe") || document.createElement("pre");
  out.id = "__probe";
  out.textContent = JSON.stringify({
    canvases: canvases.length, painted: painted, errors: __probe.errors, cdn: __probe.cdn,
    jquery: typeof window.jQuery, flot: !!(window.jQuery && jQuery.plot), legend: legend,
    body: document.body ? document.body.innerText.slice(0, 400) : ""});
  if (document.body && !out.parentNode) { document.body.appendChild(out); }
}
setInterval(__report, 250);
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def send_head(self):  # type: ignore[override]
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path in ("/", "/index.html"):
            body = (Path(self.directory) / "index.html").read_text(encoding="utf-8")
            body = body.replace("<head>", "<head>" + PROBE, 1).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            import io

            return io.BytesIO(body)
        return super().send_head()


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI=true: .ci/run must install it", pytrace=False)
        pytest.skip(msg)
    return exe


@pytest.fixture(scope="module")
def dashboard() -> Path:
    try:
        import asv  # noqa: F401
    except ImportError:
        msg = "asv is not installed: pip install -e '.[bench]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true)", pytrace=False)
        pytest.skip(msg)
    cmd = [sys.executable, "-m", "langstream", "dashboard", "--last", "2", "--smoke",
           "--python", PYTHONS, "--bench", BENCH + r"\b", "--output", str(OUT)]
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = OUT / "html-smoke"
    graphs = list((html / "graphs").rglob(f"{BENCH}.json"))
    assert graphs, f"no graph data for {BENCH} in {html}"
    return html


@pytest.fixture(scope="module")
def server(dashboard: Path) -> Iterator[int]:
    handler = functools.partial(_Handler, directory=str(dashboard))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _chromium(exe: str, port: int, url: str, *extra: str) -> Tuple[str, str]:
    cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-background-networking",
           "--disable-component-update", "--disable-sync",
           "--user-data-dir=" + str(OUT / "chromium-profile"),
           # nothing but the dashboard's port is reachable
           "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
           "--proxy-server=http://127.0.0.1:9",
           f"--proxy-bypass-list=<-loopback>;127.0.0.1:{port}",
           "--enable-logging=stderr", "--v=0",
           "--window-size=1280,900", "--virtual-time-budget=20000", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def test_graph_renders_offline(chromium: str, server: int) -> None:
    url = f"http://127.0.0.1:{server}/index.html#{BENCH}"
    dom, log = _chromium(chromium, server, url, "--dump-dom")
    m = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    assert m, "the page never reported (no <pre id=__probe>):\n" + log[-3000:]
    import html as _html

    report = json.loads(_html.unescape(m.group(1)))
    assert report["cdn"] == "blocked", report  # the network really is out of reach
    assert report["errors"] == [], report
    assert report["jquery"] == "function" and report["flot"], report
    assert "failed to load" not in report["body"], report["body"]
    assert report["canvases"] >= 1, report
    assert report["painted"] > 500, report
    uncaught: List[str] = [line for line in log.splitlines() if "Uncaught" in line]
    assert uncaught == [], uncaught
    if "pypy" in PYTHONS:  # both interpreters on the one graph
        legend = " ".join(report["legend"])
        assert "pypy" in legend.lower() and "3." in legend, report["legend"]


def test_screenshot(chromium: str, server: int) -> None:
    shot = OUT / "dashboard.png"
    if shot.exists():
        shot.unlink()
    url = f"http://127.0.0.1:{server}/index.html#{BENCH}"
    _chromium(chromium, server, url, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000, shot
