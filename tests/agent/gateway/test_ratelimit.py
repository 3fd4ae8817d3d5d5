"""Per-client token buckets, on a clock the test moves."""

from __future__ import annotations

import pytest

from enclave_agent.gateway.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_requests_wait_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)  # one a second
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)  # a refusal spends nothing
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)


def test_clients_are_limited_separately() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_a_batch_costs_its_rows_and_the_bucket_never_overfills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=120, burst=10, clock=clock)
    assert limiter.take("a", 8) == 0.0
    assert limiter.take("a", 5) == pytest.approx(1.5)  # 3 missing at 2 a second
    clock.now += 3600
    assert limiter.take("a", 10) == 0.0  # refilled to the burst, not beyond
    assert limiter.take("a") == pytest.approx(0.5)


def test_impossible_settings_and_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RateLimiter(per_minute=0, burst=5)
    with pytest.raises(ValueError, match="exceeds the burst of 5"):
        RateLimiter(per_minute=60, burst=5).take("a", 6)
