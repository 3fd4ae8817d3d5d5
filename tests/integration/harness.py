"""A real consortium for integration tests: Anvil, the simulated attestation
service and the agents, each a separate OS process, meeting only through the chain.

The test process plays governance and the coordinator (web3 against Anvil) and,
in simulated mode only, may open an agent's sealed state from outside to check
results: the simulated TEE's documented assumption is that operators cannot, which
real hardware enforces and this harness deliberately does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from web3 import Web3

from enclave_agent.chain.deploy import deploy_contracts
from enclave_agent.chain.manifest import Manifest, write_manifest
from enclave_agent.protocol.coordinator import round_arguments
from enclave_agent.store import Store
from enclave_agent.tee.measure import measure_package
from enclave_agent.tee.simulated import SimulatedTee
from tests.support.anvil import AnvilProcess, free_port

REPO = Path(__file__).resolve().parents[2]
MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()


def dev_key(index: int) -> str:
    """Private key of Anvil's default account `index`."""
    return Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class AgentProcess:
    name: str
    config: Path
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        handle = self.log.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enclave_agent.cli", "run", "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        handle.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def unseal(self, key: str) -> bytes | None:
        """Simulated mode only: open this agent's sealed state from outside."""
        blob = Store(self.state_dir / "agent.sqlite3").get_blob(key)
        return None if blob is None else SimulatedTee(self.state_dir).unseal(key, blob)

    def fused(self, round_id: int) -> np.ndarray | None:
        raw = self.unseal(f"round/{round_id}/fused")
        return None if raw is None else np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def enclave_address(self) -> str:
        return SimulatedTee(self.state_dir).load_or_create_keys().address


@dataclass
class Consortium:
    root: Path
    anvil: AnvilProcess
    w3: Web3
    manifest: Manifest
    manifest_path: Path
    service: subprocess.Popen[bytes]
    service_url: str
    service_key_file: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)

    @property
    def registry(self) -> Any:
        return self.w3.eth.contract(
            address=self.manifest.contracts["ConsortiumRegistry"], abi=self._abi("ConsortiumRegistry")
        )

    @property
    def exchange(self) -> Any:
        return self.w3.eth.contract(
            address=self.manifest.contracts["ShareExchange"], abi=self._abi("ShareExchange")
        )

    def _abi(self, name: str) -> Any:
        return self.manifest.abi(name)

    @property
    def governor(self) -> str:
        return self.w3.eth.accounts[0]

    # -- agents ------------------------------------------------------------------------

    def add_agent(
        self,
        name: str,
        operator_index: int,
        inputs: dict[str, list[float] | Path] | None = None,
        *,
        role: str = "provider",
        extra: str = "",
        start: bool = True,
    ) -> AgentProcess:
        state_dir = self.root / name
        state_dir.mkdir(parents=True, exist_ok=True)
        key_file = state_dir / "operator.key"
        key_file.write_text(dev_key(operator_index))
        lines = [
            "[agent]",
            f'name = "{name}"',
            f'role = "{role}"',
            f'state_dir = "{state_dir}"',
            "[chain]",
            f'manifest = "{self.manifest_path}"',
            "poll_interval = 0.2",
            "[operator]",
            f'key_file = "{key_file}"',
            "[attestation]",
            f'service_url = "{self.service_url}"',
        ]
        for tag, value in (inputs or {}).items():
            lines.append(f'[inputs."{tag}"]')
            if isinstance(value, Path):
                lines.append(f'file = "{value}"')
            else:
                lines.append("values = [" + ", ".join(repr(float(v)) for v in value) + "]")
        config = state_dir / "agent.toml"
        config.write_text("\n".join(lines) + "\n" + extra)
        agent = AgentProcess(name, config, state_dir, state_dir / "agent.log")
        self.agents[name] = agent
        if start:
            agent.start()
        return agent

    def wait_synchronised(self, providers: int, timeout: float = 90) -> None:
        def ready() -> bool:
            self._check_alive()
            members = self.registry.functions.activeMembers(1).call()
            return len(members) == providers and bool(self.registry.functions.isSynchronised().call())

        wait_until(ready, timeout, f"{providers} providers registered and synchronised")

    def _check_alive(self) -> None:
        for agent in self.agents.values():
            if (
                agent.proc is not None
                and agent.proc.poll() is not None
                and agent.proc.returncode not in (0, -9)
            ):
                raise AssertionError(
                    f"agent {agent.name} exited {agent.proc.returncode}:\n{agent.logs()[-4000:]}"
                )

    # -- rounds ------------------------------------------------------------------------

    def open_round(
        self,
        tag: str,
        length: int,
        *,
        scheme: str = "additive",
        encoding: str = "seeded",
        threshold: int | None = None,
        frac_bits: int = 16,
        posting_window: int = 60,
        window: int = 120,
        output: str = "shared-model",
        min_contributors: int = 0,
    ) -> int:
        participants = len(self.registry.functions.activeMembers(1).call())
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        args = round_arguments(
            tag=tag,
            length=length,
            scheme=scheme,
            encoding=encoding,
            threshold=threshold,
            participants=participants,
            frac_bits=frac_bits,
            now=max(now, int(time.time())),
            posting_window=posting_window,
            window=window,
            output=output,
            min_contributors=min_contributors,
        )
        tx = self.exchange.functions.openRound(*args).transact({"from": self.governor})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        event = self.exchange.events.RoundOpened().process_receipt(receipt)[0]
        return int(event["args"]["roundId"])

    def round_state(self, round_id: int) -> int:
        return int(self.exchange.functions.state(round_id).call())

    def wait_round(self, round_id: int, timeout: float = 120, states: Iterable[int] = (3, 4)) -> int:
        wanted = set(states)

        def done() -> int | None:
            self._check_alive()
            state = self.round_state(round_id)
            return state if state in wanted else None

        return int(wait_until(done, timeout, f"round {round_id} to reach one of {sorted(wanted)}"))

    def round_events(self, round_id: int, name: str) -> list[Any]:
        event = getattr(self.exchange.events, name)()
        logs = event.get_logs(from_block=0, argument_filters={"roundId": round_id})
        return list(logs)

    def advance_time(self, seconds: int) -> None:
        self.anvil.rpc("evm_increaseTime", seconds)
        self.anvil.mine()

    # -- inspection ----------------------------------------------------------------------

    def chain_bytes(self) -> list[bytes]:
        """Every transaction's calldata and every log's topics and data, block by block."""
        out: list[bytes] = []
        latest = self.w3.eth.block_number
        for number in range(latest + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                out.append(bytes(tx["input"]))
                receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                for entry in receipt["logs"]:
                    out.append(b"".join(bytes(t) for t in entry["topics"]) + bytes(entry["data"]))
        return out

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        if self.service.poll() is None:
            self.service.terminate()
            self.service.wait(10)
        self.anvil.stop()


def start_consortium(root: Path, anvil_args: tuple[str, ...] = ()) -> Consortium:
    anvil = AnvilProcess(["--gas-limit", "100000000", *anvil_args])
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        key_file = root / "attestation-service.key"
        port = free_port()
        service_url = f"http://127.0.0.1:{port}"
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enclave_agent.tee.attestation_service",
                "--key",
                str(key_file),
                "--port",
                str(port),
            ],
            stdout=(root / "attestation-service.log").open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        signer = wait_until(lambda: _signer(service_url), 20, "attestation service")
        measurement = measure_package()
        manifest = deploy_contracts(
            w3,
            w3.eth.accounts[0],
            abi_dir=REPO / "build" / "contracts",
            measurements={1: measurement, 2: measurement},
            signers=[signer],
            rpc_url=anvil.url,
        )
        manifest_path = root / "manifest.json"
        write_manifest(manifest, manifest_path)
    except BaseException:
        anvil.stop()
        raise
    return Consortium(root, anvil, w3, manifest, manifest_path, service, service_url, key_file)


def _signer(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/v1/signer", timeout=1) as response:
            data = json.loads(response.read())
    except OSError:
        return None
    return str(data.get("signer") or data.get("address"))
