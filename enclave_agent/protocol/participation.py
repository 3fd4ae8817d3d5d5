"""A participant's side of share-exchange rounds: post sealed shares with their key
table, open what others sent (keeping every posting for judging), fuse, commit and
enforce deadlines. Complaints and verdicts live in ``protocol.disputes``; revealing
Intermediate aggregates in ``protocol.revealing``."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from enclave_agent.chain import ChainEvent
from enclave_agent.errors import (
    CryptoError,
    ProtocolError,
)
from enclave_agent.onchain import ShareExchangeError
from enclave_agent.protocol import records, reveal, stages
from enclave_agent.protocol.context import AgentContext, elements
from enclave_agent.protocol.inputs import InputNotReady, resolve_input
from enclave_agent.protocol.records import Posting
from enclave_agent.protocol.recovery import Recovery
from enclave_agent.protocol.rounds import (
    RoundDoc,
    build_posting,
    fuse,
    missing_senders,
    read_posting,
    share_of,
)

# Round keys of the store written here: round/{id}/payload/{sender} (a sender's whole
# public posting, kept until the round is final so judges can open one entry) and
# round/{id}/keytable/{sender} (its key table, hex words). A recovery
# (``protocol.recovery``) reads both before they are forgotten.

log = logging.getLogger(__name__)


class RoundParticipation:
    """Rounds this agent takes part in, driven by ShareExchange events."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self.recovery = Recovery(agent)

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            **self.recovery.handlers(),
            "RoundOpened": self._on_round_opened,
            "SharesPosted": self._on_shares_posted,
            "PostingClosed": self._on_posting_closed,
            "FusedCommitted": self._on_fused_committed,
            "RoundCompleted": self._on_round_completed,
            "RoundAborted": self._on_round_aborted,
        }

    def step(self) -> None:
        self._take_part()

    def _on_round_opened(self, event: ChainEvent) -> None:
        doc = RoundDoc.from_event(event.args, self.agent.address)
        if doc.my_index is None:
            self.agent.save_round(doc)
            return
        log.info(
            "round %d opened: tag=%s n=%d t=%d floor=%d d=%d %s/%s",
            doc.round_id,
            doc.tag,
            doc.n,
            doc.threshold,
            doc.floor,
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
        if index == 0:
            table = [bytes(word).hex() for word in args["keyTable"]]
            self.agent.store.put_json(f"round/{doc.round_id}/keytable/{sender}", table)
        if index + 1 < count:
            return
        payload = b"".join(self.agent.store.get_blob(f"{prefix}/{i}") or b"" for i in range(count))
        self.agent.store.put_blob(f"round/{doc.round_id}/payload/{sender}", payload)
        if doc.shares_with(sender, self.agent.address):  # a sparse mask: only neighbours owe me
            self._open_share(doc, sender, payload)
        for i in range(count):
            self.agent.store.delete_blob(f"{prefix}/{i}")
        self.agent.save_round(doc)

    def _open_share(self, doc: RoundDoc, sender: str, payload: bytes) -> None:
        """Open the share ``sender`` posted for me: received, or invalid (a complaint)."""
        key = self.agent.epoch_keys(doc.epoch).get(sender)
        try:
            if key is None:
                raise ProtocolError(f"no pairwise key with {sender} for epoch {doc.epoch}")
            message = read_posting(doc, sender, payload, self.agent.address, key, self.agent.ctx)
        except (CryptoError, ProtocolError) as exc:
            log.warning(
                "round %d: share from %s rejected: %s",
                doc.round_id,
                self.agent.names.describe(sender),
                type(exc).__name__,
            )
            doc.invalid.append(sender)
        else:
            # The message, not its expansion: a seed is 33 bytes sealed instead of 8d.
            self.agent.seal_put(f"round/{doc.round_id}/recv/{sender}", message)
            doc.received.append(sender)
            log.info("round %d: opened share from %s", doc.round_id, self.agent.names.describe(sender))

    def _on_posting_closed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_FUSING
        doc.contributors = int(event.args["contributors"])
        self.agent.save_round(doc)
        if doc.my_index is not None:
            log.info("round %d: posting closed, contributors %s", doc.round_id, hex(doc.contributors))

    def _on_fused_committed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        member = to_checksum_address(event.args["member"])
        contributors = int(event.args["contributors"])
        doc.commitments[member] = [bytes(event.args["commitment"]).hex(), contributors]
        if member == self.agent.address:
            doc.fused_over = contributors
        self.agent.save_round(doc)

    def _on_round_completed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_COMPLETED
        doc.contributors = int(event.args["contributors"])
        doc.holders = int(event.args["holders"])
        doc.completed_at = self.agent.chain_now()
        doc.complaint = []
        if doc.absent:
            self.recovery.correct(doc)
        self.agent.save_round(doc)
        self._forget_postings(doc)
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
        doc.complaint = []
        self.agent.save_round(doc)
        self._forget_postings(doc)
        log.warning(
            "round %d aborted: %s; members: %s",
            doc.round_id,
            doc.abort_reason,
            ", ".join(self.agent.names.describe(c) for c in doc.culprits) or "-",
        )

    def _forget_postings(self, doc: RoundDoc) -> None:
        """A final round needs no more judging: drop the public postings kept for it."""
        rid = doc.round_id
        for prefix in (f"round/{rid}/payload/", f"round/{rid}/chunks/", f"round/{rid}/recovered/"):
            for key in self.agent.store.blob_keys(prefix):
                self.agent.store.delete_blob(key)

    # ------------------------------------------------------------------ stage: take part

    def _take_part(self) -> None:
        docs = self.agent.rounds()
        active = [d for d in docs if not d.is_final and d.my_index is not None]
        if active:
            now = self.agent.chain_now()
            for doc in active:
                self._advance_round(doc, now)

    def _advance_round(self, doc: RoundDoc, now: int) -> None:
        exchange = self.agent.contracts.exchange.functions
        rid = doc.round_id
        if doc.status == stages.ROUND_POSTING and now <= doc.posting_deadline and not doc.unable:
            self._post_shares(doc)
        if doc.status == stages.ROUND_FUSING and not doc.complaint:
            self._fuse(doc)
        if doc.status == stages.ROUND_RECOVERING:
            self.recovery.reveal(doc)
        if doc.status == stages.ROUND_POSTING and now > doc.posting_deadline:
            self.agent.send_or_done(
                exchange.closePosting(rid),
                f"close-{rid}",
                ShareExchangeError.RoundUnexpectedState,
                ShareExchangeError.RoundPostingStillOpen,
            )
        if now > (doc.recovery_deadline if doc.status == stages.ROUND_RECOVERING else doc.deadline):
            self.agent.send_or_done(
                exchange.finalize(rid),
                f"finalize-{rid}",
                ShareExchangeError.RoundUnexpectedState,
            )

    def _post_shares(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        key = f"round/{rid}/posting"
        stored = records.load(self.agent.store, Posting, key)
        if stored is None:
            keys = self.agent.epoch_keys(doc.epoch)
            try:
                values = resolve_input(self.agent.config, doc.tag, self.agent.aggregate)
                built = build_posting(doc, values, keys, self.agent.ctx)
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
            stored = Posting(
                commitment=built.commitment.hex(),
                chunks=[c.hex() for c in built.chunks],
                key_table=[k.hex() for k in built.key_table],
            )
            with self.agent.store.transaction():
                self.agent.seal_put(f"round/{rid}/kept", built.kept.astype("<u8").tobytes())
                records.save(self.agent.store, key, stored)
        chunks = [bytes.fromhex(c) for c in stored.chunks]
        commitment = bytes.fromhex(stored.commitment)
        table = [bytes.fromhex(k) for k in stored.key_table]
        done = int(self.agent.contracts.exchange.functions.chunksPosted(rid, self.agent.address).call())
        for i in range(done, len(chunks)):
            self.agent.enclave_tx.send(
                self.agent.contracts.exchange.functions.postShares(
                    rid, i, len(chunks), commitment, table if i == 0 else [], chunks[i]
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
        if doc.below_floor:
            if not doc.refused:
                doc.refused = f"{doc.contributor_count} contributors, below the round's floor of {doc.floor}"
                self.agent.save_round(doc)
                log.error("round %d: refusing to fuse: %s", rid, doc.refused)
            return
        kept_raw = self.agent.unseal_get(f"round/{rid}/kept")
        received = {}
        me = self.agent.address
        for sender in doc.mask_members(doc.contributors):
            if sender == me or not doc.shares_with(sender, me):
                continue  # a sparse mask: only neighbours sent me anything
            message = self.agent.unseal_get(f"round/{rid}/recv/{sender}")
            if message is not None:
                received[sender] = share_of(doc, sender, message, self.agent.ctx)
        fused = fuse(doc, None if kept_raw is None else elements(kept_raw), received)
        salt = self.agent.unseal_get(f"round/{rid}/salt")
        if salt is None:
            salt = secrets.token_bytes(reveal.SALT_BYTES)
            self.agent.seal_put(f"round/{rid}/salt", salt)
        commitment = reveal.fused_commitment(salt, fused)
        self.agent.seal_put(f"round/{rid}/fused", fused.astype("<u8").tobytes())
        self.agent.store.put_json(f"round/{rid}/fused_over", doc.contributors)
        self.agent.send_or_done(
            self.agent.contracts.exchange.functions.postFused(rid, commitment, doc.contributors),
            f"fused-{rid}",
            ShareExchangeError.RoundAlreadyFused,
        )
        doc.fused_over = doc.contributors
        self.agent.save_round(doc)
        log.info("round %d: fused %d shares, committed 0x%s", rid, len(received) + 1, commitment.hex()[:16])
