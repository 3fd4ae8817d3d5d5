"""Client access to gated inference.

brownie run scripts/clients.py grant 0x<client> 1000     # CLIENT_ROLE with a quota of 1000 requests
brownie run scripts/clients.py revoke 0x<client>          # quota 0 revokes CLIENT_ROLE
brownie run scripts/clients.py quota 0x<client>
brownie run scripts/clients.py deposit 1000000000000000   # fee balance of the acting account (wei)

The manifest comes from ENCLAVE_MANIFEST (see scripts/common.py). `enclave-agent client
grant|revoke|quota|fee|deposit` does the same without Brownie.
"""

from __future__ import annotations

from scripts.common import actor, contracts


def grant(client: str, quota: int | str) -> None:
    _, _, gateway = contracts()
    gateway.setClientAccess(client, int(quota), {"from": actor()})
    print(f"{client}: CLIENT_ROLE with a quota of {int(quota)} requests")


def revoke(client: str) -> None:
    _, _, gateway = contracts()
    gateway.setClientAccess(client, 0, {"from": actor()})
    print(f"{client}: access revoked")


def quota(client: str) -> tuple[int, int]:
    _, _, gateway = contracts()
    allowed, used = gateway.quotaOf(client)
    print(f"{client}: {used} of {allowed} requests used, balance {gateway.balanceOf(client)} wei")
    return int(allowed), int(used)


def deposit(amount: int | str) -> None:
    _, _, gateway = contracts()
    account = actor()
    gateway.deposit({"from": account, "value": int(amount)})
    print(f"{account}: fee balance now {gateway.balanceOf(account)} wei")


def main() -> None:
    print(__doc__)
