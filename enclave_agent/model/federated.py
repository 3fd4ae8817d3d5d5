"""Federated averaging as the secure protocol computes it, in plaintext, and the
model's public description.

``fedavg_plaintext`` is the reference for the secure rounds: round 0 sums each
provider's column stats (-> joint scaling); round k = 1..K sums each provider's
contribution ``[n_i w_i, n_i b_i, n_i]`` after local training warm-started from the
previous global model. With one provider it is that provider training alone (its
own scaling, K * epochs of gradient descent).

``ModelSpec`` is what is public about a trained model (never its weights): feature
names, the joint scaling (a released aggregate), the link function and the layout of
the secret-shared vector, serialised as compact JSON for chain metadata.
"""

from __future__ import annotations

import json
import logging
import math
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


@dataclass(eq=False)
class ModelSpec:
    """Public description of a secret-shared logistic model over ``features``."""

    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    link: str = LINK_LOGISTIC
    rounds: int = 1
    layout: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.features = [str(name) for name in self.features]
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        f = len(self.features)
        if f == 0 or len(set(self.features)) != f:
            raise ConfigError("a model needs at least one feature and unique feature names")
        if self.mean.shape[0] != f or self.std.shape[0] != f:
            raise ConfigError(f"scaling has {self.mean.shape[0]}/{self.std.shape[0]} values for {f} features")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ConfigError("scaling means must be finite and stds finite and positive")
        if self.link != LINK_LOGISTIC:
            raise ConfigError(f"unsupported link function '{self.link}'")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError("rounds must be a positive int")
        # The shared vector is the aggregated contribution [sum n*w (f), sum n*b, sum n].
        self.layout = {"weights": [0, f], "bias": f, "count": f + 1, "length": contribution_length(f)}

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return standardise(x, self.mean, self.std)

    def to_metadata(self) -> str:
        return json.dumps(
            {
                "version": METADATA_VERSION,
                "link": self.link,
                "rounds": self.rounds,
                "features": self.features,
                "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std],
                "layout": self.layout,
            },
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_metadata(cls, text: str) -> ModelSpec:
        """Parse ``to_metadata`` output; ProtocolError if it is malformed or inconsistent."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != METADATA_VERSION:
                raise ProtocolError(f"model metadata must be a version {METADATA_VERSION} object")
            spec = cls(
                features=_str_list(data["features"]),
                mean=np.array(_float_list(data["mean"])),
                std=np.array(_float_list(data["std"])),
                link=data["link"],
                rounds=data["rounds"],
            )
        except (ValueError, KeyError, TypeError) as exc:  # ConfigError is a ValueError
            raise ProtocolError("model metadata is malformed") from exc
        if data.get("layout") != spec.layout:
            raise ProtocolError("model metadata layout does not match its features")
        return spec

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSpec):
            return NotImplemented
        return (
            self.features == other.features
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.std, other.std)
            and (self.link, self.rounds) == (other.link, other.rounds)
        )


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return value


def _float_list(value: object) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise TypeError("expected a list of finite numbers")
    return [float(v) for v in value]
