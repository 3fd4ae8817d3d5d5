"""ShareExchange complaints with evidence, judges' verdicts, exclusions and blame.

A complaint reveals the per-posting key of the accused sender's ciphertext for the
accuser; the contract checks it against the sender's posted key table; the other
contributors judge whether the ciphertext opens under it.
"""

from __future__ import annotations

import pytest
from brownie import accounts
from eth_abi import encode as abi_encode
from eth_utils import keccak
from helpers import (
    ADDITIVE,
    INTERMEDIATE,
    SHAMIR,
    ZERO32,
    Abort,
    Blame,
    Exclusion,
    RoundState,
    assert_events,
    bits,
    norm,
    rejects,
    state_bit,
    travel_to,
)

FUSING = state_bit(RoundState.FUSING)
ZERO_ADDRESS = "0x" + "00" * 20


def fusing_round(w, scheme=SHAMIR, threshold=2, **kwargs):
    rid, _ = w.open_round(
        scheme=scheme, threshold=len(w.providers) if scheme == ADDITIVE else threshold, **kwargs
    )
    w.post_all(rid)
    assert w.exchange.state(rid) == RoundState.FUSING
    return rid


def info(w, rid):
    i = w.exchange.roundInfo(rid)
    return int(i[6]), int(i[7])  # contributors, holders


# ------------------------------------------------------------------ filing


def test_complaint_with_the_committed_key_opens_judging(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.fuse(rid, p[3])
    assert info(w, rid)[1] == bits(3)
    key = w.posting_key(rid, p[1].address, p[0].address)
    tx = w.complain(rid, p[0], p[1])
    assert_events(
        tx,
        (
            "ComplaintFiled",
            {
                "roundId": rid,
                "accuser": p[0].address,
                "sender": p[1].address,
                "postingKey": key,
                "judges": bits(2, 3),
            },
        ),
    )
    # Fused commitments so far were over a contributor set about to change.
    assert info(w, rid) == (bits(0, 1, 2, 3), 0)
    assert norm(w.exchange.pendingComplaint(rid)) == (
        p[0].address.lower(),
        p[1].address.lower(),
        bits(2, 3),
        0,
        0,
    )


def test_shamir_upheld_complaint_excludes_the_sender_and_the_round_goes_on(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    tx = w.exchange.judgeComplaint(rid, True, {"from": p[2].account})
    assert_events(
        tx,
        (
            "ComplaintJudged",
            {
                "roundId": rid,
                "judge": p[2].address,
                "accuser": p[0].address,
                "sender": p[1].address,
                "senderAtFault": True,
            },
        ),
    )
    tx = w.exchange.judgeComplaint(rid, True, {"from": p[3].account})
    assert_events(
        tx,
        (
            "ComplaintJudged",
            {
                "roundId": rid,
                "judge": p[3].address,
                "accuser": p[0].address,
                "sender": p[1].address,
                "senderAtFault": True,
            },
        ),
        (
            "MemberExcluded",
            {
                "roundId": rid,
                "member": p[1].address,
                "reason": Exclusion.INVALID_SHARE,
                "contributors": bits(0, 2, 3),
            },
        ),
    )
    ex = w.exchange
    assert norm(ex.roundGuards(rid)) == (3, bits(1))
    assert norm(ex.pendingComplaint(rid)) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0)
    assert ex.state(rid) == RoundState.FUSING
    with rejects("RoundSenderExcluded", rid, p[1].address, world=w):
        w.fuse(rid, p[1], contributors=bits(0, 2, 3))
    for m in (p[0], p[2]):
        w.fuse(rid, m)
    tx = w.fuse(rid, p[3])
    assert tx.events["RoundCompleted"]["contributors"] == bits(0, 2, 3)
    assert tx.events["RoundCompleted"]["holders"] == bits(0, 2, 3)


def test_false_complaint_excludes_the_accuser(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    w.exchange.judgeComplaint(rid, False, {"from": p[2].account})
    tx = w.exchange.judgeComplaint(rid, False, {"from": p[3].account})
    assert tx.events["MemberExcluded"]["member"] == p[0].address
    assert tx.events["MemberExcluded"]["reason"] == Exclusion.FALSE_COMPLAINT
    assert info(w, rid)[0] == bits(1, 2, 3)


def test_accusers_cannot_shrink_a_round_to_a_victim(world4):
    """The attack of issue 9: one participant accuses two honest providers so that only
    it and a victim would remain. Its first complaint is judged false and excludes it;
    it cannot accuse again, and the round completes over the three honest providers."""
    w = world4
    p = w.providers
    rogue, victims = p[0], [p[1], p[2]]
    rid = fusing_round(w)
    w.complain(rid, rogue, victims[0])
    w.judge(rid, [p[2], p[3]], False)
    with rejects("RoundSenderExcluded", rid, rogue.address, world=w):
        w.complain(rid, rogue, victims[1])
    for m in p[1:]:
        tx = w.fuse(rid, m)
    assert tx.events["RoundCompleted"]["contributors"] == bits(1, 2, 3)


@pytest.mark.parametrize(
    ("at_fault", "reason", "culprit"), [(True, Abort.INVALID_SHARE, 1), (False, Abort.FALSE_COMPLAINT, 0)]
)
def test_additive_verdict_aborts_naming_the_culprit(world, at_fault, reason, culprit):
    w = world
    p = w.providers
    rid = fusing_round(w, scheme=ADDITIVE)
    w.complain(rid, p[0], p[1])
    tx = w.exchange.judgeComplaint(rid, at_fault, {"from": p[2].account})
    exclusion = Exclusion.INVALID_SHARE if at_fault else Exclusion.FALSE_COMPLAINT
    remaining = bits(0, 1, 2) & ~bits(culprit)
    assert_events(
        tx,
        (
            "ComplaintJudged",
            {
                "roundId": rid,
                "judge": p[2].address,
                "accuser": p[0].address,
                "sender": p[1].address,
                "senderAtFault": at_fault,
            },
        ),
        (
            "MemberExcluded",
            {"roundId": rid, "member": p[culprit].address, "reason": exclusion, "contributors": remaining},
        ),
        ("RoundAborted", {"roundId": rid, "reason": reason, "culprits": [p[culprit].address]}),
    )
    assert w.exchange.state(rid) == RoundState.ABORTED


def test_shamir_exclusion_below_the_floor_aborts(world):
    w = world
    p = w.providers
    rid = fusing_round(w)  # 3 providers, t = 2, floor 3
    w.complain(rid, p[2], p[0])
    tx = w.exchange.judgeComplaint(rid, True, {"from": p[1].account})
    assert tx.events["MemberExcluded"]["member"] == p[0].address
    assert norm(tx.events["RoundAborted"]["culprits"]) == (p[0].address.lower(),)
    assert tx.events["RoundAborted"]["reason"] == Abort.TOO_FEW_CONTRIBUTORS


def test_key_not_committed_by_the_sender_excludes_both(world5):
    w = world5
    p = w.providers
    rid = fusing_round(w, threshold=3)
    wrong = keccak(b"not the committed key")
    tx = w.complain(rid, p[0], p[1], key=wrong)
    assert_events(
        tx,
        (
            "ComplaintFiled",
            {
                "roundId": rid,
                "accuser": p[0].address,
                "sender": p[1].address,
                "postingKey": wrong,
                "judges": 0,
            },
        ),
        (
            "MemberExcluded",
            {
                "roundId": rid,
                "member": p[0].address,
                "reason": Exclusion.KEY_MISMATCH,
                "contributors": bits(2, 3, 4),
            },
        ),
        (
            "MemberExcluded",
            {
                "roundId": rid,
                "member": p[1].address,
                "reason": Exclusion.KEY_MISMATCH,
                "contributors": bits(2, 3, 4),
            },
        ),
    )
    assert w.exchange.state(rid) == RoundState.FUSING
    assert norm(w.exchange.pendingComplaint(rid)) == (ZERO_ADDRESS, ZERO_ADDRESS, 0, 0, 0)


def test_additive_key_mismatch_aborts_naming_both(world):
    w = world
    p = w.providers
    rid = fusing_round(w, scheme=ADDITIVE)
    tx = w.complain(rid, p[2], p[0], key=keccak(b"other"))
    assert tx.events["RoundAborted"]["reason"] == Abort.KEY_MISMATCH
    assert norm(tx.events["RoundAborted"]["culprits"]) == (p[0].address.lower(), p[2].address.lower())


def test_split_verdict_aborts_naming_accuser_and_sender(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[3], p[0])
    w.exchange.judgeComplaint(rid, True, {"from": p[1].account})
    tx = w.exchange.judgeComplaint(rid, False, {"from": p[2].account})
    assert tx.events["RoundAborted"]["reason"] == Abort.SPLIT_VERDICT
    assert norm(tx.events["RoundAborted"]["culprits"]) == (p[0].address.lower(), p[3].address.lower())
    assert w.exchange.state(rid) == RoundState.ABORTED


def test_unjudged_complaint_at_the_deadline_names_the_silent_judges(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    w.exchange.judgeComplaint(rid, True, {"from": p[3].account})
    travel_to(int(w.exchange.roundInfo(rid)[5]) + 1)
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    assert_events(
        tx, ("RoundAborted", {"roundId": rid, "reason": Abort.MISSING_VERDICT, "culprits": [p[2].address]})
    )


def test_no_fused_commitment_while_a_complaint_is_judged(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    with rejects("RoundComplaintPending", rid, p[0].address, p[1].address, world=w):
        w.fuse(rid, p[2])


def test_the_key_table_binds_the_recipient_round_and_contract(world4):
    """The commitment the contract checks is keccak(abi.encode(tag, chainid, exchange,
    roundId, sender, recipient, key)); the key committed for another recipient does not pass."""
    w = world4
    p = w.providers
    rid = fusing_round(w)
    tag = keccak(b"enclave-share/posting-key/v1")
    key = w.posting_key(rid, p[1].address, p[0].address)
    from brownie import chain

    expected = keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "uint256", "address", "address", "bytes32"],
            [tag, chain.id, w.exchange.address, rid, p[1].address, p[0].address, key],
        )
    )
    assert w.key_table(rid, p[1].address)[0] == expected
    other = w.posting_key(rid, p[1].address, p[2].address)
    tx = w.complain(rid, p[0], p[1], key=other)
    assert tx.events["MemberExcluded"][0]["reason"] == Exclusion.KEY_MISMATCH


# ------------------------------------------------------------------ complain: refusals


def test_complaint_while_posting(world4):
    w = world4
    p = w.providers
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    w.post(rid, p[1])
    with rejects("RoundUnexpectedState", rid, RoundState.POSTING, FUSING, world=w):
        w.complain(rid, p[0], p[1])


def test_complaint_on_unknown_round(world4):
    p = world4.providers
    with rejects("RoundUnexpectedState", 9, RoundState.NONE, FUSING, world=world4):
        world4.exchange.complain(9, p[1].address, ZERO32, [], {"from": p[0].account})


@pytest.mark.parametrize("who", ["outsider", "gateway", "operator"])
def test_complaint_by_non_participant(world4, who):
    w = world4
    rid = fusing_round(w)
    caller = {"outsider": accounts[3], "gateway": w.gateways[0].account, "operator": w.providers[0].operator}[
        who
    ]
    sender = w.providers[1]
    with rejects("RoundNotParticipant", rid, caller, world=w):
        w.exchange.complain(rid, sender.address, ZERO32, w.key_table(rid, sender.address), {"from": caller})


def test_complaint_by_revoked_participant(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.registry.revoke(p[0].address, {"from": w.governor})
    with rejects("RoundNotAttested", p[0].address, world=w):
        w.complain(rid, p[0], p[1])


def test_complaint_about_oneself(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    with rejects("RoundSelfComplaint", rid, p[0].address, world=w):
        w.exchange.complain(rid, p[0].address, ZERO32, w.key_table(rid, p[0].address), {"from": p[0].account})


def test_complaint_about_a_non_participant(world4):
    w = world4
    rid = fusing_round(w)
    with rejects("RoundNotParticipant", rid, accounts[3].address, world=w):
        w.exchange.complain(rid, accounts[3].address, ZERO32, [], {"from": w.providers[0].account})


def test_complaint_about_a_non_contributor(world4):
    w = world4
    p = w.providers
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    w.post_all(rid, p[1:])
    travel_to(int(w.exchange.roundInfo(rid)[4]) + 1)
    w.exchange.closePosting(rid, {"from": accounts[3]})
    with rejects("RoundNothingPosted", rid, p[0].address, world=w):
        w.exchange.complain(rid, p[0].address, ZERO32, [], {"from": p[1].account})


def test_excluded_members_neither_accuse_nor_are_accused(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    w.judge(rid, [p[2], p[3]], False)  # the accuser p[0] is excluded
    with rejects("RoundSenderExcluded", rid, p[0].address, world=w):
        w.complain(rid, p[0], p[2])
    with rejects("RoundSenderExcluded", rid, p[0].address, world=w):
        w.complain(rid, p[1], p[0])


def test_one_complaint_at_a_time(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    with rejects("RoundComplaintPending", rid, p[0].address, p[1].address, world=w):
        w.complain(rid, p[2], p[3])


def test_complaint_with_another_key_table(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    forged = [keccak(b"forged")] * 4
    posted = keccak(b"".join(w.key_table(rid, p[1].address)))
    given = keccak(b"".join(forged))
    with rejects("RoundKeyTableMismatch", rid, p[1].address, posted, given, world=w):
        w.exchange.complain(rid, p[1].address, ZERO32, forged, {"from": p[0].account})


# ------------------------------------------------------------------ judgeComplaint: refusals


def test_judging_without_a_complaint(world4):
    w = world4
    rid = fusing_round(w)
    with rejects("RoundNoComplaint", rid, world=w):
        w.exchange.judgeComplaint(rid, True, {"from": w.providers[0].account})


@pytest.mark.parametrize("who", [0, 1])
def test_accuser_and_sender_are_not_judges(world4, who):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    with rejects("RoundNotJudge", rid, p[who].address, world=w):
        w.exchange.judgeComplaint(rid, who == 0, {"from": p[who].account})


def test_non_contributor_is_not_a_judge(world5):
    w = world5
    p = w.providers
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2)
    w.post_all(rid, p[:4])
    travel_to(int(w.exchange.roundInfo(rid)[4]) + 1)
    w.exchange.closePosting(rid, {"from": accounts[3]})
    w.complain(rid, p[0], p[1])
    with rejects("RoundNotJudge", rid, p[4].address, world=w):
        w.exchange.judgeComplaint(rid, True, {"from": p[4].account})


def test_judging_twice(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    w.exchange.judgeComplaint(rid, True, {"from": p[2].account})
    with rejects("RoundAlreadyJudged", rid, p[2].address, world=w):
        w.exchange.judgeComplaint(rid, False, {"from": p[2].account})


@pytest.mark.parametrize("who", ["outsider", "gateway"])
def test_judging_by_non_participant(world4, who):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    caller = accounts[3] if who == "outsider" else w.gateways[0].account
    with rejects("RoundNotParticipant", rid, caller, world=w):
        w.exchange.judgeComplaint(rid, True, {"from": caller})


def test_judging_after_the_deadline(world4):
    w = world4
    p = w.providers
    rid = fusing_round(w)
    w.complain(rid, p[0], p[1])
    travel_to(int(w.exchange.roundInfo(rid)[5]) + 1)
    with rejects("RoundUnexpectedState", rid, RoundState.EXPIRED, FUSING, world=w):
        w.exchange.judgeComplaint(rid, True, {"from": p[2].account})


# ------------------------------------------------------------------ blame after completion


def test_a_holder_and_the_gateway_record_blame_with_evidence(world):
    w = world
    p = w.providers
    rid = w.completed_round(scheme=SHAMIR, threshold=2, kind=INTERMEDIATE)
    evidence = keccak(b"per-reveal key")
    tx = w.exchange.reportMisbehaviour(
        rid, p[1].address, Blame.REVEAL_MISMATCH, evidence, {"from": p[0].account}
    )
    assert_events(
        tx,
        (
            "MemberBlamed",
            {
                "roundId": rid,
                "member": p[1].address,
                "reporter": p[0].address,
                "reason": Blame.REVEAL_MISMATCH,
                "evidence": evidence,
            },
        ),
    )
    gateway = w.gateways[0]
    request = (7).to_bytes(32, "big")
    tx = w.exchange.reportMisbehaviour(
        rid, p[2].address, Blame.WRONG_PARTIAL, request, {"from": gateway.account}
    )
    assert tx.events["MemberBlamed"]["reporter"] == gateway.address
    # The same blame with other evidence (another request) is another event.
    other = (8).to_bytes(32, "big")
    assert (
        w.exchange.reportMisbehaviour(
            rid, p[2].address, Blame.WRONG_PARTIAL, other, {"from": gateway.account}
        ).status
        == 1
    )
    with rejects("RoundAlreadyBlamed", rid, gateway.address, p[2].address, world=w):
        w.exchange.reportMisbehaviour(
            rid, p[2].address, Blame.WRONG_PARTIAL, request, {"from": gateway.account}
        )


def test_blame_needs_a_reason(world):
    w = world
    rid = w.completed_round()
    with rejects("RoundInvalidBlame", rid, Blame.NONE, world=w):
        w.exchange.reportMisbehaviour(
            rid, w.providers[1].address, Blame.NONE, b"", {"from": w.providers[0].account}
        )


def test_blame_names_a_holder(world):
    w = world
    rid = w.completed_round()
    for member in (accounts[3].address, w.gateways[0].address):
        with rejects("RoundNotHolder", rid, member, world=w):
            w.exchange.reportMisbehaviour(
                rid, member, Blame.REVEAL_MISMATCH, b"", {"from": w.providers[0].account}
            )


def test_blame_only_after_completion(world):
    w = world
    rid = fusing_round(w, scheme=ADDITIVE)
    with rejects("RoundUnexpectedState", rid, RoundState.FUSING, state_bit(RoundState.COMPLETED), world=w):
        w.exchange.reportMisbehaviour(
            rid, w.providers[1].address, Blame.REVEAL_MISMATCH, b"", {"from": w.providers[0].account}
        )


@pytest.mark.parametrize("who", ["outsider", "operator", "governor"])
def test_blame_by_non_member(world, who):
    w = world
    rid = w.completed_round()
    caller = {"outsider": accounts[3], "operator": w.providers[0].operator, "governor": w.governor}[who]
    with rejects("RoundNotParticipant", rid, caller, world=w):
        w.exchange.reportMisbehaviour(
            rid, w.providers[1].address, Blame.REVEAL_MISMATCH, b"", {"from": caller}
        )


def test_blame_by_revoked_participant(world):
    w = world
    rid = w.completed_round()
    p = w.providers
    w.registry.revoke(p[0].address, {"from": w.governor})
    with rejects("RoundNotAttested", p[0].address, world=w):
        w.exchange.reportMisbehaviour(rid, p[1].address, Blame.REVEAL_MISMATCH, b"", {"from": p[0].account})
