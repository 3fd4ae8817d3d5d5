"""The pure side of a recovery (``protocol.rounds``): which keys each holder reveals and
the public correction they add up to, checked against a whole additive round split and
fused here; and a holder without a pairwise key retries instead of crashing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from enclave_agent.crypto import shares
from enclave_agent.crypto.field import RING64
from enclave_agent.errors import ProtocolError
from enclave_agent.protocol.recovery import Recovery
from enclave_agent.protocol.rounds import RoundDoc, recovery_correction, recovery_pairs

PEOPLE = [f"0x{i:040x}" for i in range(1, 6)]
N, D = 5, 6


def doc(absent: int, contributed: int) -> RoundDoc:
    everyone = 2**N - 1
    return RoundDoc(
        round_id=3,
        epoch=1,
        tag="v",
        participants=PEOPLE,
        my_index=0,
        length=D,
        frac_bits=16,
        scheme="additive",
        encoding="dense",
        modulus=RING64,
        threshold=3,
        posting_deadline=0,
        deadline=0,
        output_kind="statistic",
        min_contributors=0,
        floor=3,
        contributors=contributed & ~absent,  # narrowed at completion
        holders=everyone & ~absent,
        absent=absent,
        fusion_contributors=contributed,
    )


@pytest.mark.parametrize(
    ("absent", "contributed"),
    [(0b10000, 0b11111), (0b10000, 0b01111), (0b10010, 0b11111), (0b10010, 0b01101)],
)
def test_the_correction_turns_the_holders_shares_into_the_sum_of_their_inputs(absent, contributed):
    rng = np.random.default_rng(absent * 64 + contributed)
    inputs = {p: rng.integers(0, 2**63, D, dtype=np.uint64) for p in PEOPLE}
    split = {}  # sender -> its messages by recipient index, and its kept share
    for i, p in enumerate(PEOPLE):
        if contributed >> i & 1:
            s = shares.split_vector(
                inputs[p],
                scheme="additive",
                encoding="dense",
                n=N,
                t=N,
                own_index=i,
                modulus=RING64,
                context=b"c",
            )
            split[p] = s
    d = doc(absent, contributed)
    holders = d.mask_members(d.holders)
    senders = [p for p in PEOPLE if p in split]
    fused = []
    for h in holders:  # each holder fuses what the contributors sent it (and its kept share)
        j = PEOPLE.index(h)
        parts = [
            split[s].kept
            if s == h
            else shares.open_message(split[s].messages[j], length=D, modulus=RING64, context=b"c")
            for s in senders
        ]
        fused.append(shares.fuse(parts, RING64))
    recovered = {}
    for h in holders:
        sent_to, received_from = recovery_pairs(d, h)
        assert sent_to == ([a for a in d.mask_members(absent)] if h in senders else [])
        assert received_from == [a for a in d.mask_members(absent) if a in senders]
        for a in sent_to:
            recovered[(h, a)] = shares.open_message(
                split[h].messages[PEOPLE.index(a)], length=D, modulus=RING64, context=b"c"
            )
        for a in received_from:
            recovered[(a, h)] = shares.open_message(
                split[a].messages[PEOPLE.index(h)], length=D, modulus=RING64, context=b"c"
            )
    total = shares.fuse([*fused, recovery_correction(d, recovered)], RING64)
    expected = shares.fuse([inputs[h] for h in holders if h in senders], RING64)
    assert np.array_equal(total, expected)
    assert not np.array_equal(shares.fuse(fused, RING64), expected)  # without it the sum is wrong
    pair = next(iter(recovered))
    with pytest.raises(ProtocolError, match="no recovered share"):
        recovery_correction(d, {k: v for k, v in recovered.items() if k != pair})


def test_a_holder_without_a_pairwise_key_retries_and_sends_nothing():
    d = doc(0b10000, 0b11111)
    d.owing = d.holders
    sent = []
    agent = SimpleNamespace(
        address=PEOPLE[0],
        epoch_keys=lambda epoch: {p: b"k" * 32 for p in PEOPLE[1:4]},  # none with the absent one
        contracts=SimpleNamespace(
            exchange=SimpleNamespace(functions=SimpleNamespace(recoverAbsent=lambda *a: sent.append(a)))
        ),
    )
    with pytest.raises(ProtocolError, match=f"no pairwise key of epoch 1 with {PEOPLE[4]}"):
        Recovery(agent).reveal(d)  # type: ignore[arg-type]
    assert sent == [] and not d.recovery_sent
