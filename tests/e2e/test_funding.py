"""The gateway's enclave account pays for every request's transactions (a load run of
10,000 requests drained the registration's 1 ETH after 3,878). Its operator keeps it
funded; an operator that cannot pay makes the gateway say so: /healthz is 503 naming
the account, and requests get 503 with Retry-After, recorded nowhere and charged nothing.

The account is drained for real (``anvil_setBalance``) on the shared demo consortium;
every test restores what it changed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from enclave_agent.protocol.funding import FUNDING, MIN_ENCLAVE_BALANCE
from enclave_devnet import wait_until
from enclave_devnet.demo import CLIENT_INDEX, Demo
from tests.support.http import http_json


def _balance(demo: Demo, address: str) -> int:
    return int(demo.c.w3.eth.get_balance(address))


def _set_balance(demo: Demo, address: str, wei: int) -> None:
    demo.c.w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]


def _health(demo: Demo) -> tuple[int, dict[str, Any]]:
    return http_json(demo.gateway_url + "/healthz")


def _accounts(demo: Demo) -> tuple[str, str]:
    gateway = demo.c.agents["gateway"].enclave_address()
    operator = str(demo.c.registry.functions.member(gateway).call()[2])
    return gateway, operator


def test_a_drained_enclave_account_is_topped_up_by_its_operator(demo: Demo, row: dict[str, float]) -> None:
    gateway, operator = _accounts(demo)
    _set_balance(demo, gateway, 10**16)  # 0.01 ETH: a few dozen requests left
    before = _balance(demo, operator)
    wait_until(lambda: _balance(demo, gateway) >= MIN_ENCLAVE_BALANCE, 60, "the operator topping it up")
    assert before - _balance(demo, operator) >= FUNDING  # the operator paid, plus the transfer's gas
    status, health = _health(demo)
    assert status == 200 and health["status"] == "ok" and health["enclave_topups"] >= 1
    assert health["enclave_balance_wei"] >= MIN_ENCLAVE_BALANCE
    assert "the operator topped it up" in demo.c.agents["gateway"].logs()
    with urllib.request.urlopen(demo.gateway_url + "/metrics", timeout=10) as response:
        assert "enclave_agent_enclave_topups_total" in response.read().decode()
    assert 0 <= demo.client().infer(demo._result.model_id, {"features": row})["score"] <= 1


def test_an_operator_that_cannot_pay_is_reported_and_requests_are_not_charged(
    demo: Demo, row: dict[str, float]
) -> None:
    gateway, operator = _accounts(demo)
    kept = _balance(demo, operator), _balance(demo, gateway)
    client = demo.c.w3.eth.accounts[CLIENT_INDEX]
    contract = demo.c.gateway.functions
    _set_balance(demo, operator, 0)
    _set_balance(demo, gateway, 0)
    try:
        wait_until(lambda: _health(demo)[0] == 503, 60, "the gateway reporting its unfunded account")
        status, health = _health(demo)
        assert health["status"].startswith("enclave account low on funds (0 wei)"), health
        deposit, requests = contract.balanceOf(client).call(), contract.requestCount().call()
        body = json.dumps({"model": demo._result.model_id, "features": row}).encode()
        request = urllib.request.Request(
            demo.gateway_url + "/v1/inference",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": demo.api_key},
        )
        try:
            urllib.request.urlopen(request, timeout=60)  # noqa: S310 (loopback)
            raise AssertionError("an unfunded gateway answered")
        except urllib.error.HTTPError as exc:
            refused = exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")
        assert refused[0] == 503 and refused[1]["reason"] == "InsufficientFunds" and refused[2]
        assert "cannot pay for its transactions" in refused[1]["error"]
        assert (contract.balanceOf(client).call(), contract.requestCount().call()) == (deposit, requests)
    finally:
        _set_balance(demo, operator, kept[0])
    wait_until(lambda: _health(demo)[0] == 200, 60, "the gateway topped up and healthy again")
    assert 0 <= demo.client().infer(demo._result.model_id, {"features": row})["score"] <= 1
