"""Federated averaging as the secure protocol computes it, in plaintext, and the
model's public description.

``fedavg_plaintext`` is the reference for the secure rounds: round 0 sums each
provider's column stats (-> joint scaling); round k = 1..K sums each provider's
contribution ``[n_i w_i, n_i b_i, n_i]`` after local training warm-started from the
previous global model. With one provider it is that provider training alone (its
own scaling, K * epochs of gradient descent).

``ModelSpec`` is what is public about a trained model (never its weights): feature
names, which round's joint scaling the enclaves apply, the link function and the
layout of the secret-shared vector, serialised as compact JSON for chain metadata.
Optionally it also says what a reader of an answer needs (the model card of the
wallet page and of ``GET /v1/models``): each feature's unit, what labels 0 and 1
mean and a one-line description. Those fields describe, they change no computation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enclave_agent.errors import ConfigError, ProtocolError
from enclave_agent.model.logistic import (
    column_stats,
    contribution,
    contribution_length,
    global_model,
    joint_scaling,
    standardise,
    train_local,
)

__all__ = ["LINK_LOGISTIC", "METADATA_VERSION", "ModelSpec", "fedavg_plaintext"]

logger = logging.getLogger(__name__)

LINK_LOGISTIC = "logistic"
METADATA_VERSION = 1


def fedavg_plaintext(
    provider_tables: Sequence[tuple[np.ndarray, np.ndarray]], rounds: int, **train_kwargs: Any
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(w, b, mean, std) after ``rounds`` rounds of federated averaging; ``train_kwargs``
    go to ``train_local`` (epochs, lr, l2)."""
    if not provider_tables or rounds < 1:
        raise ConfigError("federated averaging needs at least one provider and one round")
    features = np.asarray(provider_tables[0][0]).shape[1]
    stats = sum((column_stats(x) for x, _ in provider_tables), np.zeros(2 * features + 1))
    mean, std = joint_scaling(stats, features)
    scaled = [(standardise(x, mean, std), np.asarray(y, dtype=np.float64)) for x, y in provider_tables]
    w, b = np.zeros(features), 0.0
    for _ in range(rounds):
        aggregate = np.zeros(contribution_length(features))
        for z, y in scaled:
            w_i, b_i = train_local(z, y, init_w=w, init_b=b, **train_kwargs)
            aggregate += contribution(w_i, b_i, z.shape[0])
        w, b = global_model(aggregate, features)
    logger.info("federated averaging: %d providers, %d rounds", len(provider_tables), rounds)
    return w, b, mean, std


@dataclass
class ModelSpec:
    """Public description of a secret-shared logistic model over ``features``.

    The scaling is named, not published: queries are standardised inside the
    provider enclaves with the joint mean and std that every enclave reconstructed
    from the Intermediate column-stats round ``stats_round``.
    """

    features: list[str]
    stats_round: int
    train_rounds: list[int]
    link: str = LINK_LOGISTIC
    units: dict[str, str] = field(default_factory=dict)  # feature -> unit ("px", "1", ...)
    classes: dict[str, str] = field(default_factory=dict)  # "0"/"1" -> what the label means
    description: str = ""
    layout: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.features = [str(name) for name in self.features]
        f = len(self.features)
        if f == 0 or len(set(self.features)) != f:
            raise ConfigError("a model needs at least one feature and unique feature names")
        if not _positive_int(self.stats_round):
            raise ConfigError("stats_round must be a positive round id")
        self.train_rounds = list(self.train_rounds)
        if not self.train_rounds or not all(_positive_int(r) for r in self.train_rounds):
            raise ConfigError("train_rounds must be a non-empty list of positive round ids")
        if self.link != LINK_LOGISTIC:
            raise ConfigError(f"unsupported link function '{self.link}'")
        check_description(self.features, self.units, self.classes, self.description)
        # The shared vector is the aggregated contribution [sum n*w (f), sum n*b, sum n].
        self.layout = {"weights": [0, f], "bias": f, "count": f + 1, "length": contribution_length(f)}

    @property
    def model_round(self) -> int:
        """The round whose secret-shared aggregate is the served model."""
        return self.train_rounds[-1]

    def to_metadata(self) -> str:
        return json.dumps(
            {
                "version": METADATA_VERSION,
                "link": self.link,
                "features": self.features,
                "scaling": {"method": "joint-standardisation", "stats_round": self.stats_round},
                "train_rounds": self.train_rounds,
                "layout": self.layout,
                **describe(self.units, self.classes, self.description),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_metadata(cls, text: str) -> ModelSpec:
        """Parse ``to_metadata`` output; ProtocolError if it is malformed or inconsistent."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != METADATA_VERSION:
                raise ProtocolError(f"model metadata must be a version {METADATA_VERSION} object")
            scaling = data["scaling"]
            if scaling.get("method") != "joint-standardisation":
                raise ProtocolError("model metadata names an unknown scaling method")
            spec = cls(
                features=_str_list(data["features"]),
                stats_round=scaling["stats_round"],
                train_rounds=data["train_rounds"],
                link=data["link"],
                units=dict(data.get("units", {})),
                classes=dict(data.get("classes", {})),
                description=data.get("description", ""),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # ConfigError is a ValueError
            raise ProtocolError("model metadata is malformed") from exc
        if data.get("layout") != spec.layout:
            raise ProtocolError("model metadata layout does not match its features")
        return spec


def check_description(
    features: Sequence[str], units: dict[str, str], classes: dict[str, str], description: str
) -> None:
    """ConfigError unless units name known features, classes are labels "0"/"1" and
    every text is a short string (they travel in chain metadata)."""
    unknown = sorted(set(units) - set(features))
    if unknown:
        raise ConfigError(f"units name an unknown feature '{unknown[0]}'")
    if not set(classes) <= {"0", "1"}:
        raise ConfigError(f"classes are the labels '0' and '1', not {sorted(set(classes) - {'0', '1'})}")
    texts = [*units.values(), *classes.values(), description]
    if not all(isinstance(t, str) and len(t) <= 200 for t in texts):
        raise ConfigError("units, classes and description are texts of at most 200 characters")


def describe(units: dict[str, str], classes: dict[str, str], description: str) -> dict[str, Any]:
    """The optional descriptive metadata fields, only those that are set."""
    out: dict[str, Any] = {}
    if units:
        out["units"] = dict(units)
    if classes:
        out["classes"] = dict(classes)
    if description:
        out["description"] = description
    return out


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return value
