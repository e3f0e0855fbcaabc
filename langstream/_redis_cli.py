"""``python -m langstream demo --redis URL --key KEY`` and ``python -m langstream attach``.

``demo --redis`` publishes the simulated demo run to the Redis stream ``KEY``
while printing it as ``demo`` does; ``attach`` reads a published run from
another process and prints the same projections in the same format.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, List, Optional

from langstream import CustomTransformer, UpdatesTransformer, astream_events, stream_events
from langstream import eventlog as _el

_NAMES = ("lifecycle", "values", "updates", "custom")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m langstream")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="stream the simulated agent run, publishing it to Redis")
    demo.add_argument("--redis", required=True, metavar="URL",
                      help="Redis URL, e.g. redis://localhost:6379/0 (credentials stay in it)")
    demo.add_argument("--key", required=True, help="stream key of the run")
    demo.add_argument("--async", dest="use_async", action="store_true",
                      help="use the async lane")
    demo.add_argument("--delay", type=float, default=0.05,
                      help="seconds each simulated node takes (default 0.05)")
    demo.add_argument("--maxlen", type=int, default=None, help="approximate trimming (MAXLEN ~ N)")
    demo.add_argument("--expire", type=float, default=None,
                      help="seconds the stream lives after the run ends")
    attach = sub.add_parser("attach", help="attach to a run published to Redis and print it")
    attach.add_argument("--redis", required=True, metavar="URL", help="Redis URL")
    attach.add_argument("--key", required=True, help="stream key of the run")
    attach.add_argument("--after-seq", type=int, default=0, metavar="N",
                        help="print only the events after seq N (resume)")
    attach.add_argument("--async", dest="use_async", action="store_true",
                        help="use the async lane (aattach)")
    attach.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the key to appear (default 10)")
    return parser


def _client(url: str, is_async: bool) -> Any:
    try:
        if is_async:
            import redis.asyncio as aredis

            return aredis.Redis.from_url(url)
        import redis
    except ImportError:
        sys.exit("the Redis commands need redis-py: pip install 'langstream[redis]'")
    return redis.Redis.from_url(url)


def _print_sync(run: Any) -> None:
    from langstream.__main__ import _line

    for name, item in run.interleave(*_NAMES):
        print("  " + _line(name, item), flush=True)
    print(f"interrupted: {run.interrupted}  interrupts: {run.interrupts}")
    print(f"output: {run.output}")


async def _print_async(run: Any) -> None:
    from langstream.__main__ import _line

    async def show(name: str) -> None:
        async for item in getattr(run, name):
            print("  " + _line(name, item), flush=True)

    async def subgraphs() -> None:
        async for handle in run.subgraphs:
            print(f"  subgraph   {handle.graph_name} ({handle.trigger_call_id}) started")
            async for snapshot in handle.values:
                print(f"    {handle.graph_name}.values notes={len(snapshot['notes'])}")
            print(f"  subgraph   {handle.graph_name} {handle.status}")

    await asyncio.gather(show("lifecycle"), show("values"), show("custom"), subgraphs())
    print(f"interrupted: {await run.interrupted()}  interrupts: {await run.interrupts()}")
    print(f"output: {await run.output()}")


def _demo(ns: argparse.Namespace) -> int:
    from langstream.__main__ import _asimulated, simulated_agent_run
    from langstream.integrations.redis import publish

    lane = "async" if ns.use_async else "sync"
    print(f"langstream demo ({lane}, event-log backend: {_el.BACKEND}), "
          f"publishing to Redis key {ns.key!r}")
    extra = [UpdatesTransformer, CustomTransformer]
    if not ns.use_async:
        client = _client(ns.redis, False)
        try:
            with stream_events(simulated_agent_run(ns.delay), transformers=extra) as run:
                publish(run, client, ns.key, maxlen=ns.maxlen, expire=ns.expire)
                _print_sync(run)
        finally:
            client.close()
        return 0

    async def main() -> None:
        client = _client(ns.redis, True)
        try:
            async with astream_events(_asimulated(ns.delay), transformers=extra) as run:
                publish(run, client, ns.key, maxlen=ns.maxlen, expire=ns.expire)
                await _print_async(run)
        finally:
            await client.aclose()

    asyncio.run(main())
    return 0


def _attach(ns: argparse.Namespace) -> int:
    from langstream.integrations.redis import aattach, attach

    print(f"langstream attach ({'async' if ns.use_async else 'sync'}) to Redis key {ns.key!r}"
          + (f" after seq {ns.after_seq}" if ns.after_seq else ""))
    if not ns.use_async:
        client = _client(ns.redis, False)
        try:
            with attach(client, ns.key, after_seq=ns.after_seq, wait_timeout=ns.wait) as run:
                _print_sync(run)
        finally:
            client.close()
        return 0

    async def main() -> None:
        client = _client(ns.redis, True)
        try:
            async with aattach(client, ns.key, after_seq=ns.after_seq,
                               wait_timeout=ns.wait) as run:
                await _print_async(run)
        finally:
            await client.aclose()

    asyncio.run(main())
    return 0


def main(argv: List[str]) -> int:
    """Run ``demo --redis ...`` or ``attach ...``; errors print one line, exit 1."""
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "demo" and ns.delay < 0:
        parser.error(f"--delay must be >= 0, got {ns.delay}")
    if ns.command == "attach" and ns.after_seq < 0:
        parser.error(f"--after-seq must be >= 0, got {ns.after_seq}")
    try:
        return _demo(ns) if ns.command == "demo" else _attach(ns)
    except (ConnectionError, LookupError, ValueError, TypeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. redis-py's own errors
        if type(exc).__module__.startswith("redis"):
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        raise


def wants(args: Optional[List[str]]) -> bool:
    """True when ``python -m langstream`` arguments are for this module."""
    args = list(args or ())
    if args[:1] == ["attach"]:
        return True
    return args[:1] == ["demo"] and any(a == "--redis" or a.startswith("--redis=") for a in args)
