"""Evaluation: accuracy, ROC AUC, and the central (pooled, plaintext) baseline.

The central baseline pools every provider's rows in one place, which the real
system never does: it exists only to show what federation gives up (or not).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from enclave_agent.errors import ConfigError
from enclave_agent.model.logistic import column_stats, joint_scaling, predict_proba, standardise, train_local
from enclave_agent.model.table import read_table

__all__ = ["accuracy", "auc", "central_baseline", "evaluate"]

logger = logging.getLogger(__name__)


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows whose prediction ``p >= threshold`` matches the 0/1 label."""
    y = np.asarray(y).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape or y.shape[0] == 0:
        raise ConfigError(f"need as many scores as labels (at least one): {p.shape[0]} for {y.shape[0]}")
    return float(np.mean((p >= threshold) == (y == 1)))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; needs both labels present."""
    y = np.asarray(y).reshape(-1)
    if np.unique(y).shape[0] != 2:
        raise ConfigError("AUC needs both labels among the rows")
    return float(roc_auc_score(y, np.asarray(p, dtype=np.float64).reshape(-1)))


def evaluate(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, mean: np.ndarray, std: np.ndarray
) -> tuple[float, float]:
    """(accuracy, AUC) of the model on raw rows x."""
    p = predict_proba(x, w, b, mean, std)
    return accuracy(y, p), auc(y, p)


def central_baseline(
    train_csvs: Sequence[Path],
    holdout_csv: Path,
    *,
    label_column: str = "target",
    epochs: int = 1000,
    lr: float = 0.1,
    l2: float = 1e-3,
) -> tuple[float, float]:
    """(accuracy, AUC) on the holdout of one model trained on all provider rows pooled."""
    tables = [read_table(Path(path), label_column) for path in train_csvs]
    if not tables:
        raise ConfigError("central baseline needs at least one training CSV")
    x = np.vstack([t[1] for t in tables])
    y = np.concatenate([t[2] for t in tables])
    mean, std = joint_scaling(column_stats(x), x.shape[1])
    w, b = train_local(standardise(x, mean, std), y, epochs=epochs, lr=lr, l2=l2)
    _, x_test, y_test = read_table(Path(holdout_csv), label_column)
    logger.info("central baseline trained on %d pooled rows", x.shape[0])
    return evaluate(x_test, y_test, w, b, mean, std)
