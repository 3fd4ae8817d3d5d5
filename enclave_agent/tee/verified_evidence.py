"""The statement an evidence verifier signs, and the registry checks, for a
registration with hardware evidence (``ConsortiumRegistry.registerWithEvidence``).

An evidence verifier checks raw evidence (``enclave_agent.tee.verifier_service``) and
signs the EIP-712 struct::

    VerifiedEvidence(bytes32 quoteDigest, uint8 evidenceType, bytes32 evidenceHash,
                     bytes32 policyHash)

in the registry's domain: "evidence of this type whose keccak-256 is ``evidenceHash``
proves the quote with digest ``quoteDigest`` (its measurement, and through the key
binding its enclave account, X25519 key, chain and registry) under the policy file
whose keccak-256 is ``policyHash``". The registry wants at least its threshold of
distinct trusted verifiers, signatures in ascending signer order (``by_signer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak

from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.quote import MalformedQuoteError, Quote, _recover, domain_separator, quote_digest

__all__ = [
    "VERIFIED_EVIDENCE_TYPEHASH",
    "EvidenceClaim",
    "by_signer",
    "policy_hash",
    "recover_verifier",
    "sign_verified_evidence",
    "verified_evidence_digest",
]

VERIFIED_EVIDENCE_TYPEHASH = keccak(
    text="VerifiedEvidence(bytes32 quoteDigest,uint8 evidenceType,bytes32 evidenceHash,bytes32 policyHash)"
)


def policy_hash(policy_file: bytes) -> bytes:
    """keccak-256 of a policy file's bytes: the policy a verifier signs under."""
    return keccak(bytes(policy_file))


@dataclass(frozen=True)
class EvidenceClaim:
    """The Solidity ``EvidenceClaim``: evidence type code, keccak-256 of the raw
    evidence, keccak-256 of the policy file."""

    evidence_type: EvidenceType
    evidence_hash: bytes
    policy_hash: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence_type", EvidenceType(int(self.evidence_type)))
        for name in ("evidence_hash", "policy_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes | bytearray) or len(value) != 32:
                raise MalformedQuoteError(f"evidence claim {name} must be 32 bytes")
            object.__setattr__(self, name, bytes(value))

    def as_tuple(self) -> tuple[int, bytes, bytes]:
        return (int(self.evidence_type), self.evidence_hash, self.policy_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "evidenceType": int(self.evidence_type),
            "evidenceHash": "0x" + self.evidence_hash.hex(),
            "policyHash": "0x" + self.policy_hash.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> EvidenceClaim:
        """From ``to_json`` output, or an event's decoded arguments."""
        try:
            return cls(
                EvidenceType(int(data["evidenceType"])),
                _bytes(data["evidenceHash"]),
                _bytes(data["policyHash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedQuoteError(f"evidence claim is malformed: {exc}") from None


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)


def verified_evidence_digest(quote: Quote, claim: EvidenceClaim) -> bytes:
    """``ConsortiumRegistry.verifiedEvidenceDigest(quote, claim)``."""
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "bytes32", "uint8", "bytes32", "bytes32"],
            [VERIFIED_EVIDENCE_TYPEHASH, quote_digest(quote), *claim.as_tuple()],
        )
    )
    return keccak(b"\x19\x01" + domain_separator(quote.chain_id, quote.registry) + struct_hash)


def sign_verified_evidence(quote: Quote, claim: EvidenceClaim, private_key: bytes) -> bytes:
    """A verifier's 65-byte signature (low s) over ``verified_evidence_digest``."""
    return bytes(Account.unsafe_sign_hash(verified_evidence_digest(quote, claim), private_key).signature)


def recover_verifier(quote: Quote, claim: EvidenceClaim, signature: bytes) -> str:
    """The checksummed address that signed ``claim`` for ``quote``."""
    return _recover(verified_evidence_digest(quote, claim), signature, "verifier signature")


def by_signer(quote: Quote, claim: EvidenceClaim, signatures: Iterable[bytes]) -> list[bytes]:
    """``signatures`` in the order the registry wants: ascending signer address, once each."""
    signed = {int(recover_verifier(quote, claim, s), 16): bytes(s) for s in signatures}
    return [signed[k] for k in sorted(signed)]
