"""Serve runs published to Redis to browsers: Server-Sent Events and a live page.

``create_app(redis)`` builds a Starlette ASGI app (optional extra ``server``:
``pip install 'langstream[server]'``) with three routes:

``GET /runs/{key}/events``
    The run's main log as Server-Sent Events: ``id:`` = the event's ``seq``,
    ``event:`` = its method, ``data:`` = the wire-format JSON (one line).
    A reconnecting ``EventSource`` sends ``Last-Event-ID`` and gets every
    later event exactly once; a first connection may pass ``?after=<seq>``.
    The stream ends with ``event: end`` whose data is the run's terminal
    record (``{"v": 1, "status": "completed" | "failed" | "interrupted",
    "last_seq": n, ...}``) and whose id is the run's last seq, so a client
    that reconnects after it gets the end again and nothing else.  Idle
    streams get a comment line (``: ping``) every ``heartbeat`` seconds.
    Filters: ``?methods=values,messages`` keeps those methods only, and
    ``?namespace=research/search_docs`` keeps events whose namespace starts
    with those segments (a segment without ``:task_id`` matches any task
    of that node; a ``lifecycle`` event is matched on the namespace it
    reports).  ``?event=message`` sends every method event without its
    ``event:`` line, so a browser dispatches each one, ``custom:<name>``
    and a transformer's own methods included, to one ``message`` listener
    (the method is in the data); ``end``, ``lag`` and ``server-error`` keep
    their names.  If history the client asked for was trimmed, an
    ``event: lag`` (data ``{"missed": n, "next_seq": s}``) says how many
    events are gone before the stream continues at the oldest retained
    one, as ``StreamLagError`` does locally.
``GET /runs/{key}``
    A self-contained live page (no CDN, no build step): latest values,
    the subgraph lifecycle tree, tokens as they stream, the last seq and a
    reconnect indicator; every event it receives counts for the last seq,
    whatever its method (it reads ``?event=message``).  Query parameters are
    passed on to the events URL.
``GET /healthz``
    ``{"ok": true}`` once Redis answers ``PING``.

Bad input is a 4xx with ``{"error": "<what is wrong>"}``: an unknown key
(404), a key that is not a stream (409), a malformed ``Last-Event-ID`` /
``after`` / ``methods`` / ``namespace`` / ``event`` (400), a resume point past the end
of a finished run (416).  Redis being unreachable is a 503.

Backpressure: each SSE connection reads Redis at its client's pace, at
most ``batch`` entries at a time (``XRANGE ... COUNT batch``), and writes
them with one ``send`` that waits while the ASGI server's transport buffer
is above its high-water mark (uvicorn: 64 KiB).  So a slow client pins at
most one batch of entries plus the transport buffer (and the kernel socket
buffers), whatever the run's length; idle clients wait on one shared
watcher per run key (one blocking ``XREAD`` per key, not per client).

``python -m langstream serve --redis URL [--host H] [--port P]`` runs the
app under uvicorn.
"""

from __future__ import annotations

from langstream.server._app import (
    DEFAULT_BATCH,
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_READS,
    KNOWN_METHODS,
    create_app,
)
from langstream.server._cli import main

__all__ = ["DEFAULT_BATCH", "DEFAULT_HEARTBEAT", "DEFAULT_MAX_READS", "KNOWN_METHODS",
           "create_app", "main"]
