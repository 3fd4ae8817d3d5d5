"""The analysts' client without a gateway: how HTTP answers become typed errors, what
is retried (only refusals that wrote nothing and name a wait), what data it takes,
and that an answer asked sealed is never accepted in the clear. The same client
against the real demo consortium: tests/e2e/test_client.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from enclave_agent.gateway.client import GatewayHTTPError
from enclave_client import (
    AccessDenied,
    AnswerTimeout,
    AuthenticationError,
    Client,
    Conflict,
    GatewayError,
    InvalidInput,
    Model,
    NotFound,
    OutOfRange,
    PaymentRequired,
    QuotaExhausted,
    RateLimited,
    Unavailable,
    UnsealedAnswer,
)
from enclave_client.client import check_rows, rows_of
from enclave_client.errors import from_http

MODEL = Model(
    id=1,
    name="m",
    kind="shared-model",
    features=("a", "b"),
    fee_wei=1,
    rows_per_request=2,
    bounds={"a": 10.0, "b": 5.0},
)
CATALOGUE = {
    "models": [
        {
            "id": 1,
            "name": "m",
            "kind": "shared-model",
            "features": ["a", "b"],
            "fee_wei": 1,
            "rows_per_request": 2,
            "input_range": {"bounds": {"a": 10.0, "b": 5.0}},
            "card": {"threshold": 0.5},
        }
    ],
    "max_batch": 3,
}


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"error": "unknown API key"}, AuthenticationError),
        (402, {"error": "fee unpaid", "reason": "InferenceFeeUnpaid"}, PaymentRequired),
        (403, {"error": "client has no access"}, AccessDenied),
        (404, {"error": "no active model 9", "field": "model"}, NotFound),
        (409, {"error": "refused", "reason": "InferenceRequestReplayed"}, Conflict),
        (413, {"error": "too many rows", "field": "rows"}, InvalidInput),
        (422, {"error": "must be a number", "field": "rows[1].a"}, InvalidInput),
        (422, {"error": "outside", "field": "rows[0].a", "feature": "a", "bound": 10.0}, OutOfRange),
        (429, {"error": "quota exhausted", "quota": 2, "used": 2}, QuotaExhausted),
        (429, {"error": "rate limit", "retry_after": 3}, RateLimited),
        (502, {"error": "the gateway could not complete the request"}, Unavailable),
        (503, {"error": "the chain is unreachable", "retry_after": 5}, Unavailable),
        (504, {"error": "not answered", "request_ids": [4, 5], "outcome": "pending"}, AnswerTimeout),
        (418, {"error": "odd"}, GatewayError),
    ],
)
def test_every_status_has_its_exception(status: int, body: dict[str, Any], cls: type) -> None:
    error = from_http(GatewayHTTPError(status, body))
    assert type(error) is cls and isinstance(error, GatewayHTTPError)
    assert error.status == status and error.message == body["error"]
    assert str(error).startswith(f"HTTP {status}: ")


def test_errors_carry_what_the_caller_acts_on() -> None:
    out = from_http(
        GatewayHTTPError(422, {"error": "x", "field": "rows[3].a", "feature": "a", "bound": 10}), 40
    )
    assert isinstance(out, OutOfRange) and isinstance(out, ValueError)
    assert (out.field, out.row, out.feature, out.bound) == ("rows[43].a", 43, "a", 10.0)
    late = from_http(GatewayHTTPError(504, {"error": "x", "request_ids": [4, 5], "outcome": "pending"}))
    assert isinstance(late, AnswerTimeout) and (late.request_ids, late.outcome) == ([4, 5], "pending")
    assert from_http(GatewayHTTPError(503, {"error": "x", "retry_after": 5})).retry_after == 5.0
    assert from_http(GatewayHTTPError(503, {"error": "x"})).retry_after is None
    refused = from_http(GatewayHTTPError(402, {"error": "refused", "reason": "InferenceFeeUnpaid"}))
    assert refused.reason == "InferenceFeeUnpaid" and str(refused).endswith("[InferenceFeeUnpaid]")


class FakeGateway:
    """Stands in for the HTTP transport: answers each ``infer`` from a script."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []
        self.url = "http://gateway.test"

    def catalogue(self) -> dict[str, Any]:
        return CATALOGUE

    def infer(self, model: int, inputs: dict[str, Any], *, secret: Any = None) -> dict[str, Any]:
        self.calls.append(inputs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome(inputs) if callable(outcome) else outcome


def _answered(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "results": [
            {"request_id": 7, "row": i, "score": 0.25, "label": 0, "end_to_end": True}
            for i in range(len(inputs["rows"]))
        ]
    }


def _client(fake: FakeGateway, **kwargs: Any) -> tuple[Client, list[float]]:
    waits: list[float] = []
    client = Client("http://gateway.test", api_key="k", sleep=waits.append, **kwargs)
    client.http = fake  # type: ignore[assignment]
    return client, waits


def test_a_rate_limit_is_waited_out_and_the_batch_cut_at_max_batch() -> None:
    limited = GatewayHTTPError(429, {"error": "rate limit", "retry_after": 2})
    fake = FakeGateway(_answered, limited, limited, _answered)
    client, waits = _client(fake)
    scores = client.predict([[1.0, 2.0]] * 5)
    assert scores.tolist() == [0.25] * 5
    assert [len(c["rows"]) for c in fake.calls] == [3, 2, 2, 2] and waits == [2.0, 2.0]


def test_waiting_stops_at_max_wait_and_only_refusals_that_wrote_nothing_are_retried() -> None:
    limited = GatewayHTTPError(429, {"error": "rate limit", "retry_after": 2})
    client, waits = _client(FakeGateway(limited, limited), max_wait=3)
    with pytest.raises(RateLimited):
        client.predict([[1.0, 2.0]])
    assert waits == [2.0]
    # A 504 names requests recorded on chain (they may be charged): never sent again.
    late = GatewayHTTPError(504, {"error": "late", "request_ids": [9], "outcome": "pending"})
    client, waits = _client(FakeGateway(late))
    with pytest.raises(AnswerTimeout) as timeout:
        client.predict([[1.0, 2.0]])
    assert timeout.value.request_ids == [9] and waits == []
    # A 503 without a wait (not synchronised yet) is the caller's to retry.
    client, waits = _client(FakeGateway(GatewayHTTPError(503, {"error": "not synchronised"})))
    with pytest.raises(Unavailable):
        client.predict([[1.0, 2.0]])
    assert waits == []


def test_a_refusal_of_a_later_part_keeps_the_answers_already_given() -> None:
    quota = GatewayHTTPError(429, {"error": "quota exhausted", "quota": 3, "used": 3})
    client, _ = _client(FakeGateway(_answered, quota))
    with pytest.raises(QuotaExhausted) as refused:
        client.predict([[1.0, 2.0]] * 5)
    assert len(refused.value.answered) == 3


def test_an_answer_asked_sealed_is_not_accepted_in_the_clear() -> None:
    clear = {"results": [{"request_id": 7, "row": 0, "score": 0.25, "label": 0}]}
    client, _ = _client(FakeGateway(clear))
    with pytest.raises(UnsealedAnswer):
        client.predict([[1.0, 2.0]])
    unsealed, _ = _client(FakeGateway(clear), sealed=False)
    assert unsealed.predict([[1.0, 2.0]]).tolist() == [0.25]


def test_bad_rows_are_refused_whole_before_anything_is_sent() -> None:
    fake = FakeGateway()
    client, _ = _client(fake)
    with pytest.raises(OutOfRange) as out:
        client.predict([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [11.0, 2.0]])
    assert (out.value.field, out.value.before_sending) == ("rows[3][0]", True)
    with pytest.raises(InvalidInput, match=r"rows\[1\]\.b: missing feature"):
        client.predict([{"a": 1.0, "b": 2.0}, {"a": 1.0}])
    with pytest.raises(InvalidInput, match="finite"):
        client.predict(np.array([[1.0, np.nan]]))
    with pytest.raises(OutOfRange, match=r"\|b\| must be at most 5"):
        check_rows(MODEL, [{"a": 0.0, "b": -5.5}])
    assert fake.calls == []


def test_data_frames_arrays_and_rows_become_the_gateway_rows() -> None:
    class Frame:
        columns = ["label", "b", "a"]

        def __getitem__(self, name: str) -> list[float]:
            return {"label": [1, 0], "b": [2.0, 4.0], "a": [1.0, 3.0]}[name]

    assert rows_of(Frame(), ["a", "b"]) == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}]
    structured = np.array([(1.0, 2.0, 1)], dtype=[("a", "f8"), ("b", "f8"), ("y", "i8")])
    assert rows_of(structured, ["a", "b"]) == [{"a": 1.0, "b": 2.0}]
    assert rows_of(np.array([[1, 2]]), ["a", "b"]) == [[1.0, 2.0]]
    assert rows_of([{"a": np.float32(1.5), "b": np.int64(2)}], ["a", "b"]) == [{"a": 1.5, "b": 2}]
    with pytest.raises(InvalidInput, match="no such column"):
        rows_of(Frame(), ["a", "c"])
    with pytest.raises(InvalidInput, match="one mapping is one row"):
        rows_of({"a": 1.0, "b": 2.0}, ["a", "b"])
    with pytest.raises(InvalidInput, match="2-D"):
        rows_of(np.array([1.0, 2.0]), ["a", "b"])


def test_a_statistic_kind_is_checked_before_asking() -> None:
    fake = FakeGateway()
    client, _ = _client(fake)
    with pytest.raises(ValueError, match="kind must be one of sum, mean, std, count or all"):
        client.statistic("a", "median")
    assert fake.calls == []
    assert "api_key=..." in repr(client) and "k" not in repr(client).replace("api_key", "")
