"""Models and statistics on chain (governance): bind a served model or a column
statistic to a completed round, retire it, list them.

A model's public description (``ModelSpec``: feature names, scaling, link, training
rounds) is derived from the chain where the chain knows it: a training round's input
tag ``train:S:P`` names its joint-scaling round S and the training round P it
continued, so registering the final round walks back to the first. Only the feature
names (the providers' CSV columns, in order) come from the operator. ``enclave-agent
demo`` and ``enclave-agent model register`` / ``stat register`` call the same functions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from enclave_agent.errors import ConfigError, ProtocolError
from enclave_agent.model.federated import LINK_LOGISTIC, ModelSpec
from enclave_agent.model.logistic import contribution_length
from enclave_agent.operator.session import Session
from enclave_agent.protocol import stages
from enclave_agent.protocol.queries import statistic_metadata

log = logging.getLogger(__name__)

SCALINGS = ("joint-standardisation",)
LINKS = (LINK_LOGISTIC,)
STATS_TAG = "column-stats"
_TRAIN_TAG = re.compile(r"^train:(\d+):(\d+)$")
COMPLETED = stages.ROUND_STATES.index("completed")


@dataclass(frozen=True)
class OpenedRound:
    """What a round's ``RoundOpened`` event says about it."""

    round_id: int
    tag: str
    length: int
    output: str
    min_contributors: int
    block: int


def opened_round(session: Session, round_id: int) -> OpenedRound:
    """ConfigError if the deployment has no such round."""
    if round_id < 1:
        raise ConfigError(f"a round id is a positive number, got {round_id}")
    event = session.contracts.exchange.events.RoundOpened()
    logs = event.get_logs(from_block=session.deployed_block, argument_filters={"roundId": round_id})
    if not logs:
        raise ConfigError(f"round {round_id} does not exist on this deployment")
    args = logs[0]["args"]
    spec, policy = args["spec"], args["policy"]
    return OpenedRound(
        round_id=round_id,
        tag=bytes(args["inputTag"]).rstrip(b"\0").decode(errors="replace"),
        length=int(spec["length"]),
        output=stages.OUTPUT_KINDS[int(policy["kind"])],
        min_contributors=int(policy["minContributors"]),
        block=int(logs[0]["blockNumber"]),
    )


def _completed(session: Session, opened: OpenedRound) -> None:
    state = int(session.contracts.exchange.functions.state(opened.round_id).call())
    if state != COMPLETED:
        raise ConfigError(
            f"round {opened.round_id} is {stages.ROUND_STATES[state]}, not completed: only a completed round "
            f"backs a model (enclave-agent round wait {opened.round_id})"
        )


def model_spec_for_round(
    session: Session,
    round_id: int,
    features: Sequence[str],
    *,
    link: str = LINK_LOGISTIC,
    units: Mapping[str, str] | None = None,
    classes: Mapping[str, str] | None = None,
    description: str = "",
) -> ModelSpec:
    """The ModelSpec of the final training round ``round_id``: its joint-scaling round and
    every training round before it, read from the rounds' tags; checked against the
    feature count. ConfigError naming the round if it cannot back a model."""
    final = opened_round(session, round_id)
    match = _TRAIN_TAG.match(final.tag)
    if match is None:
        raise ConfigError(
            f"round {round_id} has input tag {final.tag!r}, not a training round (train:STATS:PREVIOUS)"
        )
    if final.output != "shared-model":
        raise ConfigError(
            f"round {round_id} has output {final.output!r}: only a shared-model round stays secret-shared "
            "to answer requests (open the last training round with --output shared-model)"
        )
    _completed(session, final)
    if final.length != contribution_length(len(features)):
        raise ConfigError(
            f"round {round_id} aggregates {final.length} numbers: a model over {len(features)} features "
            f"needs {contribution_length(len(features))} (check --features)"
        )
    stats_round, previous = int(match[1]), int(match[2])
    train_rounds = [round_id]
    while previous:
        step = _TRAIN_TAG.match(opened_round(session, previous).tag)
        if step is None or int(step[1]) != stats_round:
            raise ConfigError(f"round {previous}, which round {round_id} continues, is not a training round")
        train_rounds.insert(0, previous)
        previous = int(step[2])
        if len(train_rounds) > 1000:
            raise ConfigError(f"round {round_id}: its training rounds form a loop")
    stats = opened_round(session, stats_round)
    if stats.tag != STATS_TAG:
        raise ConfigError(f"round {stats_round}, the scaling of round {round_id}, is not a {STATS_TAG} round")
    return ModelSpec(
        features=list(features),
        stats_round=stats_round,
        train_rounds=train_rounds,
        link=link,
        units=dict(units or {}),
        classes=dict(classes or {}),
        description=description,
    )


def _register(session: Session, round_id: int, name: str, metadata: str, fee: int) -> int:
    if not name.strip():
        raise ConfigError("a model needs a name")
    if fee < 0:
        raise ConfigError(f"fee must be >= 0 wei, got {fee}")
    gateway = session.contracts.gateway
    receipt = session.send(
        gateway.functions.registerModel(round_id, name, metadata, fee), label=f"register model {name}"
    )
    model_id = int(gateway.events.ModelRegistered().process_receipt(receipt)[0]["args"]["modelId"])
    log.info("registered model %d %r on round %d (fee %d wei per row)", model_id, name, round_id, fee)
    return model_id


def register_model(
    session: Session,
    round_id: int,
    name: str,
    features: Sequence[str],
    *,
    fee: int,
    link: str = LINK_LOGISTIC,
    units: Mapping[str, str] | None = None,
    classes: Mapping[str, str] | None = None,
    description: str = "",
) -> int:
    """Bind a served model to the completed final training round ``round_id``; its id.
    ``units`` (feature -> unit), ``classes`` ("0"/"1" -> meaning) and ``description``
    describe it for readers of its answers (the model card)."""
    spec = model_spec_for_round(
        session, round_id, features, link=link, units=units, classes=classes, description=description
    )
    return _register(session, round_id, name, spec.to_metadata(), fee)


def register_statistic(
    session: Session,
    round_id: int,
    name: str,
    features: Sequence[str],
    *,
    fee: int = 0,
    units: Mapping[str, str] | None = None,
    description: str = "",
) -> int:
    """Release the column statistics of the completed ``column-stats`` statistic round
    ``round_id`` through the gateway (sum, mean, population std, count per column); its id."""
    opened = opened_round(session, round_id)
    if opened.tag != STATS_TAG or opened.output != "statistic":
        raise ConfigError(
            f"round {round_id} is a {opened.output} round of {opened.tag!r}: a statistic needs a "
            f"{STATS_TAG} round opened with --output statistic"
        )
    _completed(session, opened)
    if opened.length != 2 * len(features) + 1:
        raise ConfigError(
            f"round {round_id} aggregates {opened.length} numbers: statistics of {len(features)} columns "
            f"need {2 * len(features) + 1} (check --features)"
        )
    try:
        metadata = statistic_metadata(features, units, description)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    return _register(session, round_id, name, metadata, fee)


def retire_model(session: Session, model_id: int) -> None:
    info = _model_info(session, model_id)
    if not info["active"]:
        raise ConfigError(f"model {model_id} is retired already")
    session.send(session.contracts.gateway.functions.retireModel(model_id), label=f"retire model {model_id}")


def _model_info(session: Session, model_id: int) -> dict[str, Any]:
    count = int(session.contracts.gateway.functions.modelCount().call())
    if not 1 <= model_id <= count:
        raise ConfigError(f"model {model_id} does not exist (models 1..{count})")
    round_id, kind, fee, active, _ = session.contracts.gateway.functions.modelInfo(model_id).call()
    return {
        "id": model_id,
        "round": int(round_id),
        "kind": stages.OUTPUT_KINDS[int(kind)],
        "fee_wei_per_row": int(fee),
        "active": bool(active),
    }


def list_models(session: Session, round_id: int | None = None) -> list[dict[str, Any]]:
    """Every registered model (of ``round_id`` if given): id, name, round, kind, fee,
    active and its public metadata."""
    filters = {} if round_id is None else {"roundId": round_id}
    logs = session.contracts.gateway.events.ModelRegistered().get_logs(
        from_block=session.deployed_block, argument_filters=filters
    )
    models = []
    for entry in logs:
        args = entry["args"]
        info = _model_info(session, int(args["modelId"]))
        try:
            metadata = json.loads(args["metadata"])
        except ValueError:
            metadata = args["metadata"]
        models.append({**info, "name": str(args["name"]), "metadata": metadata})
    return models
