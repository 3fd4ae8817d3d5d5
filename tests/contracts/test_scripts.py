"""The Brownie scripts users run, against a fresh deployment."""

from __future__ import annotations

import json

import brownie
import pytest
from brownie import accounts

from enclave_agent.chain.manifest import write_manifest
from scripts import clients, measurements, rounds
from scripts.deploy import deploy

MEASUREMENT = "0x" + "ab" * 32
OTHER = "0x" + "cd" * 32


@pytest.fixture
def deployed(tmp_path, monkeypatch):
    manifest = deploy(accounts[0], bytes.fromhex(MEASUREMENT[2:]), None)
    path = tmp_path / "manifest.json"
    write_manifest(manifest, path)
    monkeypatch.setenv("ENCLAVE_MANIFEST", str(path))
    assert json.loads(path.read_text())["chain_id"] == brownie.chain.id
    return manifest


def test_deploy_approves_the_measurement_for_both_roles(deployed) -> None:
    registry, exchange, gateway = measurements.contracts()
    assert registry.isApproved(1, MEASUREMENT) and registry.isApproved(2, MEASUREMENT)
    assert exchange.hasRole(exchange.COORDINATOR_ROLE(), accounts[0])
    assert gateway.registry() == registry.address


def test_measurement_and_signer_scripts(deployed) -> None:
    registry, _, _ = measurements.contracts()
    measurements.approve("provider", OTHER)
    assert registry.isApproved(1, OTHER)
    measurements.revoke("provider", OTHER)
    assert not registry.isApproved(1, OTHER)
    measurements.trust_signer(str(accounts[5]))
    assert registry.isTrustedSigner(accounts[5])
    measurements.distrust_signer(str(accounts[5]))
    assert not registry.isTrustedSigner(accounts[5])
    with pytest.raises(SystemExit, match="32 bytes"):
        measurements.approve("provider", "0x1234")
    with pytest.raises(SystemExit, match="role must be one of"):
        measurements.approve("auditor", OTHER)


def test_client_scripts(deployed) -> None:
    _, _, gateway = clients.contracts()
    clients.grant(str(accounts[3]), 5)
    assert gateway.hasRole(gateway.CLIENT_ROLE(), accounts[3])
    assert clients.quota(str(accounts[3])) == (5, 0)
    clients.revoke(str(accounts[3]))
    assert not gateway.hasRole(gateway.CLIENT_ROLE(), accounts[3])
    clients.deposit(1000)
    assert gateway.balanceOf(accounts[0]) == 1000


def test_round_script_needs_a_synchronised_epoch(deployed) -> None:
    with brownie.reverts():
        rounds.open_round("column-stats", 61)
    assert rounds.state(1) == "none"
