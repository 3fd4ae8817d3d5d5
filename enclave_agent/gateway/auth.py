"""Client authentication at the gateway: API keys or EIP-712 signed requests.

API keys are configured as SHA-256 hashes per client address (the plain key never
sits in the config). A wallet signs ``InferenceRequest(address client, uint256
modelId, bytes32 inputHash, uint256 nonce, uint64 deadline)`` under the domain
``EnclaveShareGateway``/``1``/chain id/InferenceGateway address; the signed digest
becomes the request digest on chain, where the contract refuses a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.errors import EnclaveAgentError

DOMAIN_NAME = "EnclaveShareGateway"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
REQUEST_TYPES = {
    "InferenceRequest": [
        {"name": "client", "type": "address"},
        {"name": "modelId", "type": "uint256"},
        {"name": "inputHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint64"},
    ]
}


class AuthError(EnclaveAgentError):
    """The caller could not be authenticated (HTTP 401)."""


@dataclass(frozen=True)
class Caller:
    client: str
    method: str  # "api-key" | "eip712"
    digest: bytes | None = None  # the signed request digest (eip712 only)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def input_hash(body_inputs: Any) -> bytes:
    """Canonical hash of what the client asked (features/rows/statistic)."""
    return keccak(json.dumps(body_inputs, sort_keys=True, separators=(",", ":")).encode())


def typed_request(
    *,
    chain_id: int,
    gateway_contract: str,
    client: str,
    model_id: int,
    inputs_hash: bytes,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    return {
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": gateway_contract,
        },
        "types": REQUEST_TYPES,
        "primaryType": "InferenceRequest",
        "message": {
            "client": client,
            "modelId": model_id,
            "inputHash": inputs_hash,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def wallet_typed_data(typed: Mapping[str, Any]) -> dict[str, Any]:
    """``typed`` as JSON for ``eth_signTypedData_v4``: the domain type spelled out
    (wallets hash the domain by it) and the input hash as 0x-hex."""
    message = dict(typed["message"])
    message["inputHash"] = "0x" + bytes(message["inputHash"]).hex()
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, **typed["types"]},
        "primaryType": typed["primaryType"],
        "domain": dict(typed["domain"]),
        "message": message,
    }


def sign_request(private_key: str | bytes, typed: Mapping[str, Any]) -> bytes:
    message = encode_typed_data(full_message=dict(typed))
    return bytes(Account.sign_message(message, private_key).signature)


def request_digest(typed: Mapping[str, Any]) -> bytes:
    message = encode_typed_data(full_message=dict(typed))
    return keccak(b"\x19" + message.version + message.header + message.body)


def authenticate_api_key(presented: str, api_keys: Mapping[str, str]) -> Caller:
    """`api_keys` maps client address -> SHA-256 hex of its key; constant-time compare."""
    digest = hash_api_key(presented)
    found = None
    for client, expected in api_keys.items():
        if hmac.compare_digest(digest, expected.lower()):
            found = client
    if found is None:
        raise AuthError("unknown API key")
    return Caller(client=to_checksum_address(found), method="api-key")


def authenticate_signature(
    body: Mapping[str, Any], *, chain_id: int, gateway_contract: str, model_id: int, inputs: Any, now: int
) -> Caller:
    client, nonce, deadline, signature = (body.get(k) for k in ("client", "nonce", "deadline", "signature"))
    if not isinstance(client, str) or not is_address(client):
        raise AuthError("client must be an address")
    if not isinstance(nonce, int) or isinstance(nonce, bool) or nonce < 0:
        raise AuthError("nonce must be a non-negative integer")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline < now:
        raise AuthError("deadline missing or passed")
    if not isinstance(signature, str):
        raise AuthError("signature must be 0x-hex")
    typed = typed_request(
        chain_id=chain_id,
        gateway_contract=gateway_contract,
        client=to_checksum_address(client),
        model_id=model_id,
        inputs_hash=input_hash(inputs),
        nonce=nonce,
        deadline=deadline,
    )
    try:
        recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except (ValueError, TypeError) as exc:
        raise AuthError("signature does not verify") from exc
    if recovered != to_checksum_address(client):
        raise AuthError("signature is not the client's")
    return Caller(client=recovered, method="eip712", digest=request_digest(typed))


def row_digest(base: bytes | None, index: int) -> bytes:
    """One on-chain digest per row: derived from the signed digest, or random for API keys."""
    if base is None:
        return secrets.token_bytes(32)
    return keccak(abi_encode(["bytes32", "uint256"], [base, index]))
