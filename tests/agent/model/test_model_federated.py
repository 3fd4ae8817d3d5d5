"""Federated averaging quality against each provider alone and the central baseline,
and the public model description."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enclave_agent.errors import ConfigError, ProtocolError
from enclave_agent.model import (
    ModelSpec,
    column_stats,
    fedavg_plaintext,
    joint_scaling,
    log_loss,
    predict_proba,
    sigmoid,
    standardise,
    train_local,
)
from enclave_devnet.evaluation import accuracy, auc, central_baseline, evaluate

ROUNDS = 3  # what the demo runs; the secure tests compare against the same reference


def holdout_log_loss(holdout, w, b, mean, std) -> float:
    x, y = holdout
    p = predict_proba(x, w, b, mean, std)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.fixture(scope="module")
def federated(tables):
    return fedavg_plaintext(tables, ROUNDS)


def test_federated_model_is_good_on_holdout(federated, holdout) -> None:
    acc, area = evaluate(*holdout, *federated)
    assert acc >= 0.9 and area >= 0.95


def test_federated_beats_the_weakest_provider_alone(federated, tables, holdout) -> None:
    # fedavg over one table is that provider training alone: own scaling, same epochs.
    alone = [fedavg_plaintext([table], ROUNDS) for table in tables]
    scores = [evaluate(*holdout, *model) for model in alone]
    weakest = min(range(len(tables)), key=lambda i: scores[i][0])
    fed_acc, fed_auc = evaluate(*holdout, *federated)
    assert fed_acc >= scores[weakest][0] + 0.05
    assert fed_acc >= max(acc for acc, _ in scores) - 0.03  # about as good as the best alone
    assert holdout_log_loss(holdout, *federated) < 0.7 * holdout_log_loss(holdout, *alone[weakest])


def test_federated_is_close_to_central_baseline(federated, split, holdout) -> None:
    central_acc, central_auc = central_baseline(split.provider_paths, split.holdout_path)
    assert central_acc >= 0.9 and central_auc >= 0.95
    fed_acc, fed_auc = evaluate(*holdout, *federated)
    assert abs(fed_acc - central_acc) <= 0.03 and abs(fed_auc - central_auc) <= 0.02


def test_fedavg_follows_the_protocol_rounds(tables) -> None:
    # One round from zero = the row-weighted average of the providers' local models
    # trained with the joint scaling.
    features = tables[0][0].shape[1]
    mean, std = joint_scaling(sum(column_stats(x) for x, _ in tables), features)
    local = [train_local(standardise(x, mean, std), y, epochs=20) for x, y in tables]
    rows = [x.shape[0] for x, _ in tables]
    w_expected = sum(n * w for n, (w, _) in zip(rows, local)) / sum(rows)
    b_expected = sum(n * b for n, (_, b) in zip(rows, local)) / sum(rows)
    w, b, m, s = fedavg_plaintext(tables, 1, epochs=20)
    np.testing.assert_allclose(w, w_expected, rtol=1e-12)
    assert b == pytest.approx(b_expected) and np.array_equal(m, mean) and np.array_equal(s, std)
    # More rounds keep lowering the pooled training loss.
    z_all = standardise(np.vstack([x for x, _ in tables]), mean, std)
    y_all = np.concatenate([y for _, y in tables])
    w3, b3, *_ = fedavg_plaintext(tables, 3, epochs=20)
    assert log_loss(z_all, y_all, w3, b3) < log_loss(z_all, y_all, w, b)
    with pytest.raises(ConfigError):
        fedavg_plaintext(tables, 0)


def test_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert accuracy(y, p) == 0.5 and accuracy(y, p, threshold=0.35) == 0.75
    assert auc(y, p) == 0.75 and auc(y, sigmoid(np.array([-3.0, -2.0, 2.0, 3.0]))) == 1.0
    with pytest.raises(ConfigError):
        auc(np.ones(4), p)
    with pytest.raises(ConfigError):
        accuracy(y, p[:3])


def test_model_spec_metadata_round_trip(split) -> None:
    spec = ModelSpec(features=list(split.features), stats_round=1, train_rounds=[2, 3, 4])
    text = spec.to_metadata()
    assert " " not in text and "\n" not in text
    data = json.loads(text)
    f = len(split.features)
    assert data["link"] == "logistic" and data["features"] == list(split.features)
    assert data["scaling"] == {"method": "joint-standardisation", "stats_round": 1}
    assert data["layout"] == {"weights": [0, f], "bias": f, "count": f + 1, "length": f + 2}
    again = ModelSpec.from_metadata(text)
    assert again == spec and again.to_metadata() == text and again.model_round == 4
    assert ModelSpec(features=list(split.features), stats_round=1, train_rounds=[2, 3]) != spec


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(link="probit"),
        lambda d: d.update(train_rounds=[]),
        lambda d: d.update(train_rounds=[0]),
        lambda d: d["scaling"].update(stats_round=True),
        lambda d: d["scaling"].update(method="minmax"),
        lambda d: d.update(features=[1] * len(d["features"])),
        lambda d: d.update(features=["a", "a"]),
        lambda d: d["layout"].update(length=3),
        lambda d: d.pop("scaling"),
    ],
)
def test_model_spec_refuses_bad_metadata(mutate) -> None:
    spec = ModelSpec(features=["a", "b"], stats_round=1, train_rounds=[2])
    data = json.loads(spec.to_metadata())
    mutate(data)
    with pytest.raises(ProtocolError):
        ModelSpec.from_metadata(json.dumps(data))
    with pytest.raises(ProtocolError):
        ModelSpec.from_metadata("not json")


def test_model_spec_carries_units_classes_and_a_description_only_when_given() -> None:
    plain = ModelSpec(features=["a", "b"], stats_round=1, train_rounds=[2])
    assert not {"units", "classes", "description"} & set(json.loads(plain.to_metadata()))
    spec = ModelSpec(
        features=["a", "b"],
        stats_round=1,
        train_rounds=[2],
        units={"a": "mm"},
        classes={"0": "no", "1": "yes"},
        description="a toy",
    )
    data = json.loads(spec.to_metadata())
    assert (data["units"], data["classes"], data["description"]) == (
        {"a": "mm"},
        {"0": "no", "1": "yes"},
        "a toy",
    )
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"units": {"c": "mm"}}, "unknown feature 'c'"),
        ({"classes": {"2": "maybe"}}, "labels '0' and '1'"),
        ({"description": "x" * 201}, "at most 200 characters"),
    ],
)
def test_model_spec_refuses_descriptions_that_do_not_fit(kwargs, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        ModelSpec(features=["a", "b"], stats_round=1, train_rounds=[2], **kwargs)
    good = json.loads(ModelSpec(features=["a", "b"], stats_round=1, train_rounds=[2]).to_metadata())
    with pytest.raises(ProtocolError):
        ModelSpec.from_metadata(json.dumps(good | kwargs))
