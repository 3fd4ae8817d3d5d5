"""ConsortiumRegistry: revocation, epochs and membership digests of a running consortium."""

from __future__ import annotations

import pytest
from brownie import accounts, chain
from eth_utils import keccak
from helpers import (
    GATEWAY,
    MEASUREMENT,
    OTHER_MEASUREMENT,
    PROVIDER,
    SYNC_WINDOW,
    Reason,
    assert_events,
    membership_digest,
    norm,
    rejects,
)


def test_world_is_synchronised_with_the_off_chain_digest(world):
    reg = world.registry
    assert reg.epoch() == 4 and reg.synchronisedEpoch() == 4 and reg.isSynchronised()
    assert bytes(reg.membershipDigest()) == membership_digest(chain.id, reg.address, 4, world.members)
    assert norm(reg.activeMembers(PROVIDER)) == norm([m.address for m in world.providers])
    assert norm(reg.activeMembers(GATEWAY)) == norm([world.gateways[0].address])
    for m in world.members:
        assert norm(reg.member(m.address)) == norm(
            (m.role, True, m.operator, m.measurement, m.x25519, world.members.index(m) + 1)
        )


def test_membership_digest_binds_chain_registry_and_epoch(world):
    reg = world.registry
    real = membership_digest(chain.id, reg.address, 4, world.members)
    assert real != membership_digest(chain.id + 1, reg.address, 4, world.members)
    assert real != membership_digest(chain.id, accounts[9].address, 4, world.members)
    assert real != membership_digest(chain.id, reg.address, 5, world.members)
    assert real != membership_digest(chain.id, reg.address, 4, list(reversed(world.members)))


# ------------------------------------------------------------------ revoke


@pytest.mark.parametrize("by", ["governor", "operator", "enclave"])
def test_revoke_starts_a_new_epoch(world, by):
    target = world.providers[1]
    caller = {"governor": world.governor, "operator": target.operator, "enclave": target.account}[by]
    tx = world.registry.revoke(target.address, {"from": caller})
    world.forget(target.address)
    digest = world.expected_digest(5)
    reason = Reason.GOVERNANCE if by == "governor" else Reason.OPERATOR
    assert_events(
        tx,
        ("MemberRevoked", {"enclave": target.address, "by": caller, "epoch": 5, "reason": reason}),
        (
            "EpochStarted",
            {
                "epoch": 5,
                "membershipDigest": digest,
                "memberCount": 3,
                "syncDeadline": tx.timestamp + SYNC_WINDOW,
            },
        ),
    )
    assert world.registry.enclaveCount(target.operator, PROVIDER) == sum(
        m.operator == target.operator for m in world.providers
    )
    reg = world.registry
    assert reg.epoch() == 5
    assert not reg.isSynchronised() and reg.synchronisedEpoch() == 4
    assert not reg.isActiveMember(target.address, PROVIDER)
    assert reg.member(target.address)[1] is False
    # Registration order of the others is kept: the digest depends on it.
    assert norm(reg.activeMembers(PROVIDER)) == norm([m.address for m in world.providers])
    assert bytes(reg.membershipDigest()) == digest
    world.sync()
    assert reg.synchronisedEpoch() == 5


@pytest.mark.parametrize(
    "who", ["coordinator", "client", "outsider", "other provider", "other operator", "gateway"]
)
def test_revoke_by_unrelated_account_is_refused(world, who):
    target = world.providers[0]
    caller = {
        "coordinator": world.coordinator,
        "client": accounts[2],
        "outsider": accounts[3],
        "other provider": world.providers[1].account,
        "other operator": world.providers[1].operator,
        "gateway": world.gateways[0].account,
    }[who]
    with rejects("RegistryRevokeUnauthorized", caller, target.address, world=world):
        world.registry.revoke(target.address, {"from": caller})


def test_revoke_non_member_is_refused(world):
    with rejects("RegistryNotActiveMember", accounts[3].address, world=world):
        world.registry.revoke(accounts[3].address, {"from": world.governor})


def test_revoke_twice_is_refused(world):
    target = world.providers[0]
    world.registry.revoke(target.address, {"from": world.governor})
    with rejects("RegistryNotActiveMember", target.address, world=world):
        world.registry.revoke(target.address, {"from": world.governor})


def test_revoke_works_while_paused(world):
    """Removing a compromised member must not wait for the pause to end."""
    world.registry.pause({"from": world.governor})
    tx = world.registry.revoke(world.providers[0].address, {"from": world.governor})
    assert tx.status == 1 and world.registry.epoch() == 5


# ------------------------------------------------------------------ revokeMeasurement with members


def test_measurement_revocation_deactivates_its_members(world):
    reg = world.registry
    tx = reg.revokeMeasurement(PROVIDER, MEASUREMENT, {"from": world.governor})
    providers = world.providers
    for p in providers:
        world.forget(p.address)
    digest = world.expected_digest(5)
    # Walked over the active list in registration order.
    assert_events(
        tx,
        *(
            (
                "MemberRevoked",
                {
                    "enclave": p.address,
                    "by": world.governor,
                    "epoch": 5,
                    "reason": Reason.MEASUREMENT_REVOKED,
                },
            )
            for p in providers
        ),
        ("MeasurementRevoked", {"role": PROVIDER, "measurement": MEASUREMENT, "deactivated": 3}),
        (
            "EpochStarted",
            {
                "epoch": 5,
                "membershipDigest": digest,
                "memberCount": 1,
                "syncDeadline": tx.timestamp + SYNC_WINDOW,
            },
        ),
    )
    assert reg.activeMembers(PROVIDER) == []
    assert norm(reg.activeMembers(GATEWAY)) == norm([world.gateways[0].address])
    assert bytes(reg.membershipDigest()) == digest
    assert not reg.isSynchronised()


def test_measurement_rotation_re_admits_and_re_synchronises(world):
    reg = world.registry
    reg.approveMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": world.governor})
    old = world.providers
    reg.revokeMeasurement(PROVIDER, MEASUREMENT, {"from": world.governor})
    for p in old:
        world.forget(p.address)
    for p in old:
        world.register(PROVIDER, operator=p.operator, enclave=p.account, measurement=OTHER_MEASUREMENT)
    assert reg.epoch() == 8
    world.sync()
    assert reg.synchronisedEpoch() == 8
    assert {bytes(reg.member(p.address)[3]) for p in world.providers} == {OTHER_MEASUREMENT}


# ------------------------------------------------------------------ postMembershipDigest


def _new_epoch(world):
    """A fourth provider joins: epoch 5, nobody has posted yet."""
    world.register(PROVIDER, operator=accounts[8])
    return 5, world.expected_digest(5)


def test_digest_posting_synchronises_only_when_everyone_agrees(world):
    epoch, digest = _new_epoch(world)
    reg = world.registry
    for m in world.members[:-1]:
        tx = reg.postMembershipDigest(epoch, digest, {"from": m.account})
        assert_events(
            tx,
            (
                "MembershipDigestPosted",
                {"epoch": epoch, "member": m.account, "digest": digest, "matches": True},
            ),
        )
        assert not reg.isSynchronised()
    last = world.members[-1]
    tx = reg.postMembershipDigest(epoch, digest, {"from": last.account})
    assert_events(
        tx,
        (
            "MembershipDigestPosted",
            {"epoch": epoch, "member": last.account, "digest": digest, "matches": True},
        ),
        ("EpochSynchronised", {"epoch": epoch, "membershipDigest": digest}),
    )
    assert reg.isSynchronised() and reg.synchronisedEpoch() == epoch


def test_mismatching_digest_is_recorded_and_may_be_corrected(world):
    epoch, digest = _new_epoch(world)
    reg = world.registry
    wrong = keccak(b"a membership this member believes in")
    dissenter = world.members[0]
    for _ in range(2):  # a mismatch does not use up the member's turn
        tx = reg.postMembershipDigest(epoch, wrong, {"from": dissenter.account})
        assert_events(
            tx,
            (
                "MembershipDigestPosted",
                {"epoch": epoch, "member": dissenter.account, "digest": wrong, "matches": False},
            ),
        )
    for m in world.members[1:]:
        tx = reg.postMembershipDigest(epoch, digest, {"from": m.account})
        assert "EpochSynchronised" not in tx.events
    assert not reg.isSynchronised() and reg.synchronisedEpoch() == 4
    # After re-verifying, the dissenter posts the canonical digest and the epoch synchronises.
    tx = reg.postMembershipDigest(epoch, digest, {"from": dissenter.account})
    assert_events(
        tx,
        (
            "MembershipDigestPosted",
            {"epoch": epoch, "member": dissenter.account, "digest": digest, "matches": True},
        ),
        ("EpochSynchronised", {"epoch": epoch, "membershipDigest": digest}),
    )
    assert reg.isSynchronised() and reg.synchronisedEpoch() == epoch
    with rejects("RegistryDigestAlreadyPosted", dissenter.address, epoch, world=world):
        reg.postMembershipDigest(epoch, digest, {"from": dissenter.account})
    with rejects("RegistryDigestAlreadyPosted", dissenter.address, epoch, world=world):
        reg.postMembershipDigest(epoch, wrong, {"from": dissenter.account})


def test_digest_for_another_epoch_is_refused(world):
    epoch, digest = _new_epoch(world)
    for posted in (epoch - 1, epoch + 1):
        with rejects("RegistryWrongEpoch", posted, epoch, world=world):
            world.registry.postMembershipDigest(posted, digest, {"from": world.members[0].account})


def test_digest_twice_is_refused(world):
    member = world.members[0]
    with rejects("RegistryDigestAlreadyPosted", member.address, 4, world=world):
        world.registry.postMembershipDigest(4, world.expected_digest(4), {"from": member.account})


@pytest.mark.parametrize("who", ["governor", "coordinator", "client", "outsider", "operator"])
def test_digest_from_non_member_is_refused(world, who):
    epoch, digest = _new_epoch(world)
    caller = {
        "governor": world.governor,
        "coordinator": world.coordinator,
        "client": accounts[2],
        "outsider": accounts[3],
        "operator": world.providers[0].operator,
    }[who]
    with rejects("RegistryNotActiveMember", caller, world=world):
        world.registry.postMembershipDigest(epoch, digest, {"from": caller})


def test_digest_from_revoked_member_is_refused(world):
    target = world.providers[0]
    world.registry.revoke(target.address, {"from": world.governor})
    with rejects("RegistryNotActiveMember", target.address, world=world):
        world.registry.postMembershipDigest(5, world.expected_digest(5), {"from": target.account})


def test_digest_while_paused_is_refused(world):
    epoch, digest = _new_epoch(world)
    world.registry.pause({"from": world.governor})
    with rejects("EnforcedPause", world=world):
        world.registry.postMembershipDigest(epoch, digest, {"from": world.members[0].account})


def test_new_member_joined_epoch_and_sync(world):
    newcomer, tx = world.register(PROVIDER, operator=accounts[8])
    assert world.registry.member(newcomer.address)[5] == 5
    assert tx.events["EpochStarted"]["memberCount"] == 5
    world.sync()
    assert world.registry.synchronisedEpoch() == 5
