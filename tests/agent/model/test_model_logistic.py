"""Scaling from column stats, local training, contributions and the linear score."""

from __future__ import annotations

import numpy as np
import pytest

from enclave_agent.errors import ConfigError, ProtocolError
from enclave_agent.model import (
    column_stats,
    contribution,
    global_model,
    joint_scaling,
    linear_parts,
    log_loss,
    predict_proba,
    sigmoid,
    standardise,
    train_local,
)


def pooled(tables):
    return np.vstack([x for x, _ in tables]), np.concatenate([y for _, y in tables])


def test_column_stats_layout(tables) -> None:
    x = tables[0][0]
    stats = column_stats(x)
    f = x.shape[1]
    assert stats.shape == (2 * f + 1,)
    assert np.allclose(stats[:f], x.sum(axis=0)) and np.allclose(stats[f : 2 * f], (x**2).sum(axis=0))
    assert stats[-1] == x.shape[0]


def test_joint_scaling_matches_numpy_on_pooled_data(tables) -> None:
    x, _ = pooled(tables)
    aggregate = sum(column_stats(xi) for xi, _ in tables)
    mean, std = joint_scaling(aggregate, x.shape[1])
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-9)
    z = standardise(x, mean, std)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-9)


def test_constant_and_tiny_variance_columns_scale_by_one() -> None:
    x = np.array([[5.0, 1e6, 1.0], [5.0, 1e6, 3.0], [5.0, 1e6, 5.0]])
    stats = column_stats(x)
    stats[4] *= 1 + 1e-15  # rounding that makes sumsq/n - mean^2 a tiny positive
    stats[3] *= 1 - 1e-15  # ... or negative
    mean, std = joint_scaling(stats, 3)
    assert std[0] == 1.0 and std[1] == 1.0
    np.testing.assert_allclose(std[2], np.std([1.0, 3.0, 5.0]))
    z = standardise(x, mean, np.array([0.0, 0.0, std[2]]))
    assert np.isfinite(z).all() and np.allclose(z[:, 0], 0.0)


def test_joint_scaling_refuses_bad_aggregates() -> None:
    with pytest.raises(ProtocolError):
        joint_scaling(np.zeros(6), 3)
    with pytest.raises(ProtocolError):
        joint_scaling(np.zeros(7), 3)  # zero rows
    with pytest.raises(ProtocolError):
        joint_scaling(np.array([np.nan, 1.0, 1.0]), 1)


def test_sigmoid_is_stable_and_symmetric() -> None:
    s = sigmoid(np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0]))
    assert np.isfinite(s).all() and s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5
    assert s[1] == pytest.approx(1 - s[3]) and s[3] == pytest.approx(1 / (1 + np.exp(-1)))


def test_train_local_lowers_log_loss_and_fits(tables) -> None:
    x, y = tables[0]
    mean, std = joint_scaling(column_stats(x), x.shape[1])
    z = standardise(x, mean, std)
    start = log_loss(z, y, np.zeros(z.shape[1]), 0.0)
    assert start == pytest.approx(np.log(2))
    w, b = train_local(z, y, epochs=50)
    w2, b2 = train_local(z, y, epochs=200)
    assert log_loss(z, y, w2, b2) < log_loss(z, y, w, b) < start
    assert np.mean((sigmoid(z @ w2 + b2) >= 0.5) == y) > 0.95
    # Deterministic: same inputs, same bits.
    w3, b3 = train_local(z, y, epochs=200)
    assert np.array_equal(w2, w3) and b2 == b3


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 3))
    y = (rng.random(40) < 0.5).astype(float)
    w0, b0, l2, lr = rng.normal(size=3), 0.3, 0.01, 1e-3
    w1, b1 = train_local(z, y, init_w=w0, init_b=b0, epochs=1, lr=lr, l2=l2)

    def objective(w: np.ndarray, b: float) -> float:
        return log_loss(z, y, w, b) + l2 / 2 * float(w @ w)

    eps = 1e-6
    grad_w = [(objective(w0 + eps * e, b0) - objective(w0 - eps * e, b0)) / (2 * eps) for e in np.eye(3)]
    grad_b = (objective(w0, b0 + eps) - objective(w0, b0 - eps)) / (2 * eps)
    np.testing.assert_allclose((w0 - w1) / lr, grad_w, rtol=1e-6)
    assert (b0 - b1) / lr == pytest.approx(grad_b, rel=1e-6)


def test_warm_start_continues_training(tables) -> None:
    x, y = tables[1]
    mean, std = joint_scaling(column_stats(x), x.shape[1])
    z = standardise(x, mean, std)
    w_a, b_a = train_local(z, y, epochs=100)
    w_ab, b_ab = train_local(z, y, init_w=w_a, init_b=b_a, epochs=100)
    w_200, b_200 = train_local(z, y, epochs=200)
    np.testing.assert_allclose(w_ab, w_200, rtol=1e-12, atol=1e-14)
    assert b_ab == pytest.approx(b_200, rel=1e-12)
    # Zero epochs returns the start point; the caller's array is not modified.
    start = w_a.copy()
    w0, b0 = train_local(z, y, init_w=w_a, init_b=b_a, epochs=0)
    assert np.array_equal(w0, start) and b0 == b_a and np.array_equal(w_a, start)


def test_train_local_refuses_mismatched_inputs() -> None:
    z = np.zeros((4, 2))
    with pytest.raises(ConfigError):
        train_local(z, np.zeros(3))
    with pytest.raises(ConfigError):
        train_local(z, np.zeros(4), init_w=np.zeros(3))
    with pytest.raises(ConfigError):
        train_local(z, np.zeros(4), lr=0.0)


def test_contribution_and_global_model_average_by_rows() -> None:
    w1, b1, n1 = np.array([1.0, 2.0]), 0.5, 30
    w2, b2, n2 = np.array([-1.0, 4.0]), -1.5, 10
    c1 = contribution(w1, b1, n1)
    np.testing.assert_array_equal(c1, [30.0, 60.0, 15.0, 30.0])
    w, b = global_model(c1 + contribution(w2, b2, n2), 2)
    np.testing.assert_allclose(w, (n1 * w1 + n2 * w2) / (n1 + n2))
    assert b == pytest.approx((n1 * b1 + n2 * b2) / (n1 + n2))
    with pytest.raises(ProtocolError):
        global_model(np.zeros(3), 2)
    with pytest.raises(ProtocolError):
        global_model(np.zeros(4), 2)  # no rows


def test_linear_score_from_shares_equals_averaged_model(tables) -> None:
    features = tables[0][0].shape[1]
    x_all, _ = pooled(tables)
    mean, std = joint_scaling(sum(column_stats(x) for x, _ in tables), features)
    parts = []
    for x, y in tables:
        w_i, b_i = train_local(standardise(x, mean, std), y, epochs=100)
        parts.append(contribution(w_i, b_i, x.shape[0]))
    aggregate = np.sum(parts, axis=0)
    w, b = global_model(aggregate, features)
    queries = x_all[:25]
    z = standardise(queries, mean, std)
    expected = predict_proba(queries, w, b, mean, std)

    numerator, denominator = linear_parts(aggregate, z, features)
    assert denominator == sum(x.shape[0] for x, _ in tables)
    np.testing.assert_allclose(sigmoid(numerator / denominator), expected, rtol=1e-12)

    # Additive shares of the aggregate: each holder computes its parts locally, the parts add up.
    rng = np.random.default_rng(1)
    shares = [rng.normal(scale=1e3, size=aggregate.shape) for _ in range(2)]
    shares.append(aggregate - shares[0] - shares[1])
    share_parts = [linear_parts(s, z, features) for s in shares]
    num = sum(p[0] for p in share_parts)
    den = sum(p[1] for p in share_parts)
    np.testing.assert_allclose(sigmoid(num / den), expected, rtol=1e-9)
    with pytest.raises(ConfigError):
        linear_parts(aggregate, z[:, :-1], features)
