"""Client access to gated inference: governance grants a client (an account) the
client role with a quota of rows, changes or revokes it; a client deposits the fees
its requests will cost. The Brownie twin is ``scripts/clients.py``."""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from web3 import Web3

from enclave_agent.errors import ConfigError
from enclave_agent.operator.session import Session

log = logging.getLogger(__name__)

_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*(wei|gwei|ether|eth)?\s*$", re.I)


def parse_amount(text: str) -> int:
    """``1000``, ``1e15``, ``2.5 gwei``, ``0.01ether`` -> wei; ConfigError otherwise."""
    match = _AMOUNT.match(text)
    if match is None:
        raise ConfigError(f"amount must be a number of wei, or end in gwei or ether, got {text!r}")
    unit = (match[2] or "wei").lower()
    unit = "ether" if unit == "eth" else unit
    try:
        wei = Web3.to_wei(Decimal(match[1]), unit)
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"amount {text!r} is not a whole number of wei") from exc
    if Decimal(match[1]) * Decimal(10) ** {"wei": 0, "gwei": 9, "ether": 18}[unit] != wei:
        raise ConfigError(f"amount {text!r} is not a whole number of wei")
    return int(wei)


def set_access(session: Session, client: str, quota: int) -> dict[str, Any]:
    """Grant ``client`` the client role with ``quota`` rows in total (0 revokes it)."""
    if quota < 0:
        raise ConfigError(f"quota must be >= 0 rows, got {quota}")
    used = int(session.contracts.gateway.functions.quotaOf(client).call()[1])
    if 0 < quota < used:
        raise ConfigError(f"client {client} has used {used} rows already: a quota of {quota} leaves it none")
    what = "revoke" if quota == 0 else f"grant {quota} rows to"
    session.send(session.contracts.gateway.functions.setClientAccess(client, quota), label=f"{what} {client}")
    log.info("client %s: quota %d", client, quota)
    return show(session, client)


def show(session: Session, client: str) -> dict[str, Any]:
    gateway = session.contracts.gateway.functions
    quota, used = (int(v) for v in gateway.quotaOf(client).call())
    role = gateway.hasRole(gateway.CLIENT_ROLE().call(), client).call()
    return {
        "client": client,
        "access": bool(role),
        "quota_rows": quota,
        "used_rows": used,
        "balance_wei": int(gateway.balanceOf(client).call()),
    }


def fees(session: Session, client: str) -> dict[str, Any]:
    """The client's balance and, per active model, its fee per row and how many rows the
    balance pays for (null: free)."""
    from enclave_agent.operator.models import list_models

    info = show(session, client)
    balance = info["balance_wei"]
    info["models"] = [
        {
            "id": model["id"],
            "name": model["name"],
            "kind": model["kind"],
            "fee_wei_per_row": model["fee_wei_per_row"],
            "rows_paid": balance // model["fee_wei_per_row"] if model["fee_wei_per_row"] else None,
        }
        for model in list_models(session)
        if model["active"]
    ]
    return info


def deposit(session: Session, amount: int) -> dict[str, Any]:
    """The sender (the client itself) adds ``amount`` wei to its fee balance."""
    if amount <= 0:
        raise ConfigError(f"deposit a positive amount, got {amount} wei")
    if session.sender is None:
        raise ConfigError("a deposit is paid by the client: give its --key-file")
    account = session.sender.address
    have = int(session.contracts.w3.eth.get_balance(Web3.to_checksum_address(account)))
    if have < amount:
        raise ConfigError(f"account {account} holds {have} wei, less than the {amount} wei to deposit")
    session.send(session.contracts.gateway.functions.deposit(), label=f"deposit {amount} wei", value=amount)
    return show(session, account)
