"""What a recipient pays to read its share out of the postings of a round: the whole
payload parsed into checksummed (recipient, ciphertext) pairs (``decode_entries``, how
recipients read until now) against one entry located and copied (``find_entry``).

Every recipient reads every sender's posting, so per round and recipient the cost is
n - 1 postings of n - 1 entries each; with dense shares each entry carries d 8-byte
elements plus AEAD overhead. Pure CPU, no chain. Prints a markdown table (medians of
--repeat runs, this machine) and writes it to reports/posting.md:

    python bench/posting.py [--repeat 7] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from eth_utils.address import to_checksum_address

from enclave_agent.crypto import posting

AEAD_OVERHEAD = 12 + 16  # nonce and tag around each share
SIZES = [(10, 1_000), (10, 100_000), (50, 1_000), (50, 100_000)]


def one_posting(n: int, d: int) -> tuple[bytes, list[str]]:
    recipients = ["0x" + os.urandom(20).hex() for _ in range(n - 1)]
    share = os.urandom(8 * d + AEAD_OVERHEAD)  # the same bytes per entry: parsing cost only
    return posting.encode_entries([(r, share) for r in recipients]), recipients


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats (make bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 3
    rows = [
        "| n | d | posting bytes | decode_entries ms | find_entry ms | ratio "
        "| per round and recipient, decode -> find ms |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, d in SIZES:
        payload, recipients = one_posting(n, d)
        me = to_checksum_address(recipients[-1])  # last entry: the whole payload is walked either way

        def decode_all(payload: bytes = payload, me: str = me) -> bytes:
            return dict(posting.decode_entries(payload))[me]

        def find_mine(payload: bytes = payload, me: str = me) -> bytes | None:
            return posting.find_entry(payload, me)

        decode = median_seconds(decode_all, args.repeat)
        find = median_seconds(find_mine, args.repeat)
        per_round = f"{decode * (n - 1) * 1e3:,.1f} -> {find * (n - 1) * 1e3:,.1f}"
        rows.append(
            f"| {n} | {d:,} | {len(payload):,} | {decode * 1e3:,.3f} | {find * 1e3:,.3f} | "
            f"{decode / find:,.1f}x | {per_round} |"
        )
    table = "\n".join(rows)
    print(table)
    out = Path(__file__).resolve().parents[1] / "reports" / "posting.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
