"""The dashboard's offline rewriting and its choice of commits (no network, no asv).

The whole dashboard, built and loaded in a real browser, is checked by
``asv_bench/test_dashboard_browser.py`` (run by CI).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from langstream import _dashboard as d

# the tags asv 0.6's index.html carries, in its own spelling
PAGE = """<html><head>
<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="{jq}" crossorigin="anonymous" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js" integrity="sha512-eO1A" crossorigin="anonymous" referrerpolicy="no-referrer" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js"></script>
<script language="javascript" type="text/javascript" src="jquery.flot.axislabels.js"></script>
<script src="https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js"></script>
<script src="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js"></script>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css" integrity="sha256-nope" crossorigin="anonymous">
<a href="https://github.com/airspeed-velocity/asv/">asv</a>
</head></html>"""


def _files() -> dict:
    return {a.dest: f"/* {a.dest} */".encode() for a in d.ASSETS}


def _sri(data: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_every_cdn_tag_points_at_vendor() -> None:
    files = _files()
    out = d.vendor_html(PAGE.format(jq=_sri(files["jquery/jquery.min.js"])), files)
    assert "cdnjs" not in out and "jsdelivr" not in out and "code.jquery" not in out
    for asset in d.ASSETS:
        assert f'"vendor/{asset.dest}"' in out, asset
    assert 'src="jquery.flot.axislabels.js"' in out  # asv's own file, untouched
    assert "https://github.com/airspeed-velocity/asv/" in out  # a link, not an asset
    assert "orderBars" in out and "<script" not in out.split("orderBars")[0].rsplit("\n", 1)[1]
    assert "crossorigin" not in out and "referrerpolicy" not in out


def test_integrity_kept_only_when_the_local_file_matches() -> None:
    files = _files()
    good = _sri(files["jquery/jquery.min.js"])
    out = d.vendor_html(PAGE.format(jq=good), files)
    assert f'src="vendor/jquery/jquery.min.js" integrity="{good}"' in out
    assert "sha512-eO1A" not in out and "sha256-nope" not in out


def test_unknown_cdn_reference_is_an_error() -> None:
    page = '<script src="https://example.org/lib/other.min.js"></script>'
    with pytest.raises(d.DashboardError, match="other.min.js"):
        d.vendor_html(page, _files())


def _commit(repo: Path, path: str, text: str, message: str) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", path], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "-m", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_only_commits_that_change_code_are_benchmarked(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    a = _commit(tmp_path, "langstream/x.py", "1", "code")
    _commit(tmp_path, "README.md", "docs", "docs only")
    b = _commit(tmp_path, "csrc/ring.c", "2", "C code")
    _commit(tmp_path, ".ci/run", "ci", "CI only")
    c = _commit(tmp_path, "asv_bench/benchmarks/bench_x.py", "3", "a benchmark")
    assert d.code_commits(tmp_path, 5, None) == [c, b, a]
    assert d.code_commits(tmp_path, 2, None) == [c, b]
    assert d.code_commits(tmp_path, None, f"{a}..HEAD") == [c, b]


def test_smoke_results_are_kept_apart(tmp_path: Path) -> None:
    asv_dir = Path(__file__).resolve().parent.parent / "asv_bench"
    full = d.write_config(asv_dir, tmp_path, tmp_path / "out", ["3.11"], False, "main")
    smoke = d.write_config(asv_dir, tmp_path, tmp_path / "out", ["3.11"], True, "main")
    import json

    f, s = json.loads(full.read_text()), json.loads(smoke.read_text())
    assert f["results_dir"] != s["results_dir"] and f["html_dir"] != s["html_dir"]
    assert s["results_dir"].endswith("results-smoke")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("new_pip", [False, True])
def test_asset_sdists_build_with_a_setuptools_that_has_pkg_resources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_pip: bool) -> None:
    """The XStatic sdists' setup.py imports ``pkg_resources`` (gone from
    setuptools 81 on): pip gets a build constraint below it, through
    ``PIP_CONSTRAINT`` (what pip before 25.3 passes to its build
    environment, kept beside any the user set) and, where pip has it,
    ``--build-constraint``."""
    calls = []
    real_run = subprocess.run

    def fake_subprocess_run(cmd, **kw):
        if list(cmd[1:4]) == ["-m", "pip", "install"] and "--help" in cmd:
            text = "  --build-constraint <file>  Constrain build dependencies\n" if new_pip else ""
            return subprocess.CompletedProcess(cmd, 0, stdout=text, stderr="")
        return real_run(cmd, **kw)

    def fake_run(cmd, **kw):
        calls.append(([str(c) for c in cmd], kw))
        raise _Stop

    monkeypatch.setattr(d.subprocess, "run", fake_subprocess_run)
    monkeypatch.setattr(d, "_run", fake_run)
    monkeypatch.setenv("PIP_CONSTRAINT", "/mine.txt")
    with pytest.raises(_Stop):
        d.fetch_assets(tmp_path / "cache")
    (cmd, kw), = calls
    assert cmd[-2:] == list(d.PYPI_REQUIREMENTS)
    mine, ours = kw["env"]["PIP_CONSTRAINT"].split(" ")
    assert mine == "/mine.txt"
    assert Path(ours).read_text().split() == ["setuptools<81"]
    if new_pip:
        assert cmd[cmd.index("--build-constraint") + 1] == ours
    else:
        assert "--build-constraint" not in cmd
