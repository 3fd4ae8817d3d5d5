"""The demo split: deterministic, uneven in size and class balance, readable by the agent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from enclave_agent.config import DataConfig
from enclave_agent.errors import ConfigError
from enclave_agent.model import read_table
from enclave_agent.protocol.inputs import load_table
from enclave_devnet.data import SplitResult, csv_safe_name, split_breast_cancer


def file_bytes(result: SplitResult) -> list[bytes]:
    return [p.read_bytes() for p in (*result.provider_paths, result.holdout_path)]


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path: Path, split: SplitResult) -> None:
    again = split_breast_cancer(tmp_path / "again")
    assert file_bytes(again) == file_bytes(split)
    assert again.provider_rows == split.provider_rows
    other = split_breast_cancer(tmp_path / "other", seed=8)
    assert file_bytes(other) != file_bytes(split)


def test_files_names_and_header(split: SplitResult) -> None:
    assert [p.name for p in split.provider_paths] == ["provider-0.csv", "provider-1.csv", "provider-2.csv"]
    assert split.holdout_path.name == "holdout.csv"
    header = split.provider_paths[0].read_text().splitlines()[0].split(",")
    assert header[0] == "mean_radius" and header[-1] == "target" and len(header) == 31
    assert list(split.features) == header[:-1]
    assert all(name.isidentifier() and name == name.lower() for name in header)
    assert csv_safe_name("Worst Concave  Points ") == "worst_concave_points"


def test_rows_partition_the_data_set(split: SplitResult, tables, holdout) -> None:
    data = load_breast_cancer()
    written = np.vstack([np.column_stack([x, y]) for x, y in [*tables, holdout]])
    original = np.column_stack([data.data, data.target])
    # Every original row appears exactly once (the CSV round trip is exact).
    assert written.shape == original.shape
    assert np.array_equal(np.unique(written, axis=0), np.unique(original, axis=0))
    assert sum(split.provider_rows) + split.holdout_rows == 569
    # Stratified 20% holdout.
    assert split.holdout_rows == 113 and int(holdout[1].sum()) == round(0.2 * 357)


def test_uneven_sizes_and_class_balance(split: SplitResult, tables) -> None:
    assert split.provider_rows == (228, 137, 91)  # 0.5 / 0.3 / 0.2 of 455
    assert [len(y) for _, y in tables] == list(split.provider_rows)
    assert split.provider_positives == tuple(int(y.sum()) for _, y in tables)
    benign_share = [pos / rows for pos, rows in zip(split.provider_positives, split.provider_rows)]
    # Provider 0 leans malignant, the last (smallest) sees almost only benign rows,
    # yet every provider keeps both labels.
    assert benign_share[0] < 0.4 and benign_share[2] > 0.9
    assert benign_share == sorted(benign_share)
    assert all(0 < pos < rows for pos, rows in zip(split.provider_positives, split.provider_rows))


def test_no_skew_keeps_balance(tmp_path: Path) -> None:
    result = split_breast_cancer(tmp_path, skew=0.0)
    shares = [pos / rows for pos, rows in zip(result.provider_positives, result.provider_rows)]
    assert max(shares) - min(shares) < 0.1


def test_agent_loader_reads_the_same_table(split: SplitResult) -> None:
    path = split.provider_paths[2]
    names, x, y = load_table(DataConfig(csv=path, label_column="target"))
    ours = read_table(path)
    assert names == ours[0] == list(split.features)
    assert np.array_equal(x, ours[1]) and np.array_equal(y, ours[2])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fractions": (0.5, 0.5)},
        {"fractions": (0.5, 0.3, 0.3)},
        {"fractions": (0.5, 0.6, -0.1)},
        {"holdout": 1.0},
        {"skew": 1.5},
        {"label_column": "mean_radius"},
        {"providers": 300, "fractions": (1 / 300,) * 300},
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs) -> None:
    with pytest.raises(ConfigError):
        split_breast_cancer(tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_read_table_refuses_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,target\n1.0,x\n")
    with pytest.raises(ConfigError):
        read_table(bad)
    bad.write_text("a,label\n1.0,0\n")
    with pytest.raises(ConfigError):
        read_table(bad)
    with pytest.raises(ConfigError):
        read_table(tmp_path / "missing.csv")
