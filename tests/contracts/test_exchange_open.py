"""ShareExchange.openRound: participants, parameters and the events agents act on."""

from __future__ import annotations

import pytest
from brownie import accounts
from helpers import (
    ADDITIVE,
    COORDINATOR_ROLE,
    DENSE,
    GOVERNOR_ROLE,
    PRIME_61,
    PROVIDER,
    RING_2_64,
    SEEDED,
    SHAMIR,
    SHARED_MODEL,
    STATISTIC,
    TAG,
    RoundState,
    assert_events,
    next_block_at,
    norm,
    now,
    rejects,
)

SPEC = (4, 16, ADDITIVE, SEEDED, RING_2_64, 0)
ZERO_ADDRESS = "0x" + "00" * 20
POLICY = (SHARED_MODEL, 0)


def _open(world, spec=SPEC, threshold=3, posting=1000, total=2000, policy=POLICY, at=None):
    start = at or now() + 5
    next_block_at(start)
    return world.exchange.openRound(
        TAG, spec, threshold, start + posting, start + total, policy, {"from": world.coordinator}
    ), start


def test_open_round_over_the_synchronised_providers(world):
    tx, start = _open(world, spec=(31, 20, ADDITIVE, DENSE, RING_2_64, 0), policy=(STATISTIC, 2))
    parts = [p.address for p in world.providers]
    assert tx.return_value == 1
    assert_events(
        tx,
        (
            "RoundOpened",
            {
                "roundId": 1,
                "epoch": 4,
                "inputTag": TAG,
                "participants": parts,
                "spec": (31, 20, ADDITIVE, DENSE, RING_2_64, 0),
                "threshold": 3,
                "postingDeadline": start + 1000,
                "deadline": start + 2000,
                "policy": (STATISTIC, 2),
                "floor": 3,
            },
        ),
    )
    ex = world.exchange
    assert ex.roundCount() == 1
    assert ex.state(1) == RoundState.POSTING
    assert norm(ex.participants(1)) == norm(parts)
    assert norm(ex.roundInfo(1)) == norm(
        ((31, 20, ADDITIVE, DENSE, RING_2_64, 0), (STATISTIC, 2), 3, 4, start + 1000, start + 2000, 0, 0)
    )
    assert norm(ex.roundGuards(1)) == (3, 0)
    assert norm(ex.pendingComplaint(1)) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0)
    for p in world.providers:
        assert ex.chunksPosted(1, p.address) == 0
        assert bytes(ex.keyTableHash(1, p.address)) == b"\x00" * 32
        assert bytes(ex.shareCommitment(1, p.address)) == b"\x00" * 32
        assert not ex.isHolder(1, p.address)


def test_round_ids_increase(world):
    assert world.open_round()[0] == 1
    assert world.open_round(scheme=SHAMIR, threshold=2)[0] == 2
    assert world.exchange.roundCount() == 2
    assert world.exchange.state(3) == RoundState.NONE


@pytest.mark.parametrize("caller", ["governor", "client", "outsider", "provider", "gateway", "operator"])
def test_open_round_needs_the_coordinator_role(world, caller):
    account = {
        "governor": world.governor,
        "client": accounts[2],
        "outsider": accounts[3],
        "provider": world.providers[0].account,
        "gateway": world.gateways[0].account,
        "operator": world.providers[0].operator,
    }[caller]
    start = now()
    with rejects("AccessControlUnauthorizedAccount", account, COORDINATOR_ROLE, world=world):
        world.exchange.openRound(TAG, SPEC, 3, start + 100, start + 200, POLICY, {"from": account})


def test_governor_grants_the_coordinator_role(world):
    ex = world.exchange
    tx = ex.grantRole(COORDINATOR_ROLE, accounts[3], {"from": world.governor})
    assert_events(
        tx, ("RoleGranted", {"role": COORDINATOR_ROLE, "account": accounts[3], "sender": world.governor})
    )
    start = now()
    tx = ex.openRound(TAG, SPEC, 3, start + 100, start + 200, POLICY, {"from": accounts[3]})
    assert tx.status == 1


def test_open_round_needs_a_synchronised_epoch(world):
    world.register(PROVIDER, operator=accounts[8])
    with rejects("RoundEpochNotSynchronised", 5, world=world):
        _open(world)


def test_open_round_refused_while_registry_paused(world):
    world.registry.pause({"from": world.governor})
    with rejects("RoundRegistryPaused", world=world):
        _open(world)


@pytest.mark.parametrize("providers", [1, 2])
def test_open_round_needs_three_providers(bare, operators, providers):
    """Two contributors would each learn the other's input from the aggregate."""
    for i in range(providers):
        bare.register(PROVIDER, operator=operators[i])
    bare.sync()
    with rejects("RoundInvalidParticipants", providers, world=bare):
        _open(bare, threshold=providers)


def test_open_round_with_only_a_gateway(bare, operators):
    from helpers import GATEWAY

    bare.register(GATEWAY, operator=operators[0])
    bare.sync()
    with rejects("RoundInvalidParticipants", 0, world=bare):
        _open(bare, threshold=0)


def test_no_round_can_exceed_64_providers(bare, operators):
    """A round's participants fit a 64-bit bitmap: the registry admits at most 64 providers
    (its role limit), so the exchange's own RoundInvalidParticipants(65) cannot be reached."""
    for i in range(64):
        bare.register(PROVIDER, operator=operators[i % 4])
    enclave, quote, signature, possession = bare.offer(PROVIDER, operators[0])
    with rejects("RegistryRoleFull", PROVIDER, 64, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operators[0]})
    bare.sync()
    tx, _ = _open(bare, spec=(4, 16, SHAMIR, SEEDED, PRIME_61, 0), threshold=33)
    assert len(tx.events["RoundOpened"]["participants"]) == 64
    assert tx.events["RoundOpened"]["floor"] == 33


@pytest.mark.parametrize(
    ("scheme", "threshold", "ok"),
    [
        (ADDITIVE, 3, True),
        (ADDITIVE, 2, True),  # t-of-n: survivors recover what the absent were owed
        (ADDITIVE, 1, False),
        (ADDITIVE, 4, False),
        (ADDITIVE, 0, False),
        (SHAMIR, 2, True),
        (SHAMIR, 3, True),
        (SHAMIR, 1, False),
        (SHAMIR, 0, False),
        (SHAMIR, 4, False),
    ],
)
def test_threshold_rules(world, scheme, threshold, ok):
    spec = (4, 16, scheme, SEEDED, RING_2_64 if scheme == ADDITIVE else PRIME_61, 0)
    if ok:
        tx, _ = _open(world, spec=spec, threshold=threshold)
        assert tx.events["RoundOpened"]["threshold"] == threshold
    else:
        with rejects("RoundInvalidThreshold", threshold, 3, scheme, world=world):
            _open(world, spec=spec, threshold=threshold)


@pytest.mark.parametrize(
    ("length", "frac_bits", "modulus", "ok"),
    [
        (1, 0, 3, True),
        (10_000_000, 40, RING_2_64, True),
        (0, 16, RING_2_64, False),
        (10_000_001, 16, RING_2_64, False),
        (4, 41, RING_2_64, False),
        (4, 16, 2, False),
        (4, 16, 0, False),
    ],
)
def test_spec_bounds(world, length, frac_bits, modulus, ok):
    spec = (length, frac_bits, ADDITIVE, DENSE, modulus, 0)
    if ok:
        assert _open(world, spec=spec)[0].status == 1
    else:
        with rejects("RoundInvalidSpec", length, frac_bits, modulus, world=world):
            _open(world, spec=spec)


def test_deadlines_must_be_in_the_future_and_ordered(world):
    t = now() + 10
    ex = world.exchange
    for posting, deadline in ((t, t + 100), (t - 1, t + 100), (t + 100, t + 99)):
        next_block_at(t)
        with rejects("RoundInvalidDeadlines", posting, deadline, t, world=world):
            ex.openRound(TAG, SPEC, 3, posting, deadline, POLICY, {"from": world.coordinator})
        t += 1
    next_block_at(t)
    tx = ex.openRound(TAG, SPEC, 3, t + 1, t + 1, POLICY, {"from": world.coordinator})
    assert tx.status == 1  # posting may end with the round


@pytest.mark.parametrize(("minimum", "ok"), [(0, True), (3, True), (4, False)])
def test_policy_min_contributors(world, minimum, ok):
    if ok:
        assert _open(world, policy=(STATISTIC, minimum))[0].status == 1
    else:
        with rejects("RoundInvalidPolicy", minimum, 3, world=world):
            _open(world, policy=(STATISTIC, minimum))


def test_participants_are_frozen_at_open(world):
    round_id, _ = world.open_round()
    before = [p.address for p in world.providers]
    world.register(PROVIDER, operator=accounts[8])
    world.sync()
    assert norm(world.exchange.participants(round_id)) == norm(before)
    later, _ = world.open_round(threshold=4)
    assert len(world.exchange.participants(later)) == 4
    assert world.exchange.roundInfo(later)[3] == 5


# ------------------------------------------------------------------ the contributor floor


@pytest.mark.parametrize(
    ("scheme", "threshold", "minimum", "governance", "floor"),
    [
        (ADDITIVE, 4, 0, 3, 4),  # additive: everyone
        (ADDITIVE, 4, 2, 3, 4),
        (SHAMIR, 2, 0, 3, 3),  # never fewer than 3
        (SHAMIR, 4, 0, 3, 4),  # at least t
        (SHAMIR, 2, 4, 3, 4),  # at least the policy's minimum
        (SHAMIR, 2, 0, 4, 4),  # at least the governance floor
        (SHAMIR, 3, 2, 3, 3),
    ],
)
def test_floor_of_a_round(world4, scheme, threshold, minimum, governance, floor):
    w = world4
    if governance != 3:
        w.exchange.setContributorFloor(governance, {"from": w.governor})
    spec = (4, 16, scheme, SEEDED, RING_2_64 if scheme == ADDITIVE else PRIME_61, 0)
    tx, _ = _open(w, spec=spec, threshold=threshold, policy=(STATISTIC, minimum))
    assert tx.events["RoundOpened"]["floor"] == floor
    assert w.exchange.roundGuards(tx.return_value)[0] == floor


def test_floor_above_the_participants_is_refused(world):
    world.exchange.setContributorFloor(4, {"from": world.governor})
    with rejects("RoundFloorAboveParticipants", 4, 3, world=world):
        _open(world, spec=(4, 16, SHAMIR, SEEDED, PRIME_61, 0), threshold=2)
    # Additive rounds are n-of-n whatever the governance floor says.
    assert _open(world)[0].status == 1


def test_governance_sets_the_floor(world):
    ex = world.exchange
    assert ex.contributorFloor() == 3
    tx = ex.setContributorFloor(5, {"from": world.governor})
    assert_events(tx, ("ContributorFloorSet", {"floor": 5}))
    assert ex.contributorFloor() == 5


@pytest.mark.parametrize("floor", [0, 2, 65])
def test_governance_floor_bounds(world, floor):
    with rejects("RoundInvalidFloor", floor, world=world):
        world.exchange.setContributorFloor(floor, {"from": world.governor})


@pytest.mark.parametrize("caller", ["coordinator", "provider", "outsider"])
def test_only_governance_sets_the_floor(world, caller):
    account = {
        "coordinator": world.coordinator,
        "provider": world.providers[0].account,
        "outsider": accounts[3],
    }[caller]
    with rejects("AccessControlUnauthorizedAccount", account, GOVERNOR_ROLE, world=world):
        world.exchange.setContributorFloor(4, {"from": account})


@pytest.mark.parametrize(
    ("scheme", "degree", "ok"),
    [
        (ADDITIVE, 0, True),
        (ADDITIVE, 2, True),
        (ADDITIVE, 64, True),  # at least n: every pair, as with 0
        (ADDITIVE, 1, False),
        (ADDITIVE, 3, False),
        (SHAMIR, 2, False),  # a threshold share must reach every holder
    ],
)
def test_mask_degree_rules(world, scheme, degree, ok):
    spec = (4, 16, scheme, SEEDED, RING_2_64 if scheme == ADDITIVE else PRIME_61, degree)
    threshold = 3 if scheme == ADDITIVE else 2
    if ok:
        tx, _ = _open(world, spec=spec, threshold=threshold)
        assert tx.events["RoundOpened"]["spec"]["maskDegree"] == degree
        assert world.exchange.roundInfo(tx.return_value)[0][5] == degree
    else:
        with rejects("RoundInvalidMaskDegree", degree, scheme, world=world):
            _open(world, spec=spec, threshold=threshold)
