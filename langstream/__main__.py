"""Command line: ``python -m langstream <command>``.

Commands (``python -m langstream --help`` lists them, ``<command> --help``
describes each):

* ``demo [--async]``: stream a built-in simulated agent run and print what
  happens as it happens; both lanes tell the same story.
* ``bench``: langstream side by side with LangGraph (``langstream._bench``).
* ``dashboard``: the asv benchmark history as a web page that renders without
  network access (``langstream._dashboard``).

Adding a command takes one function that declares its parser (see
``_add_demo``) and one entry in ``COMMANDS``.  A command that parses its own
arguments (like ``bench``) goes in ``DELEGATED`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
import time
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Tuple

from langstream import (
    CustomTransformer,
    UpdatesTransformer,
    astream_events,
    stream_events,
)
from langstream import eventlog as _el

PROG = "python -m langstream"
WIDTH = 72  # longest text shown for a value; longer text is cut at a word boundary


# -- the simulated agent run ---------------------------------------------------

_PAUSE = None  # what _story() yields where the simulated node "works"


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.n:08x}-demo"


def _story() -> Iterator[Optional[Dict[str, Any]]]:
    """The v2 stream parts of a small agent run, with ``_PAUSE`` markers where
    a node spends its time: plan, research (a subgraph with two tool calls),
    draft (with progress events), and a human-approval interrupt."""
    ids = _Ids()
    state: Dict[str, Any] = {"question": "What changed in v3 streaming?", "notes": [], "draft": ""}

    def snap(ns: tuple, interrupts: Tuple[Any, ...] = ()) -> Dict[str, Any]:
        data = {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
        return {"type": "values", "ns": ns, "data": data, "interrupts": list(interrupts)}

    def start(ns: tuple, name: str) -> Dict[str, Any]:
        return {"type": "tasks", "ns": ns, "data": {"id": ids.next(), "name": name,
                                                     "input": snap(ns)["data"],
                                                     "triggers": [name]}}

    def result(ns: tuple, task: Dict[str, Any], update: Any,
               interrupts: Tuple[Any, ...] = ()) -> Dict[str, Any]:
        return {"type": "tasks", "ns": ns, "data": {"id": task["data"]["id"],
                                                     "name": task["data"]["name"],
                                                     "error": None, "result": update,
                                                     "interrupts": list(interrupts)}}

    def node(ns: tuple, name: str, progress: str, update: Dict[str, Any]):
        task = start(ns, name)
        yield task
        yield {"type": "custom", "ns": ns, "data": {"node": name, "progress": progress}}
        yield _PAUSE
        for key, value in update.items():
            if isinstance(state[key], list):
                state[key].extend(value)
            else:
                state[key] = value
        yield {"type": "updates", "ns": ns, "data": {name: update}}
        yield result(ns, task, update)
        yield snap(ns)

    root: tuple = ()
    yield snap(root)
    yield from node(root, "plan", "thinking",
                    {"notes": ["split the question into two lookups"]})
    research = start(root, "research")
    yield research
    sub = (f"research:{research['data']['id']}",)
    yield snap(sub)
    for tool in ("search_docs", "search_issues"):
        yield from node(sub, tool, "calling tool", {"notes": [f"{tool}: 3 hits"]})
    yield result(root, research, {"notes": state["notes"][-2:]})
    yield snap(root)
    draft = start(root, "draft")
    yield draft
    for pct in (30, 70, 100):
        yield {"type": "custom", "ns": root, "data": {"node": "draft", "progress": f"{pct}%"}}
        yield _PAUSE
    text = ("v3 streams are typed projections over one numbered event log, pulled by "
            "the consumer's own loop; subgraphs, progress and interrupts arrive in order.")
    state["draft"] = text
    yield {"type": "updates", "ns": root, "data": {"draft": {"draft": text}}}
    yield result(root, draft, {"draft": text})
    yield snap(root)
    approve = start(root, "approve")
    yield approve
    ask = {"value": {"question": "Publish this draft?"}, "id": "approve-1"}
    yield result(root, approve, None, (ask,))
    yield snap(root, (ask,))


def simulated_agent_run(delay: float = 0.0) -> Iterator[Dict[str, Any]]:
    """The demo's graph (sync): yields v2 stream parts, sleeping ``delay``
    seconds wherever a node works."""
    for part in _story():
        if part is _PAUSE:
            if delay:
                time.sleep(delay)
        else:
            yield part


async def asimulated_agent_run(delay: float = 0.0) -> AsyncIterator[Dict[str, Any]]:
    """The demo's graph (async): the same parts, awaiting ``delay`` seconds
    wherever a node works."""
    for part in _story():
        if part is _PAUSE:
            await asyncio.sleep(delay)
        else:
            yield part


# -- telling the story -----------------------------------------------------------

def _short(value: Any, width: int = WIDTH) -> str:
    """``value`` as text of at most ``width`` characters, cut between words."""
    text = value if isinstance(value, str) else repr(value)
    return textwrap.shorten(text, width=width, placeholder=" ...")


def _where(namespace: List[str]) -> str:
    return "/".join(segment.split(":", 1)[0] for segment in namespace)


def describe(event: Dict[str, Any]) -> List[str]:
    """The lines the demo prints for one protocol event of the main log."""
    method, params = event["method"], event["params"]
    data = params.get("data")
    ns = params.get("namespace") or []
    indent = "  " * (len(ns) + 1)
    label = f"{_where(ns)} " if ns else ""
    if method == "lifecycle":
        return [f"{indent}subgraph  {_where(data['namespace'])}: {data['event']}"]
    if method == "custom":
        return [f"{indent}{label}progress  {data['node']}: {data['progress']}"]
    if method == "updates":
        return [f"{indent}{label}update    {node}: {_short(change)}"
                for node, change in data.items()]
    if method == "values":
        interrupts = params.get("interrupts") or []
        if interrupts:
            return [f"{indent}{label}INTERRUPT {_short(i['value'].get('question', i['value']))}"
                    f" (id {i['id']}): the run waits for an answer"
                    for i in interrupts]
        return [f"{indent}{label}snapshot  notes={len(data['notes'])} "
                f"draft={_short(data['draft'], 40)!r}"]
    return [f"{indent}{label}{method:<9} {_short(data)}"]


def _ending(interrupted: bool, interrupts: Any, output: Dict[str, Any]) -> List[str]:
    lines = [f"interrupted: {interrupted}"]
    for i in interrupts:
        lines.append(f"  waiting for: {i['value'].get('question')} (interrupt id {i['id']})")
    lines.append("output:")
    for key, value in output.items():
        lines.append(f"  {key}: {_short(value)}")
    return lines


_TRANSFORMERS = [UpdatesTransformer, CustomTransformer]


def print_run(run: Any) -> None:
    """Print a sync run's main log as the demo tells it, then how it ended."""
    for event in run:  # the main log: every event, subgraphs' included
        for line in describe(event):
            print(line, flush=True)
    print("\n".join(_ending(run.interrupted, run.interrupts, run.output)))


async def aprint_run(run: Any) -> None:
    """``print_run`` for an async run."""
    async for event in run:
        for line in describe(event):
            print(line, flush=True)
    ending = _ending(await run.interrupted(), await run.interrupts(), await run.output())
    print("\n".join(ending))


def _demo_sync(delay: float, publish: Optional[Callable[[Any], Any]] = None) -> int:
    print(f"langstream demo (sync lane, event-log backend: {_el.BACKEND})")
    with stream_events(simulated_agent_run(delay), transformers=_TRANSFORMERS) as run:
        if publish is not None:
            publish(run)
        print_run(run)
    return 0


async def _demo_async(delay: float, publish: Optional[Callable[[Any], Any]] = None) -> int:
    print(f"langstream demo (async lane, event-log backend: {_el.BACKEND})")
    async with astream_events(asimulated_agent_run(delay), transformers=_TRANSFORMERS) as run:
        if publish is not None:
            publish(run)
        await aprint_run(run)
    return 0


# -- commands ----------------------------------------------------------------------

def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="stream a simulated agent run and print it as it happens",
        description=(
            "Stream a built-in simulated agent run (a plan step, a research subgraph "
            "with two tool calls, a drafting step with progress events, then a "
            "human-approval interrupt) and print each event as the consumer's loop "
            "pulls it: snapshots, updates, custom progress, the subgraph's own events "
            "(indented), its start and end, and the interrupt; then the final state. "
            "Both lanes tell the same story."),
    )
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="use the async lane (astream_events) instead of the sync one")
    p.add_argument("--delay", type=_non_negative, default=0.05, metavar="SECONDS",
                   help="seconds each simulated node works (default 0.05; 0 for none)")
    from langstream import _redis_cli

    _redis_cli.add_demo_options(p)
    p.set_defaults(func=_demo_command)


def _demo_command(ns: argparse.Namespace) -> int:
    if ns.redis is not None:
        from langstream import _redis_cli

        return _redis_cli.demo(ns)
    if ns.use_async:
        return asyncio.run(_demo_async(ns.delay))
    return _demo_sync(ns.delay)


def _add_attach(sub: Any) -> None:
    from langstream import _redis_cli

    _redis_cli.add_attach_parser(sub)


def _add_dashboard(sub: Any) -> None:
    from langstream import _dashboard

    _dashboard.add_parser(sub)


def _add_serve(sub: Any) -> None:
    from langstream.server import _cli

    _cli.add_parser(sub)


def _bench_main(argv: List[str]) -> int:
    if argv[:1] == ["redis"]:
        from langstream import _bench_redis

        return _bench_redis.main(argv[1:])
    from langstream import _bench

    return _bench.main(argv)


# commands with a parser declared here: one function each
COMMANDS: List[Callable[[Any], None]] = [_add_demo, _add_attach, _add_dashboard, _add_serve]
# commands that parse their own arguments: name -> (help, main(argv) -> exit code)
DELEGATED: Dict[str, Tuple[str, Callable[[List[str]], int]]] = {
    "bench": ("langstream side by side with LangGraph and the bare generator "
              "(see 'bench --help')", _bench_main),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m langstream`` parser, with every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=("langstream: the streaming layer for in-process agent runs. "
                     "Run '%(prog)s COMMAND --help' for a command's options."),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for add in COMMANDS:
        add(sub)
    for name, (help_text, _main) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m langstream``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in DELEGATED:
        return DELEGATED[args[0]][1](args[1:])
    parser = build_parser()
    ns, unknown = parser.parse_known_args(args)
    if unknown:  # reported with the command's own usage, not the top-level one
        _subparsers(parser)[ns.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return int(ns.func(ns) or 0)


def _subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def run(argv: Optional[List[str]] = None) -> int:
    """``main`` for a terminal: quiet when the reader of stdout goes away
    (``... | head``) or on Ctrl-C."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader closed the pipe: stop quietly; point stdout at devnull
        # so the interpreter's final flush does not complain either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
