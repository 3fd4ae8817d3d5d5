"""Deploy the three contracts, wire roles, approve measurements, write the manifest.

    brownie run scripts/deploy.py                      # local Anvil, this checkout's measurement
    brownie run scripts/deploy.py --network NAME       # any configured network

Environment (all optional):
    ENCLAVE_MEASUREMENT         hex measurement to approve for both roles
                                (default: `enclave-agent measure` of this checkout)
    ENCLAVE_ATTESTATION_SIGNER  address of the trusted attestation signer
    ENCLAVE_MANIFEST            where to write the manifest (default deployments/<network>.json)

Nobody can register an enclave yet: governance then admits each organisation (its
operator address, the roles it may hold, how many enclaves per role), e.g.

    brownie run scripts/organisations.py admit 0x<operator> bank-a provider 1
    brownie run scripts/organisations.py admit 0x<operator> gateway-co gateway 1
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from brownie import ConsortiumRegistry, InferenceGateway, ShareExchange, accounts, chain, network

from enclave_agent.chain.identity import ChainIdentity
from enclave_agent.chain.manifest import Manifest, write_manifest
from enclave_agent.tee.measure import measure_package

PROVIDER, GATEWAY = 1, 2


def deploy(governor, measurement: bytes, signer: str | None) -> Manifest:
    tx = {"from": governor}
    registry = ConsortiumRegistry.deploy(governor, tx)
    exchange = ShareExchange.deploy(registry, governor, tx)
    gateway = InferenceGateway.deploy(registry, exchange, governor, tx)
    exchange.grantRole(exchange.COORDINATOR_ROLE(), governor, tx)
    for role in (PROVIDER, GATEWAY):
        registry.approveMeasurement(role, measurement, tx)
    if signer:
        registry.setAttestationSigner(signer, True, tx)
    identity = ChainIdentity.read(network.web3, registry.tx.block_number)
    return Manifest(
        chain_id=chain.id,
        rpc_url=network.web3.provider.endpoint_uri,
        deployed_block=registry.tx.block_number,
        genesis_hash=identity.genesis_hash,
        deployed_block_hash=identity.deployed_block_hash,
        governor=str(governor),
        contracts={
            "ConsortiumRegistry": str(registry),
            "ShareExchange": str(exchange),
            "InferenceGateway": str(gateway),
        },
        abi_dir=str(Path("build/contracts").resolve()),
    )


def main() -> None:
    measurement_hex = os.environ.get("ENCLAVE_MEASUREMENT")
    measurement = bytes.fromhex(measurement_hex.removeprefix("0x")) if measurement_hex else measure_package()
    manifest = deploy(accounts[0], measurement, os.environ.get("ENCLAVE_ATTESTATION_SIGNER"))
    path = Path(os.environ.get("ENCLAVE_MANIFEST", f"deployments/{network.show_active()}.json"))
    write_manifest(manifest, path)
    print(f"measurement approved for provider and gateway roles: 0x{measurement.hex()}")
    print(f"manifest written to {path}")
    print("next: admit each organisation with scripts/organisations.py admit 0x<operator> NAME ROLES [MAX]")
    print(json.dumps(manifest.to_json(), indent=2))
