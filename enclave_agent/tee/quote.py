"""EIP-712 attestation quotes: the statement an attestation service signs and the
registry (and every peer) verifies.

A quote binds {role, measurement, operator, enclave address, X25519 key, chain id,
registry address, nonce, expiry}. Its digest is the EIP-712 hash of the Solidity
``Quote`` struct under the domain ("EnclaveShareRegistry", "1", chainId, registry),
so ``quote_digest`` equals ``ConsortiumRegistry.quoteDigest`` whenever the quote's
own chain id and registry are the ones it is submitted to (the only case that can
register). Peers re-run ``verify_quote`` themselves rather than trusting the contract.

Proof of possession: the enclave's own chain key signs ``Possession(bytes32
quoteDigest)`` in the same domain (``sign_possession``), so a quote registers only
for an enclave that holds the account it names, with the X25519 key it names.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.errors import AttestationError, MeasurementMismatchError
from enclave_agent.onchain import ROLES, Role

logger = logging.getLogger(__name__)

ROLE_PROVIDER: Final = int(Role.PROVIDER)
ROLE_GATEWAY: Final = int(Role.GATEWAY)
ROLE_NAMES: Final = {int(role): name for name, role in ROLES.items()}

DOMAIN_NAME = "EnclaveShareRegistry"
DOMAIN_VERSION = "1"
DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
QUOTE_TYPEHASH = keccak(
    text="Quote(uint8 role,bytes32 measurement,address operator,address enclave,bytes32 x25519Key,"
    "uint256 chainId,address registry,bytes32 nonce,uint64 expiry)"
)
_QUOTE_ABI_TYPES = [
    "bytes32",
    "uint8",
    "bytes32",
    "address",
    "address",
    "bytes32",
    "uint256",
    "address",
    "bytes32",
    "uint64",
]
# Solidity struct member names, in field order (the JSON and event keys).
_STRUCT_KEYS = (
    "role",
    "measurement",
    "operator",
    "enclave",
    "x25519Key",
    "chainId",
    "registry",
    "nonce",
    "expiry",
)
POSSESSION_TYPEHASH = keccak(text="Possession(bytes32 quoteDigest)")
_SECP256K1_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
_UINT64_MAX = 2**64 - 1
_UINT256_MAX = 2**256 - 1


class MalformedQuoteError(AttestationError, ValueError):
    """A quote or signature is not well formed (wrong length, type or range)."""


class UntrustedSignerError(AttestationError):
    """The quote was signed by a key that is not a trusted attestation signer."""


class QuoteRoleError(AttestationError):
    """The quote is for another role than the one expected."""


class QuoteBindingError(AttestationError):
    """The quote is bound to another chain or registry."""


class QuoteExpiredError(AttestationError):
    """The quote's expiry lies in the past."""


class MeasurementNotApprovedError(AttestationError):
    """The quoted measurement is not among the approved ones."""


class PossessionError(AttestationError):
    """The possession signature was not made by the quoted enclave's key."""


def role_name(role: int) -> str:
    return ROLE_NAMES.get(role, f"unknown role {role}")


def _bytes32(value: Any, field: str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise MalformedQuoteError(f"quote field {field} is not hex") from None
    if not isinstance(value, bytes | bytearray | memoryview):
        raise MalformedQuoteError(f"quote field {field} must be 32 bytes, got {type(value).__name__}")
    data = bytes(value)
    if len(data) != 32:
        raise MalformedQuoteError(f"quote field {field} must be 32 bytes, got {len(data)}")
    return data


def _address(value: Any, field: str) -> str:
    checksummed = _checksummed(value) if isinstance(value, str) else None
    if checksummed is None:
        raise MalformedQuoteError(f"quote field {field} is not an address: {value!r}")
    return checksummed


@functools.lru_cache(maxsize=4096)
def _checksummed(value: str) -> str | None:
    """``value`` checksummed, None if it is no address. Cached: every member's record is
    read again at each step (two keccaks per address, 50 members, every block)."""
    return str(to_checksum_address(value)) if is_address(value) else None


def _uint(value: Any, field: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MalformedQuoteError(f"quote field {field} must be an integer in [0, {maximum}], got {value!r}")
    return value


@dataclass(frozen=True)
class Quote:
    """The EIP-712 ``Quote`` struct. Construction normalises byte fields to ``bytes``
    and addresses to checksummed form, and refuses malformed values."""

    role: int
    measurement: bytes
    operator: str
    enclave: str
    x25519_key: bytes
    chain_id: int
    registry: str
    nonce: bytes
    expiry: int

    def __post_init__(self) -> None:
        if isinstance(self.role, bool) or not isinstance(self.role, int) or self.role not in ROLE_NAMES:
            raise MalformedQuoteError(
                f"quote field role must be one of {sorted(ROLE_NAMES)}, got {self.role!r}"
            )
        normalised = {
            "measurement": _bytes32(self.measurement, "measurement"),
            "operator": _address(self.operator, "operator"),
            "enclave": _address(self.enclave, "enclave"),
            "x25519_key": _bytes32(self.x25519_key, "x25519Key"),
            "chain_id": _uint(self.chain_id, "chainId", _UINT256_MAX),
            "registry": _address(self.registry, "registry"),
            "nonce": _bytes32(self.nonce, "nonce"),
            "expiry": _uint(self.expiry, "expiry", _UINT64_MAX),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def role_name(self) -> str:
        return role_name(self.role)

    def as_tuple(self) -> tuple[int, bytes, str, str, bytes, int, str, bytes, int]:
        """The tuple web3 passes for the Solidity struct, in field order."""
        return (
            self.role,
            self.measurement,
            self.operator,
            self.enclave,
            self.x25519_key,
            self.chain_id,
            self.registry,
            self.nonce,
            self.expiry,
        )

    @classmethod
    def from_event(cls, value: Mapping[str, Any] | Sequence[Any]) -> Quote:
        """From a decoded event or call result: a mapping with the Solidity member
        names (web3's AttributeDict) or a tuple in field order."""
        if isinstance(value, Mapping):
            missing = [key for key in _STRUCT_KEYS if key not in value]
            if missing:
                raise MalformedQuoteError(f"quote struct lacks {', '.join(missing)}")
            items = [value[key] for key in _STRUCT_KEYS]
        else:
            items = list(value)
            if len(items) != len(_STRUCT_KEYS):
                raise MalformedQuoteError(
                    f"quote tuple has {len(items)} members, expected {len(_STRUCT_KEYS)}"
                )
        return cls(*items)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with the Solidity member names; bytes as 0x-hex."""
        return {
            "role": self.role,
            "measurement": "0x" + self.measurement.hex(),
            "operator": self.operator,
            "enclave": self.enclave,
            "x25519Key": "0x" + self.x25519_key.hex(),
            "chainId": self.chain_id,
            "registry": self.registry,
            "nonce": "0x" + self.nonce.hex(),
            "expiry": self.expiry,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Quote:
        """Inverse of ``to_json``; also accepts the JSON text."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise MalformedQuoteError(f"quote is not JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise MalformedQuoteError("quote JSON must be an object")
        unknown = sorted(set(data) - set(_STRUCT_KEYS))
        if unknown:
            raise MalformedQuoteError(f"quote JSON has unknown fields {', '.join(unknown)}")
        return cls.from_event(data)


def domain_separator(chain_id: int, registry: str) -> bytes:
    """The registry's EIP-712 domain separator (OpenZeppelin ``_domainSeparatorV4``)."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                to_checksum_address(registry),
            ],
        )
    )


def quote_struct_hash(quote: Quote) -> bytes:
    return keccak(abi_encode(_QUOTE_ABI_TYPES, [QUOTE_TYPEHASH, *quote.as_tuple()]))


def quote_digest(quote: Quote) -> bytes:
    """The EIP-712 digest of ``quote`` in the domain of its own chain and registry."""
    return keccak(b"\x19\x01" + domain_separator(quote.chain_id, quote.registry) + quote_struct_hash(quote))


def sign_quote(quote: Quote, private_key: bytes) -> bytes:
    """A 65-byte r||s||v (v in {27, 28}, low s) signature over ``quote_digest``."""
    signed = Account.unsafe_sign_hash(quote_digest(quote), private_key)
    return bytes(signed.signature)


def possession_digest(quote: Quote) -> bytes:
    """The EIP-712 digest of ``Possession(quote_digest(quote))`` the enclave key signs
    (``ConsortiumRegistry.possessionDigest``)."""
    struct_hash = keccak(abi_encode(["bytes32", "bytes32"], [POSSESSION_TYPEHASH, quote_digest(quote)]))
    return keccak(b"\x19\x01" + domain_separator(quote.chain_id, quote.registry) + struct_hash)


def sign_possession(quote: Quote, enclave_key: bytes) -> bytes:
    """The enclave's proof that it holds ``quote.enclave``'s key (65 bytes, low s)."""
    return bytes(Account.unsafe_sign_hash(possession_digest(quote), enclave_key).signature)


def _recover(digest: bytes, signature: bytes, what: str) -> str:
    """The checksummed address that signed ``digest``. Applies the same rules as
    OpenZeppelin ``ECDSA.recover``: 65 bytes, v in {27, 28}, s in the lower half."""
    signature = bytes(signature)
    if len(signature) != 65:
        raise MalformedQuoteError(f"{what} must be 65 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise MalformedQuoteError(f"{what} has v={v}, expected 27 or 28")
    if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
        raise MalformedQuoteError(f"{what} is not canonical (r or s out of range, or high s)")
    try:
        public_key = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except BadSignature:
        raise MalformedQuoteError(f"{what} does not recover to any key") from None
    return str(public_key.to_checksum_address())


def recover_signer(quote: Quote, signature: bytes) -> str:
    """The checksummed address that signed ``quote`` (the attestation signer)."""
    return _recover(quote_digest(quote), signature, "quote signature")


def verify_possession(quote: Quote, possession: bytes) -> None:
    """PossessionError unless ``possession`` is the quoted enclave's own signature."""
    holder = _recover(possession_digest(quote), possession, "possession signature")
    if holder != quote.enclave:
        raise PossessionError(
            f"possession signature for enclave {quote.enclave} was made by {holder}, not by the enclave"
        )


def verify_quote(
    quote: Quote,
    signature: bytes,
    *,
    trusted_signers: Collection[str],
    approved_measurements: Collection[bytes],
    expected_measurement: bytes | None,
    chain_id: int,
    registry: str,
    now: int,
    expected_role: int | None = None,
    possession: bytes | None = None,
) -> None:
    """Check a quote as the registry does, plus the peers' "same code" check.

    Raises an ``AttestationError`` subclass naming the culprit: untrusted signer,
    other role, wrong chain/registry binding, expired, measurement not approved,
    ``PossessionError`` when ``possession`` is given and not the enclave's own
    signature, or ``MeasurementMismatchError`` when ``expected_measurement`` (ours) differs.
    """
    signer = recover_signer(quote, signature)
    if possession is not None:
        verify_possession(quote, possession)
    if signer not in {to_checksum_address(s) for s in trusted_signers}:
        raise UntrustedSignerError(
            f"quote for enclave {quote.enclave} is signed by {signer}, "
            "which is not a trusted attestation signer"
        )
    if expected_role is not None and quote.role != expected_role:
        raise QuoteRoleError(
            f"quote for enclave {quote.enclave} is for role {quote.role_name}, "
            f"expected {role_name(expected_role)}"
        )
    if quote.chain_id != chain_id or quote.registry != to_checksum_address(registry):
        raise QuoteBindingError(
            f"quote for enclave {quote.enclave} is bound to chain {quote.chain_id} "
            f"registry {quote.registry}, "
            f"expected chain {chain_id} registry {to_checksum_address(registry)}"
        )
    if quote.expiry < now:
        raise QuoteExpiredError(f"quote for enclave {quote.enclave} expired at {quote.expiry}, now is {now}")
    if quote.measurement not in {bytes(m) for m in approved_measurements}:
        raise MeasurementNotApprovedError(
            f"measurement 0x{quote.measurement.hex()} of enclave {quote.enclave} "
            f"is not approved for role {quote.role_name}"
        )
    if expected_measurement is not None and quote.measurement != bytes(expected_measurement):
        raise MeasurementMismatchError(
            f"peer {quote.enclave} runs measurement 0x{quote.measurement.hex()}, "
            f"ours is 0x{bytes(expected_measurement).hex()}"
        )
    logger.debug("quote verified: enclave=%s role=%s signer=%s", quote.enclave, quote.role_name, signer)
