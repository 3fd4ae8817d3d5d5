"""The operator commands of ``enclave-agent``: ``model``, ``stat``, ``client`` and
``round`` (governance, coordinator and client keys come from ``--key-file``; reading
needs no key). Every command checks its input before it sends anything; the work is
done by ``enclave_agent.operator``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TypeAlias

from enclave_agent.cli_common import Parser, add_chain_args, manifest_of, positive_int, print_json
from enclave_agent.errors import EXIT_ROUND_ABORTED, EXIT_TIMEOUT, ConfigError
from enclave_agent.operator.session import Session
from enclave_agent.protocol import stages
from enclave_agent.protocol.round_spec import ROUND_DEFAULTS

SubParsers: TypeAlias = "argparse._SubParsersAction[Parser]"

CHECKOUT_ABI_DIR = Path(__file__).resolve().parents[1] / "build" / "contracts"  # `make` compiles there
GOVERNANCE_KEY = "file with the governance account's hex private key (mode 0600)"
COORDINATOR_KEY = "file with the coordinator account's hex private key (mode 0600)"


def _session(args: argparse.Namespace, what: str = "governance key") -> Session:
    return Session.open(manifest_of(args), getattr(args, "key_file", None), args.rpc_url, what=what)


def _features(args: argparse.Namespace) -> list[str]:
    if (args.features is None) == (args.features_from is None):
        raise ConfigError("give exactly one of --features NAME,NAME,... or --features-from CSV")
    if args.features is not None:
        names = [name.strip() for name in args.features.split(",") if name.strip()]
        if not names:
            raise ConfigError("--features names no column")
        return names
    return csv_features(args.features_from, args.label_column)


def csv_features(path: Path, label_column: str) -> list[str]:
    """A data CSV's feature columns in order (its header without the label column)."""
    try:
        header = path.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ConfigError(f"--features-from {path}: cannot read a header row") from exc
    columns = [c.strip() for c in header.split(",")]
    if label_column not in columns:
        raise ConfigError(f"--features-from {path}: no label column {label_column!r} in the header")
    return [c for c in columns if c != label_column]


def _add_features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", help="feature names in the providers' column order, comma-separated")
    p.add_argument(
        "--features-from",
        type=Path,
        help="a provider's data CSV: its header, without the label column, names the features",
    )
    p.add_argument("--label-column", default="target", help="label column of --features-from")


# ---------------------------------------------------------------------- model / stat


def _cmd_model(args: argparse.Namespace) -> int:
    from enclave_agent.operator import models

    if args.action == "list":
        print_json(models.list_models(_session(args), args.round))
        return 0
    session = _session(args)
    if args.action == "retire":
        models.retire_model(session, args.id)
        print_json(models.list_models(session, None)[args.id - 1])
        return 0
    features = _features(args)
    units = _pairs(args.units, "--units")
    if args.command == "stat":
        model_id = models.register_statistic(
            session, args.id, args.name, features, fee=args.fee, units=units, description=args.description
        )
    else:
        model_id = models.register_model(
            session,
            args.id,
            args.name,
            features,
            fee=args.fee,
            link=args.link,
            units=units,
            classes=_pairs(args.classes, "--classes"),
            description=args.description,
        )
    print(model_id)
    return 0


def _pairs(text: str | None, option: str) -> dict[str, str]:
    """``a=x,b=y`` -> {"a": "x", "b": "y"}; ConfigError naming ``option`` otherwise."""
    pairs: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{option} takes NAME=TEXT pairs separated by commas, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _add_description(p: argparse.ArgumentParser, *, classes: bool) -> None:
    p.add_argument("--description", default="", help="one line saying what it answers (the model card)")
    p.add_argument("--units", help="units of the features, e.g. 'mean_radius=px,mean_area=px²'")
    if classes:
        p.add_argument("--classes", help="what labels 0 and 1 mean, e.g. '0=malignant,1=benign'")


def _add_model(sub: SubParsers) -> None:
    from enclave_agent.operator.models import LINKS, SCALINGS

    p = sub.add_parser(
        "model",
        help="register a served model on a completed training round, retire one, list them",
        description="register ROUND: bind a model to the completed final training round ROUND (input tag "
        "train:STATS:PREVIOUS, output shared-model); its scaling round and earlier training rounds are read "
        "from the rounds' tags, the feature names come from --features or --features-from. Prints the "
        "model id. retire ID: stop it taking requests. list: every model as JSON (no key needed).",
    )
    p.add_argument("action", choices=("register", "retire", "list"), help="what to do (see above)")
    p.add_argument("id", nargs="?", type=positive_int, help="round id (register) or model id (retire)")
    p.add_argument("--name", help="model name clients ask for (register)")
    _add_features(p)
    p.add_argument("--fee", type=int, default=0, help="fee per row in wei (register)")
    p.add_argument("--link", choices=LINKS, default=LINKS[0], help="link function applied to the score")
    p.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=SCALINGS[0],
        help="how queries are scaled inside the enclaves: the joint mean and std of the round the tag names",
    )
    p.add_argument("--round", type=positive_int, help="list: only the models of this round")
    _add_description(p, classes=True)
    add_chain_args(p, GOVERNANCE_KEY + " (not for list)")
    p.set_defaults(func=_checked_model)

    p = sub.add_parser(
        "stat",
        help="release a completed column-stats statistic round through the gateway",
        description="register ROUND: the completed column-stats round ROUND (opened with --output statistic) "
        "answers sum, mean, population std (divided by the count) and count per column through the "
        "gateway, to clients with access, never below the round's minimum contributors. Prints the "
        "model id.",
    )
    p.add_argument("action", choices=("register",), help="what to do (see above)")
    p.add_argument("id", type=positive_int, help="round id")
    p.add_argument("--name", required=True, help="statistic name clients ask for")
    _add_features(p)
    p.add_argument("--fee", type=int, default=0, help="fee per request in wei")
    _add_description(p, classes=False)
    add_chain_args(p, GOVERNANCE_KEY)
    p.set_defaults(func=_checked_model)


def _checked_model(args: argparse.Namespace) -> int:
    if args.action != "list" and args.id is None:
        raise ConfigError(f"{args.command} {args.action} needs an id")
    if args.action == "register" and not args.name:
        raise ConfigError(f"{args.command} register needs --name")
    if args.action != "list" and getattr(args, "key_file", None) is None:
        raise ConfigError(f"{args.command} {args.action} changes the chain: give --key-file (governance key)")
    if getattr(args, "fee", 0) < 0:
        raise ConfigError(f"--fee must be >= 0 wei, got {args.fee}")
    return _cmd_model(args)


# ---------------------------------------------------------------------- client


def _cmd_client(args: argparse.Namespace) -> int:
    from enclave_agent.operator import clients
    from enclave_agent.operator.session import address_arg

    if args.action == "deposit":
        if args.key_file is None:
            raise ConfigError("client deposit is paid by the client: give its --key-file")
        amount = clients.parse_amount(args.target)
        print_json(clients.deposit(_session(args, "client key"), amount))
        return 0
    client = address_arg(args.target, "client")
    if args.action in ("grant", "revoke") and args.key_file is None:
        raise ConfigError(f"client {args.action} changes the chain: give --key-file (governance key)")
    if args.action == "grant" and args.quota < 1:
        raise ConfigError(f"--quota must be >= 1 row (client revoke removes access), got {args.quota}")
    session = _session(args)
    if args.action == "grant":
        print_json(clients.set_access(session, client, args.quota))
    elif args.action == "revoke":
        print_json(clients.set_access(session, client, 0))
    elif args.action == "quota":
        print_json(clients.show(session, client))
    else:
        print_json(clients.fees(session, client))
    return 0


def _add_client(sub: SubParsers) -> None:
    p = sub.add_parser(
        "client",
        help="client access: grant, revoke, show quota or fees, deposit",
        description="grant CLIENT: the client role with --quota rows in total (governance key). "
        "revoke CLIENT: quota 0, no access. quota CLIENT: access, quota, rows used and fee balance. "
        "fee CLIENT: its balance and, per active model, the fee per row and how many rows the balance "
        "pays for. deposit AMOUNT: add AMOUNT (wei, or e.g. '0.01ether', '5gwei') to the fee balance of "
        "the account whose --key-file is given (the client's own key). Prints the client as JSON.",
    )
    p.add_argument(
        "action", choices=("grant", "revoke", "quota", "fee", "deposit"), help="what to do (see above)"
    )
    p.add_argument("target", help="the client's address, or for deposit the amount")
    p.add_argument("--quota", type=int, default=1000, help="rows the client may ask in total (grant)")
    add_chain_args(p, GOVERNANCE_KEY + " for grant and revoke; the client's own key for deposit")
    p.set_defaults(func=_cmd_client)


# ---------------------------------------------------------------------- round


def _cmd_round_open(args: argparse.Namespace) -> int:
    from enclave_agent.operator.rounds import default_length, default_output
    from enclave_agent.protocol.coordinator import open_round
    from enclave_agent.protocol.round_spec import RoundRequest

    length = args.length
    if args.features_from is not None:
        derived = default_length(args.tag, len(csv_features(args.features_from, args.label_column)))
        if derived is None:
            raise ConfigError(
                f"--features-from gives the length of column-stats and train:S:P only, not {args.tag!r}"
            )
        if length is not None and length != derived:
            raise ConfigError(f"--length {length} contradicts --features-from ({derived} for {args.tag!r})")
        length = derived
    if length is None:
        raise ConfigError("give --length (or --features-from CSV for column-stats and train:S:P)")
    output = default_output(args.tag) if args.output == "auto" else args.output
    request = RoundRequest(
        tag=args.tag,
        length=length,
        scheme=args.scheme,
        encoding=args.encoding,
        threshold=args.threshold,
        frac_bits=args.frac_bits,
        posting_window=args.posting_window,
        window=args.window,
        output=output,
        min_contributors=args.min_contributors,
        mask_degree=args.mask_degree,
    )
    print(open_round(manifest_of(args), args.key_file, request, rpc_url=args.rpc_url))
    return 0


def _add_round_open(sub: SubParsers, name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description="Opens a share-exchange round over the providers of the synchronised epoch (coordinator "
        "key) and prints its id. The providers contribute the input named --tag: a [inputs.TAG] table of "
        "their config, or the built-ins column-stats (per column sum, sum of squares, then the row count of "
        "their [data] CSV: 2f+1 numbers) and train:S:P (a logistic regression trained on their data, scaled "
        "by the joint statistics of round S, warm-started from training round P or 0: f+2 numbers).",
    )
    p.add_argument("--tag", required=True, help="input tag the providers contribute (<= 32 bytes)")
    p.add_argument("--length", type=int, help="vector length d (default: from --features-from)")
    p.add_argument(
        "--features-from",
        type=Path,
        help="a provider's data CSV: gives --length for column-stats (2f+1) and train:S:P (f+2)",
    )
    p.add_argument("--label-column", default="target", help="label column of --features-from")
    p.add_argument(
        "--scheme",
        choices=stages.SCHEMES,
        default=ROUND_DEFAULTS.scheme,
        help="additive: over Z/2^64, n-of-n, or t-of-n with --threshold t < n (the others recover what "
        "the absent were owed; on-chain bytes flat in d with seeded); shamir: t-of-n over GF(2^61-1), "
        "survives n-t dropouts (needs 3 providers)",
    )
    p.add_argument(
        "--encoding",
        choices=stages.ENCODINGS,
        default=ROUND_DEFAULTS.encoding,
        help="dense: each encrypted share vector goes on chain; seeded: a 32-byte encrypted seed per "
        "recipient, the recipient expands it (on-chain bytes flat in d)",
    )
    p.add_argument(
        "--mask-degree",
        type=int,
        default=ROUND_DEFAULTS.mask_degree,
        help="additive n-of-n only: 0 (default) shares with every other provider; an even k >= 2 shares with "
        "the k nearest around the circle of providers only (cheaper for many providers; private against "
        "fewer than k colluders instead of n - 1)",
    )
    p.add_argument(
        "--threshold",
        type=positive_int,
        help="t, the shares that rebuild the aggregate (default: n for additive, max(2, n-1) for shamir); "
        "an additive round with t < n survives dropouts: the holders recover what the absent were owed, "
        "and the aggregate sums the holders' inputs (at least max(t, 3) of them)",
    )
    p.add_argument(
        "--frac-bits", type=int, default=ROUND_DEFAULTS.frac_bits, help="fixed-point fraction bits (0..40)"
    )
    p.add_argument(
        "--posting-window",
        type=positive_int,
        default=ROUND_DEFAULTS.posting_window,
        help=f"seconds to post shares (default {ROUND_DEFAULTS.posting_window})",
    )
    p.add_argument(
        "--window",
        type=positive_int,
        default=ROUND_DEFAULTS.window,
        help=f"seconds until the round deadline (default {ROUND_DEFAULTS.window})",
    )
    p.add_argument(
        "--output",
        choices=("auto", *stages.OUTPUT_KINDS),
        default="auto",
        help="what the aggregate may be used for: shared-model (stays secret-shared, served as a model), "
        "statistic (released through the gateway), intermediate (revealed inside the enclaves only); "
        "auto: statistic for column-stats, shared-model otherwise",
    )
    p.add_argument(
        "--min-contributors",
        type=int,
        help="release rule: fewest contributors a statistic may rest on (default: every participant for "
        "a statistic, 0 otherwise)",
    )
    add_chain_args(p, COORDINATOR_KEY, key_required=True)
    p.set_defaults(func=_cmd_round_open)


def _cmd_round_show(args: argparse.Namespace) -> int:
    from enclave_agent.operator import rounds

    if args.column is not None and (args.gateway is None or args.api_key_file is None):
        raise ConfigError("--column asks the gateway: give --gateway URL and --api-key-file")
    report = rounds.show(_session(args), args.id)
    if args.column is not None:
        report["result"]["answer"] = _released_statistic(args, report)
    print_json(report)
    return 0


def _released_statistic(args: argparse.Namespace, report: dict[str, object]) -> dict[str, object]:
    """The round's statistic of --column as the gateway releases it to this client."""
    from enclave_agent.config import read_secret
    from enclave_agent.gateway.client import GatewayClient

    result = report["result"]
    assert isinstance(result, dict)
    if not result["released"]:
        raise ConfigError(f"round {args.id} releases nothing through the gateway: {result['note']}")
    model = next(m for m in result["models"] if m["active"])
    client = GatewayClient(args.gateway, api_key=read_secret(args.api_key_file, "API key"))
    answer: dict[str, object] = client.infer(model["id"], {"statistic": {"column": args.column}})
    return answer


def _cmd_round_wait(args: argparse.Namespace) -> int:
    from enclave_agent.operator import rounds

    if not 0 < args.timeout <= 86_400 or not 0.05 <= args.interval <= 60:
        raise ConfigError("need 0 < --timeout <= 86400 and 0.05 <= --interval <= 60 seconds")
    tty = sys.stderr.isatty()
    shown = {"key": ""}

    def report(line: str) -> None:
        if tty:
            print("\r\x1b[K" + line, end="", file=sys.stderr, flush=True)
            return
        key = re.sub(r"\d+ s\b", "", line)  # on a log, one line per change of stage or count
        if key != shown["key"]:
            print(line, file=sys.stderr, flush=True)
            shown["key"] = key

    state = rounds.wait(_session(args), args.id, timeout=args.timeout, interval=args.interval, report=report)
    if tty:
        print(file=sys.stderr)
    print(state)
    if state == "timeout":
        print(f"enclave-agent: error: round {args.id} did not end within {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_ROUND_ABORTED if state == "aborted" else 0


def _add_round(sub: SubParsers) -> None:
    p = sub.add_parser(
        "round",
        help="open a round, show one (participants, stage, deadlines, gas, blame, result), wait for one",
        description="Share-exchange rounds. Members are named by their organisation's display name where "
        "the registry knows it.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_round_open(actions, "open", "open a round (coordinator key) and print its id")

    q = actions.add_parser(
        "show",
        help="everything the chain says about a round, as JSON",
        description="Prints the round's tag, state, spec, output policy and floor, deadlines (and seconds "
        "left), participants by organisation (posted, fused, contributor, holder, excluded), exclusions, "
        "blame, the abort reason and culprits, gas per stage, and where its result goes (models registered "
        "on it). The result itself is released only for a statistic round, through the gateway: --column "
        "asks for one column's statistic with a client's API key.",
    )
    q.add_argument("id", type=positive_int, help="round id")
    q.add_argument(
        "--column",
        help="a released statistic round: also ask the gateway for this column's statistic (one request "
        "of the client's quota)",
    )
    q.add_argument("--gateway", help="gateway base URL, for --column")
    q.add_argument("--api-key-file", type=Path, help="the client's API key file, for --column")
    add_chain_args(q, None)
    q.set_defaults(func=_cmd_round_show)

    w = actions.add_parser(
        "wait",
        help="wait until a round completes (exit 0), aborts (exit 10) or --timeout passes (exit 11)",
        description="Polls the round and writes a progress line to stderr (stage, postings or fused shares "
        "so far, time to the deadline); prints the final state (completed, aborted, timeout) on stdout. "
        "Exit 0 completed, 10 aborted (the line names the reason and the culprits), 11 timeout.",
    )
    w.add_argument("id", type=positive_int, help="round id")
    w.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    w.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    add_chain_args(w, None)
    w.set_defaults(func=_cmd_round_wait)


def add_operator_commands(sub: SubParsers) -> None:
    """``model``, ``stat``, ``client``, ``round`` and the older spelling ``open-round``."""
    _add_model(sub)
    _add_client(sub)
    _add_round(sub)
    _add_round_open(sub, "open-round", "the same as `round open`")
    add_deploy_command(sub)
    add_registry_commands(sub)


# ---------------------------------------------------------------------- deploy


def _service_identity(url: str) -> tuple[str, str]:
    """(signer address, measurement hex) the attestation service at ``url`` announces."""
    import json
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--signer-from must be an http(s) URL, got {url!r}")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/signer", timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        return str(body["signer"]), str(body["measurement"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--signer-from {url}: no attestation service answers /v1/signer ({exc})") from None


def _cmd_deploy(args: argparse.Namespace) -> int:
    from enclave_agent.chain import connect, deploy_contracts
    from enclave_agent.chain.manifest import write_manifest
    from enclave_agent.config import load_account
    from enclave_agent.tee.measure import measure_package

    if args.out.exists():
        raise ConfigError(f"--out {args.out} exists already: a manifest names one deployment")
    governor = load_account(args.key_file, "governance key")
    signers = list(args.signer)
    measurement = "0x" + measure_package().hex() if args.measurement is None else args.measurement
    if args.signer_from:
        signer, vouched = _service_identity(args.signer_from)
        if args.measurement is None and vouched != measurement:
            raise ConfigError(
                f"the attestation service vouches for build {vouched}, this checkout measures {measurement}: "
                "run the service from this checkout (or give --measurement)"
            )
        signers.append(signer)
    try:
        raw = bytes.fromhex(measurement.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"--measurement must be 32 bytes of hex, got {measurement!r}")
    w3 = connect(args.rpc_url)
    manifest = deploy_contracts(
        w3,
        governor,
        abi_dir=args.abi_dir or CHECKOUT_ABI_DIR,
        measurements={1: raw, 2: raw},
        signers=signers,
        rpc_url=args.rpc_url,
    )
    write_manifest(manifest, args.out)
    print_json(manifest.to_json())
    return 0


def add_deploy_command(sub: SubParsers) -> None:
    p = sub.add_parser(
        "deploy",
        help="deploy the three contracts (governance key), approve a measurement, trust signers",
        description="Deploys ConsortiumRegistry, ShareExchange and InferenceGateway with the governance key "
        "(which also becomes the coordinator), approves the measurement for the provider and gateway roles, "
        "trusts the attestation signers and writes the manifest agents and commands read. "
        "scripts/deploy.py is the Brownie twin.",
    )
    p.add_argument("--rpc-url", default="http://127.0.0.1:8545", help="JSON-RPC URL of the chain")
    p.add_argument("--key-file", type=Path, required=True, help=GOVERNANCE_KEY)
    p.add_argument("--out", type=Path, required=True, help="manifest file to write (must not exist)")
    p.add_argument(
        "--signer-from",
        help="URL of the attestation service whose signer to trust (its /v1/signer); refused if it vouches "
        "for another build than this checkout",
    )
    p.add_argument(
        "--signer", action="append", default=[], help="another signer address to trust (repeatable)"
    )
    p.add_argument("--measurement", help="hex measurement to approve (default: this checkout's)")
    p.add_argument(
        "--abi-dir", type=Path, help="compiled contracts (default: this checkout's build/contracts)"
    )
    p.set_defaults(func=_cmd_deploy)


# ---------------------------------------------------------------------- measurements, signers


def _cmd_measurement(args: argparse.Namespace) -> int:
    from enclave_agent.operator import registry

    if args.action != "list":
        if args.role is None or args.measurement is None:
            raise ConfigError(f"measurement {args.action} needs ROLE and MEASUREMENT")
        registry.role_id(args.role)
        registry.measurement_bytes(args.measurement)
        if args.key_file is None:
            raise ConfigError(
                f"measurement {args.action} changes the chain: give --key-file (governance key)"
            )
    session = _session(args)
    if args.action == "approve":
        registry.approve(session, args.role, args.measurement)
    elif args.action == "revoke":
        deactivated = registry.revoke(session, args.role, args.measurement)
        print(f"{deactivated} member(s) running it deactivated", file=sys.stderr)
    print_json(registry.measurements(session))
    return 0


def _cmd_signer(args: argparse.Namespace) -> int:
    from enclave_agent.operator import registry
    from enclave_agent.operator.session import address_arg

    if args.action != "list":
        if args.address is None:
            raise ConfigError(f"signer {args.action} needs the signer's address")
        signer = address_arg(args.address, "signer")
        if args.key_file is None:
            raise ConfigError(f"signer {args.action} changes the chain: give --key-file (governance key)")
        session = _session(args)
        registry.set_signer(session, signer, args.action == "trust")
    else:
        session = _session(args)
    print_json(registry.signers(session))
    return 0


def add_registry_commands(sub: SubParsers) -> None:
    p = sub.add_parser(
        "measurement",
        help="approve or revoke a code measurement for a role, list them (governance key; list needs none)",
        description="Only agents running an approved measurement register. Revoking one deactivates every "
        "member running it (they exit 4) and starts a new epoch: approve the new build first. Prints every "
        "measurement ever approved and whether it still is. scripts/measurements.py is the Brownie twin.",
    )
    p.add_argument("action", choices=("approve", "revoke", "list"), help="what to do")
    p.add_argument("role", nargs="?", choices=("provider", "gateway"), help="the role (approve, revoke)")
    p.add_argument("measurement", nargs="?", help="32-byte hex, as `enclave-agent measure` prints it")
    add_chain_args(p, GOVERNANCE_KEY + " (not for list)")
    p.set_defaults(func=_cmd_measurement)

    p = sub.add_parser(
        "signer",
        help="trust or distrust an attestation signer, list them (governance key; list needs none)",
        description="Quotes count only when a trusted signer signed them. Prints every signer governance "
        "ever named and whether it is trusted now.",
    )
    p.add_argument("action", choices=("trust", "distrust", "list"), help="what to do")
    p.add_argument("address", nargs="?", help="the signer's address (trust, distrust)")
    add_chain_args(p, GOVERNANCE_KEY + " (not for list)")
    p.set_defaults(func=_cmd_signer)
