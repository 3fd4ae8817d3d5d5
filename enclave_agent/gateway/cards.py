"""Model cards: what an analyst needs to judge an answer, from the chain and the
gateway's own state (``GET /v1/models``, the wallet page's model card).

A card says what each feature is measured in (the model's metadata, when its
registrant gave units), which rounds made the model and which organisations
contributed to each (round records this gateway followed on chain; organisations by
their registered name), and how to read an answer: for a score model the link, the
score (the probability of class 1), the threshold at which the label becomes 1 and
what the classes mean; for a statistic the contributor floor below which nothing is
released and that the std is the population std. No weight, mean or std is in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from enclave_agent.gateway import scoring
from enclave_agent.protocol.records import ModelRecord
from enclave_agent.protocol.rounds import RoundDoc

log = logging.getLogger(__name__)

SCORE_MEANING = "the probability of class 1 under the model (logistic link of w.z + b)"
STD_MEANING = "population standard deviation (divides by the count, not count - 1)"


def _rounds(metadata: Mapping[str, Any], model: ModelRecord) -> list[tuple[int, str]]:
    """(round id, purpose) of every round behind the model, oldest first."""
    if model.kind != "shared-model":
        return [(int(model.round_id), "statistic")]
    out: list[tuple[int, str]] = []
    scaling = metadata.get("scaling")
    if isinstance(scaling, Mapping) and isinstance(scaling.get("stats_round"), int):
        out.append((int(scaling["stats_round"]), "joint scaling"))
    train = [r for r in metadata.get("train_rounds") or [] if isinstance(r, int)]
    for k, round_id in enumerate(train, 1):
        out.append((round_id, f"training {k}/{len(train)}"))
    if not train:
        out.append((int(model.round_id), "training"))
    return out


def round_summary(
    round_id: int, purpose: str, doc: RoundDoc | None, name_of: Callable[[str], str]
) -> dict[str, Any]:
    if doc is None:
        return {"id": round_id, "purpose": purpose, "status": "unknown", "contributors": []}
    return {
        "id": round_id,
        "purpose": purpose,
        "status": doc.status,
        "scheme": doc.scheme,
        "participants": len(doc.participants),
        "contributors": [
            {"address": member, "organisation": name_of(member)}
            for member in doc.mask_members(doc.contributors)
        ],
        "completed_at": doc.completed_at or None,
    }


def model_card(
    model: ModelRecord,
    metadata: Mapping[str, Any],
    round_doc: Callable[[int], RoundDoc | None],
    name_of: Callable[[str], str],
) -> dict[str, Any]:
    """The card of one model; ``round_doc`` and ``name_of`` (enclave address ->
    organisation name) read the gateway's state and the registry."""
    features = [str(f) for f in metadata["features"]]
    raw_units = metadata.get("units")
    units = raw_units if isinstance(raw_units, Mapping) else {}
    description = metadata.get("description")
    card: dict[str, Any] = {
        "description": description if isinstance(description, str) and description else None,
        "units": {f: (str(units[f]) if f in units else None) for f in features},
        "rounds": [round_summary(r, why, round_doc(r), name_of) for r, why in _rounds(metadata, model)],
    }
    if model.kind == "shared-model":
        raw_classes = metadata.get("classes")
        classes = raw_classes if isinstance(raw_classes, Mapping) else {}
        card |= {
            "link": metadata.get("link"),
            "score": SCORE_MEANING,
            "threshold": scoring.LABEL_THRESHOLD,
            "classes": {label: str(classes.get(label, f"class {label}")) for label in ("0", "1")},
        }
    else:
        doc = round_doc(int(model.round_id))
        card |= {
            "min_contributors": None if doc is None else max(doc.min_contributors, doc.floor),
            "values": {"sum": "sum over every contributor's rows", "mean": "sum / count", "std": STD_MEANING},
        }
    return card
