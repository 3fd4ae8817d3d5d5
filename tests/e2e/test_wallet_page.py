"""The wallet web page in headless Chromium against the real gateway, agents and
Anvil. The wallet is an EIP-1193 provider injected into the page whose calls land in
``InjectedWallet``: it signs with the dev account's real key and forwards the rest to
Anvil, and it can refuse like a user pressing "Reject"."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from enclave_agent.crypto.sealed_box import seal
from enclave_agent.gateway import auth
from enclave_agent.model.table import read_table
from enclave_agent.protocol import queries
from enclave_agent.protocol.queries import result_ad
from enclave_devnet.browser_wallet import CHROMIUM_ARGS, PROVIDER, InjectedWallet
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, SCORE_TOLERANCE, SPARE_CLIENTS, Demo
from tests.support.http import http_json


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "chromium not found: `make test` installs it (tools/chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Session:
    page: Page
    wallet: InjectedWallet
    errors: list[str]


def _open(browser: Browser, demo: Demo, index: int = CLIENT_INDEX, chain_id: int | None = None) -> Session:
    wallet = InjectedWallet(demo.c.w3, index, chain_id if chain_id is not None else demo.c.w3.eth.chain_id)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.expose_function("__wallet", wallet)
    page.add_init_script(PROVIDER)
    page.goto(demo.gateway_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)
    return Session(page, wallet, errors)


@pytest.fixture
def session(browser: Browser, demo: Demo) -> Iterator[Session]:
    s = _open(browser, demo)
    yield s
    s.page.close()


def _connect(s: Session) -> None:
    s.page.click("#connect")
    expect(s.page.locator("#connect-status")).to_have_text("wallet connected", timeout=15_000)
    expect(s.page.locator("#access")).to_contain_text("granted")


def _requests(demo: Demo) -> int:
    return int(demo.c.gateway.functions.requestCount().call())


def _row_text(row: dict[str, float]) -> str:
    return json.dumps(row)


def test_page_shows_the_deployment_models_and_the_gateway_state(session: Session, demo: Demo) -> None:
    page = session.page
    expect(page.locator("#chain-id")).to_have_text(str(demo.c.w3.eth.chain_id))
    expect(page.locator("#gateway-contract")).to_have_text(demo.c.gateway.address)
    expect(page.locator("#gateway-status")).to_contain_text("ready")
    options = page.locator("#model option").all_text_contents()
    assert any("breast-cancer-fedavg" in o for o in options) and any(
        "breast-cancer-stats" in o for o in options
    )
    assert page.locator("#inputs input").count() == len(demo._result.split.features)
    expect(page.locator("#ask")).to_be_disabled()
    assert session.errors == []


def test_a_signed_request_from_the_page_is_answered_and_recorded_on_chain(
    session: Session, demo: Demo, row: dict[str, float]
) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    expect(page.locator("#account")).to_have_text(wallet.address.lower())
    used_before = int(demo.c.gateway.functions.quotaOf(wallet.address).call()[1])
    page.click("#paste-row summary")
    page.fill("#paste", _row_text(row))
    page.click("#fill")
    with page.expect_response(lambda r: r.url.endswith("/v1/inference"), timeout=60_000) as reply:
        page.click("#ask")
    # Sealed by default: on the wire the answer is ciphertext for the page's key.
    wire = reply.value.json()
    assert "score" not in wire and set(wire["sealed"]) == {"ephemeral_public", "ciphertext"}
    answer_row = page.locator("#answers tbody tr").first
    expect(answer_row).to_contain_text("score", timeout=60_000)
    expect(answer_row).to_contain_text("sealed to this page's key")
    request_id = int(answer_row.get_attribute("data-request-id") or 0)
    assert wire["request_id"] == request_id

    # The wallet was shown this chain, this contract, this client and a fresh nonce.
    typed = wallet.signed[-1]
    assert typed["domain"]["chainId"] == demo.c.w3.eth.chain_id
    assert typed["domain"]["verifyingContract"] == demo.c.gateway.address
    assert typed["message"]["client"] == wallet.address
    # The signature covers the canonical bytes of the row (float64 in feature order),
    # whatever JSON spelling the page sent, and exactly one row at the model's fee.
    features = demo._result.split.features
    query = queries.Query(queries.KIND_SCORE, rows=(tuple(float(row[f]) for f in features),))
    assert typed["message"]["inputHash"] == "0x" + auth.input_hash(query).hex()
    assert (typed["message"]["rows"], typed["message"]["maxFee"]) == (1, str(FEE_WEI))
    # On chain: the request is the wallet's, and its digest is the one it signed.
    (event,) = demo.c.gateway.events.RequestSubmitted().get_logs(
        from_block=0, argument_filters={"requestId": request_id}
    )
    assert event["args"]["client"] == wallet.address
    assert event["args"]["requestDigest"] == auth.request_digest(typed)
    assert event["args"]["inputHash"] == auth.input_hash(query)
    # Same score as the API-key path for the same row.
    reference = demo.client().infer(demo._result.model_id, {"features": row})["score"]
    shown = float(answer_row.locator("td").nth(2).inner_text().split()[1].rstrip(","))
    assert abs(shown - reference) <= max(SCORE_TOLERANCE, 1e-4)
    expect(page.locator("#quota")).to_contain_text(f"{used_before + 1} of")
    # One receipt: a link to the request's record, and the gateway's submitRequest and
    # completeRequests transactions (shortened on screen, whole in the attributes), mined.
    receipt = answer_row.locator(".receipt")
    assert receipt.locator("a").get_attribute("href") == f"/v1/requests/{request_id}"
    for step, function in (("submit", "submitRequest"), ("complete", "completeRequests")):
        tx_hash = receipt.get_attribute(f"data-{step}") or ""
        assert f"{step} {tx_hash[:6]}…{tx_hash[-4:]}" in receipt.inner_text()
        tx = demo.c.w3.eth.get_transaction(tx_hash)
        assert (
            tx["to"] == demo.c.gateway.address
            and demo.c.w3.eth.get_transaction_receipt(tx["hash"])["status"] == 1
        )
        assert demo.c.gateway.decode_function_input(tx["input"])[0].fn_name == function
    assert session.errors == []


def test_refusing_to_sign_sends_nothing(session: Session, demo: Demo, row: dict[str, float]) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    page.click("#paste-row summary")
    page.fill("#paste", ",".join(str(row[name]) for name in demo._result.split.features))
    page.click("#fill")
    wallet.refuse.add("eth_signTypedData_v4")
    block, requests = demo.c.w3.eth.block_number, _requests(demo)
    page.click("#ask")
    expect(page.locator("#ask-status")).to_have_text("refused in the wallet: nothing was sent")
    assert page.locator("#answers tbody tr").count() == 0
    assert demo.c.w3.eth.block_number == block and _requests(demo) == requests


def test_a_bad_feature_value_is_named_and_never_reaches_the_wallet(
    session: Session, demo: Demo, row: dict[str, float]
) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    first = demo._result.split.features[0]
    page.click("#paste-row summary")
    page.fill("#paste", _row_text(row))
    page.click("#fill")
    page.fill(f"[id='feature-{first}']", "12,5")
    block = demo.c.w3.eth.block_number
    page.click("#ask")
    expect(page.locator("#ask-status")).to_have_text(f'{first}: "12,5" is not a number')
    assert [m for m, _ in wallet.calls if m == "eth_signTypedData_v4"] == []
    assert demo.c.w3.eth.block_number == block


def test_a_pasted_row_of_the_wrong_length_is_refused_with_the_counts(session: Session, demo: Demo) -> None:
    page = session.page
    page.click("#paste-row summary")
    page.fill("#paste", "1,2,3")
    page.click("#fill")
    features = len(demo._result.split.features)
    expect(page.locator("#fill-status")).to_have_text(f"expected {features} comma-separated values, got 3")


def test_a_wallet_without_client_access_is_told_so_and_nothing_is_written(
    browser: Browser, demo: Demo, row: dict[str, float]
) -> None:
    s = _open(browser, demo, index=SPARE_CLIENTS[0])
    try:
        s.page.click("#connect")
        expect(s.page.locator("#access")).to_contain_text("none", timeout=15_000)
        s.page.click("#paste-row summary")
        s.page.fill("#paste", _row_text(row))
        s.page.click("#fill")
        block, requests = demo.c.w3.eth.block_number, _requests(demo)
        s.page.click("#ask")
        expect(s.page.locator("#ask-status")).to_contain_text(
            "HTTP 403: client has no access", timeout=30_000
        )
        assert demo.c.w3.eth.block_number == block and _requests(demo) == requests
    finally:
        s.page.close()


def test_a_wallet_on_another_chain_is_switched_and_a_refused_switch_is_reported(
    browser: Browser, demo: Demo
) -> None:
    chain = demo.c.w3.eth.chain_id
    s = _open(browser, demo, chain_id=1)
    s.wallet.known_chains.add(chain)
    try:
        _connect(s)
        assert ("wallet_switchEthereumChain", [{"chainId": hex(chain)}]) in s.wallet.calls
        assert s.wallet.chain_id == chain and s.wallet.added == []
    finally:
        s.page.close()
    s = _open(browser, demo, chain_id=1)
    s.wallet.known_chains.add(chain)
    try:
        s.wallet.refuse.add("wallet_switchEthereumChain")
        s.page.click("#connect")
        expect(s.page.locator("#connect-status")).to_have_text("refused in the wallet: nothing was sent")
        expect(s.page.locator("#account")).to_have_text("not connected")
        expect(s.page.locator("#ask")).to_be_disabled()
    finally:
        s.page.close()


def test_a_wallet_that_does_not_know_the_chain_is_offered_it_from_the_manifest(
    browser: Browser, demo: Demo
) -> None:
    s = _open(browser, demo, chain_id=1)
    try:
        _connect(s)
        (added,) = s.wallet.added
        assert added["chainId"] == hex(demo.c.w3.eth.chain_id)
        assert added["rpcUrls"] == [demo.c.manifest.rpc_url]
        assert added["nativeCurrency"] == {"name": "Ether", "symbol": "ETH", "decimals": 18}
        assert s.wallet.chain_id == demo.c.w3.eth.chain_id
    finally:
        s.page.close()


def test_deposit_from_the_page_reaches_the_contract(session: Session, demo: Demo) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    before = int(demo.c.gateway.functions.balanceOf(wallet.address).call())
    page.fill("#deposit-amount", "0.0025")
    page.click("#deposit")
    expect(page.locator("#deposit-status")).to_have_text("deposited 0.0025 ETH", timeout=30_000)
    assert int(demo.c.gateway.functions.balanceOf(wallet.address).call()) == before + 25 * 10**14
    expect(page.locator("#balance")).to_have_text(_ether(before + 25 * 10**14))


def _ether(wei: int) -> str:
    fraction = str(wei % 10**18).zfill(18).rstrip("0")
    return f"{wei // 10**18}.{fraction} ETH" if fraction else f"{wei // 10**18} ETH"


def test_a_malformed_deposit_amount_sends_no_transaction(session: Session, demo: Demo) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    block = demo.c.w3.eth.block_number
    for amount, message in (
        ("1e-3", '"1e-3" is not an amount of ETH (up to 18 decimals)'),
        ("0", "deposit a positive amount"),
    ):
        page.fill("#deposit-amount", amount)
        page.click("#deposit")
        expect(page.locator("#deposit-status")).to_have_text(message)
    assert [m for m, _ in wallet.calls if m == "eth_sendTransaction"] == []
    assert demo.c.w3.eth.block_number == block


def test_a_statistic_from_the_page(session: Session, demo: Demo) -> None:
    page = session.page
    _connect(session)
    page.select_option("#model", str(demo._result.stats_model_id))
    column = demo._result.split.features[0]
    page.select_option("#statistic-column", column)
    page.click("#ask")
    answer_row = page.locator("#answers tbody tr").first
    expect(answer_row).to_contain_text(f"count {sum(demo._result.split.provider_rows)}", timeout=60_000)


def test_page_is_served_with_a_strict_content_security_policy(demo: Demo) -> None:
    with urllib.request.urlopen(demo.gateway_url + "/", timeout=10) as response:
        headers, html = response.headers, response.read().decode()
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in html  # no inline script: the policy would block it
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(demo.gateway_url + "/web/../../config.toml", timeout=10)
    assert missing.value.code == 404


def _api(
    demo: Demo, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    return http_json(demo.gateway_url + path, method, None if body is None else json.dumps(body).encode())


def test_deployment_endpoint_matches_the_manifest(demo: Demo) -> None:
    status, body = _api(demo, "GET", "/v1/deployment")
    assert status == 200
    assert body["chain_id"] == demo.c.manifest.chain_id and body["rpc_url"] == demo.c.manifest.rpc_url
    assert body["contracts"]["InferenceGateway"] == demo.c.gateway.address
    assert body["deposit"] == {"to": demo.c.gateway.address, "data": "0x" + keccak(b"deposit()")[:4].hex()}
    assert body["eip712_domain"]["verifyingContract"] == demo.c.gateway.address


def test_typed_data_endpoint_refuses_bad_bodies_and_writes_nothing(demo: Demo, row: dict[str, float]) -> None:
    client = demo.client_address
    model = demo._result.model_id
    block = demo.c.w3.eth.block_number
    cases = [
        ({"model": model, "features": row}, 422, "client"),
        ({"model": model, "features": row, "client": "0x1234"}, 422, "client"),
        ({"model": 999, "features": row, "client": client}, 404, "model"),
        (
            {"model": model, "features": {**row, "mean_radius": "x"}, "client": client},
            422,
            "features.mean_radius",
        ),
    ]
    for body, status, field_name in cases:
        got, answer = _api(demo, "POST", "/v1/inference/typed-data", body)
        assert (got, answer.get("field")) == (status, field_name), answer
    assert demo.c.w3.eth.block_number == block


def test_typed_data_endpoint_gives_fresh_nonces_and_a_deadline(demo: Demo, row: dict[str, float]) -> None:
    body = {"model": demo._result.model_id, "features": row, "client": demo.client_address.lower()}
    first, second = (_api(demo, "POST", "/v1/inference/typed-data", body)[1] for _ in range(2))
    # 256-bit nonces and wei amounts travel as decimal strings (exact in JavaScript).
    assert first["nonce"] != second["nonce"] and 2**64 < int(first["nonce"]) < 2**256
    assert first["max_fee"] == str(FEE_WEI) == first["typed_data"]["message"]["maxFee"]
    assert first["typed_data"]["message"]["rows"] == 1
    assert first["typed_data"]["message"]["client"] == demo.client_address
    assert first["typed_data"]["types"]["EIP712Domain"] == auth.DOMAIN_TYPE


def test_client_endpoint_reports_access_quota_and_deposit(demo: Demo) -> None:
    status, body = _api(demo, "GET", f"/v1/clients/{demo.client_address.lower()}")
    quota, used = demo.c.gateway.functions.quotaOf(demo.client_address).call()
    assert status == 200 and body["access"] is True and (body["quota"], body["used"]) == (quota, used)
    assert body["balance_wei"] == demo.c.gateway.functions.balanceOf(demo.client_address).call()
    outsider = demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]
    assert _api(demo, "GET", f"/v1/clients/{outsider}")[1]["access"] is False
    assert _api(demo, "GET", "/v1/clients/not-an-address") == (
        422,
        {"error": "must be an address", "field": "address"},
    )


def test_ether_amounts_are_parsed_without_floating_point(session: Session) -> None:
    results = session.page.evaluate(
        """async () => {
          const m = await import('/web/wallet.js');
          return [m.parseEther('0.1').toString(), m.parseEther('1.000000000000000001').toString(),
                  m.parseEther(' 12 ').toString(), m.formatEther('1500000000000000000'), m.formatEther('0')];
        }"""
    )
    assert results == [
        "100000000000000000",
        "1000000000000000001",
        "12000000000000000000",
        "1.5 ETH",
        "0 ETH",
    ]


def test_serve_names_the_page_and_keeps_the_api_key_out_of_the_output(demo: Demo, capsys) -> None:
    stop = threading.Event()
    server = threading.Thread(target=demo.serve, args=(stop,))
    server.start()
    time.sleep(1.5)
    stop.set()
    server.join(10)
    out = capsys.readouterr().out
    assert not server.is_alive()
    assert f"wallet page   {demo.gateway_url}/" in out and demo.client_address in out
    key_file = demo.config.workdir / "client-api.key"
    assert key_file.read_text().strip() == demo.api_key and demo.api_key not in out
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_an_unsealed_answer_is_shown_as_sent(session: Session, demo: Demo, row: dict[str, float]) -> None:
    page = session.page
    _connect(session)
    page.click("#paste-row summary")
    page.fill("#paste", _row_text(row))
    page.click("#fill")
    page.uncheck("#seal")
    with page.expect_response(lambda r: r.url.endswith("/v1/inference"), timeout=60_000) as reply:
        page.click("#ask")
    wire = reply.value.json()
    answer_row = page.locator("#answers tbody tr").first
    expect(answer_row).to_contain_text(f"score {wire['score']:.4f}", timeout=30_000)
    expect(answer_row).not_to_contain_text("sealed")


def test_the_page_opens_what_the_gateway_seals_and_refuses_tampering(session: Session) -> None:
    page = session.page
    public = page.evaluate(
        """async () => {
          const m = await import('/web/wallet.js');
          window.resultKey = await m.newResultKey();
          return Array.from(window.resultKey.publicKey);
        }"""
    )
    result = {"request_id": 41, "row": 2, "score": 0.8125, "label": 1}
    ephemeral, ciphertext = seal(bytes(public), json.dumps(result).encode(), result_ad(41, 2))
    open_js = """async ([sealed, id, row]) => {
      const m = await import('/web/wallet.js');
      try { return await m.openSealed(window.resultKey, sealed, id, row); } catch (e) { return e.message; }
    }"""
    sealed = {"ephemeral_public": "0x" + ephemeral.hex(), "ciphertext": "0x" + ciphertext.hex()}
    assert page.evaluate(open_js, [sealed, 41, 2]) == result
    flipped = bytearray(ciphertext)
    flipped[20] ^= 1
    tampered = sealed | {"ciphertext": "0x" + flipped.hex()}
    refused = "the sealed answer to request 41 row 2 does not open with this page's key"
    assert page.evaluate(open_js, [tampered, 41, 2]) == refused
    assert page.evaluate(open_js, [sealed, 42, 2]) == refused.replace("41", "42")
    assert page.evaluate(open_js, [sealed, 41, 3]) == refused.replace("row 2", "row 3")  # rows cannot swap


def test_a_request_prepared_for_another_model_or_client_is_not_signed(
    session: Session, demo: Demo, row: dict[str, float]
) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    page.click("#paste-row summary")
    page.fill("#paste", _row_text(row))
    page.click("#fill")
    outsider = demo.c.w3.eth.accounts[SPARE_CLIENTS[0]]

    def tamper(route: Route) -> None:
        prepared = route.fetch().json()
        prepared["typed_data"]["message"] |= {"modelId": 999, "client": outsider}
        route.fulfill(json=prepared)

    page.route("**/v1/inference/typed-data", tamper)
    block = demo.c.w3.eth.block_number
    page.click("#ask")
    expect(page.locator("#ask-status")).to_have_text(
        f"the gateway prepared a different request (client {outsider}, model 999): not signed"
    )
    assert [m for m, _ in wallet.calls if m == "eth_signTypedData_v4"] == []
    assert demo.c.w3.eth.block_number == block


def _holdout_csv(demo: Demo, rows: int) -> str:
    lines = demo._result.split.holdout_path.read_text().splitlines()
    return "\n".join(lines[: rows + 1]) + "\n"  # header, then rows; the label column rides along


def _choose_csv(page: Page, text: str, name: str = "holdout.csv") -> None:
    page.set_input_files("#csv", files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}])


def test_a_csv_file_is_scored_in_one_signed_batch_and_can_be_downloaded(session: Session, demo: Demo) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    _choose_csv(page, _holdout_csv(demo, 5))
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_have_text(
        re.compile(r"^5 rows of holdout\.csv answered"), timeout=60_000
    )
    assert len(wallet.signed) == 1 and page.locator("#batch-table tbody tr").count() == 5
    with page.expect_download() as download:
        page.click("#download")
    lines = Path(download.value.path()).read_text().splitlines()
    # The holdout's label column ("target") was recognised and rides along as true_label.
    assert lines[0] == "row,request_id,request_row,score,label,true_label" and len(lines) == 6
    names, x, y = read_table(demo._result.split.holdout_path, demo._result.split.label_column)
    reference = demo.client().infer(
        demo._result.model_id, {"rows": [dict(zip(names, map(float, row), strict=True)) for row in x[:5]]}
    )["results"]
    for line, expected, truth in zip(lines[1:], reference, y[:5], strict=True):
        _, request_id, _, score, label, true_label = line.split(",")
        assert abs(float(score) - expected["score"]) <= max(SCORE_TOLERANCE, 1e-4)
        assert int(label) == expected["label"] and int(true_label) == truth
        assert demo.c.gateway.events.RequestSubmitted().get_logs(
            from_block=0, argument_filters={"requestId": int(request_id), "client": wallet.address}
        )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("mean_radius", "radius", 1), "the CSV has no column mean_radius"),
        (
            lambda text: "\n".join([*text.splitlines()[:2], "1,2", *text.splitlines()[2:]]),
            "CSV line 3: 2 cells, the header has 31",  # 30 features and the label
        ),
        (lambda text: text.splitlines()[0] + "\n", "the CSV needs a header row and at least one row"),
    ],
)
def test_a_bad_csv_is_refused_with_the_line_and_column_and_never_signed(
    session: Session, demo: Demo, edit, message: str
) -> None:
    page, wallet = session.page, session.wallet
    _connect(session)
    _choose_csv(page, edit(_holdout_csv(demo, 2)))
    block = demo.c.w3.eth.block_number
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_have_text(message)
    assert wallet.signed == [] and demo.c.w3.eth.block_number == block


def test_a_non_numeric_csv_cell_is_named(session: Session, demo: Demo) -> None:
    page = session.page
    _connect(session)
    lines = _holdout_csv(demo, 2).splitlines()
    cells = lines[2].split(",")
    cells[3] = "n/a"
    _choose_csv(page, "\n".join([lines[0], lines[1], ",".join(cells)]))
    page.click("#ask-csv")
    expect(page.locator("#csv-status")).to_have_text('CSV line 3, mean_area: "n/a" is not a number')
