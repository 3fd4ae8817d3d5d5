"""The Brownie scripts users run, against a fresh deployment."""

from __future__ import annotations

import json

import brownie
import pytest
from brownie import accounts
from eth_account import Account
from eth_utils import keccak
from helpers import Quote, key_of, sign_possession, sign_quote, travel_to

from enclave_agent.chain.manifest import write_manifest
from scripts import clients, measurements, organisations, rounds
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


def test_organisation_scripts(deployed, capsys) -> None:
    registry, _, _ = organisations.contracts()
    bank = str(accounts[6])
    organisations.admit(bank, "Bank A", "provider,gateway", "2")
    assert tuple(registry.organisation(bank)) == (1, 6, 2, 0, "Bank A")
    assert "admitted 'Bank A'" in capsys.readouterr().out
    insurer = str(accounts[7]).lower()  # any spelling of the address
    organisations.admit(insurer, "Insurer", "gateway")
    assert tuple(registry.organisation(accounts[7])) == (1, 4, 1, 0, "Insurer")  # MAX defaults to 1
    assert organisations.show(bank) == {
        "operator": str(accounts[6]),
        "name": "Bank A",
        "status": "admitted",
        "roles": ["provider", "gateway"],
        "max_enclaves_per_role": 2,
        "cooling_until": 0,
        "cooling_down": False,
        "enclaves": {"provider": 0, "gateway": 0},
    }
    assert organisations.suspend(bank) == 0
    assert organisations.show(bank)["status"] == "suspended"
    organisations.reinstate(bank)
    assert organisations.show(bank)["status"] == "admitted"
    assert organisations.show(str(accounts[8]))["status"] == "not admitted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("0x1234", "x", "provider"), "20-byte address"),
        ((None, "x", "auditor"), "role must be one of"),
        ((None, "x", "provider,auditor"), "role must be one of"),
        ((None, "x", " , "), "at least one of"),
        ((None, "x", "provider", "0"), "1..65535"),
        ((None, "x", "provider", "70000"), "1..65535"),
    ],
)
def test_organisation_script_refuses_bad_arguments(deployed, args, message) -> None:
    args = (args[0] or str(accounts[6]), *args[1:])
    with pytest.raises(SystemExit, match=message):
        organisations.admit(*args)
    registry, _, _ = organisations.contracts()
    assert registry.organisation(accounts[6])[0] == 0


def test_by_hand_onboarding_with_the_scripts(deployed) -> None:
    """The README's path: deploy, trust the attestation service, admit the organisation;
    its operator then registers an enclave (quote + the enclave's proof of possession), and
    suspending the organisation through the script revokes it."""
    registry, _, _ = organisations.contracts()
    service_key = keccak(b"by-hand attestation service")
    measurements.trust_signer(Account.from_key(service_key).address)
    operator = accounts[5]
    organisations.admit(str(operator), "Bank B", "provider")
    enclave = accounts.add(keccak(b"by-hand enclave"))
    quote = Quote(
        role=1,
        measurement=bytes.fromhex(MEASUREMENT[2:]),
        operator=str(operator),
        enclave=str(enclave),
        x25519Key=keccak(b"by-hand x25519"),
        chainId=brownie.chain.id,
        registry=registry.address,
        nonce=keccak(b"by-hand nonce"),
        expiry=brownie.chain[-1].timestamp + 600,
    )
    signature, _ = sign_quote(service_key, quote, brownie.chain.id, registry.address)
    possession, _ = sign_possession(key_of(enclave), quote, brownie.chain.id, registry.address)
    tx = registry.register(quote.as_tuple(), signature, possession, {"from": operator, "value": 10**15})
    assert tx.status == 1 and enclave.balance() == 10**15
    assert organisations.show(str(operator))["enclaves"] == {"provider": 1, "gateway": 0}
    # A gateway is not among its roles.
    other = quote.but(role=2, nonce=keccak(b"second"))
    signature, _ = sign_quote(service_key, other, brownie.chain.id, registry.address)
    with brownie.reverts(f"RegistryRoleNotAllowed: {str(operator).lower()}, 2"):
        registry.register(other.as_tuple(), signature, possession, {"from": operator})
    assert organisations.suspend(str(operator)) == 1
    assert not registry.isActiveMember(enclave, 1)
    assert organisations.show(str(operator))["enclaves"] == {"provider": 0, "gateway": 0}


def test_show_reports_a_cool_down(deployed) -> None:
    """An organisation whose enclave was dropped for not synchronising shows its cool-down
    until it ends or governance reinstates it."""
    registry, _, _ = organisations.contracts()
    service_key = keccak(b"cool-down attestation service")
    measurements.trust_signer(Account.from_key(service_key).address)
    members = []
    for i, operator in enumerate((accounts[5], accounts[6])):
        organisations.admit(str(operator), f"Bank {i}", "provider")
        enclave = accounts.add(keccak(text=f"cool-down enclave {i}"))
        accounts[0].transfer(enclave, 10**17, silent=True)
        quote = Quote(
            1,
            bytes.fromhex(MEASUREMENT[2:]),
            str(operator),
            str(enclave),
            keccak(text=f"x-{i}"),
            brownie.chain.id,
            registry.address,
            keccak(text=f"n-{i}"),
            brownie.chain[-1].timestamp + 600,
        )
        signature, _ = sign_quote(service_key, quote, brownie.chain.id, registry.address)
        possession, _ = sign_possession(key_of(enclave), quote, brownie.chain.id, registry.address)
        registry.register(quote.as_tuple(), signature, possession, {"from": operator})
        members.append(enclave)
    registry.postMembershipDigest(registry.epoch(), registry.membershipDigest(), {"from": members[0]})
    travel_to(registry.syncDeadline() + 1)
    tx = registry.expireUnsynchronised({"from": accounts[3]})
    shown = organisations.show(str(accounts[6]))
    assert shown["cooling_down"] and shown["cooling_until"] == tx.timestamp + 86400
    assert shown["status"] == "admitted" and shown["enclaves"] == {"provider": 0, "gateway": 0}
    organisations.reinstate(str(accounts[6]))
    assert not organisations.show(str(accounts[6]))["cooling_down"]
