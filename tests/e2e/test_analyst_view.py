"""The analyst's view of the wallet page in headless Chromium against the demo
consortium: the model card (units, the bounds the providers published, rounds and
contributors, how to read a score), a labelled CSV judged in the page (accuracy and
AUC equal to scikit-learn's on the same scores), the plots drawn with the vendored
Chart.js under the strict Content-Security-Policy, and the statistic form.

Screenshots go to reports/screenshots/ (test artifacts); with ENCLAVE_UPDATE_DOCS=1
the analyst view is also written to docs/screenshots/ for the README."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

from enclave_agent.gateway import vendor
from enclave_agent.model.table import read_table
from enclave_devnet.demo import Demo
from tests.e2e.test_wallet_page import Session, _choose_csv, _connect, _holdout_csv, browser, session
from tests.support.http import http_json

__all__ = ["browser", "session"]  # fixtures shared with test_wallet_page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "reports" / "screenshots"


def _shot(page: Page, name: str, docs: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("ENCLAVE_UPDATE_DOCS") == "1":
        (REPO / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPO / "docs" / "screenshots" / name), full_page=True)
    return path


def _accepted(bound: float) -> str:
    """How the page writes an accepted range: -b … b, thousands grouped, no exponent."""
    whole, _, fraction = np.format_float_positional(bound, trim="-").partition(".")
    text = f"{int(whole):,}" + (f".{fraction}" if fraction else "")
    return f"−{text} … {text}"


def _served_model(demo: Demo, model_id: int) -> dict:
    _, listed = http_json(demo.gateway_url + "/v1/models")
    return next(m for m in listed["models"] if m["id"] == model_id)


# Pixels drawn on a canvas (not transparent) and the chart Chart.js keeps for it.
CANVAS_INK = """(id) => {
  const canvas = document.getElementById(id);
  const chart = window.Chart && window.Chart.getChart(canvas);
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return { ink, width: canvas.width, height: canvas.height, type: chart ? chart.config.type : null,
           datasets: chart ? chart.data.datasets.map((d) => d.data) : [] };
}"""


def test_the_model_card_shows_units_bounds_rounds_and_what_a_score_means(
    session: Session, demo: Demo
) -> None:
    page = session.page
    served = _served_model(demo, demo._result.model_id)
    bounds = served["input_range"]["bounds"]
    card = page.locator("#card")
    expect(card).to_contain_text("breast-cancer-fedavg")
    expect(page.locator("#card-score")).to_contain_text("probability that the row is benign")
    expect(page.locator("#card-label")).to_have_text(
        "1 (benign) when the score is at least 0.5, else 0 (malignant)"
    )
    page.click("#card details summary")  # 30 features: folded until asked for
    rows = page.locator("#card-features tbody tr")
    assert rows.count() == len(demo._result.split.features)
    for name in ("mean_radius", "mean_area", "worst_smoothness"):
        row = page.locator(f"#card-features tr[data-feature='{name}']")
        cell = row.locator("td.bound")
        assert float(cell.get_attribute("data-bound") or "nan") == bounds[name] > 0
        assert cell.inner_text() == _accepted(bounds[name])
        unit = {"mean_radius": "px", "mean_area": "px²", "worst_smoothness": "1"}[name]
        assert row.locator("td").nth(1).inner_text() == unit
    # Each input says what it accepts.
    first = demo._result.split.features[0]
    assert page.locator(f"[id='feature-{first}']").get_attribute("placeholder") == _accepted(bounds[first])
    # The rounds that made it, each with the organisations that contributed.
    rounds = page.locator("#card-rounds tbody tr")
    assert rounds.count() == 3
    assert [rounds.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        "joint scaling",
        "training 1/2",
        "training 2/2",
    ]
    expect(rounds.nth(2)).to_contain_text("3 of 3: provider-0, provider-1, provider-2")
    assert rounds.nth(2).get_attribute("data-round-id") == str(demo._result.rounds["model"])
    page.locator("#model-section").screenshot(path=str(ARTIFACTS / "wallet-model-card.png"))
    assert session.errors == []


def test_the_statistic_form_asks_a_column_only(session: Session, demo: Demo) -> None:
    page = session.page
    page.select_option("#model", str(demo._result.stats_model_id))
    expect(page.locator("#card")).to_contain_text("population standard deviation")
    expect(page.locator("#card")).to_contain_text("only with at least 3 contributors")
    # No row inputs, no pasting, no CSV: a column and the button.
    expect(page.locator("#score-only")).to_be_hidden()
    expect(page.locator("#csv-section")).to_be_hidden()
    assert page.locator("#inputs input").count() == 0
    assert page.locator("#statistic-column option").count() == len(demo._result.split.features)
    expect(page.locator("#ask")).to_have_text("Sign and ask the statistic")
    _connect(session)
    page.select_option("#statistic-column", "mean_texture")
    page.click("#ask")
    answer = page.locator("#answers tbody tr").first
    expect(answer).to_contain_text(f"count {sum(demo._result.split.provider_rows)}", timeout=60_000)
    expect(answer).to_contain_text("(population)")
    expect(page.locator("#ask-status")).to_contain_text("request ")
    page.select_option("#model", str(demo._result.model_id))
    expect(page.locator("#csv-section")).to_be_visible()


def test_a_labelled_csv_is_judged_in_the_page_as_scikit_learn_judges_it(session: Session, demo: Demo) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    text = demo._result.split.holdout_path.read_text()
    _choose_csv(page, text)
    expect(page.locator("#label-column")).to_have_value("target")
    expect(page.locator("#csv-status")).to_contain_text("true labels in column target")
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_contain_text("answered", timeout=120_000)
    names, x, y = read_table(demo._result.split.holdout_path, demo._result.split.label_column)
    n = len(y)
    assert len(wallet.signed) == 1  # the holdout fits one signed request

    # The scores the page got, in full precision, from its download.
    with page.expect_download() as download:
        page.click("#download")
    lines = Path(download.value.path()).read_text().splitlines()[1:]
    scores = np.array([float(line.split(",")[3]) for line in lines])
    truth = np.array([int(line.split(",")[5]) for line in lines])
    assert len(scores) == n and np.array_equal(truth, y)
    accuracy = accuracy_score(y, (scores >= 0.5).astype(int))
    auc = roc_auc_score(y, scores)
    metrics = page.locator("#metrics")
    expect(metrics).to_be_visible()
    assert abs(float(metrics.get_attribute("data-accuracy") or "nan") - accuracy) <= 1e-12
    assert abs(float(metrics.get_attribute("data-auc") or "nan") - auc) <= 1e-12
    assert page.locator("#metric-accuracy").inner_text().startswith(f"{accuracy:.4f}")
    assert page.locator("#metric-auc").inner_text() == f"{auc:.4f}"
    assert 0.9 < auc <= 1.0  # the joint model separates the classes

    # One compact table; one receipt per request, not two hashes per row.
    assert page.locator("#batch-table tbody tr").count() == n
    assert page.locator("#receipts li").count() == 1
    receipt = page.locator("#receipts li .receipt")
    request_id = int((receipt.locator("a").get_attribute("href") or "").rsplit("/", 1)[1])
    assert {
        page.locator("#batch-table tbody tr").nth(i).get_attribute("data-request-id") for i in (0, n - 1)
    } == {str(request_id)}
    assert "0x" not in page.locator("#batch-table").inner_text()
    box = page.locator("#batch-section .scroll").bounding_box()
    assert box is not None and box["height"] < 400

    # The plots are drawn, and drawn from these scores.
    histogram = page.evaluate(CANVAS_INK, "plot-histogram")
    assert histogram["type"] == "bar" and histogram["ink"] > 1000
    counts = histogram["datasets"][0]
    assert counts == np.histogram(np.minimum(scores, 1 - 1e-12), bins=20, range=(0, 1))[0].tolist()
    roc = page.evaluate(CANVAS_INK, "plot-roc")
    assert roc["type"] == "line" and roc["ink"] > 1000
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    page_curve = np.array([[p["x"], p["y"]] for p in roc["datasets"][0]])
    assert np.allclose(page_curve, np.column_stack([fpr, tpr]))
    calibration = page.evaluate(CANVAS_INK, "plot-calibration")
    assert calibration["ink"] > 1000 and 2 <= len(calibration["datasets"][0]) <= 10
    _shot(page, "wallet-analyst.png", docs=True)
    page.locator("#batch-section").screenshot(path=str(ARTIFACTS / "wallet-batch.png"))
    assert session.errors == []


def test_a_csv_without_labels_gets_the_histogram_only(session: Session, demo: Demo) -> None:
    page = session.page
    _connect(session)
    lines = _holdout_csv(demo, 8).splitlines()
    unlabelled = "\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n"  # drop "target"
    _choose_csv(page, unlabelled, "unlabelled.csv")
    expect(page.locator("#label-column")).to_have_value("")
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_contain_text("8 rows of unlabelled.csv answered", timeout=60_000)
    expect(page.locator("#metrics")).to_be_hidden()
    expect(page.locator("#roc-figure")).to_be_hidden()
    assert page.evaluate(CANVAS_INK, "plot-histogram")["ink"] > 500
    assert sum(page.evaluate(CANVAS_INK, "plot-histogram")["datasets"][0]) == 8


def test_errors_appear_next_to_the_button_that_caused_them(session: Session, demo: Demo) -> None:
    page = session.page
    _connect(session)
    page.fill("#deposit-amount", "lots")
    page.click("#deposit")
    expect(page.locator("#deposit-status")).to_have_text('"lots" is not an amount of ETH (up to 18 decimals)')
    assert page.locator("#deposit + #deposit-status").count() == 1  # beside the button
    page.click("#ask")  # the row inputs are empty
    first = demo._result.split.features[0]
    expect(page.locator("#ask-status")).to_have_text(f'{first}: "" is not a number')
    expect(page.locator("#deposit-status")).to_be_empty()  # a new action clears the others
    _choose_csv(page, "mean_radius\n1\n")
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_have_text("the CSV has no column mean_texture")
    expect(page.locator("#ask-status")).to_be_empty()
    assert page.locator("#ask-csv + #csv-status").count() == 1
    _shot(page, "wallet-errors.png")


def test_the_page_metrics_match_scikit_learn_on_ties_and_edge_cases(session: Session) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    got = session.page.evaluate(
        """async ([labels, scores]) => {
          const a = await import('/web/analysis.js');
          return { auc: a.rocAuc(labels, scores), acc: a.accuracy(labels, scores, 0.5),
                   roc: a.rocCurve(labels, scores), one: a.rocAuc([1, 1], [0.2, 0.3]),
                   cal: a.calibration(labels, scores, 10) };
        }""",
        [labels.tolist(), scores.tolist()],
    )
    assert abs(got["auc"] - roc_auc_score(labels, scores)) <= 1e-12
    assert got["acc"] == accuracy_score(labels, (scores >= 0.5).astype(int))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose([[p["x"], p["y"]] for p in got["roc"]], np.column_stack([fpr, tpr]))
    assert got["one"] is None  # one class: AUC undefined, not a number
    assert sum(b["count"] for b in got["cal"]) == 200


def test_the_charting_library_is_served_as_pinned_under_the_page_policy(demo: Demo) -> None:
    pins = vendor.pins()
    for name, pin in pins.items():
        with urllib.request.urlopen(f"{demo.gateway_url}/web/vendor/{name}", timeout=10) as response:
            data = response.read()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert hashlib.sha256(data).hexdigest() == pin["sha256"]
        assert data == (REPO / pin["from"]).read_bytes()  # the npm package's own file
    assert "MIT" in (REPO / pins["chart.js-LICENSE.md"]["from"]).read_text()
    package = json.loads((REPO / "node_modules" / "chart.js" / "package.json").read_text())
    assert pins["chart.umd.min.js"]["package"] == f"chart.js@{package['version']}"
    status, body = http_json(f"{demo.gateway_url}/web/vendor/not-pinned.js")
    assert status == 404
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{demo.gateway_url}/web/vendor/..%2fvendor.json", timeout=10)
