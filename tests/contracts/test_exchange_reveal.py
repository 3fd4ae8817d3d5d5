"""ShareExchange.revealFused: holders of a completed Intermediate round send their fused
share, encrypted pairwise, to the other participants' enclaves."""

from __future__ import annotations

import pytest
from brownie import accounts
from helpers import (
    INTERMEDIATE,
    SHAMIR,
    SHARED_MODEL,
    STATISTIC,
    RoundState,
    assert_events,
    rejects,
    state_bit,
    travel_to,
)

COMPLETED = state_bit(RoundState.COMPLETED)


def test_every_holder_reveals_once(world):
    rid = world.completed_round(kind=INTERMEDIATE)
    for i, member in enumerate(world.providers):
        payload = bytes([i]) * 120
        tx = world.exchange.revealFused(rid, payload, {"from": member.account})
        assert_events(tx, ("FusedRevealed", {"roundId": rid, "member": member.address, "payload": payload}))
    member = world.providers[1]
    with rejects("RoundAlreadyRevealed", rid, member.address, world=world):
        world.exchange.revealFused(rid, b"again", {"from": member.account})


@pytest.mark.parametrize("kind", [SHARED_MODEL, STATISTIC])
def test_only_intermediate_rounds_are_revealed(world, kind):
    rid = world.completed_round(kind=kind)
    with rejects("RoundNotIntermediate", rid, world=world):
        world.exchange.revealFused(rid, b"x", {"from": world.providers[0].account})


def test_reveal_needs_a_completed_round(world):
    ex = world.exchange
    p = world.providers[0]
    posting, _ = world.open_round(kind=INTERMEDIATE)
    with rejects("RoundUnexpectedState", posting, RoundState.POSTING, COMPLETED, world=world):
        ex.revealFused(posting, b"x", {"from": p.account})
    fusing, _ = world.open_round(kind=INTERMEDIATE)
    world.post_all(fusing)
    with rejects("RoundUnexpectedState", fusing, RoundState.FUSING, COMPLETED, world=world):
        ex.revealFused(fusing, b"x", {"from": p.account})
    with rejects("RoundUnexpectedState", 99, RoundState.NONE, COMPLETED, world=world):
        ex.revealFused(99, b"x", {"from": p.account})
    travel_to(int(ex.roundInfo(fusing)[5]) + 1)
    with rejects("RoundUnexpectedState", fusing, RoundState.EXPIRED, COMPLETED, world=world):
        ex.revealFused(fusing, b"x", {"from": p.account})
    ex.finalize(fusing, {"from": accounts[3]})
    with rejects("RoundUnexpectedState", fusing, RoundState.ABORTED, COMPLETED, world=world):
        ex.revealFused(fusing, b"x", {"from": p.account})


@pytest.mark.parametrize("who", ["outsider", "gateway", "operator", "governor"])
def test_reveal_by_non_participant(world, who):
    rid = world.completed_round(kind=INTERMEDIATE)
    caller = {
        "outsider": accounts[3],
        "gateway": world.gateways[0].account,
        "operator": world.providers[0].operator,
        "governor": world.governor,
    }[who]
    with rejects("RoundNotParticipant", rid, caller, world=world):
        world.exchange.revealFused(rid, b"x", {"from": caller})


def test_reveal_by_revoked_holder(world):
    rid = world.completed_round(kind=INTERMEDIATE)
    member = world.providers[2]
    world.registry.revoke(member.address, {"from": world.governor})
    with rejects("RoundNotAttested", member.address, world=world):
        world.exchange.revealFused(rid, b"x", {"from": member.account})


def test_reveal_by_participant_without_a_fused_share(world):
    rid, _ = world.open_round(scheme=SHAMIR, threshold=2, kind=INTERMEDIATE)
    p = world.providers
    world.post_all(rid)
    world.fuse_all(rid, [p[0], p[2]])
    travel_to(int(world.exchange.roundInfo(rid)[5]) + 1)
    world.exchange.finalize(rid, {"from": accounts[3]})
    with rejects("RoundNotHolder", rid, p[1].address, world=world):
        world.exchange.revealFused(rid, b"x", {"from": p[1].account})
    assert world.exchange.revealFused(rid, b"x", {"from": p[2].account}).status == 1


def test_reveal_while_registry_paused(world):
    rid = world.completed_round(kind=INTERMEDIATE)
    world.registry.pause({"from": world.governor})
    with rejects("RoundRegistryPaused", world=world):
        world.exchange.revealFused(rid, b"x", {"from": world.providers[0].account})
