"""The pure steps behind complaints, verdicts and robust reveals (no chain): a posting's
key table commits to its message keys, judges agree on a verdict from public data
only, a reveal opens its fused commitment, and reconstruction uses every share."""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils.address import to_checksum_address

from enclave_agent.crypto import aead, posting
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.crypto.reed_solomon import UncorrectableSharesError
from enclave_agent.crypto.sharing import shamir_split
from enclave_agent.errors import ProtocolError
from enclave_agent.protocol import reveal
from enclave_agent.protocol.rounds import (
    RoundContext,
    RoundDoc,
    build_posting,
    message_key,
    open_posting,
    sender_at_fault,
)

CTX = RoundContext(31337, "0x" + "ee" * 20)
PEOPLE = [f"0x{i:040x}" for i in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5)]
PEOPLE = [to_checksum_address(p) for p in PEOPLE]
PAIRWISE = {(a, b): bytes([i * 16 + j]) * 32 for i, a in enumerate(PEOPLE) for j, b in enumerate(PEOPLE)}


def pair(a: str, b: str) -> bytes:
    return PAIRWISE[tuple(sorted((a, b)))]  # type: ignore[index]


def doc_for(me: str, scheme: str = "shamir", n: int = 5, t: int = 2, length: int = 4) -> RoundDoc:
    return RoundDoc(
        round_id=9,
        epoch=1,
        tag="v",
        participants=PEOPLE[:n],
        my_index=PEOPLE.index(me),
        length=length,
        frac_bits=16,
        scheme=scheme,
        encoding="dense",
        modulus=PRIME61 if scheme == "shamir" else RING64,
        threshold=t if scheme == "shamir" else n,
        posting_deadline=0,
        deadline=0,
        output_kind="intermediate",
        min_contributors=0,
        floor=3,
        contributors=2**n - 1,
        holders=2**n - 1,
    )


def keys_of(me: str, n: int = 5) -> dict[str, bytes]:
    return {p: pair(me, p) for p in PEOPLE[:n] if p != me}


def test_the_key_table_commits_to_each_recipients_message_key() -> None:
    sender = PEOPLE[0]
    doc = doc_for(sender)
    built = build_posting(doc, np.array([1.5, -2.0, 3.0, 0.25]), keys_of(sender), CTX)
    assert built.key_table[0] == bytes(32)
    payload = b"".join(built.chunks)
    for j, recipient in enumerate(PEOPLE[1:5], start=1):
        key = message_key(pair(sender, recipient), CTX, 9, sender, recipient)
        assert built.key_table[j] == posting.key_commitment(
            CTX.chain_id, CTX.exchange, 9, sender, recipient, key
        )
        # The recipient opens it with the pairwise key; a judge with the revealed key.
        share = open_posting(doc_for(recipient), sender, payload, recipient, pair(sender, recipient), CTX)
        assert share.shape == (4,)
        assert not sender_at_fault(doc_for(PEOPLE[4]), sender, recipient, payload, key, CTX)


def test_judges_find_a_garbage_posting_at_fault_and_a_false_complaint_false() -> None:
    sender, accuser, judge = PEOPLE[0], PEOPLE[1], PEOPLE[2]
    built = build_posting(doc_for(sender), np.zeros(4), keys_of(sender), CTX)
    key = message_key(pair(sender, accuser), CTX, 9, sender, accuser)
    honest = b"".join(built.chunks)
    entries = posting.decode_entries(honest)
    flipped = [(r, ct[:-1] + bytes([ct[-1] ^ 1]) if r == accuser else ct) for r, ct in entries]
    garbage = posting.encode_entries(flipped)
    missing = posting.encode_entries([(r, ct) for r, ct in entries if r != accuser])
    junk_plaintext = posting.encode_entries(
        [
            (r, aead.encrypt(key, b"\x09junk", aead.share_ad(CTX.chain_id, CTX.exchange, 9, sender, r)))
            if r == accuser
            else (r, ct)
            for r, ct in entries
        ]
    )
    judge_doc = doc_for(judge)
    assert not sender_at_fault(judge_doc, sender, accuser, honest, key, CTX)  # the complaint is false
    for bad in (garbage, missing, junk_plaintext):
        assert sender_at_fault(judge_doc, sender, accuser, bad, key, CTX)
    # Every judge reaches the same verdict: it depends on public data and the revealed key only.
    assert {sender_at_fault(doc_for(p), sender, accuser, garbage, key, CTX) for p in PEOPLE[2:]} == {True}


def test_a_revealed_key_opens_that_entry_only() -> None:
    sender, accuser, other = PEOPLE[0], PEOPLE[1], PEOPLE[2]
    built = build_posting(doc_for(sender), np.ones(4), keys_of(sender), CTX)
    payload = b"".join(built.chunks)
    key = message_key(pair(sender, accuser), CTX, 9, sender, accuser)
    assert sender_at_fault(doc_for(PEOPLE[3]), sender, other, payload, key, CTX)  # not other's key


# ------------------------------------------------------------------ reveals


def test_a_reveal_opens_the_fused_commitment_for_holders_only() -> None:
    holder = PEOPLE[0]
    doc = doc_for(holder)
    doc.holders = 0b01111  # PEOPLE[4] is not a holder
    fused = np.arange(4, dtype=np.uint64)
    salt = bytes(range(32))
    payload = reveal.build_reveal(doc, fused, salt, keys_of(holder), CTX)
    recipients = [r for r, _ in posting.decode_entries(payload)]
    assert recipients == PEOPLE[1:4]
    commitment = reveal.fused_commitment(salt, fused)
    for r in recipients:
        key = reveal.reveal_key(pair(holder, r), CTX, 9, holder, r)
        opened = reveal.open_reveal(doc_for(r), holder, payload, r, key, CTX)
        assert reveal.matches_commitment(opened, commitment)
        assert not reveal.matches_commitment(reveal.OpenedReveal(opened.salt, opened.share + 1), commitment)
    with pytest.raises(ProtocolError, match="nothing for"):
        reveal.open_reveal(doc, holder, payload, PEOPLE[4], bytes(32), CTX)
    with pytest.raises(ProtocolError, match="salt"):
        reveal.fused_commitment(b"short", fused)


def shamir_fused(n: int, t: int, d: int = 6) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    secret = np.arange(1, d + 1, dtype=np.uint64) * np.uint64(1 << 16)
    shares = shamir_split(secret, n, t)
    return secret, {PEOPLE[i]: shares[i] for i in range(n)}


def test_reconstruction_uses_every_share_and_names_an_off_polynomial_holder() -> None:
    secret, shares = shamir_fused(5, 2)
    doc = doc_for(PEOPLE[0])
    shares[PEOPLE[3]] = (shares[PEOPLE[3]] + np.uint64(99)) % np.uint64(PRIME61)
    result = reveal.reconstruct(doc, shares, final=True)
    assert result is not None
    assert np.array_equal(result.aggregate, secret) and result.wrong == (PEOPLE[3],)
    assert list(decode(result.aggregate, 16, PRIME61)) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_reconstruction_waits_for_every_holder_until_final() -> None:
    secret, shares = shamir_fused(5, 2)
    doc = doc_for(PEOPLE[0])
    some = {p: shares[p] for p in PEOPLE[:3]}
    assert reveal.reconstruct(doc, some, final=False) is None
    result = reveal.reconstruct(doc, some, final=True)
    assert result is not None and np.array_equal(result.aggregate, secret)
    assert reveal.reconstruct(doc, {PEOPLE[0]: shares[PEOPLE[0]]}, final=True) is None  # below t


def test_one_spare_share_detects_without_naming() -> None:
    _, shares = shamir_fused(3, 2)
    doc = doc_for(PEOPLE[0], n=3)
    shares[PEOPLE[1]] = (shares[PEOPLE[1]] + np.uint64(1)) % np.uint64(PRIME61)
    with pytest.raises(UncorrectableSharesError):
        reveal.reconstruct(doc, shares, final=True)


def test_additive_reconstruction_needs_every_holder() -> None:
    doc = doc_for(PEOPLE[0], scheme="additive", n=3)
    parts = {p: np.full(2, i + 1, dtype=np.uint64) for i, p in enumerate(PEOPLE[:3])}
    assert reveal.reconstruct(doc, dict(list(parts.items())[:2]), final=True) is None
    result = reveal.reconstruct(doc, parts, final=True)
    assert result is not None and result.aggregate.tolist() == [6, 6]
