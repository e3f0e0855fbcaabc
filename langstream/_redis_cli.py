"""``python -m langstream demo --redis URL --key KEY`` and ``python -m langstream attach``.

``demo --redis`` publishes the simulated demo run to the Redis stream ``KEY``
while printing it as ``demo`` does; ``attach`` reads a published run from
another process and prints it the same way (every event of the main log,
then how the run ended), so the two outputs can be compared line by line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def add_demo_options(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` options that publish the run to Redis."""
    group = parser.add_argument_group(
        "publish to Redis",
        "With --redis, the run's main log is also published to the Redis stream KEY "
        "(needs the 'redis' extra), where 'python -m langstream attach' reads it.")
    group.add_argument("--redis", metavar="URL", default=None,
                       help="Redis URL, e.g. redis://localhost:6379/0 (credentials stay in it)")
    group.add_argument("--key", metavar="KEY", default=None,
                       help="stream key of the run (required with --redis)")
    group.add_argument("--maxlen", type=_positive_int, default=None, metavar="N",
                       help="trim the stream to about N entries (XADD MAXLEN ~ N)")
    group.add_argument("--expire", type=_seconds, default=None, metavar="SECONDS",
                       help="seconds the stream lives after the run ends")


def add_attach_parser(sub: Any) -> None:
    """Declare the ``attach`` command."""
    p = sub.add_parser(
        "attach", help="attach to a run published to Redis and print it",
        description=(
            "Attach to a run published to the Redis stream KEY (by 'demo --redis' or "
            "langstream.integrations.redis.publish) from this process, and print every "
            "event of its main log as the demo does, then how it ended. Needs the "
            "'redis' extra."),
    )
    p.add_argument("--redis", required=True, metavar="URL",
                   help="Redis URL, e.g. redis://localhost:6379/0 (credentials stay in it)")
    p.add_argument("--key", required=True, metavar="KEY", help="stream key of the run")
    p.add_argument("--after-seq", type=_non_negative_int, default=0, metavar="N",
                   help="print only the events after seq N (resume); default 0, from the start")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="use the async lane (aattach) instead of the sync one")
    p.add_argument("--wait", type=_seconds, default=10.0, metavar="SECONDS",
                   help="seconds to wait for the key to appear (default 10)")
    p.add_argument("--idle-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="fail when the run gets no new entry for SECONDS (its producer died "
                        "without ending it); default: wait as long as the run lasts")
    p.set_defaults(func=_attach_command)


def _client(url: str, is_async: bool) -> Any:
    try:
        if is_async:
            import redis.asyncio as aredis

            return aredis.Redis.from_url(url)
        import redis
    except ImportError:
        sys.exit("the Redis commands need redis-py: pip install -e '.[redis]'")
    return redis.Redis.from_url(url)


def _report_errors(fn: Callable[[], _T]) -> Any:
    """Run ``fn``; connection and lookup errors print one line and exit 1."""
    try:
        return fn()
    except (ConnectionError, TimeoutError, LookupError, ValueError, TypeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - redis-py's own errors
        if type(exc).__module__.startswith("redis"):
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        raise


def demo(ns: argparse.Namespace) -> int:
    """``demo --redis URL --key KEY``: the demo, published to Redis."""
    from langstream.__main__ import _demo_async, _demo_sync, _subparsers, build_parser
    from langstream.integrations.redis import publish

    if not ns.key:
        _subparsers(build_parser())["demo"].error("--redis needs --key KEY")
    print(f"publishing to Redis key {ns.key!r}")

    def publisher(client: Any) -> Callable[[Any], Any]:
        return lambda run: publish(run, client, ns.key, maxlen=ns.maxlen, expire=ns.expire)

    def sync_main() -> int:
        client = _client(ns.redis, False)
        try:
            return _demo_sync(ns.delay, publisher(client))
        finally:
            client.close()

    async def async_main() -> int:
        client = _client(ns.redis, True)
        try:
            return await _demo_async(ns.delay, publisher(client))
        finally:
            await client.aclose()

    return _report_errors(lambda: asyncio.run(async_main()) if ns.use_async else sync_main())


def _attach_command(ns: argparse.Namespace) -> int:
    from langstream.__main__ import aprint_run, print_run
    from langstream.integrations.redis import aattach, attach

    lane = "async" if ns.use_async else "sync"
    print(f"langstream attach ({lane} lane) to Redis key {ns.key!r}"
          + (f" after seq {ns.after_seq}" if ns.after_seq else ""))

    def sync_main() -> int:
        client = _client(ns.redis, False)
        try:
            with attach(client, ns.key, after_seq=ns.after_seq, wait_timeout=ns.wait,
                        idle_timeout=ns.idle_timeout) as run:
                print_run(run)
        finally:
            client.close()
        return 0

    async def async_main() -> int:
        client = _client(ns.redis, True)
        try:
            async with aattach(client, ns.key, after_seq=ns.after_seq,
                               wait_timeout=ns.wait, idle_timeout=ns.idle_timeout) as run:
                await aprint_run(run)
        finally:
            await client.aclose()
        return 0

    return _report_errors(lambda: asyncio.run(async_main()) if ns.use_async else sync_main())
