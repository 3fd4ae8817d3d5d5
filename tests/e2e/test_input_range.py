"""Exact or refused, end to end (three provider processes, the gateway process, a real
Anvil and HTTP): the model's input range is published by its holders and shown by
``GET /v1/models``; a hostile client's rows beyond it get 422 naming the feature and
the bound, and nothing is written on chain or charged; rows at its edge, far beyond
where the old encoding wrapped, are answered exactly; and a rogue gateway that
records an out-of-range row on chain anyway gets no partial from any provider."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import numpy as np
import pytest

from enclave_agent.chain import ErrorDecoder, TxSender
from enclave_agent.crypto.aead import encrypt
from enclave_agent.gateway import auth
from enclave_agent.model.logistic import joint_scaling, standardise
from enclave_agent.protocol import queries
from enclave_agent.tee.simulated import SimulatedTee
from enclave_devnet import dev_key, wait_until
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, Demo
from tests.support.http import http_json

RELATIVE = 1e-6


def _model(demo: Demo) -> dict:
    return next(m for m in demo.client().models() if m["id"] == demo._result.model_id)


def _ledger(demo: Demo) -> tuple[int, int, int, int]:
    """Block number, requests on chain, the client's quota used and balance."""
    gateway = demo.c.gateway.functions
    client = demo.client_address
    return (
        demo.c.w3.eth.block_number,
        int(gateway.requestCount().call()),
        int(gateway.quotaOf(client).call()[1]),
        int(gateway.balanceOf(client).call()),
    )


def _clear_model(demo: Demo) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Simulated mode only (test tooling): the secret-shared model and the joint scaling
    reconstructed from the enclaves' state, to compute plaintext scores."""
    rounds = demo._result.rounds
    aggregate = demo.c.fused_aggregate(rounds["model"])
    f = len(demo._result.split.features)
    stats = demo.c.fused_aggregate(rounds["scaling"])
    mean, std = joint_scaling(stats, f)
    return aggregate[:f] / aggregate[f + 1], float(aggregate[f] / aggregate[f + 1]), mean, std


def test_models_publish_the_input_range_of_the_score_model(demo: Demo) -> None:
    models = {m["id"]: m for m in demo.client().models()}
    assert models[demo._result.stats_model_id]["input_range"] is None  # a statistic takes no numbers
    published = models[demo._result.model_id]["input_range"]
    assert set(published["bounds"]) == set(demo._result.split.features)
    assert 2**10 < published["standardised_bound"] < 2**11
    assert published["query_frac_bits"] == 20 and published["weight_l1_bound"] == 64.0
    assert published["count_bound"] == 512  # 456 rows, rounded up to a power of two
    names, x = demo._result.split.features, _holdout(demo)
    # Every held-out row (real data) lies well inside, 50 times over: only absurd
    # inputs are refused.
    assert np.all(np.abs(x) * 50 <= np.array([published["bounds"][n] for n in names]))
    events = demo.c.gateway.events.ModelRangePublished().get_logs(
        from_block=0, argument_filters={"modelId": demo._result.model_id}
    )
    assert len({e["args"]["provider"] for e in events}) == demo.config.providers


def _holdout(demo: Demo) -> np.ndarray:
    from enclave_agent.model.table import read_table

    return read_table(demo._result.split.holdout_path, demo._result.split.label_column)[1]


@pytest.mark.parametrize("shape", ["object", "list", "batch"])
def test_hostile_rows_beyond_the_range_are_422_and_nothing_is_charged(
    demo: Demo, row: dict[str, float], shape: str
) -> None:
    bounds = _model(demo)["input_range"]["bounds"]
    names = list(demo._result.split.features)
    hostile = dict(row, worst_area=bounds["worst_area"] * 1.000001)
    if shape == "object":
        body, field = {"features": hostile}, "features.worst_area"
    elif shape == "list":
        body, field = {"features": [hostile[n] for n in names]}, f"features[{names.index('worst_area')}]"
    else:  # one bad row among good ones: the whole batch is refused
        body, field = {"rows": [row, row, hostile, row]}, "rows[2].worst_area"
    before = _ledger(demo)
    status, answer = http_json(
        demo.gateway_url + "/v1/inference",
        "POST",
        json.dumps({"model": demo._result.model_id} | body).encode(),
        {"X-API-Key": demo.api_key},
    )
    assert status == 422, answer
    assert answer["field"] == field and answer["feature"] == "worst_area"
    assert answer["bound"] == bounds["worst_area"] and f"{bounds['worst_area']:g}" in answer["error"]
    time.sleep(1.0)  # anything the gateway might still send would be mined by now
    assert _ledger(demo) == before  # no block, no request, quota and deposit untouched


def test_a_wallet_is_not_asked_to_sign_an_out_of_range_row(demo: Demo, row: dict[str, float]) -> None:
    bounds = _model(demo)["input_range"]["bounds"]
    body = {
        "model": demo._result.model_id,
        "features": dict(row, mean_smoothness=-bounds["mean_smoothness"] * 3),
        "client": demo.client_address,
    }
    status, answer = http_json(
        demo.gateway_url + "/v1/inference/typed-data", "POST", json.dumps(body).encode()
    )
    assert status == 422 and answer["field"] == "features.mean_smoothness"


def test_rows_at_the_edge_of_the_range_are_answered_exactly(demo: Demo) -> None:
    """Every feature at 0.999 of its bound, signed to push the score up (then down):
    logits of about +-17,600, where the old encoding (2^40 at 2^61 - 1) wrapped beyond
    about +-2,300, come back equal to the plaintext model's."""
    w, b, mean, std = _clear_model(demo)
    published = _model(demo)["input_range"]
    bounds = np.array([published["bounds"][n] for n in demo._result.split.features])
    names = list(demo._result.split.features)
    for sign in (1.0, -1.0):
        x = sign * np.where(w >= 0, 1.0, -1.0) * bounds * 0.999
        answer = demo.client().infer(
            demo._result.model_id, {"features": dict(zip(names, map(float, x), strict=True))}
        )
        clear = float(standardise(x[None, :], mean, std)[0] @ w + b)
        rounding = float(np.abs(w).sum()) * 2.0 ** -(published["query_frac_bits"] + 1)
        assert abs(clear) > 2300 * 5 and np.sign(answer["logit"]) == np.sign(clear)
        assert abs(answer["logit"] - clear) <= RELATIVE * abs(clear) + rounding
        assert answer["label"] == int(sign > 0)


def test_a_provider_refuses_an_out_of_range_row_a_rogue_gateway_records(
    demo: Demo, row: dict[str, float]
) -> None:
    """A hostile client signs an out-of-range row, and the gateway's enclave key and
    pairwise keys (simulated mode: readable by the test tooling) drive a gateway that
    skips the range check: the request is on chain and paid, yet no provider posts a
    partial and each logs the feature and the bound (not the value); the request
    stays unanswered until it expires and is refunded. The same path with an in-range
    row is answered."""
    gateway_agent = demo.c.agents["gateway"]
    keys = SimulatedTee(gateway_agent.state_dir).load_or_create_keys()
    sender = TxSender(demo.c.w3, keys.account, ErrorDecoder.from_manifest(demo.c.manifest))
    epoch = int(demo.c.registry.functions.synchronisedEpoch().call())
    sealed = json.loads(gateway_agent.unseal(f"keys/{epoch}") or b"{}")
    pairwise = {address: bytes.fromhex(key) for address, key in sealed.items()}
    round_id = demo._result.rounds["model"]
    holder_mask = int(demo.c.exchange.functions.roundInfo(round_id).call()[7])
    participants = demo.c.exchange.functions.participants(round_id).call()
    holders = [p for i, p in enumerate(participants) if holder_mask >> i & 1]
    names = list(demo._result.split.features)
    bounds = _model(demo)["input_range"]["bounds"]
    chain_id, contract = demo.c.manifest.chain_id, demo.c.gateway.address

    def record(values: list[float]) -> int:
        query = queries.Query(queries.KIND_SCORE, rows=(tuple(values),))
        fields: dict[str, Any] = {
            "client": demo.client_address,
            "model_id": demo._result.model_id,
            "rows": 1,
            "input_hash": auth.input_hash(query),
            "nonce": secrets.randbits(256),
            "deadline": int(demo.c.w3.eth.get_block("latest")["timestamp"]) + 600,
            "max_fee": FEE_WEI,
            "signature": b"",
        }
        typed = auth.SignedRequest(**fields).typed(chain_id, contract)
        signed = auth.SignedRequest(
            **(fields | {"signature": auth.sign_request(dev_key(CLIENT_INDEX), typed)})
        )
        digest = signed.digest(chain_id, contract)
        entries = [
            (
                p,
                encrypt(
                    pairwise[p],
                    query.to_bytes(),
                    queries.query_ad(chain_id, contract, digest, keys.address, p),
                ),
            )
            for p in holders
        ]
        payload = queries.encode_query_payload(epoch, entries)
        receipt = sender.send(
            demo.c.gateway.functions.submitRequest(signed.as_tuple(), signed.signature, payload),
            label="rogue-request",
        )
        return int(demo.c.gateway.events.RequestSubmitted().process_receipt(receipt)[0]["args"]["requestId"])

    def partials(request_id: int) -> int:
        return int(demo.c.gateway.functions.requestInfo(request_id).call()[5])

    good = record([row[n] for n in names])
    wait_until(lambda: partials(good) == len(holders), 60, "partials for the in-range row")

    balance = int(demo.c.gateway.functions.balanceOf(demo.client_address).call())
    hostile = dict(row, mean_concavity=bounds["mean_concavity"] * 50)
    bad = record([hostile[n] for n in names])
    assert int(demo.c.gateway.functions.balanceOf(demo.client_address).call()) < balance  # paid on chain
    expected = f"request {bad}: cannot answer: row 0: feature 'mean_concavity' is outside"
    for name in (f"provider-{i}" for i in range(demo.config.providers)):
        wait_until(lambda name=name: expected in demo.c.agents[name].logs(), 60, f"{name} refusing")
    assert partials(bad) == 0 and int(demo.c.gateway.functions.state(bad).call()) == 1  # Pending
    assert repr(hostile["mean_concavity"]) not in "".join(a.logs() for a in demo.c.agents.values())
    # Unanswered, it expires and anyone refunds it (as test_gateway.py's timeout test
    # shows); moving chain time on here would void the later modules' fresh signatures.


def test_the_model_aggregate_is_what_the_range_assumed(demo: Demo) -> None:
    """The assumptions behind the published range hold for the model the demo trained:
    |w|_1 + |b| within the L1 bound, the row count within the count bound."""
    published = _model(demo)["input_range"]
    w, b, _, _ = _clear_model(demo)
    assert float(np.abs(w).sum()) + abs(b) <= published["weight_l1_bound"]
    assert demo.c.fused_aggregate(demo._result.rounds["model"])[-1] <= published["count_bound"]
