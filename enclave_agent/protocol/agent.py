"""The enclave agent: one process per organisation, meeting the others only
through the chain.

Each loop iteration (``step``) first applies new chain events to the persisted
state (one SQLite transaction per event, so a replay never applies an event
twice), then reconciles: for the current stage it performs whatever chain action
is still missing, checking the chain first so that a restart repeats nothing.

Stages and their one handler each (see ``stages``)::

    UNREGISTERED/REGISTERING  _register        attest, operator submits the quote
    ATTESTED                  _synchronise     verify every peer, derive keys, post digest
    SYNCHRONISED              _take_part       post shares, open, fuse, commit, deadlines
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract.contract import ContractFunction

from enclave_agent.chain import ChainEvent, Contracts, ErrorDecoder, EventFollower, TxSender, connect
from enclave_agent.chain.manifest import Manifest, load_manifest
from enclave_agent.config import AgentConfig
from enclave_agent.crypto.aead import PairContext, decrypt, derive_pairwise_key, encrypt
from enclave_agent.crypto.fixed_point import encode
from enclave_agent.errors import (
    AttestationError,
    ChainError,
    ConfigError,
    ContractRevert,
    CryptoError,
    EnclaveAgentError,
    ProtocolError,
)
from enclave_agent.gateway.scoring import partial_score, partial_statistic
from enclave_agent.model.federated import ModelSpec
from enclave_agent.model.logistic import joint_scaling, standardise
from enclave_agent.protocol import queries, reveal, stages
from enclave_agent.protocol.inputs import InputNotReady, resolve_input
from enclave_agent.protocol.membership import MemberRecord, MembershipView
from enclave_agent.protocol.rounds import (
    RoundContext,
    RoundDoc,
    build_posting,
    fuse,
    missing_senders,
    open_posting,
)
from enclave_agent.store import Store
from enclave_agent.tee.attestation_service import request_quote
from enclave_agent.tee.backend import TeeBackend
from enclave_agent.tee.measure import DEFAULT_LOCK, PACKAGE_DIR
from enclave_agent.tee.quote import ROLE_NAMES, Quote, verify_quote
from enclave_agent.tee.simulated import SimulatedTee

log = logging.getLogger(__name__)

MIN_ENCLAVE_BALANCE = 10**18 // 2
FUNDING = 10**18

# Exit codes of `enclave-agent run` (documented in docs/error_codes.md).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_REVOKED = 4


class AgentRefused(EnclaveAgentError):
    """The registry refused this agent (for example: its code measurement)."""


class AgentRevoked(EnclaveAgentError):
    """This agent's membership was revoked."""


def _elements(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)


def _hex_mask(mask: int) -> str:
    return hex(mask)


class Agent:
    """A provider or gateway enclave agent."""

    def __init__(self, config: AgentConfig, *, tee: TeeBackend | None = None) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.tee = tee or SimulatedTee(config.state_dir)
        self.keys = self.tee.load_or_create_keys()
        self.address: str = self.keys.address
        self.measurement = self.tee.measurement()
        self.store = Store(config.state_dir / "agent.sqlite3")
        self.manifest: Manifest = load_manifest(config.manifest)
        rpc_url = config.rpc_url or self.manifest.rpc_url
        self.w3 = connect(rpc_url)
        self.chain_id = int(self.w3.eth.chain_id)
        if self.chain_id != self.manifest.chain_id:
            raise ConfigError(
                f"{config.manifest}: chain id {self.manifest.chain_id} but {rpc_url} is chain {self.chain_id}"
            )
        self.contracts = Contracts(self.w3, self.manifest)
        self.registry_address = to_checksum_address(self.contracts.registry.address)
        self.exchange_address = to_checksum_address(self.contracts.exchange.address)
        self.gateway_address = to_checksum_address(self.contracts.gateway.address)
        decoder = ErrorDecoder.from_manifest(self.manifest)
        self.enclave_tx = TxSender(self.w3, self.keys.account, decoder, store=self.store)
        self.operator: LocalAccount = _load_operator(config.operator_key_file)
        self.operator_tx = TxSender(self.w3, self.operator, decoder, store=self.store)
        self.follower = EventFollower(
            self.w3,
            self.contracts,
            self.store,
            start_block=self.manifest.deployed_block,
            confirmations=config.confirmations,
        )
        self.ctx = RoundContext(self.chain_id, self.exchange_address)
        self.stage = self.store.get_json("stage") or stages.UNREGISTERED
        self._handlers: dict[str, Callable[[ChainEvent], None]] = {
            "MemberRegistered": self._on_member_registered,
            "MemberRevoked": self._on_member_revoked,
            "EpochStarted": self._on_epoch_started,
            "EpochSynchronised": self._on_epoch_synchronised,
            "MembershipDigestPosted": self._on_digest_posted,
            "MeasurementApproved": self._on_measurement_approved,
            "MeasurementRevoked": self._on_measurement_revoked,
            "AttestationSignerSet": self._on_signer_set,
            "RoundOpened": self._on_round_opened,
            "SharesPosted": self._on_shares_posted,
            "PostingClosed": self._on_posting_closed,
            "ShareRejected": self._on_share_rejected,
            "FusedCommitted": self._on_fused_committed,
            "RoundCompleted": self._on_round_completed,
            "RoundAborted": self._on_round_aborted,
            "FusedRevealed": self._on_fused_revealed,
            "ModelRegistered": self._on_model_registered,
            "ModelRetired": self._on_model_retired,
            "RequestSubmitted": self._on_request_submitted,
        }
        self.extra_handlers: dict[str, Callable[[ChainEvent], None]] = {}
        log.info(
            "agent %s role=%s enclave=%s tee=%s measurement=0x%s",
            config.name,
            config.role,
            self.address,
            "SIMULATED" if self.tee.simulated else self.tee.name,
            self.measurement.hex(),
        )

    # ------------------------------------------------------------------ main loop

    def run(self, stop: threading.Event | None = None) -> int:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except (ChainError, ProtocolError) as exc:
                    # Transient (node hiccup, a race lost to another agent): the next
                    # step re-reads the chain and retries whatever is still missing.
                    log.error("step failed, retrying: %s", exc)
                    stop.wait(min(5.0, self.config.poll_interval * 10))
                stop.wait(self.config.poll_interval)
        except AgentRefused as exc:
            log.error("%s", exc)
            return EXIT_REFUSED
        except AgentRevoked as exc:
            log.error("%s", exc)
            return EXIT_REVOKED
        finally:
            self._write_status()
        return EXIT_OK

    def step(self) -> None:
        self.follower.process(self._handle)
        if self.stage == stages.REVOKED:
            raise AgentRevoked(f"membership of {self.address} was revoked; stopping")
        if self.stage in (stages.UNREGISTERED, stages.REGISTERING):
            self._register()
        if self.stage in (stages.ATTESTED, stages.VERIFIED, stages.SYNCHRONISED):
            self._synchronise()
            self._take_part()
        self._write_status()

    def _handle(self, event: ChainEvent) -> None:
        handler = self._handlers.get(event.name) or self.extra_handlers.get(event.name)
        if handler is not None:
            handler(event)

    def _set_stage(self, stage: str) -> None:
        if stage != self.stage:
            log.info("stage %s -> %s", self.stage, stage)
            self.stage = stage
            self.store.put_json("stage", stage)

    # ------------------------------------------------------------------ state helpers

    @property
    def view(self) -> MembershipView:
        return MembershipView.from_json(self.store.get_json("membership"))

    def _save_view(self, view: MembershipView) -> None:
        self.store.put_json("membership", view.to_json())

    def _round(self, round_id: int) -> RoundDoc | None:
        data = self.store.get_json(f"round/{round_id}")
        return RoundDoc.from_json(data) if data else None

    def _save_round(self, doc: RoundDoc) -> None:
        self.store.put_json(f"round/{doc.round_id}", doc.to_json())

    def rounds(self) -> list[RoundDoc]:
        docs = [self._round(int(k.split("/")[1])) for k in self.store.keys("round/") if k.count("/") == 1]
        return sorted((d for d in docs if d is not None), key=lambda d: d.round_id)

    def _seal_put(self, key: str, plaintext: bytes) -> None:
        self.store.put_blob(key, self.tee.seal(key, plaintext))

    def _unseal_get(self, key: str) -> bytes | None:
        blob = self.store.get_blob(key)
        return None if blob is None else self.tee.unseal(key, blob)

    def epoch_keys(self, epoch: int) -> dict[str, bytes]:
        raw = self._unseal_get(f"keys/{epoch}")
        if raw is None:
            return {}
        return {addr: bytes.fromhex(k) for addr, k in json.loads(raw).items()}

    def chain_now(self) -> int:
        """Chain time: the latest block, or the wall clock when the chain is idle."""
        latest = int(self.w3.eth.get_block("latest")["timestamp"])
        return max(latest, int(time.time()))

    def _try(self, fn: ContractFunction, label: str, *benign: str) -> bool:
        """Send an enclave transaction; a revert named in `benign` means it is done already."""
        try:
            self.enclave_tx.send(fn, label=label)
            return True
        except ContractRevert as exc:
            if exc.error_name in benign:
                log.debug("%s: %s (already done)", label, exc.error_name)
                return False
            raise

    # ------------------------------------------------------------------ membership events

    def _on_member_registered(self, event: ChainEvent) -> None:
        args = event.args
        view = self.view
        quote = Quote.from_event(args["quote"])
        record = MemberRecord(
            enclave=to_checksum_address(args["enclave"]),
            role=int(args["role"]),
            quote=quote,
            signature=bytes(args["signature"]),
        )
        view.member_registered(record)
        self._save_view(view)
        # Re-verification later uses the time of admission, not today's clock.
        timestamp = int(self.w3.eth.get_block(event.block_number)["timestamp"])
        self.store.put_json(f"admitted/{record.enclave}", timestamp)
        if record.enclave == self.address:
            log.info("registered as %s enclave %s", ROLE_NAMES.get(record.role, "?"), self.address)
            self._set_stage(stages.ATTESTED)

    def _on_member_revoked(self, event: ChainEvent) -> None:
        enclave = to_checksum_address(event.args["enclave"])
        view = self.view
        view.member_revoked(enclave)
        self._save_view(view)
        if enclave == self.address:
            log.warning("membership revoked by %s", event.args["by"])
            self._set_stage(stages.REVOKED)

    def _on_epoch_started(self, event: ChainEvent) -> None:
        view = self.view
        view.epoch = int(event.args["epoch"])
        self._save_view(view)
        if self.stage in (stages.VERIFIED, stages.SYNCHRONISED):
            self._set_stage(stages.ATTESTED)

    def _on_epoch_synchronised(self, event: ChainEvent) -> None:
        view = self.view
        view.synchronised_epoch = int(event.args["epoch"])
        self._save_view(view)
        if view.synchronised_epoch == view.epoch and self.stage == stages.VERIFIED:
            log.info("epoch %d synchronised: all members posted the same membership digest", view.epoch)
            self._set_stage(stages.SYNCHRONISED)

    def _on_digest_posted(self, event: ChainEvent) -> None:
        member = to_checksum_address(event.args["member"])
        if not event.args["matches"]:
            log.warning(
                "member %s posted a mismatching membership digest for epoch %s", member, event.args["epoch"]
            )
        if member == self.address:
            self.store.put_json(f"sync/{int(event.args['epoch'])}", {"posted": True})

    def _on_measurement_approved(self, event: ChainEvent) -> None:
        view = self.view
        view.measurement_approved(int(event.args["role"]), bytes(event.args["measurement"]))
        self._save_view(view)

    def _on_measurement_revoked(self, event: ChainEvent) -> None:
        view = self.view
        view.measurement_revoked(int(event.args["role"]), bytes(event.args["measurement"]))
        self._save_view(view)

    def _on_signer_set(self, event: ChainEvent) -> None:
        view = self.view
        view.signer_set(str(event.args["signer"]), bool(event.args["trusted"]))
        self._save_view(view)

    # ------------------------------------------------------------------ stage: register

    def _register(self) -> None:
        member = self.contracts.registry.functions.member(self.address).call()
        if member[1]:  # active: the MemberRegistered event will move us on
            return
        self._set_stage(stages.REGISTERING)
        self._ensure_funded()
        quote, signature = request_quote(
            self.config.attestation_url,
            role=self.config.role_id,
            operator=self.operator.address,
            enclave=self.address,
            x25519_key=self.keys.x25519_public,
            chain_id=self.chain_id,
            registry=self.registry_address,
            code_dir=PACKAGE_DIR,
            lock_file=DEFAULT_LOCK,
        )
        if quote.measurement != self.measurement:
            raise AgentRefused(
                f"attestation service measured 0x{quote.measurement.hex()}, "
                f"this enclave measured 0x{self.measurement.hex()}"
            )
        try:
            self.operator_tx.send(
                self.contracts.registry.functions.register(quote.as_tuple(), signature), label="register"
            )
        except ContractRevert as exc:
            if exc.error_name in ("RegistryMeasurementNotApproved", "RegistryMeasurementMismatch"):
                raise AgentRefused(self._refusal_message(exc)) from exc
            raise
        log.info(
            "registration submitted for enclave %s (quote nonce 0x%s)", self.address, quote.nonce.hex()[:16]
        )

    def _refusal_message(self, exc: ContractRevert) -> str:
        view = self.view
        role = self.config.role_id
        active = {m.quote.measurement for m in view.of_role(role)}
        approved = view.approved.get(role, set())
        consortium = ", ".join(f"0x{m.hex()}" for m in sorted(active or approved)) or "none"
        return (
            f"registration refused ({exc.error_name}): "
            f"this agent's measurement is 0x{self.measurement.hex()}, "
            f"the consortium's {ROLE_NAMES[role]} measurement is {consortium}"
        )

    def _ensure_funded(self) -> None:
        balance = self.w3.eth.get_balance(self.keys.account.address)
        if balance >= MIN_ENCLAVE_BALANCE:
            return
        self.operator_tx.transfer(self.address, FUNDING, label="fund-enclave")
        log.info("operator funded enclave account %s", self.address)

    # ------------------------------------------------------------------ stage: synchronise

    def _synchronise(self) -> None:
        view = self.view
        if view.member(self.address) is None or view.epoch == 0:
            return
        sync = self.store.get_json(f"sync/{view.epoch}") or {}
        if sync.get("posted"):
            if self.stage == stages.ATTESTED:
                self._set_stage(stages.VERIFIED)
            if view.synchronised_epoch == view.epoch and self.stage == stages.VERIFIED:
                self._set_stage(stages.SYNCHRONISED)
            return
        if sync.get("refused"):
            return
        try:
            self._verify_members(view)
        except AttestationError as exc:
            log.error("epoch %d: refusing to synchronise: %s", view.epoch, exc)
            self.store.put_json(f"sync/{view.epoch}", {"refused": str(exc)})
            return
        ctx = PairContext(self.chain_id, self.registry_address, view.epoch)
        keys = {
            m.enclave: derive_pairwise_key(
                self.keys.x25519_private, m.quote.x25519_key, self.address, m.enclave, ctx
            ).hex()
            for m in view.members
            if m.enclave != self.address
        }
        self._seal_put(f"keys/{view.epoch}", json.dumps(keys).encode())
        digest = view.digest(self.chain_id, self.registry_address)
        sent = self._try(
            self.contracts.registry.functions.postMembershipDigest(view.epoch, digest),
            f"digest-{view.epoch}",
            "RegistryDigestAlreadyPosted",
            "RegistryWrongEpoch",
        )
        if sent:
            log.info(
                "epoch %d: verified %d members, derived %d pairwise keys, posted digest 0x%s",
                view.epoch,
                len(view.members),
                len(keys),
                digest.hex()[:16],
            )
        self.store.put_json(f"sync/{view.epoch}", {"posted": True})
        self._set_stage(stages.VERIFIED)

    def _verify_members(self, view: MembershipView) -> None:
        for m in view.members:
            admitted = self.store.get_json(f"admitted/{m.enclave}") or 0
            try:
                verify_quote(
                    m.quote,
                    m.signature,
                    trusted_signers=view.signers,
                    approved_measurements=view.approved.get(m.role, set()),
                    expected_measurement=self.measurement,
                    chain_id=self.chain_id,
                    registry=self.registry_address,
                    now=int(admitted),
                    expected_role=m.role,
                )
            except AttestationError as exc:
                raise type(exc)(f"peer {m.enclave}: {exc}") from exc

    # ------------------------------------------------------------------ round events

    def _on_round_opened(self, event: ChainEvent) -> None:
        doc = RoundDoc.from_event(event.args, self.address)
        if doc.my_index is None:
            self._save_round(doc)
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
        self._save_round(doc)

    def _on_shares_posted(self, event: ChainEvent) -> None:
        args = event.args
        doc = self._round(int(args["roundId"]))
        sender = to_checksum_address(args["sender"])
        if doc is None or doc.my_index is None or sender == self.address:
            return
        index, count = int(args["chunkIndex"]), int(args["chunkCount"])
        prefix = f"round/{doc.round_id}/chunks/{sender}"
        self.store.put_blob(f"{prefix}/{index}", bytes(args["payload"]))
        if index + 1 < count:
            return
        payload = b"".join(self.store.get_blob(f"{prefix}/{i}") or b"" for i in range(count))
        key = self.epoch_keys(doc.epoch).get(sender)
        try:
            if key is None:
                raise ProtocolError(f"no pairwise key with {sender} for epoch {doc.epoch}")
            share = open_posting(doc, sender, payload, self.address, key, self.ctx)
        except (CryptoError, ProtocolError) as exc:
            log.warning("round %d: share from %s rejected: %s", doc.round_id, sender, type(exc).__name__)
            doc.invalid.append(sender)
        else:
            self._seal_put(f"round/{doc.round_id}/recv/{sender}", share.astype("<u8").tobytes())
            doc.received.append(sender)
            log.info("round %d: opened share from %s", doc.round_id, sender)
        for i in range(count):
            self.store.delete_blob(f"{prefix}/{i}")
        self._save_round(doc)

    def _on_posting_closed(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_FUSING
        doc.contributors = int(event.args["contributors"])
        self._save_round(doc)
        if doc.my_index is not None:
            log.info("round %d: posting closed, contributors %s", doc.round_id, _hex_mask(doc.contributors))

    def _on_share_rejected(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        if doc is None:
            return
        sender = to_checksum_address(event.args["sender"])
        doc.excluded.append(sender)
        if doc.status == stages.ROUND_FUSING:
            doc.contributors = int(event.args["contributors"])
        self._save_round(doc)
        log.warning("round %d: shares of %s rejected by %s", doc.round_id, sender, event.args["reporter"])

    def _on_fused_committed(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        if doc is None:
            return
        if to_checksum_address(event.args["member"]) == self.address:
            doc.fused_over = int(event.args["contributors"])
            self._save_round(doc)

    def _on_round_completed(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_COMPLETED
        doc.contributors = int(event.args["contributors"])
        doc.holders = int(event.args["holders"])
        self._save_round(doc)
        log.info(
            "round %d completed: contributors %s, holders %s",
            doc.round_id,
            _hex_mask(doc.contributors),
            _hex_mask(doc.holders),
        )

    def _on_round_aborted(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        if doc is None:
            return
        doc.status = stages.ROUND_ABORTED
        doc.abort_reason = stages.ABORT_REASONS[int(event.args["reason"])]
        doc.culprits = [to_checksum_address(c) for c in event.args["culprits"]]
        self._save_round(doc)
        log.warning(
            "round %d aborted: %s; members: %s",
            doc.round_id,
            doc.abort_reason,
            ", ".join(doc.culprits) or "-",
        )

    # ------------------------------------------------------------------ stage: take part

    def _take_part(self) -> None:
        docs = self.rounds()
        active = [d for d in docs if not d.is_final and d.my_index is not None]
        if active:
            now = self.chain_now()
            for doc in active:
                self._advance_round(doc, now)
        for doc in docs:
            if doc.needs_reveal:
                self._reveal(doc)
        self._post_answers()

    def _advance_round(self, doc: RoundDoc, now: int) -> None:
        exchange = self.contracts.exchange.functions
        rid = doc.round_id
        if doc.status == stages.ROUND_POSTING and now <= doc.posting_deadline and not doc.unable:
            self._post_shares(doc)
        for sender in [s for s in doc.invalid if s not in doc.reported]:
            self._try(
                exchange.reportInvalidShare(rid, sender),
                f"report-{rid}",
                "RoundUnexpectedState",
                "RoundSenderExcluded",
            )
            log.warning("round %d: reported invalid share from %s", rid, sender)
            doc.reported.append(sender)
            self._save_round(doc)
        if doc.status == stages.ROUND_FUSING:
            self._fuse(doc)
        if doc.status == stages.ROUND_POSTING and now > doc.posting_deadline:
            self._try(
                exchange.closePosting(rid),
                f"close-{rid}",
                "RoundUnexpectedState",
                "RoundPostingStillOpen",
            )
        if now > doc.deadline:
            self._try(
                exchange.finalize(rid),
                f"finalize-{rid}",
                "RoundUnexpectedState",
            )

    def _post_shares(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        stored = self.store.get_json(f"round/{rid}/posting")
        if stored is None:
            keys = self.epoch_keys(doc.epoch)
            try:
                values = resolve_input(self.config, doc.tag, self.aggregate)
                kept, chunks, commitment = build_posting(doc, values, keys, self.ctx)
            except InputNotReady as exc:
                log.debug("round %d: input not ready: %s", rid, exc)
                return
            except (ProtocolError, CryptoError, KeyError) as exc:
                reason = f"missing pairwise key {exc}" if isinstance(exc, KeyError) else str(exc)
                log.error("round %d: cannot contribute: %s", rid, reason)
                doc.unable = reason
                self._save_round(doc)
                return
            # Sealed and stored before anything is posted: a restart re-posts these
            # exact ciphertexts and never a second, different share set.
            with self.store.transaction():
                self._seal_put(f"round/{rid}/kept", kept.astype("<u8").tobytes())
                self.store.put_json(
                    f"round/{rid}/posting",
                    {"commitment": commitment.hex(), "chunks": [c.hex() for c in chunks]},
                )
            stored = self.store.get_json(f"round/{rid}/posting")
        assert stored is not None
        chunks = [bytes.fromhex(c) for c in stored["chunks"]]
        commitment = bytes.fromhex(stored["commitment"])
        done = int(self.contracts.exchange.functions.chunksPosted(rid, self.address).call())
        for i in range(done, len(chunks)):
            self.enclave_tx.send(
                self.contracts.exchange.functions.postShares(rid, i, len(chunks), commitment, chunks[i]),
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
        if doc.fused_over == doc.contributors or self.address in doc.excluded:
            return
        if missing_senders(doc, self.address) or doc.contributors == 0:
            return
        kept_raw = self._unseal_get(f"round/{rid}/kept")
        received = {}
        for sender in doc.mask_members(doc.contributors):
            raw = self._unseal_get(f"round/{rid}/recv/{sender}")
            if raw is not None:
                received[sender] = _elements(raw)
        fused = fuse(doc, None if kept_raw is None else _elements(kept_raw), received)
        salt = self._unseal_get(f"round/{rid}/salt")
        if salt is None:
            salt = secrets.token_bytes(32)
            self._seal_put(f"round/{rid}/salt", salt)
        fused_bytes = fused.astype("<u8").tobytes()
        commitment = keccak(salt + fused_bytes)
        self._seal_put(f"round/{rid}/fused", fused_bytes)
        self.store.put_json(f"round/{rid}/fused_over", doc.contributors)
        self._try(
            self.contracts.exchange.functions.postFused(rid, commitment, doc.contributors),
            f"fused-{rid}",
            "RoundAlreadyFused",
        )
        doc.fused_over = doc.contributors
        self._save_round(doc)
        log.info("round %d: fused %d shares, committed 0x%s", rid, len(received) + 1, commitment.hex()[:16])

    def fused_share(self, round_id: int) -> np.ndarray | None:
        raw = self._unseal_get(f"round/{round_id}/fused")
        return None if raw is None else _elements(raw)

    # ------------------------------------------------------------------ reveal (Intermediate rounds)

    def aggregate(self, round_id: int) -> np.ndarray | None:
        """The decoded aggregate of an Intermediate round, inside this enclave only."""
        doc = self._round(round_id)
        raw = self._unseal_get(f"round/{round_id}/aggregate")
        if doc is None or raw is None:
            return None
        return reveal.aggregate_values(doc, _elements(raw))

    def _reveal(self, doc: RoundDoc) -> None:
        rid = doc.round_id
        if not doc.revealed and doc.is_holder(self.address):
            fused = self.fused_share(rid)
            if fused is None:
                return
            payload = reveal.build_reveal(doc, fused, self.epoch_keys(doc.epoch), self.ctx)
            self._try(
                self.contracts.exchange.functions.revealFused(rid, payload),
                f"reveal-{rid}",
                "RoundAlreadyRevealed",
            )
            log.info("round %d: revealed my fused share to the other enclaves", rid)
            doc.revealed = True
            self._save_round(doc)
        elif not doc.is_holder(self.address) and not doc.revealed:
            doc.revealed = True  # nothing to reveal
            self._save_round(doc)
        self._try_reconstruct(doc)

    def _on_fused_revealed(self, event: ChainEvent) -> None:
        doc = self._round(int(event.args["roundId"]))
        sender = to_checksum_address(event.args["member"])
        if doc is None or doc.my_index is None or sender == self.address or sender in doc.reveals:
            return
        key = self.epoch_keys(doc.epoch).get(sender)
        try:
            if key is None:
                raise ProtocolError(f"no pairwise key with {sender} for epoch {doc.epoch}")
            share = reveal.open_reveal(doc, sender, bytes(event.args["payload"]), self.address, key, self.ctx)
        except (CryptoError, ProtocolError) as exc:
            log.warning("round %d: reveal from %s rejected: %s", doc.round_id, sender, type(exc).__name__)
            return
        self._seal_put(f"round/{doc.round_id}/reveal/{sender}", share.astype("<u8").tobytes())
        doc.reveals.append(sender)
        self._save_round(doc)
        self._try_reconstruct(doc)

    def _try_reconstruct(self, doc: RoundDoc) -> None:
        if doc.aggregate_ready:
            return
        shares = {}
        for sender in doc.reveals:
            raw = self._unseal_get(f"round/{doc.round_id}/reveal/{sender}")
            if raw is not None:
                shares[sender] = _elements(raw)
        own = self.fused_share(doc.round_id)
        if own is not None and doc.is_holder(self.address):
            shares[self.address] = own
        aggregate = reveal.reconstruct(doc, shares)
        if aggregate is None:
            return
        self._seal_put(f"round/{doc.round_id}/aggregate", aggregate.astype("<u8").tobytes())
        doc.aggregate_ready = True
        self._save_round(doc)
        log.info("round %d: aggregate reconstructed inside the enclave", doc.round_id)

    # ------------------------------------------------------------------ models and inference (provider side)

    def _on_model_registered(self, event: ChainEvent) -> None:
        args = event.args
        self.store.put_json(
            f"model/{int(args['modelId'])}",
            {
                "id": int(args["modelId"]),
                "round_id": int(args["roundId"]),
                "kind": stages.OUTPUT_KINDS[int(args["kind"])],
                "fee": int(args["fee"]),
                "name": str(args["name"]),
                "metadata": str(args["metadata"]),
                "active": True,
            },
        )

    def _on_model_retired(self, event: ChainEvent) -> None:
        key = f"model/{int(event.args['modelId'])}"
        model = self.store.get_json(key)
        if model is not None:
            model["active"] = False
            self.store.put_json(key, model)

    def models(self) -> list[dict[str, Any]]:
        docs = [self.store.get_json(k) for k in self.store.keys("model/")]
        return sorted((d for d in docs if d), key=lambda d: int(d["id"]))

    def _on_request_submitted(self, event: ChainEvent) -> None:
        """A provider answers only requests the chain recorded: this event is the only way in."""
        if self.config.role != "provider":
            return
        args = event.args
        request_id = int(args["requestId"])
        model = self.store.get_json(f"model/{int(args['modelId'])}")
        doc = self._round(int(model["round_id"])) if model else None
        if model is None or doc is None or not doc.is_holder(self.address):
            return
        gateway = to_checksum_address(args["gateway"])
        try:
            epoch, entries = queries.decode_query_payload(bytes(args["encryptedQuery"]))
            key = self.epoch_keys(epoch).get(gateway)
            if key is None or self.address not in entries:
                raise ProtocolError(f"no query for {self.address} under a key of epoch {epoch}")
            ad = queries.query_ad(
                self.chain_id, self.gateway_address, bytes(args["requestDigest"]), gateway, self.address
            )
            query = queries.Query.from_bytes(decrypt(key, entries[self.address], ad))
            values = self._partial(model, doc, query)
        except (CryptoError, ProtocolError) as exc:
            log.warning("request %d: cannot answer: %s", request_id, exc)
            return
        answer_ad = queries.partial_ad(self.chain_id, self.gateway_address, request_id, self.address, gateway)
        ciphertext = encrypt(key, queries.encode_partial(values), answer_ad)
        self.store.put_json(f"answer/{request_id}", ciphertext.hex())

    def _partial(self, model: dict[str, Any], doc: RoundDoc, query: queries.Query) -> list[int]:
        share = self.fused_share(doc.round_id)
        if share is None:
            raise ProtocolError(f"no fused share of round {doc.round_id}")
        metadata = queries.parse_metadata(model["metadata"])
        features = len(metadata["features"])
        if model["kind"] == "statistic":
            if query.kind != queries.KIND_STATISTIC:
                raise ProtocolError("a statistic answers statistic queries only")
            return list(partial_statistic(share, query.column, features, doc.modulus))
        if query.kind != queries.KIND_SCORE or len(query.x) != features:
            raise ProtocolError(f"a score query needs {features} features")
        spec = ModelSpec.from_metadata(model["metadata"])
        stats = self.aggregate(spec.stats_round)
        if stats is None:
            raise ProtocolError(f"joint scaling of round {spec.stats_round} is not in this enclave")
        mean, std = joint_scaling(stats, features)
        z = standardise(np.asarray([query.x]), mean, std)[0]
        return list(partial_score(share, encode(z, doc.frac_bits, doc.modulus), doc.frac_bits, doc.modulus))

    def _post_answers(self) -> None:
        for key in self.store.keys("answer/"):
            ciphertext = self.store.get_json(key)
            request_id = int(key.split("/")[1])
            self._try(
                self.contracts.gateway.functions.postPartial(request_id, bytes.fromhex(str(ciphertext))),
                f"partial-{request_id}",
                "InferencePartialAlreadyPosted",
                "InferenceUnexpectedState",
            )
            self.store.delete_json(key)
            log.info("request %d: posted encrypted partial result", request_id)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        view = self.view
        return {
            "name": self.config.name,
            "role": self.config.role,
            "tee": "SIMULATED" if self.tee.simulated else self.tee.name,
            "enclave": self.address,
            "operator": self.operator.address,
            "measurement": "0x" + self.measurement.hex(),
            "stage": self.stage,
            "epoch": view.epoch,
            "synchronised_epoch": view.synchronised_epoch,
            "members": len(view.members),
            "checkpoint": self.store.get_checkpoint("main"),
            "rounds": {
                str(d.round_id): {"tag": d.tag, "status": d.status, "participant": d.my_index is not None}
                for d in self.rounds()
            },
        }

    def _write_status(self) -> None:
        self.store.put_json("status", self.status())


def _load_operator(path: Path) -> LocalAccount:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"operator key file {path} cannot be read: {exc.strerror}") from exc
    try:
        account: LocalAccount = Account.from_key(key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"operator key file {path} does not hold a hex private key") from exc
    return account
