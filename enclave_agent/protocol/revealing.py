"""A holder's side of Intermediate rounds: open my fused commitment to the other
holders, check theirs, reconstruct the aggregate inside this enclave from every
share that passed, and queue blame for what did not (see ``protocol.reveal``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from enclave_agent.chain import ChainEvent
from enclave_agent.crypto import field
from enclave_agent.crypto.reed_solomon import UncorrectableSharesError
from enclave_agent.errors import CryptoError, ProtocolError
from enclave_agent.onchain import ShareExchangeError
from enclave_agent.protocol import reveal
from enclave_agent.protocol.context import AgentContext, elements
from enclave_agent.protocol.disputes import queue_blame
from enclave_agent.protocol.rounds import RoundDoc, correction_key

log = logging.getLogger(__name__)

# Seconds of chain time a Shamir holder waits for every holder's reveal before it
# reconstructs from those it has (at least t): a silent holder delays, never blocks.
REVEAL_GRACE = 20


class Revealing:
    """Intermediate aggregates, revealed to the holders' enclaves only."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {"FusedRevealed": self._on_fused_revealed}

    def step(self) -> None:
        for doc in self.agent.rounds():
            if doc.needs_reveal:
                self._reveal(doc)

    def _reveal(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        if doc.below_floor:
            if not doc.refused:
                doc.refused = f"{doc.contributor_count} contributors, below the round's floor of {doc.floor}"
                doc.revealed = doc.aggregate_ready = True
                self.agent.save_round(doc)
                log.error("round %d: refusing to reveal or reconstruct: %s", rid, doc.refused)
            return
        if not doc.revealed and doc.is_holder(self.agent.address):
            fused = self.agent.committed_share(rid)
            salt = self.agent.unseal_get(f"round/{rid}/salt")
            if fused is None or salt is None:
                return
            payload = reveal.build_reveal(doc, fused, salt, self.agent.epoch_keys(doc.epoch), self.agent.ctx)
            self.agent.send_or_done(
                self.agent.contracts.exchange.functions.revealFused(rid, payload),
                f"reveal-{rid}",
                ShareExchangeError.RoundAlreadyRevealed,
            )
            log.info("round %d: opened my fused commitment to the other holders", rid)
            doc.revealed = True
            self.agent.save_round(doc)
        elif not doc.is_holder(self.agent.address) and not doc.revealed:
            doc.revealed = True  # not a holder: nothing to reveal, nothing to receive
            doc.aggregate_ready = True
            self.agent.save_round(doc)
            return
        self._try_reconstruct(doc)

    def _on_fused_revealed(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        holder = to_checksum_address(event.args["member"])
        me = self.agent.address
        if doc is None or not doc.is_holder(me) or holder == me or holder in doc.reveals + doc.bad_reveals:
            return
        pairwise = self.agent.epoch_keys(doc.epoch).get(holder)
        if pairwise is None:
            log.warning("round %d: no pairwise key with %s to open its reveal", doc.round_id, holder)
            return
        key = reveal.reveal_key(pairwise, self.agent.ctx, doc.round_id, holder, me)
        committed = doc.commitments.get(holder)
        try:
            opened = reveal.open_reveal(doc, holder, bytes(event.args["payload"]), me, key, self.agent.ctx)
        except (CryptoError, ProtocolError) as exc:
            log.warning(
                "round %d: reveal from %s unreadable: %s",
                doc.round_id,
                self.agent.names.describe(holder),
                type(exc).__name__,
            )
            doc.bad_reveals.append(holder)
            queue_blame(self.agent, doc.round_id, holder, "reveal-unreadable", key)
        else:
            if (
                committed is None
                or committed[1] != doc.fused_contributors
                or not reveal.matches_commitment(opened, bytes.fromhex(committed[0]))
            ):
                log.warning(
                    "round %d: reveal from %s does not open its fused commitment", doc.round_id, holder
                )
                doc.bad_reveals.append(holder)
                queue_blame(self.agent, doc.round_id, holder, "reveal-mismatch", key)
            else:
                self.agent.seal_put(
                    f"round/{doc.round_id}/reveal/{holder}", opened.share.astype("<u8").tobytes()
                )
                doc.reveals.append(holder)
        self.agent.save_round(doc)
        self._try_reconstruct(doc)

    def _try_reconstruct(self, doc: RoundDoc) -> None:
        if doc.aggregate_ready or doc.refused or not doc.is_holder(self.agent.address) or doc.below_floor:
            return
        shares = {}
        for holder in doc.reveals:
            raw = self.agent.unseal_get(f"round/{doc.round_id}/reveal/{holder}")
            if raw is not None:
                shares[holder] = elements(raw)
        own = self.agent.committed_share(doc.round_id)
        correction = None
        if doc.absent:  # a recovered round: the public correction, added once
            raw = self.agent.store.get_blob(correction_key(doc.round_id))
            if raw is None:
                return
            correction = elements(raw)
        if own is None:
            return
        shares[self.agent.address] = own
        others = len(doc.mask_members(doc.holders)) - 1
        final = len(doc.reveals) + len(doc.bad_reveals) >= others or (
            self.agent.chain_now() > doc.completed_at + REVEAL_GRACE
        )
        try:
            result = reveal.reconstruct(doc, shares, final=final)
        except UncorrectableSharesError as exc:
            if not doc.refused:
                doc.refused = str(exc)
                self.agent.save_round(doc)
                log.error("round %d: no aggregate: %s", doc.round_id, exc)
            return
        if result is None:
            if final and doc.bad_reveals and not doc.refused:
                doc.refused = f"reveals of {', '.join(doc.bad_reveals)} failed their commitments"
                self.agent.save_round(doc)
                log.error("round %d: no aggregate: %s", doc.round_id, doc.refused)
            return
        for holder in result.wrong:
            queue_blame(self.agent, doc.round_id, holder, "share-off-polynomial")
        aggregate = (
            result.aggregate if correction is None else field.add(result.aggregate, correction, doc.modulus)
        )
        self.agent.seal_put(f"round/{doc.round_id}/aggregate", aggregate.astype("<u8").tobytes())
        doc.aggregate_ready = True
        self.agent.save_round(doc)
        log.info(
            "round %d: aggregate reconstructed inside the enclave from %d checked shares%s",
            doc.round_id,
            len(shares),
            f", corrected those of {', '.join(result.wrong)}" if result.wrong else "",
        )
