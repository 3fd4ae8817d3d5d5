"""A provider's side of gated inference: publish the input range of every model it
holds a share of, and answer the requests the chain recorded (with the client's
signature) with an encrypted partial result computed on this enclave's share of the
model, for exactly the query the client signed, refusing any row outside that range
whoever submitted it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from enclave_agent.chain import ChainEvent
from enclave_agent.crypto.aead import decrypt, encrypt
from enclave_agent.errors import (
    ContractRevert,
    CryptoError,
    ProtocolError,
)
from enclave_agent.model.federated import ModelSpec
from enclave_agent.model.logistic import joint_scaling, standardise
from enclave_agent.model.ranges import InputRange, score_range
from enclave_agent.protocol import queries, records
from enclave_agent.protocol.context import AgentContext
from enclave_agent.protocol.inputs import TRAIN_L1_BOUND
from enclave_agent.protocol.partials import partial_score, partial_statistic, query_words
from enclave_agent.protocol.records import ModelRecord, OwnRange
from enclave_agent.protocol.rounds import (
    RoundDoc,
)

log = logging.getLogger(__name__)


class InferenceResponder:
    """Input ranges and requests, driven by InferenceGateway events (the models
    themselves: ``catalog.ModelCatalog``)."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    def handlers(self) -> dict[str, Callable[[ChainEvent], None]]:
        return {
            "RequestSubmitted": self._on_request_submitted,
        }

    def step(self) -> None:
        self._publish_ranges()
        self._post_answers()

    def _on_request_submitted(self, event: ChainEvent) -> None:
        """A provider answers only requests the chain recorded: this event is the only way in."""
        if self.agent.config.role != "provider":
            return
        args = event.args
        request_id = int(args["requestId"])
        model = records.load_model(self.agent.store, int(args["modelId"]))
        doc = self.agent.round_doc(int(model.round_id)) if model else None
        if model is None or doc is None or not doc.is_holder(self.agent.address):
            return
        gateway = to_checksum_address(args["gateway"])
        try:
            epoch, ciphertext = queries.query_entry(bytes(args["encryptedQuery"]), self.agent.address)
            key = self.agent.epoch_keys(epoch).get(gateway)
            if key is None or ciphertext is None:
                raise ProtocolError(f"no query for {self.agent.address} under a key of epoch {epoch}")
            ad = queries.query_ad(
                self.agent.chain_id,
                self.agent.gateway_address,
                bytes(args["requestDigest"]),
                gateway,
                self.agent.address,
            )
            plaintext = decrypt(key, ciphertext, ad)
            # The client signed the hash of exactly these bytes: a gateway cannot swap in
            # its own query and charge it to the client.
            if keccak(plaintext) != bytes(args["inputHash"]):
                raise ProtocolError("the query is not the one the client signed (inputHash differs)")
            query = queries.Query.from_bytes(plaintext)
            if query.row_count != int(args["rows"]):  # the fee and quota were paid per row
                raise ProtocolError(f"query of {query.row_count} rows recorded as {int(args['rows'])}")
            values = self._partial(model, doc, query)
        except (CryptoError, ProtocolError) as exc:
            log.warning("request %d: cannot answer: %s", request_id, exc)
            return
        answer_ad = queries.partial_ad(
            self.agent.chain_id, self.agent.gateway_address, request_id, self.agent.address, gateway
        )
        ciphertext = encrypt(key, queries.encode_partial(values), answer_ad)
        self.agent.store.put_json(f"answer/{request_id}", ciphertext.hex())

    def _partial(self, model: ModelRecord, doc: RoundDoc, query: queries.Query) -> list[int]:
        share = self.agent.fused_share(doc.round_id)
        if share is None:
            raise ProtocolError(f"no fused share of round {doc.round_id}")
        metadata = queries.parse_metadata(model.metadata)
        features = len(metadata["features"])
        if model.kind == "statistic":
            if query.kind != queries.KIND_STATISTIC:
                raise ProtocolError("a statistic answers statistic queries only")
            return list(partial_statistic(share, query.column, features, doc.modulus))
        if query.kind != queries.KIND_SCORE or any(len(row) != features for row in query.rows):
            raise ProtocolError(f"a score query needs {features} features per row")
        spec = ModelSpec.from_metadata(model.metadata)
        stats = self.agent.aggregate(spec.stats_round)
        if stats is None:
            raise ProtocolError(f"joint scaling of round {spec.stats_round} is not in this enclave")
        mean, std = joint_scaling(stats, features)
        bounds = self.input_range(model)
        if bounds is None:
            raise ProtocolError(f"model {model.id} has no input range this enclave can vouch for")
        for r, row in enumerate(query.rows):  # whoever sent it: the gateway checked, we check again
            k = bounds.violation(row)
            if k is not None:
                raise ProtocolError(
                    f"row {r}: feature '{bounds.features[k]}' is outside the model's input range "
                    f"+-{bounds.bounds[k]:g}; the request is refused"
                )
        values: list[int] = []
        for z in standardise(np.asarray(query.rows), mean, std):
            words = query_words(z, bounds.query_bits, bounds.word_bound)
            values += partial_score(share, words, bounds.query_bits, doc.modulus)
        return values

    # ------------------------------------------------------------------ input ranges

    def input_range(self, model: ModelRecord) -> InputRange | None:
        """The input range this enclave computed for a score model it holds (stored once
        computed), or None if it cannot vouch for one: not a holder, a statistic, a
        round whose inputs were not produced by bounded training, or no joint scaling."""
        stored = records.load(self.agent.store, OwnRange, f"range/{model.id}")
        if stored is not None:
            return InputRange.from_json(stored.range)
        doc = self.agent.round_doc(int(model.round_id))
        if (
            model.kind != "shared-model"
            or doc is None
            or not doc.is_holder(self.agent.address)
            or not doc.tag.startswith("train:")  # only trained models obey the L1 bound
        ):
            return None
        try:
            spec = ModelSpec.from_metadata(model.metadata)
        except ProtocolError:
            return None
        stats = self.agent.aggregate(spec.stats_round)
        if stats is None or stats.size != 2 * len(spec.features) + 1:
            return None
        mean, std = joint_scaling(stats, len(spec.features))
        try:
            bounds = score_range(
                spec.features,
                mean,
                std,
                count=round(float(stats[-1])),
                frac_bits=doc.frac_bits,
                modulus=doc.modulus,
                contributors=max(1, bin(doc.contributors).count("1")),
                weight_bound=TRAIN_L1_BOUND,
            )
        except CryptoError as exc:
            log.error("model %s: no input range: %s", model.id, exc)
            return None
        records.save(self.agent.store, f"range/{model.id}", OwnRange(bounds.to_json()))
        return bounds

    def _publish_ranges(self) -> None:
        """Publish on chain, once, the input range of every active model we hold."""
        if self.agent.config.role != "provider":
            return
        for model in self.agent.models():
            if not model.active or model.kind != "shared-model":
                continue
            stored = records.load(self.agent.store, OwnRange, f"range/{model.id}")
            if stored is not None and stored.published:
                continue
            bounds = self.input_range(model)
            if bounds is None:
                continue
            publish = self.agent.contracts.gateway.functions.publishModelRange
            try:
                self.agent.send_or_done(publish(int(model.id), bounds.to_json()), f"range-{model.id}")
            except ContractRevert as exc:  # retired meanwhile, or no longer a holder: nothing to publish
                log.warning("model %s: input range not published: %s", model.id, exc.error_name)
            else:
                log.info(
                    "model %s: published its input range (%d query fraction bits, +-%g standard deviations)",
                    model.id,
                    bounds.query_bits,
                    bounds.standardised_bound,
                )
            records.save(self.agent.store, f"range/{model.id}", OwnRange(bounds.to_json(), published=True))

    def _post_answers(self) -> None:
        """Every answer this enclave holds, in one transaction (``postPartials``): under
        load a provider sends one transaction per block, not one per request. The
        contract skips what is no longer pending or already posted, so a retry after a
        lost receipt is harmless."""
        keys = self.agent.store.keys("answer/")
        if not keys:
            return
        ids = [int(key.split("/")[1]) for key in keys]
        ciphertexts = [bytes.fromhex(str(self.agent.store.get_json(key))) for key in keys]
        self.agent.send_or_done(
            self.agent.contracts.gateway.functions.postPartials(ids, ciphertexts),
            f"partials-{ids[0]}-{ids[-1]}" if len(ids) > 1 else f"partial-{ids[0]}",
        )
        for key in keys:
            self.agent.store.delete_json(key)
        log.info("posted encrypted partial results of %d request(s): %s", len(ids), ", ".join(map(str, ids)))
