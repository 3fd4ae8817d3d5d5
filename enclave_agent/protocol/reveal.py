"""Revealing an Intermediate round's aggregate to the participants' enclaves.

After such a round completes, every holder sends its fused share to each other
participant, encrypted under their pairwise key; each enclave reconstructs the
aggregate inside (all n shares for additive rounds, any t for Shamir). It is how
the joint scaling and the intermediate models of federated averaging reach the
enclaves without ever appearing in the clear.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from enclave_agent.crypto import aead, posting
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.crypto.sharing import combine_additive, shamir_reconstruct
from enclave_agent.errors import ProtocolError
from enclave_agent.protocol.rounds import RoundContext, RoundDoc


def reveal_ad(ctx: RoundContext, round_id: int, sender: str, recipient: str) -> bytes:
    return aead.share_ad(ctx.chain_id, ctx.exchange, round_id, sender, recipient, purpose="reveal")


def build_reveal(doc: RoundDoc, fused: np.ndarray, keys: Mapping[str, bytes], ctx: RoundContext) -> bytes:
    """My fused share, encrypted for every other participant."""
    if doc.my_index is None:
        raise ProtocolError(f"round {doc.round_id}: not a participant")
    me = doc.participants[doc.my_index]
    plaintext = fused.astype("<u8").tobytes()
    entries = [
        (p, aead.encrypt(keys[p], plaintext, reveal_ad(ctx, doc.round_id, me, p)))
        for p in doc.participants
        if p != me and p in keys
    ]
    return posting.encode_entries(entries)


def open_reveal(
    doc: RoundDoc, sender: str, payload: bytes, me: str, key: bytes, ctx: RoundContext
) -> np.ndarray:
    entries = dict(posting.decode_entries(payload))
    if me not in entries:
        raise ProtocolError(f"round {doc.round_id}: reveal of {sender} has nothing for {me}")
    raw = aead.decrypt(key, entries[me], reveal_ad(ctx, doc.round_id, sender, me))
    if len(raw) != 8 * doc.length:
        raise ProtocolError(f"round {doc.round_id}: reveal of {sender} has the wrong length")
    share = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    if doc.modulus != RING64 and bool((share >= np.uint64(doc.modulus)).any()):
        raise ProtocolError(f"round {doc.round_id}: reveal of {sender} is out of the field")
    return share


def reconstruct(doc: RoundDoc, shares: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The aggregate (elements) from holders' fused shares, or None if too few yet."""
    holders = [p for p in doc.mask_members(doc.holders) if p in shares]
    if doc.modulus == RING64:
        if len(holders) < doc.n or len(doc.mask_members(doc.holders)) < doc.n:
            return None
        return combine_additive([shares[p] for p in holders], RING64)
    if len(holders) < doc.threshold:
        return None
    points = {doc.index_of(p) + 1: shares[p] for p in holders[: doc.threshold]}
    return shamir_reconstruct(points, PRIME61)


def aggregate_values(doc: RoundDoc, elements: np.ndarray) -> np.ndarray:
    return decode(elements, doc.frac_bits, doc.modulus)
