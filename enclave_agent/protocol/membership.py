"""Membership as an agent sees it: who is registered (with the quote each peer
was admitted with), which signers and measurements governance trusts, and the
membership digest the registry expects every member to post.

The agent rebuilds this view from registry events alone, re-verifies every
peer's quote itself and only then derives pairwise keys (it does not trust the
contract alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.protocol.records import unversioned
from enclave_agent.tee.quote import Quote

VIEW_VERSION = 1


@dataclass
class MemberRecord:
    enclave: str
    role: int
    quote: Quote
    signature: bytes
    possession: bytes
    # Hardware members (registerWithEvidence): the EvidenceRecorded event's type code
    # and raw evidence, which every peer re-verifies; 0 and empty for simulated quotes.
    evidence_type: int = 0
    evidence: bytes = b""

    def to_json(self) -> dict[str, Any]:
        return {
            "enclave": self.enclave,
            "role": self.role,
            "quote": self.quote.to_json(),
            "signature": self.signature.hex(),
            "possession": self.possession.hex(),
            "evidence_type": self.evidence_type,
            "evidence": self.evidence.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberRecord:
        return cls(
            enclave=data["enclave"],
            role=int(data["role"]),
            quote=Quote.from_json(data["quote"]),
            signature=bytes.fromhex(data["signature"]),
            possession=bytes.fromhex(data["possession"]),
            evidence_type=int(data.get("evidence_type", 0)),
            evidence=bytes.fromhex(data.get("evidence", "")),
        )


@dataclass
class MembershipView:
    """Registry state reconstructed from events, in registration order."""

    epoch: int = 0
    synchronised_epoch: int = 0
    sync_deadline: int = 0
    members: list[MemberRecord] = field(default_factory=list)
    signers: set[str] = field(default_factory=set)
    approved: dict[int, set[bytes]] = field(default_factory=dict)

    # -- event application (idempotent for a given event order) -------------------

    def member_registered(self, record: MemberRecord) -> None:
        self.members = [m for m in self.members if m.enclave != record.enclave]
        self.members.append(record)

    def member_revoked(self, enclave: str) -> None:
        self.members = [m for m in self.members if m.enclave != enclave]

    def measurement_approved(self, role: int, measurement: bytes) -> None:
        self.approved.setdefault(role, set()).add(measurement)

    def measurement_revoked(self, role: int, measurement: bytes) -> None:
        self.approved.setdefault(role, set()).discard(measurement)

    def signer_set(self, signer: str, trusted: bool) -> None:
        (self.signers.add if trusted else self.signers.discard)(to_checksum_address(signer))

    # -- queries ---------------------------------------------------------------------

    def member(self, enclave: str) -> MemberRecord | None:
        return next((m for m in self.members if m.enclave == enclave), None)

    def of_role(self, role: int) -> list[MemberRecord]:
        return [m for m in self.members if m.role == role]

    def digest(self, chain_id: int, registry: str) -> bytes:
        """The twin of ConsortiumRegistry.membershipDigest(): the epoch bound to a hash
        chain over the members in registration order."""
        chained = bytes(32)
        for m in self.members:
            chained = keccak(
                abi_encode(
                    ["bytes32", "address", "uint8", "bytes32", "bytes32"],
                    [chained, m.enclave, m.role, m.quote.measurement, m.quote.x25519_key],
                )
            )
        return keccak(
            abi_encode(["uint256", "address", "uint64", "bytes32"], [chain_id, registry, self.epoch, chained])
        )

    # -- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VIEW_VERSION,
            "epoch": self.epoch,
            "synchronised_epoch": self.synchronised_epoch,
            "sync_deadline": self.sync_deadline,
            "members": [m.to_json() for m in self.members],
            "signers": sorted(self.signers),
            "approved": {str(r): sorted(m.hex() for m in ms) for r, ms in self.approved.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MembershipView:
        if not data:
            return cls()
        data = unversioned(data, "membership", "membership view", VIEW_VERSION)
        return cls(
            epoch=int(data["epoch"]),
            synchronised_epoch=int(data.get("synchronised_epoch", 0)),
            sync_deadline=int(data.get("sync_deadline", 0)),
            members=[MemberRecord.from_json(m) for m in data["members"]],
            signers=set(data["signers"]),
            approved={int(r): {bytes.fromhex(m) for m in ms} for r, ms in data["approved"].items()},
        )
