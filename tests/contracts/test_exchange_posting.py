"""ShareExchange.postShares and closePosting: chunked postings under a hash-chain commitment."""

from __future__ import annotations

import pytest
from brownie import accounts
from eth_utils import keccak
from helpers import (
    SHAMIR,
    ZERO32,
    Abort,
    RoundState,
    assert_events,
    bits,
    next_block_at,
    rejects,
    share_commitment,
    state_bit,
    table_hash,
    travel_to,
)


def deadlines(world, round_id):
    info = world.exchange.roundInfo(round_id)
    return int(info[4]), int(info[5])


def table(world, round_id):
    """A key table of the right length (its entries matter only to complaints)."""
    return [keccak(bytes([i])) for i in range(len(world.exchange.participants(round_id)))]


def chunks_of(size, count, label=b"share"):
    return [keccak(label + bytes([i])) * (size // 32) for i in range(count)]


# ------------------------------------------------------------------ the hash chain


def test_share_commitment_formula():
    a, b = b"first chunk", b"second chunk"
    c1 = keccak(ZERO32 + keccak(a))
    assert share_commitment([a]) == c1
    assert share_commitment([a, b]) == keccak(c1 + keccak(b))
    assert share_commitment([b, a]) != share_commitment([a, b])
    assert share_commitment([]) == ZERO32


# ------------------------------------------------------------------ postShares: success


def test_single_chunk_posting(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    payload = world.payload(rid, sender.address)
    commitment = share_commitment([payload])
    tx = world.exchange.postShares(
        rid, 0, 1, commitment, table(world, rid), payload, {"from": sender.account}
    )
    assert_events(
        tx,
        (
            "SharesPosted",
            {
                "roundId": rid,
                "sender": sender.address,
                "chunkIndex": 0,
                "chunkCount": 1,
                "commitment": commitment,
                "keyTable": table(world, rid),
                "payload": payload,
            },
        ),
    )
    assert bytes(world.exchange.shareCommitment(rid, sender.address)) == commitment
    assert bytes(world.exchange.keyTableHash(rid, sender.address)) == table_hash(table(world, rid))
    assert world.exchange.chunksPosted(rid, sender.address) == 1
    assert world.exchange.state(rid) == RoundState.POSTING


def test_last_posting_closes_the_posting_phase(world):
    rid, _ = world.open_round()
    world.post_all(rid, world.providers[:2])
    last = world.providers[2]
    payload = world.payload(rid, last.address)
    commitment = share_commitment([payload])
    tx = world.exchange.postShares(rid, 0, 1, commitment, table(world, rid), payload, {"from": last.account})
    assert_events(
        tx,
        (
            "SharesPosted",
            {
                "roundId": rid,
                "sender": last.address,
                "chunkIndex": 0,
                "chunkCount": 1,
                "commitment": commitment,
                "keyTable": table(world, rid),
                "payload": payload,
            },
        ),
        ("PostingClosed", {"roundId": rid, "contributors": bits(0, 1, 2)}),
    )
    assert world.exchange.state(rid) == RoundState.FUSING
    assert world.exchange.roundInfo(rid)[6] == bits(0, 1, 2)


def test_chunked_posting(world):
    rid, _ = world.open_round()
    sender = world.providers[1]
    chunks = chunks_of(256, 3)
    commitment = share_commitment(chunks)
    ex = world.exchange
    for i, chunk in enumerate(chunks):
        tx = ex.postShares(
            rid, i, 3, commitment, (table(world, rid) if i == 0 else []), chunk, {"from": sender.account}
        )
        assert_events(
            tx,
            (
                "SharesPosted",
                {
                    "roundId": rid,
                    "sender": sender.address,
                    "chunkIndex": i,
                    "chunkCount": 3,
                    "commitment": commitment,
                    "keyTable": table(world, rid) if i == 0 else [],
                    "payload": chunk,
                },
            ),
        )
        assert ex.chunksPosted(rid, sender.address) == i + 1
        # The commitment is only exposed once the chain of chunks checked out.
        assert bytes(ex.shareCommitment(rid, sender.address)) == (commitment if i == 2 else ZERO32)


def test_empty_payload_chunk_is_hashed_like_any_other(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    chunks = [b"", b"tail"]
    world.post(rid, sender, chunks)
    assert bytes(world.exchange.shareCommitment(rid, sender.address)) == share_commitment(chunks)


def test_posting_at_the_posting_deadline_is_accepted(world):
    rid, _ = world.open_round()
    pd, _ = deadlines(world, rid)
    next_block_at(pd)
    assert world.post(rid, world.providers[0])[0].status == 1


# ------------------------------------------------------------------ postShares: refusals


def test_out_of_order_chunk(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    chunks = chunks_of(64, 3)
    c = share_commitment(chunks)
    with rejects("RoundChunkOutOfOrder", rid, sender.address, 0, 1, world=world):
        world.exchange.postShares(rid, 1, 3, c, [], chunks[1], {"from": sender.account})
    world.exchange.postShares(rid, 0, 3, c, table(world, rid), chunks[0], {"from": sender.account})
    with rejects("RoundChunkOutOfOrder", rid, sender.address, 1, 0, world=world):
        world.exchange.postShares(rid, 0, 3, c, table(world, rid), chunks[0], {"from": sender.account})
    with rejects("RoundChunkOutOfOrder", rid, sender.address, 1, 2, world=world):
        world.exchange.postShares(rid, 2, 3, c, [], chunks[2], {"from": sender.account})


def test_first_chunk_needs_a_count_and_a_commitment(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    payload = b"payload"
    c = share_commitment([payload])
    with rejects("RoundChunkHeaderMismatch", rid, sender.address, 0, c, world=world):
        world.exchange.postShares(rid, 0, 0, c, table(world, rid), payload, {"from": sender.account})
    with rejects("RoundChunkHeaderMismatch", rid, sender.address, 1, ZERO32, world=world):
        world.exchange.postShares(rid, 0, 1, ZERO32, table(world, rid), payload, {"from": sender.account})


@pytest.mark.parametrize("length", [0, 2, 4])
def test_first_chunk_needs_one_key_commitment_per_participant(world, length):
    rid, _ = world.open_round()
    sender = world.providers[0]
    c = share_commitment([b"payload"])
    with rejects("RoundKeyTableInvalid", rid, sender.address, length, world=world):
        world.exchange.postShares(rid, 0, 1, c, [ZERO32] * length, b"payload", {"from": sender.account})


def test_later_chunks_carry_no_key_table(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    chunks = chunks_of(64, 2)
    c = share_commitment(chunks)
    world.exchange.postShares(rid, 0, 2, c, table(world, rid), chunks[0], {"from": sender.account})
    with rejects("RoundKeyTableInvalid", rid, sender.address, 3, world=world):
        world.exchange.postShares(rid, 1, 2, c, table(world, rid), chunks[1], {"from": sender.account})
    assert bytes(world.exchange.keyTableHash(rid, sender.address)) == table_hash(table(world, rid))


@pytest.mark.parametrize("change", ["count", "commitment"])
def test_later_chunk_header_mismatch(world, change):
    rid, _ = world.open_round()
    sender = world.providers[0]
    chunks = chunks_of(64, 3)
    c = share_commitment(chunks)
    world.exchange.postShares(rid, 0, 3, c, table(world, rid), chunks[0], {"from": sender.account})
    count, commitment = (4, c) if change == "count" else (3, keccak(b"another"))
    with rejects("RoundChunkHeaderMismatch", rid, sender.address, count, commitment, world=world):
        world.exchange.postShares(rid, 1, count, commitment, [], chunks[1], {"from": sender.account})


def test_commitment_mismatch_on_the_last_chunk(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    chunks = chunks_of(64, 2)
    announced = share_commitment(chunks)
    ex = world.exchange
    ex.postShares(rid, 0, 2, announced, table(world, rid), chunks[0], {"from": sender.account})
    swapped = b"not the chunk that was committed"
    computed = share_commitment([chunks[0], swapped])
    with rejects("RoundCommitmentMismatch", rid, sender.address, announced, computed, world=world):
        ex.postShares(rid, 1, 2, announced, [], swapped, {"from": sender.account})
    ex.postShares(rid, 1, 2, announced, [], chunks[1], {"from": sender.account})
    assert bytes(ex.shareCommitment(rid, sender.address)) == announced


def test_commitment_mismatch_single_chunk(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    announced = keccak(b"a commitment to something else")
    computed = share_commitment([b"payload"])
    with rejects("RoundCommitmentMismatch", rid, sender.address, announced, computed, world=world):
        world.exchange.postShares(
            rid, 0, 1, announced, table(world, rid), b"payload", {"from": sender.account}
        )


def test_posting_twice_is_refused(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    world.post(rid, sender)
    c = share_commitment([b"second set"])
    with rejects("RoundAlreadyPosted", rid, sender.address, world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"second set", {"from": sender.account})


@pytest.mark.parametrize("who", ["outsider", "gateway", "coordinator", "governor", "operator"])
def test_non_participant_cannot_post(world, who):
    rid, _ = world.open_round()
    caller = {
        "outsider": accounts[3],
        "gateway": world.gateways[0].account,
        "coordinator": world.coordinator,
        "governor": world.governor,
        "operator": world.providers[0].operator,
    }[who]
    c = share_commitment([b"x"])
    with rejects("RoundNotParticipant", rid, caller, world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": caller})


def test_provider_joined_after_open_is_not_a_participant(world):
    rid, _ = world.open_round()
    newcomer, _ = world.register(1, operator=accounts[8])
    c = share_commitment([b"x"])
    with rejects("RoundNotParticipant", rid, newcomer.address, world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": newcomer.account})


def test_revoked_participant_cannot_post(world):
    rid, _ = world.open_round()
    sender = world.providers[0]
    world.registry.revoke(sender.address, {"from": world.governor})
    c = share_commitment([b"x"])
    with rejects("RoundNotAttested", sender.address, world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": sender.account})


def test_late_posting_is_refused(world):
    rid, _ = world.open_round()
    pd, _ = deadlines(world, rid)
    sender = world.providers[0]
    c = share_commitment([b"x"])
    next_block_at(pd + 1)
    with rejects("RoundPostingDeadlinePassed", rid, pd, world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": sender.account})


def test_late_last_chunk_is_refused(world):
    rid, _ = world.open_round()
    pd, _ = deadlines(world, rid)
    sender = world.providers[0]
    chunks = chunks_of(64, 2)
    c = share_commitment(chunks)
    world.exchange.postShares(rid, 0, 2, c, table(world, rid), chunks[0], {"from": sender.account})
    next_block_at(pd + 1)
    with rejects("RoundPostingDeadlinePassed", rid, pd, world=world):
        world.exchange.postShares(rid, 1, 2, c, [], chunks[1], {"from": sender.account})


def test_posting_refused_while_registry_paused(world):
    rid, _ = world.open_round()
    world.registry.pause({"from": world.governor})
    c = share_commitment([b"x"])
    with rejects("RoundRegistryPaused", world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": world.providers[0].account})


def test_posting_to_unknown_round(world):
    c = share_commitment([b"x"])
    with rejects("RoundUnexpectedState", 7, RoundState.NONE, state_bit(RoundState.POSTING), world=world):
        world.exchange.postShares(7, 0, 1, c, table(world, 7), b"x", {"from": world.providers[0].account})


def test_posting_after_posting_closed(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    c = share_commitment([b"x"])
    with rejects("RoundUnexpectedState", rid, RoundState.FUSING, state_bit(RoundState.POSTING), world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": world.providers[0].account})


def test_posting_to_expired_round(world):
    rid, _ = world.open_round(posting=100, total=100)
    _, deadline = deadlines(world, rid)
    c = share_commitment([b"x"])
    travel_to(deadline + 1)
    assert world.exchange.state(rid) == RoundState.EXPIRED
    with rejects("RoundUnexpectedState", rid, RoundState.EXPIRED, state_bit(RoundState.POSTING), world=world):
        world.exchange.postShares(rid, 0, 1, c, table(world, rid), b"x", {"from": world.providers[0].account})


# ------------------------------------------------------------------ closePosting


def test_close_posting_before_the_deadline_is_refused(world):
    rid, _ = world.open_round()
    pd, _ = deadlines(world, rid)
    next_block_at(pd)
    with rejects("RoundPostingStillOpen", rid, pd, world=world):
        world.exchange.closePosting(rid, {"from": accounts[3]})


def test_close_posting_additive_with_missing_shares_aborts(world):
    rid, _ = world.open_round()
    world.post(rid, world.providers[1])
    pd, _ = deadlines(world, rid)
    travel_to(pd + 1)
    tx = world.exchange.closePosting(rid, {"from": accounts[3]})
    missing = [world.providers[0].address, world.providers[2].address]
    assert_events(tx, ("RoundAborted", {"roundId": rid, "reason": Abort.MISSING_SHARES, "culprits": missing}))
    assert world.exchange.state(rid) == RoundState.ABORTED


def test_close_posting_additive_names_a_participant_with_incomplete_chunks(world):
    rid, _ = world.open_round()
    world.post_all(rid, world.providers[1:])
    chunks = chunks_of(64, 2)
    first = world.providers[0]
    world.exchange.postShares(
        rid, 0, 2, share_commitment(chunks), table(world, rid), chunks[0], {"from": first.account}
    )
    pd, _ = deadlines(world, rid)
    travel_to(pd + 1)
    tx = world.exchange.closePosting(rid, {"from": accounts[3]})
    assert_events(
        tx, ("RoundAborted", {"roundId": rid, "reason": Abort.MISSING_SHARES, "culprits": [first.address]})
    )


def test_close_posting_shamir_with_the_floor_continues(world4):
    w = world4
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    w.post_all(rid, [w.providers[0], w.providers[2], w.providers[3]])
    pd, _ = deadlines(w, rid)
    travel_to(pd + 1)
    tx = w.exchange.closePosting(rid, {"from": accounts[3]})
    assert_events(tx, ("PostingClosed", {"roundId": rid, "contributors": bits(0, 2, 3)}))
    assert w.exchange.state(rid) == RoundState.FUSING
    assert w.exchange.roundInfo(rid)[6] == bits(0, 2, 3)


def test_close_posting_shamir_below_the_floor_aborts_even_above_threshold(world4):
    """t = 2 posters would reconstruct, but no round completes below its floor of 3:
    with two contributors each would learn the other's input."""
    w = world4
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    assert w.exchange.roundGuards(rid)[0] == 3
    w.post_all(rid, [w.providers[1], w.providers[3]])
    pd, _ = deadlines(w, rid)
    travel_to(pd + 1)
    tx = w.exchange.closePosting(rid, {"from": accounts[3]})
    missing = [w.providers[0].address, w.providers[2].address]
    assert_events(tx, ("RoundAborted", {"roundId": rid, "reason": Abort.MISSING_SHARES, "culprits": missing}))
    assert w.exchange.state(rid) == RoundState.ABORTED


def test_close_posting_when_already_fusing(world):
    rid, _ = world.open_round()
    world.post_all(rid)
    pd, _ = deadlines(world, rid)
    travel_to(pd + 1)
    with rejects("RoundUnexpectedState", rid, RoundState.FUSING, state_bit(RoundState.POSTING), world=world):
        world.exchange.closePosting(rid, {"from": accounts[3]})


def test_close_posting_after_the_round_deadline(world):
    rid, _ = world.open_round()
    _, deadline = deadlines(world, rid)
    travel_to(deadline + 1)
    with rejects("RoundUnexpectedState", rid, RoundState.EXPIRED, state_bit(RoundState.POSTING), world=world):
        world.exchange.closePosting(rid, {"from": accounts[3]})


def test_close_posting_of_aborted_round(world):
    rid, _ = world.open_round()
    pd, _ = deadlines(world, rid)
    travel_to(pd + 1)
    world.exchange.closePosting(rid, {"from": accounts[3]})
    with rejects("RoundUnexpectedState", rid, RoundState.ABORTED, state_bit(RoundState.POSTING), world=world):
        world.exchange.closePosting(rid, {"from": accounts[3]})
