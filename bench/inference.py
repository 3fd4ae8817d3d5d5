"""Inference latency, throughput and gas at 1, 8 and 32 concurrent clients, one row per
request and batches of rows, every request accounted for.

    .venv/bin/python bench/inference.py [--quick] [--requests 64] [--batch 10]

The demo consortium (three providers, the gateway, Anvil; one federated round of
training) answers score requests through the HTTP API (API-key clients, the
gateway's rate limit raised so that it does not shape the figures). For each
concurrency c and each shape (one row, or ``--batch`` rows per call), ``--requests``
calls go out from c threads at once. Per case:

- p50 / p99 latency of a call, and throughput in answered rows a second;
- outcomes: answered, refused (the gateway's reason), lost (no HTTP answer at all:
  must be 0);
- on chain: requests recorded, completed and still open after the case (every
  answered row is a completed request; nothing open is charged: it is refunded at
  its deadline);
- gas per answered row (every block of the case), and the share of it that is the
  calldata floor (21,000 + 16 per non-zero and 4 per zero calldata byte of each
  transaction): how much of the cost is execution rather than bytes.

Tables are printed and written to reports/bench-inference.md; the plot (throughput
and p50 against concurrency) to docs/bench/inference.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plots  # bench/plots.py (a script's folder is on its path)

from enclave_agent.gateway.client import GatewayHTTPError, GatewayUnreachable
from enclave_agent.model.table import read_table
from enclave_agent.operator import clients
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, Demo, DemoConfig

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-inference.md"
PLOT = ROOT / "docs" / "bench" / "inference.png"


@dataclass
class Case:
    concurrency: int
    rows: int
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    recorded: int = 0
    completed: int = 0
    still_open: int = 0
    gas: int = 0
    floor: int = 0

    @property
    def answered_rows(self) -> int:
        return self.outcomes["answered"] * self.rows

    def quantile(self, q: float) -> float:
        ms = sorted(s * 1000 for s in self.latencies)
        return ms[min(len(ms) - 1, int(q * len(ms)))] if ms else float("nan")


def calldata_floor(data: bytes) -> int:
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


def chain_cost(demo: Demo, first_block: int) -> tuple[int, int]:
    """(gas used, calldata floor) of every transaction in blocks after ``first_block``."""
    w3 = demo.c.w3
    gas = floor = 0
    for number in range(first_block + 1, w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        gas += int(block["gasUsed"])
        floor += sum(calldata_floor(bytes(tx["input"])) for tx in block["transactions"])  # type: ignore[index]
    return gas, floor


def request_counts(demo: Demo) -> tuple[int, int, int]:
    """(recorded, completed, pending) requests on chain, from the gateway contract's events."""
    gateway = demo.c.gateway
    recorded = len(gateway.events.RequestSubmitted().get_logs(from_block=0))
    completed = len(gateway.events.RequestCompleted().get_logs(from_block=0))
    refunded = len(gateway.events.RequestRefunded().get_logs(from_block=0))
    return recorded, completed, recorded - completed - refunded


def run_case(demo: Demo, model_id: int, rows: list[dict[str, float]], case: Case, requests: int) -> None:
    def call(i: int) -> tuple[str, float]:
        client = demo.client()
        body: dict[str, Any]
        if case.rows == 1:
            body = {"features": rows[i % len(rows)]}
        else:
            body = {"rows": [list(rows[(i + k) % len(rows)].values()) for k in range(case.rows)]}
        started = time.perf_counter()
        try:
            answer = client.infer(model_id, body)
        except GatewayUnreachable:  # no HTTP answer at all
            return "lost", time.perf_counter() - started
        except GatewayHTTPError as exc:  # the gateway answered with an error: a refusal, with its reason
            return f"refused: {exc.body.get('reason') or exc.status}", time.perf_counter() - started
        ok = "result" in answer or "results" in answer or "score" in answer
        return ("answered" if ok else "unanswered"), time.perf_counter() - started

    before = request_counts(demo)
    first_block = demo.c.w3.eth.block_number
    started = time.perf_counter()
    with ThreadPoolExecutor(case.concurrency) as pool:
        for outcome, seconds in pool.map(call, range(requests)):
            case.outcomes[outcome] += 1
            if outcome == "answered":
                case.latencies.append(seconds)
    case.wall = time.perf_counter() - started
    time.sleep(1.0)  # the last completions' blocks
    after = request_counts(demo)
    case.recorded, case.completed, case.still_open = (a - b for a, b in zip(after, before, strict=True))
    case.gas, case.floor = chain_cost(demo, first_block)


def markdown(cases: list[Case]) -> str:
    lines = [
        "| rows / call | clients | calls | answered | refused | lost | p50 ms | p99 ms | rows/s "
        "| on chain: recorded / completed / open | gas / answered row | calldata floor share |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for c in cases:
        refused = sum(v for k, v in c.outcomes.items() if k.startswith("refused"))
        rows_s = c.answered_rows / c.wall if c.wall else 0.0
        per_row = c.gas // max(1, c.answered_rows)
        share = c.floor / c.gas if c.gas else 0.0
        calls, answered = sum(c.outcomes.values()), c.outcomes["answered"]
        lines.append(
            f"| {c.rows} | {c.concurrency} | {calls} | {answered} | {refused} "
            f"| {c.outcomes['lost']} | {c.quantile(0.5):,.0f} | {c.quantile(0.99):,.0f} | {rows_s:.1f} "
            f"| {c.recorded} / {c.completed} / {c.still_open} | {per_row:,} | {share:.0%} |"
        )
    return "\n".join(lines)


def plot(cases: list[Case], path: Path) -> None:
    plt = plots.pyplot()
    fig, (tput, p50) = plt.subplots(1, 2, figsize=(10, 4))
    for rows in sorted({c.rows for c in cases}):
        own = sorted((c for c in cases if c.rows == rows), key=lambda c: c.concurrency)
        label = "1 row / call" if rows == 1 else f"{rows} rows / call"
        tput.plot(
            [c.concurrency for c in own], [c.answered_rows / c.wall for c in own], marker="o", label=label
        )
        p50.plot([c.concurrency for c in own], [c.quantile(0.5) for c in own], marker="o", label=label)
    tput.set(xlabel="concurrent clients", ylabel="answered rows / s", xscale="log", title="throughput")
    p50.set(xlabel="concurrent clients", ylabel="p50 latency, ms", xscale="log", title="latency of a call")
    for ax in (tput, p50):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    plots.save(fig, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 16 calls each")
    parser.add_argument("--requests", type=int, default=64, help="calls per case (default 64)")
    parser.add_argument("--batch", type=int, default=10, help="rows per call in the batched cases")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    levels = (1, 8) if args.quick else (1, 8, 32)
    requests = 16 if args.quick else args.requests
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as workdir:
        config = DemoConfig(
            workdir=Path(workdir), fedavg_rounds=1, gateway_rate_per_minute=1_000_000, out=lambda _: None
        )
        demo = Demo(config)
        try:
            result = demo.start()
            demo.train()
            names, x, _ = read_table(result.split.holdout_path, result.split.label_column)
            rows = [dict(zip(names, map(float, x[i]), strict=True)) for i in range(len(x))]
            # Enough quota and deposit for every case: a refusal here would be the bench's own.
            clients.set_access(demo.c.session(), demo.client_address, 1_000_000)
            clients.deposit(demo.c.session(CLIENT_INDEX), FEE_WEI * 100_000)
            demo.client().infer(result.model_id, {"features": rows[0]})  # warm-up
            for batch in (1, args.batch):
                for concurrency in levels:
                    case = Case(concurrency, batch)
                    run_case(demo, result.model_id, rows, case, max(requests, concurrency))
                    cases.append(case)
                    print(f"rows/call={batch} clients={concurrency}: {dict(case.outcomes)}", file=sys.stderr)
        finally:
            demo.stop()
    text = (
        "# Inference through the gateway\n\n"
        f"Three providers, one gateway, Anvil; {time.strftime('%Y-%m-%d %H:%M')}.\n\n" + markdown(cases)
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    plot(cases, args.plot)
    lost = sum(c.outcomes["lost"] for c in cases)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
