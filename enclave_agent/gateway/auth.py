"""Client consent at the gateway: every request on chain carries the client's own
EIP-712 signature, which ``InferenceGateway.submitRequest`` verifies.

A client signs ``InferenceRequest(address client, uint256 modelId, uint32 rows,
bytes32 inputHash, uint256 nonce, uint64 deadline, uint256 maxFee)`` under the domain
``EnclaveShareGateway``/``1``/chain id/InferenceGateway address. ``inputHash`` is
keccak256 of the canonical query bytes (``input_hash``), the very bytes every
provider decrypts, so a provider answers only the query the client signed.

Two kinds of client:
- **wallet clients** sign each request themselves (the wallet page, ``enclave-agent
  request --key-file``, any EIP-712 signer; contract wallets through EIP-1271);
- **API-key clients** are custody accounts: the gateway operator holds their key
  (``[gateway.custody_keys]``) and signs for them once the API key checks out. Such a
  client trusts the gateway operator with its deposit, as with any custodian.

API keys are configured as SHA-256 hashes per client address (the plain key never
sits in the config).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

from enclave_agent.errors import EnclaveAgentError
from enclave_agent.protocol.queries import Query

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
        {"name": "rows", "type": "uint32"},
        {"name": "inputHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint64"},
        {"name": "maxFee", "type": "uint256"},
    ]
}
SIGNATURE_TTL = 600  # seconds a signer has to send a prepared request


class AuthError(EnclaveAgentError):
    """The caller could not be authenticated (HTTP 401)."""


@dataclass(frozen=True)
class SignedRequest:
    """A client's consent to one on-chain request (the Solidity ``ClientRequest``
    struct plus the client's signature over its EIP-712 digest)."""

    client: str
    model_id: int
    rows: int
    input_hash: bytes
    nonce: int
    deadline: int
    max_fee: int
    signature: bytes

    def as_tuple(self) -> tuple[str, int, int, bytes, int, int, int]:
        """The ``ClientRequest`` tuple web3 passes to ``submitRequest``."""
        return (
            self.client,
            self.model_id,
            self.rows,
            self.input_hash,
            self.nonce,
            self.deadline,
            self.max_fee,
        )

    def typed(self, chain_id: int, gateway_contract: str) -> dict[str, Any]:
        return typed_request(
            chain_id=chain_id,
            gateway_contract=gateway_contract,
            client=self.client,
            model_id=self.model_id,
            rows=self.rows,
            inputs_hash=self.input_hash,
            nonce=self.nonce,
            deadline=self.deadline,
            max_fee=self.max_fee,
        )

    def digest(self, chain_id: int, gateway_contract: str) -> bytes:
        """``InferenceGateway.requestDigest``: the request's id against replay."""
        return request_digest(self.typed(chain_id, gateway_contract))


@dataclass(frozen=True)
class Caller:
    client: str
    method: str  # "api-key" | "eip712"
    signed: SignedRequest | None = None  # the client's own signature (eip712 only)


def hash_api_key(key: str) -> str:
    # surrogateescape: a header that is not UTF-8 hashes to some value (never a match)
    # instead of failing to encode.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def input_hash(query: Query) -> bytes:
    """keccak256 of the canonical query bytes (``Query.to_bytes``), what the client signs:

    - rows to score: ``0x01 || uint16 rows || uint16 features || float64 values``, every
      integer and IEEE-754 double big-endian, rows one after the other, each row's values
      in the model's feature order (``GET /v1/models``);
    - a column statistic: ``0x02 || uint16 column index`` (in the model's feature order).
    """
    return keccak(query.to_bytes())


def typed_request(
    *,
    chain_id: int,
    gateway_contract: str,
    client: str,
    model_id: int,
    rows: int,
    inputs_hash: bytes,
    nonce: int,
    deadline: int,
    max_fee: int,
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
            "rows": rows,
            "inputHash": inputs_hash,
            "nonce": nonce,
            "deadline": deadline,
            "maxFee": max_fee,
        },
    }


def wallet_typed_data(typed: Mapping[str, Any]) -> dict[str, Any]:
    """``typed`` as JSON for ``eth_signTypedData_v4``: the domain type spelled out
    (wallets hash the domain by it), the input hash as 0x-hex and the two uint256
    amounts that can exceed 2^53 (nonce, maxFee) as decimal strings."""
    message = dict(typed["message"])
    message["inputHash"] = "0x" + bytes(message["inputHash"]).hex()
    message["nonce"] = str(message["nonce"])
    message["maxFee"] = str(message["maxFee"])
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


def custody_request(
    account: LocalAccount,
    *,
    chain_id: int,
    gateway_contract: str,
    model_id: int,
    query: Query,
    fee: int,
    now: int,
) -> SignedRequest:
    """The gateway signs for an API-key client with its custody key: exactly this query,
    at exactly the model's fee for its rows."""
    unsigned = SignedRequest(
        client=str(account.address),
        model_id=model_id,
        rows=query.row_count,
        input_hash=input_hash(query),
        nonce=secrets.randbits(256),
        deadline=now + SIGNATURE_TTL,
        max_fee=fee * query.row_count,
        signature=b"",
    )
    return replace(unsigned, signature=sign_request(account.key, unsigned.typed(chain_id, gateway_contract)))


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


def _uint(value: Any, field: str, bits: int) -> int:
    """A non-negative integer below 2**bits, given as a JSON number or a decimal string
    (JavaScript numbers are exact only to 2^53)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise AuthError(f"{field} must be an integer in [0, 2^{bits}) (a number or a decimal string)")
    return value


def authenticate_signature(
    body: Mapping[str, Any],
    *,
    chain_id: int,
    gateway_contract: str,
    model_id: int,
    query: Query,
    now: int,
    has_code: Any = None,
) -> Caller:
    """The client's own signature over exactly this request. An EOA's is checked here;
    a contract wallet's (``has_code(client)`` true) is left to the contract (EIP-1271)."""
    client, signature = body.get("client"), body.get("signature")
    if not isinstance(client, str) or not is_address(client):
        raise AuthError("client must be an address")
    nonce = _uint(body.get("nonce"), "nonce", 256)
    deadline = _uint(body.get("deadline"), "deadline", 64)
    max_fee = _uint(body.get("max_fee"), "max_fee", 256)
    if deadline < now:
        raise AuthError(f"deadline {deadline} has passed (now {now})")
    if not isinstance(signature, str) or len(signature) > 2 + 2 * 4096:
        raise AuthError("signature must be 0x-hex")
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        raise AuthError("signature must be 0x-hex") from None
    signed = SignedRequest(
        client=to_checksum_address(client),
        model_id=model_id,
        rows=query.row_count,
        input_hash=input_hash(query),
        nonce=nonce,
        deadline=deadline,
        max_fee=max_fee,
        signature=raw,
    )
    typed = signed.typed(chain_id, gateway_contract)
    try:
        recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=raw)
    except (ValueError, TypeError, BadSignature, ValidationError):  # malformed: not an EOA's
        recovered = None
    if recovered != signed.client and not (has_code is not None and has_code(signed.client)):
        raise AuthError("the signature is not the client's over this request")
    return Caller(client=signed.client, method="eip712", signed=signed)
