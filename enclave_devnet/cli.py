"""enclave-devnet: the development consortium around the enclave agent (not measured).

``demo`` runs the whole system on this machine (a local chain, the simulated
attestation service, three providers and a gateway) and prints the results table;
``sample-data`` writes the demo's data split into provider CSVs for trying a
consortium by hand; ``attestation-service`` runs the SIMULATED attestation service (a
trusted stand-in for TEE hardware that signs quotes for the agent build it is
installed with). Exit codes: 0 ok, 1 error, 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from enclave_agent.cli_common import Parser
from enclave_agent.errors import EXIT_CONFIG, EXIT_ERROR, ConfigError, EnclaveAgentError


def _cmd_demo(args: argparse.Namespace) -> int:
    from enclave_devnet import demo

    return demo.main(args.workdir, args.rounds, args.serve)


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from enclave_devnet.data import split_breast_cancer, uneven_fractions

    if not 3 <= args.providers <= 19:
        raise ConfigError(f"--providers must be 3..19, got {args.providers}")
    split = split_breast_cancer(
        args.out, providers=args.providers, fractions=uneven_fractions(args.providers), seed=args.seed
    )
    for path, rows in zip(split.provider_paths, split.provider_rows, strict=True):
        print(f"{path}: {rows} rows")
    print(f"{split.holdout_path}: {split.holdout_rows} rows held out")
    return 0


def _cmd_attestation_service(args: argparse.Namespace) -> int:
    from enclave_devnet import attestation_service

    argv = ["--key", str(args.key), "--host", args.host, "--port", str(args.port)]
    return attestation_service.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="enclave-devnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole system locally end to end and print the results table")
    p.add_argument("--workdir", type=Path, default=Path("var/demo"), help="state, logs and data")
    p.add_argument("--rounds", type=int, default=3, help="federated-averaging rounds")
    p.add_argument(
        "--serve",
        action="store_true",
        help="after the report, keep the consortium running for the wallet page (and curl) until Ctrl-C",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "sample-data",
        help="write the demo's data (scikit-learn's breast-cancer set) split unevenly into provider CSVs",
        description="Writes provider-0.csv ... (30 feature columns and a 'target' label column, "
        "shuffled with --seed, the first provider largest) and holdout.csv (20%% of the rows, for "
        "asking the model) into --out, for trying a consortium by hand.",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write the CSVs into")
    p.add_argument("--providers", type=int, default=3, help="how many provider CSVs")
    p.add_argument("--seed", type=int, default=7, help="shuffle seed (same seed, same files)")
    p.set_defaults(func=_cmd_sample_data)

    p = sub.add_parser("attestation-service", help="run the SIMULATED attestation service")
    p.add_argument("--key", type=Path, required=True, help="signing key file (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8600, help="port to listen on")
    p.set_defaults(func=_cmd_attestation_service)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"enclave-devnet: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except EnclaveAgentError as exc:
        print(f"enclave-devnet: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
