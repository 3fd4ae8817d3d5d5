"""The published input range: nice numbers, a faithful JSON form, the smallest bound
when holders differ, and bounds that keep every standardised value in range."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import ConfigError, FixedPointRangeError, ProtocolError
from enclave_agent.model.logistic import project_l1, train_local
from enclave_agent.model.ranges import SAFETY, InputRange, nice_floor, score_range


@pytest.mark.parametrize(
    ("x", "nice"),
    [(1.0, 1.0), (1.99, 1.0), (2.0, 2.0), (4.99, 2.0), (5.0, 5.0), (9.99, 5.0), (10.0, 10.0), (0.0499, 0.02),
     (123456.0, 100000.0), (7e-9, 5e-9), (0.0, 0.0), (-3.0, 0.0)],
)  # fmt: skip
def test_nice_floor_examples(x: float, nice: float) -> None:
    assert nice_floor(x) == nice


@settings(max_examples=500, deadline=None)
@given(st.floats(1e-300, 1e300))
def test_nice_floor_is_the_largest_1_2_5_step_below(x: float) -> None:
    y = nice_floor(x)
    assert 0 < y <= x
    mantissa = float(f"{y:.0e}".split("e")[0])
    assert mantissa in (1.0, 2.0, 5.0)
    assert y * 2.5 > x  # the next step (2x or 2.5x) would be above x


def _range(**kwargs: object) -> InputRange:
    base = {
        "features": ("a", "b"),
        "bounds": (10.0, 0.5),
        "query_bits": 20,
        "word_bound": 2**31,
        "standardised_bound": 2047.9,
        "count_bound": 512,
        "weight_bound": 64.0,
    }
    return InputRange(**(base | kwargs))  # type: ignore[arg-type]


def test_range_json_round_trips_and_refuses_malformed() -> None:
    r = _range()
    assert InputRange.from_json(r.to_json()) == r
    assert r.public()["bounds"] == {"a": 10.0, "b": 0.5}
    for bad in ("[]", "{}", '{"version": 2}', r.to_json().replace('"bounds":[10.0,0.5]', '"bounds":["x",1]')):
        with pytest.raises(ProtocolError):
            InputRange.from_json(bad)
    data = json.loads(r.to_json())
    data["word_bound"] = 2**19  # below 2**query_bits: the bias would not fit
    with pytest.raises(ProtocolError):
        InputRange.from_json(json.dumps(data))


def test_violation_names_the_first_feature_beyond_its_bound() -> None:
    r = _range()
    assert r.violation([10.0, -0.5]) is None
    assert r.violation([-10.000001, 0.0]) == 0
    assert r.violation([0.0, math.nan]) == 1
    assert _range(bounds=(0.0, 1.0)).violation([0.0, 0.0]) == 0  # bound 0 admits nothing


def test_agreed_range_is_the_smallest_bound_of_one_encoding() -> None:
    a, b = _range(bounds=(10.0, 0.5)), _range(bounds=(5.0, 1.0), standardised_bound=1000.0)
    agreed = InputRange.agreed([a, b])
    assert agreed.bounds == (5.0, 0.5) and agreed.standardised_bound == 1000.0
    with pytest.raises(ProtocolError, match="different encodings"):
        InputRange.agreed([a, _range(query_bits=19)])
    with pytest.raises(ProtocolError):
        InputRange.agreed([])


scalings = st.tuples(
    st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(1e-4, 1e4)), min_size=1, max_size=6),
    st.integers(1, 10**6),
    st.sampled_from([RING64, PRIME61]),
    st.integers(0, 24),
    st.integers(1, 10),
)


@settings(max_examples=300, deadline=None)
@given(scalings, st.floats(-1, 1))
def test_every_input_within_the_bounds_standardises_within_the_standardised_bound(params, u) -> None:
    columns, count, modulus, frac_bits, contributors = params
    mean = np.array([m for m, _ in columns])
    std = np.array([s for _, s in columns])
    try:
        r = score_range(
            [f"f{i}" for i in range(len(columns))],
            mean,
            std,
            count=count,
            frac_bits=frac_bits,
            modulus=modulus,
            contributors=contributors,
            weight_bound=64.0,
        )
    except FixedPointRangeError:
        return  # the encoding leaves no room at all: nothing is served
    assert r.count_bound >= count and r.count_bound & (r.count_bound - 1) == 0
    for k, bound in enumerate(r.bounds):
        if bound == 0:
            assert abs(mean[k]) >= r.standardised_bound * std[k] * (1 - SAFETY)
            continue
        for x in (bound, -bound, u * bound):
            z = (x - mean[k]) / std[k]
            assert abs(z) <= r.standardised_bound
            assert abs(round(z * 2**r.query_bits)) <= r.word_bound


def test_demo_sized_model_keeps_twenty_query_bits_at_fourteen_model_bits() -> None:
    """456 rows, 30 features, 3 Shamir contributors, |w|_1 + |b| <= 64: with the model
    round at 14 fraction bits the query keeps 20 bits over 2048 standard deviations;
    at 20 model bits the same range leaves the query 14."""
    mean, std = np.zeros(30), np.ones(30)
    common = {"count": 456, "modulus": PRIME61, "contributors": 3, "weight_bound": 64.0}
    at14 = score_range([f"f{i}" for i in range(30)], mean, std, frac_bits=14, **common)  # type: ignore[arg-type]
    at20 = score_range([f"f{i}" for i in range(30)], mean, std, frac_bits=20, **common)  # type: ignore[arg-type]
    assert (at14.query_bits, at20.query_bits) == (20, 14)
    assert 2047 < at14.standardised_bound < 2048 and at14.bounds[0] == 2000.0


def test_project_l1_lands_on_the_ball_and_keeps_what_is_inside() -> None:
    v = np.array([3.0, -1.0, 0.5])
    assert project_l1(v, 10.0) is v
    p = project_l1(v, 2.0)
    assert math.isclose(float(np.abs(p).sum()), 2.0) and np.all(np.sign(p[p != 0]) == np.sign(v[p != 0]))
    np.testing.assert_allclose(p, [2.0, 0.0, 0.0])
    with pytest.raises(ConfigError):
        project_l1(v, 0.0)


def test_bounded_training_obeys_the_l1_bound_and_is_unchanged_below_it() -> None:
    rng = np.random.default_rng(3)  # test data only
    z = rng.normal(size=(200, 5)) * 3
    y = (z[:, 0] + z[:, 1] > 0).astype(float)  # separable: weights grow without a bound
    w, b = train_local(z, y, epochs=300, lr=1.0, l2=0.0, l1_bound=2.0)
    assert float(np.abs(w).sum()) + abs(b) <= 2.0 + 1e-12
    free = train_local(z, y, epochs=50, lr=0.1)
    loose = train_local(z, y, epochs=50, lr=0.1, l1_bound=1e6)
    assert np.array_equal(free[0], loose[0]) and free[1] == loose[1]
