"""Inference latency, one client at a time: the demo consortium (three providers, the
gateway, Anvil), trained with one federated round, then REQUESTS single-row requests
sent one after another through the HTTP API with an API key. Prints p50/p90/p99 and
the mean, and appends a line to reports/latency.md.

    python bench/latency.py --requests 100 --label push

To compare two builds in one sitting, run it from each checkout in turn (``PYTHONPATH``
selects the code, e.g. ``PYTHONPATH=$PWD python bench/latency.py``), alternating.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from enclave_agent.model.table import read_table
from enclave_devnet.demo import Demo, DemoConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100, help="requests, one at a time (default 100)")
    parser.add_argument("--label", default="", help="a name for this build in the report line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="latency-") as workdir:
        demo = Demo(DemoConfig(workdir=Path(workdir), fedavg_rounds=1, out=lambda _: None))
        try:
            result = demo.start()
            demo.train()
            names, x, _ = read_table(result.split.holdout_path, result.split.label_column)
            client = demo.client()
            client.infer(result.model_id, {"features": dict(zip(names, map(float, x[0]), strict=True))})
            seconds = []
            for i in range(args.requests):
                row = dict(zip(names, map(float, x[i % len(x)]), strict=True))
                started = time.perf_counter()
                client.infer(result.model_id, {"features": row})
                seconds.append(time.perf_counter() - started)
        finally:
            demo.stop()
    ms = sorted(s * 1000 for s in seconds)

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    line = (
        f"| {args.label or '-'} | {len(ms)} | {q(0.5):.0f} | {q(0.9):.0f} | {q(0.99):.0f} "
        f"| {statistics.fmean(ms):.0f} |"
    )
    print(
        "| build | requests | p50 ms | p90 ms | p99 ms | mean ms |\n|---|---:|---:|---:|---:|---:|\n" + line
    )
    (ROOT / "reports").mkdir(exist_ok=True)
    with (ROOT / "reports" / "latency.md").open("a") as report:
        report.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
