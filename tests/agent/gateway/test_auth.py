"""Client consent: the canonical input hash, the signed request and what the gateway
refuses before anything reaches the chain (the contract checks the same again)."""

from __future__ import annotations

import re
import struct

import pytest
from eth_account import Account
from eth_utils import keccak

from enclave_agent.gateway import auth
from enclave_agent.protocol.queries import KIND_SCORE, KIND_STATISTIC, Query

CHAIN_ID = 31337
CONTRACT = "0x" + "11" * 20
NOW = 1_800_000_000
KEY = keccak(b"client key")
CLIENT = Account.from_key(KEY).address


def spec_bytes(rows: list[list[float]]) -> bytes:
    """The README's canonical form, written out independently of Query.to_bytes."""
    out = bytes([1]) + struct.pack(">HH", len(rows), len(rows[0]))
    for row in rows:
        for value in row:
            out += struct.pack(">d", value)
    return out


def test_input_hash_is_keccak_of_the_documented_bytes() -> None:
    rows = [[0.00005, -0.0, 1e9, 3.25], [1.0, 2.0, -1e-300, 7.0]]  # 0.00005: exact as any parser's float64
    query = Query(KIND_SCORE, rows=tuple(tuple(r) for r in rows))
    assert query.to_bytes() == spec_bytes(rows)
    assert auth.input_hash(query) == keccak(spec_bytes(rows))
    statistic = Query(KIND_STATISTIC, column=5)
    assert auth.input_hash(statistic) == keccak(bytes([2]) + struct.pack(">H", 5))
    # Every bit counts: -0.0 and 0.0 are different inputs.
    flipped = Query(KIND_SCORE, rows=((0.00005, 0.0, 1e9, 3.25), rows[1]))  # type: ignore[arg-type]
    assert auth.input_hash(flipped) != auth.input_hash(query)


def signed_body(query: Query, *, key: bytes = KEY, **changes: object) -> dict[str, object]:
    typed = auth.typed_request(
        chain_id=CHAIN_ID,
        gateway_contract=CONTRACT,
        client=CLIENT,
        model_id=3,
        rows=query.row_count,
        inputs_hash=auth.input_hash(query),
        nonce=2**255 + 1,
        deadline=NOW + 60,
        max_fee=5 * 10**15,
    )
    body: dict[str, object] = {
        "client": CLIENT,
        "nonce": str(2**255 + 1),
        "deadline": NOW + 60,
        "max_fee": str(5 * 10**15),
        "signature": "0x" + auth.sign_request(key, typed).hex(),
    }
    body.update(changes)
    return body


def authenticate(body: dict[str, object], query: Query, has_code: object = None) -> auth.Caller:
    return auth.authenticate_signature(
        body,
        chain_id=CHAIN_ID,
        gateway_contract=CONTRACT,
        model_id=3,
        query=query,
        now=NOW,
        has_code=has_code,
    )


ROW = Query(KIND_SCORE, rows=((1.0, 2.0),))


def test_a_signature_over_exactly_this_request_is_accepted_and_kept_for_the_chain() -> None:
    caller = authenticate(signed_body(ROW), ROW)
    signed = caller.signed
    assert signed is not None and caller.client == CLIENT and caller.method == "eip712"
    assert signed.as_tuple() == (CLIENT, 3, 1, auth.input_hash(ROW), 2**255 + 1, NOW + 60, 5 * 10**15)
    assert signed.digest(CHAIN_ID, CONTRACT) == auth.request_digest(signed.typed(CHAIN_ID, CONTRACT))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"signature": "0x" + "00" * 65}, "not the client's"),
        ({"max_fee": str(10**16)}, "not the client's"),  # a higher cap than signed
        ({"nonce": "12"}, "not the client's"),
        ({"client": Account.from_key(keccak(b"other")).address}, "not the client's"),
        ({"deadline": NOW - 1}, "has passed"),
        ({"deadline": 2**64}, "deadline must be an integer in [0, 2^64)"),
        ({"nonce": 2**256}, "nonce must be an integer in [0, 2^256)"),
        ({"nonce": "1" * 79}, "nonce must be an integer"),
        ({"max_fee": -1}, "max_fee must be an integer"),
        ({"max_fee": True}, "max_fee must be an integer"),
        ({"signature": "0xzz"}, "0x-hex"),
        ({"signature": "0x1234"}, "not the client's"),  # 2 bytes
        ({"signature": 5}, "0x-hex"),
        ({"client": "0x1234"}, "client must be an address"),
    ],
)
def test_anything_else_is_refused_naming_why(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(auth.AuthError, match=re.escape(problem)):
        authenticate(signed_body(ROW, **changes), ROW)


def test_a_signature_over_other_rows_does_not_cover_these() -> None:
    other = Query(KIND_SCORE, rows=((1.0, 2.5),))
    with pytest.raises(auth.AuthError, match="not the client's"):
        authenticate(signed_body(other), ROW)


def test_another_keys_signature_is_refused_unless_the_client_is_a_contract_wallet() -> None:
    body = signed_body(ROW, key=keccak(b"wallet owner"))
    with pytest.raises(auth.AuthError):
        authenticate(body, ROW, has_code=lambda address: False)
    # A contract wallet's signature is the contract's to judge (EIP-1271 on chain).
    asked: list[str] = []
    caller = authenticate(body, ROW, has_code=lambda address: asked.append(address) or True)
    assert asked == [CLIENT] and caller.signed is not None


def test_custody_signs_exactly_the_query_at_the_models_fee() -> None:
    account = Account.from_key(KEY)
    query = Query(KIND_SCORE, rows=((1.0, 2.0), (3.0, 4.0)))
    signed = auth.custody_request(
        account, chain_id=CHAIN_ID, gateway_contract=CONTRACT, model_id=3, query=query, fee=7, now=NOW
    )
    assert (signed.client, signed.rows, signed.input_hash, signed.max_fee) == (
        CLIENT,
        2,
        auth.input_hash(query),
        14,
    )
    assert signed.deadline == NOW + auth.SIGNATURE_TTL
    typed = signed.typed(CHAIN_ID, CONTRACT)
    assert (
        Account.recover_message(auth.encode_typed_data(full_message=typed), signature=signed.signature)
        == CLIENT
    )
    again = auth.custody_request(
        account, chain_id=CHAIN_ID, gateway_contract=CONTRACT, model_id=3, query=query, fee=7, now=NOW
    )
    assert again.nonce != signed.nonce  # never the same request twice (the contract refuses replays)
