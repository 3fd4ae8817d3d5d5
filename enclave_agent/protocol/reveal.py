"""Revealing an Intermediate round's aggregate to the holders' enclaves.

After such a round completes, every holder opens its fused commitment to the other
holders: it sends ``salt || fused share``, encrypted for each of them under the
message key of that reveal, and each recipient checks it against the commitment
``keccak(salt || share)`` the holder posted on chain before the round completed.
One commitment for every recipient makes equivocation visible: a holder that sends
different shares to different recipients, or a share other than the one it
committed to, fails the check at some recipient, which blames it on chain with the
message key as evidence (anyone can then decrypt that one ciphertext and redo the
check). Non-holders (excluded or silent members) get nothing.

Each enclave then reconstructs from every share that passed, inside: every holder's
for additive rounds (all n, or the holders of a recovered t-of-n round, plus the
recovery's public correction); for Shamir rounds Reed-Solomon decoding checks that
the shares lie on one polynomial of degree t - 1 and, with n >= t + 2e, corrects e wrong ones and
names their holders (``crypto.reed_solomon``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from eth_utils.crypto import keccak

from enclave_agent.crypto import aead, posting
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.crypto.reed_solomon import robust_reconstruct
from enclave_agent.crypto.sharing import combine_additive
from enclave_agent.errors import ProtocolError
from enclave_agent.protocol.rounds import RoundContext, RoundDoc

SALT_BYTES = 32


def reveal_ad(ctx: RoundContext, round_id: int, sender: str, recipient: str) -> bytes:
    return aead.share_ad(ctx.chain_id, ctx.exchange, round_id, sender, recipient, purpose="reveal")


def reveal_key(pairwise: bytes, ctx: RoundContext, round_id: int, holder: str, recipient: str) -> bytes:
    """The message key of ``holder``'s reveal to ``recipient``: the evidence of a blame."""
    return aead.derive_message_key(pairwise, reveal_ad(ctx, round_id, holder, recipient))


def fused_commitment(salt: bytes, fused: np.ndarray) -> bytes:
    """The commitment a member posts with ``postFused``: keccak(salt || share words)."""
    if len(salt) != SALT_BYTES:
        raise ProtocolError(f"a fused commitment's salt is {SALT_BYTES} bytes")
    return keccak(bytes(salt) + np.ascontiguousarray(fused, dtype="<u8").tobytes())


def build_reveal(
    doc: RoundDoc, fused: np.ndarray, salt: bytes, keys: Mapping[str, bytes], ctx: RoundContext
) -> bytes:
    """``salt || fused share``, encrypted for every other holder under its message key."""
    if doc.my_index is None:
        raise ProtocolError(f"round {doc.round_id}: not a participant")
    me = doc.participants[doc.my_index]
    plaintext = bytes(salt) + fused.astype("<u8").tobytes()
    entries = []
    for holder in doc.mask_members(doc.holders):
        if holder == me:
            continue
        if holder not in keys:
            raise ProtocolError(f"round {doc.round_id}: no pairwise key with holder {holder}")
        key = reveal_key(keys[holder], ctx, doc.round_id, me, holder)
        entries.append((holder, aead.encrypt(key, plaintext, reveal_ad(ctx, doc.round_id, me, holder))))
    return posting.encode_entries(entries)


@dataclass(frozen=True, eq=False)
class OpenedReveal:
    salt: bytes
    share: np.ndarray


def open_reveal(
    doc: RoundDoc, holder: str, payload: bytes, recipient: str, key: bytes, ctx: RoundContext
) -> OpenedReveal:
    """Open ``holder``'s reveal for ``recipient`` with its message key; ProtocolError or
    DecryptionError when it is missing, unauthentic or malformed."""
    ciphertext = posting.find_entry(payload, recipient)
    if ciphertext is None:
        raise ProtocolError(f"round {doc.round_id}: reveal of {holder} has nothing for {recipient}")
    raw = aead.decrypt(key, ciphertext, reveal_ad(ctx, doc.round_id, holder, recipient))
    if len(raw) != SALT_BYTES + 8 * doc.length:
        raise ProtocolError(f"round {doc.round_id}: reveal of {holder} has the wrong length")
    share = np.frombuffer(raw, dtype="<u8", offset=SALT_BYTES).astype(np.uint64)
    if doc.modulus != RING64 and bool((share >= np.uint64(doc.modulus)).any()):
        raise ProtocolError(f"round {doc.round_id}: reveal of {holder} is out of the field")
    return OpenedReveal(raw[:SALT_BYTES], share)


def matches_commitment(opened: OpenedReveal, commitment: bytes) -> bool:
    return fused_commitment(opened.salt, opened.share) == bytes(commitment)


@dataclass(frozen=True, eq=False)
class Reconstruction:
    aggregate: np.ndarray  # elements
    wrong: tuple[str, ...]  # holders whose (committed) share is off the polynomial


def reconstruct(doc: RoundDoc, shares: Mapping[str, np.ndarray], *, final: bool) -> Reconstruction | None:
    """The aggregate from every holder's checked share, or None while more may come.

    ``final``: no more reveals are expected (every holder's arrived or was refused, or
    the wait is over). Additive rounds need every holder's share. Shamir rounds use
    all shares received; raises ``UncorrectableSharesError`` when they are
    inconsistent beyond what can be corrected."""
    holders = [p for p in doc.mask_members(doc.holders) if p in shares]
    if doc.modulus == RING64:
        if len(holders) < len(doc.mask_members(doc.holders)):
            return None
        return Reconstruction(combine_additive([shares[p] for p in holders], RING64), ())
    if len(holders) < doc.threshold or (not final and len(holders) < len(doc.mask_members(doc.holders))):
        return None
    decoded = robust_reconstruct({doc.index_of(p) + 1: shares[p] for p in holders}, doc.threshold, PRIME61)
    return Reconstruction(decoded.secret, tuple(doc.participants[x - 1] for x in decoded.wrong))


def aggregate_values(doc: RoundDoc, elements: np.ndarray) -> np.ndarray:
    return decode(elements, doc.frac_bits, doc.modulus)
