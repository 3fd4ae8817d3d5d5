"""A holder's side of recovering an additive t-of-n round (see ``IShareExchange``).

When the round's deadline passes with participants that hold no fused share (they
never posted, never fused or were excluded), the contract freezes the holders. Each
holder with an absent neighbour reveals the message keys of its ciphertexts to them
and of theirs to it; the contract checks every key against the posted key tables.
Every agent then opens those ciphertexts from the postings it kept and, when the round
completes, adds them up into one public correction: what holders sent the absent minus
what the absent sent holders. The first holder adds it to its share (inference, and
statistics, use the sum of the holders' shares); reconstructing an Intermediate
aggregate adds it once. An absent member's own input stays hidden: its kept share
never left its enclave, and the contract refuses its fused share once recovery starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from enclave_agent.chain import ChainEvent
from enclave_agent.errors import CryptoError, ProtocolError
from enclave_agent.onchain import ShareExchangeError
from enclave_agent.protocol import records, stages
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.disputes import queue_blame
from enclave_agent.protocol.records import Posting
from enclave_agent.protocol.rounds import (
    RoundDoc,
    correction_key,
    message_key,
    read_entry,
    recovery_correction,
    recovery_pairs,
    recovery_transfers,
    share_of,
)

log = logging.getLogger(__name__)


class Recovery:
    """Recovery keys out (mine) and in (every holder's), and the correction."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "RecoveryStarted": self._on_recovery_started,
            "RecoveryKeysRevealed": self._on_keys_revealed,
        }

    def _on_recovery_started(self, event: ChainEvent) -> None:
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_RECOVERING
        doc.absent = int(event.args["absent"])
        doc.owing = int(event.args["owing"])
        doc.recovery_deadline = int(event.args["recoveryDeadline"])
        doc.fusion_contributors = doc.contributors
        self.agent.save_round(doc)
        if doc.my_index is not None:
            log.warning(
                "round %d: recovering without %s",
                doc.round_id,
                ", ".join(self.agent.names.describe(a) for a in doc.mask_members(doc.absent)),
            )

    def reveal(self, doc: RoundDoc) -> None:
        """Reveal my recovery keys, once, if I owe any."""
        me = self.agent.address
        if doc.recovery_sent or doc.my_index is None or not doc.owing >> doc.my_index & 1:
            return
        rid = doc.round_id
        sent_to, received_from = recovery_pairs(doc, me)
        keys = self.agent.epoch_keys(doc.epoch)
        missing = [d for d in sent_to + received_from if d not in keys]
        if missing:  # a ProtocolError is logged and retried by the loop, never a crash
            raise ProtocolError(
                f"round {rid}: no pairwise key of epoch {doc.epoch} with {', '.join(missing)}"
            )
        ctx = self.agent.ctx
        sent = [message_key(keys[d], ctx, rid, me, d) for d in sent_to]
        received = [message_key(keys[d], ctx, rid, d, me) for d in received_from]
        own: list[bytes] = []
        if sent_to:
            posting = records.load(self.agent.store, Posting, f"round/{rid}/posting")
            if posting is None:
                raise ProtocolError(f"round {rid}: my posting's key table is gone")
            own = [bytes.fromhex(k) for k in posting.key_table]
        tables = [self._key_table(rid, d) for d in received_from]
        self.agent.send_or_done(
            self.agent.contracts.exchange.functions.recoverAbsent(rid, sent, received, own, tables),
            f"recover-{rid}",
            ShareExchangeError.RoundAlreadyRecovered,
        )
        doc.recovery_sent = True
        self.agent.save_round(doc)
        log.info("round %d: revealed %d recovery key(s)", rid, len(sent) + len(received))

    def _key_table(self, round_id: int, sender: str) -> list[bytes]:
        table = self.agent.store.get_json(f"round/{round_id}/keytable/{sender}")
        if table is None:
            raise ProtocolError(f"round {round_id}: the key table of {sender} is gone")
        return [bytes.fromhex(word) for word in table]

    def _on_keys_revealed(self, event: ChainEvent) -> None:
        """Open the shares a holder's recovery keys unlock (public now), from the kept postings."""
        doc = self.agent.round_doc(int(event.args["roundId"]))
        if doc is None or doc.my_index is None:
            return
        holder = to_checksum_address(event.args["member"])
        keys = [bytes(k) for k in event.args["sentKeys"]] + [bytes(k) for k in event.args["receivedKeys"]]
        for (sender, recipient), key in zip(recovery_transfers(doc, holder), keys, strict=True):
            payload = self._payload(doc.round_id, sender)
            try:
                if payload is None:
                    raise ProtocolError(f"no posting of {sender} kept")
                message = read_entry(doc, sender, payload, recipient, key, self.agent.ctx)
            except (CryptoError, ProtocolError) as exc:
                # The key is the committed one (the contract checked): the sender posted a
                # ciphertext that does not open under it. No correction can be made.
                doc.unreadable.append([sender, recipient, key.hex()])
                log.error(
                    "round %d: recovery: the share of %s for %s does not open (%s)",
                    doc.round_id,
                    self.agent.names.describe(sender),
                    self.agent.names.describe(recipient),
                    type(exc).__name__,
                )
                continue
            self.agent.store.put_blob(f"round/{doc.round_id}/recovered/{sender}/{recipient}", message)
        self.agent.save_round(doc)

    def _payload(self, round_id: int, sender: str) -> bytes | None:
        """A sender's whole posting: kept from its events, or my own from my posting record."""
        if sender != self.agent.address:
            return self.agent.store.get_blob(f"round/{round_id}/payload/{sender}")
        mine = records.load(self.agent.store, Posting, f"round/{round_id}/posting")
        return None if mine is None else b"".join(bytes.fromhex(c) for c in mine.chunks)

    def correct(self, doc: RoundDoc) -> None:
        """At completion: add the recovered shares up into the round's public correction."""
        if doc.my_index is None or doc.refused:
            return
        if doc.unreadable:
            # Blame is only taken once the round completed; the key is the evidence (it
            # opens that one ciphertext, which anyone can then fail to read).
            for sender, _recipient, key in doc.unreadable:
                if doc.is_holder(sender):
                    queue_blame(self.agent, doc.round_id, sender, "recovery-unreadable", bytes.fromhex(key))
            doc.refused = "recovery: " + "; ".join(
                f"the share of {s} for {r} does not open" for s, r, _ in doc.unreadable
            )
            log.error("round %d: no aggregate: %s", doc.round_id, doc.refused)
            return
        recovered = {}
        for holder in doc.mask_members(doc.holders):
            for sender, recipient in recovery_transfers(doc, holder):
                raw = self.agent.store.get_blob(f"round/{doc.round_id}/recovered/{sender}/{recipient}")
                if raw is not None:
                    recovered[(sender, recipient)] = share_of(doc, sender, raw, self.agent.ctx)
        try:
            correction = recovery_correction(doc, recovered)
        except ProtocolError as exc:
            doc.refused = str(exc)
            log.error("round %d: no correction: %s", doc.round_id, exc)
            return
        self.agent.store.put_blob(correction_key(doc.round_id), correction.astype("<u8").tobytes())
        log.info(
            "round %d: recovered the shares owed to %d absent participant(s)",
            doc.round_id,
            len(doc.mask_members(doc.absent)),
        )
