"""Round inputs: what an agent contributes when a round names an input tag.

Tags come from the agent config (`[inputs.TAG]` with `values` or a `file`) or are
built in and computed from the agent's private CSV:

- ``column-stats``: per feature column, the sum and the sum of squares, then the
  row count (length 2 * features + 1): joint means and standard deviations.
- ``train:S:P``: one step of federated averaging. Standardise with the joint scaling
  of round S, warm-start from the model aggregated in round P (0: from zero), train
  locally and contribute ``[n w, n b, n]``. S and P must be Intermediate rounds whose
  aggregates this enclave has reconstructed; until then the input is not ready.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from enclave_agent.config import AgentConfig, DataConfig
from enclave_agent.errors import ConfigError, ProtocolError
from enclave_agent.model.logistic import (
    column_stats,
    contribution,
    global_model,
    joint_scaling,
    standardise,
    train_local,
)
from enclave_agent.model.table import read_table

BUILTIN_TAGS = ("column-stats", "train:S:P")
# Local training of one federated-averaging step (the plaintext reference uses the same).
TRAIN_EPOCHS, TRAIN_LR, TRAIN_L2 = 200, 0.1, 1e-3
# Every contributed model keeps |w|_1 + |b| within this public bound (projected
# gradient descent), so the averaged model does too: the range analysis of scores
# (enclave_agent.model.ranges) rests on it. Loose on purpose: the demo's models stay
# near 13, so the projection never binds there.
TRAIN_L1_BOUND = 64.0

Aggregates = Callable[[int], np.ndarray | None]


class InputNotReady(ProtocolError):
    """The input depends on an aggregate this enclave has not reconstructed yet."""


def load_table(data: DataConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the agent's CSV: (feature names, features matrix, labels)."""
    features, x, y = read_table(data.csv, data.label_column)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError(f"{data.csv}: cells must be finite numbers")
    return features, x, y


def resolve_input(config: AgentConfig, tag: str, aggregates: Aggregates = lambda _: None) -> np.ndarray:
    """The float vector this agent contributes for `tag`; ProtocolError if it has none."""
    spec = config.inputs.get(tag)
    if spec is not None:
        if spec.values is not None:
            return np.asarray(spec.values, dtype=np.float64)
        assert spec.file is not None
        return _load_vector(spec.file)
    if tag == "column-stats":
        if config.data is None:
            raise ProtocolError("input 'column-stats' needs a [data] table in the config")
        _, x, _ = load_table(config.data)
        return column_stats(x)
    if tag.startswith("train:"):
        return _training_step(config, tag, aggregates)
    raise ProtocolError(f"no input configured for tag '{tag}'")


def _training_step(config: AgentConfig, tag: str, aggregates: Aggregates) -> np.ndarray:
    try:
        _, stats_round, previous_round = tag.split(":")
        stats_id, previous_id = int(stats_round), int(previous_round)
    except ValueError as exc:
        raise ProtocolError(f"input tag '{tag}' is not train:STATS_ROUND:PREVIOUS_ROUND") from exc
    if config.data is None:
        raise ProtocolError(f"input '{tag}' needs a [data] table in the config")
    _, x, y = load_table(config.data)
    features = x.shape[1]
    stats = aggregates(stats_id)
    if stats is None:
        raise InputNotReady(f"joint scaling of round {stats_id} not reconstructed yet")
    if stats.size != 2 * features + 1:
        raise ProtocolError(f"round {stats_id} is not a column-stats round over {features} features")
    mean, std = joint_scaling(stats, features)
    init_w, init_b = None, 0.0
    if previous_id:
        previous = aggregates(previous_id)
        if previous is None:
            raise InputNotReady(f"model of round {previous_id} not reconstructed yet")
        init_w, init_b = global_model(previous, features)
    w, b = train_local(
        standardise(x, mean, std),
        y,
        init_w=init_w,
        init_b=init_b,
        epochs=TRAIN_EPOCHS,
        lr=TRAIN_LR,
        l2=TRAIN_L2,
        l1_bound=TRAIN_L1_BOUND,
    )
    return contribution(w, b, x.shape[0])


def _load_vector(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            vector = np.load(path, allow_pickle=False)
        else:
            vector = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"input file {path} cannot be read as a vector") from exc
    return np.asarray(vector, dtype=np.float64).reshape(-1)
