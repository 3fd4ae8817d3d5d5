"""Helpers shared by the Brownie scripts: the deployment manifest and the acting account.

ENCLAVE_MANIFEST   manifest path (default deployments/<network>.json)
ENCLAVE_ACCOUNT    brownie account id to act with (default accounts[0] on development)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from brownie import ConsortiumRegistry, InferenceGateway, ShareExchange, accounts, network

from enclave_agent.chain.manifest import Manifest, load_manifest
from enclave_agent.onchain import ROLES


def manifest() -> Manifest:
    path = Path(os.environ.get("ENCLAVE_MANIFEST", f"deployments/{network.show_active()}.json"))
    return load_manifest(path)


def contracts(m: Manifest | None = None) -> tuple[Any, Any, Any]:
    m = m or manifest()
    return (
        ConsortiumRegistry.at(m.contracts["ConsortiumRegistry"]),
        ShareExchange.at(m.contracts["ShareExchange"]),
        InferenceGateway.at(m.contracts["InferenceGateway"]),
    )


def actor() -> Any:
    name = os.environ.get("ENCLAVE_ACCOUNT")
    return accounts.load(name) if name else accounts[0]


def role_id(role: str | int) -> int:
    if isinstance(role, int) or str(role).isdigit():
        return int(role)
    if role not in ROLES:
        raise SystemExit(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return ROLES[role]


def measurement_bytes(text: str) -> bytes:
    raw = bytes.fromhex(text.removeprefix("0x"))
    if len(raw) != 32:
        raise SystemExit(f"a measurement is 32 bytes of hex, got {len(raw)} bytes")
    return raw
