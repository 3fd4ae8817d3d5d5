"""Logistic regression in plain numpy, shaped for secure aggregation.

Everything that crosses organisations is a sum over providers of a per-provider
vector, so this module speaks in such vectors:

- column stats ``[sum_1..sum_f, sumsq_1..sumsq_f, n]`` -> ``joint_scaling`` gives the
  joint mean and population standard deviation;
- a contribution ``[n*w_1..n*w_f, n*b, n]`` -> summed over providers, ``global_model``
  gives the sample-weighted average model (federated averaging).

Training may keep ``|w|_1 + |b|`` within a public ``l1_bound`` (projected gradient
descent onto that L1 ball): the average of such models stays in the ball, and that
bound is what lets the enclaves derive the input range a secret-shared model
answers exactly (``enclave_agent.model.ranges``).

A score is linear in the contribution vector, so each holder of an additive share
of the aggregate computes its own ``linear_parts`` and the parts add up:
``sigmoid(sum numerators / sum denominators)`` is the averaged model's probability.
"""

from __future__ import annotations

import logging

import numpy as np

from enclave_agent.errors import ConfigError, ProtocolError

__all__ = [
    "column_stats",
    "contribution",
    "contribution_length",
    "global_model",
    "joint_scaling",
    "linear_parts",
    "log_loss",
    "predict_proba",
    "project_l1",
    "sigmoid",
    "standardise",
    "train_local",
]

logger = logging.getLogger(__name__)

# A variance below this (relative to the squared mean) is a constant column up to
# the rounding of sumsq/n - mean^2 (and of fixed point): scale it by 1, not by noise.
_RELATIVE_VARIANCE_FLOOR = 1e-12


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def column_stats(x: np.ndarray) -> np.ndarray:
    """``[sum_1..sum_f, sumsq_1..sumsq_f, n]`` of a feature matrix (the round-0 input)."""
    x = _matrix(x)
    return np.concatenate([x.sum(axis=0), (x * x).sum(axis=0), [float(x.shape[0])]])


def joint_scaling(stats: np.ndarray, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint mean and population std from the aggregated column stats."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1)
    if stats.shape[0] != 2 * features + 1:
        raise ProtocolError(f"column stats need {2 * features + 1} values, got {stats.shape[0]}")
    n = stats[-1]
    if not np.isfinite(stats).all() or n < 1:
        raise ProtocolError("column stats must be finite with a row count of at least 1")
    mean = stats[:features] / n
    variance = stats[features : 2 * features] / n - mean * mean
    constant = variance <= _RELATIVE_VARIANCE_FLOOR * np.maximum(mean * mean, 1.0)
    std = np.sqrt(np.maximum(variance, 0.0))
    std[constant] = 1.0
    return mean, std


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per column; a std of 0 counts as 1 (constant column)."""
    x = np.asarray(x, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if x.shape[-1] != mean.shape[0] or mean.shape != std.shape:
        raise ConfigError(f"{x.shape[-1]} feature columns do not match scaling of length {mean.shape[0]}")
    scale = std.copy()
    scale[scale == 0.0] = 1.0
    z: np.ndarray = (x - mean) / scale
    return z


def log_loss(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """Mean binary cross-entropy of the model (w, b) on standardised rows z."""
    s = z @ w + b
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def project_l1(v: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto the L1 ball of ``radius`` (Duchi et al. 2008);
    ``v`` itself (not a copy) when it is inside already."""
    v = np.asarray(v, dtype=np.float64)
    if radius <= 0:
        raise ConfigError(f"the L1 radius must be positive, got {radius}")
    magnitude = np.abs(v)
    if float(magnitude.sum()) <= radius:
        return v
    ordered = np.sort(magnitude)[::-1]
    cumulative = np.cumsum(ordered) - radius
    index = np.arange(1, ordered.size + 1)
    rho = int(np.nonzero(ordered - cumulative / index > 0)[0][-1])
    theta = cumulative[rho] / (rho + 1)
    projected: np.ndarray = np.sign(v) * np.maximum(magnitude - theta, 0.0)
    return projected


def train_local(
    z: np.ndarray,
    y: np.ndarray,
    *,
    init_w: np.ndarray | None = None,
    init_b: float = 0.0,
    epochs: int = 200,
    lr: float = 0.1,
    l2: float = 1e-3,
    l1_bound: float | None = None,
) -> tuple[np.ndarray, float]:
    """Full-batch gradient descent on mean log-loss + l2/2 |w|^2 (bias not penalised).

    Deterministic (no sampling); ``init_w``/``init_b`` warm-start from the previous
    global model. ``z`` must already be standardised with the joint scaling. With
    ``l1_bound`` every step is projected onto ``|w|_1 + |b| <= l1_bound`` (the start
    too), so the result obeys it; inside the ball the steps are unchanged.
    """
    z = _matrix(z)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    rows, features = z.shape
    if y.shape[0] != rows or rows == 0:
        raise ConfigError(f"need one label per row and at least one row, got {y.shape[0]} for {rows}")
    if epochs < 0 or lr <= 0 or l2 < 0:
        raise ConfigError("train_local needs epochs >= 0, lr > 0 and l2 >= 0")
    w = np.zeros(features) if init_w is None else np.array(init_w, dtype=np.float64).reshape(-1)
    if w.shape[0] != features:
        raise ConfigError(f"initial weights have {w.shape[0]} values for {features} features")
    b = float(init_b)
    if l1_bound is not None:
        w, b = _project_model(w, b, l1_bound)
    for _ in range(epochs):
        error = sigmoid(z @ w + b) - y
        w = w - lr * (z.T @ error / rows + l2 * w)
        b -= lr * float(error.mean())
        if l1_bound is not None:
            w, b = _project_model(w, b, l1_bound)
    logger.debug("trained local model: %d rows, %d features, %d epochs", rows, features, epochs)
    return w, b


def _project_model(w: np.ndarray, b: float, radius: float) -> tuple[np.ndarray, float]:
    projected = project_l1(np.append(w, b), radius)
    return projected[:-1], float(projected[-1])


def contribution_length(features: int) -> int:
    return features + 2


def contribution(w: np.ndarray, b: float, n: int) -> np.ndarray:
    """A provider's round vector ``[n*w, n*b, n]``: sums to the weighted-average numerator."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    return np.concatenate([n * w, [n * float(b), float(n)]])


def global_model(aggregate: np.ndarray, features: int) -> tuple[np.ndarray, float]:
    """The averaged model ``(sum n_i w_i / sum n_i, sum n_i b_i / sum n_i)``."""
    aggregate = _contribution_vector(aggregate, features)
    n = aggregate[features + 1]
    if n <= 0:
        raise ProtocolError("aggregated contribution has no rows (count <= 0)")
    return aggregate[:features] / n, float(aggregate[features] / n)


def linear_parts(vector: np.ndarray, z: np.ndarray, features: int) -> tuple[np.ndarray, float]:
    """(numerator per row, denominator) of the score from a contribution vector or a share of it.

    numerator = v[:f] . z + v[f], denominator = v[f+1]; both are linear in ``v``, so
    the parts of additive shares sum to the parts of the aggregate.
    """
    vector = _contribution_vector(vector, features)
    z = np.asarray(z, dtype=np.float64)
    if z.shape[-1] != features:
        raise ConfigError(f"query has {z.shape[-1]} features, the model {features}")
    return z @ vector[:features] + vector[features], float(vector[features + 1])


def predict_proba(x: np.ndarray, w: np.ndarray, b: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Probability of label 1 for raw (unscaled) rows x."""
    return sigmoid(standardise(x, mean, std) @ np.asarray(w, dtype=np.float64) + b)


def _matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"expected a 2-D feature matrix, got {x.ndim} dimensions")
    return x


def _contribution_vector(vector: np.ndarray, features: int) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    if vector.shape[0] != contribution_length(features):
        raise ProtocolError(
            f"contribution vector needs {contribution_length(features)} values, got {vector.shape[0]}"
        )
    return vector
