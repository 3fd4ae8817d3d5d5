"""The agents' input tables: a numeric CSV with a header and one label column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from enclave_agent.errors import ConfigError

__all__ = ["read_table"]


def read_table(path: Path, label_column: str = "target") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a numeric CSV (as ``enclave-devnet sample-data`` writes): (feature names, X, y).

    The agents read their CSVs through ``enclave_agent.protocol.inputs.load_table``,
    which adds a finiteness check.
    """
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle))
        matrix = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except (OSError, StopIteration, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read a numeric CSV") from exc
    if label_column not in header or matrix.shape[1] != len(header):
        raise ConfigError(f"{path}: needs the label column '{label_column}' and one cell per header")
    at = header.index(label_column)
    return [h for i, h in enumerate(header) if i != at], np.delete(matrix, at, axis=1), matrix[:, at]
