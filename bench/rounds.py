"""Share-exchange rounds on a local consortium: wall time, gas, calldata and
transactions per participant.

    .venv/bin/python bench/rounds.py [--quick] [--repeats 3]

For each number of providers n, one local consortium (anvil, the simulated
attestation service, n agent processes; ``enclave_devnet``) runs every
round of that n. Each round sums random vectors of length d; per round:

- wall time: from sending openRound until the round is seen COMPLETED (median over
  ``--repeats`` rounds). It includes the agents' polling (``--poll-interval``) and
  depends on the machine: it is reported, never asserted;
- per participant, the mined transactions its enclave account sent for the round
  (postShares chunks, postFused, and any report/close/finalize): gas used, calldata
  bytes, transaction count and share chunks. Median across participants, then over
  the repeats;
- the largest error of the recombined aggregate against the sum of the inputs
  (a check that the measured rounds did their job).

The table is printed and written to reports/bench-rounds.md, the plot (wall time and
gas per participant against n) to docs/bench/rounds.png. Default n in {3, 10, 25, 50},
d in {31, 10^5}, and additive seeded with a sparse mask of ten neighbours where n - 1 > 10;
dense postings the chain cannot carry are left out (they say so).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plots  # bench/plots.py (a script's folder is on its path)
from core import SPARSE  # the core benchmark's mask degree, run where it differs from every pair

from enclave_devnet import COMPLETED, Consortium, anvil_binary, start_consortium, wait_until

log = logging.getLogger("bench.rounds")

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench-rounds.md"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "rounds.png"
FRAC_BITS = 16
POSTING_WINDOW, WINDOW = 600, 1200  # far beyond any round here: deadlines never interfere


@dataclass(frozen=True)
class Case:
    length: int
    scheme: str
    encoding: str
    mask_degree: int = 0  # 0: every pair; k: the sparse mask (crypto.mask_graph)
    # Additive t-of-n (t = n - 1) with one provider killed for the round: its shares
    # are recovered (see IShareExchange); the deadlines are skipped with evm_increaseTime.
    dropout: bool = False

    @property
    def label(self) -> str:
        return (
            self.encoding
            + (f" k={self.mask_degree}" if self.mask_degree else "")
            + (", 1 absent" if self.dropout else "")
        )

    def tag(self, repeat: int) -> str:
        absent = "x" if self.dropout else ""
        return f"d{self.length}-{self.scheme[0]}{self.encoding[0]}{self.mask_degree or ''}{absent}-{repeat}"


@dataclass(frozen=True)
class Sample:
    """One round: wall time and per-participant medians."""

    wall: float
    gas: float
    calldata: float
    txs: float
    chunks: float
    threshold: int
    error: float


@dataclass(frozen=True)
class Row:
    n: int
    case: Case
    samples: tuple[Sample, ...]
    failure: str = ""

    def cells(self) -> list[str]:
        c = self.case
        head = [str(self.n), f"{c.length:,}", c.scheme, c.label]
        if self.failure:
            return [*head, "", f"failed: {self.failure}", "", "", "", "", ""]
        s = self.samples

        def median(values: Sequence[float]) -> float:
            return float(statistics.median(values))

        return [
            *head,
            str(s[0].threshold),
            f"{median([x.wall for x in s]):.2f}",
            f"{median([x.gas for x in s]):,.0f}",
            f"{median([x.calldata for x in s]):,.0f}",
            f"{median([x.txs for x in s]):g}",
            f"{median([x.chunks for x in s]):g}",
            f"{max(x.error for x in s):.1e}",
        ]


HEADER = [
    "n",
    "d",
    "scheme",
    "encoding",
    "t",
    "wall s",
    "gas / participant",
    "calldata B / participant",
    "tx / participant",
    "chunks / participant",
    "max abs error",
]


# A dense posting of more than this per participant ((n - 1) * 8d bytes) is not run:
# at n = 10, d = 10^5 it is 7.2 MB, 289 M gas per participant (the chain is the limit,
# see the README); the rounds benchmark says so instead of filling blocks for minutes.
DENSE_BYTES_LIMIT = 1_000_000


def cases(n: int, lengths: Sequence[int], shamir_length: int | None) -> list[Case]:
    out = [
        Case(d, "additive", encoding)
        for d in lengths
        for encoding in ("dense", "seeded")
        if encoding == "seeded" or (n - 1) * 8 * d <= DENSE_BYTES_LIMIT
    ]
    if n - 1 > SPARSE:
        out.append(Case(max(lengths), "additive", "seeded", SPARSE))
    if shamir_length is not None:
        out.append(Case(shamir_length, "shamir", "seeded"))
        if n == DROPOUT_N:
            out.append(Case(shamir_length, "additive", "seeded", dropout=True))
    return out


DROPOUT_N = 10  # the row: Shamir seeded t = 9 against additive t-of-n with a dropout


def run_round(c: Consortium, case: Case, tag: str, expected: np.ndarray, timeout: float) -> Sample:
    absent = c.agents[f"provider-{len(c.agents) - 1}"] if case.dropout else None
    if absent is not None:
        absent.kill9()  # a crash; a restarted agent would die of SIGTERM before its handler is up
    start = time.perf_counter()
    round_id = c.open_round(
        tag,
        case.length,
        scheme=case.scheme,
        encoding=case.encoding,
        mask_degree=case.mask_degree,
        threshold=len(c.agents) - 1 if case.dropout else None,
        frac_bits=FRAC_BITS,
        posting_window=POSTING_WINDOW,
        window=WINDOW,
    )
    if absent is not None:
        _skip_deadlines(c, round_id, absent.enclave_address(), timeout)
    state = c.wait_round(round_id, timeout=timeout, interval=0.02)
    wall = time.perf_counter() - start
    if absent is not None:
        absent.start()
    if state != COMPLETED:
        raise RuntimeError(f"round {round_id} ended in state {state}, not COMPLETED")
    participants = c.exchange.functions.participants(round_id).call()
    info = c.exchange.functions.roundInfo(round_id).call()
    threshold, holders = int(info[2]), int(info[7])
    sent = c.round_transactions(round_id)
    per = {p: [tx for tx in sent if tx.sender == p] for i, p in enumerate(participants) if holders >> i & 1}
    error = float(np.max(np.abs(c.fused_aggregate(round_id) - expected)))
    return Sample(
        wall=wall,
        gas=statistics.median(sum(tx.gas_used for tx in txs) for txs in per.values()),
        calldata=statistics.median(sum(tx.calldata_bytes for tx in txs) for txs in per.values()),
        txs=statistics.median(len(txs) for txs in per.values()),
        chunks=statistics.median(sum(tx.function == "postShares" for tx in txs) for txs in per.values()),
        threshold=threshold,
        error=error,
    )


def _skip_deadlines(c: Consortium, round_id: int, absent: str, timeout: float) -> None:
    """Once everyone else posted, move past the posting deadline; once they fused, past
    the round's deadline (a round with an absent provider waits for both)."""
    exchange = c.exchange.functions
    others = [p for p in exchange.participants(round_id).call() if p != absent]
    wait_until(
        lambda: all(exchange.shareCommitment(round_id, p).call() != bytes(32) for p in others),
        timeout,
        "postings",
    )
    c.advance_time(POSTING_WINDOW + 1)
    wait_until(
        lambda: len(c.round_events(round_id, "FusedCommitted")) >= len(others), timeout, "fused commitments"
    )
    c.advance_time(WINDOW - POSTING_WINDOW + 1)


def bench_providers(
    n: int, all_cases: Sequence[Case], repeats: int, workdir: Path, poll_interval: float, timeout: float
) -> tuple[list[Row], float]:
    """The rows of ``n`` providers, and how long their onboarding took (start to synchronised)."""
    root = workdir / f"n{n}"
    rng = np.random.default_rng()
    # Agents read their inputs from the config they start with: every round gets its own tag.
    inputs: dict[str, list[np.ndarray]] = {}
    for case in all_cases:
        for r in range(repeats):
            inputs[case.tag(r)] = [rng.uniform(-1000, 1000, size=case.length) for _ in range(n)]
    for tag, vectors in inputs.items():
        (root / "inputs" / tag).mkdir(parents=True, exist_ok=True)
        for i, vector in enumerate(vectors):
            np.save(root / "inputs" / tag / f"{i}.npy", vector)
    rows: list[Row] = []
    consortium_started = time.perf_counter()
    with start_consortium(root, accounts=max(20, n + 1)) as c:
        # Governance admits every organisation first: onboarding is the agents' part
        # (attest, verify, synchronise), timed from the start of the first agent.
        for i in range(n):
            c.admit_organisation(c.w3.eth.accounts[i + 1], f"provider-{i}")
        started = time.perf_counter()
        for i in range(n):
            files = {tag: root / "inputs" / tag / f"{i}.npy" for tag in inputs}
            c.add_agent(
                f"provider-{i}", operator_index=i + 1, inputs=files, poll_interval=poll_interval, admit=False
            )
        c.wait_synchronised(n, timeout=60 + 20 * n)
        onboarding = time.perf_counter() - started
        log.warning(
            "n=%d: %d agents attested and synchronised in %.1fs (%.1fs with the node, the contracts "
            "and the organisations' admission)",
            n,
            n,
            onboarding,
            time.perf_counter() - consortium_started,
        )
        for case in all_cases:
            samples: list[Sample] = []
            try:
                for r in range(repeats):
                    tag = case.tag(r)
                    summed = inputs[tag][: n - 1] if case.dropout else inputs[tag]
                    sample = run_round(c, case, tag, np.sum(summed, axis=0), timeout)
                    samples.append(sample)
                    log.warning(
                        "n=%d d=%d %s/%s #%d: %.2fs, %d chunk(s)/participant",
                        n,
                        case.length,
                        case.scheme,
                        case.label,
                        r + 1,
                        sample.wall,
                        sample.chunks,
                    )
            except (RuntimeError, TimeoutError) as exc:
                log.error("n=%d %s: %s", n, case, exc)
                rows.append(Row(n, case, tuple(samples), failure=str(exc).splitlines()[0]))
                continue
            rows.append(Row(n, case, tuple(samples)))
    return rows, onboarding


def markdown(rows: Sequence[Row], repeats: int, poll_interval: float, onboarding: dict[int, float]) -> str:
    lines = [
        "# Share-exchange rounds on a local consortium",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()} with {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {_anvil_version()}; agents, anvil and the attestation "
        f"service share the machine. Agents poll every {poll_interval:g} s. Additive rounds use "
        f"t = n, Shamir rounds the default t = n - 1; fixed point with {FRAC_BITS} fraction bits.",
        "",
        f"- wall s: openRound sent until the round is COMPLETED, median of {repeats} round(s);",
        "- gas, calldata, tx, chunks: per participant, what its enclave account sent for the round "
        "(share chunks of at most 96 KiB, postFused), median across participants and rounds;",
        "- max abs error: recombined aggregate against the sum of the random inputs.",
        "",
        "Shamir `seeded` sends seeds to t - 1 peers and dense shares to the other n - t (see "
        "`enclave_agent.crypto.shares`): with t = n - 1 that is one dense share of 8d bytes per "
        "participant, so its calldata grows with d unlike additive `seeded`.",
        "",
        "`seeded, 1 absent`: additive with t = n - 1, one provider killed for the round; the others "
        "post and fuse, the deadlines are skipped (evm_increaseTime) and the holders reveal the keys "
        "of what they sent it (recoverAbsent). Its wall time includes both skips; its per-participant "
        "figures are over the holders and include recoverAbsent.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    lines += [
        "",
        f"Dense postings above {DENSE_BYTES_LIMIT:,} bytes per participant are not run (chain-bound).",
        "",
        "Onboarding (agents started until every one is attested, verified and synchronised):",
        "",
        "| n | s |",
        "|---:|---:|",
        *(f"| {n} | {seconds:.1f} |" for n, seconds in onboarding.items()),
    ]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path) -> None:
    """Wall time and gas per participant against n, one line per (d, scheme, encoding)."""
    plt = plots.pyplot()
    fig, (wall_ax, gas_ax) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        if row.failure or not row.samples:
            continue
        c = row.case
        label = f"d={c.length:,} {c.scheme}/{c.label}"
        wall = float(statistics.median(x.wall for x in row.samples))
        gas = float(statistics.median(x.gas for x in row.samples))
        series.setdefault(label, []).append((row.n, wall, gas))
    for label, points in series.items():
        points.sort()
        wall_ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        gas_ax.plot([p[0] for p in points], [p[2] for p in points], marker="o", label=label)
    wall_ax.set(xlabel="providers n", ylabel="round wall time, s", title="openRound to COMPLETED")
    gas_ax.set(xlabel="providers n", ylabel="gas per participant", yscale="log", title="gas per participant")
    for ax in (wall_ax, gas_ax):
        ax.grid(True, alpha=0.3)
    wall_ax.legend(fontsize=7)
    plots.save(fig, path)


def _anvil_version() -> str:
    try:
        out = subprocess.run([anvil_binary(), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "anvil (version unknown)"
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return "anvil " + first.removeprefix("anvil Version:").strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="n=3 only, one round per case, no Shamir row")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per case (default 3)")
    parser.add_argument("--providers", type=int, nargs="+", help="numbers of providers (default 3 10 25 50)")
    parser.add_argument("--lengths", type=int, nargs="+", help="vector lengths d (default 31 100000)")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="agents' poll interval, s")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a round may take")
    parser.add_argument("--out", type=Path, default=REPORT, help=f"markdown report (default {REPORT})")
    parser.add_argument("--workdir", type=Path, help="keep consortium state and logs here")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"PNG plot (default {PLOT})")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    providers = args.providers or ([3] if args.quick else [3, 10, 25, 50])
    lengths = args.lengths or [31, 100_000]
    repeats = 1 if args.quick else args.repeats
    shamir_length = None if args.quick else max(lengths)

    rows: list[Row] = []
    onboarding: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rounds-") as tmp:
        workdir = args.workdir or Path(tmp)
        for n in providers:
            cases_n = cases(n, lengths, shamir_length)
            rows_n, onboarding[n] = bench_providers(
                n, cases_n, repeats, workdir, args.poll_interval, args.timeout
            )
            rows += rows_n
    report = markdown(rows, repeats, args.poll_interval, onboarding)
    plot(rows, args.plot)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"written to {args.out}", file=sys.stderr)
    return 1 if any(row.failure for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
