"""A misbehaving participant for fault tests: an attested enclave (same approved
code, quote from the real attestation service) driven by the test process. It uses
the same library pieces as an honest agent, so only the fault differs: it can stay
silent, post a tampered ciphertext, complain falsely (with the real key or another),
take part honestly up to its fused commitment and then reveal another share (to
everyone or to some), answer inference requests with a wrong partial, and show
what it holds (to check that a victim's input cannot be rebuilt from it)."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_utils.address import to_checksum_address

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender
from enclave_agent.crypto import aead, posting
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.protocol import queries, reveal
from enclave_agent.protocol.partials import partial_statistic
from enclave_agent.protocol.rounds import (
    RoundContext,
    RoundDoc,
    build_posting,
    fuse,
    message_key,
    open_posting,
)
from enclave_agent.tee.attestation_client import request_quote
from enclave_agent.tee.quote import sign_possession
from enclave_devnet import Consortium


class Rogue:
    def __init__(self, consortium: Consortium, operator_index: int) -> None:
        self.c = consortium
        self.account = Account.create()
        self.address = self.account.address
        self.x25519 = X25519PrivateKey.generate()
        self.x25519_public = self.x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.operator = consortium.w3.eth.accounts[operator_index]
        self.contracts = Contracts(consortium.w3, consortium.manifest)
        self.tx = TxSender(consortium.w3, self.account, ErrorDecoder.from_manifest(consortium.manifest))
        self.ctx = RoundContext(consortium.manifest.chain_id, self.contracts.exchange.address)
        self.kept: dict[int, np.ndarray] = {}  # round -> my own share of my input
        self.salts: dict[int, bytes] = {}
        self.fused: dict[int, np.ndarray] = {}

    # -------------------------------------------------------------- membership

    def register(self, role: int = 1, *, admit: bool = True, possession_key: bytes | None = None) -> Any:
        """Register as an enclave of ``role`` (governance first admits the operator,
        unless ``admit`` is False); ``possession_key`` signs the proof of possession
        instead of the enclave's own key (an enclave whose key the caller does not hold)."""
        if admit:
            self.c.admit_organisation(self.operator, f"rogue-{self.address[:8]}")
        quote, signature = request_quote(
            self.c.service_url,
            role=role,
            operator=self.operator,
            enclave=self.address,
            x25519_key=self.x25519_public,
            chain_id=self.c.manifest.chain_id,
            registry=self.contracts.registry.address,
        )
        possession = sign_possession(quote, possession_key or bytes(self.account.key))
        return self.contracts.registry.functions.register(quote.as_tuple(), signature, possession).transact(
            {"from": self.operator, "value": 10**18}
        )

    def registered(self, role: int = 1, **kwargs: Any) -> None:
        """``register`` and wait for it to be mined (and succeed)."""
        receipt = self.c.w3.eth.wait_for_transaction_receipt(self.register(role, **kwargs))
        assert receipt["status"] == 1

    def post_digest(self) -> None:
        registry = self.contracts.registry.functions
        epoch = registry.epoch().call()
        self.tx.send(registry.postMembershipDigest(epoch, registry.membershipDigest().call()), label="digest")

    def keys(self, epoch: int) -> dict[str, bytes]:
        registry = self.contracts.registry.functions
        ctx = aead.PairContext(self.c.manifest.chain_id, self.contracts.registry.address, epoch)
        keys = {}
        for role in (1, 2):
            for member in registry.activeMembers(role).call():
                if member != self.address:
                    peer_key = bytes(registry.member(member).call()[4])
                    keys[member] = aead.derive_pairwise_key(self.x25519, peer_key, self.address, member, ctx)
        return keys

    # -------------------------------------------------------------- rounds

    def round_doc(self, round_id: int) -> RoundDoc:
        event = self.c.exchange.events.RoundOpened().get_logs(
            from_block=0, argument_filters={"roundId": round_id}
        )[0]
        doc = RoundDoc.from_event(dict(event["args"]), self.address)
        info = self.contracts.exchange.functions.roundInfo(round_id).call()
        doc.contributors, doc.holders = int(info[6]), int(info[7])
        return doc

    def post_shares(self, round_id: int, values: np.ndarray, *, tamper_for: str | None = None) -> None:
        """Post my shares with an honest key table; ``tamper_for``: that recipient's
        ciphertext is flipped (garbage under the key I committed to)."""
        doc = self.round_doc(round_id)
        built = build_posting(doc, values, self.keys(doc.epoch), self.ctx)
        self.kept[round_id] = built.kept
        chunks = built.chunks
        if tamper_for is not None:
            entries = posting.decode_entries(b"".join(chunks))
            entries = [(r, _flip(ct) if r == tamper_for else ct) for r, ct in entries]
            chunks = posting.split_chunks(posting.encode_entries(entries))
        commitment = posting.chain_commitment(chunks)
        for i, chunk in enumerate(chunks):
            self.tx.send(
                self.contracts.exchange.functions.postShares(
                    round_id, i, len(chunks), commitment, built.key_table if i == 0 else [], chunk
                ),
                label=f"rogue-shares-{round_id}-{i}",
            )

    def posting_of(self, round_id: int, sender: str) -> tuple[bytes, list[bytes]]:
        """A sender's whole posting payload and key table, from its SharesPosted events."""
        events = self.c.exchange.events.SharesPosted().get_logs(
            from_block=0, argument_filters={"roundId": round_id, "sender": sender}
        )
        events = sorted(events, key=lambda e: int(e["args"]["chunkIndex"]))
        payload = b"".join(bytes(e["args"]["payload"]) for e in events)
        return payload, [bytes(k) for k in events[0]["args"]["keyTable"]]

    def received(self, round_id: int) -> dict[str, np.ndarray]:
        """The shares the contributors sent me, opened."""
        doc = self.round_doc(round_id)
        keys = self.keys(doc.epoch)
        out = {}
        for sender in doc.mask_members(doc.contributors):
            if sender != self.address:
                payload, _ = self.posting_of(round_id, sender)
                out[sender] = open_posting(doc, sender, payload, self.address, keys[sender], self.ctx)
        return out

    def fuse_and_commit(self, round_id: int) -> np.ndarray:
        """Fuse honestly over the current contributors and post the commitment."""
        doc = self.round_doc(round_id)
        fused = fuse(doc, self.kept.get(round_id), self.received(round_id))
        salt = secrets.token_bytes(reveal.SALT_BYTES)
        self.salts[round_id], self.fused[round_id] = salt, fused
        self.tx.send(
            self.contracts.exchange.functions.postFused(
                round_id, reveal.fused_commitment(salt, fused), doc.contributors
            ),
            label="rogue-fused",
        )
        return fused

    def post_fused(self, round_id: int) -> Any:
        contributors = self.contracts.exchange.functions.roundInfo(round_id).call()[6]
        return self.tx.send(
            self.contracts.exchange.functions.postFused(round_id, secrets.token_bytes(32), contributors),
            label="rogue-fused",
        )

    def complain(self, round_id: int, sender: str, *, key: bytes | None = None) -> Any:
        """Complain about ``sender``'s posting, revealing the real message key (a false
        complaint when its ciphertext is fine) or ``key``."""
        doc = self.round_doc(round_id)
        _, table = self.posting_of(round_id, sender)
        if key is None:
            key = message_key(self.keys(doc.epoch)[sender], self.ctx, round_id, sender, self.address)
        return self.tx.send(
            self.contracts.exchange.functions.complain(round_id, sender, key, table), label="rogue-complain"
        )

    def reveal(self, round_id: int, shares: dict[str, np.ndarray]) -> None:
        """Open my fused commitment with the given share per recipient (a lie where it
        differs from what I committed to)."""
        doc = self.round_doc(round_id)
        keys = self.keys(doc.epoch)
        salt = self.salts[round_id]
        entries = []
        for holder, share in shares.items():
            key = reveal.reveal_key(keys[holder], self.ctx, round_id, self.address, holder)
            plaintext = salt + share.astype("<u8").tobytes()
            entries.append(
                (
                    holder,
                    aead.encrypt(key, plaintext, reveal.reveal_ad(self.ctx, round_id, self.address, holder)),
                )
            )
        self.tx.send(
            self.contracts.exchange.functions.revealFused(round_id, posting.encode_entries(entries)),
            label="rogue-reveal",
        )

    def reveals_for_me(self, round_id: int) -> list[str]:
        """The holders whose FusedRevealed payload has an entry for me."""
        events = self.c.exchange.events.FusedRevealed().get_logs(
            from_block=0, argument_filters={"roundId": round_id}
        )
        return [
            to_checksum_address(e["args"]["member"])
            for e in events
            if self.address in dict(posting.decode_entries(bytes(e["args"]["payload"])))
        ]

    # -------------------------------------------------------------- inference

    def answer_statistics(self, round_id: int, features: int, *, bias: int) -> list[int]:
        """Answer every recorded statistic request on ``round_id``'s model with my share's
        partial plus ``bias`` (0: honest). Returns the request ids answered."""
        gateway = self.contracts.gateway
        answered = []
        for event in gateway.events.RequestSubmitted().get_logs(from_block=0):
            args = event["args"]
            request_id = int(args["requestId"])
            if gateway.functions.requestInfo(request_id).call()[5] > 0 and self._answered(request_id):
                continue
            epoch, entries = queries.decode_query_payload(bytes(args["encryptedQuery"]))
            gw = to_checksum_address(args["gateway"])
            key = self.keys(epoch)[gw]
            ad = queries.query_ad(
                self.c.manifest.chain_id, gateway.address, bytes(args["requestDigest"]), gw, self.address
            )
            query = queries.Query.from_bytes(aead.decrypt(key, entries[self.address], ad))
            modulus = PRIME61 if self.round_doc(round_id).scheme == "shamir" else RING64
            values = list(partial_statistic(self.fused[round_id], query.column, features, modulus))
            values = [(v + bias) % modulus for v in values]
            answer_ad = queries.partial_ad(
                self.c.manifest.chain_id, gateway.address, request_id, self.address, gw
            )
            ciphertext = aead.encrypt(key, queries.encode_partial(values), answer_ad)
            self.tx.send(gateway.functions.postPartial(request_id, ciphertext), label="rogue-partial")
            answered.append(request_id)
        return answered

    def _answered(self, request_id: int) -> bool:
        events = self.contracts.gateway.events.PartialPosted().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        )
        return any(to_checksum_address(e["args"]["provider"]) == self.address for e in events)


def _flip(ciphertext: bytes) -> bytes:
    middle = len(ciphertext) // 2
    return ciphertext[:middle] + bytes([ciphertext[middle] ^ 0x01]) + ciphertext[middle + 1 :]
