"""Cost of robust reconstruction and of verifiable complaints at n = 3, 10 and 50.

    .venv/bin/python bench/robustness.py [--repeats 7] [--gas]

Compute (medians over ``--repeats`` runs, this machine, one core):

- reconstruction of a Shamir-shared vector from the holders' shares (t = max(2, n // 2)):
  the old way (Lagrange from the first t shares, nothing checked) against
  ``crypto.reed_solomon.robust_reconstruct`` with every share and none wrong (the
  parity check only), one wrong (detected; corrected and named when n >= t + 2) and
  e = (n - t) // 2 wrong (the most it corrects), at d = 31 (a model or statistic
  vector) and d = 10,000;
- the gateway's combination of n partial results (one row: numerator, denominator);
- verifiable complaints: building a posting (split, encrypt, key table) and the part of
  it the key table adds (a message key and a commitment per recipient), and a judge's
  verdict (open one entry with the revealed key).

Gas: the complaint rows of the contract gas harness (``tests/contracts/test_gas.py``,
real transactions on Anvil at n = 3, 10 and 50, written to reports/gas.md). With
``--gas`` the harness is run first (it needs port 8545 free); otherwise the last
report is read.

Everything is printed and written to reports/bench-robustness.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from enclave_agent.crypto import posting
from enclave_agent.crypto.field import PRIME61
from enclave_agent.crypto.prg import random_elements
from enclave_agent.crypto.reed_solomon import UncorrectableSharesError, correctable_errors, robust_reconstruct
from enclave_agent.crypto.sharing import shamir_reconstruct, shamir_split
from enclave_agent.gateway import scoring
from enclave_agent.protocol.rounds import RoundContext, RoundDoc, build_posting, message_key, sender_at_fault

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-robustness.md"
GAS_REPORT = ROOT / "reports" / "gas.md"
SIZES = (3, 10, 50)
LENGTHS = (31, 10_000)
CTX = RoundContext(31337, "0x" + "ee" * 20)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def threshold(n: int) -> int:
    return max(2, n // 2)


def reconstruction_rows(repeats: int) -> list[str]:
    rows = []
    for n in SIZES:
        t = threshold(n)
        e = correctable_errors(n, t)
        for d in LENGTHS:
            secret = random_elements(d, PRIME61)
            shares = {i + 1: s for i, s in enumerate(shamir_split(secret, n, t))}
            first_t = {x: shares[x] for x in sorted(shares)[:t]}

            def wrong(count: int, shares: dict[int, np.ndarray] = shares) -> dict[int, np.ndarray]:
                out = dict(shares)
                for x in list(out)[:count]:
                    out[x] = (out[x] + np.uint64(1)) % np.uint64(PRIME61)
                return out

            def robust(points: dict[int, np.ndarray], t: int = t) -> object:
                try:
                    return robust_reconstruct(points, t)
                except UncorrectableSharesError:
                    return None  # detected, not corrected: what n = t + 1 can do

            one, most = wrong(1), wrong(max(e, 1))
            plain = median_ms(lambda first_t=first_t, t=t: shamir_reconstruct(first_t), repeats)
            clean = median_ms(lambda shares=shares: robust(shares), repeats)
            one_ms = median_ms(lambda one=one: robust(one), repeats)
            most_ms = median_ms(lambda most=most: robust(most), repeats) if e > 1 else one_ms
            one_result = "corrected" if e >= 1 else "detected"
            rows.append(
                f"| {n} | {t} | {d:,} | {plain:.2f} | {clean:.2f} | {one_ms:.2f} ({one_result}) "
                f"| {most_ms:.2f} (e={e}) |"
            )
    return [
        "| n | t | d | first t, unchecked ms | all n, none wrong ms | one wrong ms | e wrong ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def combination_rows(repeats: int) -> list[str]:
    rows = []
    for n in SIZES:
        t = threshold(n)
        values = [int(v) for v in random_elements(2, PRIME61)]
        coefficients = [values] + [[int(v) for v in random_elements(2, PRIME61)] for _ in range(t - 1)]
        partials = {
            x: [
                sum(c[k] * pow(x, j, PRIME61) for j, c in enumerate(coefficients)) % PRIME61 for k in range(2)
            ]
            for x in range(1, n + 1)
        }
        bad = dict(partials)
        bad[1] = [(v + 1) % PRIME61 for v in bad[1]]

        def combine(p: dict[int, list[int]], t: int = t) -> object:
            try:
                return scoring.combine(p, PRIME61, additive=False, threshold=t)
            except scoring.InconsistentPartials:
                return None

        clean = median_ms(lambda partials=partials: combine(partials), repeats)
        wrong = median_ms(lambda bad=bad: combine(bad), repeats)
        rows.append(f"| {n} | {t} | {clean:.2f} | {wrong:.2f} |")
    return [
        "| n | t | n partials, none wrong ms | one wrong ms |",
        "|---:|---:|---:|---:|",
        *rows,
    ]


def _doc(n: int, me: int, encoding: str) -> RoundDoc:
    people = [f"0x{i + 1:040x}" for i in range(n)]
    from eth_utils.address import to_checksum_address

    people = [to_checksum_address(p) for p in people]
    return RoundDoc(
        round_id=1,
        epoch=1,
        tag="bench",
        participants=people,
        my_index=me,
        length=31,
        frac_bits=16,
        scheme="shamir",
        encoding=encoding,
        modulus=PRIME61,
        threshold=threshold(n),
        posting_deadline=0,
        deadline=0,
        output_kind="intermediate",
        min_contributors=0,
        floor=3,
    )


def complaint_rows(repeats: int) -> list[str]:
    rows = []
    for n in SIZES:
        for encoding in ("seeded", "dense"):
            doc = _doc(n, 0, encoding)
            me = doc.participants[0]
            keys = {p: os.urandom(32) for p in doc.participants[1:]}
            values = np.linspace(-3, 3, 31)
            with_table = median_ms(
                lambda doc=doc, keys=keys, values=values: build_posting(doc, values, keys, CTX), repeats
            )

            def table_only(doc: RoundDoc = doc, keys: dict[str, bytes] = keys, me: str = me) -> None:
                for p in doc.participants[1:]:
                    key = message_key(keys[p], CTX, 1, me, p)
                    posting.key_commitment(CTX.chain_id, CTX.exchange, 1, me, p, key)

            plain = median_ms(table_only, repeats)
            built = build_posting(doc, values, keys, CTX)
            payload = b"".join(built.chunks)
            accuser = doc.participants[1]
            key = message_key(keys[accuser], CTX, 1, me, accuser)
            judge_doc = _doc(n, 2, encoding)
            verdict = median_ms(
                lambda j=judge_doc, m=me, a=accuser, p=payload, k=key: sender_at_fault(j, m, a, p, k, CTX),
                repeats,
            )
            table_bytes = 32 * n
            rows.append(
                f"| {n} | {encoding} | {with_table:.2f} | {plain:.2f} | {table_bytes:,} | {verdict:.3f} |"
            )
            assert built.key_table[1] == posting.key_commitment(
                CTX.chain_id, CTX.exchange, 1, me, accuser, key
            )
    return [
        "| n | encoding | build posting ms | of which message keys and key table ms | key table bytes "
        "| one judge's verdict ms |",
        "|---:|---|---:|---:|---:|---:|",
        *rows,
    ]


GAS_ROWS = (
    "complain (valid key: judging opens)",
    "complain (key not committed: both excluded)",
    "judgeComplaint",
    "reportMisbehaviour (32-byte evidence)",
    "postShares (seeded, first sender)",
)


def gas_rows(run: bool) -> list[str]:
    if run:
        env = dict(os.environ, PATH=f"{ROOT / 'node_modules/.bin'}:{ROOT / '.venv/bin'}:{os.environ['PATH']}")
        env.setdefault("SOLCX_BINARY_PATH", str(ROOT / ".solc"))
        subprocess.run(
            [
                str(ROOT / ".venv/bin/brownie"),
                "test",
                "tests/contracts/test_gas.py",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
    if not GAS_REPORT.exists():
        return ["(no reports/gas.md yet: run with --gas, or `make test-contracts`)"]
    lines = GAS_REPORT.read_text().splitlines()
    header = [line for line in lines if line.startswith("| operation")]
    body = [
        line for line in lines if line.startswith("| ") and line.split("|")[1].strip().startswith(GAS_ROWS)
    ]
    separator = "|---|" + "---:|" * (header[0].count("| gas") if header else 0) + "---|"
    return [*header[:1], separator, *body]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gas", action="store_true", help="run the contract gas harness first")
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    sections = [
        ("Robust reconstruction (Reed-Solomon over GF(2^61-1)), compute", reconstruction_rows(repeats)),
        ("The gateway's combination of partial results, compute", combination_rows(repeats)),
        ("Verifiable complaints, compute", complaint_rows(repeats)),
        ("Verifiable complaints, gas (contract gas harness, real transactions on Anvil)", gas_rows(args.gas)),
    ]
    text = "# Robustness costs\n\n" + "\n\n".join(
        f"## {title}\n\n" + "\n".join(rows) for title, rows in sections
    )
    print(text)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
