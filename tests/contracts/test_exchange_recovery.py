"""ShareExchange: additive t-of-n rounds (threshold below n) survive dropouts.

Participants that hold no fused share at the deadline (never posted, never fused, or
excluded) are absent; each holder with an absent neighbour reveals the keys of its
ciphertexts to them and of theirs to it, each checked against the posted key tables,
and the round completes over the holders that contributed. The adversaries here are a
holder revealing keys it never committed to, in the wrong number or with the wrong
table, an absent member trying to come back, and a holder that stays silent."""

from __future__ import annotations

import pytest
from brownie import accounts
from helpers import (
    ADDITIVE,
    Abort,
    Exclusion,
    RoundState,
    bits,
    norm,
    rejects,
    state_bit,
    table_hash,
    travel_to,
)

ABSENT = 4  # the provider that drops out in most tests


def info(w, rid):
    spec, policy, t, epoch, pd, deadline, contributors, holders = norm(w.exchange.roundInfo(rid))
    return pd, deadline, contributors, holders


def tolerant(w, t=3, post=None, fuse=None):
    """A five-provider additive round of threshold `t`: `post` and `fuse` (indices,
    default all but ABSENT) do their part, then the deadline passes."""
    p = w.providers
    keep = [i for i in range(5) if i != ABSENT]
    rid, _ = w.open_round(scheme=ADDITIVE, threshold=t)
    w.post_all(rid, [p[i] for i in (keep if post is None else post)])
    pd, deadline, _, _ = info(w, rid)
    if w.exchange.state(rid) == RoundState.POSTING:
        travel_to(pd + 1)
        w.exchange.closePosting(rid, {"from": accounts[3]})
    w.fuse_all(rid, [p[i] for i in (keep if fuse is None else fuse)])
    travel_to(deadline + 1)
    return rid


def recovering(w):
    """A round everyone posted to and ABSENT never fused, recovering."""
    rid = tolerant(w, post=[0, 1, 2, 3, 4])
    w.exchange.finalize(rid, {"from": accounts[3]})
    assert w.exchange.state(rid) == RoundState.RECOVERING
    return rid


def recovery_keys(w, rid, holder, absent=(ABSENT,), posted=True, absent_posted=True):
    """What `holder` reveals for the absent participants (index order)."""
    p = w.providers
    h = p[holder].address
    sent = [w.posting_key(rid, h, p[a].address) for a in absent] if posted else []
    received = [w.posting_key(rid, p[a].address, h) for a in absent] if absent_posted else []
    tables = [w.key_table(rid, p[a].address) for a in absent] if absent_posted else []
    own = w.key_table(rid, h) if posted else []
    return sent, received, own, tables


def recover(w, rid, holder, **kw):
    sent, received, own, tables = recovery_keys(w, rid, holder, **kw)
    return w.exchange.recoverAbsent(rid, sent, received, own, tables, {"from": w.providers[holder].account})


def test_a_holder_that_did_not_fuse_is_recovered(world5):
    w = world5
    p = w.providers
    rid = tolerant(w, post=[0, 1, 2, 3, 4])
    _, deadline, _, _ = info(w, rid)
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    started = tx.events["RecoveryStarted"]
    assert started["absent"] == bits(ABSENT)
    assert started["owing"] == bits(0, 1, 2, 3)  # every pair: every holder owes keys
    assert started["recoveryDeadline"] == tx.timestamp + (deadline - info(w, rid)[0])
    assert w.exchange.state(rid) == RoundState.RECOVERING
    assert not w.exchange.isHolder(rid, p[0].address)  # nothing is served until it completes
    for h in range(3):
        tx = recover(w, rid, h)
        revealed = tx.events["RecoveryKeysRevealed"]
        assert norm(revealed["sentKeys"]) == norm([w.posting_key(rid, p[h].address, p[ABSENT].address)])
        assert norm(revealed["receivedKeys"]) == norm([w.posting_key(rid, p[ABSENT].address, p[h].address)])
        assert w.exchange.state(rid) == RoundState.RECOVERING
    assert norm(w.exchange.recoveryInfo(rid))[1:] == (bits(0, 1, 2, 3), bits(0, 1, 2))
    tx = recover(w, rid, 3)
    assert tx.events["RoundCompleted"]["contributors"] == bits(0, 1, 2, 3)  # the absent input is out
    assert tx.events["RoundCompleted"]["holders"] == bits(0, 1, 2, 3)
    assert w.exchange.state(rid) == RoundState.COMPLETED
    assert info(w, rid)[2] == bits(0, 1, 2, 3)
    assert w.exchange.isHolder(rid, p[0].address) and not w.exchange.isHolder(rid, p[ABSENT].address)


def test_a_participant_that_never_posted_is_owed_only_the_holders_keys(world5):
    w = world5
    rid = tolerant(w)
    assert info(w, rid)[2] == bits(0, 1, 2, 3)
    w.exchange.finalize(rid, {"from": accounts[3]})
    with rejects("RoundRecoveryKeyCount", rid, w.providers[0].address, 1, 0, world=w):
        recover(w, rid, 0)  # keys for ciphertexts the absent one never posted
    for h in range(4):
        tx = recover(w, rid, h, absent_posted=False)
    assert tx.events["RoundCompleted"]["contributors"] == bits(0, 1, 2, 3)


def test_a_non_poster_that_fuses_holds_a_share_and_nothing_is_recovered(world5):
    """It received the contributors' shares: a holder without an input of its own."""
    w = world5
    p = w.providers
    rid, _ = w.open_round(scheme=ADDITIVE, threshold=3)
    w.post_all(rid, p[:4])
    travel_to(info(w, rid)[0] + 1)
    w.exchange.closePosting(rid, {"from": accounts[3]})
    tx = w.fuse_all(rid)[-1]
    assert tx.events["RoundCompleted"]["contributors"] == bits(0, 1, 2, 3)
    assert tx.events["RoundCompleted"]["holders"] == bits(0, 1, 2, 3, 4)
    assert "RecoveryStarted" not in tx.events


@pytest.mark.parametrize("t", [3, 4])
def test_a_sparse_mask_is_refused_below_n(world5, t):
    """A holder whose k neighbours were all absent would have its input public once
    their shares are recovered: sparse masks are for n-of-n rounds."""
    w = world5
    with rejects("RoundInvalidMaskDegree", 2, ADDITIVE, world=w):
        w.open_round(scheme=ADDITIVE, threshold=t, mask_degree=2)


@pytest.mark.parametrize("which", ["sent", "received"])
def test_a_key_the_sender_never_committed_to_is_refused(world5, which):
    w = world5
    p = w.providers
    rid = recovering(w)
    sent, received, own, tables = recovery_keys(w, rid, 1)
    forged = b"\x07" * 32
    if which == "sent":
        sent, culprit = [forged], (p[1].address, p[ABSENT].address)
    else:
        received, culprit = [forged], (p[ABSENT].address, p[1].address)
    with rejects("RoundRecoveryKeyMismatch", rid, *culprit, world=w):
        w.exchange.recoverAbsent(rid, sent, received, own, tables, {"from": p[1].account})


def test_key_tables_must_be_the_posted_ones(world5):
    w = world5
    p = w.providers
    rid = recovering(w)
    sent, received, own, tables = recovery_keys(w, rid, 1)
    other = w.key_table(rid, p[2].address)  # a real table, of the wrong sender
    for bad_own, bad_tables, sender in ((other, tables, p[1]), (own, [other], p[ABSENT])):
        posted = w.exchange.keyTableHash(rid, sender.address)
        with rejects("RoundKeyTableMismatch", rid, sender.address, posted, table_hash(other), world=w):
            w.exchange.recoverAbsent(rid, sent, received, bad_own, bad_tables, {"from": p[1].account})


def test_wrong_numbers_of_keys_are_refused(world5):
    w = world5
    p = w.providers
    rid = recovering(w)
    sent, received, own, tables = recovery_keys(w, rid, 0)
    for args in ((sent * 2, received, own, tables), (sent, [], own, tables), (sent, received, own, [])):
        with rejects("RoundRecoveryKeyCount", rid, p[0].address, 1, 1, world=w):
            w.exchange.recoverAbsent(rid, *args, {"from": p[0].account})


def test_the_absent_cannot_come_back_or_reveal(world5):
    w = world5
    p = w.providers
    rid = recovering(w)
    expected = state_bit(RoundState.FUSING)
    with rejects("RoundUnexpectedState", rid, RoundState.RECOVERING, expected, world=w):
        w.fuse(rid, p[ABSENT])  # its fused share would unmask what the recovery made public
    with rejects("RoundNothingToRecover", rid, p[ABSENT].address, world=w):
        w.exchange.recoverAbsent(rid, [], [], [], [], {"from": p[ABSENT].account})
    with rejects("RoundNotParticipant", rid, accounts[3].address, world=w):
        w.exchange.recoverAbsent(rid, [], [], [], [], {"from": accounts[3]})
    recover(w, rid, 0)
    with rejects("RoundAlreadyRecovered", rid, p[0].address, world=w):
        recover(w, rid, 0)


def test_a_silent_holder_aborts_the_round_at_the_recovery_deadline(world5):
    w = world5
    p = w.providers
    rid = tolerant(w)
    w.exchange.finalize(rid, {"from": accounts[3]})
    for h in (0, 2):
        recover(w, rid, h, absent_posted=False)
    until = norm(w.exchange.recoveryInfo(rid))[0]
    travel_to(until)
    assert w.exchange.state(rid) == RoundState.RECOVERING
    travel_to(until + 1)
    assert w.exchange.state(rid) == RoundState.EXPIRED
    with rejects("RoundUnexpectedState", rid, RoundState.EXPIRED, state_bit(RoundState.RECOVERING), world=w):
        recover(w, rid, 1, absent_posted=False)
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    assert tx.events["RoundAborted"]["reason"] == Abort.MISSING_RECOVERY
    assert tx.events["RoundAborted"]["culprits"] == [p[1].address, p[3].address]


def test_too_few_contributing_holders_abort_as_before(world5):
    w = world5
    rid = tolerant(w, t=4, fuse=[0, 1, 2])  # 3 contributing holders, floor 4
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    assert tx.events["RoundAborted"]["reason"] == Abort.MISSING_FUSION
    rid = tolerant(w, t=4, post=[0, 1, 2], fuse=[])  # posting below the floor
    assert w.exchange.state(rid) == RoundState.ABORTED


def test_an_n_of_n_round_still_aborts_on_a_dropout(world5):
    w = world5
    rid = tolerant(w, t=5, post=[0, 1, 2, 3, 4])
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    assert tx.events["RoundAborted"]["reason"] == Abort.MISSING_FUSION


def test_an_excluded_sender_is_recovered_once_the_others_fused(world5):
    """A complaint upheld in a t-of-n round excludes the sender without aborting; once every
    other participant fused again, recovery starts at once (no waiting for the deadline)."""
    w = world5
    p = w.providers
    rid, _ = w.open_round(scheme=ADDITIVE, threshold=3)
    w.post_all(rid)
    w.complain(rid, p[0], p[ABSENT])
    tx = w.judge(rid, p[1:4], True)[-1]
    assert tx.events["MemberExcluded"]["reason"] == Exclusion.INVALID_SHARE
    assert w.exchange.state(rid) == RoundState.FUSING
    tx = w.fuse_all(rid, p[:4])[-1]
    assert tx.events["RecoveryStarted"]["absent"] == bits(ABSENT)
    for h in range(4):  # it is no contributor any more: only the holders' own keys
        tx = recover(w, rid, h, absent_posted=False)
    assert tx.events["RoundCompleted"]["contributors"] == bits(0, 1, 2, 3)


def test_the_recovery_window_is_at_least_a_minute(world5):
    w = world5
    p = w.providers
    rid, _ = w.open_round(scheme=ADDITIVE, threshold=3, posting=100, total=130)  # a 30 s fusing window
    w.post_all(rid, p[:4])
    travel_to(info(w, rid)[0] + 1)
    w.exchange.closePosting(rid, {"from": accounts[3]})
    w.fuse_all(rid, p[:4])
    travel_to(info(w, rid)[1] + 1)
    tx = w.exchange.finalize(rid, {"from": accounts[3]})
    assert tx.events["RecoveryStarted"]["recoveryDeadline"] == tx.timestamp + 60
