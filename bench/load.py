"""Inference load through the gateway, bounded and on loopback only: REQUESTS single-row
requests at a steady RATE (locust users, three API-key clients) while provider-1 is
killed with SIGKILL a third of the way in and started again at two thirds. Every
request must end answered (200) or refused with a reason (a JSON error); none may be
lost (no HTTP answer at all), and none charged without an answer: every request the
chain completed was answered, or its answer can still be fetched at
GET /v1/requests/{id}; every other one is refunded once it expires.

    python bench/load.py --requests 10000 --rate 8
    python bench/load.py --quick             # 600 requests (make bench)

Prints a table (requests, throughput, p50/p99, outcomes, lost, charged without an
answer) and writes reports/load.md.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # locust runs on gevent; patch before anything opens a socket

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from locust import HttpUser, constant_throughput, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from web3 import Web3  # noqa: E402

from enclave_agent.onchain import RequestState  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPLETED, REFUNDED, EXPIRED = RequestState.COMPLETED, RequestState.REFUNDED, RequestState.EXPIRED


def start_consortium(workdir: Path, requests_total: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    ready = workdir / "ready.json"
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "load_consortium.py"),
            str(workdir),
            str(ready),
            str(requests_total),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the load consortium did not start (exit {child.returncode})")
        time.sleep(0.5)
    return child, json.loads(ready.read_text())


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="load-"))
    child, info = start_consortium(workdir, args.requests)
    outcomes: list[dict[str, Any]] = []
    clients = list(info["clients"].items())
    rows = info["rows"]
    users = max(1, min(args.users, args.requests))

    class Client(HttpUser):
        host = info["gateway"]
        wait_time = constant_throughput(args.rate / users)

        @task
        def ask(self) -> None:
            index = len(outcomes)
            if index >= args.requests:  # the run is complete: the main loop stops the users
                return
            client, key = clients[index % len(clients)]
            body = {"model": info["model"], "features": rows[index % len(rows)]}
            outcome: dict[str, Any] = {"client": client, "sent": time.monotonic()}
            outcomes.append(outcome)
            try:
                response = self.client.post(
                    "/v1/inference", json=body, headers={"X-API-Key": key}, timeout=600, name="inference"
                )
            except Exception as exc:  # no HTTP answer at all: lost
                outcome.update(status=None, error=type(exc).__name__)
                return
            outcome["elapsed"] = time.monotonic() - outcome["sent"]
            outcome["status"] = response.status_code
            try:
                reply = response.json()
            except ValueError:
                reply = {}
            outcome["reason"] = reply.get("reason") or reply.get("outcome") or reply.get("error")
            outcome["request_ids"] = (
                [reply["request_id"]] if response.status_code == 200 else list(reply.get("request_ids", []))
            )

    env = Environment(user_classes=[Client])
    runner = env.create_local_runner()
    started = time.monotonic()
    runner.start(users, spawn_rate=users)
    killed = restarted = False
    try:
        while runner.state not in ("stopped", "stopping") and len(outcomes) < args.requests:
            done = len(outcomes)
            if not killed and done >= args.requests // 3:
                child.send_signal(signal.SIGUSR1)
                killed = True
                print(f"killed provider-1 after {done} requests", flush=True)
            if killed and not restarted and done >= 2 * args.requests // 3:
                child.send_signal(signal.SIGUSR2)
                restarted = True
                print(f"restarted provider-1 after {done} requests", flush=True)
            gevent.sleep(0.2)
        while any("status" not in o for o in outcomes):  # the last calls finish
            gevent.sleep(0.2)
        runner.quit()
        duration = time.monotonic() - started
        report = settle(info, outcomes, duration, args)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(120)
    print(report)
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "load.md").write_text(report + "\n")
    return 0 if "FAIL" not in report else 1


def settle(
    info: dict[str, Any], outcomes: list[dict[str, Any]], duration: float, args: argparse.Namespace
) -> str:
    """Wait until every request on chain is completed or refunded; then count."""
    w3 = Web3(Web3.HTTPProvider(info["rpc"]))
    manifest = json.loads(Path(info["manifest"]).read_text())
    abi = json.loads(Path(manifest["abi_paths"]["InferenceGateway"]).read_text())["abi"]
    gateway = w3.eth.contract(address=manifest["contracts"]["InferenceGateway"], abi=abi)
    submitted = gateway.events.RequestSubmitted().get_logs(from_block=info["start_block"])
    ids = [int(e["args"]["requestId"]) for e in submitted]
    deadline = max((int(e["args"]["deadline"]) for e in submitted), default=0)
    if ids and int(w3.eth.get_block("latest")["timestamp"]) <= deadline:  # let the open ones expire
        w3.provider.make_request(
            "evm_increaseTime", [deadline - int(w3.eth.get_block("latest")["timestamp"]) + 1]
        )
        w3.provider.make_request("evm_mine", [])
    states = {}
    for request_id in ids:
        state = int(gateway.functions.state(request_id).call())
        if state == EXPIRED:
            w3.eth.wait_for_transaction_receipt(
                gateway.functions.refundExpired(request_id).transact({"from": w3.eth.accounts[0]})
            )
            state = REFUNDED
        states[request_id] = state
    answered = {i for o in outcomes if o.get("status") == 200 for i in o["request_ids"]}
    keys = info["clients"]
    clients_of = {int(e["args"]["requestId"]): e["args"]["client"] for e in submitted}
    charged_unanswered = 0
    for request_id, state in states.items():
        if state != COMPLETED or request_id in answered:
            continue
        fetched = requests.get(
            f"{info['gateway']}/v1/requests/{request_id}",
            headers={"X-API-Key": keys[clients_of[request_id]]},
            timeout=30,
        ).json()
        if "result" not in fetched and "results" not in fetched:
            charged_unanswered += 1
    lost = sum(1 for o in outcomes if o.get("status") is None)
    latencies = sorted(o["elapsed"] for o in outcomes if o.get("status") == 200)
    by_outcome = Counter(
        "answered" if o.get("status") == 200 else f"{o.get('status')} {o.get('reason')}" for o in outcomes
    )
    unexplained = sum(
        count for outcome, count in by_outcome.items() if outcome != "answered" and outcome.endswith("None")
    )

    def pct(q: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))]:.3f}" if latencies else "-"

    verdict = "ok" if lost == 0 and charged_unanswered == 0 and unexplained == 0 else "FAIL"
    completed = sum(1 for s in states.values() if s == COMPLETED)
    refunded = sum(1 for s in states.values() if s == REFUNDED)
    throughput = len(outcomes) / duration
    lines = [
        "| requests | rate asked /s | throughput /s | p50 s | p99 s | lost | charged, no answer | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {len(outcomes)} | {args.rate:g} | {throughput:.1f} | {pct(0.5)} | {pct(0.99)} | {lost} "
        f"| {charged_unanswered} | {verdict} |",
        "",
        "| outcome | requests |",
        "|---|---:|",
        *(f"| {outcome} | {count} |" for outcome, count in by_outcome.most_common()),
        "",
        f"on chain: {len(states)} requests, {completed} completed, {refunded} refunded",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=8.0, help="requests a second, in all (default 8)")
    parser.add_argument("--users", type=int, default=16, help="concurrent locust users (default 16)")
    parser.add_argument("--quick", action="store_true", help="600 requests (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.requests = 600
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
