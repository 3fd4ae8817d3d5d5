"""End to end through the gateway: three provider processes, the gateway process,
a real Anvil and HTTP. Scores match the plaintext joint model on every held-out
row; abuse and failure cases get clear answers and write nothing they should not."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from enclave_agent.gateway.client import GatewayClient, GatewayHTTPError
from enclave_agent.model.logistic import contribution_length
from enclave_agent.model.table import read_table
from enclave_agent.protocol.queries import rows_per_request
from enclave_agent.tee._files import write_private_file
from enclave_devnet import COMPLETED, dev_key, distinctive, found_on_chain, wait_until
from enclave_devnet.demo import CLIENT_INDEX, SCORE_TOLERANCE, SPARE_CLIENTS, Demo
from tests.support.http import http_json

REPO = Path(__file__).resolve().parents[2]


def _post(demo: Demo, body: bytes, key: str | None = None, *, authenticated: bool = True) -> tuple[int, dict]:
    headers = {"X-API-Key": key or demo.api_key} if authenticated else {}
    return http_json(demo.gateway_url + "/v1/inference", "POST", body, headers)


def _chain_requests(demo: Demo) -> int:
    return int(demo.c.gateway.functions.requestCount().call())


def test_scores_match_the_plaintext_joint_model_on_every_holdout_row(demo: Demo) -> None:
    demo.infer()
    result = demo.evaluate()
    assert len(result.secure_scores) == result.split.holdout_rows
    assert np.all(np.abs(result.secure_scores - result.plain_scores) <= SCORE_TOLERANCE)
    assert np.all(np.abs(result.batch_scores - result.plain_scores) <= SCORE_TOLERANCE)  # one batch
    joint = result.table[0][1]
    weakest = min(acc for name, acc, _ in result.table if "alone" in name)
    assert joint > weakest
    assert result.statistic["count"] == sum(result.split.provider_rows)


def test_results_can_be_encrypted_end_to_end(demo: Demo, row: dict[str, float]) -> None:
    client = demo.client()
    plain = client.infer(demo._result.model_id, {"features": row})
    sealed = client.infer(demo._result.model_id, {"features": row}, encrypt=True)
    assert sealed["end_to_end"] is True
    assert abs(sealed["score"] - plain["score"]) <= SCORE_TOLERANCE
    # On the wire the score was not readable.
    raw = _post(
        demo,
        json.dumps(
            {"model": demo._result.model_id, "features": row, "encrypt_to": "0x" + "11" * 32}
        ).encode(),
    )
    assert raw[0] == 200 and "score" not in raw[1] and "sealed" in raw[1]


def test_a_batch_is_one_on_chain_request_per_rows_per_request(demo: Demo) -> None:
    """150 rows travel in two requests (135 fit in 96 KiB of queries for 3 holders),
    paid and counted per row; every row's score equals its single-row answer."""
    names, x, _ = read_table(demo._result.split.holdout_path, demo._result.split.label_column)
    rows = [dict(zip(names, map(float, r), strict=True)) for r in x]
    batch = (rows * 2)[:150]
    client_index = 12  # a wallet client of its own: a full rate-limit bucket
    client = demo.c.w3.eth.accounts[client_index]
    gov = {"from": demo.c.governor}
    gateway = demo.c.gateway.functions
    demo.c.w3.eth.wait_for_transaction_receipt(gateway.setClientAccess(client, 1000).transact(gov))
    demo.c.w3.eth.wait_for_transaction_receipt(gateway.deposit().transact({"from": client, "value": 10**16}))
    fee = int(gateway.modelInfo(demo._result.model_id).call()[2])
    before = (_chain_requests(demo), int(gateway.balanceOf(client).call()))
    block = demo.c.w3.eth.block_number

    answers = GatewayClient(demo.gateway_url, wallet_key=dev_key(client_index)).infer(
        demo._result.model_id, {"rows": batch}
    )["results"]

    size = rows_per_request(len(names), 3)
    assert size == 135
    ids = [a["request_id"] for a in answers]
    assert len(set(ids)) == 2 and _chain_requests(demo) == before[0] + 2
    assert [a["row"] for a in answers] == list(range(size)) + list(range(len(batch) - size))
    submitted = demo.c.gateway.events.RequestSubmitted().get_logs(from_block=block + 1)
    assert sorted(int(e["args"]["rows"]) for e in submitted) == [len(batch) - size, size]
    assert int(gateway.quotaOf(client).call()[1]) == len(batch)
    assert int(gateway.balanceOf(client).call()) == before[1] - fee * len(batch)
    for i in (0, 20, 36):  # the same row twice: once in each request
        assert abs(answers[i]["score"] - answers[i + len(rows)]["score"]) <= 1e-12
    single = demo.client().infer(demo._result.model_id, {"features": rows[7]})
    assert abs(single["score"] - answers[7]["score"]) <= SCORE_TOLERANCE


def test_a_batch_the_deposit_does_not_cover_is_refused_whole(demo: Demo, row: dict[str, float]) -> None:
    client_index = 13  # a wallet client with room for 10 rows but the fee of one
    client = demo.c.w3.eth.accounts[client_index]
    gateway = demo.c.gateway.functions
    fee = int(gateway.modelInfo(demo._result.model_id).call()[2])
    demo.c.w3.eth.wait_for_transaction_receipt(
        gateway.setClientAccess(client, 10).transact({"from": demo.c.governor})
    )
    demo.c.w3.eth.wait_for_transaction_receipt(gateway.deposit().transact({"from": client, "value": fee}))
    block = demo.c.w3.eth.block_number
    with pytest.raises(GatewayHTTPError) as unpaid:
        GatewayClient(demo.gateway_url, wallet_key=dev_key(client_index)).infer(
            demo._result.model_id, {"rows": [row] * 3}
        )
    assert unpaid.value.status == 402
    assert (unpaid.value.body["balance"], unpaid.value.body["fee"]) == (fee, 3 * fee)
    assert demo.c.w3.eth.block_number == block


def test_client_without_access_gets_403_and_nothing_is_written(demo: Demo, row: dict[str, float]) -> None:
    outsider = demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]
    block, requests = demo.c.w3.eth.block_number, _chain_requests(demo)
    with pytest.raises(GatewayHTTPError) as info:
        demo.client(outsider).infer(demo._result.model_id, {"features": row})
    assert info.value.status == 403
    assert demo.c.w3.eth.block_number == block and _chain_requests(demo) == requests


def test_unknown_api_key_is_401(demo: Demo, row: dict[str, float]) -> None:
    status, body = _post(demo, json.dumps({"model": 1, "features": row}).encode(), key="not-a-key")
    assert status == 401 and "API key" in body["error"]


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda b, r: b.update(features={**r, "mean_radius": "abc"}), 422, "features.mean_radius"),
        (
            lambda b, r: b.update(features={k: v for k, v in r.items() if k != "mean_radius"}),
            422,
            "features.mean_radius",
        ),
        (lambda b, r: b.update(features={**r, "colour": 1.0}), 422, "features.colour"),
        (lambda b, r: b.update(features=[1.0, 2.0, 3.0]), 422, "features"),
        (lambda b, r: b.update(rows=[[1.0, 2.0]], features=None) or b.pop("features"), 422, "rows[0]"),
        (lambda b, r: b.update(rows=[list(r.values())] * 257) or b.pop("features"), 413, "rows"),
        (lambda b, r: b.update(model=999), 404, "model"),
        (lambda b, r: b.update(encrypt_to="0x1234"), 422, "encrypt_to"),
    ],
)
def test_bad_input_is_refused_before_the_chain(
    demo: Demo, row: dict[str, float], mutate, status, field
) -> None:
    body = {"model": demo._result.model_id, "features": dict(row)}
    mutate(body, row)
    requests = _chain_requests(demo)
    got, answer = _post(demo, json.dumps(body).encode())
    assert (got, answer.get("field")) == (status, field), answer
    assert _chain_requests(demo) == requests


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422(demo: Demo, row: dict[str, float], literal: str) -> None:
    text = json.dumps({"model": demo._result.model_id, "features": {**row, "mean_radius": 0.5}})
    text = text.replace('"mean_radius": 0.5', f'"mean_radius": {literal}')
    status, body = _post(demo, text.encode())
    assert status == 422 and body["field"] == "features.mean_radius" and "finite" in body["error"]


def test_malformed_json_and_oversized_bodies(demo: Demo) -> None:
    assert _post(demo, b"{not json")[0] == 422
    assert _post(demo, b"[1, 2]")[1]["field"] == "body"
    status, body = _post(demo, b'{"model": 1, "pad": "' + b"x" * (1 << 20) + b'"}')
    assert status == 413


def test_unpaid_fee_and_exhausted_quota_are_refused_by_the_contract(
    demo: Demo, row: dict[str, float]
) -> None:
    spare = demo.c.w3.eth.accounts[SPARE_CLIENTS[1]]
    gov = {"from": demo.c.governor}
    gateway = demo.c.gateway.functions
    demo.c.w3.eth.wait_for_transaction_receipt(gateway.setClientAccess(spare, 1).transact(gov))
    client = demo.client(spare)
    with pytest.raises(GatewayHTTPError) as unpaid:
        client.infer(demo._result.model_id, {"features": row})
    assert unpaid.value.status == 402 and unpaid.value.body["reason"] == "InferenceFeeUnpaid"
    demo.c.w3.eth.wait_for_transaction_receipt(gateway.deposit().transact({"from": spare, "value": 10**15}))
    assert "score" in client.infer(demo._result.model_id, {"features": row})
    requests = _chain_requests(demo)
    with pytest.raises(GatewayHTTPError) as exhausted:
        client.infer(demo._result.model_id, {"features": row})
    assert exhausted.value.status == 429 and exhausted.value.body["reason"] == "InferenceQuotaExhausted"
    assert exhausted.value.body["args"]["used"] == 1
    assert _chain_requests(demo) == requests


def test_signed_requests_work_once_and_replays_are_refused(demo: Demo, row: dict[str, float]) -> None:
    wallet = GatewayClient(demo.gateway_url, wallet_key=dev_key(CLIENT_INDEX))
    info = next(m for m in wallet.models() if m["id"] == demo._result.model_id)
    body = {"model": demo._result.model_id, "features": row} | wallet._sign(info, {"features": row})
    first = urllib.request.Request(
        demo.gateway_url + "/v1/inference", data=json.dumps(body).encode(), method="POST"
    )
    first.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(first, timeout=60) as response:
        assert "score" in json.loads(response.read())
    requests = _chain_requests(demo)
    try:
        urllib.request.urlopen(first, timeout=60)
        raise AssertionError("replay accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 409
        assert json.loads(exc.read())["reason"] == "InferenceRequestReplayed"  # the contract's refusal
    assert _chain_requests(demo) == requests
    forged = body | {"client": demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]}
    assert _post(demo, json.dumps(forged).encode(), authenticated=False)[0] == 401


def test_request_status_is_private_to_its_client(demo: Demo, row: dict[str, float]) -> None:
    answer = demo.client().infer(demo._result.model_id, {"features": row})
    status = demo.client().request_status(answer["request_id"])
    assert status["status"] == "completed" and status["result"]["score"] == answer["score"]
    with pytest.raises(GatewayHTTPError) as other:
        demo.client(demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]).request_status(answer["request_id"])
    assert other.value.status == 403


def test_models_health_metrics_and_openapi(demo: Demo) -> None:
    models = demo.client().models()
    assert {m["kind"] for m in models} == {"shared-model", "statistic"}
    assert len(models[0]["features"]) == len(demo._result.split.features)
    health = demo.client().health()
    assert health["tee"] == "SIMULATED" and health["status"] == "ok" and health["rpc"] == "reachable"
    assert health["keys_for_synchronised_epoch"] and health["synchronised_epoch"] >= 1
    assert health["last_block"] >= 1 and health["last_block_age_s"] is not None
    assert health["inference_gateway"] == demo.c.gateway.address
    with urllib.request.urlopen(demo.gateway_url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'enclave_gateway_requests_total{outcome="ok"}' in metrics
    assert "enclave_gateway_request_seconds_bucket" in metrics
    with urllib.request.urlopen(demo.gateway_url + "/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert set(spec["paths"]) >= {
        "/v1/inference",
        "/v1/requests/{request_id}",
        "/v1/models",
        "/healthz",
        "/metrics",
        "/v1/inference/typed-data",
        "/v1/clients/{address}",
        "/v1/deployment",
        "/",
    }


def test_request_command_line_client(demo: Demo, row: dict[str, float], tmp_path: Path) -> None:
    key_file = tmp_path / "api.key"
    write_private_file(key_file, demo.api_key.encode())

    def cli_request(features: str) -> subprocess.CompletedProcess[str]:
        command = ["request", "--url", demo.gateway_url, "--api-key-file", str(key_file)]
        command += ["--model", "breast-cancer-fedavg", "--features", features]
        return subprocess.run(
            [sys.executable, "-m", "enclave_agent.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    result = cli_request(json.dumps(row))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert 0.0 <= answer["score"] <= 1.0 and answer["label"] in (0, 1)
    bad = cli_request('{"mean_radius": 1}')
    assert bad.returncode == 1 and '"status": 422' in bad.stdout


def test_gateway_never_holds_model_shares(demo: Demo) -> None:
    gateway_address = demo.c.agents["gateway"].enclave_address()
    for round_id in range(1, int(demo.c.exchange.functions.roundCount().call()) + 1):
        assert gateway_address not in demo.c.exchange.functions.participants(round_id).call()
    from enclave_agent.store import Store

    with Store(demo.c.agents["gateway"].state_dir / "agent.sqlite3") as store:
        blobs = store.blob_keys("round/")
    assert not [k for k in blobs if any(part in k for part in ("/fused", "/kept", "/recv/", "/aggregate"))]


def test_queries_and_results_never_appear_in_clear_on_chain(demo: Demo) -> None:
    result = demo._result
    _, x, _ = read_table(result.split.holdout_path, result.split.label_column)
    values = [float(v) for row in x[:20] for v in row] + [float(s) for s in result.secure_scores[:20]]
    needles = {repr(v).encode() for v in values if len(repr(v)) >= 6}  # distinctive decimals only
    needles |= {struct.pack(">d", v) for v in values} | {struct.pack("<d", v) for v in values}
    assert sum(map(distinctive, needles)) > 200
    assert [n.hex() for n in found_on_chain(needles, demo.c.chain_bytes())] == []


def test_partials_for_requests_not_on_chain_or_closed_are_refused(demo: Demo, row: dict[str, float]) -> None:
    from enclave_agent.chain import ErrorDecoder, TxSender, error_class
    from enclave_agent.tee.simulated import SimulatedTee

    keys = SimulatedTee(demo.c.agents["provider-0"].state_dir).load_or_create_keys()
    sender = TxSender(demo.c.w3, keys.account, ErrorDecoder.from_manifest(demo.c.manifest))
    gateway = demo.c.gateway.functions
    with pytest.raises(error_class("InferenceUnexpectedState")):
        sender.send(gateway.postPartial(10**6, b"not on chain"), label="bogus")
    answered = demo.client().infer(demo._result.model_id, {"features": row})
    with pytest.raises(error_class("InferenceUnexpectedState")):
        sender.send(gateway.postPartial(answered["request_id"], b"again"), label="late")


def test_brownie_request_script_signs_with_a_wallet(demo: Demo, row: dict[str, float], monkeypatch) -> None:
    from scripts.request_inference import main as request_script

    monkeypatch.setenv("ENCLAVE_CLIENT_KEY", dev_key(CLIENT_INDEX))
    used = demo.c.gateway.functions.quotaOf(demo.client_address).call()[1]
    answer = request_script(demo.gateway_url, "breast-cancer-fedavg", json.dumps(row))
    assert 0.0 <= answer["score"] <= 1.0
    assert demo.c.gateway.functions.quotaOf(demo.client_address).call()[1] == used + 1


def test_logs_hold_no_data_queries_scores_or_keys(demo: Demo) -> None:
    from enclave_agent.tee.simulated import SimulatedTee

    split = demo._result.split
    names, x, _ = read_table(split.holdout_path, split.label_column)
    rows = [dict(zip(names, map(float, row), strict=True)) for row in x[:5]]
    answers = demo.client().infer(demo._result.model_id, {"rows": rows})["results"]
    values = [
        float(v) for path in (*split.provider_paths, split.holdout_path) for v in read_table(path)[1].ravel()
    ]
    values += [float(a["score"]) for a in answers] + [float(a["logit"]) for a in answers]
    needles = {repr(v) for v in values if len(repr(v)) >= 7}  # short decimals could be timings
    needles.add(demo.api_key)
    for agent in demo.c.agents.values():
        keys = SimulatedTee(agent.state_dir).load_or_create_keys()
        needles |= {keys.signing_key.hex(), keys.x25519_private.private_bytes_raw().hex()}
    # Agents another module only ran in the foreground (their output captured, refused at
    # registration) wrote no log here: nothing to scan.
    logs = {name: text for name, agent in demo.c.agents.items() if (text := agent.logs())}
    assert {"provider-0", "provider-1", "provider-2", "gateway"} <= set(logs)
    assert len(needles) > 1000 and all("tee=SIMULATED" in text for text in logs.values())
    assert [(name, n) for name, text in logs.items() for n in needles if n in text] == []


# The provider-down cases stop agents: they run last and start them again.


def test_shamir_model_answers_from_t_of_n_with_a_provider_down(demo: Demo, row: dict[str, float]) -> None:
    demo.c.agents["provider-2"].stop()
    try:
        answer = demo.client().infer(demo._result.model_id, {"features": row})
        assert answer["partials"] == 2 and 0.0 <= answer["score"] <= 1.0
    finally:
        _restart(demo, "provider-2")


def _restart(demo: Demo, name: str) -> None:
    """Bring a stopped provider back: later modules share this consortium."""
    demo.c.agents[name].start()
    wait_until(lambda: "stage" in (demo.c.agents[name].status() or {}), 30, f"{name} back")


def test_additive_model_with_a_provider_down_times_out_and_is_refunded(
    demo: Demo, row: dict[str, float]
) -> None:
    features = len(demo._result.split.features)
    stats, model = demo._result.rounds["scaling"], demo._result.rounds["model"]
    round_id = demo.c.open_round(
        f"train:{stats}:0", contribution_length(features), scheme="additive", encoding="seeded", frac_bits=20
    )
    assert demo.c.wait_round(round_id, timeout=120) == COMPLETED
    from enclave_agent.model.federated import ModelSpec

    spec = ModelSpec(features=list(demo._result.split.features), stats_round=stats, train_rounds=[round_id])
    gov = {"from": demo.c.governor}
    receipt = demo.c.w3.eth.wait_for_transaction_receipt(
        demo.c.gateway.functions.registerModel(round_id, "additive", spec.to_metadata(), 10**12).transact(gov)
    )
    model_id = int(demo.c.gateway.events.ModelRegistered().process_receipt(receipt)[0]["args"]["modelId"])
    wait_until(
        lambda: any(m["id"] == model_id and m["input_range"] for m in demo.client().models()),
        30,
        "model and its input range visible",
    )
    assert model != round_id
    demo.c.agents["provider-1"].stop()
    try:
        _assert_timed_out_and_refunded(demo, model_id, row)
    finally:
        _restart(demo, "provider-1")


def _assert_timed_out_and_refunded(demo: Demo, model_id: int, row: dict[str, float]) -> None:
    balance_before = int(demo.c.gateway.functions.balanceOf(demo.client_address).call())
    with pytest.raises(GatewayHTTPError) as timeout:
        demo.client().infer(model_id, {"features": row})
    assert timeout.value.status == 504 and timeout.value.body["outcome"] == "pending"  # still open on chain
    assert timeout.value.body["expires_at"] > demo.c.w3.eth.get_block("latest")["timestamp"]
    request_id = timeout.value.body["request_ids"][0]
    assert int(demo.c.gateway.functions.balanceOf(demo.client_address).call()) == balance_before - 10**12
    demo.c.advance_time(200)
    wait_until(lambda: int(demo.c.gateway.functions.state(request_id).call()) == 4, 60, "refund")
    assert int(demo.c.gateway.functions.balanceOf(demo.client_address).call()) == balance_before
    refunded = demo.c.gateway.events.RequestRefunded().get_logs(
        from_block=0, argument_filters={"requestId": request_id}
    )
    assert len(refunded) == 1


def test_sigterm_drains_the_calls_in_flight_and_their_answers_stay_retrievable(
    demo: Demo, row: dict[str, float]
) -> None:
    """SIGTERM during a burst: every call already recorded on chain is answered before
    the gateway exits, and each answer can be fetched again after a restart: sealed
    ones by anyone (only the client opens them), plain ones by their API-key client."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from enclave_agent.crypto.aead import public_key_bytes
    from enclave_agent.crypto.sealed_box import open_sealed
    from enclave_agent.protocol.queries import result_ad

    gateway = demo.c.agents["gateway"]
    secret = X25519PrivateKey.generate()
    sealed_body = {
        "model": demo._result.model_id,
        "features": row,
        "encrypt_to": "0x" + public_key_bytes(secret).hex(),
    }
    plain_body = {"model": demo._result.model_id, "features": row}
    before = _chain_requests(demo)
    with ThreadPoolExecutor(8) as pool:
        calls = [
            pool.submit(_post, demo, json.dumps(sealed_body if i % 2 else plain_body).encode())
            for i in range(8)
        ]
        wait_until(lambda: _chain_requests(demo) >= before + 8, 60, "8 requests recorded on chain")
        gateway.terminate()
        replies = [call.result() for call in calls]
    assert [status for status, _ in replies] == [200] * 8, replies
    wait_until(lambda: not gateway.running, 60, "the gateway to exit")
    assert gateway.returncode == 0 and "stopping: drained" in gateway.logs()
    gateway.start()
    wait_until(lambda: demo._gateway_ready(), 60, "the gateway back")
    for i, (_, answer) in enumerate(replies):
        request_id = answer["request_id"]
        if i % 2:  # sealed: anyone may fetch it, only the client's key opens it
            status, fetched = http_json(f"{demo.gateway_url}/v1/requests/{request_id}")
            sealed = fetched["result"]["sealed"]
            opened = json.loads(
                open_sealed(
                    secret,
                    bytes.fromhex(sealed["ephemeral_public"][2:]),
                    bytes.fromhex(sealed["ciphertext"][2:]),
                    result_ad(request_id, 0),
                )
            )
            sent = answer["sealed"]
            mine = json.loads(
                open_sealed(
                    secret,
                    bytes.fromhex(sent["ephemeral_public"][2:]),
                    bytes.fromhex(sent["ciphertext"][2:]),
                    result_ad(request_id, 0),
                )
            )
            assert opened["score"] == mine["score"]
        else:  # plain: its API-key client only
            assert "result" not in http_json(f"{demo.gateway_url}/v1/requests/{request_id}")[1]
            status, fetched = http_json(
                f"{demo.gateway_url}/v1/requests/{request_id}", headers={"X-API-Key": demo.api_key}
            )
            assert fetched["status"] == "completed" and fetched["result"]["score"] == answer["score"]
