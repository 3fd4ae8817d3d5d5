"""One share-exchange round from a participant's point of view: the persisted
round document and the pure steps (build my posting, open a sender's posting,
fuse). Chain I/O and sealing live in the agent; this module only computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enclave_agent.crypto import aead, fixed_point, mask_graph, posting, shares
from enclave_agent.crypto import field as ring
from enclave_agent.errors import CryptoError, FixedPointRangeError, ProtocolError
from enclave_agent.protocol import stages
from enclave_agent.protocol.records import Record


def _get(obj: Any, name: str, index: int) -> Any:
    """A field of a decoded Solidity struct (web3 gives dicts or tuples)."""
    if isinstance(obj, Mapping):
        return obj[name]
    return obj[index]


@dataclass
class RoundDoc(Record):
    round_id: int
    epoch: int
    tag: str
    participants: list[str]
    my_index: int | None
    length: int
    frac_bits: int
    scheme: str
    encoding: str
    modulus: int
    threshold: int
    posting_deadline: int
    deadline: int
    output_kind: str
    min_contributors: int
    floor: int = 0  # minimum contributors (contract's roundGuards floor)
    mask_degree: int = 0  # additive: 0 shares with every pair, else with the k nearest (crypto.mask_graph)
    status: str = stages.ROUND_POSTING
    contributors: int = 0
    holders: int = 0
    excluded: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    fused_over: int = -1
    prepared: bool = False
    unable: str = ""
    abort_reason: str = ""
    culprits: list[str] = field(default_factory=list)
    revealed: bool = False  # Intermediate rounds: my fused share was sent to the others
    reveals: list[str] = field(default_factory=list)  # holders whose fused share I opened
    aggregate_ready: bool = False
    # The complaint being judged: [accuser, sender, hex key], and whether I voted.
    complaint: list[str] = field(default_factory=list)
    judged: bool = False
    # Every member's latest fused commitment: member -> [hex commitment, contributors].
    commitments: dict[str, list[Any]] = field(default_factory=dict)
    # Blame on chain: {"member", "reason", "by"} for exclusions and detections.
    exclusions: list[dict[str, str]] = field(default_factory=list)
    blames: list[dict[str, str]] = field(default_factory=list)
    bad_reveals: list[str] = field(default_factory=list)  # holders whose reveal failed its commitment
    completed_at: int = 0  # chain time this agent saw the round complete
    refused: str = ""  # why this agent refuses to fuse or reconstruct (below the floor, ...)
    # Additive t-of-n recovery: the participants without a fused share (bitmap), the
    # holders that owe recovery keys, the contributors the fused shares are over, the
    # deadline, and whether I revealed mine.
    absent: int = 0
    owing: int = 0
    fusion_contributors: int = 0
    recovery_deadline: int = 0
    recovery_sent: bool = False
    unreadable: list[list[str]] = field(default_factory=list)  # [sender, recipient, hex key] that failed

    @classmethod
    def from_event(cls, args: Mapping[str, Any], me: str) -> RoundDoc:
        spec, policy = args["spec"], args["policy"]
        participants = [str(p) for p in args["participants"]]
        raw_tag = bytes(args["inputTag"])
        return cls(
            round_id=int(args["roundId"]),
            epoch=int(args["epoch"]),
            tag=raw_tag.rstrip(b"\0").decode("utf-8", errors="replace"),
            participants=participants,
            my_index=participants.index(me) if me in participants else None,
            length=int(_get(spec, "length", 0)),
            frac_bits=int(_get(spec, "fracBits", 1)),
            scheme=stages.SCHEMES[int(_get(spec, "scheme", 2))],
            encoding=stages.ENCODINGS[int(_get(spec, "encoding", 3))],
            modulus=int(_get(spec, "modulus", 4)),
            threshold=int(args["threshold"]),
            posting_deadline=int(args["postingDeadline"]),
            deadline=int(args["deadline"]),
            output_kind=stages.OUTPUT_KINDS[int(_get(policy, "kind", 0))],
            min_contributors=int(_get(policy, "minContributors", 1)),
            floor=int(args["floor"]),
            mask_degree=int(_get(spec, "maskDegree", 5)),
        )

    @property
    def n(self) -> int:
        return len(self.participants)

    @property
    def is_final(self) -> bool:
        return self.status in stages.ROUND_FINAL

    @property
    def needs_reveal(self) -> bool:
        """A completed Intermediate round whose aggregate this enclave still lacks or owes."""
        return (
            self.status == stages.ROUND_COMPLETED
            and self.output_kind == "intermediate"
            and self.my_index is not None
            and not (self.revealed and self.aggregate_ready)
        )

    @property
    def me(self) -> str | None:
        return None if self.my_index is None else self.participants[self.my_index]

    def shares_with(self, a: str, b: str) -> bool:
        """Whether participants ``a`` and ``b`` exchange shares in this round (every pair
        unless the round has a sparse mask)."""
        return mask_graph.is_neighbour(self.index_of(a), self.index_of(b), self.n, self.mask_degree)

    def is_holder(self, address: str) -> bool:
        return address in self.participants and bool(self.holders >> self.index_of(address) & 1)

    def index_of(self, address: str) -> int:
        return self.participants.index(address)

    def mask_members(self, mask: int) -> list[str]:
        return [p for i, p in enumerate(self.participants) if mask >> i & 1]

    @property
    def fused_contributors(self) -> int:
        """The contributors the holders' fused shares (and commitments) are over: a
        recovery narrows ``contributors`` to the holders that contributed afterwards."""
        return self.fusion_contributors or self.contributors

    @property
    def first_holder(self) -> str | None:
        """The holder that adds a recovery's public correction to its share."""
        holders = self.mask_members(self.holders)
        return holders[0] if holders else None

    @property
    def contributor_count(self) -> int:
        return bin(self.contributors).count("1")

    @property
    def below_floor(self) -> bool:
        """Fewer contributors than the round's floor: no fusing, no reconstruction."""
        return self.contributor_count < max(self.floor, 3)


@dataclass(frozen=True)
class RoundContext:
    """What binds a round's ciphertexts to this chain and contract."""

    chain_id: int
    exchange: str


def share_ad(ctx: RoundContext, round_id: int, sender: str, recipient: str) -> bytes:
    return aead.share_ad(ctx.chain_id, ctx.exchange, round_id, sender, recipient)


def message_key(pairwise: bytes, ctx: RoundContext, round_id: int, sender: str, recipient: str) -> bytes:
    """The key of ``sender``'s share ciphertext for ``recipient`` in this round."""
    return aead.derive_message_key(pairwise, share_ad(ctx, round_id, sender, recipient))


@dataclass(frozen=True, eq=False)
class Posting:
    """What a participant posts: its kept share stays sealed, the rest goes on chain."""

    kept: np.ndarray
    chunks: list[bytes]
    commitment: bytes
    key_table: list[bytes]  # one key commitment per participant, zero for the sender and non-neighbours


def build_posting(doc: RoundDoc, values: np.ndarray, keys: Mapping[str, bytes], ctx: RoundContext) -> Posting:
    """Encode, split and encrypt my input, each share under its own message key."""
    if doc.my_index is None:
        raise ProtocolError(f"round {doc.round_id}: not a participant")
    if values.shape != (doc.length,):
        raise ProtocolError(
            f"round {doc.round_id}: input '{doc.tag}' has {values.size} values, "
            f"the round expects {doc.length}"
        )
    me = doc.participants[doc.my_index]
    try:  # every contribution within 1/n of the range: the sum of n cannot wrap
        secret = fixed_point.encode(values, doc.frac_bits, doc.modulus, headroom=doc.n)
    except FixedPointRangeError as exc:
        raise FixedPointRangeError(f"round {doc.round_id}: input '{doc.tag}': {exc}") from None
    split = shares.split_vector(
        secret,
        scheme=doc.scheme,
        encoding=doc.encoding,
        n=doc.n,
        t=doc.threshold,
        own_index=doc.my_index,
        modulus=doc.modulus,
        context=seed_context(ctx, doc.round_id, me),
        recipients=mask_graph.neighbours(doc.my_index, doc.n, doc.mask_degree),
    )
    entries = []
    table = [bytes(32)] * doc.n
    for j, message in sorted(split.messages.items()):
        recipient = doc.participants[j]
        key = message_key(keys[recipient], ctx, doc.round_id, me, recipient)
        entries.append((recipient, aead.encrypt(key, message, share_ad(ctx, doc.round_id, me, recipient))))
        table[j] = posting.key_commitment(ctx.chain_id, ctx.exchange, doc.round_id, me, recipient, key)
    chunks = posting.split_chunks(posting.encode_entries(entries))
    return Posting(split.kept, chunks, posting.chain_commitment(chunks), table)


def seed_context(ctx: RoundContext, round_id: int, sender: str) -> bytes:
    """Seed expansion is bound to the round and sender (the recipient is in the AD)."""
    return aead.share_ad(ctx.chain_id, ctx.exchange, round_id, sender, sender, purpose="seed")


def open_posting(
    doc: RoundDoc, sender: str, payload: bytes, me: str, pairwise: bytes, ctx: RoundContext
) -> np.ndarray:
    """Decrypt and expand the share `sender` posted for me. Raises DecryptionError
    or ProtocolError when the ciphertext is missing, tampered or malformed."""
    return share_of(doc, sender, read_posting(doc, sender, payload, me, pairwise, ctx), ctx)


def read_posting(
    doc: RoundDoc, sender: str, payload: bytes, me: str, pairwise: bytes, ctx: RoundContext
) -> bytes:
    """The checked message `sender` posted for me, not yet expanded (33 bytes for a
    seed: what a recipient keeps until it fuses). Raises as ``open_posting``."""
    return read_entry(doc, sender, payload, me, message_key(pairwise, ctx, doc.round_id, sender, me), ctx)


def read_entry(
    doc: RoundDoc, sender: str, payload: bytes, recipient: str, key: bytes, ctx: RoundContext
) -> bytes:
    """The message in `sender`'s posting for `recipient`, decrypted with its message key
    and checked."""
    ciphertext = posting.find_entry(payload, recipient)
    if ciphertext is None:
        raise ProtocolError(f"round {doc.round_id}: posting of {sender} has no share for {recipient}")
    plaintext = aead.decrypt(key, ciphertext, share_ad(ctx, doc.round_id, sender, recipient))
    shares.check_message(plaintext, length=doc.length, modulus=doc.modulus)
    return plaintext


def share_of(doc: RoundDoc, sender: str, message: bytes, ctx: RoundContext) -> np.ndarray:
    """The share a checked message from `sender` carries (a seed is expanded here)."""
    return shares.open_message(
        message, length=doc.length, modulus=doc.modulus, context=seed_context(ctx, doc.round_id, sender)
    )


def sender_at_fault(
    doc: RoundDoc, sender: str, accuser: str, payload: bytes, key: bytes, ctx: RoundContext
) -> bool:
    """A judge's verdict on a complaint whose revealed key the contract matched to the
    sender's key commitment: is the sender's ciphertext for the accuser missing,
    unauthentic or malformed under that key? (Pure: the same public inputs give every
    honest judge the same verdict.)"""
    try:
        read_entry(doc, sender, payload, accuser, key, ctx)
    except (CryptoError, ProtocolError):
        return True
    return False


def fuse(doc: RoundDoc, kept: np.ndarray | None, received: Mapping[str, np.ndarray]) -> np.ndarray:
    """My share of the aggregate over the round's contributors (those that share with me)."""
    me = doc.participants[doc.my_index] if doc.my_index is not None else ""
    parts: list[np.ndarray] = []
    for sender in doc.mask_members(doc.contributors):
        if sender != me and not doc.shares_with(sender, me):
            continue
        if sender == me:
            if kept is None:
                raise ProtocolError(f"round {doc.round_id}: my kept share is missing")
            parts.append(kept)
        elif sender in received:
            parts.append(received[sender])
        else:
            raise ProtocolError(f"round {doc.round_id}: no share from contributor {sender}")
    return shares.fuse(parts, doc.modulus)


def correction_key(round_id: int) -> str:
    """Where an agent keeps a recovered round's public correction (unsealed: it is
    computed from what the chain shows everyone)."""
    return f"round/{round_id}/correction"


def recovery_pairs(doc: RoundDoc, holder: str) -> tuple[list[str], list[str]]:
    """The absent neighbours ``holder`` reveals recovery keys for, in index order: those
    it sent a share to (if it contributed) and the absent contributors that sent it one."""
    absent = [p for p in doc.mask_members(doc.absent) if p != holder and doc.shares_with(p, holder)]
    contributed = doc.mask_members(doc.fused_contributors)
    sent_to = absent if holder in contributed else []
    return sent_to, [d for d in absent if d in contributed]


def recovery_transfers(doc: RoundDoc, holder: str) -> list[tuple[str, str]]:
    """The (sender, recipient) shares ``holder``'s recovery keys open, in the order of its
    ``RecoveryKeysRevealed`` keys: sent ones first, then received ones."""
    sent_to, received_from = recovery_pairs(doc, holder)
    return [(holder, d) for d in sent_to] + [(d, holder) for d in received_from]


def recovery_correction(doc: RoundDoc, recovered: Mapping[tuple[str, str], np.ndarray]) -> np.ndarray:
    """The public vector that turns the holders' fused shares into the sum of the holders'
    inputs: what holders sent the absent, minus what the absent sent holders (keyed by
    (sender, recipient); exactly the holders' ``recovery_transfers``)."""
    total = np.zeros(doc.length, dtype=np.uint64)
    for holder in doc.mask_members(doc.holders):
        for sender, recipient in recovery_transfers(doc, holder):
            share = recovered.get((sender, recipient))
            if share is None:
                raise ProtocolError(f"round {doc.round_id}: no recovered share from {sender} to {recipient}")
            total = (ring.add if sender == holder else ring.sub)(total, share, doc.modulus)
    return total


def missing_senders(doc: RoundDoc, me: str) -> Sequence[str]:
    """Contributors that owe me a share I have not opened yet."""
    return [
        s
        for s in doc.mask_members(doc.contributors)
        if s != me and s not in doc.received and doc.shares_with(s, me)
    ]
