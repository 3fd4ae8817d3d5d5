"""The console's HTTP side: the page, its JSON API and its live stream.

Read-only: every route is a GET. ``/api/stream`` is a Server-Sent Events stream that
sends the whole state (``event: state``) whenever the chain view changes; the page
draws from it without reloading. Every error is JSON ``{"error": ...}`` with a 4xx or
5xx status; the page and its files are served under a strict Content-Security-Policy
(no inline script or style; Chart.js from the gateway's pinned vendor folder).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from enclave_agent.gateway import vendor
from enclave_console.view import MAX_REQUESTS, MAX_ROUNDS, ConsortiumView
from enclave_console.watcher import Watcher

log = logging.getLogger(__name__)

WATCHER = web.AppKey("watcher", Watcher)
STREAMS = web.AppKey("streams", set)  # open SSE responses (bounded by MAX_STREAMS)
STOPPING = web.AppKey("stopping", asyncio.Event)  # set: live streams end (shutdown)
WEB_FILES = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "charts.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MAX_STREAMS = 32
# What the page draws: the stream sends these many of the newest (the API has all kept).
STREAM_ROUNDS, STREAM_REQUESTS = 50, 200
STREAM_TICK = 0.25  # seconds between checks for a new version
KEEPALIVE = 15.0
_ID = re.compile(r"[0-9]{1,78}")  # a uint256 in decimal


def _error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=PAGE_HEADERS)


def _json(body: Any) -> web.Response:
    return web.json_response(body, headers=PAGE_HEADERS)


def _id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    if not _ID.fullmatch(text) or int(text) >= 2**256:
        raise web.HTTPBadRequest(reason=f"{what} id must be a decimal number below 2**256, not {text[:80]!r}")
    return int(text)


def _limit(request: web.Request, cap: int) -> int:
    text = request.query.get("limit", str(cap))
    if not text.isdigit() or len(text) > 8 or not 1 <= int(text) <= cap:
        raise web.HTTPBadRequest(reason=f"limit must be a whole number from 1 to {cap}, not {text[:80]!r}")
    return int(text)


async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    content_type = WEB_FILES.get(name)
    if content_type is None:
        return _error(404, f"no page file {name[:80]!r}")
    text = resources.files("enclave_console").joinpath("web", name).read_text()
    return web.Response(text=text, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)


async def vendor_file(request: web.Request) -> web.Response:
    """Chart.js and its licence, from the gateway's vendor folder, only as pinned."""
    name = request.match_info["name"]
    data = await asyncio.get_running_loop().run_in_executor(None, vendor.read, name)
    content_type = vendor.content_type(name)
    if data is None or content_type is None:
        return _error(404, f"no vendored file {name[:80]!r}")
    return web.Response(body=data, content_type=content_type, charset="utf-8", headers=PAGE_HEADERS)


async def state(request: web.Request) -> web.Response:
    return _json(request.app[WATCHER].snapshot())


async def overview(request: web.Request) -> web.Response:
    snap = request.app[WATCHER].snapshot()
    members = snap["members"]
    return _json(
        {
            "chain": snap["chain"],
            "head": snap["head"],
            "epoch": snap["epoch"],
            "counts": {
                "organisations": len(snap["organisations"]),
                "active_members": sum(1 for m in members if m["active"]),
                "rounds": len(snap["rounds"]),
                "requests": len(snap["requests"]),
                "models": len(snap["models"]),
            },
            "limits": snap["limits"],
        }
    )


def _section(key: str, cap: int | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        limit = _limit(request, cap) if cap else None
        snap = request.app[WATCHER].snapshot(**({key: limit} if limit is not None else {}))
        return _json({"chain": snap["chain"], key: snap[key]})

    return handler


async def one_round(request: web.Request) -> web.Response:
    round_id = _id(request, "round")

    def find(view: ConsortiumView) -> dict[str, Any] | None:
        found = view.rounds.get(round_id)
        return None if found is None else view.round_json(found)

    found = request.app[WATCHER].read(find)
    if found is None:
        return _error(
            404, f"round {round_id} is not in the view: never opened, or older than the last {MAX_ROUNDS}"
        )
    return _json(found)


async def one_request(request: web.Request) -> web.Response:
    request_id = _id(request, "request")

    def find(view: ConsortiumView) -> dict[str, Any] | None:
        found = view.requests.get(request_id)
        return None if found is None else view.request_json(found)

    found = request.app[WATCHER].read(find)
    if found is None:
        return _error(
            404, f"request {request_id} is not in the view: never made, or older than the last {MAX_REQUESTS}"
        )
    return _json(found)


async def healthz(request: web.Request) -> web.Response:
    status = request.app[WATCHER].snapshot()["chain"]
    return web.json_response(status, status=200 if status["reachable"] else 503, headers=PAGE_HEADERS)


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``event: state`` with the state at once and on every change (the
    newest ``STREAM_ROUNDS`` rounds and ``STREAM_REQUESTS`` requests)."""
    streams = request.app[STREAMS]
    if len(streams) >= MAX_STREAMS:
        return _error(503, f"too many live pages ({MAX_STREAMS}); try again later")
    watcher = request.app[WATCHER]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **PAGE_HEADERS}
    )
    await response.prepare(request)
    streams.add(response)
    sent, idle = -1, 0.0
    try:
        while not request.app[STOPPING].is_set():
            version = watcher.version
            if version != sent:
                snap = watcher.snapshot(rounds=STREAM_ROUNDS, requests=STREAM_REQUESTS)
                body = json.dumps(snap, separators=(",", ":"))
                await response.write(f"event: state\nid: {version}\ndata: {body}\n\n".encode())
                sent, idle = version, 0.0
            elif idle >= KEEPALIVE:
                await response.write(b": keepalive\n\n")
                idle = 0.0
            await asyncio.sleep(STREAM_TICK)
            idle += STREAM_TICK
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        streams.discard(response)
    return response


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


def build_app(watcher: Watcher) -> web.Application:
    app = web.Application(client_max_size=1024, middlewares=[_json_errors])
    app[WATCHER] = watcher
    app[STREAMS] = set()
    app[STOPPING] = asyncio.Event()
    app.router.add_get("/", page)
    app.router.add_get("/web/{name}", page)
    app.router.add_get("/web/vendor/{name}", vendor_file)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/members", _section("members"))
    app.router.add_get("/api/epochs", _section("epochs"))
    app.router.add_get("/api/rounds", _section("rounds", MAX_ROUNDS))
    app.router.add_get("/api/rounds/{id}", one_round)
    app.router.add_get("/api/requests", _section("requests", MAX_REQUESTS))
    app.router.add_get("/api/requests/{id}", one_request)
    app.router.add_get("/api/usage", _section("usage"))
    app.router.add_get("/api/activity", _section("activity"))
    app.router.add_get("/api/stream", stream)
    return app
