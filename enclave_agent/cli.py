"""The `enclave-agent` command line."""

from __future__ import annotations

import argparse
import sys

from enclave_agent.tee.measure import measure_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="enclave-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("measure", help="print this agent's code measurement (hex)")
    args = parser.parse_args(argv)
    if args.command == "measure":
        print("0x" + measure_package().hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
