"""A misbehaving participant for fault tests: an attested enclave (same approved
code, quote from the real attestation service) driven by the test process, which
can post a tampered ciphertext or stay silent. It uses the same library pieces as
an honest agent, so only the fault differs."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender
from enclave_agent.crypto import aead, posting
from enclave_agent.localnet import Consortium
from enclave_agent.protocol.rounds import RoundContext, RoundDoc, build_posting
from enclave_agent.tee.attestation_service import request_quote
from enclave_agent.tee.quote import sign_possession


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

    def round_doc(self, round_id: int) -> RoundDoc:
        event = self.c.exchange.events.RoundOpened().get_logs(
            from_block=0, argument_filters={"roundId": round_id}
        )[0]
        return RoundDoc.from_event(dict(event["args"]), self.address)

    def post_shares(self, round_id: int, values: np.ndarray, *, tamper_for: str | None = None) -> None:
        doc = self.round_doc(round_id)
        keys = self.keys(doc.epoch)
        _, chunks, _ = build_posting(doc, values, keys, self.ctx)
        if tamper_for is not None:
            entries = posting.decode_entries(b"".join(chunks))
            entries = [(r, _flip(ct) if r == tamper_for else ct) for r, ct in entries]
            chunks = posting.split_chunks(posting.encode_entries(entries))
        commitment = posting.chain_commitment(chunks)
        for i, chunk in enumerate(chunks):
            self.tx.send(
                self.contracts.exchange.functions.postShares(round_id, i, len(chunks), commitment, chunk),
                label=f"rogue-shares-{round_id}-{i}",
            )

    def post_fused(self, round_id: int) -> Any:
        contributors = self.contracts.exchange.functions.roundInfo(round_id).call()[6]
        return self.tx.send(
            self.contracts.exchange.functions.postFused(round_id, secrets.token_bytes(32), contributors),
            label="rogue-fused",
        )


def _flip(ciphertext: bytes) -> bytes:
    middle = len(ciphertext) // 2
    return ciphertext[:middle] + bytes([ciphertext[middle] ^ 0x01]) + ciphertext[middle + 1 :]
