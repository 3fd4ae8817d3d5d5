"""ShareExchange: rejected shares, fused commitments, completion, finalize and expiry."""

from __future__ import annotations

import pytest
from brownie import accounts
from helpers import (
    SHAMIR,
    Abort,
    RoundState,
    assert_events,
    bits,
    norm,
    rejects,
    state_bit,
    travel_to,
)

POSTING_OR_FUSING = state_bit(RoundState.POSTING, RoundState.FUSING)


def deadlines(world, round_id):
    info = world.exchange.roundInfo(round_id)
    return int(info[4]), int(info[5])


def contributors(world, round_id):
    return int(world.exchange.roundInfo(round_id)[6])


def holders(world, round_id):
    return int(world.exchange.roundInfo(round_id)[7])


def close_after_posting(world, rid):
    pd, _ = deadlines(world, rid)
    travel_to(pd + 1)
    return world.exchange.closePosting(rid, {"from": accounts[3]})


# ------------------------------------------------------------------ a full round


def test_additive_round_completes_when_everyone_fused(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    ex = world.exchange
    p = world.providers
    for i, member in enumerate(p):
        commitment = world.fused_commitment(rid, member)
        tx = ex.postFused(rid, commitment, bits(0, 1, 2), {"from": member.account})
        expected = [
            (
                "FusedCommitted",
                {
                    "roundId": rid,
                    "member": member.address,
                    "commitment": commitment,
                    "contributors": bits(0, 1, 2),
                },
            )
        ]
        if i == 2:
            expected.append(
                ("RoundCompleted", {"roundId": rid, "contributors": bits(0, 1, 2), "holders": bits(0, 1, 2)})
            )
        assert_events(tx, *expected)
        assert holders(world, rid) == bits(*range(i + 1))
        # Holding a share counts only once the round completed.
        assert ex.isHolder(rid, member.address) == (i == 2)
    assert ex.state(rid) == RoundState.COMPLETED
    assert all(ex.isHolder(rid, m.address) for m in p)
    assert not ex.isHolder(rid, world.gateways[0].address)


def test_completed_round_does_not_expire(world):
    rid = world.completed_round()
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1000)
    assert world.exchange.state(rid) == RoundState.COMPLETED


def test_shamir_round_with_a_dropout_completes_through_fusion(world4):
    """t=2 of 4 (floor 3): one provider never posts; the others continue; every
    non-excluded member fuses."""
    w = world4
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    p = w.providers
    w.post_all(rid, [p[0], p[1], p[3]])
    close_after_posting(w, rid)
    assert contributors(w, rid) == bits(0, 1, 3)
    for m in (p[0], p[1], p[3]):
        w.fuse(rid, m)
    assert w.exchange.state(rid) == RoundState.FUSING  # the non-contributor still holds shares to fuse
    tx = w.fuse(rid, p[2])
    assert_events(
        tx,
        (
            "FusedCommitted",
            {
                "roundId": rid,
                "member": p[2].address,
                "commitment": w.fused_commitment(rid, p[2]),
                "contributors": bits(0, 1, 3),
            },
        ),
        ("RoundCompleted", {"roundId": rid, "contributors": bits(0, 1, 3), "holders": bits(0, 1, 2, 3)}),
    )


# ------------------------------------------------------------------ postFused: refusals


def test_fused_with_stale_contributors(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    with rejects("RoundStaleContributors", rid, bits(0, 1), bits(0, 1, 2), world=world):
        world.fuse(rid, world.providers[0], contributors=bits(0, 1))


def test_fused_twice(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    member = world.providers[0]
    world.fuse(rid, member)
    with rejects("RoundAlreadyFused", rid, member.address, world=world):
        world.fuse(rid, member)


@pytest.mark.parametrize("who", ["outsider", "gateway", "operator"])
def test_fused_by_non_participant(world, who):
    rid, _ = world.open_round()
    world.post_all(rid)
    caller = {
        "outsider": accounts[3],
        "gateway": world.gateways[0].account,
        "operator": world.providers[0].operator,
    }[who]
    with rejects("RoundNotParticipant", rid, caller, world=world):
        world.exchange.postFused(rid, b"\x01" * 32, bits(0, 1, 2), {"from": caller})


def test_fused_by_revoked_participant(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    member = world.providers[2]
    world.registry.revoke(member.address, {"from": member.operator})
    with rejects("RoundNotAttested", member.address, world=world):
        world.fuse(rid, member)


def test_fused_while_posting(world):
    rid, _ = world.open_round()
    with rejects("RoundUnexpectedState", rid, RoundState.POSTING, state_bit(RoundState.FUSING), world=world):
        world.fuse(rid, world.providers[0], contributors=0)


def test_fused_after_the_deadline(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    with rejects("RoundUnexpectedState", rid, RoundState.EXPIRED, state_bit(RoundState.FUSING), world=world):
        world.fuse(rid, world.providers[0], contributors=bits(0, 1, 2))


def test_fused_on_completed_round(world):
    rid = world.completed_round()
    with rejects(
        "RoundUnexpectedState", rid, RoundState.COMPLETED, state_bit(RoundState.FUSING), world=world
    ):
        world.fuse(rid, world.providers[0], contributors=bits(0, 1, 2))


def test_fused_while_registry_paused(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    world.registry.pause({"from": world.governor})
    with rejects("RoundRegistryPaused", world=world):
        world.fuse(rid, world.providers[0], contributors=bits(0, 1, 2))


# ------------------------------------------------------------------ finalize and Expired


def test_expired_is_derived_from_time(world):
    rid, _ = world.open_round()
    _, deadline = deadlines(world, rid)
    travel_to(deadline)
    assert world.exchange.state(rid) == RoundState.POSTING
    travel_to(deadline + 1)
    assert world.exchange.state(rid) == RoundState.EXPIRED
    other, _ = world.open_round()
    world.post_all(other)
    _, deadline = deadlines(world, other)
    travel_to(deadline + 1)
    assert world.exchange.state(other) == RoundState.EXPIRED


def test_finalize_before_the_deadline(world):
    rid, _ = world.open_round()
    fusing, _ = world.open_round()
    world.post_all(fusing)
    _, deadline = deadlines(world, rid)
    travel_to(deadline - 1)
    with rejects("RoundUnexpectedState", rid, RoundState.POSTING, state_bit(RoundState.EXPIRED), world=world):
        world.exchange.finalize(rid, {"from": accounts[3]})
    with rejects(
        "RoundUnexpectedState", fusing, RoundState.FUSING, state_bit(RoundState.EXPIRED), world=world
    ):
        world.exchange.finalize(fusing, {"from": accounts[3]})


def test_finalize_expired_posting_names_the_missing(world):
    rid, _ = world.open_round(scheme=SHAMIR, threshold=2)
    p = world.providers
    world.post_all(rid, [p[0], p[1]])
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    tx = world.exchange.finalize(rid, {"from": accounts[3]})
    # Posting was never closed: the round aborts even though t could have been met.
    assert_events(
        tx, ("RoundAborted", {"roundId": rid, "reason": Abort.MISSING_SHARES, "culprits": [p[2].address]})
    )
    assert world.exchange.state(rid) == RoundState.ABORTED


def test_finalize_additive_fusing_names_the_missing(world):
    rid, _ = world.open_round()
    p = world.providers
    world.post_all(rid)
    world.fuse(rid, p[1])
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    tx = world.exchange.finalize(rid, {"from": accounts[3]})
    assert_events(
        tx,
        (
            "RoundAborted",
            {"roundId": rid, "reason": Abort.MISSING_FUSION, "culprits": [p[0].address, p[2].address]},
        ),
    )
    assert world.exchange.state(rid) == RoundState.ABORTED
    assert not world.exchange.isHolder(rid, p[1].address)


def test_finalize_shamir_completes_with_threshold_holders(world):
    rid, _ = world.open_round(scheme=SHAMIR, threshold=2)
    p = world.providers
    world.post_all(rid)
    world.fuse(rid, p[0])
    world.fuse(rid, p[2])
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    tx = world.exchange.finalize(rid, {"from": accounts[3]})
    assert_events(
        tx, ("RoundCompleted", {"roundId": rid, "contributors": bits(0, 1, 2), "holders": bits(0, 2)})
    )
    ex = world.exchange
    assert ex.state(rid) == RoundState.COMPLETED
    assert [ex.isHolder(rid, m.address) for m in p] == [True, False, True]


def test_finalize_shamir_below_threshold_aborts(world4):
    w = world4
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    p = w.providers
    w.post_all(rid)
    w.complain(rid, p[0], p[1])
    w.judge(rid, [p[2], p[3]], True)  # p[1] excluded
    w.fuse(rid, p[0])
    _, deadline = deadlines(w, rid)
    travel_to(deadline + 1)
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    # The excluded sender is not blamed for missing fusion; the silent members are.
    assert_events(
        tx,
        (
            "RoundAborted",
            {"roundId": rid, "reason": Abort.MISSING_FUSION, "culprits": [p[2].address, p[3].address]},
        ),
    )


@pytest.mark.parametrize("terminal", ["completed", "aborted"])
def test_finalize_terminal_round(world, terminal):
    if terminal == "completed":
        rid = world.completed_round()
        current = RoundState.COMPLETED
    else:
        rid, _ = world.open_round()
        close_after_posting(world, rid)
        current = RoundState.ABORTED
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    with rejects("RoundUnexpectedState", rid, current, state_bit(RoundState.EXPIRED), world=world):
        world.exchange.finalize(rid, {"from": accounts[3]})


def test_finalize_unknown_round(world):
    with rejects("RoundUnexpectedState", 3, RoundState.NONE, state_bit(RoundState.EXPIRED), world=world):
        world.exchange.finalize(3, {"from": accounts[3]})


def test_rounds_are_independent(world):
    first, _ = world.open_round()
    second, _ = world.open_round(scheme=SHAMIR, threshold=2)
    world.post_all(second)
    assert world.exchange.state(first) == RoundState.POSTING
    assert world.exchange.state(second) == RoundState.FUSING
    assert world.exchange.chunksPosted(first, world.providers[0].address) == 0
    assert norm(world.exchange.participants(first)) == norm(world.exchange.participants(second))
