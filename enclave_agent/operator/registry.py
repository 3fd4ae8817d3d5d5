"""Code measurements and attestation signers (governance): approve or revoke a
measurement for a role, trust or distrust a signer, list them. The Brownie twin is
``scripts/measurements.py``. Revoking a measurement deactivates every member running
it and starts a new epoch."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address

from enclave_agent.errors import ConfigError
from enclave_agent.onchain import ROLES
from enclave_agent.operator.session import Session


def role_id(name: str) -> int:
    if name not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {name!r}")
    return int(ROLES[name])


def measurement_bytes(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"a measurement is 32 bytes of hex (64 digits), got {text!r}")
    return raw


def approve(session: Session, role: str, measurement: str) -> None:
    raw, rid = measurement_bytes(measurement), role_id(role)
    if session.contracts.registry.functions.isApproved(rid, raw).call():
        raise ConfigError(f"measurement {measurement} is approved for {role} already")
    session.send(session.contracts.registry.functions.approveMeasurement(rid, raw), label=f"approve {role}")


def revoke(session: Session, role: str, measurement: str) -> int:
    """Returns how many members running it were deactivated."""
    raw, rid = measurement_bytes(measurement), role_id(role)
    registry = session.contracts.registry
    if not registry.functions.isApproved(rid, raw).call():
        raise ConfigError(f"measurement {measurement} is not approved for {role}")
    receipt = session.send(registry.functions.revokeMeasurement(rid, raw), label=f"revoke {role}")
    return int(registry.events.MeasurementRevoked().process_receipt(receipt)[0]["args"]["deactivated"])


def measurements(session: Session) -> list[dict[str, Any]]:
    """Every measurement ever approved, per role, and whether it still is."""
    registry = session.contracts.registry
    logs = registry.events.MeasurementApproved().get_logs(from_block=session.deployed_block)
    seen = dict.fromkeys((int(e["args"]["role"]), bytes(e["args"]["measurement"])) for e in logs)
    names: dict[int, str] = {int(value): name for name, value in ROLES.items()}
    return [
        {
            "role": names.get(role, str(role)),
            "measurement": "0x" + raw.hex(),
            "approved": bool(registry.functions.isApproved(role, raw).call()),
        }
        for role, raw in seen
    ]


def set_signer(session: Session, signer: str, trusted: bool) -> None:
    registry = session.contracts.registry
    if bool(registry.functions.isTrustedSigner(signer).call()) == trusted:
        raise ConfigError(f"signer {signer} is {'trusted' if trusted else 'not trusted'} already")
    label = f"{'trust' if trusted else 'distrust'} signer {signer}"
    session.send(registry.functions.setAttestationSigner(signer, trusted), label=label)


def signers(session: Session) -> list[dict[str, Any]]:
    registry = session.contracts.registry
    logs = registry.events.AttestationSignerSet().get_logs(from_block=session.deployed_block)
    seen = dict.fromkeys(str(to_checksum_address(e["args"]["signer"])) for e in logs)
    return [{"signer": s, "trusted": bool(registry.functions.isTrustedSigner(s).call())} for s in seen]
