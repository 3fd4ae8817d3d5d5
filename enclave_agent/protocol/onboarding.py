"""Stages UNREGISTERED -> REGISTERING -> ATTESTED -> VERIFIED -> SYNCHRONISED:
attestation and registration (the operator submits the quote, the enclave key
proves possession), then re-verification of every member's quote, pairwise keys and
the membership digest for each epoch. A member that has posted its digest drops
those that did not by the epoch's deadline (``expireUnsynchronised``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from eth_utils.address import to_checksum_address

from enclave_agent.chain import ChainEvent
from enclave_agent.chain.transport import block_timestamp
from enclave_agent.crypto.aead import PairContext, derive_pairwise_key
from enclave_agent.errors import (
    AttestationError,
    ContractRevert,
    EnclaveAgentError,
)
from enclave_agent.onchain import ConsortiumRegistryError, RevokeReason
from enclave_agent.protocol import stages
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.evidence import (
    EvidenceJudge,
    EvidenceRegistration,
    prepare_registration,
    verify_member_evidence,
)
from enclave_agent.protocol.membership import MemberRecord, MembershipView
from enclave_agent.protocol.stages import MEMBER_STAGES, Stage
from enclave_agent.tee.anchor import block_time_on, recent_block_hash
from enclave_agent.tee.attestation_client import request_quote
from enclave_agent.tee.quote import ROLE_NAMES, Quote, sign_possession, verify_quote
from enclave_agent.tee.verifier_service import EvidenceRefusedByVerifier

log = logging.getLogger(__name__)

# Registry refusals that no retry can change: the agent stops (exit 3) naming them.
_MEASUREMENT_REFUSALS = (
    ConsortiumRegistryError.RegistryMeasurementNotApproved,
    ConsortiumRegistryError.RegistryMeasurementMismatch,
)
_ADMISSION_REFUSALS = (
    ConsortiumRegistryError.RegistryOrganisationNotAdmitted,
    ConsortiumRegistryError.RegistryRoleNotAllowed,
    ConsortiumRegistryError.RegistryEnclaveLimit,
    ConsortiumRegistryError.RegistryOrganisationCoolingDown,
    ConsortiumRegistryError.RegistryRoleFull,
)


class AgentRefused(EnclaveAgentError):
    """The registry refused this agent (for example: its code measurement)."""


class AgentRevoked(EnclaveAgentError):
    """This agent's membership was revoked."""


class AgentRecordMismatch(EnclaveAgentError):
    """The registry's record of this enclave holds another operator or X25519 key."""


# Every registration starts an epoch. When many members join at once (a consortium
# starting), posting a digest for each epoch would cost every member a transaction per
# epoch (n^2 in all) and every member an event per digest (n^3): a member posts its
# digest once the epoch has stood this long (unless its deadline is near).
DIGEST_SETTLE_SECONDS = 1.0


class Onboarding:
    """Registration and key synchronisation, driven by registry events."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent
        self._judge: EvidenceJudge | None = None
        self._epoch_seen = (0, 0.0)  # (epoch, monotonic time this agent first saw it)

    @property
    def judge(self) -> EvidenceJudge:
        """This agent's own verifiers and policy for its peers' hardware evidence."""
        if self._judge is None:
            self._judge = EvidenceJudge.from_config(self.agent.config.evidence)
        return self._judge

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "EvidenceRecorded": self._on_evidence_recorded,
            "MemberRegistered": self._on_member_registered,
            "MemberRevoked": self._on_member_revoked,
            "EpochStarted": self._on_epoch_started,
            "EpochSynchronised": self._on_epoch_synchronised,
            "SyncDeadlineExtended": self._on_sync_deadline_extended,
            "MembershipDigestPosted": self._on_digest_posted,
            "MeasurementApproved": self._on_measurement_approved,
            "MeasurementRevoked": self._on_measurement_revoked,
            "AttestationSignerSet": self._on_signer_set,
        }

    def step(self) -> None:
        stage = self.agent.stage
        if stage == Stage.REVOKED:
            raise AgentRevoked(f"membership of {self.agent.address} was revoked; stopping")
        if stage in (Stage.UNREGISTERED, Stage.REGISTERING, Stage.REFUSED):
            try:
                self._register()
            except AgentRefused:
                # Kept, so that the status the agent writes as it exits (3) says why; a
                # restart (once governance or the cool-down allows) registers again.
                self.agent.set_stage(Stage.REFUSED)
                raise
        if self.agent.stage in MEMBER_STAGES:
            self._synchronise()
        if self.agent.stage == Stage.VERIFIED:
            self._expire_laggards()

    def _on_evidence_recorded(self, event: ChainEvent) -> None:
        """Comes just before its ``MemberRegistered``: keep the evidence for that record."""
        args = event.args
        self.agent.store.put_json(
            f"evidence/{to_checksum_address(args['enclave'])}",
            {"type": int(args["evidenceType"]), "evidence": bytes(args["evidence"]).hex()},
        )

    def _on_member_registered(self, event: ChainEvent) -> None:
        args = event.args
        view = self.agent.view
        quote = Quote.from_event(args["quote"])
        enclave = to_checksum_address(args["enclave"])
        evidence: dict[str, Any] = {}
        if not bytes(args["signature"]):  # registered with hardware evidence
            evidence = self.agent.store.get_json(f"evidence/{enclave}") or {}
        record = MemberRecord(
            enclave=enclave,
            role=int(args["role"]),
            quote=quote,
            signature=bytes(args["signature"]),
            possession=bytes(args["possession"]),
            evidence_type=int(evidence.get("type", 0)),
            evidence=bytes.fromhex(evidence.get("evidence", "")),
        )
        if record.enclave == self.agent.address:
            self._check_own_record(quote)
        view.member_registered(record)
        self.agent.save_view(view)
        # Re-verification later uses the time of admission, not today's clock.
        timestamp = block_timestamp(self.agent.w3, event.block_number)
        self.agent.store.put_json(f"admitted/{record.enclave}", timestamp)
        if record.enclave == self.agent.address:
            log.info("registered as %s enclave %s", ROLE_NAMES.get(record.role, "?"), self.agent.address)
            self.agent.set_stage(Stage.ATTESTED)

    def _on_member_revoked(self, event: ChainEvent) -> None:
        enclave = to_checksum_address(event.args["enclave"])
        reason = int(event.args["reason"])
        view = self.agent.view
        view.member_revoked(enclave)
        self.agent.save_view(view)
        why = stages.REVOKE_REASONS[reason] if reason < len(stages.REVOKE_REASONS) else str(reason)
        if enclave != self.agent.address:
            log.info("member %s left (%s, by %s)", enclave, why, event.args["by"])
        elif reason == RevokeReason.UNSYNCHRONISED:
            # Dropped for not posting our digest in time: register again (the registry
            # refuses until the organisation's cool-down ends or governance reinstates it).
            log.warning("dropped for not synchronising epoch %d in time; registering again", view.epoch)
            self.agent.set_stage(Stage.UNREGISTERED)
        else:
            log.warning("membership revoked by %s (%s)", event.args["by"], why)
            self.agent.set_stage(Stage.REVOKED)

    def _on_epoch_started(self, event: ChainEvent) -> None:
        view = self.agent.view
        view.epoch = int(event.args["epoch"])
        view.sync_deadline = int(event.args["syncDeadline"])
        self.agent.save_view(view)
        if self.agent.stage in (Stage.VERIFIED, Stage.SYNCHRONISED):
            self.agent.set_stage(Stage.ATTESTED)

    def _on_sync_deadline_extended(self, event: ChainEvent) -> None:
        """Governance unpaused the registry: digests had no chance meanwhile."""
        view = self.agent.view
        if int(event.args["epoch"]) == view.epoch:
            view.sync_deadline = int(event.args["syncDeadline"])
            self.agent.save_view(view)

    def _on_epoch_synchronised(self, event: ChainEvent) -> None:
        view = self.agent.view
        view.synchronised_epoch = int(event.args["epoch"])
        self.agent.save_view(view)
        if view.synchronised_epoch == view.epoch and self.agent.stage == Stage.VERIFIED:
            log.info("epoch %d synchronised: all members posted the same membership digest", view.epoch)
            self.agent.set_stage(Stage.SYNCHRONISED)

    def _on_digest_posted(self, event: ChainEvent) -> None:
        member = to_checksum_address(event.args["member"])
        if not event.args["matches"]:
            log.warning(
                "member %s posted a mismatching membership digest for epoch %s", member, event.args["epoch"]
            )
        if member == self.agent.address:
            self.agent.store.put_json(f"sync/{int(event.args['epoch'])}", {"posted": True})

    def _on_measurement_approved(self, event: ChainEvent) -> None:
        view = self.agent.view
        view.measurement_approved(int(event.args["role"]), bytes(event.args["measurement"]))
        self.agent.save_view(view)

    def _on_measurement_revoked(self, event: ChainEvent) -> None:
        view = self.agent.view
        view.measurement_revoked(int(event.args["role"]), bytes(event.args["measurement"]))
        self.agent.save_view(view)

    def _on_signer_set(self, event: ChainEvent) -> None:
        view = self.agent.view
        view.signer_set(str(event.args["signer"]), bool(event.args["trusted"]))
        self.agent.save_view(view)

    # ------------------------------------------------------------------ stage: register

    def _register(self) -> None:
        member = self.agent.contracts.registry.functions.member(self.agent.address).call()
        if member[1]:  # active: the MemberRegistered event will move us on
            return
        self.agent.set_stage(Stage.REGISTERING)
        if not self.agent.tee.simulated:
            self._register_with_evidence()
            return
        quote, signature = request_quote(
            self.agent.config.attestation_url,
            role=self.agent.config.role_id,
            operator=self.agent.operator.address,
            enclave=self.agent.address,
            x25519_key=self.agent.keys.x25519_public,
            chain_id=self.agent.chain_id,
            registry=self.agent.registry_address,
        )
        if quote.measurement != self.agent.measurement:
            raise AgentRefused(
                f"attestation service vouches for measurement 0x{quote.measurement.hex()}, "
                f"this enclave measured 0x{self.agent.measurement.hex()}: run the agent of the "
                "service's build (or a service of this build that governance trusts)"
            )
        possession = sign_possession(quote, self.agent.keys.signing_key)
        # The registration itself funds the enclave account: nothing reveals the
        # address before the registry has bound it to this operator and these keys.
        funding = self.agent.funding.registration_value()
        try:
            self.agent.operator_tx.send(
                self.agent.contracts.registry.functions.register(quote.as_tuple(), signature, possession),
                label="register",
                value=funding,
            )
        except ContractRevert as exc:
            if exc.error_name in _MEASUREMENT_REFUSALS:
                raise AgentRefused(self._refusal_message(exc)) from exc
            if exc.error_name in _ADMISSION_REFUSALS:
                raise AgentRefused(
                    f"registration refused ({exc}): operator {self.agent.operator.address} "
                    "must belong to an admitted organisation allowed this role, within its "
                    "enclave limit (governance: enclave-agent org ...)"
                ) from exc
            raise
        log.info(
            "registration submitted for enclave %s (quote nonce 0x%s, funded %d wei)",
            self.agent.address,
            quote.nonce.hex()[:16],
            funding,
        )

    def _register_with_evidence(self) -> None:
        """Hardware TEE: evidence from the device, signed by the consortium's verifiers."""
        try:
            registration = self._prepare_evidence_registration()
        except EvidenceRefusedByVerifier as exc:
            raise AgentRefused(str(exc)) from exc  # exit 3, naming every rule and value
        funding = self.agent.funding.registration_value()
        try:
            self.agent.operator_tx.send(
                self.agent.contracts.registry.functions.registerWithEvidence(*registration.arguments()),
                label="registerWithEvidence",
                value=funding,
            )
        except ContractRevert as exc:
            if exc.error_name in _MEASUREMENT_REFUSALS + _ADMISSION_REFUSALS:
                raise AgentRefused(f"registration with evidence refused: {exc}") from exc
            raise
        log.info(
            "registration with %s evidence submitted for enclave %s (measurement 0x%s, %d verifiers)",
            self.agent.tee.name,
            self.agent.address,
            registration.quote.measurement.hex()[:16],
            len(registration.signatures),
        )

    def _prepare_evidence_registration(self) -> EvidenceRegistration:
        return prepare_registration(
            tee=self.agent.tee,
            judge=self.judge,
            verifier_urls=self.agent.config.evidence.verifier_urls,
            role=self.agent.config.role_id,
            operator=self.agent.operator.address,
            signing_key=self.agent.keys.signing_key,
            x25519_key=self.agent.keys.x25519_public,
            enclave=self.agent.address,
            chain_id=self.agent.chain_id,
            registry=self.agent.registry_address,
            challenge=recent_block_hash(self.agent.w3, self.agent.config.confirmations),
        )

    def _check_own_record(self, quote: Quote) -> None:
        """The registry's record of this enclave must carry our operator and X25519 key
        (the event and the stored record both); otherwise stop (exit 5)."""
        record = self.agent.contracts.registry.functions.member(self.agent.address).call()
        ours = (to_checksum_address(self.agent.operator.address), self.agent.keys.x25519_public)
        for what, found in (
            ("registration event", (quote.operator, quote.x25519_key)),
            ("registry record", (to_checksum_address(record[2]), bytes(record[4]))),
        ):
            if found != ours:
                raise AgentRecordMismatch(
                    f"the {what} of enclave {self.agent.address} names operator {found[0]} and "
                    f"X25519 key 0x{found[1].hex()[:16]}..., ours are {ours[0]} and "
                    f"0x{ours[1].hex()[:16]}...: refusing to act on a registration we did not make"
                )

    def _refusal_message(self, exc: ContractRevert) -> str:
        view = self.agent.view
        role = self.agent.config.role_id
        active = {m.quote.measurement for m in view.of_role(role)}
        approved = view.approved.get(role, set())
        consortium = ", ".join(f"0x{m.hex()}" for m in sorted(active or approved)) or "none"
        return (
            f"registration refused ({exc.error_name}): "
            f"this agent's measurement is 0x{self.agent.measurement.hex()}, "
            f"the consortium's {ROLE_NAMES[role]} measurement is {consortium}"
        )

    # ------------------------------------------------------------------ stage: synchronise

    def _synchronise(self) -> None:
        view = self.agent.view
        if view.member(self.agent.address) is None or view.epoch == 0:
            return
        sync = self.agent.store.get_json(f"sync/{view.epoch}") or {}
        if sync.get("posted"):
            if self.agent.stage == Stage.ATTESTED:
                self.agent.set_stage(Stage.VERIFIED)
            if view.synchronised_epoch == view.epoch and self.agent.stage == Stage.VERIFIED:
                self.agent.set_stage(Stage.SYNCHRONISED)
            return
        if sync.get("refused") or not self._settled(view):
            return
        try:
            self._verify_members(view)
        except AttestationError as exc:
            log.error("epoch %d: refusing to synchronise: %s", view.epoch, exc)
            self.agent.store.put_json(f"sync/{view.epoch}", {"refused": str(exc)})
            return
        ctx = PairContext(self.agent.chain_id, self.agent.registry_address, view.epoch)
        keys = {
            m.enclave: derive_pairwise_key(
                self.agent.keys.x25519_private, m.quote.x25519_key, self.agent.address, m.enclave, ctx
            ).hex()
            for m in view.members
            if m.enclave != self.agent.address
        }
        self.agent.seal_put(f"keys/{view.epoch}", json.dumps(keys).encode())
        digest = view.digest(self.agent.chain_id, self.agent.registry_address)
        sent = self.agent.send_or_done(
            self.agent.contracts.registry.functions.postMembershipDigest(view.epoch, digest),
            f"digest-{view.epoch}",
            ConsortiumRegistryError.RegistryDigestAlreadyPosted,
            ConsortiumRegistryError.RegistryWrongEpoch,
        )
        if sent:
            log.info(
                "epoch %d: verified %d members, derived %d pairwise keys, posted digest 0x%s",
                view.epoch,
                len(view.members),
                len(keys),
                digest.hex()[:16],
            )
        self.agent.store.put_json(f"sync/{view.epoch}", {"posted": True})
        self.agent.set_stage(Stage.VERIFIED)

    def _settled(self, view: MembershipView) -> bool:
        """Whether the epoch has stood long enough to post its digest."""
        now = time.monotonic()
        if self._epoch_seen[0] != view.epoch:
            self._epoch_seen = (view.epoch, now)
        if now - self._epoch_seen[1] >= DIGEST_SETTLE_SECONDS:
            return True
        return (
            bool(view.sync_deadline)
            and view.sync_deadline - self.agent.chain_now() < 10 * DIGEST_SETTLE_SECONDS
        )

    def _expire_laggards(self) -> None:
        """After the epoch's deadline, drop the members that never posted a matching
        digest (anyone may; we have posted ours). The registry starts the next epoch."""
        view = self.agent.view
        if view.synchronised_epoch == view.epoch or not view.sync_deadline:
            return
        if self.agent.chain_now() <= view.sync_deadline:
            return
        if self.agent.store.get_json(f"expired/{view.epoch}"):
            return
        try:
            sent = self.agent.send_or_done(
                self.agent.contracts.registry.functions.expireUnsynchronised(),
                f"expire-{view.epoch}",
                ConsortiumRegistryError.RegistryEpochSynchronised,
                ConsortiumRegistryError.RegistryNoMemberSynchronised,
            )
        except ContractRevert as exc:
            if exc.error_name != ConsortiumRegistryError.RegistrySyncStillOpen:
                raise
            # The deadline moved (an unpause extends it): the event will tell us the new one.
            log.info("epoch %d: its synchronisation deadline was extended; waiting", view.epoch)
            return
        self.agent.store.put_json(f"expired/{view.epoch}", True)
        if sent:
            log.warning("epoch %d: dropped the members that did not synchronise by its deadline", view.epoch)

    def _verify_members(self, view: MembershipView) -> None:
        for m in view.members:
            admitted = self.agent.store.get_json(f"admitted/{m.enclave}") or 0
            try:
                if m.evidence_type:
                    verify_member_evidence(
                        m,
                        self.judge,
                        approved_measurements=view.approved.get(m.role, set()),
                        chain_id=self.agent.chain_id,
                        registry=self.agent.registry_address,
                        now=int(admitted),
                        block_time=block_time_on(self.agent.w3),
                    )
                    continue
                verify_quote(
                    m.quote,
                    m.signature,
                    trusted_signers=view.signers,
                    approved_measurements=view.approved.get(m.role, set()),
                    expected_measurement=self.agent.measurement,
                    chain_id=self.agent.chain_id,
                    registry=self.agent.registry_address,
                    now=int(admitted),
                    expected_role=m.role,
                    possession=m.possession,
                )
            except AttestationError as exc:
                raise type(exc)(f"peer {m.enclave}: {exc}") from exc
