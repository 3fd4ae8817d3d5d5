"""The test helpers themselves: a broken `rejects` or snapshot would make every test vacuous."""

from __future__ import annotations

import pytest
from brownie import accounts
from eth_account import Account
from eth_utils import keccak
from helpers import GATEWAY, OTHER_MEASUREMENT, PROVIDER, key_of, rejects, revert_message


def test_rejects_fails_when_the_call_succeeds(world):
    with pytest.raises(AssertionError, match="did not revert"), rejects("EnforcedPause"):
        world.registry.pause({"from": world.governor})


def test_rejects_fails_on_another_error_or_other_arguments(world):
    with (
        pytest.raises(AssertionError, match="Unexpected revert string"),
        rejects("RegistryNotActiveMember", accounts[4]),
    ):
        world.registry.revoke(accounts[3], {"from": world.governor})
    with pytest.raises(AssertionError, match="Unexpected revert string"), rejects("EnforcedPause"):
        world.registry.revoke(accounts[3], {"from": world.governor})


def test_revert_message_checks_the_arity_and_formats_like_brownie():
    with pytest.raises(AssertionError):
        revert_message("RegistryNonceUsed")
    assert revert_message("RegistrySignerUnchanged", "0xAbC0000000000000000000000000000000000001", False) == (
        "RegistrySignerUnchanged: 0xabc0000000000000000000000000000000000001, False"
    )
    assert revert_message("RegistryInvalidRole", 0) == "RegistryInvalidRole: 0"


@pytest.mark.parametrize(
    "change",
    [
        "approve",
        "deposit",
        "round",
        "digest-time",
        "admit",
        "suspend",
        "role limit",
        "sync policy",
        "digest matched",
    ],
)
def test_snapshot_sees_state_changes(world, change):
    gov = {"from": world.governor}
    if change == "digest matched":
        world.register(PROVIDER, operator=accounts[8])
    before = world.snapshot()
    if change == "approve":
        world.registry.approveMeasurement(GATEWAY, OTHER_MEASUREMENT, gov)
    elif change == "deposit":
        world.gateway.deposit({"from": accounts[8], "value": 1})
    elif change == "round":
        world.open_round()
    elif change == "admit":
        world.registry.admitOrganisation(accounts[9], "ninth", 2, 1, gov)
    elif change == "suspend":
        world.registry.suspendOrganisation(accounts[8], gov)  # no enclaves: only its record changes
    elif change == "role limit":
        world.registry.setRoleLimit(GATEWAY, 5, gov)
    elif change == "sync policy":
        world.registry.setSyncPolicy(30, 0, gov)
    elif change == "digest matched":
        m = world.members[0]
        world.registry.postMembershipDigest(5, world.expected_digest(5), {"from": m.account})
    else:
        world.register(PROVIDER, operator=accounts[8])
    assert world.snapshot() != before


def test_keys_of_the_test_accounts():
    """Clients sign with Anvil's default-mnemonic keys: a wrong derivation would make every
    signed-request test fail for the wrong reason."""
    for i in range(10):
        assert Account.from_key(key_of(accounts[i])).address == accounts[i].address
        assert key_of(accounts[i].address) == key_of(accounts[i])
    local = accounts.add(keccak(b"a local test account"))
    assert Account.from_key(key_of(local)).address == local.address
    assert key_of(str(local.address)) == key_of(local)


def test_snapshot_is_stable_without_changes(world):
    assert world.snapshot() == world.snapshot()
