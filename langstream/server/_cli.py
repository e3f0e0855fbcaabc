"""``python -m langstream serve``: the SSE app under uvicorn."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, List, Optional

from langstream.server._app import DEFAULT_BATCH, DEFAULT_HEARTBEAT


HELP = "serve runs published to Redis as Server-Sent Events and a live page"
DESCRIPTION = ("Serve runs published to Redis (langstream.integrations.redis.publish) as "
               "Server-Sent Events (GET /runs/{key}/events: id = seq, Last-Event-ID resume, "
               "an end event) and a live page (GET /runs/{key}), under uvicorn.")


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of ``serve`` (``python -m langstream.server``-style use)."""
    parser = argparse.ArgumentParser(prog="python -m langstream serve", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``python -m langstream`` subparsers ``sub``."""
    parser = sub.add_parser("serve", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=lambda ns: run(ns, parser))
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``."""
    parser.add_argument("--redis", required=True, metavar="URL",
                        help="Redis URL, e.g. redis://localhost:6379/0")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT,
                        help=f"seconds of silence before a ping comment (default {DEFAULT_HEARTBEAT:g})")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help=f"Redis entries read and held per connection at a time (default {DEFAULT_BATCH})")
    parser.add_argument("--key-prefix", default="", metavar="PREFIX",
                        help="serve only run keys starting with PREFIX (others are 404)")
    parser.add_argument("--demo", nargs="?", const="demo", default=None, metavar="KEY",
                        help="also publish a simulated agent run (tokens, a subgraph) to "
                             "Redis key KEY (default 'demo') and print its page URL")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level (default info)")


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``python -m langstream serve`` with ``argv`` (the words after ``serve``)."""
    parser = build_parser()
    return run(parser.parse_args(argv), parser)


def run(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Serve with parsed options ``ns`` (errors reported through ``parser``)."""
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {ns.port}")
    if not ns.heartbeat > 0:
        parser.error(f"--heartbeat must be > 0, got {ns.heartbeat}")
    if ns.batch < 1:
        parser.error(f"--batch must be >= 1, got {ns.batch}")
    if ns.demo is not None and not ns.demo.startswith(ns.key_prefix):
        parser.error(f"--demo key {ns.demo!r} does not start with --key-prefix {ns.key_prefix!r}")
    if "://" not in ns.redis:
        parser.error(f"--redis must be a URL like redis://localhost:6379/0, got {ns.redis!r}")
    try:
        import uvicorn
    except ImportError:
        parser.error("serving needs uvicorn and Starlette: pip install 'langstream[server,redis]'")
    from langstream.server._app import create_app

    try:
        app = create_app(ns.redis, heartbeat=ns.heartbeat, batch=ns.batch,
                         key_prefix=ns.key_prefix)
    except ImportError as exc:
        parser.error(str(exc))
    config = uvicorn.Config(app, host=ns.host, port=ns.port, log_level=ns.log_level)
    server = uvicorn.Server(config)
    if ns.demo is not None:
        from urllib.parse import quote

        from langstream.server._demo import start_demo

        async def announce() -> None:
            # once listening: the real port (--port 0 picks one), then the run
            while not server.started:
                await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            host = "127.0.0.1" if ns.host in ("0.0.0.0", "::") else ns.host
            print(f"demo run: http://{host}:{port}/runs/{quote(ns.demo, safe='')}", flush=True)
            start_demo(ns.redis, ns.demo)

        async def run() -> None:
            waiter = asyncio.ensure_future(announce())
            try:
                await server.serve()
            finally:
                waiter.cancel()

        asyncio.run(run())
    else:
        server.run()
    return 0
