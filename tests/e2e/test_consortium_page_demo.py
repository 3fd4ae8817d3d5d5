"""The consortium page on the demo consortium (three providers, the gateway, a
trained model and a statistic): inference requests per model and client with their
latency (block timestamps, submitted to completed) and gas, the latency chart drawn,
and the page screenshot for the README (``ENCLAVE_UPDATE_DOCS=1`` writes it to
docs/screenshots/)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from enclave_devnet.demo import Demo
from tests.e2e.test_consortium_page import CANVAS_INK, REPO, shot, start_console
from tests.e2e.test_wallet_page import browser

__all__ = ["browser"]

REQUESTS = 4


@pytest.fixture(scope="module")
def console_page(browser: Browser, demo: Demo, row: dict[str, float]) -> Iterator[tuple[Page, list[int]]]:
    client = demo.client()
    ids = [int(client.infer(demo._result.model_id, {"features": row})["request_id"]) for _ in range(REQUESTS)]
    console, url = start_console(demo.c.manifest_path, demo.c.root / "console.log")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(url)
        yield page, ids
        assert errors == []
    finally:
        context.close()
        assert console.stop() == 0, console.output()[-2000:]


def test_requests_show_latency_and_gas_per_model_and_client(
    console_page: tuple[Page, list[int]], demo: Demo
) -> None:
    page, ids = console_page
    gateway = demo.c.gateway
    w3 = demo.c.w3
    for request_id in ids:
        row = page.locator(f"#requests tr[data-request-id='{request_id}']")
        expect(row).to_contain_text("completed", timeout=20_000)
        submitted = gateway.events.RequestSubmitted().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        )
        completed = gateway.events.RequestCompleted().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        )
        partials = gateway.events.PartialPosted().get_logs(
            from_block=0, argument_filters={"requestId": request_id}
        )
        start = w3.eth.get_block(submitted[0]["blockNumber"])["timestamp"]
        end = w3.eth.get_block(completed[0]["blockNumber"])["timestamp"]
        txs = {e["transactionHash"] for e in (*submitted, *completed, *partials)}
        gas = sum(int(w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in txs)
        cells = row.locator("td")
        assert cells.nth(1).inner_text() == "breast-cancer-fedavg"
        assert cells.nth(5).inner_text() == f"{end - start} s"
        assert cells.nth(6).inner_text() == str(len(partials)) == "3"
        assert cells.nth(7).inner_text() == f"{gas:,}"
    usage = page.locator("#usage tbody tr", has_text="breast-cancer-fedavg").filter(
        has=page.locator(f"td[title='{demo.client_address}' i]")
    )
    model_id = gateway.events.RequestSubmitted().get_logs(
        from_block=0, argument_filters={"requestId": ids[0]}
    )[0]["args"]["modelId"]
    made = gateway.events.RequestSubmitted().get_logs(
        from_block=0, argument_filters={"modelId": model_id, "client": demo.client_address}
    )
    # every request this client made of this model, not only ours (other tests share the demo)
    expect(usage.locator("td").nth(2)).to_have_text(str(len(made)))
    expect(usage.locator("td").nth(3)).to_have_text(str(sum(int(e["args"]["rows"]) for e in made)))
    assert int(usage.locator("td").nth(2).inner_text()) >= REQUESTS


def test_the_latency_chart_and_the_readme_screenshot(
    console_page: tuple[Page, list[int]], demo: Demo
) -> None:
    page, ids = console_page
    expect(page.locator(f"#rounds tr[data-round-id='{demo._result.rounds['model']}'] td.state")).to_have_text(
        "completed"
    )
    latency = page.evaluate(CANVAS_INK, "chart-latency")
    assert latency["ink"] > 1000 and len(latency["datasets"][0]["data"]) >= REQUESTS
    rounds = page.evaluate(CANVAS_INK, "chart-rounds")
    assert sum(len(d["data"]) for d in rounds["datasets"]) == demo.c.exchange.functions.roundCount().call()
    shot(page, "consortium-demo.png")
    if os.environ.get("ENCLAVE_UPDATE_DOCS") == "1":
        (REPO / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPO / "docs" / "screenshots" / "consortium-page.png"), full_page=False)
