"""The rate limit at the HTTP layer, served by the real aiohttp app around a stub
agent (unit test): over the limit is 429 with Retry-After, and the chain is never
asked, not even whether the client has access."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer

from enclave_agent.chain.outage import Outage
from enclave_agent.config import GatewayConfig
from enclave_agent.gateway.answering import Answering
from enclave_agent.gateway.auth import hash_api_key
from enclave_agent.gateway.http import build_app
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.ratelimit import RateLimiter
from enclave_agent.protocol.queries import statistic_metadata
from enclave_agent.protocol.records import ModelRecord

CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
KEY = "test-key"


class Clock:
    now = 50.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StubConfig:
    gateway: GatewayConfig


@dataclass
class StubAgent:
    clock: Clock
    config: StubConfig = field(
        default_factory=lambda: StubConfig(GatewayConfig(api_keys={CLIENT: hash_api_key(KEY)}, max_batch=2))
    )
    metrics: Metrics = field(default_factory=Metrics)
    access_checks: int = 0
    outage: Outage = field(default_factory=lambda: Outage("http://127.0.0.1:8545"))
    draining: bool = False  # the gateway's SIGTERM flag (not stopping here)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(per_minute=30, burst=2, clock=self.clock)
        self.answering = Answering(cast(Any, self))  # the real decisions, around this stub

    @property
    def requests(self) -> StubAgent:
        """The requests part is stubbed here too."""
        return self

    def is_ready(self) -> bool:
        return True

    def models(self) -> list[ModelRecord]:
        return [
            ModelRecord(
                id=1, round_id=1, kind="statistic", fee=0, name="stats", metadata=statistic_metadata(["a"])
            )
        ]

    def client_has_access(self, client: str) -> bool:
        self.access_checks += 1
        return False  # stops the request before the chain: 403


def test_over_the_limit_is_429_with_retry_after_and_asks_nothing_of_the_chain() -> None:
    agent = StubAgent(Clock())

    async def scenario() -> list[tuple[int, dict[str, Any], str | None]]:
        out = []
        async with TestClient(TestServer(build_app(cast(Any, agent)))) as client:
            for advance in (0, 0, 0, 1.0, 1.0):
                agent.clock.now += advance
                response = await client.post(
                    "/v1/inference",
                    json={"model": 1, "statistic": {"column": "a"}},
                    headers={"X-API-Key": KEY},
                )
                out.append((response.status, await response.json(), response.headers.get("Retry-After")))
        return out

    results = asyncio.run(scenario())
    statuses = [status for status, _, _ in results]
    assert statuses == [403, 403, 429, 429, 403]  # burst of 2, then one every 2 s
    status, body, retry = results[2]
    assert body == {"error": "rate limit: 30 requests a minute per client", "retry_after": 2} and retry == "2"
    assert results[3][2] == "1"
    assert agent.access_checks == 3
    assert agent.metrics.requests["rate_limited"] == 2


def test_unauthenticated_calls_do_not_spend_a_clients_allowance() -> None:
    agent = StubAgent(Clock())

    async def scenario() -> list[int]:
        async with TestClient(TestServer(build_app(cast(Any, agent)))) as client:
            body = {"model": 1, "statistic": {"column": "a"}}
            statuses = []
            for _ in range(5):
                response = await client.post("/v1/inference", json=body, headers={"X-API-Key": "wrong"})
                statuses.append(response.status)
            response = await client.post("/v1/inference", json=body, headers={"X-API-Key": KEY})
            statuses.append(response.status)
            return statuses

    assert asyncio.run(scenario()) == [401] * 5 + [403]
