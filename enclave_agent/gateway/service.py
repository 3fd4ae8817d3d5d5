"""The gateway agent: an attested enclave of the gateway role that records client
requests on chain, sends each query encrypted to the model's shareholders,
collects their encrypted partial results from the chain, combines them and
records a result commitment. It never holds a share of any model.

Threads: the agent loop (events, key sync, completing and refunding requests) runs
in one thread and alone completes requests, every request answered by a step in one
``completeRequests`` transaction; calls (``answering``) submit from executor
threads and wait on futures the loop resolves. Chain sends are serialised by the TxSender.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.chain import ChainEvent
from enclave_agent.config import AgentConfig, GatewayConfig, load_account
from enclave_agent.crypto.aead import decrypt, encrypt
from enclave_agent.errors import ConfigError, CryptoError, ProtocolError
from enclave_agent.gateway import auth, scoring
from enclave_agent.gateway.answering import Answering, Completions, Results
from enclave_agent.gateway.metrics import Metrics
from enclave_agent.gateway.ratelimit import RateLimiter
from enclave_agent.model.ranges import InputRange
from enclave_agent.onchain import CLIENT_ROLE
from enclave_agent.protocol import queries
from enclave_agent.protocol.agent import MemberAgent
from enclave_agent.protocol.disputes import queue_blame
from enclave_agent.protocol.rounds import RoundDoc
from enclave_agent.protocol.stages import MEMBER_STAGES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A request whose answer is computed and committed to, ready to complete."""

    request: dict[str, Any]
    results: Results
    commitment: bytes
    partials: int
    checked: bool


class GatewayAgent(MemberAgent):
    """A member enclave of the gateway role: the common member parts plus requests
    (recorded, completed by this loop, refunded) and the decisions on calls
    (``answering``). It runs no provider code."""

    def __init__(self, config: AgentConfig) -> None:
        gateway = config.gateway or GatewayConfig()
        # Every key file is checked before the enclave's keys or state are created.
        self.custody = {}
        for client, path in gateway.custody_keys.items():
            account = load_account(path, f"custody key of client {client}")
            if account.address != client:
                raise ConfigError(
                    f"custody key file {path} holds the key of {account.address}, not of {client}"
                )
            self.custody[client] = account
        super().__init__(config)
        self.metrics = Metrics()
        self.draining = False  # SIGTERM: no new inference calls, the ones in flight finish
        self.limiter = RateLimiter(gateway.rate_per_minute, gateway.rate_burst)
        self.completions = Completions()  # calls waiting for the loop to settle a request
        self.answering = Answering(self)
        self.handlers.update(
            {
                "PartialPosted": self._on_partial_posted,
                "ModelRangePublished": self._on_range_published,
                "RequestCompleted": self._on_request_closed,
                "RequestRefunded": self._on_request_closed,
            }
        )

    # ------------------------------------------------------------------ chain events

    def _on_partial_posted(self, event: ChainEvent) -> None:
        request_id = int(event.args["requestId"])
        provider = to_checksum_address(event.args["provider"])
        request = self.store.get_json(f"request/{request_id}")
        # A provider may answer in the very next block, before submit() has stored the
        # request it just recorded: keep the partial when the chain says this gateway
        # recorded the request (the contract checked the provider holds a share).
        if request is None and not self._recorded_here(request_id):
            self.metrics.partials_ignored += 1
            log.warning("ignored partial from %s for request %d: not one of ours", provider, request_id)
            return
        key = f"request/{request_id}/partial/{provider}"
        if (request is not None and provider not in request["holders"]) or self.store.get_blob(
            key
        ) is not None:
            self.metrics.partials_ignored += 1
            log.warning(
                "ignored partial from %s for request %d: not a holder or a duplicate", provider, request_id
            )
            return
        self.store.put_blob(key, bytes(event.args["ciphertext"]))

    def _recorded_here(self, request_id: int) -> bool:
        gateway = self.contracts.gateway.functions.requestInfo(request_id).call()[2]
        return bool(to_checksum_address(gateway) == self.address)

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
        if request is not None and request["status"] == "pending":
            self._close(request, "completed" if event.name == "RequestCompleted" else "refunded")
            self.completions.resolve(int(request["id"]), self.result(int(request["id"])))

    def _close(self, request: dict[str, Any], status: str) -> None:
        request["status"] = status
        with self.store.transaction():
            self.store.put_json(f"request/{request['id']}", request)
            self.store.delete_json(f"pending/{request['id']}")

    # ------------------------------------------------------------------ loop work

    def step(self) -> None:
        super().step()
        if self.is_ready():
            self._settle_requests()

    def _settle_requests(self) -> None:
        """Complete every request that can be, in one transaction; refund what expired
        unanswered."""
        pending = self.store.keys("pending/")
        if not pending:
            return
        now = self.chain_now()
        ready: list[Prepared] = []
        for key in pending:
            request = self.request(int(key.split("/")[1]))
            if request is None or request["status"] != "pending":
                self.store.delete_json(key)
                continue
            request_id = int(request["id"])
            try:
                prepared = self._prepare(request)
            except scoring.InconsistentPartials as exc:
                self.completions.fail(request_id, exc)
                prepared = None  # refused: it expires unanswered and its fee is refunded
            if prepared is not None and now <= int(request["deadline"]):
                ready.append(prepared)
            elif now > int(request["deadline"]):
                self.send_or_done(
                    self.contracts.gateway.functions.refundExpired(request_id),
                    f"refund-{request_id}",
                    "InferenceUnexpectedState",
                )
                self._close(request, "refunded")
                self.completions.resolve(request_id, None)
                log.info("request %s expired unanswered; fee refunded to %s", request_id, request["client"])
        if ready:
            self._complete(ready)

    # ------------------------------------------------------------------ requests

    def is_ready(self) -> bool:
        """Serving needs keys of a synchronised epoch, not the current one: while a new
        epoch synchronises (a member joins or is dropped), requests go out under the
        last synchronised epoch's keys, so clients see no gap."""
        if self.stage not in MEMBER_STAGES:
            return False
        epoch = self.view.synchronised_epoch
        return epoch != 0 and self.store.get_blob(f"keys/{epoch}") is not None

    def has_code(self, address: str) -> bool:
        """Whether ``address`` is a contract (a wallet that signs through EIP-1271)."""
        return len(self.w3.eth.get_code(to_checksum_address(address))) > 0

    def custody_request(self, client: str, model: dict[str, Any], query: queries.Query) -> auth.SignedRequest:
        """The request an API-key client's custody key signs (see ``gateway.auth``)."""
        account = self.custody.get(client)
        if account is None:
            raise ConfigError(f"API-key client {client} has no custody key")
        return auth.custody_request(
            account,
            chain_id=self.chain_id,
            gateway_contract=self.gateway_address,
            model_id=int(model["id"]),
            query=query,
            fee=int(model["fee"]),
            now=self.chain_now(),
        )

    def client_has_access(self, client: str) -> bool:
        return bool(self.contracts.gateway.functions.hasRole(CLIENT_ROLE, client).call())

    def quota_and_balance(self, client: str) -> tuple[int, int, int]:
        quota, used = self.contracts.gateway.functions.quotaOf(client).call()
        return int(quota), int(used), int(self.contracts.gateway.functions.balanceOf(client).call())

    def model(self, model_id: int) -> dict[str, Any] | None:
        model = self.store.get_json(f"model/{model_id}")
        return model if model and model.get("active") else None

    def model_round(self, model: dict[str, Any]) -> RoundDoc:
        doc = self.round_doc(int(model["round_id"]))
        if doc is None:
            raise ProtocolError(f"round {model['round_id']} of model {model['id']} is unknown here")
        return doc

    def input_range(self, model: dict[str, Any]) -> InputRange | None:
        """The input range a score model answers exactly: per feature the smallest bound
        its holders published, once as many holders published as an answer needs (all
        for additive models, t for Shamir). None until then, or if they disagree on
        the encoding (logged)."""
        doc = self.round_doc(int(model["round_id"]))
        if model["kind"] != "shared-model" or doc is None:
            return None
        holders = doc.mask_members(doc.holders)
        published = []
        for provider in holders:
            raw = self.store.get_json(f"range/{model['id']}/{provider}")
            if raw is not None:
                published.append(InputRange.from_json(str(raw)))
        needed = len(holders) if scoring.is_additive(doc.modulus) else doc.threshold
        if not holders or len(published) < needed:
            return None
        try:
            return InputRange.agreed(published)
        except ProtocolError as exc:
            log.error("model %s: %s", model["id"], exc)
            return None

    def organisation_name(self, enclave: str) -> str:
        """The registered name of the organisation that operates ``enclave`` (from the
        registry, remembered: a name is set once, at admission)."""
        return self.names.label(enclave)

    def rows_per_request(self, model: dict[str, Any]) -> int:
        """The most rows of ``model`` one on-chain request carries."""
        doc = self.model_round(model)
        features = len(queries.parse_metadata(model["metadata"])["features"])
        return queries.rows_per_request(features, len(doc.mask_members(doc.holders)))

    def submit(
        self,
        model: dict[str, Any],
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
        doc = self.model_round(model)
        if query.kind == queries.KIND_SCORE:
            if bounds is None:
                raise ProtocolError(f"model {model['id']} has no input range yet")
            outside = [r for r, row in enumerate(query.rows) if bounds.violation(row) is not None]
            if outside:
                raise ProtocolError(f"row {outside[0]} is outside the model's input range")
        holders = doc.mask_members(doc.holders)
        client = signed.client
        digest = signed.digest(self.chain_id, self.gateway_address)
        # The last synchronised epoch: every member derived its keys for it, even while
        # a newer epoch (a member joining or being dropped) is still being synchronised.
        view = self.view
        epoch = view.synchronised_epoch or view.epoch
        keys = self.epoch_keys(epoch)
        plaintext = query.to_bytes()
        entries = []
        for provider in holders:
            if provider not in keys:
                raise ProtocolError(f"no pairwise key with holder {provider} in epoch {epoch}")
            ad = queries.query_ad(self.chain_id, self.gateway_address, digest, self.address, provider)
            entries.append((provider, encrypt(keys[provider], plaintext, ad)))
        payload = queries.encode_query_payload(epoch, entries)
        receipt = self.enclave_tx.send(
            self.contracts.gateway.functions.submitRequest(signed.as_tuple(), signed.signature, payload),
            label=f"request-{model['id']}",
        )
        event = self.contracts.gateway.events.RequestSubmitted().process_receipt(receipt)[0]["args"]
        request_id = int(event["requestId"])
        self.store.put_json(
            f"request/{request_id}",
            {
                "id": request_id,
                "model_id": int(model["id"]),
                "kind": query.kind,
                "rows": query.row_count,
                "client": client,
                "holders": holders,
                "epoch": epoch,
                "query_bits": bounds.query_bits if bounds is not None else None,
                "count_bound": bounds.count_bound if bounds is not None else None,
                "deadline": int(event["deadline"]),
                "status": "pending",
                "submit_tx": receipt["transactionHash"].to_0x_hex(),
                "gas": {"submit": int(receipt["gasUsed"])},
                "submitted_at": time.time(),
                "encrypt_to": None if encrypt_to is None else encrypt_to.hex(),
            },
        )
        self.store.put_json(f"pending/{request_id}", request_id)
        return request_id

    def request(self, request_id: int) -> dict[str, Any] | None:
        request: dict[str, Any] | None = self.store.get_json(f"request/{request_id}")
        return request

    def result(self, request_id: int) -> list[dict[str, Any]] | None:
        """The answered request's results, one per row."""
        raw = self.unseal_get(f"request/{request_id}/result")
        return None if raw is None else [dict(r) for r in json.loads(raw)]

    def settled(self, request_id: int) -> tuple[bool, Results | None]:
        """(closed, its results): closed once answered (results), or refunded or not ours
        (None); raises InconsistentPartials for a request whose answer was refused."""
        results = self.result(request_id)
        if results is not None:
            return True, results
        request = self.request(request_id)
        if request is None or request["status"] != "pending":
            return True, None
        if request.get("inconsistent"):
            raise scoring.InconsistentPartials(str(request["inconsistent"]))
        return False, None

    def _prepare(self, request: dict[str, Any]) -> Prepared | None:
        """Combine the partials of a pending request if enough arrived: its results (one
        per row) and their commitment, ready to complete; None while it waits, or if the
        answer must be withheld. Raises InconsistentPartials if it must be refused."""
        request_id = int(request["id"])
        if request.get("inconsistent"):
            raise scoring.InconsistentPartials(str(request["inconsistent"]))
        model = self.store.get_json(f"model/{request['model_id']}")
        assert model is not None
        doc = self.model_round(model)
        partials = self._open_partials(request, doc)
        additive = scoring.is_additive(doc.modulus)
        everyone = len(request["holders"])
        # A Shamir request waits up to partial_grace for every holder's partial once t
        # arrived: the more partials, the more it checks (t + 1) and corrects (t + 2e).
        grace = self.config.gateway.partial_grace if self.config.gateway else 3.0
        waited = time.time() - float(request.get("submitted_at", 0)) > grace
        if len(partials) < (everyone if additive or not waited else doc.threshold):
            return None
        try:
            combined = scoring.combine(partials, doc.modulus, additive, doc.threshold)
        except scoring.InconsistentPartials as exc:
            request["inconsistent"] = str(exc)
            self.store.put_json(f"request/{request_id}", request)
            self.metrics.count("inconsistent_partials")
            log.error("request %d: answer refused: %s", request_id, exc)
            raise
        for x in combined.wrong:
            provider = doc.participants[x - 1]
            self.metrics.count_wrong(provider, "corrected")
            queue_blame(self, doc.round_id, provider, "wrong-partial", request_id.to_bytes(32, "big"))
        try:
            results = self._interpret(request, model, doc, combined.total)
        except ProtocolError as exc:
            # Never answer what may be wrong: the request expires and is refunded.
            if not request.get("withheld"):
                log.error("request %s: answer withheld: %s", request_id, exc)
                request["withheld"] = str(exc)
                self.store.put_json(f"request/{request_id}", request)
            return None
        salt = secrets.token_bytes(32)
        commitment = keccak(
            request_id.to_bytes(32, "big") + json.dumps(results, sort_keys=True).encode() + salt
        )
        return Prepared(request, results, commitment, len(partials), combined.checked)

    def _complete(self, ready: list[Prepared]) -> None:
        """Record every prepared request's commitment in one completeRequests transaction;
        the contract skips any that expired meanwhile (the next step refunds them)."""
        ids = [int(p.request["id"]) for p in ready]
        receipt = self.enclave_tx.send(
            self.contracts.gateway.functions.completeRequests(ids, [p.commitment for p in ready]),
            label=f"complete-{ids[0]}" + (f"+{len(ids) - 1}" if len(ids) > 1 else ""),
        )
        events = self.contracts.gateway.events.RequestCompleted().process_receipt(receipt)
        completed = {int(e["args"]["requestId"]) for e in events}
        tx = receipt["transactionHash"].to_0x_hex()
        gas_each = int(receipt["gasUsed"]) // max(1, len(completed))
        for prepared in ready:
            request = prepared.request
            request_id = int(request["id"])
            if request_id not in completed:
                log.warning("request %d: not completed, no longer pending on chain", request_id)
                continue
            shared = {
                "partials": prepared.partials,
                "checked": prepared.checked,
                "commitment": "0x" + prepared.commitment.hex(),
                "tx": {"submit": request["submit_tx"], "complete": tx},
                "gas": {"submit": request["gas"]["submit"], "complete": gas_each},
            }
            results = [result | shared for result in prepared.results]
            self.seal_put(f"request/{request_id}/result", json.dumps(results).encode())
            self._close(request, "completed")
            self.completions.resolve(request_id, results)

    def _open_partials(self, request: dict[str, Any], doc: RoundDoc) -> dict[int, list[int]]:
        keys = self.epoch_keys(int(request["epoch"]))
        width = queries.partial_width(request["kind"], int(request.get("rows", 1)))
        opened: dict[int, list[int]] = {}
        for provider in request["holders"]:
            blob = self.store.get_blob(f"request/{request['id']}/partial/{provider}")
            if blob is None:
                continue
            ad = queries.partial_ad(
                self.chain_id, self.gateway_address, int(request["id"]), provider, self.address
            )
            try:
                values = queries.decode_partial(decrypt(keys[provider], blob, ad), width)
                if any(not 0 <= v < doc.modulus for v in values):
                    raise ProtocolError("partial out of the modulus")
            except (CryptoError, ProtocolError, KeyError) as exc:
                log.warning(
                    "request %s: partial of %s rejected: %s", request["id"], provider, type(exc).__name__
                )
                if self.store.get_json(f"request/{request['id']}/unreadable/{provider}") is None:
                    self.store.put_json(f"request/{request['id']}/unreadable/{provider}", True)
                    self.metrics.count_wrong(provider, "unreadable")
                continue
            opened[doc.index_of(provider) + 1] = values
        return opened

    def _interpret(
        self, request: dict[str, Any], model: dict[str, Any], doc: RoundDoc, total: list[int]
    ) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"request_id": int(request["id"]), "model_id": int(model["id"])}
        if request["kind"] == queries.KIND_STATISTIC:
            return [base | scoring.statistic_values(total, doc.frac_bits, doc.modulus)]
        bits, count_bound = request.get("query_bits"), request.get("count_bound")
        if bits is None or count_bound is None:
            raise ProtocolError("the request was recorded without the model's input range")
        results = []
        for row in range(int(request.get("rows", 1))):
            # The range analysis assumed at most count_bound rows behind the model.
            if scoring.centred(total[2 * row + 1], doc.modulus) > int(count_bound) << doc.frac_bits:
                raise ProtocolError(f"the model's row count exceeds {count_bound}, which its range assumed")
            logit = scoring.score_value(
                total[2 * row], total[2 * row + 1], doc.frac_bits, int(bits), doc.modulus
            )
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

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["models"] = [
            {k: m[k] for k in ("id", "name", "kind", "round_id", "active")} for m in self.models()
        ]
        return status
