"""enclave-agent: the enclave agent of an enclave-share consortium.

Runs a provider or gateway enclave agent (simulated TEE today), measures its code and
shows an agent's status; for governance and the coordinator it deploys the contracts,
admits organisations, approves measurements, trusts signers, registers models and
statistics, grants clients, opens rounds, shows them and waits for them. Exit codes: 0
ok, 1 error, 2 invalid config or arguments, 3 refused by the registry (another code
measurement, an operator that is not an admitted organisation, or over its enclave
limit), 4 membership revoked, 5 the registry's record of this enclave names another
operator or X25519 key, 6 the node is on another chain than this agent's state (a reset
chain: see reset-state), 7 the state store is new or emptied while the chain says this
enclave is a member (see restore).
verify-evidence: 0 accepted (or verified, without --policy), 2 bad arguments, policy
or collateral, 8 the evidence does not verify, 9 verified but refused by the policy.
round wait: 10 the round aborted, 11 --timeout passed; request: 11 --timeout passed.
A reader that closes the output early (status | head) ends the command with exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from enclave_agent.cli_common import Parser, add_chain_args, manifest_of, print_json
from enclave_agent.cli_operator import add_operator_commands
from enclave_agent.errors import (
    EXIT_CHAIN_CHANGED,
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_EVIDENCE_INVALID,
    EXIT_EVIDENCE_REFUSED,
    EXIT_STATE_LOST,
    ChainChanged,
    ConfigError,
    EnclaveAgentError,
    StateLost,
)

log = logging.getLogger("enclave_agent.cli")


def _configure_logging(name: str, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("web3", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_measure(args: argparse.Namespace) -> int:
    import hashlib

    from enclave_agent.tee.measure import manifest_entries, measure_package

    if args.list:
        for name, path in manifest_entries():
            print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}")
    print("0x" + measure_package().hex())
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _cmd_run(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.protocol.agent import Agent

    config = load_config(args.config)
    if config.role != "provider":
        raise ConfigError(
            f"{args.config}: agent.role is {config.role!r}; use `enclave-agent gateway` for gateways"
        )
    _configure_logging(config.name, args.verbose)
    stop = _stop_on_signals()
    agent = Agent.open(config)
    if config.health is not None:
        from enclave_agent.protocol.health import serve_health

        try:
            stopping = serve_health(agent, config.health.host, config.health.port)
        except OSError as exc:
            raise ConfigError(
                f"{args.config}: health.port: cannot listen on {config.health.host}:{config.health.port}: "
                f"{exc.strerror}"
            ) from exc
        try:
            return agent.run(stop)
        finally:
            stopping.set()
    return agent.run(stop)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.gateway.http import serve
    from enclave_agent.gateway.service import GatewayAgent

    config = load_config(args.config)
    if config.role != "gateway":
        raise ConfigError(
            f"{args.config}: agent.role is {config.role!r}; use `enclave-agent run` for providers"
        )
    _configure_logging(config.name, args.verbose)
    return serve(GatewayAgent.open(config))


def _cmd_request(args: argparse.Namespace) -> int:
    from enclave_agent.cli_request import list_models, send_request

    if args.list_models:  # GET /v1/models is public: no credentials needed
        print_json(list_models(args.url, args.timeout))
        return 0
    if args.model is None:
        raise ConfigError("--model is required (or use --list-models)")
    return send_request(args, _request_inputs(args))


def _request_inputs(args: argparse.Namespace) -> dict[str, object]:
    given = [x for x in (args.features, args.csv, args.column) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --features JSON, --csv FILE or --column NAME")
    if args.column is not None:
        return {"statistic": {"column": args.column}}
    if args.features is not None:
        try:
            return {"features": json.loads(args.features)}
        except ValueError as exc:
            raise ConfigError(f"--features is not JSON: {exc}") from exc
    from enclave_agent.model.table import read_table

    names, x, _ = read_table(args.csv, args.label_column)
    return {"rows": [dict(zip(names, map(float, row), strict=True)) for row in x]}


def _cmd_status(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.store import Store

    config = load_config(args.config)
    db = config.state_dir / "agent.sqlite3"
    if not db.is_file():
        raise ConfigError(f"{args.config}: no agent state at {db} (has the agent run?)")
    store = Store(db)
    status = store.get_json("status")
    if status is None:
        raise ConfigError(f"{args.config}: agent state has no status yet")
    # The last block whose events are all processed (the agent writes it at most every few s when idle).
    status["checkpoint"] = store.get_checkpoint("main")
    print(json.dumps(status, indent=2))
    return 0


def _cmd_org(args: argparse.Namespace) -> int:
    from enclave_agent import governance

    gov = governance.Governance.open(manifest_of(args), args.key_file, args.rpc_url)
    if args.action == "list":
        print(json.dumps(gov.list(), indent=2))
        return 0
    if args.operator is None:
        raise ConfigError(f"org {args.action} needs the organisation's operator address")
    operator = governance.operator_address(args.operator)
    if args.action == "admit":
        if not args.name:
            raise ConfigError("org admit needs --name")
        gov.admit(operator, args.name, governance.roles_bitmap(args.roles), args.max_enclaves)
    elif args.action == "suspend":
        gov.suspend(operator)
    elif args.action == "reinstate":
        gov.reinstate(operator)
    print(json.dumps(gov.show(operator), indent=2))
    return 0


def _cmd_reset_state(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.store.db import set_aside

    config = load_config(args.config)
    db = config.state_dir / "agent.sqlite3"
    if not args.yes:
        print(
            f"would set aside {db} (membership, rounds, requests, sealed shares of the old chain); "
            "the enclave keys stay. Run again with --yes to do it.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    kept = set_aside(db)
    print(f"agent state set aside as {kept}; the next start registers on the manifest's chain")
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.store import Store

    config = load_config(args.config)
    db = config.state_dir / "agent.sqlite3"
    if not db.is_file():
        raise ConfigError(f"{args.config}: no agent state at {db}")
    with Store(db) as store:
        store.backup(args.out)
    print(f"consistent snapshot of {db} written to {args.out} (mode 0600; shares and keys stay sealed)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from enclave_agent.config import load_config
    from enclave_agent.store.db import restore

    config = load_config(args.config)
    db = config.state_dir / "agent.sqlite3"
    if not args.yes:
        print(
            f"would replace {db} with {args.source} (the current state is set aside). Add --yes.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    kept = restore(args.source, db)
    print(f"restored {db} from {args.source}" + (f"; the previous state is kept as {kept}" if kept else ""))
    return 0


def _parse_time(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--at: expected Unix seconds or an ISO-8601 time, got {text!r}") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _cmd_verify_evidence(args: argparse.Namespace) -> int:
    import time

    from enclave_agent.tee.policy_file import load_policy
    from enclave_agent.tee.verify import judge, parse_challenge, read_evidence_file, verifier_for

    at = _parse_time(args.at)
    evidence_file = read_evidence_file(args.file, args.type)
    policy = load_policy(args.policy) if args.policy else None
    verifier = verifier_for(evidence_file.evidence_type, args.collateral)
    verdict, report = judge(
        evidence_file,
        verifier,
        at=at,
        now=int(time.time()) if at is None else at,
        policy=policy,
        role=args.role,
        challenge=parse_challenge(args.challenge, "--challenge"),
    )
    print(json.dumps(report, indent=2))
    return {"invalid": EXIT_EVIDENCE_INVALID, "refused": EXIT_EVIDENCE_REFUSED}.get(verdict, 0)


def _add_verify_evidence(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify-evidence",
        help="verify TEE evidence (Nitro, SGX/TDX DCAP, SEV-SNP) and judge it by a policy; prints JSON",
        description="Verifies an attestation document, quote or report (or an evidence bundle naming the "
        "keys it binds) as of --at and prints the verdict, the measurement, the bound keys and every reason "
        "as JSON. Exit 0 accepted (verified, without --policy), 2 bad arguments, policy or collateral, "
        "8 the evidence does not verify, 9 refused by the policy.",
    )
    p.add_argument("file", type=Path, help="evidence file (binary, hex or base64) or JSON evidence bundle")
    p.add_argument(
        "--type",
        default="auto",
        choices=("auto", "aws-nitro", "intel-sgx", "intel-tdx", "amd-sev-snp"),
        help="evidence type (default: recognised from the bytes)",
    )
    p.add_argument(
        "--at",
        help="verification time, Unix seconds or ISO-8601 (default: a Nitro document's own time, else now; "
        "also the policy's 'now')",
    )
    p.add_argument(
        "--collateral",
        type=Path,
        help="directory of DCAP collateral (TCB Info, QE Identity, CRLs, TCB signing certificate) "
        "or of SNP certificates (VCEK, ASK and ARK)",
    )
    p.add_argument("--policy", type=Path, help="evidence policy TOML (see enclave_agent/tee/policy_file.py)")
    p.add_argument("--role", default="provider", choices=("provider", "gateway"), help="role to judge for")
    p.add_argument("--challenge", help="32-byte hex nonce the evidence must carry")
    p.set_defaults(func=_cmd_verify_evidence)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="enclave-agent", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "measure",
        help="print this agent's code measurement (SHA-256, hex)",
        description="SHA-256 over the agent package's measured files and its runtime.lock "
        "(docs/measurement.md); the same from a checkout and from an installed wheel.",
    )
    p.add_argument("--list", action="store_true", help="first print each measured file's SHA-256 and name")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("run", help="run a provider enclave agent until SIGTERM/SIGINT")
    p.add_argument("--config", type=Path, required=True, help="agent TOML config")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "gateway", help="run the gateway enclave agent, its HTTP API and wallet page until SIGTERM/SIGINT"
    )
    p.add_argument("--config", type=Path, required=True, help="gateway TOML config (agent.role = gateway)")
    p.set_defaults(func=_cmd_gateway)

    p = sub.add_parser("request", help="send an inference or statistics request to a gateway (a client)")
    p.add_argument("--url", default="http://127.0.0.1:8700", help="gateway base URL")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--api-key", help="API key (prefer --api-key-file)")
    auth.add_argument("--api-key-file", type=Path, help="file holding the API key")
    auth.add_argument("--key-file", type=Path, help="wallet private key file: sign the request (EIP-712)")
    p.add_argument("--model", help="model id or name")
    p.add_argument("--list-models", action="store_true", help="list the gateway's models and exit")
    p.add_argument("--features", help="one row as JSON, e.g. '{\"mean_radius\": 14.2, ...}'")
    p.add_argument("--csv", type=Path, help="a CSV of rows to score as one batch")
    p.add_argument("--label-column", default="target", help="label column to drop from --csv")
    p.add_argument("--column", help="statistic of this column (statistic models)")
    p.add_argument(
        "--encrypt", action="store_true", help="ask for results encrypted end to end to a fresh key"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the answer; past it: exit 11, the request may still be answered",
    )
    p.set_defaults(func=_cmd_request)

    p = sub.add_parser("status", help="print an agent's persisted status as JSON")
    p.add_argument("--config", type=Path, required=True, help="agent TOML config")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "org",
        help="admit, suspend, reinstate or list member organisations (governance key; list needs none)",
        description="Organisations are admitted by governance: only an admitted organisation's operator "
        "registers enclaves, for its roles and up to its enclave limit per role. Suspending one revokes "
        "its enclaves (a new epoch starts); reinstating one also ends the cool-down of an organisation "
        "dropped for not synchronising. Prints the organisation (or all of them) as JSON.",
    )
    p.add_argument(
        "action",
        choices=("admit", "suspend", "reinstate", "show", "list"),
        help="what to do (list needs no operator)",
    )
    p.add_argument("operator", nargs="?", help="the organisation's operator address")
    add_chain_args(p, "file with the governance hex private key (not for show/list)")
    p.add_argument("--name", help="display name (admit)")
    p.add_argument("--roles", default="provider", help="roles it may hold, comma-separated (admit)")
    p.add_argument("--max-enclaves", type=int, default=1, help="enclaves per role it may run (admit)")
    p.set_defaults(func=_cmd_org)

    p = sub.add_parser(
        "reset-state",
        help="start an agent over on a new chain (after a reset): set its state database aside",
        description="Moves the agent's SQLite state (the old chain's membership, rounds, requests and "
        "sealed shares) aside as agent.sqlite3.reset-<time>; the enclave keys stay. Use it when the "
        "agent stops with exit code 6 because its chain was reset and the consortium redeployed. "
        "Stop the agent first.",
    )
    p.add_argument("--config", type=Path, required=True, help="agent TOML config")
    p.add_argument("--yes", action="store_true", help="really do it (without: say what would happen)")
    p.set_defaults(func=_cmd_reset_state)

    p = sub.add_parser(
        "backup",
        help="write a consistent snapshot of an agent's state (may run while the agent runs)",
        description="Copies the agent's SQLite state through SQLite's backup API into a new file "
        "(mode 0600). Shares and keys inside stay sealed to this enclave's build and platform secret: "
        "the backup restores on the same host and build only.",
    )
    p.add_argument("--config", type=Path, required=True, help="agent TOML config")
    p.add_argument("--out", type=Path, required=True, help="backup file to create (must not exist)")
    p.set_defaults(func=_cmd_backup)

    p = sub.add_parser(
        "restore",
        help="replace an agent's state with a backup (stop the agent first)",
        description="Checks the backup (a sound store this agent can read, not empty), sets the current "
        "state aside as agent.sqlite3.reset-<time> and puts the backup in its place.",
    )
    p.add_argument("--config", type=Path, required=True, help="agent TOML config")
    p.add_argument("--from", dest="source", type=Path, required=True, help="backup file")
    p.add_argument("--yes", action="store_true", help="really do it (without: say what would happen)")
    p.set_defaults(func=_cmd_restore)

    _add_verify_evidence(sub)
    add_operator_commands(sub)
    from enclave_agent.tee.verifier_cli import add_evidence_verifier

    add_evidence_verifier(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # `enclave-agent status | head`: the reader left; say so once, without a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("enclave-agent: error: output closed before it was all written (broken pipe)", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as exc:
        return _fail(exc, EXIT_CONFIG)
    except ChainChanged as exc:
        return _fail(exc, EXIT_CHAIN_CHANGED)
    except StateLost as exc:
        return _fail(exc, EXIT_STATE_LOST)
    except EnclaveAgentError as exc:
        return _fail(exc, EXIT_ERROR)


def _fail(exc: Exception, code: int) -> int:
    print(f"enclave-agent: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
