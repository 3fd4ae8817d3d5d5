"""A participant's side of share-exchange rounds: post sealed shares, open what
others sent, report tampering, fuse, commit, enforce deadlines, and reveal
Intermediate aggregates to the other enclaves."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.chain import ChainEvent
from enclave_agent.errors import (
    CryptoError,
    ProtocolError,
)
from enclave_agent.protocol import reveal, stages
from enclave_agent.protocol.context import AgentContext, elements
from enclave_agent.protocol.inputs import InputNotReady, resolve_input
from enclave_agent.protocol.rounds import (
    RoundDoc,
    build_posting,
    fuse,
    missing_senders,
    open_posting,
)

log = logging.getLogger(__name__)


class RoundParticipation:
    """Rounds this agent takes part in, driven by ShareExchange events."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "RoundOpened": self._on_round_opened,
            "SharesPosted": self._on_shares_posted,
            "PostingClosed": self._on_posting_closed,
            "ShareRejected": self._on_share_rejected,
            "FusedCommitted": self._on_fused_committed,
            "RoundCompleted": self._on_round_completed,
            "RoundAborted": self._on_round_aborted,
            "FusedRevealed": self._on_fused_revealed,
        }

    def step(self) -> None:
        self._take_part()

    def _on_round_opened(self, event: ChainEvent) -> None:
        doc = RoundDoc.from_event(event.args, self.agent.address)
        if doc.my_index is None:
            self.agent.save_round(doc)
            return
        log.info(
            "round %d opened: tag=%s n=%d t=%d d=%d %s/%s",
            doc.round_id,
            doc.tag,
            doc.n,
            doc.threshold,
            doc.length,
            doc.scheme,
            doc.encoding,
        )
        self.agent.save_round(doc)

    def _on_shares_posted(self, event: ChainEvent) -> None:
        args = event.args
        doc = self.agent.round_doc(int(args["roundId"]))
        sender = to_checksum_address(args["sender"])
        if doc is None or doc.my_index is None or sender == self.agent.address:
            return
        index, count = int(args["chunkIndex"]), int(args["chunkCount"])
        prefix = f"round/{doc.round_id}/chunks/{sender}"
        self.agent.store.put_blob(f"{prefix}/{index}", bytes(args["payload"]))
        if index + 1 < count:
            return
        payload = b"".join(self.agent.store.get_blob(f"{prefix}/{i}") or b"" for i in range(count))
        key = self.agent.epoch_keys(doc.epoch).get(sender)
        try:
            if key is None:
                raise ProtocolError(f"no pairwise key with {sender} for epoch {doc.epoch}")
            share = open_posting(doc, sender, payload, self.agent.address, key, self.agent.ctx)
        except (CryptoError, ProtocolError) as exc:
            log.warning("round %d: share from %s rejected: %s", doc.round_id, sender, type(exc).__name__)
            doc.invalid.append(sender)
        else:
            self.agent.seal_put(f"round/{doc.round_id}/recv/{sender}", share.astype("<u8").tobytes())
            doc.received.append(sender)
            log.info("round %d: opened share from %s", doc.round_id, sender)
        for i in range(count):
            self.agent.store.delete_blob(f"{prefix}/{i}")
        self.agent.save_round(doc)

    def _on_posting_closed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_FUSING
        doc.contributors = int(event.args["contributors"])
        self.agent.save_round(doc)
        if doc.my_index is not None:
            log.info("round %d: posting closed, contributors %s", doc.round_id, hex(doc.contributors))

    def _on_share_rejected(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        sender = to_checksum_address(event.args["sender"])
        doc.excluded.append(sender)
        if doc.status == stages.ROUND_FUSING:
            doc.contributors = int(event.args["contributors"])
        self.agent.save_round(doc)
        log.warning("round %d: shares of %s rejected by %s", doc.round_id, sender, event.args["reporter"])

    def _on_fused_committed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        if to_checksum_address(event.args["member"]) == self.agent.address:
            doc.fused_over = int(event.args["contributors"])
            self.agent.save_round(doc)

    def _on_round_completed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_COMPLETED
        doc.contributors = int(event.args["contributors"])
        doc.holders = int(event.args["holders"])
        self.agent.save_round(doc)
        log.info(
            "round %d completed: contributors %s, holders %s",
            doc.round_id,
            hex(doc.contributors),
            hex(doc.holders),
        )

    def _on_round_aborted(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_ABORTED
        doc.abort_reason = stages.ABORT_REASONS[int(event.args["reason"])]
        doc.culprits = [to_checksum_address(c) for c in event.args["culprits"]]
        self.agent.save_round(doc)
        log.warning(
            "round %d aborted: %s; members: %s",
            doc.round_id,
            doc.abort_reason,
            ", ".join(doc.culprits) or "-",
        )

    # ------------------------------------------------------------------ stage: take part

    def _take_part(self) -> None:
        docs = self.agent.rounds()
        active = [d for d in docs if not d.is_final and d.my_index is not None]
        if active:
            now = self.agent.chain_now()
            for doc in active:
                self._advance_round(doc, now)
        for doc in docs:
            if doc.needs_reveal:
                self._reveal(doc)

    def _advance_round(self, doc: RoundDoc, now: int) -> None:
        exchange = self.agent.contracts.exchange.functions
        rid = doc.round_id
        if doc.status == stages.ROUND_POSTING and now <= doc.posting_deadline and not doc.unable:
            self._post_shares(doc)
        for sender in [s for s in doc.invalid if s not in doc.reported]:
            self.agent.send_or_done(
                exchange.reportInvalidShare(rid, sender),
                f"report-{rid}",
                "RoundUnexpectedState",
                "RoundSenderExcluded",
            )
            log.warning("round %d: reported invalid share from %s", rid, sender)
            doc.reported.append(sender)
            self.agent.save_round(doc)
        if doc.status == stages.ROUND_FUSING:
            self._fuse(doc)
        if doc.status == stages.ROUND_POSTING and now > doc.posting_deadline:
            self.agent.send_or_done(
                exchange.closePosting(rid),
                f"close-{rid}",
                "RoundUnexpectedState",
                "RoundPostingStillOpen",
            )
        if now > doc.deadline:
            self.agent.send_or_done(
                exchange.finalize(rid),
                f"finalize-{rid}",
                "RoundUnexpectedState",
            )

    def _post_shares(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        stored = self.agent.store.get_json(f"round/{rid}/posting")
        if stored is None:
            keys = self.agent.epoch_keys(doc.epoch)
            try:
                values = resolve_input(self.agent.config, doc.tag, self.agent.aggregate)
                kept, chunks, commitment = build_posting(doc, values, keys, self.agent.ctx)
            except InputNotReady as exc:
                log.debug("round %d: input not ready: %s", rid, exc)
                return
            except (ProtocolError, CryptoError, KeyError) as exc:
                reason = f"missing pairwise key {exc}" if isinstance(exc, KeyError) else str(exc)
                log.error("round %d: cannot contribute: %s", rid, reason)
                doc.unable = reason
                self.agent.save_round(doc)
                return
            # Sealed and stored before anything is posted: a restart re-posts these
            # exact ciphertexts and never a second, different share set.
            with self.agent.store.transaction():
                self.agent.seal_put(f"round/{rid}/kept", kept.astype("<u8").tobytes())
                self.agent.store.put_json(
                    f"round/{rid}/posting",
                    {"commitment": commitment.hex(), "chunks": [c.hex() for c in chunks]},
                )
            stored = self.agent.store.get_json(f"round/{rid}/posting")
        assert stored is not None
        chunks = [bytes.fromhex(c) for c in stored["chunks"]]
        commitment = bytes.fromhex(stored["commitment"])
        done = int(self.agent.contracts.exchange.functions.chunksPosted(rid, self.agent.address).call())
        for i in range(done, len(chunks)):
            self.agent.enclave_tx.send(
                self.agent.contracts.exchange.functions.postShares(
                    rid, i, len(chunks), commitment, chunks[i]
                ),
                label=f"shares-{rid}-{i}",
            )
        if done < len(chunks):
            log.info(
                "round %d: posted %d chunk(s), %d bytes, commitment 0x%s",
                rid,
                len(chunks) - done,
                sum(len(c) for c in chunks[done:]),
                commitment.hex()[:16],
            )

    def _fuse(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        if doc.fused_over == doc.contributors or self.agent.address in doc.excluded:
            return
        if missing_senders(doc, self.agent.address) or doc.contributors == 0:
            return
        kept_raw = self.agent.unseal_get(f"round/{rid}/kept")
        received = {}
        for sender in doc.mask_members(doc.contributors):
            raw = self.agent.unseal_get(f"round/{rid}/recv/{sender}")
            if raw is not None:
                received[sender] = elements(raw)
        fused = fuse(doc, None if kept_raw is None else elements(kept_raw), received)
        salt = self.agent.unseal_get(f"round/{rid}/salt")
        if salt is None:
            salt = secrets.token_bytes(32)
            self.agent.seal_put(f"round/{rid}/salt", salt)
        fused_bytes = fused.astype("<u8").tobytes()
        commitment = keccak(salt + fused_bytes)
        self.agent.seal_put(f"round/{rid}/fused", fused_bytes)
        self.agent.store.put_json(f"round/{rid}/fused_over", doc.contributors)
        self.agent.send_or_done(
            self.agent.contracts.exchange.functions.postFused(rid, commitment, doc.contributors),
            f"fused-{rid}",
            "RoundAlreadyFused",
        )
        doc.fused_over = doc.contributors
        self.agent.save_round(doc)
        log.info("round %d: fused %d shares, committed 0x%s", rid, len(received) + 1, commitment.hex()[:16])

    def _reveal(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        if not doc.revealed and doc.is_holder(self.agent.address):
            fused = self.agent.fused_share(rid)
            if fused is None:
                return
            payload = reveal.build_reveal(doc, fused, self.agent.epoch_keys(doc.epoch), self.agent.ctx)
            self.agent.send_or_done(
                self.agent.contracts.exchange.functions.revealFused(rid, payload),
                f"reveal-{rid}",
                "RoundAlreadyRevealed",
            )
            log.info("round %d: revealed my fused share to the other enclaves", rid)
            doc.revealed = True
            self.agent.save_round(doc)
        elif not doc.is_holder(self.agent.address) and not doc.revealed:
            doc.revealed = True  # nothing to reveal
            self.agent.save_round(doc)
        self._try_reconstruct(doc)

    def _on_fused_revealed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        sender = to_checksum_address(event.args["member"])
        if doc is None or doc.my_index is None or sender == self.agent.address or sender in doc.reveals:
            return
        key = self.agent.epoch_keys(doc.epoch).get(sender)
        try:
            if key is None:
                raise ProtocolError(f"no pairwise key with {sender} for epoch {doc.epoch}")
            share = reveal.open_reveal(
                doc, sender, bytes(event.args["payload"]), self.agent.address, key, self.agent.ctx
            )
        except (CryptoError, ProtocolError) as exc:
            log.warning("round %d: reveal from %s rejected: %s", doc.round_id, sender, type(exc).__name__)
            return
        self.agent.seal_put(f"round/{doc.round_id}/reveal/{sender}", share.astype("<u8").tobytes())
        doc.reveals.append(sender)
        self.agent.save_round(doc)
        self._try_reconstruct(doc)

    def _try_reconstruct(self, doc: RoundDoc) -> None:
        if doc.aggregate_ready:
            return
        shares = {}
        for sender in doc.reveals:
            raw = self.agent.unseal_get(f"round/{doc.round_id}/reveal/{sender}")
            if raw is not None:
                shares[sender] = elements(raw)
        own = self.agent.fused_share(doc.round_id)
        if own is not None and doc.is_holder(self.agent.address):
            shares[self.agent.address] = own
        aggregate = reveal.reconstruct(doc, shares)
        if aggregate is None:
            return
        self.agent.seal_put(f"round/{doc.round_id}/aggregate", aggregate.astype("<u8").tobytes())
        doc.aggregate_ready = True
        self.agent.save_round(doc)
        log.info("round %d: aggregate reconstructed inside the enclave", doc.round_id)
