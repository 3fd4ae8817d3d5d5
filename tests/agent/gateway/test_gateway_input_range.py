"""The gateway's side of input ranges (unit tests, no chain): which publications it
trusts, the 503 before a range exists, and an answer withheld when the model's row
count breaks the range's assumption."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from enclave_agent.chain import ChainEvent
from enclave_agent.chain.outage import Outage
from enclave_agent.config import GatewayConfig
from enclave_agent.crypto.field import PRIME61
from enclave_agent.errors import ProtocolError
from enclave_agent.gateway.answering import Completions
from enclave_agent.gateway.auth import hash_api_key
from enclave_agent.gateway.http import build_app
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.ratelimit import RateLimiter
from enclave_agent.gateway.requests import GatewayRequests
from enclave_agent.model.federated import ModelSpec
from enclave_agent.model.ranges import InputRange
from enclave_agent.protocol.records import ModelRecord, RequestRecord
from enclave_agent.store import Store

HOLDERS = ["0x" + f"{i:02x}" * 20 for i in (1, 2, 3)]
MODEL = ModelRecord(id=4, round_id=9, kind="shared-model", fee=0, name="m", metadata="{}")


def _range(bounds: tuple[float, ...] = (10.0, 3.0), bits: int = 20) -> InputRange:
    return InputRange(("a", "b"), bounds, bits, 2**31, 2047.5, 512, 64.0)


def _agent(tmp_path: Path, *, additive: bool = False) -> GatewayRequests:
    doc = SimpleNamespace(
        holders=0b111,
        threshold=2,
        modulus=2**64 if additive else PRIME61,
        frac_bits=14,
        mask_members=lambda mask: [h for i, h in enumerate(HOLDERS) if mask >> i & 1],
    )
    agent = SimpleNamespace(store=Store(tmp_path / "gw.sqlite3"), round_doc=lambda _: doc)
    return GatewayRequests(cast(Any, agent), Metrics(), Completions())


def _published(requests: GatewayRequests, provider: str, text: str) -> None:
    args = {"modelId": MODEL.id, "provider": provider, "range": text}
    requests.handlers()["ModelRangePublished"](
        ChainEvent("InferenceGateway", "ModelRangePublished", args, 1, "0x", 0)
    )


def test_a_shamir_model_has_a_range_once_t_holders_published_the_smallest_bound(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    _published(agent, HOLDERS[0], _range((10.0, 3.0)).to_json())
    assert agent.input_range(MODEL) is None  # 1 of t = 2
    _published(agent, HOLDERS[2], "{not json")  # ignored
    assert agent.input_range(MODEL) is None
    _published(agent, HOLDERS[2], _range((20.0, 2.0)).to_json())
    agreed = agent.input_range(MODEL)
    assert agreed is not None and agreed.bounds == (10.0, 2.0)
    assert agent.input_range(replace(MODEL, kind="statistic")) is None


def test_an_additive_model_needs_every_holder_and_one_encoding(tmp_path: Path) -> None:
    agent = _agent(tmp_path, additive=True)
    for holder in HOLDERS[:2]:
        _published(agent, holder, _range().to_json())
    assert agent.input_range(MODEL) is None
    _published(agent, HOLDERS[2], _range(bits=19).to_json())  # a holder with another encoding
    assert agent.input_range(MODEL) is None
    _published(agent, HOLDERS[2], _range().to_json())
    assert agent.input_range(MODEL) == _range()


def test_an_answer_is_withheld_when_the_model_has_more_rows_than_its_range_assumed() -> None:
    doc = SimpleNamespace(frac_bits=14, modulus=PRIME61)
    request = RequestRecord(
        id=1,
        model_id=4,
        kind="score",
        client="0x",
        holders=[],
        epoch=1,
        deadline=0,
        submit_tx="0x",
        query_bits=20,
        count_bound=512,
    )
    numerator = 3 * 456 << (14 + 20)  # a logit of 3 over 456 rows
    results = GatewayRequests._interpret(
        cast(Any, None), request, MODEL, cast(Any, doc), [numerator, 456 << 14]
    )
    assert results[0]["logit"] == 3.0
    with pytest.raises(ProtocolError, match="row count exceeds 512"):
        GatewayRequests._interpret(cast(Any, None), request, MODEL, cast(Any, doc), [numerator, 513 << 14])
    with pytest.raises(ProtocolError, match="without the model's input range"):
        GatewayRequests._interpret(
            cast(Any, None), replace(request, query_bits=None), MODEL, cast(Any, doc), [1, 1]
        )


@dataclass
class StubAgent:
    """Just what the HTTP layer asks before the chain."""

    bounds: InputRange | None
    config: Any = field(
        default_factory=lambda: SimpleNamespace(
            gateway=GatewayConfig(api_keys={"0x" + "11" * 20: hash_api_key("k")})
        )
    )
    metrics: Metrics = field(default_factory=Metrics)
    outage: Outage = field(default_factory=lambda: Outage("http://127.0.0.1:8545"))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=600, burst=100))
    draining: bool = False  # the gateway's SIGTERM flag (not stopping here)

    @property
    def requests(self) -> StubAgent:
        return self

    def is_ready(self) -> bool:
        return True

    def models(self) -> list[ModelRecord]:
        spec = ModelSpec(features=["a", "b"], stats_round=1, train_rounds=[9])
        return [replace(MODEL, metadata=spec.to_metadata())]

    def input_range(self, model: ModelRecord) -> InputRange | None:
        return self.bounds

    def client_has_access(self, client: str) -> bool:  # pragma: no cover - never reached
        raise AssertionError("a refused row must not reach the chain")


def _post(agent: StubAgent, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async def scenario() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(build_app(cast(Any, agent)))) as client:
            response = await client.post("/v1/inference", json=body, headers={"X-API-Key": "k"})
            return response.status, await response.json()

    return asyncio.run(scenario())


def test_http_refuses_before_the_chain_while_no_range_is_published_and_beyond_it() -> None:
    status, answer = _post(StubAgent(None), {"model": 4, "features": {"a": 1.0, "b": 1.0}})
    assert status == 503 and "input range" in answer["error"]
    status, answer = _post(StubAgent(_range()), {"model": 4, "rows": [[1.0, 1.0], [1.0, -3.5]]})
    assert status == 422 and answer["field"] == "rows[1][1]" and answer["bound"] == 3.0
    assert answer["error"] == "outside the range this model answers exactly: |b| must be at most 3"
