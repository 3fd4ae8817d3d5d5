"""Waking the agent loop when the node announces a block.

Every step of a round or a request is a transaction the next party reacts to; with
polling alone each reaction waits up to one poll interval. ``NewHeads`` subscribes to
``newHeads`` over the node's WebSocket endpoint (Anvil, Hardhat and Ganache serve it
on their HTTP port) and wakes the loop the moment a block arrives. The subscription
only says *when* to look, and which block (``Head``: its number, hash and logs bloom)
so that the follower can skip a block with nothing for us or read exactly its logs;
logs are still read over HTTP, so a missed, late or garbled notification costs at
most one poll interval, never an event. Without a WebSocket
endpoint (a proxy, a provider without one) the loop polls as before; the thread
tries again every ``retry`` seconds.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from enclave_agent.chain.transport import redact_url

log = logging.getLogger(__name__)

SUBSCRIBE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})


def websocket_url(rpc_url: str) -> str:
    """The WebSocket endpoint at the HTTP endpoint's address (ws for http, wss for https)."""
    parts = urlsplit(rpc_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) URL: {redact_url(rpc_url)}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


BLOOM_BYTES = 256


@dataclass(frozen=True)
class Head:
    """The header fields of a new block the follower uses."""

    number: int
    hash: str  # 0x-prefixed, 32 bytes
    bloom: bytes  # the block's logs bloom, 256 bytes


def _notification(message: str | bytes) -> dict[str, Any] | None:
    """The message if it is a subscription notification; anything else (garbage
    included) is ignored: it says nothing about blocks."""
    try:
        note = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return note if isinstance(note, dict) and note.get("method") == "eth_subscription" else None


def parse_head(note: dict[str, Any]) -> Head | None:
    """The ``Head`` a newHeads notification announces; None if it is not a well-formed
    header (the loop then asks the node itself)."""
    params = note.get("params")
    header = params.get("result") if isinstance(params, dict) else None
    if not isinstance(header, dict):
        return None
    try:
        number = int(header["number"], 16)
        block_hash = bytes.fromhex(header["hash"].removeprefix("0x"))
        bloom = bytes.fromhex(header["logsBloom"].removeprefix("0x"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if number < 0 or len(block_hash) != 32 or len(bloom) != BLOOM_BYTES:
        return None
    return Head(number, "0x" + block_hash.hex(), bloom)


class NewHeads:
    """A daemon thread that sets an event on every ``newHeads`` notification."""

    def __init__(self, rpc_url: str, *, retry: float = 30.0, open_timeout: float = 5.0) -> None:
        self.url = websocket_url(rpc_url)
        self.retry, self.open_timeout = retry, open_timeout
        self.heads = 0  # notifications received (tests and metrics)
        self._latest: Head | None = None  # the newest block announced and not yet taken
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

    def nudge(self) -> None:
        """Wake the loop without a block: another thread has work for it now."""
        self._wake.set()

    def take(self) -> Head | None:
        """The newest block announced since the last ``take`` (None: none, or its header
        was malformed, or the subscription dropped since)."""
        head, self._latest = self._latest, None
        return head

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
                        note = _notification(message)
                        if note is not None:
                            self.heads += 1
                            self._latest = parse_head(note)
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
                self._latest = None  # a head from a connection that dropped may be stale
            self._closed.wait(self.retry)
