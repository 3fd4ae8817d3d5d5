"""Waking the agent loop when the node announces a block.

Every step of a round or a request is a transaction the next party reacts to; with
polling alone each reaction waits up to one poll interval. ``NewHeads`` subscribes to
``newHeads`` over the node's WebSocket endpoint (Anvil, Hardhat and Ganache serve it
on their HTTP port) and wakes the loop the moment a block arrives. The subscription
only says *when* to look: the loop still reads logs over HTTP, so a missed or late
notification costs at most one poll interval, never an event. Without a WebSocket
endpoint (a proxy, a provider without one) the loop polls as before; the thread
tries again every ``retry`` seconds.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from enclave_agent.chain.client import redact_url

log = logging.getLogger(__name__)

SUBSCRIBE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})


def websocket_url(rpc_url: str) -> str:
    """The WebSocket endpoint at the HTTP endpoint's address (ws for http, wss for https)."""
    parts = urlsplit(rpc_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) URL: {redact_url(rpc_url)}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _is_notification(message: str | bytes) -> bool:
    """Whether a message is a subscription notification; anything else (garbage
    included) is ignored: it says nothing about blocks."""
    try:
        note = json.loads(message)
    except (ValueError, RecursionError):
        return False
    return isinstance(note, dict) and note.get("method") == "eth_subscription"


class NewHeads:
    """A daemon thread that sets an event on every ``newHeads`` notification."""

    def __init__(self, rpc_url: str, *, retry: float = 30.0, open_timeout: float = 5.0) -> None:
        self.url = websocket_url(rpc_url)
        self.retry, self.open_timeout = retry, open_timeout
        self.heads = 0  # notifications received (tests and metrics)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._connection: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="new-heads", daemon=True)
        self.subscribed = False

    def start(self) -> NewHeads:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        connection = self._connection
        if connection is not None:
            connection.close()
        self._thread.join(timeout=5)

    def wait(self, timeout: float) -> bool:
        """Block until a new head (True) or ``timeout`` seconds (False)."""
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

    def _run(self) -> None:
        announced = False
        while not self._closed.is_set():
            try:
                with connect(self.url, open_timeout=self.open_timeout, max_size=2**20) as connection:
                    self._connection = connection
                    connection.send(SUBSCRIBE)
                    reply = json.loads(connection.recv(timeout=self.open_timeout))
                    if not isinstance(reply, dict) or "result" not in reply:
                        raise ValueError(f"eth_subscribe refused: {str(reply)[:200]}")
                    self.subscribed = True
                    log.info("following new blocks over %s", redact_url(self.url))
                    announced = False
                    for message in connection:
                        if _is_notification(message):
                            self.heads += 1
                            self._wake.set()
            except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                if not announced and not self._closed.is_set():
                    log.info(
                        "no block subscription at %s (%s): polling", redact_url(self.url), type(exc).__name__
                    )
                    announced = True
            finally:
                self.subscribed = False
                self._connection = None
            self._closed.wait(self.retry)
