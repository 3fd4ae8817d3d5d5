"""The test helpers themselves: a broken `rejects` or snapshot would make every test vacuous."""

from __future__ import annotations

import pytest
from brownie import accounts
from helpers import GATEWAY, OTHER_MEASUREMENT, PROVIDER, rejects, revert_message


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
    ["approve", "deposit", "round", "digest-time"],
)
def test_snapshot_sees_state_changes(world, change):
    before = world.snapshot()
    if change == "approve":
        world.registry.approveMeasurement(GATEWAY, OTHER_MEASUREMENT, {"from": world.governor})
    elif change == "deposit":
        world.gateway.deposit({"from": accounts[8], "value": 1})
    elif change == "round":
        world.open_round()
    else:
        world.register(PROVIDER, operator=accounts[8])
    assert world.snapshot() != before


def test_snapshot_is_stable_without_changes(world):
    assert world.snapshot() == world.snapshot()
