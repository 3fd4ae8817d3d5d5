"""ConsortiumRegistry liveness: each epoch's synchronisation deadline, the sync policy, and
`expireUnsynchronised`, which lets anyone drop the members that did not post a matching
digest in time, so one silent member cannot halt the consortium."""

from __future__ import annotations

import pytest
from brownie import accounts
from eth_utils import keccak
from helpers import (
    COOLDOWN,
    PROVIDER,
    SYNC_WINDOW,
    OrgStatus,
    Reason,
    assert_events,
    bits,
    next_block_at,
    norm,
    now,
    rejects,
    travel_to,
)

DAY = 86400


def _laggards_epoch(world):
    """World (synchronised at epoch 4) plus a newcomer of the first provider's organisation:
    epoch 5. Returns (newcomer, deadline)."""
    newcomer, tx = world.register(PROVIDER, operator=world.providers[0].operator)
    return newcomer, tx.timestamp + SYNC_WINDOW


# ------------------------------------------------------------------ the sync policy


def test_default_sync_policy(bare):
    reg = bare.registry
    assert norm(reg.syncPolicy()) == (SYNC_WINDOW, COOLDOWN) == (600, DAY)
    assert (reg.MIN_SYNC_WINDOW(), reg.MAX_SYNC_WINDOW(), reg.MAX_COOLDOWN()) == (10, 7 * DAY, 365 * DAY)
    assert reg.syncDeadline() == 0  # no epoch yet


def test_every_epoch_gets_a_deadline(world):
    newcomer, deadline = _laggards_epoch(world)
    assert world.registry.syncDeadline() == deadline
    tx = world.registry.revoke(newcomer.address, {"from": world.governor})
    assert tx.events["EpochStarted"]["syncDeadline"] == tx.timestamp + SYNC_WINDOW
    assert world.registry.syncDeadline() == tx.timestamp + SYNC_WINDOW


def test_set_sync_policy_applies_from_the_next_epoch(world):
    reg = world.registry
    before = reg.syncDeadline()
    tx = reg.setSyncPolicy(30, 0, {"from": world.governor})
    assert_events(tx, ("SyncPolicySet", {"window": 30, "cooldown": 0}))
    assert norm(reg.syncPolicy()) == (30, 0)
    assert reg.syncDeadline() == before  # the running epoch keeps its deadline
    _, tx = world.register(PROVIDER, operator=accounts[8])
    assert tx.events["EpochStarted"]["syncDeadline"] == tx.timestamp + 30


@pytest.mark.parametrize(("window", "cooldown"), [(10, 0), (7 * DAY, 365 * DAY)])
def test_sync_policy_edges_are_accepted(bare, governor, window, cooldown):
    assert bare.registry.setSyncPolicy(window, cooldown, {"from": governor}).status == 1
    assert norm(bare.registry.syncPolicy()) == (window, cooldown)


@pytest.mark.parametrize(
    ("window", "cooldown"),
    [(0, 0), (9, 600), (7 * DAY + 1, 0), (600, 365 * DAY + 1), (2**64 - 1, 0), (600, 2**64 - 1)],
)
def test_invalid_sync_policy(bare, governor, window, cooldown):
    with rejects("RegistryInvalidSyncPolicy", window, cooldown, world=bare):
        bare.registry.setSyncPolicy(window, cooldown, {"from": governor})


# ------------------------------------------------------------------ expireUnsynchronised: refusals


def test_expire_on_an_empty_registry(bare):
    with rejects("RegistryEpochSynchronised", 0, world=bare):
        bare.registry.expireUnsynchronised({"from": accounts[3]})


def test_expire_a_synchronised_epoch(world):
    travel_to(int(world.registry.syncDeadline()) + 1)
    with rejects("RegistryEpochSynchronised", 4, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})


def test_expire_before_the_deadline(world):
    newcomer, deadline = _laggards_epoch(world)
    world.sync(world.members[:-1])
    with rejects("RegistrySyncStillOpen", 5, deadline, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})
    next_block_at(deadline)  # the deadline itself still belongs to the members
    with rejects("RegistrySyncStillOpen", 5, deadline, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})
    next_block_at(deadline + 1)
    assert world.registry.expireUnsynchronised({"from": accounts[3]}).status == 1


@pytest.mark.parametrize("posted", ["nobody", "only a mismatching digest"])
def test_expire_needs_a_member_that_synchronised(world, posted):
    """With no matching digest nothing tells the laggards from the rest; dropping everyone
    would empty the consortium, so governance has to act."""
    _laggards_epoch(world)
    if posted != "nobody":
        wrong = keccak(b"another membership")
        world.registry.postMembershipDigest(5, wrong, {"from": world.members[0].account})
    travel_to(int(world.registry.syncDeadline()) + 1)
    with rejects("RegistryNoMemberSynchronised", 5, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})


def test_expire_while_paused(world):
    _laggards_epoch(world)
    world.sync(world.members[:-1])
    travel_to(int(world.registry.syncDeadline()) + 1)
    world.registry.pause({"from": world.governor})
    with rejects("EnforcedPause", world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})


def test_a_pause_does_not_count_against_the_sync_window(world):
    """Digests cannot be posted while the registry is paused. Without the extension on
    unpause, every member that had not posted before a long pause would be dropped (and
    its organisation cooled down) by the first caller after it, through no fault of its own."""
    reg = world.registry
    newcomer, deadline = _laggards_epoch(world)
    world.sync(world.members[:-1])
    reg.pause({"from": world.governor})
    travel_to(deadline + 3600)
    with rejects("EnforcedPause", world=world):
        reg.postMembershipDigest(5, world.expected_digest(5), {"from": newcomer.account})
    tx = reg.unpause({"from": world.governor})
    extended = tx.timestamp + SYNC_WINDOW
    assert_events(
        tx,
        ("Unpaused", {"account": world.governor}),
        ("SyncDeadlineExtended", {"epoch": 5, "syncDeadline": extended}),
    )
    assert reg.syncDeadline() == extended
    with rejects("RegistrySyncStillOpen", 5, extended, world=world):
        reg.expireUnsynchronised({"from": accounts[3]})
    tx = reg.postMembershipDigest(5, world.expected_digest(5), {"from": newcomer.account})
    assert "EpochSynchronised" in tx.events and reg.isSynchronised()


def test_the_extension_still_ends(world):
    """After the extended deadline the laggard can be dropped as usual."""
    reg = world.registry
    newcomer, deadline = _laggards_epoch(world)
    world.sync(world.members[:-1])
    reg.pause({"from": world.governor})
    travel_to(deadline - 100)  # paused for most of the window
    tx = reg.unpause({"from": world.governor})
    extended = tx.timestamp + SYNC_WINDOW
    assert reg.syncDeadline() == extended > deadline
    next_block_at(extended + 1)
    tx = reg.expireUnsynchronised({"from": accounts[3]})
    assert tx.events["MemberRevoked"]["enclave"] == newcomer.address


def test_unpause_leaves_a_synchronised_epoch_alone(world):
    reg = world.registry
    deadline = reg.syncDeadline()
    reg.pause({"from": world.governor})
    travel_to(deadline + 3600)
    tx = reg.unpause({"from": world.governor})
    assert_events(tx, ("Unpaused", {"account": world.governor}))
    assert reg.syncDeadline() == deadline and reg.isSynchronised()


# ------------------------------------------------------------------ expireUnsynchronised: dropping


def test_expire_drops_exactly_the_laggards(world):
    """Epoch 5: providers 0 and 2 and the gateway post the canonical digest, provider 1 a
    wrong one, the newcomer (same organisation as provider 0) nothing. After the deadline an
    outsider drops provider 1 and the newcomer, in registration order, and only their
    organisations cool down."""
    reg = world.registry
    p0, p1, p2 = world.providers[:3]
    gw = world.gateways[0]
    newcomer, deadline = _laggards_epoch(world)
    world.sync([p0, p2, gw])
    reg.postMembershipDigest(5, keccak(b"wrong"), {"from": p1.account})
    assert not reg.isSynchronised()
    assert [reg.digestMatched(5, m.address) for m in (p0, p1, p2, gw, newcomer)] == [
        True,
        False,
        True,
        True,
        False,
    ]
    next_block_at(deadline + 1)
    tx = reg.expireUnsynchronised({"from": accounts[3]})
    for m in (p1, newcomer):
        world.forget(m.address)
    digest = world.expected_digest(6)
    assert_events(
        tx,
        *(
            (
                "MemberRevoked",
                {"enclave": m.address, "by": accounts[3], "epoch": 6, "reason": Reason.UNSYNCHRONISED},
            )
            for m in (p1, newcomer)
        ),
        (
            "EpochStarted",
            {
                "epoch": 6,
                "membershipDigest": digest,
                "memberCount": 3,
                "syncDeadline": deadline + 1 + SYNC_WINDOW,
            },
        ),
    )
    assert reg.epoch() == 6 and not reg.isSynchronised() and reg.synchronisedEpoch() == 4
    assert norm(reg.activeMembers(PROVIDER)) == norm([p0.address, p2.address])
    assert bytes(reg.membershipDigest()) == digest
    cooling = deadline + 1 + COOLDOWN
    for operator, until in (
        (p0.operator, cooling),
        (p1.operator, cooling),
        (p2.operator, 0),
        (gw.operator, 0),
    ):
        assert norm(reg.organisation(operator))[3] == until
        assert norm(reg.organisation(operator))[0] == OrgStatus.ADMITTED
    assert reg.enclaveCount(p0.operator, PROVIDER) == 1  # provider 0 stays, the newcomer left
    assert reg.enclaveCount(p1.operator, PROVIDER) == 0
    # The survivors synchronise the new epoch without the laggards.
    world.sync()
    assert reg.synchronisedEpoch() == 6


def test_a_round_opens_after_the_laggard_was_dropped(world):
    """The liveness promise: a silent member no longer blocks rounds once anyone expires it."""
    silent = world.providers[1]
    world.register(PROVIDER, operator=accounts[8])  # epoch 5
    posters = [m for m in world.members if m is not silent]
    world.sync(posters)
    start = now()
    with rejects("RoundEpochNotSynchronised", 5, world=world):
        world.exchange.openRound(
            b"\x01" * 32,
            (4, 16, 0, 1, 2**64, 0),
            3,
            start + 100,
            start + 200,
            (0, 0),
            {"from": world.coordinator},
        )
    travel_to(int(world.registry.syncDeadline()) + 1)
    world.registry.expireUnsynchronised({"from": accounts[3]})
    world.forget(silent.address)
    world.sync()
    round_id, tx = world.open_round()
    assert norm(tx.events["RoundOpened"]["participants"]) == norm([p.address for p in world.providers])
    assert silent.address.lower() not in norm(tx.events["RoundOpened"]["participants"])
    world.post_all(round_id)
    world.fuse_all(round_id)
    assert world.exchange.roundInfo(round_id)[7] == bits(0, 1, 2)  # holders: every remaining provider


def _drop_provider_1(world):
    """Provider 1 never posts its digest of epoch 5 and is dropped: returns (it, cooling end)."""
    laggard = world.providers[1]
    world.register(PROVIDER, operator=accounts[8])
    world.sync([m for m in world.members if m is not laggard])
    at = int(world.registry.syncDeadline()) + 1
    next_block_at(at)
    world.registry.expireUnsynchronised({"from": accounts[3]})
    world.forget(laggard.address)
    return laggard, at + COOLDOWN


def test_cool_down_refuses_re_registration_until_it_ends(world):
    laggard, until = _drop_provider_1(world)
    operator = laggard.operator
    _, quote, signature, possession = world.offer(
        PROVIDER, operator, enclave=laggard.account, expiry=until + 3600
    )
    with rejects("RegistryOrganisationCoolingDown", operator, until, world=world):
        world.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    next_block_at(until - 1)
    with rejects("RegistryOrganisationCoolingDown", operator, until, world=world):
        world.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    # Nothing to reinstate once the cool-down is over.
    next_block_at(until)
    tx = world.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    assert tx.status == 1 and world.registry.isActiveMember(laggard.address, PROVIDER)
    with rejects("RegistryOrganisationNotSuspended", operator, world=world):
        world.registry.reinstateOrganisation(operator, {"from": world.governor})


def test_cool_down_blocks_every_enclave_of_the_organisation(world):
    laggard, until = _drop_provider_1(world)
    _, quote, signature, possession = world.offer(PROVIDER, laggard.operator)  # a brand-new enclave
    with rejects("RegistryOrganisationCoolingDown", laggard.operator, until, world=world):
        world.registry.register(quote.as_tuple(), signature, possession, {"from": laggard.operator})


def test_governance_ends_a_cool_down_early(world):
    laggard, until = _drop_provider_1(world)
    operator = laggard.operator
    tx = world.registry.reinstateOrganisation(operator, {"from": world.governor})
    assert_events(tx, ("OrganisationReinstated", {"operator": operator}))
    assert norm(world.registry.organisation(operator))[:4] == (OrgStatus.ADMITTED, 6, 64, 0)
    again, tx = world.register(PROVIDER, operator=operator, enclave=laggard.account)
    assert tx.status == 1 and now() < until


def test_a_cooling_organisation_may_be_suspended_and_reinstated(world):
    laggard, until = _drop_provider_1(world)
    operator = laggard.operator
    tx = world.registry.suspendOrganisation(operator, {"from": world.governor})
    assert_events(tx, ("OrganisationSuspended", {"operator": operator, "revoked": 0}))
    world.registry.reinstateOrganisation(operator, {"from": world.governor})
    assert norm(world.registry.organisation(operator))[:4] == (OrgStatus.ADMITTED, 6, 64, 0)


def test_zero_cool_down_lets_the_laggard_back_at_once(world):
    world.registry.setSyncPolicy(SYNC_WINDOW, 0, {"from": world.governor})
    laggard, _ = _drop_provider_1(world)
    assert norm(world.registry.organisation(laggard.operator))[3] == now()
    _, tx = world.register(PROVIDER, operator=laggard.operator, enclave=laggard.account)
    assert tx.status == 1


def test_the_next_epoch_has_its_own_deadline(world):
    laggard, _ = _drop_provider_1(world)
    deadline = int(world.registry.syncDeadline())
    with rejects("RegistrySyncStillOpen", 6, deadline, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})
    # Nobody posts in epoch 6 either: nothing can be expired without a synchronised member.
    travel_to(deadline + 1)
    with rejects("RegistryNoMemberSynchronised", 6, world=world):
        world.registry.expireUnsynchronised({"from": accounts[3]})
