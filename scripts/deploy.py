"""Deploy the three contracts, wire roles, approve measurements, write the manifest.

    brownie run scripts/deploy.py                      # local Anvil, this checkout's measurement
    brownie run scripts/deploy.py --network NAME       # any configured network

Environment (all optional):
    ENCLAVE_MEASUREMENT         hex measurement to approve for both roles
                                (default: `enclave-agent measure` of this checkout)
    ENCLAVE_ATTESTATION_SIGNER  address of the trusted attestation signer
    ENCLAVE_MANIFEST            where to write the manifest (default deployments/<network>.json)
    ENCLAVE_ACCOUNT             Brownie account to deploy and govern with (default accounts[0])

Nobody can register an enclave yet: governance then admits each organisation (its
operator address, the roles it may hold, how many enclaves per role), e.g.

    brownie run scripts/organisations.py admit 0x<operator> bank-a provider 1
    brownie run scripts/organisations.py admit 0x<operator> gateway-co gateway 1
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from brownie import network
from eth_account import Account

from enclave_agent.chain.deploy import deploy_contracts
from enclave_agent.chain.manifest import Manifest, write_manifest
from enclave_agent.onchain import ROLES
from enclave_agent.tee.measure import measure_package
from scripts.common import actor

ABI_DIR = Path("build/contracts")


def deploy(governor: Any, measurement: bytes, signer: str | None) -> Manifest:
    """The agent's own deployer (``enclave_agent.chain.deploy``: one wiring for both),
    sending as ``governor``: a Brownie account the node signs for, or one with a key."""
    key = getattr(governor, "private_key", None)
    return deploy_contracts(
        network.web3,
        Account.from_key(key) if key else str(governor),
        abi_dir=ABI_DIR,
        measurements=dict.fromkeys(ROLES.values(), measurement),
        signers=[signer] if signer else [],
        rpc_url=network.web3.provider.endpoint_uri,
    )


def main() -> None:
    measurement_hex = os.environ.get("ENCLAVE_MEASUREMENT")
    measurement = bytes.fromhex(measurement_hex.removeprefix("0x")) if measurement_hex else measure_package()
    manifest = deploy(actor(), measurement, os.environ.get("ENCLAVE_ATTESTATION_SIGNER"))
    path = Path(os.environ.get("ENCLAVE_MANIFEST", f"deployments/{network.show_active()}.json"))
    write_manifest(manifest, path)
    print(f"measurement approved for provider and gateway roles: 0x{measurement.hex()}")
    print(f"manifest written to {path}")
    print("next: admit each organisation with scripts/organisations.py admit 0x<operator> NAME ROLES [MAX]")
    print(json.dumps(manifest.to_json(), indent=2))
