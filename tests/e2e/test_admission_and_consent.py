"""Active adversaries against admission, client consent and liveness, end to end on
the demo consortium (three provider processes, the gateway process, Anvil, HTTP):

- an outsider's agent cannot join, an organisation limited to one enclave cannot add a
  second, and a quote for an enclave key the caller does not hold is refused;
- a rogue gateway (an attested gateway enclave of its own organisation, driven by this
  test) cannot record a request without the client's own signature, with another key's
  signature, or by replaying one: the client's deposit and quota stay as they were;
- with a genuine signature it still cannot swap in its own query: providers answer only
  the query whose hash the client signed; the request expires and is refunded;
- a contract wallet (EIP-1271) signs its own requests through the HTTP API;
- a member that never posts its membership digest is dropped after the deadline by the
  honest agents, without governance; the gateway answers throughout, a round completes
  without it, and its organisation cannot come back during the cool-down.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_utils import keccak
from web3.exceptions import ContractCustomError

from enclave_agent.chain import error_class
from enclave_agent.crypto.aead import encrypt
from enclave_agent.gateway import auth
from enclave_agent.gateway.client import GatewayClient
from enclave_agent.protocol import queries
from enclave_devnet import COMPLETED, dev_key, wait_until
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, Demo
from tests.integration.rogue import Rogue
from tests.support.http import http_json

REPO = Path(__file__).resolve().parents[2]
PROVIDER, GATEWAY = 1, 2
UNSYNCHRONISED = 5  # RevokeReason.Unsynchronised


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def reverted_with(exc: ContractCustomError, signature: str) -> bool:
    return bytes.fromhex(str(exc.data).removeprefix("0x"))[:4] == selector(signature)


def run_agent(demo: Demo, name: str, operator_index: int, *, admit: bool) -> subprocess.CompletedProcess[str]:
    """A real agent process (``enclave-agent run``) for ``operator_index``; returns when it exits."""
    agent = demo.c.add_agent(name, operator_index=operator_index, start=False, admit=admit)
    try:
        return subprocess.run(
            [sys.executable, "-m", "enclave_agent.cli", "run", "--config", str(agent.config)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    finally:
        del demo.c.agents[name]  # not one of the consortium's agents (later tests scan those)


def funds(demo: Demo, client: str) -> tuple[int, list[int]]:
    gateway = demo.c.gateway.functions
    return int(gateway.balanceOf(client).call()), [int(v) for v in gateway.quotaOf(client).call()]


# ------------------------------------------------------------------ admission


def test_an_outsiders_agent_cannot_join(demo: Demo) -> None:
    members = demo.c.registry.functions.activeMembers(PROVIDER).call()
    result = run_agent(demo, "outsider", 14, admit=False)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "RegistryOrganisationNotAdmitted" in result.stderr
    assert demo.c.w3.eth.accounts[14] in result.stderr
    assert demo.c.registry.functions.activeMembers(PROVIDER).call() == members


def test_an_organisation_limited_to_one_enclave_cannot_add_a_second(demo: Demo) -> None:
    operator = demo.c.w3.eth.accounts[1]  # provider-0's organisation: one enclave per role
    assert demo.c.registry.functions.enclaveCount(operator, PROVIDER).call() == 1
    members = demo.c.registry.functions.activeMembers(PROVIDER).call()
    result = run_agent(demo, "provider-0-twin", 1, admit=True)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "RegistryEnclaveLimit" in result.stderr
    assert demo.c.registry.functions.activeMembers(PROVIDER).call() == members


def test_a_quote_for_an_enclave_key_the_caller_does_not_hold_is_refused(demo: Demo) -> None:
    rogue = Rogue(demo.c, operator_index=15)
    victim = Account.create()  # e.g. an enclave whose address its operator's funding revealed
    rogue.address = victim.address
    with pytest.raises(ContractCustomError) as refused:
        rogue.register(PROVIDER, possession_key=bytes(rogue.account.key))
    assert reverted_with(refused.value, "RegistryPossessionNotProven(address,address)")
    assert not demo.c.registry.functions.member(victim.address).call()[1]


# ------------------------------------------------------------------ consent


@pytest.fixture(scope="module")
def rogue_gateway(demo: Demo) -> Rogue:
    """A second gateway enclave, attested and synchronised, that the test drives."""
    rogue = Rogue(demo.c, operator_index=16)
    rogue.registered(GATEWAY)
    wait_until(lambda: demo.c.registry.functions.isActiveMember(rogue.address, GATEWAY).call(), 30, "rogue")
    rogue.post_digest()
    wait_until(lambda: demo.c.registry.functions.isSynchronised().call(), 60, "epoch synchronised")
    return rogue


def signed(demo: Demo, query: queries.Query, key: str, **changes: Any) -> auth.SignedRequest:
    account = Account.from_key(key)
    fields: dict[str, Any] = {
        "client": account.address,
        "model_id": demo._result.model_id,
        "rows": query.row_count,
        "input_hash": auth.input_hash(query),
        "nonce": secrets.randbits(256),
        "deadline": int(demo.c.w3.eth.get_block("latest")["timestamp"]) + 600,
        "max_fee": FEE_WEI * query.row_count,
        "signature": b"",
    } | changes
    request = auth.SignedRequest(**fields)
    typed = request.typed(demo.c.manifest.chain_id, demo.c.gateway.address)
    return auth.SignedRequest(**(fields | {"signature": auth.sign_request(key, typed)}))


def query_of(demo: Demo, row: dict[str, float]) -> queries.Query:
    return queries.Query(queries.KIND_SCORE, rows=(tuple(row[f] for f in demo._result.split.features),))


def encrypted_for_holders(
    demo: Demo, rogue: Rogue, request: auth.SignedRequest, query: queries.Query
) -> bytes:
    """What a gateway posts: ``query`` encrypted for each shareholder of the model."""
    epoch = int(demo.c.registry.functions.synchronisedEpoch().call())
    keys = rogue.keys(epoch)
    digest = request.digest(demo.c.manifest.chain_id, demo.c.gateway.address)
    round_id = demo._result.rounds["model"]
    holders = [
        p
        for i, p in enumerate(demo.c.exchange.functions.participants(round_id).call())
        if int(demo.c.exchange.functions.roundInfo(round_id).call()[7]) >> i & 1
    ]
    entries = [
        (
            p,
            encrypt(
                keys[p],
                query.to_bytes(),
                queries.query_ad(demo.c.manifest.chain_id, demo.c.gateway.address, digest, rogue.address, p),
            ),
        )
        for p in holders
    ]
    return queries.encode_query_payload(epoch, entries)


def test_a_rogue_gateway_cannot_spend_a_clients_deposit_without_its_signature(
    demo: Demo, row: dict[str, float], rogue_gateway: Rogue
) -> None:
    client_key = dev_key(CLIENT_INDEX)
    query = query_of(demo, row)
    genuine = signed(demo, query, client_key)
    payload = encrypted_for_holders(demo, rogue_gateway, genuine, query)
    submit = demo.c.gateway.functions.submitRequest
    before, requests = funds(demo, demo.client_address), demo.c.gateway.functions.requestCount().call()
    forged = signed(demo, query, "0x" + secrets.token_hex(32), client=demo.client_address)
    for name, request, signature in [
        ("no signature", genuine, b""),
        ("another key's signature", forged, forged.signature),
        ("a signature over another request", signed(demo, query, client_key, rows=2), genuine.signature),
    ]:
        with pytest.raises(error_class("InferenceInvalidClientSignature")):
            rogue_gateway.tx.send(submit(request.as_tuple(), signature, payload), label=name)
    # A 256-row request for the client at the client's expense: the attack.
    bulk = signed(demo, query, "0x" + secrets.token_hex(32), client=demo.client_address, rows=256)
    with pytest.raises(error_class("InferenceInvalidClientSignature")):
        rogue_gateway.tx.send(submit(bulk.as_tuple(), bulk.signature, payload), label="bulk")
    assert funds(demo, demo.client_address) == before
    assert demo.c.gateway.functions.requestCount().call() == requests


def test_a_rogue_gateway_cannot_replay_a_signed_request(
    demo: Demo, row: dict[str, float], rogue_gateway: Rogue
) -> None:
    wallet = GatewayClient(demo.gateway_url, wallet_key=dev_key(CLIENT_INDEX))
    info = next(m for m in wallet.models() if m["id"] == demo._result.model_id)
    fields = wallet._sign(info, {"features": row})
    status, answer = http_json(
        demo.gateway_url + "/v1/inference",
        "POST",
        json.dumps({"model": info["id"], "features": row} | fields).encode(),
    )
    assert status == 200, answer
    seen = auth.SignedRequest(
        client=fields["client"],
        model_id=info["id"],
        rows=1,
        input_hash=auth.input_hash(query_of(demo, row)),
        nonce=int(fields["nonce"]),
        deadline=int(fields["deadline"]),
        max_fee=int(fields["max_fee"]),
        signature=bytes.fromhex(fields["signature"][2:]),
    )
    before = funds(demo, demo.client_address)
    payload = encrypted_for_holders(demo, rogue_gateway, seen, query_of(demo, row))
    with pytest.raises(error_class("InferenceRequestReplayed")):
        rogue_gateway.tx.send(
            demo.c.gateway.functions.submitRequest(seen.as_tuple(), seen.signature, payload), label="replay"
        )
    assert funds(demo, demo.client_address) == before


def test_a_rogue_gateway_cannot_swap_in_its_own_query(
    demo: Demo, row: dict[str, float], rogue_gateway: Rogue
) -> None:
    client_key = dev_key(CLIENT_INDEX)
    asked = query_of(demo, row)
    own = queries.Query(queries.KIND_SCORE, rows=(tuple(np.array(asked.rows[0]) * 1.01),))
    genuine = signed(demo, asked, client_key)
    before = funds(demo, demo.client_address)
    receipt = rogue_gateway.tx.send(
        demo.c.gateway.functions.submitRequest(
            genuine.as_tuple(), genuine.signature, encrypted_for_holders(demo, rogue_gateway, genuine, own)
        ),
        label="swapped",
    )
    request_id = int(
        demo.c.gateway.events.RequestSubmitted().process_receipt(receipt)[0]["args"]["requestId"]
    )
    # The providers are live (an honest request is answered meanwhile) but answer nothing for it.
    assert "score" in demo.client().infer(demo._result.model_id, {"features": row})
    refusal = "the query is not the one the client signed"
    for name in ("provider-0", "provider-1", "provider-2"):
        wait_until(
            lambda n=name: refusal in demo.c.agents[n].logs(), 30, f"{name} to refuse the swapped query"
        )
    assert int(demo.c.gateway.functions.requestInfo(request_id).call()[5]) == 0  # no partials
    # It expires unanswered; anyone may refund it, and the client is whole again.
    demo.c.advance_time(200)
    demo.c.w3.eth.wait_for_transaction_receipt(
        demo.c.gateway.functions.refundExpired(request_id).transact({"from": demo.c.governor})
    )
    balance, (quota, used) = funds(demo, demo.client_address)
    assert balance == before[0] - FEE_WEI  # the honest request above
    assert (quota, used) == (before[1][0], before[1][1] + 1)


def test_a_contract_wallet_signs_through_eip_1271(demo: Demo, row: dict[str, float]) -> None:
    w3, gov = demo.c.w3, {"from": demo.c.governor}
    artifact = json.loads((REPO / "build" / "contracts" / "MockContractWallet.json").read_text())
    owner = Account.create()
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(gov | {"to": owner.address, "value": 10**18}))
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    wallet_address = w3.eth.wait_for_transaction_receipt(factory.constructor(owner.address).transact(gov))[
        "contractAddress"
    ]
    wallet = w3.eth.contract(address=wallet_address, abi=artifact["abi"])
    w3.eth.wait_for_transaction_receipt(
        demo.c.gateway.functions.setClientAccess(wallet_address, 5).transact(gov)
    )
    deposit = demo.c.gateway.encode_abi("deposit", [])
    tx = wallet.functions.execute(demo.c.gateway.address, deposit, 10**16).build_transaction(
        {"from": owner.address, "value": 10**16, "nonce": w3.eth.get_transaction_count(owner.address)}
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(owner.sign_transaction(tx).raw_transaction)
    )
    before = funds(demo, wallet_address)

    def ask(key: bytes) -> tuple[int, dict[str, Any]]:
        body = {"model": demo._result.model_id, "client": wallet_address, "features": row}
        _, prepared = http_json(
            demo.gateway_url + "/v1/inference/typed-data", "POST", json.dumps(body).encode()
        )
        typed = prepared["typed_data"]
        signature = auth.sign_request(key, typed)
        fields = {k: prepared[k] for k in ("nonce", "deadline", "max_fee")} | {
            "signature": "0x" + signature.hex()
        }
        return http_json(demo.gateway_url + "/v1/inference", "POST", json.dumps(body | fields).encode())

    status, refused = ask(Account.create().key)  # not the wallet owner's key
    assert (status, refused.get("reason")) == (401, "InferenceInvalidClientSignature"), refused
    assert funds(demo, wallet_address) == before
    status, answer = ask(owner.key)
    assert status == 200 and 0.0 <= answer["score"] <= 1.0, answer
    assert funds(demo, wallet_address) == (before[0] - FEE_WEI, [5, 1])


# ------------------------------------------------------------ liveness (last: it changes membership)


def test_a_member_that_never_synchronises_is_dropped_and_nobody_waits_for_it(
    demo: Demo, row: dict[str, float]
) -> None:
    c, gov = demo.c, {"from": demo.c.governor}
    registry = c.registry.functions
    c.w3.eth.wait_for_transaction_receipt(registry.setSyncPolicy(20, 3600).transact(gov))
    try:
        lazy = Rogue(c, operator_index=17)
        lazy.registered(PROVIDER)  # and then never posts its membership digest
        epoch = int(registry.epoch().call())
        honest = [c.agents[f"provider-{i}"].enclave_address() for i in range(3)]
        wait_until(lambda: all(registry.digestMatched(epoch, a).call() for a in honest), 60, "honest digests")
        assert not registry.isSynchronised().call()
        # The gateway serves on the last synchronised epoch's keys: no gap for clients.
        assert "score" in demo.client().infer(demo._result.model_id, {"features": row})
        c.advance_time(25)
        wait_until(lambda: not registry.isActiveMember(lazy.address, PROVIDER).call(), 60, "lazy dropped")
        (dropped,) = c.registry.events.MemberRevoked().get_logs(
            from_block=0, argument_filters={"enclave": lazy.address}
        )
        assert dropped["args"]["reason"] == UNSYNCHRONISED
        assert dropped["args"]["by"] in honest + [c.agents["gateway"].enclave_address()]  # not governance
        c.wait_synchronised(3)
        round_id = c.open_round(
            "column-stats", 2 * len(demo._result.split.features) + 1, output="intermediate"
        )
        assert c.wait_round(round_id) == COMPLETED
        assert lazy.address not in c.exchange.functions.participants(round_id).call()
        assert "score" in demo.client().infer(demo._result.model_id, {"features": row})
        # Its organisation cools down: no way back in before governance or the clock allows.
        with pytest.raises(ContractCustomError) as cooling:
            lazy.register(PROVIDER)
        assert reverted_with(cooling.value, "RegistryOrganisationCoolingDown(address,uint64)")
    finally:
        c.w3.eth.wait_for_transaction_receipt(registry.setSyncPolicy(600, 86400).transact(gov))
