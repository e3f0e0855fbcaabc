"""``python -m langstream``: help, bad arguments, closed pipes, the demo's story.

Each case runs the real command in a subprocess (the environment, hence the
backend chosen by ``LANGSTREAM_NO_EXTENSIONS``, is inherited).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from langstream.__main__ import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langstream", *args], cwd=str(ROOT),
                          env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, usage", [
    (["demo", "--delay", "-1"], "usage: python -m langstream demo"),
    (["demo", "--delay", "soon"], "usage: python -m langstream demo"),
    (["demo", "--delay", "nan"], "usage: python -m langstream demo"),
    (["demo", "--no-such-option"], "usage: python -m langstream demo"),
    (["dashboard", "--last", "0"], "usage: python -m langstream dashboard"),
    (["dashboard", "--last", "2", "--range", "a..b"], "usage: python -m langstream dashboard"),
    (["dashboard", "--python", "jython"], "usage: python -m langstream dashboard"),
    (["bench", "--no-such-option"], "usage: python -m langstream bench"),
    ([], "usage: python -m langstream"),
    (["no-such-command"], "usage: python -m langstream"),
])
def test_bad_arguments_exit_2_with_the_commands_usage(args: List[str], usage: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith(usage), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_delay_error_names_the_option_and_value() -> None:
    err = cli("demo", "--delay", "-1").stderr
    assert "--delay" in err and "'-1'" in err, err


def test_top_level_help_describes_every_command() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    assert "streaming layer for in-process agent runs" in proc.stdout
    for command in ("demo", "bench", "dashboard"):
        assert re.search(rf"^\s+{command}\s+\S", proc.stdout, re.M), proc.stdout


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_has_a_description() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"demo", "bench", "dashboard"} <= set(commands)
    for name, sub in commands.items():
        if name == "bench":  # parses its own arguments (langstream._bench)
            continue
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"


def test_bench_help_is_its_own() -> None:
    proc = cli("bench", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m langstream bench")


def test_closed_pipe_ends_quietly() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "langstream", "demo", "--delay", "0.02"],
                            cwd=str(ROOT), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    proc.stderr.close()
    assert first.startswith(b"langstream demo")
    assert err == "", err
    assert code == 0


@pytest.fixture(scope="module")
def stories() -> dict:
    out = {}
    for lane, extra in (("sync", []), ("async", ["--async"])):
        proc = cli("demo", "--delay", "0", *extra)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        out[lane] = proc.stdout.splitlines()
    return out


def test_demo_tells_the_same_story_on_both_lanes(stories: dict) -> None:
    sync, async_ = stories["sync"], stories["async"]
    assert sync[0].startswith("langstream demo (sync lane")
    assert async_[0].startswith("langstream demo (async lane")
    assert sync[1:] == async_[1:]


def test_demo_shows_the_subgraph_updates_progress_and_interrupt(stories: dict) -> None:
    text = "\n".join(stories["sync"])
    assert "  subgraph  research: started" in text
    assert "  subgraph  research: completed" in text
    inside = [line for line in stories["sync"] if line.startswith("    research ")]
    assert any("progress  search_docs: calling tool" in line for line in inside)
    assert any("update    search_issues:" in line for line in inside)
    assert any("snapshot" in line for line in inside)
    assert "  update    plan:" in text
    assert "  progress  draft: 70%" in text
    (interrupt,) = [line for line in stories["sync"] if "INTERRUPT" in line]
    assert "Publish this draft?" in interrupt and "approve-1" in interrupt
    assert "interrupted: True" in text
    # the interrupt's snapshot is shown as the interrupt, not as one more snapshot
    from langstream.__main__ import simulated_agent_run

    plain = [p for p in simulated_agent_run() if p["type"] == "values" and not p["interrupts"]]
    assert sum("snapshot" in line for line in stories["sync"]) == len(plain)
    assert stories["sync"][stories["sync"].index(interrupt) + 1] == "interrupted: True"


def test_demo_never_cuts_a_word(stories: dict) -> None:
    from langstream.__main__ import simulated_agent_run

    words = set()
    for part in simulated_agent_run():
        words.update(re.findall(r"\w+", repr(part["data"])))
    for line in stories["sync"][1:]:
        for word in re.findall(r"\w+", line):
            assert word in words or word in {
                "snapshot", "progress", "update", "subgraph", "started", "completed",
                "INTERRUPT", "id", "the", "run", "waits", "for", "an", "answer", "notes",
                "draft", "interrupted", "True", "waiting", "interrupt", "output", "question",
            } or word.isdigit(), (word, line)
