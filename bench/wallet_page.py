"""The wallet page's request path, timed in headless Chromium against the demo
consortium (three providers, the gateway, Anvil): from the click on "Sign and send"
to the answer in the table, for sealed and unsealed answers, against the same row
sent with an API key over plain HTTP, and a CSV batch.

    .venv/bin/python bench/wallet_page.py [--requests 15] [--batch 20] [--quick]

Prints medians (and p90) per path; run-to-run noise on a 2-core machine is large,
so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from enclave_agent.model.table import read_table
from enclave_devnet.browser_wallet import CHROMIUM_ARGS, PROVIDER, InjectedWallet
from enclave_devnet.demo import CLIENT_INDEX, Demo, DemoConfig


def _timed(n: int, fn: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _send(page: Page, button: str, status: str) -> Callable[[], None]:
    """Click ``button`` and wait, polling every animation frame (expect() backs off
    to 1 s), until the status beside it says the answer is in (or what went wrong) and
    the page is idle again (it refreshes the quota after an answer and ignores clicks
    until then)."""

    def one() -> None:
        page.evaluate("(id) => { document.getElementById(id).className = 'status'; }", status)
        page.click(button)
        try:
            page.wait_for_function(
                """(id) => !document.body.hasAttribute('aria-busy')
                       && /\\b(ok|bad)\\b/.test(document.getElementById(id).className)""",
                arg=status,
                timeout=120_000,
            )
        except PlaywrightTimeout:
            raise RuntimeError(f"no answer after 120 s: {page.locator('#' + status).inner_text()}") from None
        if page.locator(f"#{status}.bad").count():
            raise RuntimeError(f"the page reports: {page.locator('#' + status).inner_text()}")

    return one


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=15, help="requests per path (default 15)")
    parser.add_argument("--batch", type=int, default=20, help="rows in the CSV batch (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 requests per path and a batch of 5")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batch = 5, 5
    executable = shutil.which("chromium")
    if executable is None:
        print("chromium not found: run `make test` once (tools/chromium installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-wallet-") as tmp:
        demo = Demo(DemoConfig(workdir=Path(tmp), fedavg_rounds=1, out=lambda _: None))
        try:
            demo.start()
            demo.train()
            rows = _measure(demo, executable, args.requests, args.batch)
        finally:
            demo.stop()
    print("| path | n | median s | p90 s |\n|---|---:|---:|---:|")
    for name, times in rows:
        p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
        print(f"| {name} | {len(times)} | {statistics.median(times):.3f} | {p90:.3f} |")
    return 0


def _measure(demo: Demo, executable: str, n: int, batch: int) -> list[tuple[str, list[float]]]:
    names, x, _ = read_table(demo._result.split.holdout_path, demo._result.split.label_column)
    row = dict(zip(names, map(float, x[0]), strict=True))
    client = demo.client()
    api = _timed(n, lambda: client.infer(demo._result.model_id, {"features": row}))
    lines = demo._result.split.holdout_path.read_text().splitlines()
    csv = ("\n".join(lines[: batch + 1]) + "\n").encode()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page()
        wallet = InjectedWallet(demo.c.w3, CLIENT_INDEX, demo.c.w3.eth.chain_id)
        page.expose_function("__wallet", wallet)
        page.add_init_script(PROVIDER)
        page.goto(demo.gateway_url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)
        page.click("#connect")
        expect(page.locator("#connect-status")).to_have_text("wallet connected", timeout=15_000)
        page.click("#paste-row summary")
        page.fill("#paste", ",".join(str(row[name]) for name in names))
        page.click("#fill")
        sealed = _timed(n, _send(page, "#ask", "ask-status"))
        page.uncheck("#seal")
        plain = _timed(n, _send(page, "#ask", "ask-status"))
        page.check("#seal")
        page.set_input_files("#csv", files=[{"name": "rows.csv", "mimeType": "text/csv", "buffer": csv}])
        batched = _timed(3, _send(page, "#ask-csv", "csv-status"))
        browser.close()
    return [
        ("API key, HTTP client (no browser)", api),
        ("wallet page, sealed answer", sealed),
        ("wallet page, unsealed answer", plain),
        (f"wallet page, CSV batch of {batch} rows (sealed)", batched),
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
