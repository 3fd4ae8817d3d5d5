"""Riding out JSON-RPC outages.

web3's provider already retries read calls a few times within seconds. When the node
stays unreachable longer, the agent keeps running: ``unreachable`` tells such errors
from real failures, and an ``Outage`` paces the retries (capped exponential backoff
with jitter) and logs one line when the outage starts and one when it ends, with
its duration. While it lasts the gateway answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import requests

from enclave_agent.chain.transport import http_status, redact_url

log = logging.getLogger(__name__)

_CONNECTION = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) means the node did not answer: a refused or
    dropped connection, a timeout, or an HTTP 5xx from the endpoint."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION):
            return True
        status = http_status(current)
        if status is not None:
            return status >= 500
        current = current.__cause__ or current.__context__
    return False


class Outage:
    """The state of the connection to one JSON-RPC endpoint, shared across threads."""

    def __init__(
        self,
        url: str,
        *,
        base: float = 0.5,
        cap: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.url = redact_url(url)
        self.base, self.cap = base, cap
        self._clock, self._jitter = clock, jitter
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self.failures_total = 0  # failed attempts ever (metrics)

    @property
    def down(self) -> bool:
        with self._lock:
            return self._since is not None

    def retry_after(self) -> int:
        """Whole seconds a client should wait before trying again (at least 1)."""
        with self._lock:
            return max(1, round(min(self.cap, self.base * 2.0 ** max(0, self._failures - 1))))

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; returns how long to wait before the next one
        (full jitter over a capped exponential)."""
        with self._lock:
            if self._since is None:
                self._since = self._clock()
                log.error("chain unreachable at %s: %s; retrying with backoff", self.url, type(exc).__name__)
            self._failures += 1
            self.failures_total += 1
            ceiling = min(self.cap, self.base * 2.0 ** (self._failures - 1))
        return float(ceiling / 2 + self._jitter() * ceiling / 2)

    def recovered(self) -> None:
        """Record a successful call; logs the end of an outage."""
        with self._lock:
            if self._since is None:
                return
            duration = self._clock() - self._since
            self._since, failures, self._failures = None, self._failures, 0
        log.warning(
            "chain reachable again at %s after %.1f s (%d failed attempts)", self.url, duration, failures
        )
