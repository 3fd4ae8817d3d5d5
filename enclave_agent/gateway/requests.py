"""The gateway's requests, one part of the gateway agent: it records a request on
chain with the query encrypted to every holder (``submit``), keeps the encrypted
partials the holders post, and each step combines what arrived, completes every
answered request in one ``completeRequests`` transaction and refunds what expired
unanswered. It alone completes requests; calls wait on its ``Completions``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.chain import ChainEvent
from enclave_agent.crypto.aead import decrypt, encrypt
from enclave_agent.errors import CryptoError, ProtocolError
from enclave_agent.gateway import auth, scoring
from enclave_agent.gateway.answering import Completions, Results
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.model.ranges import InputRange
from enclave_agent.protocol import queries, records
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.disputes import queue_blame
from enclave_agent.protocol.records import COMPLETED, REFUNDED, ModelRecord, RequestRecord
from enclave_agent.protocol.rounds import RoundDoc
from enclave_agent.protocol.stages import MEMBER_STAGES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A request whose answer is computed and committed to, ready to complete."""

    request: RequestRecord
    results: Results
    commitment: bytes
    partials: int
    checked: bool


class GatewayRequests:
    """Requests from submission to completion or refund (see the module docstring)."""

    def __init__(self, agent: AgentContext, metrics: Metrics, completions: Completions) -> None:
        self.agent = agent
        self.store = agent.store
        self.metrics = metrics
        self.completions = completions

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "PartialPosted": self._on_partial_posted,
            "ModelRangePublished": self._on_range_published,
            "RequestCompleted": self._on_request_closed,
            "RequestRefunded": self._on_request_closed,
        }

    def step(self) -> None:
        if self.is_ready():
            self._settle()

    # ------------------------------------------------------------------ reading

    def is_ready(self) -> bool:
        """Serving needs keys of a synchronised epoch, not the current one: while a new
        epoch synchronises (a member joins or is dropped), requests go out under the
        last synchronised epoch's keys, so clients see no gap."""
        if self.agent.stage not in MEMBER_STAGES:
            return False
        epoch = self.agent.view.synchronised_epoch
        return epoch != 0 and self.store.get_blob(f"keys/{epoch}") is not None

    def request(self, request_id: int) -> RequestRecord | None:
        return records.load_request(self.store, request_id)

    def result(self, request_id: int) -> Results | None:
        """The answered request's results, one per row."""
        raw = self.agent.unseal_get(f"request/{request_id}/result")
        return None if raw is None else [dict(r) for r in json.loads(raw)]

    def settled(self, request_id: int) -> tuple[bool, Results | None]:
        """(closed, its results): closed once answered (results), or refunded or not ours
        (None); raises InconsistentPartials for a request whose answer was refused."""
        results = self.result(request_id)
        if results is not None:
            return True, results
        request = self.request(request_id)
        if request is None or not request.pending:
            return True, None
        if request.inconsistent:
            raise scoring.InconsistentPartials(request.inconsistent)
        return False, None

    def model_round(self, model: ModelRecord) -> RoundDoc:
        doc = self.agent.round_doc(model.round_id)
        if doc is None:
            raise ProtocolError(f"round {model.round_id} of model {model.id} is unknown here")
        return doc

    def input_range(self, model: ModelRecord) -> InputRange | None:
        """The input range a score model answers exactly: per feature the smallest bound
        its holders published, once as many holders published as an answer needs (all
        for additive models, t for Shamir). None until then, or if they disagree on
        the encoding (logged)."""
        doc = self.agent.round_doc(model.round_id)
        if model.kind != "shared-model" or doc is None:
            return None
        holders = doc.mask_members(doc.holders)
        published = []
        for provider in holders:
            raw = self.store.get_json(f"range/{model.id}/{provider}")
            if raw is not None:
                published.append(InputRange.from_json(str(raw)))
        needed = len(holders) if scoring.is_additive(doc.modulus) else doc.threshold
        if not holders or len(published) < needed:
            return None
        try:
            return InputRange.agreed(published)
        except ProtocolError as exc:
            log.error("model %s: %s", model.id, exc)
            return None

    def rows_per_request(self, model: ModelRecord) -> int:
        """The most rows of ``model`` one on-chain request carries."""
        doc = self.model_round(model)
        features = len(queries.parse_metadata(model.metadata)["features"])
        return queries.rows_per_request(features, len(doc.mask_members(doc.holders)))

    # ------------------------------------------------------------------ submitting

    def submit(
        self,
        model: ModelRecord,
        signed: auth.SignedRequest,
        query: queries.Query,
        bounds: InputRange | None = None,
        encrypt_to: bytes | None = None,
    ) -> int:
        """Record one request (all of ``query``'s rows, as the client signed them) on
        chain with the query encrypted for every holder. A score query needs the
        model's input range (``bounds``), which the caller checked every row against.
        ``encrypt_to`` (the client's key for answers sealed end to end) is kept with the
        request, so that its answer can be fetched later sealed as it was asked."""
        agent = self.agent
        doc = self.model_round(model)
        if query.kind == queries.KIND_SCORE:
            if bounds is None:
                raise ProtocolError(f"model {model.id} has no input range yet")
            outside = [r for r, row in enumerate(query.rows) if bounds.violation(row) is not None]
            if outside:
                raise ProtocolError(f"row {outside[0]} is outside the model's input range")
        holders = doc.mask_members(doc.holders)
        digest = signed.digest(agent.chain_id, agent.gateway_address)
        # The last synchronised epoch: every member derived its keys for it, even while
        # a newer epoch (a member joining or being dropped) is still being synchronised.
        view = agent.view
        epoch = view.synchronised_epoch or view.epoch
        keys = agent.epoch_keys(epoch)
        plaintext = query.to_bytes()
        entries = []
        for provider in holders:
            if provider not in keys:
                raise ProtocolError(f"no pairwise key with holder {provider} in epoch {epoch}")
            ad = queries.query_ad(agent.chain_id, agent.gateway_address, digest, agent.address, provider)
            entries.append((provider, encrypt(keys[provider], plaintext, ad)))
        payload = queries.encode_query_payload(epoch, entries)
        receipt = agent.enclave_tx.send(
            agent.contracts.gateway.functions.submitRequest(signed.as_tuple(), signed.signature, payload),
            label=f"request-{model.id}",
        )
        event = agent.contracts.gateway.events.RequestSubmitted().process_receipt(receipt)[0]["args"]
        request = RequestRecord(
            id=int(event["requestId"]),
            model_id=model.id,
            kind=query.kind,
            rows=query.row_count,
            client=signed.client,
            holders=holders,
            epoch=epoch,
            query_bits=bounds.query_bits if bounds is not None else None,
            count_bound=bounds.count_bound if bounds is not None else None,
            deadline=int(event["deadline"]),
            submit_tx=receipt["transactionHash"].to_0x_hex(),
            gas={"submit": int(receipt["gasUsed"])},
            submitted_at=time.time(),
            encrypt_to=None if encrypt_to is None else encrypt_to.hex(),
        )
        records.save_request(self.store, request)
        # The providers may have answered while this thread waited for the receipt, and
        # the loop already processed their partials: it completes the request now, not
        # at the next block (there may be none) or poll interval.
        agent.wake()
        return request.id

    # ------------------------------------------------------------------ chain events

    def _on_partial_posted(self, event: ChainEvent) -> None:
        request_id = int(event.args["requestId"])
        provider = to_checksum_address(event.args["provider"])
        request = self.request(request_id)
        # A provider may answer in the very next block, before submit() has stored the
        # request it just recorded: keep the partial when the chain says this gateway
        # recorded the request (the contract checked the provider holds a share).
        if request is None and not self._recorded_here(request_id):
            self.metrics.partials_ignored += 1
            log.warning("ignored partial from %s for request %d: not one of ours", provider, request_id)
            return
        key = f"request/{request_id}/partial/{provider}"
        if (request is not None and provider not in request.holders) or self.store.get_blob(key) is not None:
            self.metrics.partials_ignored += 1
            log.warning(
                "ignored partial from %s for request %d: not a holder or a duplicate", provider, request_id
            )
            return
        self.store.put_blob(key, bytes(event.args["ciphertext"]))

    def _recorded_here(self, request_id: int) -> bool:
        gateway = self.agent.contracts.gateway.functions.requestInfo(request_id).call()[2]
        return bool(to_checksum_address(gateway) == self.agent.address)

    def _on_range_published(self, event: ChainEvent) -> None:
        """A holder's input range for a model (the contract checked it is a holder)."""
        model_id, provider = int(event.args["modelId"]), to_checksum_address(event.args["provider"])
        try:
            InputRange.from_json(str(event.args["range"]))
        except ProtocolError as exc:
            log.warning("ignored input range of model %d from %s: %s", model_id, provider, exc)
            return
        self.store.put_json(f"range/{model_id}/{provider}", str(event.args["range"]))

    def _on_request_closed(self, event: ChainEvent) -> None:
        request = self.request(int(event.args["requestId"]))
        if request is not None and request.pending:
            records.save_request(
                self.store,
                replace(request, status=COMPLETED if event.name == "RequestCompleted" else REFUNDED),
            )
            self.completions.resolve(request.id, self.result(request.id))

    # ------------------------------------------------------------------ settling

    def _settle(self) -> None:
        """Complete every request that can be, in one transaction; refund what expired
        unanswered."""
        pending = records.pending_requests(self.store)
        if not pending:
            return
        now: int | None = None  # chain time, asked only for a request not ready to complete
        ready: list[Prepared] = []
        for request_id in pending:
            request = self.request(request_id)
            if request is None or not request.pending:
                self.store.delete_json(f"pending/{request_id}")
                continue
            try:
                prepared = self._prepare(request)
            except scoring.InconsistentPartials as exc:
                self.completions.fail(request_id, exc)
                prepared = None  # refused: it expires unanswered and its fee is refunded
            if prepared is not None:
                ready.append(prepared)  # one that expired meanwhile is refunded by _complete
                continue
            now = self.agent.chain_now() if now is None else now
            if now > request.deadline:
                self._refund(request)
        if ready:
            self._complete(ready)

    def _refund(self, request: RequestRecord) -> None:
        """Refund an expired request's fee to its client (done already by anyone: fine)."""
        self.agent.send_or_done(
            self.agent.contracts.gateway.functions.refundExpired(request.id),
            f"refund-{request.id}",
            "InferenceUnexpectedState",
        )
        records.save_request(self.store, replace(self._latest(request), status=REFUNDED))
        self.completions.resolve(request.id, None)
        log.info("request %s expired unanswered; fee refunded to %s", request.id, request.client)

    def _latest(self, request: RequestRecord) -> RequestRecord:
        """The stored record (``_prepare`` may have noted why it was refused or withheld)."""
        return self.request(request.id) or request

    def _prepare(self, request: RequestRecord) -> Prepared | None:
        """Combine the partials of a pending request if enough arrived: its results (one
        per row) and their commitment, ready to complete; None while it waits, or if the
        answer must be withheld. Raises InconsistentPartials if it must be refused."""
        if request.inconsistent:
            raise scoring.InconsistentPartials(request.inconsistent)
        model = records.load_model(self.store, request.model_id)
        if model is None:
            raise ProtocolError(f"request {request.id}: model {request.model_id} is unknown here")
        doc = self.model_round(model)
        partials = self._open_partials(request, doc)
        additive = scoring.is_additive(doc.modulus)
        everyone = len(request.holders)
        # A Shamir request waits up to partial_grace for every holder's partial once t
        # arrived: the more partials, the more it checks (t + 1) and corrects (t + 2e).
        config = self.agent.config.gateway
        grace = config.partial_grace if config else 3.0
        waited = time.time() - request.submitted_at > grace
        if len(partials) < (everyone if additive or not waited else doc.threshold):
            return None
        try:
            combined = scoring.combine(partials, doc.modulus, additive, doc.threshold)
        except scoring.InconsistentPartials as exc:
            records.save_request(self.store, replace(request, inconsistent=str(exc)))
            self.metrics.count("inconsistent_partials")
            log.error("request %d: answer refused: %s", request.id, exc)
            raise
        for x in combined.wrong:
            provider = doc.participants[x - 1]
            self.metrics.count_wrong(provider, "corrected")
            queue_blame(self.agent, doc.round_id, provider, "wrong-partial", request.id.to_bytes(32, "big"))
        try:
            results = self._interpret(request, model, doc, combined.total)
        except ProtocolError as exc:
            # Never answer what may be wrong: the request expires and is refunded.
            if not request.withheld:
                log.error("request %s: answer withheld: %s", request.id, exc)
                records.save_request(self.store, replace(request, withheld=str(exc)))
            return None
        salt = secrets.token_bytes(32)
        commitment = keccak(
            request.id.to_bytes(32, "big") + json.dumps(results, sort_keys=True).encode() + salt
        )
        return Prepared(request, results, commitment, len(partials), combined.checked)

    def _complete(self, ready: list[Prepared]) -> None:
        """Record every prepared request's commitment in one completeRequests transaction;
        the contract skips any that expired meanwhile, and those are refunded."""
        ids = [p.request.id for p in ready]
        gateway = self.agent.contracts.gateway
        receipt = self.agent.enclave_tx.send(
            gateway.functions.completeRequests(ids, [p.commitment for p in ready]),
            label=f"complete-{ids[0]}" + (f"+{len(ids) - 1}" if len(ids) > 1 else ""),
        )
        events = gateway.events.RequestCompleted().process_receipt(receipt)
        completed = {int(e["args"]["requestId"]) for e in events}
        tx = receipt["transactionHash"].to_0x_hex()
        gas_each = int(receipt["gasUsed"]) // max(1, len(completed))
        answered: list[tuple[int, Results]] = []
        for prepared in ready:
            request = prepared.request
            if request.id not in completed:
                log.warning("request %d: not completed, no longer pending on chain (expired)", request.id)
                self._refund(request)
                continue
            shared = {
                "partials": prepared.partials,
                "checked": prepared.checked,
                "commitment": "0x" + prepared.commitment.hex(),
                "tx": {"submit": request.submit_tx, "complete": tx},
                "gas": {"submit": request.gas.get("submit", 0), "complete": gas_each},
            }
            results = [result | shared for result in prepared.results]
            with self.store.transaction():
                self.agent.seal_put(f"request/{request.id}/result", json.dumps(results).encode())
                records.save_request(self.store, replace(request, status=COMPLETED))
            answered.append((request.id, results))
        if answered:  # charged on chain: the answers are on disk before any client sees them
            self.store.sync()
        for request_id, results in answered:
            self.completions.resolve(request_id, results)

    def _open_partials(self, request: RequestRecord, doc: RoundDoc) -> dict[int, list[int]]:
        agent = self.agent
        keys = agent.epoch_keys(request.epoch)
        width = queries.partial_width(request.kind, request.rows)
        opened: dict[int, list[int]] = {}
        for provider in request.holders:
            blob = self.store.get_blob(f"request/{request.id}/partial/{provider}")
            if blob is None:
                continue
            ad = queries.partial_ad(
                agent.chain_id, agent.gateway_address, request.id, provider, agent.address
            )
            try:
                values = queries.decode_partial(decrypt(keys[provider], blob, ad), width)
                if any(not 0 <= v < doc.modulus for v in values):
                    raise ProtocolError("partial out of the modulus")
            except (CryptoError, ProtocolError, KeyError) as exc:
                log.warning(
                    "request %s: partial of %s rejected: %s", request.id, provider, type(exc).__name__
                )
                if self.store.get_json(f"request/{request.id}/unreadable/{provider}") is None:
                    self.store.put_json(f"request/{request.id}/unreadable/{provider}", True)
                    self.metrics.count_wrong(provider, "unreadable")
                continue
            opened[doc.index_of(provider) + 1] = values
        return opened

    def _interpret(
        self, request: RequestRecord, model: ModelRecord, doc: RoundDoc, total: list[int]
    ) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"request_id": request.id, "model_id": model.id}
        if request.kind == queries.KIND_STATISTIC:
            return [base | scoring.statistic_values(total, doc.frac_bits, doc.modulus)]
        bits, count_bound = request.query_bits, request.count_bound
        if bits is None or count_bound is None:
            raise ProtocolError("the request was recorded without the model's input range")
        results = []
        for row in range(request.rows):
            # The range analysis assumed at most count_bound rows behind the model.
            if scoring.centred(total[2 * row + 1], doc.modulus) > count_bound << doc.frac_bits:
                raise ProtocolError(f"the model's row count exceeds {count_bound}, which its range assumed")
            logit = scoring.score_value(total[2 * row], total[2 * row + 1], doc.frac_bits, bits, doc.modulus)
            probability = scoring.sigmoid(logit)
            results.append(
                base
                | {
                    "row": row,
                    "score": probability,
                    "logit": logit,
                    "label": int(probability >= scoring.LABEL_THRESHOLD),
                }
            )
        return results
