"""The demo's data: scikit-learn's bundled breast-cancer set split among providers.

``split_breast_cancer`` writes one CSV per provider plus a holdout CSV. The split is
deliberately unfair, as real consortia are:

1. The rows are shuffled with ``numpy.random.default_rng(seed)``; a stratified
   ``holdout`` fraction (per label) is set aside for evaluation.
2. Uneven class balance: a random ``skew`` fraction of the remaining rows is sorted
   by label *in place* (those rows keep their slots, their labels are reordered
   0..0 1..1 over the slots). Early slots thus lean to label 0 (malignant), late
   slots to label 1 (benign); the unsorted rows keep both labels everywhere.
3. Uneven sizes: providers take consecutive blocks of ``fractions`` of those rows.

With the defaults the last (smallest) provider sees few malignant cases, and its own
model is clearly worse than the joint one. Same arguments, same files, byte for byte.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from enclave_agent.errors import ConfigError

__all__ = [
    "BREAST_CANCER_CLASSES",
    "SplitResult",
    "breast_cancer_units",
    "csv_safe_name",
    "split_breast_cancer",
    "uneven_fractions",
]

# What the labels of the breast-cancer set mean (scikit-learn's target_names).
BREAST_CANCER_CLASSES = {"0": "malignant", "1": "benign"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitResult:
    provider_paths: tuple[Path, ...]
    holdout_path: Path
    provider_rows: tuple[int, ...]
    provider_positives: tuple[int, ...]  # rows with label 1 (benign) per provider
    holdout_rows: int
    features: tuple[str, ...]
    label_column: str


def csv_safe_name(name: str) -> str:
    """'mean radius' -> 'mean_radius': lowercase, runs of other characters -> '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def uneven_fractions(providers: int) -> tuple[float, ...]:
    """The demo's provider shares: 0.5, 0.3, 0.2 for three, else n, n-1, ..., 1 normalised."""
    if providers == 3:
        return (0.5, 0.3, 0.2)
    weights = np.arange(providers, 0, -1, dtype=float)
    return tuple(float(w) for w in weights / weights.sum())


def breast_cancer_units(features: Sequence[str]) -> dict[str, str]:
    """Units of the breast-cancer features (measured on digitised images of a fine
    needle aspirate): lengths in pixels, areas in square pixels, texture as a standard
    deviation of grey levels, the shape measures without unit ("1")."""

    def unit(name: str) -> str:
        if "radius" in name or "perimeter" in name:
            return "px"
        if "area" in name:
            return "px²"
        if "texture" in name:
            return "grey level"
        return "1"

    return {name: unit(name) for name in features}


def split_breast_cancer(
    out_dir: Path,
    *,
    providers: int = 3,
    fractions: Sequence[float] = (0.5, 0.3, 0.2),
    holdout: float = 0.2,
    seed: int = 7,
    label_column: str = "target",
    skew: float = 0.8,
) -> SplitResult:
    """Write ``provider-<i>.csv`` for each provider and ``holdout.csv`` into ``out_dir``."""
    if providers < 1 or len(fractions) != providers:
        raise ConfigError(f"need one fraction per provider: {len(fractions)} for {providers}")
    if min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ConfigError("provider fractions must be positive and sum to 1")
    if not 0 < holdout < 1 or not 0 <= skew <= 1:
        raise ConfigError("holdout must be in (0, 1) and skew in [0, 1]")
    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    features = tuple(csv_safe_name(str(name)) for name in bunch.feature_names)
    if label_column in features or not label_column:
        raise ConfigError(f"label column '{label_column}' clashes with a feature name")

    rng = np.random.default_rng(seed)
    order = rng.permutation(y.shape[0])
    held = np.zeros(y.shape[0], dtype=bool)
    for label in (0, 1):
        members = order[y[order] == label]
        held[members[: round(holdout * members.shape[0])]] = True
    holdout_idx = order[held[order]]
    train_idx = order[~held[order]]

    slots = np.sort(rng.choice(train_idx.shape[0], size=round(skew * train_idx.shape[0]), replace=False))
    rows_in_slots = train_idx[slots]
    train_idx[slots] = rows_in_slots[np.argsort(y[rows_in_slots], kind="stable")]

    sizes = _block_sizes(train_idx.shape[0], fractions)
    if min(sizes) < 2:
        raise ConfigError(f"every provider needs at least 2 rows, sizes would be {sizes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    header = [*features, label_column]
    paths: list[Path] = []
    positives: list[int] = []
    start = 0
    for i, size in enumerate(sizes):
        block = train_idx[start : start + size]
        start += size
        paths.append(_write_csv(out_dir / f"provider-{i}.csv", header, x[block], y[block]))
        positives.append(int(y[block].sum()))
    holdout_path = _write_csv(out_dir / "holdout.csv", header, x[holdout_idx], y[holdout_idx])
    logger.info(
        "split breast-cancer data into %d providers %s and %d holdout rows",
        providers,
        sizes,
        len(holdout_idx),
    )
    return SplitResult(
        provider_paths=tuple(paths),
        holdout_path=holdout_path,
        provider_rows=tuple(sizes),
        provider_positives=tuple(positives),
        holdout_rows=int(holdout_idx.shape[0]),
        features=features,
        label_column=label_column,
    )


def _block_sizes(total: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``fractions * total``: the sizes sum to ``total``."""
    exact = [f * total for f in fractions]
    sizes = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_remainder[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _write_csv(path: Path, header: list[str], x: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row, label in zip(x, y, strict=True):
            writer.writerow([repr(float(v)) for v in row] + [str(int(label))])
    return path
