"""The analysts' Python client (``enclave_client.Client``) against the demo
consortium: model cards, scores of a data frame equal to the plaintext joint model,
batching (several calls, several signed requests), sealed answers, statistics, and
every refusal typed, named and never charged."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import numpy as np
import pytest

from enclave_agent.errors import DecryptionError
from enclave_agent.model.federated import fedavg_plaintext
from enclave_agent.model.logistic import predict_proba
from enclave_agent.model.table import read_table
from enclave_agent.protocol.inputs import TRAIN_EPOCHS, TRAIN_L1_BOUND, TRAIN_L2, TRAIN_LR
from enclave_client import (
    AccessDenied,
    AuthenticationError,
    Client,
    InvalidInput,
    OutOfRange,
    PaymentRequired,
    QuotaExhausted,
    UnknownModel,
)
from enclave_devnet import dev_key
from enclave_devnet.data import BREAST_CANCER_CLASSES, breast_cancer_units
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, SCORE_TOLERANCE, SPARE_CLIENTS, Demo
from tests.support.http import http_json

# Wallet clients of these tests' own (dev accounts; 12 and 13 are test_gateway's).
RATE_CLIENT, POOR_CLIENT, QUOTA_CLIENT = 16, 17, 18


class Frame:
    """The part of a pandas DataFrame the client uses: ``columns`` and column access."""

    def __init__(self, names: list[str], values: np.ndarray) -> None:
        self.columns = list(names)
        self._values = values

    def __getitem__(self, name: str) -> np.ndarray:
        return self._values[:, self.columns.index(name)]


def _holdout(demo: Demo) -> tuple[list[str], np.ndarray, np.ndarray]:
    split = demo._result.split
    return read_table(split.holdout_path, split.label_column)


def _labelled_frame(demo: Demo) -> Frame:
    names, x, y = _holdout(demo)
    return Frame([*names, demo._result.split.label_column], np.column_stack([x, y]))


def _plain_scores(demo: Demo) -> np.ndarray:
    split = demo._result.split
    tables = [read_table(p, split.label_column)[1:] for p in split.provider_paths]
    kwargs = {"epochs": TRAIN_EPOCHS, "lr": TRAIN_LR, "l2": TRAIN_L2, "l1_bound": TRAIN_L1_BOUND}
    w, b, mean, std = fedavg_plaintext(tables, demo.config.fedavg_rounds, **kwargs)
    return predict_proba(_holdout(demo)[1], w, b, mean, std)


def _requests(demo: Demo) -> int:
    return int(demo.c.gateway.functions.requestCount().call())


def _used(demo: Demo, address: str) -> int:
    return int(demo.c.gateway.functions.quotaOf(address).call()[1])


def _wallet_client(demo: Demo, index: int, quota: int, deposit: int, **kwargs: Any) -> Client:
    """Dev account ``index`` granted ``quota`` answers with ``deposit`` wei deposited."""
    address = demo.c.w3.eth.accounts[index]
    gateway = demo.c.gateway.functions
    w3 = demo.c.w3
    w3.eth.wait_for_transaction_receipt(
        gateway.setClientAccess(address, quota).transact({"from": demo.c.governor})
    )
    if deposit:
        w3.eth.wait_for_transaction_receipt(gateway.deposit().transact({"from": address, "value": deposit}))
    return Client(demo.gateway_url, account=dev_key(index), **kwargs)


@pytest.fixture(scope="module")
def analyst(demo: Demo) -> Client:
    return Client(demo.gateway_url, api_key=demo.api_key)


def test_models_carry_their_cards(analyst: Client, demo: Demo) -> None:
    model = analyst.model("breast-cancer-fedavg")
    features = demo._result.split.features
    assert (model.id, model.kind, model.features) == (demo._result.model_id, "shared-model", features)
    assert model.fee_wei == FEE_WEI and model.rows_per_request == 135
    # The bounds are the gateway's (as the providers published them), one per feature.
    _, listed = http_json(demo.gateway_url + "/v1/models")
    served = next(m for m in listed["models"] if m["id"] == model.id)
    assert model.bounds == served["input_range"]["bounds"] and set(model.bounds) == set(features)
    assert all(bound > 0 for bound in model.bounds.values())
    assert listed["max_batch"] == 256
    # How to read an answer, and the units the model was registered with.
    assert model.units == breast_cancer_units(features) and model.units["mean_area"] == "px²"
    assert model.classes == BREAST_CANCER_CLASSES and model.threshold == 0.5
    assert model.card["link"] == "logistic" and "probability of class 1" in model.card["score"]
    # The rounds behind it: joint scaling, then every training round, each with the
    # organisations (by their registered names) that contributed.
    rounds = model.card["rounds"]
    assert [r["purpose"] for r in rounds] == ["joint scaling", "training 1/2", "training 2/2"]
    assert rounds[-1]["id"] == demo._result.rounds["model"]
    for r in rounds:
        assert r["status"] == "completed" and r["participants"] == 3
        names = sorted(c["organisation"] for c in r["contributors"])
        assert names == ["provider-0", "provider-1", "provider-2"], r
    stats = analyst.model(kind="statistic")
    assert stats.id == demo._result.stats_model_id and stats.bounds is None
    assert stats.card["min_contributors"] == 3 and "population" in stats.card["values"]["std"]
    assert [r["purpose"] for r in stats.card["rounds"]] == ["statistic"]


def test_predict_a_data_frame_equals_the_plaintext_joint_model_in_several_calls(demo: Demo) -> None:
    client = Client(demo.gateway_url, api_key=demo.api_key, batch_size=40)
    frame = _labelled_frame(demo)  # the label column rides along and is ignored
    rows = len(frame["mean_radius"])
    requests, used = _requests(demo), _used(demo, demo.client_address)
    answers = client.predict_answers(frame)
    calls = -(-rows // 40)
    assert _requests(demo) == requests + calls and _used(demo, demo.client_address) == used + rows
    scores = np.array([a["score"] for a in answers])
    assert len(scores) == rows
    assert np.all(np.abs(scores - _plain_scores(demo)) <= SCORE_TOLERANCE)
    # Sealed end to end by default; one request per call, rows in order.
    assert all(a["end_to_end"] for a in answers)
    assert len({a["request_id"] for a in answers}) == calls
    assert [a["label"] for a in answers] == [int(s >= 0.5) for s in scores]
    # predict() is the scores alone; a list of rows (mappings) gives the same.
    names, x, _ = _holdout(demo)
    few = [dict(zip(names, map(float, r), strict=True)) for r in x[:3]]
    assert np.allclose(client.predict(few), scores[:3], atol=SCORE_TOLERANCE)
    assert np.allclose(client.predict(x[:3]), scores[:3], atol=SCORE_TOLERANCE)  # a 2-D array


def test_an_answer_can_be_fetched_again_and_opened_by_the_client_that_sealed_it(
    analyst: Client, demo: Demo, row: dict[str, float]
) -> None:
    (answer,) = analyst.predict_answers([row])
    again = analyst.request(answer["request_id"])
    assert again["status"] == "completed" and again["result"]["end_to_end"] is True
    assert again["result"]["score"] == answer["score"]
    other = Client(demo.gateway_url, api_key=demo.api_key)  # another key: cannot open it
    with pytest.raises(DecryptionError):
        other.request(answer["request_id"])


def test_a_wallet_account_signs_every_part_and_rate_limits_are_waited_out(demo: Demo) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    client = _wallet_client(demo, RATE_CLIENT, quota=1000, deposit=10**16, sleep=sleep)
    address = demo.c.w3.eth.accounts[RATE_CLIENT]
    names, x, _ = _holdout(demo)
    rows = np.concatenate([x, x, x])
    # 256 rows a burst, 600 a minute: the first batch spends the burst, so the second
    # (sent at once) is refused (429, nothing written) until the bucket refills, unless
    # the first took over 13.5 s; the client waits as long as the gateway says.
    limited = _rate_limited(demo)
    client.predict(Frame(list(names), rows[:256]))
    block = demo.c.w3.eth.block_number
    scores = client.predict(Frame(list(names), rows[:300]))  # 135 + 135 + 30: three signed requests
    submitted = demo.c.gateway.events.RequestSubmitted().get_logs(from_block=block + 1)
    mine = [e for e in submitted if e["args"]["client"] == address]
    assert sorted(int(e["args"]["rows"]) for e in mine) == [30, 135, 135]
    assert _used(demo, address) == 556
    assert waits and all(0 < w <= 60 for w in waits)
    assert _rate_limited(demo) == limited + len(waits)  # each wait followed one refusal
    assert np.allclose(scores[: len(x)], scores[len(x) : 2 * len(x)], atol=1e-12)
    assert np.all(np.abs(scores[: len(x)] - _plain_scores(demo)) <= SCORE_TOLERANCE)


def _rate_limited(demo: Demo) -> int:
    with urllib.request.urlopen(demo.gateway_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'enclave_gateway_requests_total\{outcome="rate_limited"\} (\d+)', text)
    return int(found.group(1)) if found else 0


def test_statistics_are_over_every_contributor_and_std_is_the_population_std(
    analyst: Client, demo: Demo
) -> None:
    split = demo._result.split
    column = "mean_texture"
    values = np.concatenate([read_table(p, split.label_column)[1][:, 1] for p in split.provider_paths])
    assert split.features[1] == column
    everything = analyst.statistic(column, "all")
    assert everything["end_to_end"] is True
    count = analyst.statistic(column, "count")
    assert count == len(values) == sum(split.provider_rows) and isinstance(count, int)
    assert analyst.statistic(column, "mean") == pytest.approx(values.mean(), rel=1e-4)
    assert analyst.statistic(column, "sum") == pytest.approx(values.sum(), rel=1e-4)
    assert analyst.statistic(column, "std") == pytest.approx(values.std(ddof=0), rel=1e-3)
    assert abs(values.std(ddof=0) - values.std(ddof=1)) > 1e-3 * values.std()  # the test can tell


# ---------------------------------------------------------------------- refusals


def test_bad_input_is_refused_whole_before_anything_is_sent(analyst: Client, demo: Demo) -> None:
    names, x, _ = _holdout(demo)
    model = analyst.model("breast-cancer-fedavg")
    bound = model.bounds["mean_area"]
    batch = x[:100].copy()
    batch[57, names.index("mean_area")] = 2 * bound
    client = Client(demo.gateway_url, api_key=demo.api_key, batch_size=40)
    requests, used = _requests(demo), _used(demo, demo.client_address)
    with pytest.raises(OutOfRange) as out:
        client.predict(Frame(list(names), batch))
    # Row 57 of the caller's batch (in its second part of 40), named and bounded.
    assert (out.value.field, out.value.row, out.value.feature) == ("rows[57].mean_area", 57, "mean_area")
    assert out.value.bound == bound and f"at most {bound:g}" in str(out.value)
    assert out.value.before_sending and str(out.value).startswith("refused before sending: rows[57]")
    batch[57] = x[57]
    batch[3, 0] = np.nan
    with pytest.raises(InvalidInput) as nan:
        client.predict(Frame(list(names), batch))
    assert nan.value.field == "rows[3].mean_radius" and "finite" in str(nan.value)
    with pytest.raises(InvalidInput) as missing:
        client.predict(Frame([n if n != "worst_area" else "area" for n in names], batch))
    assert missing.value.field == "rows[0].worst_area"
    with pytest.raises(InvalidInput) as unknown:
        client.predict([{**dict(zip(names, map(float, x[0]), strict=True)), "colour": 1.0}])
    assert unknown.value.field == "rows[0].colour" and "unknown feature" in str(unknown.value)
    with pytest.raises(InvalidInput, match="no rows"):
        client.predict([])
    with pytest.raises(UnknownModel):
        client.predict(x[:1], model="no-such-model")
    with pytest.raises(ValueError, match="kind must be one of"):
        client.statistic("mean_radius", "median")
    with pytest.raises(InvalidInput) as column:  # refused by the gateway, before the chain
        client.statistic("no_such_column")
    assert column.value.status == 422 and column.value.field == "statistic.column"
    assert not column.value.before_sending and str(column.value).startswith("HTTP 422: statistic.column")
    assert _requests(demo) == requests and _used(demo, demo.client_address) == used


def test_refusals_of_the_gateway_and_the_contract_are_typed(demo: Demo, row: dict[str, float]) -> None:
    requests = _requests(demo)
    with pytest.raises(AuthenticationError) as wrong_key:
        Client(demo.gateway_url, api_key="not-a-key").predict([row])
    assert wrong_key.value.status == 401
    outsider = demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]  # an API key, but no CLIENT_ROLE
    with pytest.raises(AccessDenied) as denied:
        Client(demo.gateway_url, api_key=demo.api_keys[outsider]).predict([row])
    assert denied.value.status == 403 and "no access" in denied.value.message
    # A deposit for one answer, three rows asked: refused whole (402).
    poor = _wallet_client(demo, POOR_CLIENT, quota=10, deposit=FEE_WEI)
    with pytest.raises(PaymentRequired) as unpaid:
        poor.predict([row] * 3)
    assert (unpaid.value.body["balance"], unpaid.value.body["fee"]) == (FEE_WEI, 3 * FEE_WEI)
    # A quota of two, three rows asked: refused whole (429 without a wait: no retry).
    capped = _wallet_client(demo, QUOTA_CLIENT, quota=2, deposit=10**15, max_wait=0)
    with pytest.raises(QuotaExhausted) as quota:
        capped.predict([row] * 3)
    assert quota.value.status == 429 and (quota.value.body["quota"], quota.value.body["used"]) == (2, 0)
    assert _requests(demo) == requests
    # Within the quota it answers; then the contract refuses the next one (charged nothing).
    assert len(capped.predict([row] * 2)) == 2
    with pytest.raises(QuotaExhausted) as contract:
        capped.predict([row])
    assert contract.value.reason == "InferenceQuotaExhausted"
    assert _requests(demo) == requests + 1


def test_a_client_needs_one_way_to_authenticate(demo: Demo) -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        Client(demo.gateway_url)
    with pytest.raises(ValueError, match="exactly one of"):
        Client(demo.gateway_url, api_key=demo.api_key, account=dev_key(CLIENT_INDEX))
    with pytest.raises(ValueError, match="http"):
        Client("ftp://example.invalid", api_key="k")
