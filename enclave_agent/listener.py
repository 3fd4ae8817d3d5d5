"""Serving an aiohttp app (the gateway's API, a provider's health endpoint, the
consortium page) with the limits aiohttp itself lacks.

- A client must send a complete request head within ``HEADER_TIMEOUT`` seconds of
  connecting; slow-header connections are closed (aiohttp waits forever).
- Idle keep-alive connections close after ``KEEPALIVE`` seconds (aiohttp: an hour).
- A malformed request is logged without its bytes: aiohttp would log the offending
  header line, which may hold an API key.

The body read timeout lives with the handlers (``gateway.http``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0
KEEPALIVE = 15.0


class _NoRawRequests(logging.Filter):
    """Keep the event, drop the bytes of a request aiohttp could not parse."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed HTTP request refused with 400 (%s); its bytes are not logged"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _NoRawRequests()


@dataclass
class Listener:
    runner: web.AppRunner
    server: asyncio.Server
    port: int

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.runner.cleanup()


async def listen(
    app: web.Application, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT
) -> Listener:
    """Serve ``app`` on ``host:port`` (0: a free port, see ``Listener.port``)."""
    server_log = logging.getLogger("aiohttp.server")
    if _FILTER not in server_log.filters:
        server_log.addFilter(_FILTER)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE)
    await runner.setup()
    factory = runner.server
    assert factory is not None
    loop = asyncio.get_running_loop()

    def protocol() -> web.RequestHandler:
        handler = factory()

        def give_up() -> None:
            # No complete request head yet: a slow (or silent) client holds a connection.
            transport = handler.transport
            if handler._request_count == 0 and transport is not None and not transport.is_closing():
                transport.close()

        loop.call_later(header_timeout, give_up)
        return handler

    server = await loop.create_server(protocol, host, port, reuse_address=True)
    bound = int(server.sockets[0].getsockname()[1])
    return Listener(runner, server, bound)
