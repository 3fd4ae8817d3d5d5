"""Fixtures for the model tests: the default demo split, written once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enclave_agent.model import read_table
from enclave_devnet.data import SplitResult, split_breast_cancer


@pytest.fixture(scope="session")
def split(tmp_path_factory: pytest.TempPathFactory) -> SplitResult:
    return split_breast_cancer(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="session")
def tables(split: SplitResult) -> list[tuple[np.ndarray, np.ndarray]]:
    return [read_table(path)[1:] for path in split.provider_paths]


@pytest.fixture(scope="session")
def holdout(split: SplitResult) -> tuple[np.ndarray, np.ndarray]:
    _, x, y = read_table(Path(split.holdout_path))
    return x, y
