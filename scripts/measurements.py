"""Governance of code measurements and attestation signers.

    brownie run scripts/measurements.py approve provider 0x<measurement> [--network NAME]
    brownie run scripts/measurements.py revoke provider 0x<measurement>
    brownie run scripts/measurements.py trust_signer 0x<address>
    brownie run scripts/measurements.py distrust_signer 0x<address>

Revoking a measurement deactivates every member running it and starts a new epoch;
agents on the new code re-register with fresh quotes.
"""

from __future__ import annotations

from scripts.common import actor, contracts, measurement_bytes, role_id


def approve(role: str, measurement: str) -> None:
    registry, _, _ = contracts()
    tx = registry.approveMeasurement(role_id(role), measurement_bytes(measurement), {"from": actor()})
    print(f"approved {measurement} for {role} (tx {tx.txid})")


def revoke(role: str, measurement: str) -> None:
    registry, _, _ = contracts()
    tx = registry.revokeMeasurement(role_id(role), measurement_bytes(measurement), {"from": actor()})
    deactivated = tx.events["MeasurementRevoked"]["deactivated"]
    print(f"revoked {measurement} for {role}: {deactivated} member(s) deactivated (tx {tx.txid})")


def trust_signer(address: str) -> None:
    registry, _, _ = contracts()
    registry.setAttestationSigner(address, True, {"from": actor()})
    print(f"attestation signer {address} trusted")


def distrust_signer(address: str) -> None:
    registry, _, _ = contracts()
    registry.setAttestationSigner(address, False, {"from": actor()})
    print(f"attestation signer {address} no longer trusted")


def main() -> None:
    print(__doc__)
