"""Organisations of the consortium (governance): who may register enclaves, of which roles,
and how many of each.

    brownie run scripts/organisations.py admit 0x<operator> NAME ROLES [MAX] [--network NAME]
    brownie run scripts/organisations.py suspend 0x<operator>
    brownie run scripts/organisations.py reinstate 0x<operator>
    brownie run scripts/organisations.py show 0x<operator>

ROLES is `provider`, `gateway` or `provider,gateway`; MAX is how many active enclaves of
each role the organisation may run (default 1). Only an admitted organisation's operator
can register an enclave. Suspending revokes the organisation's enclaves (a new epoch
starts when any were active) and stops it registering until it is reinstated;
reinstating also ends the cool-down of an organisation whose enclave was dropped for not
synchronising in time. The acting account is governance (ENCLAVE_ACCOUNT, see
scripts/common.py).
"""

from __future__ import annotations

from typing import Any

from brownie import chain
from eth_utils import is_address, to_checksum_address

from scripts.common import ROLES, actor, contracts

STATUSES = {0: "not admitted", 1: "admitted", 2: "suspended"}


def roles_bitmap(roles: str) -> int:
    """`provider,gateway` -> the registry's bitmap (1 << role per role)."""
    names = [name.strip() for name in str(roles).split(",") if name.strip()]
    if not names:
        raise SystemExit(f"roles must name at least one of {', '.join(ROLES)}, got {roles!r}")
    bitmap = 0
    for name in names:
        if name not in ROLES:
            raise SystemExit(f"role must be one of {', '.join(ROLES)}, got {name!r}")
        bitmap |= 1 << ROLES[name]
    return bitmap


def role_names(bitmap: int) -> list[str]:
    return [name for name, role in ROLES.items() if bitmap >> role & 1]


def _operator(address: str) -> str:
    if not is_address(str(address)):
        raise SystemExit(f"an operator is a 0x-prefixed 20-byte address, got {address!r}")
    return to_checksum_address(str(address))


def admit(operator: str, name: str, roles: str, max_enclaves: int | str = 1) -> None:
    registry, _, _ = contracts()
    operator = _operator(operator)
    limit = int(max_enclaves)
    if not 1 <= limit <= 0xFFFF:
        raise SystemExit(f"MAX is how many enclaves per role, 1..65535, got {max_enclaves!r}")
    bitmap = roles_bitmap(roles)
    tx = registry.admitOrganisation(operator, name, bitmap, limit, {"from": actor()})
    print(
        f"admitted {name!r} ({operator}): roles {','.join(role_names(bitmap))}, "
        f"up to {limit} enclave(s) per role (tx {tx.txid})"
    )


def suspend(operator: str) -> int:
    registry, _, _ = contracts()
    operator = _operator(operator)
    tx = registry.suspendOrganisation(operator, {"from": actor()})
    revoked = int(tx.events["OrganisationSuspended"]["revoked"])
    epoch = f", epoch {tx.events['EpochStarted']['epoch']} started" if revoked else ""
    print(f"suspended {operator}: {revoked} enclave(s) revoked{epoch} (tx {tx.txid})")
    return revoked


def reinstate(operator: str) -> None:
    registry, _, _ = contracts()
    operator = _operator(operator)
    tx = registry.reinstateOrganisation(operator, {"from": actor()})
    print(f"reinstated {operator}: it may register enclaves again (tx {tx.txid})")


def show(operator: str) -> dict[str, Any]:
    registry, _, _ = contracts()
    operator = _operator(operator)
    status, bitmap, limit, cooling_until, name = registry.organisation(operator)
    info: dict[str, Any] = {
        "operator": operator,
        "name": str(name),
        "status": STATUSES[int(status)],
        "roles": role_names(int(bitmap)),
        "max_enclaves_per_role": int(limit),
        "cooling_until": int(cooling_until),
        "cooling_down": int(cooling_until) > int(chain[-1].timestamp),
        "enclaves": {role: int(registry.enclaveCount(operator, ROLES[role])) for role in ROLES},
    }
    cooling = f", cooling down until {info['cooling_until']}" if info["cooling_down"] else ""
    print(
        f"{operator} {info['name']!r}: {info['status']}{cooling}; roles {','.join(info['roles']) or '-'}, "
        f"up to {info['max_enclaves_per_role']} per role; active enclaves "
        + ", ".join(f"{role} {count}" for role, count in info["enclaves"].items())
    )
    return info


def main() -> None:
    print(__doc__)
