"""Complaints, verdicts and blame: how a round gets rid of a member that lies.

    accuser   a sender's ciphertext for me does not open under our message key:
              once the round is fusing, ``complain`` revealing that one key (the
              contract checks it against the key table the sender posted)
    judges    every other contributor opens that one ciphertext with the revealed key
              (``rounds.sender_at_fault``, pure, so honest judges agree) and votes;
              unanimity excludes the sender or the accuser, a split aborts the round
    everyone  records ``MemberExcluded`` and ``MemberBlamed`` for ``status`` and the
              gateway's metrics; a detection queued by another part (a reveal that
              does not open its commitment, a share off the polynomial, a wrong
              partial score) is sent as ``reportMisbehaviour`` with its evidence

Complaints are filed one at a time per round (the contract refuses a second while
one is judged); a refused filing is retried on the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from eth_utils.address import to_checksum_address

from enclave_agent.chain import ChainEvent
from enclave_agent.errors import ContractRevert, ProtocolError
from enclave_agent.onchain import ShareExchangeError
from enclave_agent.protocol import records, stages
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.records import Blame
from enclave_agent.protocol.rounds import RoundDoc, message_key, sender_at_fault

log = logging.getLogger(__name__)


def queue_blame(agent: AgentContext, round_id: int, member: str, reason: str, evidence: bytes = b"") -> None:
    """Record a detection to be reported on chain (idempotent per round, member, reason, evidence)."""
    key = f"blame/{round_id}/{member}/{reason}/{evidence.hex()}"
    if agent.store.get_json(key) is None and agent.store.get_json(key + "/sent") is None:
        records.save(agent.store, key, Blame(round_id, member, reason, evidence.hex()))
        log.warning("round %d: %s caught: %s", round_id, agent.names.describe(member), reason)


class Disputes:
    """Complaints this agent files, verdicts it gives and blame it reports."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "ComplaintFiled": self._on_complaint_filed,
            "ComplaintJudged": self._on_complaint_judged,
            "MemberExcluded": self._on_member_excluded,
            "MemberBlamed": self._on_member_blamed,
        }

    def step(self) -> None:
        for doc in self.agent.rounds():
            if doc.my_index is not None and doc.status == stages.ROUND_FUSING:
                self._complain(doc)
                self._judge(doc)
        self._send_blames()

    # ------------------------------------------------------------------ events

    def _on_complaint_filed(self, event: ChainEvent) -> None:
        args = event.args
        doc = self.agent.round_doc(int(args["roundId"]))
        if doc is None:
            return
        accuser, sender = to_checksum_address(args["accuser"]), to_checksum_address(args["sender"])
        judges = int(args["judges"])
        log.warning(
            "round %d: %s complains about the posting of %s",
            doc.round_id,
            self.agent.names.describe(accuser),
            self.agent.names.describe(sender),
        )
        if judges == 0:
            return  # the key was not the committed one: the contract excluded both
        doc.complaint = [accuser, sender, bytes(args["postingKey"]).hex()]
        doc.judged = doc.my_index is None or not judges >> doc.my_index & 1
        doc.fused_over = -1  # the contract dropped every fused commitment
        self.agent.save_round(doc)

    def _on_complaint_judged(self, event: ChainEvent) -> None:
        log.info(
            "round %d: judge %s finds %s",
            int(event.args["roundId"]),
            to_checksum_address(event.args["judge"]),
            "the sender at fault" if event.args["senderAtFault"] else "the complaint false",
        )

    def _on_member_excluded(self, event: ChainEvent) -> None:
        args = event.args
        doc = self.agent.round_doc(int(args["roundId"]))
        if doc is None:
            return
        member = to_checksum_address(args["member"])
        reason = stages.EXCLUSION_REASONS[int(args["reason"])]
        if member not in doc.excluded:
            doc.excluded.append(member)
        doc.exclusions.append({"member": member, "reason": reason})
        doc.contributors = int(args["contributors"])
        doc.complaint = []
        doc.fused_over = -1
        self.agent.save_round(doc)
        log.warning("round %d: %s excluded: %s", doc.round_id, self.agent.names.describe(member), reason)

    def _on_member_blamed(self, event: ChainEvent) -> None:
        args = event.args
        doc = self.agent.round_doc(int(args["roundId"]))
        if doc is None:
            return
        blame = {
            "member": to_checksum_address(args["member"]),
            "reason": stages.BLAME_REASONS[int(args["reason"])],
            "by": to_checksum_address(args["reporter"]),
        }
        doc.blames.append(blame)
        self.agent.save_round(doc)
        log.warning(
            "round %d: %s blamed by %s: %s", doc.round_id, blame["member"], blame["by"], blame["reason"]
        )

    # ------------------------------------------------------------------ actions

    def _complain(self, doc: RoundDoc) -> None:
        """File the next complaint about a contributor whose share did not open."""
        if doc.complaint or self.agent.address in doc.excluded:
            return
        contributors = doc.mask_members(doc.contributors)
        pending = [s for s in doc.invalid if s not in doc.reported and s in contributors]
        if not pending:
            return
        sender = pending[0]
        pairwise = self.agent.epoch_keys(doc.epoch).get(sender)
        table = self.agent.store.get_json(f"round/{doc.round_id}/keytable/{sender}")
        if pairwise is None or table is None:
            raise ProtocolError(f"round {doc.round_id}: no key or key table to complain about {sender}")
        key = message_key(pairwise, self.agent.ctx, doc.round_id, sender, self.agent.address)
        call = self.agent.contracts.exchange.functions.complain(
            doc.round_id, sender, key, [bytes.fromhex(word) for word in table]
        )
        try:
            self.agent.enclave_tx.send(call, label=f"complain-{doc.round_id}")
        except ContractRevert as exc:
            if exc.error_name == ShareExchangeError.RoundComplaintPending:
                return  # another complaint is being judged: try again later
            if exc.error_name not in (
                ShareExchangeError.RoundSenderExcluded,
                ShareExchangeError.RoundUnexpectedState,
                ShareExchangeError.RoundNothingPosted,
            ):
                raise
        doc.reported.append(sender)
        self.agent.save_round(doc)
        log.warning(
            "round %d: complained about the posting of %s, revealing its message key", doc.round_id, sender
        )

    def _judge(self, doc: RoundDoc) -> None:
        if not doc.complaint or doc.judged:
            return
        accuser, sender, key = doc.complaint
        payload = self.agent.store.get_blob(f"round/{doc.round_id}/payload/{sender}")
        # A posting this enclave never saw complete cannot open: the sender is at fault.
        at_fault = payload is None or sender_at_fault(
            doc, sender, accuser, payload, bytes.fromhex(key), self.agent.ctx
        )
        self.agent.send_or_done(
            self.agent.contracts.exchange.functions.judgeComplaint(doc.round_id, at_fault),
            f"judge-{doc.round_id}",
            ShareExchangeError.RoundAlreadyJudged,
            ShareExchangeError.RoundNoComplaint,
            ShareExchangeError.RoundUnexpectedState,
        )
        doc.judged = True
        self.agent.save_round(doc)
        log.warning(
            "round %d: judged the complaint of %s: %s",
            doc.round_id,
            accuser,
            f"{sender}'s share is invalid" if at_fault else f"{sender}'s share opens, the complaint is false",
        )

    def _send_blames(self) -> None:
        for key in self.agent.store.keys("blame/"):
            if key.endswith("/sent"):
                continue
            blame = records.load(self.agent.store, Blame, key)
            if blame is None:
                continue
            reason = stages.BLAME_REASONS.index(blame.reason)
            self.agent.send_or_done(
                self.agent.contracts.exchange.functions.reportMisbehaviour(
                    blame.round, blame.member, reason, bytes.fromhex(blame.evidence)
                ),
                f"blame-{blame.round}",
                ShareExchangeError.RoundAlreadyBlamed,
            )
            with self.agent.store.transaction():
                self.agent.store.delete_json(key)
                self.agent.store.put_json(key + "/sent", True)
            log.warning("round %s: blamed %s on chain: %s", blame.round, blame.member, blame.reason)
