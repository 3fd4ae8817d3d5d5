"""Governance of organisations over web3 (``enclave-agent org ...``): admit an
organisation's operator for some roles and a number of enclaves per role, suspend it
(its enclaves are revoked and a new epoch starts), reinstate it (also ends the
cool-down of an organisation dropped for not synchronising), and list them.

The Brownie twin is ``scripts/organisations.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from enclave_agent.chain import Contracts
from enclave_agent.errors import ConfigError
from enclave_agent.onchain import ROLES
from enclave_agent.operator.session import Sender, Session

log = logging.getLogger(__name__)

STATUSES = ("none", "admitted", "suspended")


def roles_bitmap(text: str) -> int:
    """``"provider,gateway"`` -> the Organisation.roles bitmap (1 << role)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROLES]
    if not names or unknown:
        raise ConfigError(f"roles must be a comma-separated subset of {', '.join(ROLES)}, got {text!r}")
    bitmap = 0
    for name in names:
        bitmap |= 1 << ROLES[name]
    return bitmap


def operator_address(text: str) -> str:
    if not is_address(text):
        raise ConfigError(f"operator must be an address (0x + 40 hex), got {text!r}")
    return str(to_checksum_address(text))


@dataclass(frozen=True)
class Governance:
    """The registry, read with ``contracts`` and written by ``sender`` (governance key)."""

    contracts: Contracts
    sender: Sender | None
    deployed_block: int

    @classmethod
    def open(cls, manifest_path: Path, key_file: Path | None, rpc_url: str | None = None) -> Governance:
        session = Session.open(manifest_path, key_file, rpc_url, what="governance key")
        return cls(session.contracts, session.sender, session.deployed_block)

    def _send(self, call: Any, label: str) -> None:
        if self.sender is None:
            raise ConfigError("this command changes the registry: give --key-file (governance key)")
        self.sender.send(call, label=label)

    def admit(self, operator: str, name: str, roles: int, max_enclaves_per_role: int) -> None:
        if not 1 <= max_enclaves_per_role <= 65535:
            raise ConfigError(f"max enclaves per role must be 1..65535, got {max_enclaves_per_role}")
        registry = self.contracts.registry.functions
        self._send(
            registry.admitOrganisation(operator, name, roles, max_enclaves_per_role), f"admit {operator}"
        )
        log.info("admitted organisation %s (%s)", name, operator)

    def suspend(self, operator: str) -> None:
        self._send(self.contracts.registry.functions.suspendOrganisation(operator), f"suspend {operator}")

    def reinstate(self, operator: str) -> None:
        self._send(self.contracts.registry.functions.reinstateOrganisation(operator), f"reinstate {operator}")

    def show(self, operator: str) -> dict[str, Any]:
        registry = self.contracts.registry.functions
        status, roles, limit, cooling_until, name = registry.organisation(operator).call()
        return {
            "operator": operator,
            "name": name,
            "status": STATUSES[int(status)],
            "roles": [role for role, value in ROLES.items() if int(roles) >> value & 1],
            "max_enclaves_per_role": int(limit),
            "cooling_until": int(cooling_until),
            "enclaves": {
                role: int(registry.enclaveCount(operator, value).call()) for role, value in ROLES.items()
            },
        }

    def list(self) -> list[dict[str, Any]]:
        """Every organisation ever admitted (from ``OrganisationAdmitted`` events), as it is now."""
        logs = self.contracts.registry.events.OrganisationAdmitted().get_logs(from_block=self.deployed_block)
        operators = dict.fromkeys(str(to_checksum_address(log["args"]["operator"])) for log in logs)
        return [self.show(operator) for operator in operators]
