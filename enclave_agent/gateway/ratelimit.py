"""Per-client rate limits at the gateway: a token bucket per client address.

Answers leak the model (about d+1 answered queries recover a linear one); the
contract's quota bounds how many a client gets in total, this bounds how fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """``per_minute`` requests a minute per client, in bursts of up to ``burst``."""

    per_minute: int
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # client -> (tokens, when)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.per_minute <= 0 or self.burst <= 0:
            raise ValueError(f"rate limit must be positive: {self.per_minute}/min, burst {self.burst}")

    def take(self, client: str, cost: int = 1) -> float:
        """Spend ``cost`` requests of ``client``'s allowance: 0.0 if allowed, otherwise
        the seconds until it would be (nothing is spent then)."""
        if cost > self.burst:
            raise ValueError(f"a request of {cost} exceeds the burst of {self.burst}")
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.per_minute / 60.0)
            if tokens >= cost:
                self._buckets[client] = (tokens - cost, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (cost - tokens) * 60.0 / self.per_minute
