"""The consortium page (``enclave-console``) in headless Chromium against a real
Anvil, real provider agents and a rogue member: a round the test opens appears and
completes on the page without a reload, an abort names the silent member by its
organisation, and the charts are drawn under the strict Content-Security-Policy.

Screenshots go to reports/screenshots/ (test artifacts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from enclave_devnet import ABORTED, COMPLETED, ChildProcess, Consortium, wait_until
from enclave_devnet.processes import python_child
from tests.e2e.test_wallet_page import browser
from tests.integration.conftest import distinctive_inputs, make_consortium
from tests.integration.rogue import Rogue
from tests.support.http import http_json

__all__ = ["browser"]  # fixture shared with test_wallet_page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "reports" / "screenshots"
HONEST, D = 3, 8
INPUTS = distinctive_inputs(HONEST + 1, D, seed=13)

# Pixels drawn on a canvas (not transparent) and the chart Chart.js keeps for it.
CANVAS_INK = """(id) => {
  const canvas = document.getElementById(id);
  const chart = window.Chart && window.Chart.getChart(canvas);
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return { ink, width: canvas.width, height: canvas.height, type: chart ? chart.config.type : null,
           datasets: chart ? chart.data.datasets.map((d) => ({ label: d.label, data: d.data })) : [] };
}"""


def start_console(manifest: Path, log: Path) -> tuple[ChildProcess, str]:
    """``python -m enclave_console`` on a free port; its URL once it listens."""
    child = python_child(
        "console", "enclave_console", "--manifest", manifest, "--port", "0", "--poll", "0.2", log=log
    )
    child.start()

    def url() -> str | None:
        match = re.search(r"serving (http://\S+/)", child.output())
        if not match and not child.running:
            raise AssertionError(f"enclave-console exited {child.returncode}: {child.output()[-2000:]}")
        return match.group(1) if match else None

    return child, wait_until(url, 30, "the console to listen", interval=0.1)


def body_names(round_json: dict) -> list[str]:
    """The participants' organisation names of a round from ``/api/rounds/{id}``."""
    return [p["name"] for p in round_json["participants"]]


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, str]]:
    for c in make_consortium(tmp_path_factory, "console"):
        for i in range(HONEST):
            c.add_agent(f"provider-{i}", operator_index=i + 1, inputs={"vec8": list(INPUTS[i])})
        c.wait_synchronised(HONEST)
        console, url = start_console(c.manifest_path, c.root / "console.log")
        try:
            yield c, url
        finally:
            assert console.stop() == 0, console.output()[-2000:]


@pytest.fixture(scope="module")
def page(browser: Browser, net: tuple[Consortium, str]) -> Iterator[Page]:
    _, url = net
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    expect(page.locator("#members tbody tr")).to_have_count(HONEST)
    # A marker that a reload would wipe: every later check runs on this same document.
    page.evaluate("window.__sameDocument = 'yes'")
    yield page
    assert errors == []
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    context.close()


def test_members_and_the_synchronised_epoch_are_shown(page: Page, net: tuple[Consortium, str]) -> None:
    c, _ = net
    for name, agent in c.agents.items():
        row = page.locator(f"#members tr[data-enclave='{agent.enclave_address()}']")
        expect(row.locator("td.organisation")).to_have_text(name)
        expect(row.locator("td.evidence")).to_have_text("simulated")
        expect(row).to_contain_text("provider")
        measurement = "0x" + bytes(c.registry.functions.member(agent.enclave_address()).call()[3]).hex()
        assert row.locator("td.mono").nth(1).get_attribute("title") == measurement
    epoch = c.registry.functions.epoch().call()
    expect(page.locator(f"#epochs tr[data-epoch='{epoch}']")).to_contain_text("synchronised")
    expect(page.locator("#epoch")).to_contain_text(f"{epoch}: synchronised")


def test_a_round_started_by_the_test_appears_and_completes_live(
    page: Page, net: tuple[Consortium, str]
) -> None:
    c, _ = net
    round_id = c.open_round("vec8", D, scheme="additive", encoding="seeded")
    row = page.locator(f"#rounds tr[data-round-id='{round_id}']")
    expect(row).to_be_visible(timeout=15_000)
    assert c.wait_round(round_id) == COMPLETED
    expect(row.locator("td.state")).to_have_text("completed", timeout=15_000)
    names = {a.enclave_address(): name for name, a in c.agents.items()}
    order = [names[p] for p in c.exchange.functions.participants(round_id).call()]  # participant index
    expect(row.locator("td.contributors")).to_have_text("3: " + ", ".join(order))
    expect(row.locator("td.participants")).to_have_text(", ".join(order))
    # The gas on the page is the gas of the round's transactions, from their receipts.
    opened = c.round_events(round_id, "RoundOpened")[0]
    txs = {opened["transactionHash"]}
    for name in ("SharesPosted", "PostingClosed", "FusedCommitted", "RoundCompleted"):
        txs |= {e["transactionHash"] for e in c.round_events(round_id, name)}
    total = sum(int(c.w3.eth.get_transaction_receipt(tx)["gasUsed"]) for tx in txs)
    assert row.locator("td.gas").inner_text() == f"{total:,}"
    expect(row.locator("td.blame")).to_have_text("")
    shot(page, "consortium-round-completed.png")


def test_an_abort_shows_the_silent_member_by_organisation(page: Page, net: tuple[Consortium, str]) -> None:
    c, url = net
    rogue = Rogue(c, operator_index=HONEST + 1)
    rogue.registered()
    organisation = c.registry.functions.organisation(rogue.operator).call()[4]
    assert organisation.startswith("rogue-")
    wait_until(lambda: len(c.registry.functions.activeMembers(1).call()) == HONEST + 1, 30, "rogue member")
    rogue.post_digest()
    c.wait_synchronised(HONEST + 1)
    expect(page.locator(f"#members tr[data-enclave='{rogue.address}'] td.organisation")).to_have_text(
        organisation
    )

    round_id = c.open_round("vec8", D, scheme="additive", encoding="dense", posting_window=30, window=60)
    row = page.locator(f"#rounds tr[data-round-id='{round_id}']")
    expect(row.locator("td.state")).to_have_text("posting", timeout=15_000)
    honest = [a.enclave_address() for a in c.agents.values()]
    wait_until(
        lambda: all(c.exchange.functions.chunksPosted(round_id, a).call() > 0 for a in honest),
        60,
        "honest postings",
    )
    c.advance_time(31)
    assert c.wait_round(round_id) == ABORTED
    assert list(c.round_events(round_id, "RoundAborted")[0]["args"]["culprits"]) == [rogue.address]
    expect(row.locator("td.state")).to_have_text("aborted", timeout=15_000)
    expect(row.locator("td.blame")).to_have_text(f"aborted (missing-shares): {organisation}")
    expect(page.locator("#activity")).to_contain_text(
        f"round {round_id} aborted (missing-shares): {organisation}"
    )
    # The JSON behind the page says the same.
    status, body = http_json(f"{url}api/rounds/{round_id}")
    assert status == 200 and (body["state"], body["abort_reason"]) == ("aborted", "missing-shares")
    assert body["culprits"] == [{"address": rogue.address, "name": organisation}]
    assert sorted(p["name"] for p in body["posted"]) == sorted(
        n for n in body_names(body) if n != organisation
    )
    shot(page, "consortium-round-aborted.png")


def test_the_charts_are_drawn(page: Page) -> None:
    expect(page.locator("#charts-status")).to_have_text("")
    rounds = page.evaluate(CANVAS_INK, "chart-rounds")
    assert rounds["type"] == "scatter" and rounds["ink"] > 1000
    points = {d["label"]: len(d["data"]) for d in rounds["datasets"]}
    assert points == {"completed": 1, "aborted": 1}
    gas = page.evaluate(CANVAS_INK, "chart-gas")
    assert gas["type"] == "bar" and gas["ink"] > 1000
    stages = {d["label"] for d in gas["datasets"]}
    assert {"open", "post shares", "fuse", "finalize"} <= stages
    latency = page.evaluate(CANVAS_INK, "chart-latency")
    assert latency["type"] == "line" and latency["ink"] > 500  # axes; no request in this consortium
    shot(page, "consortium-page.png")


def test_an_unreachable_chain_is_a_clear_error_state(browser: Browser, net: tuple[Consortium, str]) -> None:
    c, _ = net
    dead = python_child(
        "console (dead RPC)",
        "enclave_console",
        "--manifest",
        c.manifest_path,
        "--rpc-url",
        "http://127.0.0.1:9/",  # discard port: nothing answers
        "--port",
        "0",
        log=c.root / "console-dead.log",
    )
    dead.start()
    try:
        url = wait_until(
            lambda: (m := re.search(r"serving (http://\S+/)", dead.output())) and m.group(1),
            30,
            "the console",
        )
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        banner = page.locator("#banner")
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_have_text(
            "The chain is unreachable: JSON-RPC endpoint http://127.0.0.1:9/ does not answer: "
            "ConnectionError. Nothing was read yet; retrying."
        )
        expect(page.locator("#chain")).to_contain_text("unreachable")
        expect(page.locator("#rounds-empty")).to_be_visible()
        shot(page, "consortium-unreachable.png")
        context.close()
    finally:
        assert dead.stop() == 0, dead.output()[-2000:]
