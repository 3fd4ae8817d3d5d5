"""deploy_contracts against a real Anvil: code, wiring, roles, manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from enclave_agent.chain import Contracts, deploy_contracts, load_manifest, write_manifest
from enclave_agent.errors import ChainError, ConfigError
from tests.agent.chain.chainkit import ABI_DIR, GATEWAY, MEASUREMENT, PROVIDER, Deployment, funded_account
from tests.support.anvil import AnvilProcess

COORDINATOR_ROLE = Web3.keccak(text="COORDINATOR_ROLE")
GOVERNOR_ROLE = Web3.keccak(text="GOVERNOR_ROLE")


@pytest.fixture(scope="module")
def deployment(anvil_node: AnvilProcess) -> Deployment:
    return Deployment(anvil_node)


def test_manifest_describes_the_deployment(deployment: Deployment, anvil_node: AnvilProcess) -> None:
    m = deployment.manifest
    w3 = deployment.w3
    assert m.chain_id == 31337
    assert m.rpc_url == anvil_node.url
    assert m.governor == deployment.governor.address
    assert Path(m.abi_dir) == ABI_DIR.resolve()
    assert set(m.contracts) == {"ConsortiumRegistry", "ShareExchange", "InferenceGateway"}
    assert len(set(m.contracts.values())) == 3
    for address in m.contracts.values():
        assert len(w3.eth.get_code(address)) > 1000
    # deployed_block is the registry's block: code appears exactly there.
    registry = m.contracts["ConsortiumRegistry"]
    assert w3.eth.get_code(registry, block_identifier=m.deployed_block) != b""
    assert w3.eth.get_code(registry, block_identifier=m.deployed_block - 1) == b""


def test_contracts_are_wired_and_configured(deployment: Deployment) -> None:
    c = deployment.contracts
    gov = deployment.governor.address
    assert c.exchange.functions.registry().call() == c.registry.address
    assert c.gateway.functions.registry().call() == c.registry.address
    assert c.gateway.functions.exchange().call() == c.exchange.address
    for contract in (c.registry, c.exchange, c.gateway):
        assert contract.functions.hasRole(GOVERNOR_ROLE, gov).call()
    assert c.exchange.functions.hasRole(COORDINATOR_ROLE, gov).call()
    assert c.registry.functions.isApproved(PROVIDER, MEASUREMENT).call()
    assert c.registry.functions.isApproved(GATEWAY, MEASUREMENT).call()
    assert not c.registry.functions.isApproved(PROVIDER, b"\x00" * 32).call()
    assert c.registry.functions.isTrustedSigner(deployment.signer.address).call()


def test_manifest_round_trips_through_a_file(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "deployments" / "local.json"
    write_manifest(deployment.manifest, path)
    loaded = load_manifest(path)
    assert loaded == deployment.manifest
    contracts = Contracts.from_manifest_path(path)
    assert contracts.registry.functions.isTrustedSigner(deployment.signer.address).call()


def test_unlocked_governor_and_separate_coordinator(anvil_node: AnvilProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil_node.url))
    governor = w3.eth.accounts[0]
    coordinator = w3.eth.accounts[1]
    measurements = {PROVIDER: b"\x01" * 32, GATEWAY: b"\x02" * 32}
    manifest = deploy_contracts(
        w3,
        governor,
        abi_dir=ABI_DIR,
        measurements=measurements,
        signers=[],
        rpc_url=anvil_node.url,
        coordinator=coordinator,
    )
    c = Contracts(w3, manifest)
    assert manifest.governor == governor
    assert c.exchange.functions.hasRole(COORDINATOR_ROLE, coordinator).call()
    assert not c.exchange.functions.hasRole(COORDINATOR_ROLE, governor).call()
    assert c.registry.functions.isApproved(PROVIDER, b"\x01" * 32).call()
    assert c.registry.functions.isApproved(GATEWAY, b"\x02" * 32).call()
    assert not c.registry.functions.isApproved(GATEWAY, b"\x01" * 32).call()


def test_bad_input_is_refused_before_any_transaction(anvil_node: AnvilProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil_node.url))
    governor = funded_account(anvil_node)
    head = w3.eth.block_number
    with pytest.raises(ConfigError, match="32 bytes"):
        deploy_contracts(
            w3, governor, abi_dir=ABI_DIR, measurements={PROVIDER: b"short"}, signers=[], rpc_url="x"
        )
    with pytest.raises(ConfigError, match="not an address"):
        deploy_contracts(w3, governor, abi_dir=ABI_DIR, measurements={}, signers=["0x1234"], rpc_url="x")
    with pytest.raises(ConfigError, match="make setup"):
        deploy_contracts(w3, governor, abi_dir=Path("/nonexistent"), measurements={}, signers=[], rpc_url="x")
    assert w3.eth.block_number == head
    assert w3.eth.get_transaction_count(governor.address) == 0


def test_unfunded_local_governor_fails_clearly(anvil_node: AnvilProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil_node.url))
    with pytest.raises(ChainError, match="(?i)insufficient funds"):
        deploy_contracts(w3, Account.create(), abi_dir=ABI_DIR, measurements={}, signers=[], rpc_url="x")
