"""The gateway's decisions (``gateway.answering``) against a fake gateway, in
milliseconds: calls wait on futures that only the loop resolves, refusals come back as
outcomes with their culprit values, and a call never outlives the request's expiry."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from enclave_agent.config import GatewayConfig
from enclave_agent.errors import ContractRevert
from enclave_agent.gateway import scoring
from enclave_agent.gateway.answering import Answered, Answering, Ask, Completions, Refused, Unanswered
from enclave_agent.gateway.auth import Caller
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.ratelimit import RateLimiter
from enclave_agent.protocol import queries
from enclave_agent.protocol.records import ModelRecord

CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
MODEL = ModelRecord(id=7, round_id=1, kind="shared-model", fee=5, name="m", metadata="{}")
ROW = [{"request_id": 1, "row": 0, "score": 0.9}]


@dataclass
class StubConfig:
    gateway: GatewayConfig


@dataclass
class FakeGateway:
    """What ``Answering`` asks of a gateway; the test plays the agent loop."""

    rows_per: int = 4
    quota: tuple[int, int, int] = (100, 0, 1000)
    access: bool = True
    submit_error: Exception | None = None
    chain_time: int = 1000
    deadline: int = 1030
    config: StubConfig = field(default_factory=lambda: StubConfig(GatewayConfig(rate_burst=100)))
    metrics: Metrics = field(default_factory=Metrics)
    completions: Completions = field(default_factory=Completions)
    submitted: list[int] = field(default_factory=list)
    closed: dict[int, list[dict[str, Any]] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(per_minute=600, burst=100)

    @property
    def requests(self) -> FakeGateway:
        """The gateway's requests part is played by the fake too."""
        return self

    def rows_per_request(self, model: ModelRecord) -> int:
        return self.rows_per

    def client_has_access(self, client: str) -> bool:
        return self.access

    def quota_and_balance(self, client: str) -> tuple[int, int, int]:
        return self.quota

    def custody_request(self, client: str, model: ModelRecord, query: queries.Query) -> str:
        return f"signed-{query.row_count}"

    def submit(self, model: ModelRecord, signed: Any, query: Any, bounds: Any, encrypt_to: Any) -> int:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append(len(self.submitted) + 1)
        return self.submitted[-1]

    def request(self, request_id: int) -> SimpleNamespace:
        return SimpleNamespace(id=request_id, deadline=self.deadline)

    def chain_now(self) -> int:
        return self.chain_time

    def settled(self, request_id: int) -> tuple[bool, Any]:
        if request_id in self.closed:
            return True, self.closed[request_id]
        return False, None


def score_ask(rows: int = 1) -> Ask:
    query = queries.Query(queries.KIND_SCORE, rows=tuple((1.0,) for _ in range(rows)))
    return Ask(MODEL, query, batch=rows > 1)


def api_key_caller() -> Caller:
    return Caller(CLIENT, "api-key")


def answer(gateway: FakeGateway, ask: Ask, loop_play: Any = None) -> Any:
    """Run one call; ``loop_play(gateway)`` runs in a thread as the agent loop would."""

    async def scenario() -> Any:
        if loop_play is not None:
            threading.Thread(target=loop_play, args=(gateway,), daemon=True).start()
        return await Answering(cast(Any, gateway)).answer(ask, api_key_caller(), time.monotonic())

    return asyncio.run(scenario())


def complete_when_submitted(gateway: FakeGateway) -> None:
    while not gateway.submitted:
        time.sleep(0.005)
    time.sleep(0.05)  # the call is waiting by now
    gateway.completions.resolve(1, ROW)


def test_the_call_gets_what_the_loop_completed() -> None:
    gateway = FakeGateway()
    outcome = answer(gateway, score_ask(), complete_when_submitted)
    assert outcome == Answered(ROW, batch=False)
    assert gateway.metrics.requests["ok"] == 1


def test_completed_before_the_call_watched_is_not_missed() -> None:
    gateway = FakeGateway()
    gateway.closed[1] = ROW  # the loop was quicker than the call
    assert answer(gateway, score_ask()) == Answered(ROW, batch=False)


def test_a_batch_is_split_into_requests_and_answered_in_row_order() -> None:
    gateway = FakeGateway(rows_per=2)

    def complete_all(g: FakeGateway) -> None:
        while len(g.submitted) < 3:
            time.sleep(0.005)
        for request_id in (3, 1, 2):
            g.completions.resolve(request_id, [{"request_id": request_id}])
            g.closed[request_id] = [{"request_id": request_id}]

    outcome = answer(gateway, score_ask(rows=5), complete_all)
    assert [r["request_id"] for r in outcome.results] == [1, 2, 3] and outcome.batch


def test_a_refunded_request_is_unanswered_and_expired() -> None:
    gateway = FakeGateway()
    outcome = answer(gateway, score_ask(), lambda g: complete_when_submitted_with(g, None))
    assert outcome == Unanswered([1], expires_at=1030, still_open=False)
    assert gateway.metrics.requests["timeout"] == 1


def complete_when_submitted_with(gateway: FakeGateway, results: Any) -> None:
    while not gateway.submitted:
        time.sleep(0.005)
    gateway.closed[1] = results
    gateway.completions.resolve(1, results)


def test_a_configured_wait_shorter_than_the_chain_says_the_request_is_still_open() -> None:
    gateway = FakeGateway(config=StubConfig(GatewayConfig(request_timeout=0.2)))
    started = time.monotonic()
    outcome = answer(gateway, score_ask())  # nobody completes it
    assert outcome == Unanswered([1], expires_at=1030, still_open=True)
    assert 0.15 < time.monotonic() - started < 2


def test_the_wait_never_outlives_the_chain_deadline() -> None:
    gateway = FakeGateway(chain_time=1030, deadline=1029)  # expired already: 2 s of slack
    started = time.monotonic()
    assert answer(gateway, score_ask()) == Unanswered([1], expires_at=1029, still_open=False)
    assert time.monotonic() - started < 2.5


def test_inconsistent_partials_refuse_the_answer() -> None:
    def refuse(g: FakeGateway) -> None:
        while not g.submitted:
            time.sleep(0.005)
        time.sleep(0.05)
        g.completions.fail(1, scoring.InconsistentPartials("3 of 5 disagree"))

    outcome = answer(FakeGateway(), score_ask(), refuse)
    assert isinstance(outcome, Refused) and outcome.reason == "InconsistentPartials"


@pytest.mark.parametrize(
    ("gateway", "rows", "reason", "details"),
    [
        (FakeGateway(access=False), 1, "forbidden", {"client": CLIENT}),
        (FakeGateway(quota=(10, 8, 1000)), 3, "quota", {"quota": 10, "used": 8, "requested": 3}),
        (FakeGateway(quota=(10, 0, 14)), 3, "fee", {"balance": 14, "fee": 15}),
        (
            FakeGateway(submit_error=ContractRevert("InferenceRequestReplayed", {"digest": "0x01"})),
            1,
            "InferenceRequestReplayed",
            {"args": {"digest": "0x01"}},
        ),
    ],
)
def test_refusals_name_the_rule_and_submit_nothing(
    gateway: FakeGateway, rows: int, reason: str, details: dict[str, Any]
) -> None:
    outcome = answer(gateway, score_ask(rows))
    assert outcome == Refused(reason, outcome.message, details)
    assert gateway.submitted == []


def test_a_signature_covers_at_most_one_requests_rows() -> None:
    gateway = FakeGateway(rows_per=2)
    answering = Answering(cast(Any, gateway))
    refused = answering.signable(score_ask(rows=3))
    assert refused is not None and refused.reason == "too_many_rows" and refused.field == "rows"
    assert "at most 2 rows" in refused.message and answering.signable(score_ask(rows=2)) is None


def test_completions_resolve_every_waiter_once_and_forget_abandoned_ones() -> None:
    completions = Completions()
    first, second = completions.watch(5), completions.watch(5)
    abandoned = completions.watch(6)
    completions.forget(6, abandoned)
    completions.resolve(5, ROW)
    completions.resolve(5, None)  # a second settlement changes nothing
    completions.resolve(6, ROW)
    assert first.result(0) == ROW and second.result(0) == ROW and not abandoned.done()


def test_every_refusal_the_gateway_decides_has_an_http_status() -> None:
    from enclave_agent.gateway.answering import REASONS
    from enclave_agent.gateway.http import NAMED_REASONS, REFUSAL_STATUS

    assert set(REFUSAL_STATUS) == set(REASONS) and set(NAMED_REASONS) <= set(REASONS)
