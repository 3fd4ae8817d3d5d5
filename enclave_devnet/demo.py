"""`enclave-devnet demo`: the whole system on one machine, end to end.

Anvil, the simulated attestation service, three provider agents (each holding
its own uneven, shuffled part of scikit-learn's bundled breast-cancer data) and
the gateway agent run as separate processes. The demo then

1. aggregates per-column statistics into every enclave (joint scaling),
2. trains a logistic regression by federated averaging (K rounds; intermediate
   models are revealed only inside the enclaves, the final one stays shared),
3. registers the model and a column statistic on chain, grants a client access,
4. sends the held-out rows to the gateway over HTTP as an outside client would,
5. prints accuracy and AUC (joint model, each provider alone, a central plaintext
   baseline), latency p50/p95 and gas per stage, and stops every process; with
   ``--serve`` it first keeps everything running for the wallet page until Ctrl-C.

The plaintext models in the table are computed by the demo script from the CSVs
for comparison only; in the system no party holds them.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_typing import ChecksumAddress

from enclave_agent.errors import EnclaveAgentError
from enclave_agent.gateway.auth import hash_api_key, new_api_key
from enclave_agent.gateway.client import GatewayClient
from enclave_agent.model.federated import fedavg_plaintext
from enclave_agent.model.logistic import contribution_length, predict_proba
from enclave_agent.model.table import read_table
from enclave_agent.onchain import Role
from enclave_agent.operator import clients
from enclave_agent.operator.models import register_model, register_statistic
from enclave_agent.protocol.inputs import TRAIN_EPOCHS, TRAIN_L1_BOUND, TRAIN_L2, TRAIN_LR
from enclave_agent.tee._files import ensure_private_dir, write_new_private_file, write_private_file
from enclave_devnet import COMPLETED, Consortium, chain_engine, dev_key, start_consortium, wait_until
from enclave_devnet.anvil import free_port
from enclave_devnet.data import (
    BREAST_CANCER_CLASSES,
    SplitResult,
    breast_cancer_units,
    split_breast_cancer,
    uneven_fractions,
)
from enclave_devnet.evaluation import accuracy, auc, central_baseline

log = logging.getLogger(__name__)

GATEWAY_ROLE = Role.GATEWAY
CLIENT_INDEX = 9  # dev account of the outside client
SPARE_CLIENTS = (10, 11)  # dev accounts with API keys but no access until granted (tests use them)
FEE_WEI = 10**12
# Scores: every held-out probability within this of the plaintext joint model.
SCORE_TOLERANCE = 1e-4


@dataclass
class DemoConfig:
    workdir: Path
    providers: int = 3
    fedavg_rounds: int = 3
    scheme: str = "shamir"
    threshold: int = 2
    frac_bits: int = 20  # column statistics: sums of squares of small values need the bits
    # Training rounds: a model's aggregate is n_i * w_i summed, so its weights already
    # carry log2(rows) bits more than frac_bits; 14 keep them to ~2e-7 here and leave
    # the score 20 query fraction bits over a range of 2048 standard deviations
    # (enclave_agent.model.ranges; at 20 it would be 14 query bits).
    model_frac_bits: int = 14
    concurrency: int = 8
    seed: int = 7
    gateway_timeout: float | None = None  # None: each HTTP call waits for its on-chain deadline
    gateway_rate_per_minute: int | None = None  # rows a minute per client (None: the gateway's default)
    serve: bool = False  # keep everything running for the wallet page until Ctrl-C
    out: Callable[[str], None] = print
    engine: str | None = None  # anvil, ganache or hardhat (default: $ENCLAVE_CHAIN, else anvil)


@dataclass
class DemoResult:
    split: SplitResult
    model_id: int = 0
    stats_model_id: int = 0
    rounds: dict[str, int] = field(default_factory=dict)
    secure_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batch_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    plain_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latencies: list[float] = field(default_factory=list)
    gas: dict[str, int] = field(default_factory=dict)
    table: list[tuple[str, float, float]] = field(default_factory=list)
    statistic: dict[str, Any] = field(default_factory=dict)

    @property
    def max_score_error(self) -> float:
        """Over every held-out row, asked alone and in the batch."""
        errors = [np.abs(self.secure_scores - self.plain_scores)]
        if self.batch_scores.size:
            errors.append(np.abs(self.batch_scores - self.plain_scores))
        return float(np.max(np.concatenate(errors)))


class Demo:
    """The demo's stages, usable one by one (the end-to-end tests drive them too)."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.consortium: Consortium | None = None
        self.api_keys: dict[str, str] = {}  # client address -> API key
        self.gateway_url = ""
        self.result: DemoResult | None = None

    @property
    def c(self) -> Consortium:
        assert self.consortium is not None, "start() first"
        return self.consortium

    def say(self, text: str) -> None:
        self.config.out(text)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.say(f"==> {name}")
        start_block = self.c.w3.eth.block_number if self.consortium else 0
        started = time.monotonic()
        yield
        gas = self._gas_since(start_block) if self.consortium else 0
        if self.result is not None and gas:
            self.result.gas[name] = self.result.gas.get(name, 0) + gas
        self.say(f"    done in {time.monotonic() - started:.1f}s" + (f", {gas:,} gas" if gas else ""))

    def _gas_since(self, start_block: int) -> int:
        w3 = self.c.w3
        total = 0
        for number in range(start_block + 1, w3.eth.block_number + 1):
            total += int(w3.eth.get_block(number)["gasUsed"])  # every engine has it (not block receipts)
        return total

    # ------------------------------------------------------------------ stages

    def start(self) -> DemoResult:
        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        # A fresh chain every run: state from an earlier run belongs to a chain that is gone.
        shutil.rmtree(cfg.workdir / "net", ignore_errors=True)
        self.say(f"==> data: splitting scikit-learn's breast-cancer set for {cfg.providers} providers")
        split = split_breast_cancer(
            cfg.workdir / "data",
            providers=cfg.providers,
            fractions=uneven_fractions(cfg.providers),
            seed=cfg.seed,
        )
        for i, rows in enumerate(split.provider_rows):
            self.say(f"    provider-{i}: {rows} rows ({split.provider_positives[i]} benign)")
        self.say(f"    held out: {split.holdout_rows} rows")
        self.result = DemoResult(split=split)
        self.say(f"==> chain: {cfg.engine or chain_engine()}, simulated attestation service, contracts")
        self.consortium = start_consortium(cfg.workdir / "net", engine=cfg.engine)
        self.say(f"    manifest {self.c.manifest_path}")
        with self.stage("attestation and key synchronisation"):
            for i, path in enumerate(split.provider_paths):
                data = f'[data]\ncsv = "{path}"\nlabel_column = "{split.label_column}"\n'
                self.c.add_agent(f"provider-{i}", operator_index=i + 1, extra=data)
            port = free_port()
            self.gateway_url = f"http://127.0.0.1:{port}"
            accounts = self.c.w3.eth.accounts
            self.api_keys = {accounts[i]: new_api_key() for i in (CLIENT_INDEX, *SPARE_CLIENTS)}
            keys = "".join(f'"{client}" = "{hash_api_key(key)}"\n' for client, key in self.api_keys.items())
            # API-key clients are custody accounts: the gateway signs their requests.
            custody = self.c.root / "custody"
            ensure_private_dir(custody)
            for i in (CLIENT_INDEX, *SPARE_CLIENTS):
                write_new_private_file(custody / f"client-{i}.key", dev_key(i).encode())
            key_files = "".join(
                f'"{accounts[i]}" = "{custody / f"client-{i}.key"}"\n' for i in (CLIENT_INDEX, *SPARE_CLIENTS)
            )
            wait = f"request_timeout = {cfg.gateway_timeout}\n" if cfg.gateway_timeout else ""
            if cfg.gateway_rate_per_minute:
                rate = cfg.gateway_rate_per_minute
                wait += f"rate_per_minute = {rate}\nrate_burst = {max(256, rate // 10)}\n"
            gateway = (
                f'[gateway]\nhost = "127.0.0.1"\nport = {port}\n{wait}'
                f"[gateway.api_keys]\n{keys}[gateway.custody_keys]\n{key_files}"
            )
            self.c.add_agent("gateway", operator_index=cfg.providers + 1, role="gateway", extra=gateway)
            self.c.wait_synchronised(cfg.providers, timeout=180)
            wait_until(self._gateway_ready, 120, "the gateway to synchronise")
            self.say(f"    {cfg.providers} providers and the gateway attested; epoch synchronised")
        return self.result

    @property
    def client_address(self) -> ChecksumAddress:
        return self.c.w3.eth.accounts[CLIENT_INDEX]

    @property
    def api_key(self) -> str:
        return self.api_keys[self.client_address]

    def client(self, address: str | None = None, timeout: float = 120) -> GatewayClient:
        return GatewayClient(
            self.gateway_url, api_key=self.api_keys[address or self.client_address], timeout=timeout
        )

    def _gateway_ready(self) -> bool:
        self.c.check_alive()
        try:
            health = self.client(timeout=5).health()
        except EnclaveAgentError:  # not listening yet
            return False
        return health.get("status") == "ok"

    def _round(
        self,
        tag: str,
        length: int,
        output: str,
        *,
        min_contributors: int | None = None,
        frac_bits: int | None = None,
    ) -> int:
        cfg = self.config
        round_id = self.c.open_round(
            tag,
            length,
            scheme=cfg.scheme,
            encoding="seeded",
            threshold=cfg.threshold if cfg.scheme == "shamir" else None,
            frac_bits=cfg.frac_bits if frac_bits is None else frac_bits,
            posting_window=120,
            window=240,
            output=output,
            min_contributors=min_contributors,
        )
        state = self.c.wait_round(round_id, timeout=240)
        if state != COMPLETED:
            raise RuntimeError(f"round {round_id} ({tag}) did not complete (state {state})")
        return round_id

    def train(self) -> None:
        result = self._result
        features = len(result.split.features)
        with self.stage("joint scaling (column statistics, revealed inside the enclaves only)"):
            stats_round = self._round("column-stats", 2 * features + 1, "intermediate")
            result.rounds["scaling"] = stats_round
        train_rounds: list[int] = []
        for k in range(1, self.config.fedavg_rounds + 1):
            final = k == self.config.fedavg_rounds
            name = f"federated averaging {k}/{self.config.fedavg_rounds}" + (
                " (final model stays secret-shared)" if final else " (intermediate model inside the enclaves)"
            )
            with self.stage(name):
                previous = train_rounds[-1] if train_rounds else 0
                round_id = self._round(
                    f"train:{stats_round}:{previous}",
                    contribution_length(features),
                    "shared-model" if final else "intermediate",
                    frac_bits=self.config.model_frac_bits,
                )
                train_rounds.append(round_id)
        result.rounds["model"] = train_rounds[-1]
        with self.stage("statistics round (released only above the minimum contributors)"):
            result.rounds["statistic"] = self._round(
                "column-stats", 2 * features + 1, "statistic", min_contributors=self.config.providers
            )
        with self.stage("register the model and the statistic, grant the client access"):
            governance = self.c.session()
            columns = list(result.split.features)
            units = breast_cancer_units(columns)
            # The same functions as `enclave-agent model register`, `stat register`, `client grant|deposit`.
            result.model_id = register_model(
                governance,
                train_rounds[-1],
                "breast-cancer-fedavg",
                columns,
                fee=FEE_WEI,
                units=units,
                classes=BREAST_CANCER_CLASSES,
                description="Logistic regression on fine needle aspirate images: is the mass benign?",
            )
            result.stats_model_id = register_statistic(
                governance,
                result.rounds["statistic"],
                "breast-cancer-stats",
                columns,
                units=units,
                description="Column statistics of the providers' rows",
            )
            clients.set_access(governance, self.client_address, 10_000)
            clients.deposit(self.c.session(CLIENT_INDEX), FEE_WEI * 1000)
            wait_until(self._models_visible, 60, "the gateway to see the models and the model's input range")

    def _models_visible(self) -> bool:
        models = self.client().models()
        scored = [m for m in models if m["kind"] == "shared-model"]
        return len(models) >= 2 and all(m["input_range"] is not None for m in scored)

    @property
    def _result(self) -> DemoResult:
        assert self.result is not None
        return self.result

    def infer(self) -> None:
        result = self._result
        names, x, _ = read_table(result.split.holdout_path, result.split.label_column)
        client = self.client()
        with self.stage(f"inference: {len(x)} held-out rows over HTTP, {self.config.concurrency} at a time"):

            def one(row: np.ndarray) -> tuple[float, float]:
                started = time.monotonic()
                answer = client.infer(
                    result.model_id, {"features": dict(zip(names, map(float, row), strict=True))}
                )
                return float(answer["score"]), time.monotonic() - started

            with ThreadPoolExecutor(self.config.concurrency) as pool:
                answers = list(pool.map(one, x))
            result.secure_scores = np.array([s for s, _ in answers])
            result.latencies = [t for _, t in answers]
        with self.stage(f"the same {len(x)} rows as one batch (rows share on-chain requests)"):
            rows = [dict(zip(names, map(float, row), strict=True)) for row in x]
            batch = client.infer(result.model_id, {"rows": rows})["results"]
            requests = len({answer["request_id"] for answer in batch})
            result.batch_scores = np.array([float(answer["score"]) for answer in batch])
            self.say(f"    {len(batch)} rows in {requests} on-chain request{'s' if requests > 1 else ''}")
        with self.stage("a released statistic through the same path"):
            column = names[0]
            result.statistic = client.infer(result.stats_model_id, {"statistic": {"column": column}})
            self.say(
                f"    {column}: mean {result.statistic['mean']:.4f}, std {result.statistic['std']:.4f} "
                f"over {result.statistic['count']:.0f} rows"
            )

    def evaluate(self) -> DemoResult:
        """Plaintext references (computed here for comparison only) and the table."""
        result = self._result
        split = result.split
        tables = [read_table(p, split.label_column)[1:] for p in split.provider_paths]
        _, hx, hy = read_table(split.holdout_path, split.label_column)
        kwargs = {"epochs": TRAIN_EPOCHS, "lr": TRAIN_LR, "l2": TRAIN_L2, "l1_bound": TRAIN_L1_BOUND}
        w, b, mean, std = fedavg_plaintext(tables, self.config.fedavg_rounds, **kwargs)
        result.plain_scores = predict_proba(hx, w, b, mean, std)
        rows = [
            (
                "joint model (secure, via gateway)",
                accuracy(hy, result.secure_scores),
                auc(hy, result.secure_scores),
            )
        ]
        for i, table in enumerate(tables):
            wi, bi, mi, si = fedavg_plaintext([table], self.config.fedavg_rounds, **kwargs)
            p = predict_proba(hx, wi, bi, mi, si)
            rows.append((f"provider-{i} alone ({len(table[1])} rows)", accuracy(hy, p), auc(hy, p)))
        central = central_baseline(split.provider_paths, split.holdout_path, label_column=split.label_column)
        rows.append(("central plaintext baseline", central[0], central[1]))
        result.table = rows
        return result

    def report(self) -> None:
        result = self._result
        lines = ["", "| model | accuracy | AUC |", "|---|---:|---:|"]
        lines += [f"| {name} | {acc:.3f} | {area:.3f} |" for name, acc, area in result.table]
        lat = sorted(result.latencies)
        p50, p95 = (float(v) for v in np.percentile(lat, [50, 95]))
        lines += [
            "",
            f"latency per request over HTTP ({len(lat)} requests, {self.config.concurrency} concurrent): "
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            f"max |secure - plaintext joint| probability on held-out rows: {result.max_score_error:.2e} "
            f"(tolerance {SCORE_TOLERANCE:g})",
            *self._gas_per_row(len(lat)),
            "",
            "| stage | gas |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {gas:,} |" for name, gas in result.gas.items()]
        self.say("\n".join(lines))
        (self.config.workdir / "demo-report.md").write_text("\n".join(lines) + "\n")

    def serve(self, stop: threading.Event | None = None) -> None:
        """Keep the consortium up for a person with a wallet (or curl) until Ctrl-C."""
        key_file = self.config.workdir / "client-api.key"
        write_private_file(key_file, (self.api_key + "\n").encode())
        self.say(
            "\n".join(
                [
                    "==> serving until Ctrl-C",
                    f"    wallet page   {self.gateway_url}/",
                    f"    chain         {self.c.anvil.url} (chain id {self.c.w3.eth.chain_id})",
                    f"    client        {self.client_address}: Anvil's dev account #{CLIENT_INDEX} of the "
                    "public test mnemonic",
                    f"    wallet key    {dev_key(CLIENT_INDEX)} (import this private key into the wallet; "
                    "it is public, use it for this local chain only)",
                    f"    API key       in {key_file} (X-API-Key header)",
                ]
            )
        )
        stop = stop or threading.Event()
        try:
            while not stop.wait(1.0):
                self.c.check_alive()
        except KeyboardInterrupt:
            self.say("")  # Ctrl-C is how serving ends: not an interruption

    def _gas_per_row(self, rows: int) -> list[str]:
        single = next((g for name, g in self._result.gas.items() if name.startswith("inference:")), 0)
        batch = next((g for name, g in self._result.gas.items() if "as one batch" in name), 0)
        if not (rows and single and batch):
            return []
        return [
            f"gas per row: {single // rows:,} asked alone, {batch // rows:,} in a batch "
            f"({single / batch:.1f}x less)"
        ]

    def stop(self) -> None:
        if self.consortium is not None:
            self.say("==> stopping every process")
            self.consortium.stop()
            self.consortium = None


def run(config: DemoConfig) -> DemoResult:
    demo = Demo(config)
    try:
        demo.start()
        demo.train()
        demo.infer()
        result = demo.evaluate()
        demo.report()
        if config.serve:
            demo.serve()
        else:
            demo.say("(`enclave-devnet demo --serve` keeps all of it running for the wallet page)")
        return result
    finally:
        demo.stop()


def main(workdir: Path, rounds: int, serve: bool) -> int:
    """`enclave-devnet demo` (the CLI parses the arguments)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(DemoConfig(workdir=workdir.resolve(), fedavg_rounds=rounds, serve=serve))
    except KeyboardInterrupt:
        print("interrupted: every process the demo started has been stopped", file=sys.stderr)
        return 130
    print(json.dumps({"max_score_error": result.max_score_error}))
    return 0


if __name__ == "__main__":
    from enclave_devnet.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
