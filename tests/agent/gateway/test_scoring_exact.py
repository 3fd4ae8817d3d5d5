"""Exact or refused, on shares (Hypothesis): for random models (contributions inside
the public L1 bound, additive or Shamir, any fraction bits) and random rows up to the
published bounds, the score the holders compute on their shares and the gateway
combines equals the plaintext score of the same model; a row beyond a bound is
refused by the gateway's check and by each provider's."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import fixed_point
from enclave_agent.crypto.field import PRIME61, RING64, sum_arrays
from enclave_agent.crypto.ranges import check_query_words
from enclave_agent.crypto.sharing import additive_split, shamir_split
from enclave_agent.errors import FixedPointRangeError, ProtocolError
from enclave_agent.gateway import scoring, validation
from enclave_agent.model.federated import ModelSpec
from enclave_agent.model.logistic import project_l1, standardise
from enclave_agent.model.ranges import InputRange, score_range
from enclave_agent.protocol import queries
from enclave_agent.protocol.inputs import TRAIN_L1_BOUND
from enclave_agent.protocol.partials import partial_score, query_words
from enclave_agent.protocol.records import ModelRecord
from enclave_agent.protocol.responder import InferenceResponder

RELATIVE = 1e-6


@st.composite
def models(draw: st.DrawFn) -> dict:
    """A consortium's secret-shared model: contributions [n w, n b, n] of models in the
    L1 ball, encoded, shared and fused per holder exactly as the rounds do."""
    features = draw(st.integers(1, 6))
    contributors = draw(st.integers(1, 4))
    shamir = draw(st.booleans())
    modulus = PRIME61 if shamir else RING64
    threshold = draw(st.integers(1, contributors)) if shamir else contributors
    frac_bits = draw(st.integers(6, 24))
    unit = st.floats(-1, 1, allow_nan=False)
    contributions = []
    for _ in range(contributors):
        direction = np.array(draw(st.lists(unit, min_size=features + 1, max_size=features + 1)))
        assume(np.abs(direction).sum() > 0)
        norm = draw(st.sampled_from([1.0, draw(st.floats(0, 1))])) * TRAIN_L1_BOUND
        wb = project_l1(direction / np.abs(direction).sum() * norm, TRAIN_L1_BOUND)
        rows = draw(st.integers(1, 5000))
        contributions.append(np.concatenate([rows * wb, [float(rows)]]))
    mean = np.array(draw(st.lists(st.floats(-50, 50), min_size=features, max_size=features)))
    std = np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=features, max_size=features)))
    mean = mean * std  # within 50 standard deviations of zero: every bound is positive
    encoded = [fixed_point.encode(c, frac_bits, modulus, headroom=contributors) for c in contributions]
    split = (
        [shamir_split(e, contributors, threshold, modulus) for e in encoded]
        if shamir
        else [additive_split(e, contributors, modulus) for e in encoded]
    )
    fused = {j + 1: sum_arrays([s[j] for s in split], modulus) for j in range(contributors)}
    signed = [[scoring.centred(int(v), modulus) for v in e] for e in encoded]
    aggregate = [sum(column) for column in zip(*signed, strict=True)]
    count = sum(int(c[-1]) for c in contributions)
    bounds = score_range(
        [f"f{k}" for k in range(features)],
        mean,
        std,
        count=count,
        frac_bits=frac_bits,
        modulus=modulus,
        contributors=contributors,
        weight_bound=TRAIN_L1_BOUND,
    )
    return {
        "modulus": modulus,
        "threshold": threshold,
        "frac_bits": frac_bits,
        "fused": fused,
        "aggregate": aggregate,  # the exact integer aggregate (never formed in the system)
        "mean": mean,
        "std": std,
        "bounds": bounds,
    }


def secure_score(model: dict, row: np.ndarray) -> float:
    """What the system computes: each holder's partial on its fused share, every partial
    combined (Shamir: checked by Reed-Solomon), decoded at the published query fraction bits."""
    bounds: InputRange = model["bounds"]
    z = standardise(row[None, :], model["mean"], model["std"])[0]
    words = query_words(z, bounds.query_bits, bounds.word_bound)
    modulus = model["modulus"]
    partials = {
        x: list(partial_score(share, words, bounds.query_bits, modulus))
        for x, share in model["fused"].items()
    }
    additive = modulus == RING64
    numerator, denominator = scoring.combine(partials, modulus, additive, model["threshold"]).total
    return scoring.score_value(numerator, denominator, model["frac_bits"], bounds.query_bits, modulus)


def plaintext_scores(model: dict, row: np.ndarray) -> tuple[float, float, float]:
    """The same model in the clear: (score of the standardised row, score of the row as
    the query words carry it, the bound of the query's rounding |w|_1 * 2**-(g+1))."""
    bounds: InputRange = model["bounds"]
    a = model["aggregate"]
    f = len(a) - 2
    z = standardise(row[None, :], model["mean"], model["std"])[0]
    w = [Fraction(a[k], a[f + 1]) for k in range(f)]
    b = Fraction(a[f], a[f + 1])
    clear = float(sum(wk * Fraction(float(zk)) for wk, zk in zip(w, z, strict=True)) + b)
    g = bounds.query_bits
    words = [round(Fraction(float(zk)) * 2**g) for zk in z]
    on_grid = float(sum(wk * Fraction(q, 2**g) for wk, q in zip(w, words, strict=True)) + b)
    rounding = float(sum(abs(wk) for wk in w)) * 2.0 ** -(g + 1)
    return clear, on_grid, rounding


@settings(max_examples=150, deadline=None)
@given(models(), st.data())
def test_rows_within_the_published_bounds_are_scored_exactly(model: dict, data: st.DataObject) -> None:
    bounds: InputRange = model["bounds"]
    reach = data.draw(st.lists(st.floats(-1, 1), min_size=len(bounds.bounds), max_size=len(bounds.bounds)))
    at_edge = data.draw(st.booleans())  # every feature at +-bound: the largest words allowed
    row = np.array(
        [
            (1.0 if u >= 0 else -1.0) * b if at_edge else u * b
            for u, b in zip(reach, bounds.bounds, strict=True)
        ]
    )
    assert bounds.violation(row) is None
    secure = secure_score(model, row)
    clear, on_grid, rounding = plaintext_scores(model, row)
    # Exact: the secure score is the model's score of the encoded row, to float precision.
    assert abs(secure - on_grid) <= RELATIVE * max(abs(on_grid), 1e-300) + 1e-300
    # And the plaintext score of the row itself within 1e-6 relative, plus the query's
    # documented rounding to g fraction bits.
    assert abs(secure - clear) <= RELATIVE * abs(clear) + rounding


@settings(max_examples=100, deadline=None)
@given(models(), st.data())
def test_rows_beyond_a_bound_are_refused_by_gateway_and_provider(model: dict, data: st.DataObject) -> None:
    bounds: InputRange = model["bounds"]
    k = data.draw(st.integers(0, len(bounds.bounds) - 1))
    factor = data.draw(st.sampled_from([1.0000001, 2.0, 1e3, 1e9]))
    row = [0.0] * len(bounds.bounds)
    row[k] = data.draw(st.sampled_from([1.0, -1.0])) * bounds.bounds[k] * factor
    assert bounds.violation(row) == k
    # The gateway: 422 naming the feature and its bound.
    score = validation.ScoreRequest([row], batch=False)
    body = {"features": {f"f{i}": v for i, v in enumerate(row)}}
    with pytest.raises(validation.InvalidRequest) as refused:
        validation.check_range(body, score, bounds)
    assert refused.value.status == 422 and refused.value.field == f"features.f{k}"
    assert refused.value.extra == {"feature": f"f{k}", "bound": bounds.bounds[k]}
    # Each provider, whoever sent the row (a gateway that skipped its check): the
    # responder refuses it before computing anything on its share.
    with pytest.raises(ProtocolError, match=f"row 0: feature 'f{k}' is outside the model's input range"):
        provider_partial(model, [row])
    zero = [0.0] * len(bounds.bounds)  # the same provider path answers a row inside the range
    answer = provider_partial(model, [zero])
    assert len(answer) == 2 and all(0 <= v < model["modulus"] for v in answer)


def provider_partial(model: dict, rows: list[list[float]]) -> list[int]:
    """A provider's answer through ``InferenceResponder._partial``: its fused share, the
    model's public metadata, joint statistics and published range, as its store holds them."""
    bounds: InputRange = model["bounds"]
    features = [f"f{k}" for k in range(len(bounds.bounds))]
    count = 100.0
    mean, std = np.asarray(model["mean"]), np.asarray(model["std"])
    stats = np.concatenate([mean * count, (std**2 + mean**2) * count, [count]])
    spec = ModelSpec(features=features, stats_round=1, train_rounds=[2])
    share = model["fused"][min(model["fused"])]
    agent = SimpleNamespace(fused_share=lambda round_id: share, aggregate=lambda round_id: stats)
    responder = InferenceResponder(agent)  # type: ignore[arg-type]
    responder.input_range = lambda m: bounds  # type: ignore[method-assign]
    doc = SimpleNamespace(round_id=2, modulus=model["modulus"])
    query = queries.Query(kind=queries.KIND_SCORE, rows=tuple(tuple(r) for r in rows))
    record = ModelRecord(id=1, round_id=2, kind="shared-model", fee=0, name="m", metadata=spec.to_metadata())
    return responder._partial(record, doc, query)  # type: ignore[arg-type]


def test_without_the_range_check_a_hostile_row_comes_back_with_the_wrong_sign() -> None:
    """Why the check exists: the issue's demo-sized case at the old encoding (20 model
    and 20 query fraction bits, 456 rows, a score of +3000) wraps to a negative score."""
    modulus, frac_bits, count = PRIME61, 20, 456
    aggregate = [count * 1 << frac_bits, 0, count << frac_bits]  # w = 1, b = 0, one feature
    words = [3000 << frac_bits]  # z = 3000
    partial = partial_score(np.array(aggregate, dtype=np.uint64), words, frac_bits, modulus)
    assert scoring.score_value(*partial, frac_bits, frac_bits, modulus) < 0  # silently wrong
    word_bound = (2**60 - 1) // (count * 64 << frac_bits)  # |w|_1 + |b| <= 64 at 456 rows
    with pytest.raises(FixedPointRangeError):  # what each provider now does instead
        check_query_words(words, frac_bits, word_bound)
