"""Hardware attestation evidence behind one interface.

An ``EvidenceVerifier`` checks a platform's own evidence (an AWS Nitro attestation
document; SGX/TDX DCAP quotes and SEV-SNP reports would plug in the same way) and
returns a ``VerifiedEvidence``: a 32-byte measurement that governance can approve
in the registry, the platform's raw measurements, and the data the enclave bound
into the evidence. The attestation service turns verified evidence into the same
EIP-712 quote the simulated path produces (``AttestationService.issue_from_evidence``).

The enclave binds its chain identity into the evidence's report data with
``evidence_binding``, so evidence for one enclave cannot be replayed for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from eth_utils.address import to_canonical_address

_BINDING_DOMAIN = b"enclave-share/evidence-binding/v1\0"


@dataclass(frozen=True)
class VerifiedEvidence:
    """What a verifier vouches for after every cryptographic check passed.

    ``debug`` evidence is genuinely signed but comes from an enclave whose memory
    the operator can inspect; policy must refuse it (see ``AttestationService``).
    """

    platform: str
    measurement: bytes
    platform_measurements: Mapping[str, bytes]
    timestamp: int
    debug: bool
    report_data: bytes | None
    nonce: bytes | None = None
    public_key: bytes | None = None
    identity: str = ""
    details: Mapping[str, object] = field(default_factory=dict)


@runtime_checkable
class EvidenceVerifier(Protocol):
    """Verifies one platform's attestation evidence."""

    platform: str

    def verify(self, evidence: bytes, *, at: int | None = None) -> VerifiedEvidence:
        """Check ``evidence`` as of Unix time ``at`` (None: the evidence's own
        timestamp); raise ``AttestationError`` naming the failed step."""
        ...


def evidence_binding(*, enclave: str, x25519_key: bytes, chain_id: int, registry: str) -> bytes:
    """The 32 bytes an enclave puts in its evidence's report data (Nitro
    ``user_data``, SGX/TDX ``REPORTDATA``): its chain address, its X25519 key and
    the registry it registers with."""
    return hashlib.sha256(
        _BINDING_DOMAIN
        + to_canonical_address(enclave)
        + bytes(x25519_key)
        + chain_id.to_bytes(32, "big")
        + to_canonical_address(registry)
    ).digest()
