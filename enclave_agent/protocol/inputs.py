"""Round inputs: what an agent contributes when a round names an input tag.

Tags come from the agent config (`[inputs.TAG]` with `values` or a `file`) or are
built in and computed from the agent's private CSV:

- ``column-stats``: per feature column, the sum and the sum of squares, then the
  row count (length 2 * features + 1): joint means and standard deviations.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from enclave_agent.config import AgentConfig, DataConfig
from enclave_agent.errors import ConfigError, ProtocolError

BUILTIN_TAGS = ("column-stats",)


def load_table(data: DataConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the agent's CSV: (feature names, features matrix, labels)."""
    try:
        with data.csv.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = [row for row in reader if row]
    except (OSError, StopIteration) as exc:
        raise ConfigError(f"{data.csv}: cannot read CSV") from exc
    if data.label_column not in header:
        raise ConfigError(f"{data.csv}: label column '{data.label_column}' not in header")
    label_at = header.index(data.label_column)
    try:
        matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise ConfigError(f"{data.csv}: non-numeric cell") from exc
    if matrix.ndim != 2 or matrix.shape[1] != len(header):
        raise ConfigError(f"{data.csv}: every row needs {len(header)} cells")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"{data.csv}: cells must be finite numbers")
    features = [h for i, h in enumerate(header) if i != label_at]
    return features, np.delete(matrix, label_at, axis=1), matrix[:, label_at]


def column_stats(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x.sum(axis=0), (x * x).sum(axis=0), [float(x.shape[0])]])


def resolve_input(config: AgentConfig, tag: str) -> np.ndarray:
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
    raise ProtocolError(f"no input configured for tag '{tag}'")


def _load_vector(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            vector = np.load(path, allow_pickle=False)
        else:
            vector = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"input file {path} cannot be read as a vector") from exc
    return np.asarray(vector, dtype=np.float64).reshape(-1)
