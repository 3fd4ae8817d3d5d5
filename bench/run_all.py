"""Run every benchmark (``make bench``): bench/core.py (with Flower, SPU and MPyC),
bench/rounds.py, bench/inference.py, bench/robustness.py, bench/wallet_page.py, bench/load.py
and bench/posting.py;
arguments are passed on (e.g. ``--quick``). Exits non-zero if any benchmark failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# (script, its own arguments), sized so that the whole run takes about 35 minutes here:
# a peer case gets a minute, rounds run once per case (n = 50 alone is 6 minutes), and
# the load run is the 600-request one (10,000 take an hour at 2.7 requests a second:
# `python bench/load.py` runs them).
BENCHMARKS = [
    ("core.py", ["--timeout", "60"]),
    ("rounds.py", ["--repeats", "1"]),
    ("inference.py", []),
    ("robustness.py", []),
    ("wallet_page.py", []),
    ("load.py", ["--quick"]),
    ("posting.py", []),
]


def main(argv: list[str]) -> int:
    failed = []
    for name, own in BENCHMARKS:
        print(f"== bench/{name}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, str(BENCH / name), *own, *argv], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
