"""``python -m langstream dashboard``: the asv history as a page that renders offline.

One command runs the asv suite (``asv_bench/``) over the last ``N`` commits
that changed code (or over a git range), on CPython and on PyPy (one asv
``virtualenv`` environment per interpreter, so both appear on every graph as
values of the ``python`` parameter), publishes the results, and makes the
published folder self-contained: the scripts and styles that ``asv publish``
loads from CDNs are replaced by copies taken from packages installed at
dashboard time, never from files kept in this repository:

* jQuery 3.3.1 and Bootstrap 3.1.1: PyPI's ``XStatic-jQuery`` /
  ``XStatic-Bootstrap`` (byte-identical to the CDN files: the page keeps their
  integrity hashes);
* flot 0.8.3 (core, time, selection, categories): Debian's
  ``libghc-js-flot-data``; stupidtable: ``libjs-jquery-stupidtable``;
  blueimp-md5: ``node-blueimp-md5`` (fetched with ``apt-get download`` and
  unpacked into a cache folder when not installed);
* flot-orderbars is packaged nowhere: its tag is dropped (bars of a category
  axis then overlap; line graphs are unaffected).

Commits that change no code (README, CI) are not benchmarked, so they cannot
raise a regression alarm; ``--smoke`` results (small inputs) go to their own
results and html folders and never mix with full-size ones.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

__all__ = ["add_parser", "main", "vendor_html", "fetch_assets", "ASSETS"]

# paths whose change can move a figure; other commits are not benchmarked
CODE_PATHS = ("langstream", "csrc", "setup.py", "pyproject.toml", "MANIFEST.in",
              "asv_bench/benchmarks", "asv_bench/asv.conf.json")

PYPI_REQUIREMENTS = ("XStatic-jQuery==3.3.1.1", "XStatic-Bootstrap==3.1.1.2")
# what building those two sdists needs (their setup.py imports pkg_resources)
BUILD_CONSTRAINTS = "setuptools<81\n"
DEB_PACKAGES = {
    # package: folder its files are installed under
    "libghc-js-flot-data": "usr/share/haskell-js-flot",
    "libjs-jquery-stupidtable": "usr/share/javascript/jquery-stupidtable",
    "node-blueimp-md5": "usr/share/javascript/blueimp-md5",
}


class Asset(NamedTuple):
    """A CDN file of asv's page and where its local copy comes from."""

    url_suffix: str  # the end of the CDN URL
    source: str  # "pypi" or a Debian package name
    path: str  # file inside the source (pypi: under the --target folder)
    dest: str  # path under <html>/vendor/


_XJ = "xstatic/pkg/jquery/data"
_XB = "xstatic/pkg/bootstrap/data"
ASSETS: List[Asset] = [
    Asset("/jquery-3.3.1.min.js", "pypi", f"{_XJ}/jquery.min.js", "jquery/jquery.min.js"),
    Asset("/bootstrap@3.1.1/dist/js/bootstrap.min.js", "pypi", f"{_XB}/js/bootstrap.min.js",
          "bootstrap/js/bootstrap.min.js"),
    Asset("/bootstrap@3.1.1/dist/css/bootstrap.min.css", "pypi", f"{_XB}/css/bootstrap.min.css",
          "bootstrap/css/bootstrap.min.css"),
] + [
    Asset(f"/flot/0.8.3/{name}", "libghc-js-flot-data", name, f"flot/{name}")
    for name in ("jquery.flot.min.js", "jquery.flot.time.min.js",
                 "jquery.flot.selection.min.js", "jquery.flot.categories.min.js")
] + [
    Asset("/stupidtable.min.js", "libjs-jquery-stupidtable", "stupidtable.min.js",
          "stupidtable/stupidtable.min.js"),
    Asset("/md5.min.js", "node-blueimp-md5", "md5.min.js", "blueimp-md5/md5.min.js"),
]
# copied along with the files above (bootstrap.min.css loads ../fonts/*)
EXTRA_TREES = [("pypi", f"{_XB}/fonts", "bootstrap/fonts")]
# CDN files no package has: their tags are removed
DROPPED = ("/jquery.flot.orderBars.js",)

_TAG = re.compile(r"""<(script|link)\b[^>]*?\b(?:src|href)="(https?://[^"]+)"[^>]*>(?:\s*</script>)?""",
                  re.IGNORECASE)
_INTEGRITY = re.compile(r"""\sintegrity="([^"]+)\"""")


class DashboardError(RuntimeError):
    """A step of the dashboard failed; the message says which and what to do."""


def _sri_matches(integrity: str, data: bytes) -> bool:
    algo, _, digest = integrity.partition("-")
    if algo not in ("sha256", "sha384", "sha512"):
        return False
    return base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest


def vendor_html(html: str, files: Dict[str, bytes]) -> str:
    """``html`` with every CDN ``<script>``/``<link>`` pointing at ``vendor/``.

    ``files`` maps an asset's ``dest`` to its bytes.  A tag's ``integrity``
    is kept when the local file matches it, dropped otherwise.  Raises
    ``DashboardError`` if a CDN reference is left that no asset covers.
    """
    by_suffix = {a.url_suffix: a for a in ASSETS}

    def local(match: "re.Match[str]") -> str:
        tag, url = match.group(0), match.group(2)
        if url.endswith(DROPPED):
            return f"<!-- {url.rsplit('/', 1)[-1]}: packaged nowhere, left out -->"
        asset = next((a for s, a in by_suffix.items() if url.endswith(s)), None)
        if asset is None:
            raise DashboardError(f"no packaged copy known for {url}")
        data = files[asset.dest]
        integrity = _INTEGRITY.search(tag)
        new = tag.replace(url, "vendor/" + asset.dest)
        if integrity is not None and not _sri_matches(integrity.group(1), data):
            new = new.replace(integrity.group(0), "")
        return re.sub(r"""\s(?:crossorigin|referrerpolicy)="[^"]*\"""", "", new)

    out = _TAG.sub(local, html)
    left = re.findall(r"""(?:src|href)="(https?://[^"]+\.(?:js|css))\"""", out)
    if left:
        raise DashboardError(f"CDN references left in the page: {left}")
    return out


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], **kw)


def fetch_assets(cache: Path) -> Dict[str, bytes]:
    """Install (into ``cache``) the packages that hold the page's assets and
    return ``{dest: bytes}`` for every asset and extra file."""
    pypi = cache / "pypi"
    if not all((pypi / a.path).is_file() for a in ASSETS if a.source == "pypi"):
        # the XStatic packages are sdists whose setup.py imports
        # pkg_resources, which setuptools 81 and later no longer ship: their
        # isolated builds get an older one (PIP_CONSTRAINT reaches the build
        # environment of pip before 25.3, --build-constraint that of later ones)
        cache.mkdir(parents=True, exist_ok=True)
        constraints = cache / "build-constraints.txt"
        constraints.write_text(BUILD_CONSTRAINTS)
        env = dict(os.environ)
        env["PIP_CONSTRAINT"] = " ".join(
            filter(None, (env.get("PIP_CONSTRAINT", ""), str(constraints))))
        help_text = subprocess.run([sys.executable, "-m", "pip", "install", "--help"],
                                   capture_output=True, text=True).stdout
        extra = ["--build-constraint", constraints] if "--build-constraint" in help_text else []
        proc = _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                     "--upgrade", *extra, "--target", pypi, *PYPI_REQUIREMENTS], env=env)
        if proc.returncode:
            raise DashboardError("pip could not install " + " ".join(PYPI_REQUIREMENTS))
    roots: Dict[str, Path] = {"pypi": pypi}
    for package, folder in DEB_PACKAGES.items():
        system = Path("/") / folder
        unpacked = cache / "deb" / package
        if system.is_dir():
            roots[package] = system
            continue
        if not (unpacked / folder).is_dir():
            if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
                raise DashboardError(
                    f"the Debian package {package} is needed (apt-get install {package}), "
                    "and apt-get / dpkg-deb are not available here")
            download = cache / "deb" / "download"
            download.mkdir(parents=True, exist_ok=True)
            proc = _run(["apt-get", "download", package], cwd=download)
            if proc.returncode and hasattr(os, "geteuid") and os.geteuid() == 0:
                _run(["apt-get", "update", "-q"])  # no package lists yet
                proc = _run(["apt-get", "download", package], cwd=download)
            debs = sorted(download.glob(f"{package}_*.deb"))
            if proc.returncode or not debs:
                raise DashboardError(
                    f"apt-get download {package} failed (run 'apt-get update' first?)")
            _run(["dpkg-deb", "-x", debs[-1], unpacked], check=True)
        roots[package] = unpacked / folder
    files: Dict[str, bytes] = {}
    for asset in ASSETS:
        files[asset.dest] = (roots[asset.source] / asset.path).read_bytes()
    for source, sub, dest in EXTRA_TREES:
        base = roots[source] / sub
        for path in sorted(base.rglob("*")):
            if path.is_file():
                files[f"{dest}/{path.relative_to(base).as_posix()}"] = path.read_bytes()
    return files


def make_offline(html_dir: Path, cache: Path) -> List[Path]:
    """Copy the assets into ``html_dir/vendor`` and point every page at them."""
    files = fetch_assets(cache)
    vendor = html_dir / "vendor"
    for dest, data in files.items():
        target = vendor / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    pages = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = vendor_html(text, files)
        if new != text:
            page.write_text(new, encoding="utf-8")
            pages.append(page)
    return pages


# -- running asv -------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode:
        raise DashboardError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def code_commits(repo: Path, last: Optional[int], rev_range: Optional[str]) -> List[str]:
    """Commits (newest first) that change code, from ``rev_range`` or the last
    ``last`` such commits up to HEAD."""
    args = ["rev-list", "--first-parent"]
    if rev_range:
        args.append(rev_range)
    else:
        args += [f"--max-count={last}", "HEAD"]
    out = _git(repo, *args, "--", *CODE_PATHS)
    return out.split() if out else []


def _load_json_with_comments(path: Path) -> Dict[str, Any]:
    """asv's config format: JSON with comments (read with json5, as asv does)."""
    text = path.read_text(encoding="utf-8")
    try:
        import json5  # an asv dependency
    except ImportError:
        return json.loads("\n".join(line for line in text.splitlines()
                                    if not line.lstrip().startswith("//")))
    return json5.loads(text)


def _python_specs(names: Sequence[str]) -> List[str]:
    specs = []
    for name in names:
        if name == "cpython":
            if platform.python_implementation() == "CPython":
                specs.append(f"{sys.version_info[0]}.{sys.version_info[1]}")
            else:
                specs.append("3")
        elif name == "pypy":
            if shutil.which("pypy3") is None:
                raise DashboardError("PyPy is not installed: apt-get install pypy3 pypy3-venv "
                                     "(or leave it out: --python cpython)")
            specs.append("pypy3")
        else:  # an asv spec such as 3.11 or pypy3.9
            specs.append(name)
    return specs


def write_config(asv_dir: Path, repo: Path, out_dir: Path, pythons: List[str],
                 smoke: bool, branch: str) -> Path:
    """An asv config for this dashboard run (the project's, with absolute paths,
    the interpreters, and smoke runs kept apart)."""
    conf = _load_json_with_comments(asv_dir / "asv.conf.json")
    suffix = "-smoke" if smoke else ""
    conf.update({
        "repo": str(repo),
        "branches": [branch],
        "benchmark_dir": str(asv_dir / conf.get("benchmark_dir", "benchmarks")),
        "env_dir": str(asv_dir / conf.get("env_dir", "env")),
        "results_dir": str(out_dir / ("results" + suffix)),
        "html_dir": str(out_dir / ("html" + suffix)),
        "pythons": pythons,
        # one virtualenv per interpreter: CPython builds the compiled backend,
        # PyPy the pure one; both are values of the graphs' "python" parameter
        "environment_type": "virtualenv",
    })
    path = out_dir / f"asv.dashboard{suffix}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    return path


def _asv(config: Path, *args: str, env: Optional[Dict[str, str]] = None, quiet: bool = False) -> int:
    cmd = [sys.executable, "-m", "asv", *args, "--config", str(config)]
    return _run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None).returncode


def main(ns: argparse.Namespace) -> int:
    try:
        return _main(ns)
    except DashboardError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 1


def _main(ns: argparse.Namespace) -> int:
    try:
        import asv  # noqa: F401
    except ImportError:
        raise DashboardError("asv is not installed: pip install -e '.[bench]' "
                             "(from the source checkout)") from None
    asv_dir = Path(ns.asv_dir).resolve() if ns.asv_dir else _default_asv_dir()
    repo = Path(_git(asv_dir, "rev-parse", "--show-toplevel"))
    out_dir = Path(ns.output).resolve() if ns.output else asv_dir / ".dashboard"
    branch = ns.branch or _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise DashboardError("HEAD is detached: name the branch to graph with --branch")
    pythons = _python_specs(ns.python)
    config = write_config(asv_dir, repo, out_dir, pythons, ns.smoke, branch)
    html_dir = Path(json.loads(config.read_text())["html_dir"])
    env = dict(os.environ)
    if ns.smoke:
        env["LANGSTREAM_ASV_SMOKE"] = "1"
    else:
        env.pop("LANGSTREAM_ASV_SMOKE", None)
    if not ns.publish_only:
        commits = code_commits(repo, ns.last, ns.range)
        if not commits:
            raise DashboardError("no commit that changes code in the given range")
        print(f"dashboard: {len(commits)} commit(s) that change code, on "
              f"{', '.join(pythons)}{' (smoke: small inputs)' if ns.smoke else ''}", flush=True)
        hashfile = out_dir / "commits.txt"
        hashfile.write_text("\n".join(commits) + "\n", encoding="utf-8")
        _asv(config, "machine", "--yes", env=env, quiet=True)
        args = ["run", f"HASHFILE:{hashfile}", "--skip-existing-commits", "--show-stderr"]
        if ns.bench:
            args += ["--bench", ns.bench]
        if ns.smoke:  # few samples (--quick would not save the results)
            args += ["-a", "rounds=1", "-a", "repeat=3", "-a", "warmup_time=0"]
        code = _asv(config, *args, env=env)
        if code not in (0, 2):  # 2: some benchmark failed; publish what there is
            raise DashboardError(f"asv run exited with {code}")
    if _asv(config, "publish", env=env):
        raise DashboardError("asv publish failed")
    cache = Path(ns.cache).resolve() if ns.cache else out_dir / "vendor-cache"
    make_offline(html_dir, cache)
    print(f"\ndashboard: {html_dir / 'index.html'} (renders without network access)\n"
          f"view it:   python -m http.server --directory {html_dir} 8080   "
          f"then open http://127.0.0.1:8080/")
    return 0


def _default_asv_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "asv_bench"
    candidates = [Path.cwd() / "asv_bench", Path.cwd(), here]
    for c in candidates:
        if (c / "asv.conf.json").is_file():
            return c.resolve()
    raise DashboardError("no asv_bench/asv.conf.json here: run from a langstream checkout "
                         "or pass --asv-dir")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Declare the ``dashboard`` command on the subparsers ``sub``."""
    p = sub.add_parser(
        "dashboard", help="asv history on CPython and PyPy as a page that renders offline",
        description=(
            "Run the asv suite (asv_bench/) over the last N commits that change code "
            "(or a git range) on CPython and PyPy, publish it, and make the page "
            "self-contained (scripts and styles from packages installed now, no CDN). "
            "Needs asv (pip install -e '.[bench]'), git, and for the page's assets pip "
            "and apt-get (Debian)."),
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", type=_positive, default=5, metavar="N",
                       help="benchmark the last N commits that change code (default 5)")
    which.add_argument("--range", metavar="REV_RANGE",
                       help="benchmark the commits of a git range instead, e.g. main~20..main")
    p.add_argument("--python", default="cpython,pypy", metavar="LIST", type=_python_list,
                   help="interpreters, comma-separated: cpython, pypy, or asv specs such as "
                        "3.11 / pypy3.9 (default cpython,pypy)")
    p.add_argument("-b", "--bench", metavar="REGEX",
                   help="only the benchmarks whose name matches REGEX (asv run --bench)")
    p.add_argument("--smoke", action="store_true",
                   help="small inputs, few samples (LANGSTREAM_ASV_SMOKE=1); kept in "
                        "results-smoke/ and html-smoke/, apart from full-size results")
    p.add_argument("--branch", help="branch whose history is graphed (default: the current one)")
    p.add_argument("--asv-dir", metavar="DIR",
                   help="the asv_bench folder (default: ./asv_bench of the checkout)")
    p.add_argument("--output", metavar="DIR",
                   help="where results, html and the asset cache go (default asv_bench/.dashboard)")
    p.add_argument("--cache", metavar="DIR",
                   help="where the asset packages are installed (default OUTPUT/vendor-cache)")
    p.add_argument("--publish-only", action="store_true",
                   help="run nothing: publish the results already there and vendor the assets")
    p.set_defaults(func=main)
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


_SPEC = re.compile(r"^(cpython|pypy|pypy[0-9][0-9.]*|[0-9][0-9.]*)$")


def _python_list(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not _SPEC.match(n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected cpython, pypy or asv specs such as 3.11 / pypy3.9, got {text!r}")
    return names
