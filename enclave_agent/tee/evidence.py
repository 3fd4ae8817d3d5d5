"""Hardware attestation evidence behind one interface.

An ``EvidenceVerifier`` checks one platform's own evidence (an AWS Nitro attestation
document, an Intel SGX or TDX DCAP quote, an AMD SEV-SNP report) and returns a
``VerifiedEvidence``: a 32-byte measurement that governance can approve in the
registry, the platform's raw measurements, the report data the enclave bound into
the evidence (layout: ``enclave_agent.tee.binding``), whether it comes from a debug
enclave, and the platform's TCB status. Verifiers only say what the evidence proves;
``enclave_agent.tee.policy`` decides whether that is acceptable for a role.

``VerifiedEvidence.record()`` is the part the chain can keep: the evidence type as a
small integer, the measurement, the keccak-256 of the raw evidence bytes and the
32-byte binding.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from eth_utils.crypto import keccak

from enclave_agent.errors import AttestationError
from enclave_agent.tee.binding import evidence_binding, split_report_data

__all__ = [
    "EvidenceRecord",
    "EvidenceType",
    "EvidenceTypeError",
    "EvidenceVerifier",
    "VerifiedEvidence",
    "evidence_binding",
    "evidence_hash",
    "verify_presented",
]


class EvidenceType(enum.IntEnum):
    """Evidence types and their on-chain codes (0 is never a valid type)."""

    SIMULATED = 1
    AWS_NITRO = 2
    INTEL_SGX = 3
    INTEL_TDX = 4
    AMD_SEV_SNP = 5

    @property
    def label(self) -> str:
        """The name used in policy files, the CLI and ``VerifiedEvidence.platform``."""
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> EvidenceType:
        for member, name in _LABELS.items():
            if name == label:
                return member
        raise ValueError(f"unknown evidence type {label!r} (one of {', '.join(_LABELS.values())})")


_LABELS = {
    EvidenceType.SIMULATED: "simulated",
    EvidenceType.AWS_NITRO: "aws-nitro",
    EvidenceType.INTEL_SGX: "intel-sgx",
    EvidenceType.INTEL_TDX: "intel-tdx",
    EvidenceType.AMD_SEV_SNP: "amd-sev-snp",
}


def evidence_hash(evidence: bytes) -> bytes:
    """keccak-256 of the raw evidence bytes: the hash the chain can recompute from calldata."""
    return keccak(bytes(evidence))


@dataclass(frozen=True)
class EvidenceRecord:
    """What the registry can record about verified evidence (all fixed size)."""

    evidence_type: EvidenceType
    measurement: bytes
    evidence_hash: bytes
    binding: bytes | None

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.evidence_type.label,
            "typeCode": int(self.evidence_type),
            "measurement": "0x" + self.measurement.hex(),
            "evidenceHash": "0x" + self.evidence_hash.hex(),
            "binding": None if self.binding is None else "0x" + self.binding.hex(),
        }


@dataclass(frozen=True)
class VerifiedEvidence:
    """What a verifier vouches for after every cryptographic check passed.

    ``timestamp`` is the production time the evidence itself signs (Nitro), or None
    (DCAP quotes and SNP reports carry none: their freshness is the challenge half of
    the report data). ``debug`` evidence is genuinely signed but comes from an enclave
    whose memory the operator can inspect; policy refuses it. ``tcb_status`` is
    Intel's TCB status (DCAP) and None where the platform has no such notion.
    """

    platform: str
    measurement: bytes
    platform_measurements: Mapping[str, bytes]
    timestamp: int | None
    debug: bool
    report_data: bytes | None
    nonce: bytes | None = None
    public_key: bytes | None = None
    identity: str = ""
    details: Mapping[str, object] = field(default_factory=dict)
    evidence_hash: bytes = b""
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    tcb: Mapping[str, int] = field(default_factory=dict)
    verified_at: int = 0

    @property
    def evidence_type(self) -> EvidenceType:
        return EvidenceType.from_label(self.platform)

    def binding(self) -> bytes | None:
        """The 32-byte binding half of the report data, or None if it cannot carry one."""
        if self.report_data is None or len(self.report_data) not in (32, 64):
            return None
        return split_report_data(self.report_data)[0]

    def record(self) -> EvidenceRecord:
        return EvidenceRecord(self.evidence_type, self.measurement, self.evidence_hash, self.binding())


@runtime_checkable
class EvidenceVerifier(Protocol):
    """Verifies one platform's attestation evidence."""

    platform: str
    # True when the evidence signs its own production time (Nitro): it is checked as
    # of that time. DCAP quotes and SNP reports carry none.
    self_dated: bool

    def verify(self, evidence: bytes, *, at: int | None = None) -> VerifiedEvidence:
        """Check ``evidence`` as of Unix time ``at`` (None: the evidence's own
        timestamp where it has one, else now); raise ``AttestationError`` naming the
        failed step."""
        ...


class EvidenceTypeError(AttestationError):
    """Evidence presented as one type is of another, or of a type nobody here verifies."""


def verify_presented(
    verifiers: Mapping[str, EvidenceVerifier], label: str, evidence: bytes, *, now: int
) -> VerifiedEvidence:
    """Verify ``evidence`` presented as type ``label`` at Unix time ``now``, with the
    verifier for that type: self-dated evidence (Nitro) as of its own time (its
    certificates live for hours; the policy bounds its age against ``now``), other
    evidence as of ``now``, when its collateral (Intel TCB Info and CRLs, AMD
    certificates) must be valid. The evidence must prove that type: one DCAP verifier
    reads both SGX and TDX quotes, and the chain records the type the claim names."""
    verifier = verifiers.get(label)
    if verifier is None:
        raise EvidenceTypeError(
            f"no {label} verifier here (verifies {', '.join(sorted(verifiers)) or 'none'})"
        )
    verified = verifier.verify(evidence, at=None if verifier.self_dated else now)
    if verified.platform != label:
        raise EvidenceTypeError(f"evidence presented as {label} is {verified.platform} evidence")
    return verified
