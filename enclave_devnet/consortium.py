"""A local consortium: anvil, the simulated attestation service, the three contracts
and provider agents, each agent a separate OS process meeting the others only
through the chain. The caller plays governance and coordinator with Anvil's
unlocked account 0; operators are accounts 1, 2, ... of the same mnemonic.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect, deploy_contracts
from enclave_agent.chain.manifest import Manifest, write_manifest
from enclave_agent.crypto.field import RING64
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.crypto.reed_solomon import robust_reconstruct
from enclave_agent.onchain import OrgStatus, Role, RoundState
from enclave_agent.operator.session import Session
from enclave_agent.protocol.coordinator import open_round_call, round_id_of
from enclave_agent.protocol.round_spec import RoundRequest
from enclave_agent.protocol.rounds import correction_key
from enclave_agent.tee._files import ensure_private_dir, write_private_file
from enclave_agent.tee.measure import measure_package
from enclave_devnet.agents import AgentProcess, InputValue, dev_key, write_agent_config
from enclave_devnet.anvil import TX_GAS_CAP_ARGS, AnvilProcess, chain_engine
from enclave_devnet.chainscan import SentTransaction, chain_bytes, round_transactions
from enclave_devnet.errors import AgentExitedError, LocalnetError
from enclave_devnet.processes import REPO_ROOT, ChildProcess, exit_on_termination, python_child

log = logging.getLogger(__name__)

T = TypeVar("T")

PROVIDER_ROLE, GATEWAY_ROLE = Role.PROVIDER, Role.GATEWAY
BOTH_ROLES = (1 << PROVIDER_ROLE) | (1 << GATEWAY_ROLE)  # Organisation.roles bitmap
ADMITTED = OrgStatus.ADMITTED
POSTING, FUSING, COMPLETED, ABORTED = (
    RoundState.POSTING,
    RoundState.FUSING,
    RoundState.COMPLETED,
    RoundState.ABORTED,
)
# A block gas limit with room for several agents' share chunks in one automined
# block; each transaction stays under the 2**24 cap (TX_GAS_CAP_ARGS).
DEFAULT_ANVIL_ARGS = ("--gas-limit", "100000000", *TX_GAS_CAP_ARGS)
DEFAULT_ACCOUNTS = 20  # funded dev accounts: the governor and up to 19 operators
_SERVICE_LINE = re.compile(r"signer=(0x[0-9a-fA-F]{40}) listening on (http://\S+)")


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.25) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Consortium:
    """A running local consortium; ``with start_consortium(root) as c: ...`` stops
    every process on leaving the block (also on SIGINT, SIGTERM and SIGHUP)."""

    root: Path
    anvil: AnvilProcess
    w3: Web3
    manifest: Manifest
    manifest_path: Path
    service: ChildProcess
    service_url: str
    service_key_file: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    _exit_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False, repr=False)

    def __enter__(self) -> Consortium:
        self._exit_stack.enter_context(exit_on_termination())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self._exit_stack.close()

    @cached_property
    def contracts(self) -> Contracts:
        return Contracts(self.w3, self.manifest)

    @property
    def registry(self) -> Contract:
        return self.contracts.registry

    @property
    def exchange(self) -> Contract:
        return self.contracts.exchange

    @property
    def gateway(self) -> Contract:
        return self.contracts.gateway

    @property
    def governor(self) -> str:
        return str(self.w3.eth.accounts[0])

    def session(self, account_index: int = 0) -> Session:
        """An operator session (``enclave_agent.operator``) acting as dev account
        ``account_index`` (0: governance and coordinator), signing as the CLI does."""
        sender = TxSender(
            self.w3, Account.from_key(dev_key(account_index)), ErrorDecoder.from_manifest(self.manifest)
        )
        return Session(self.contracts, self.manifest.deployed_block, sender)

    # -- agents ------------------------------------------------------------------------

    def add_agent(
        self,
        name: str,
        operator_index: int,
        inputs: Mapping[str, InputValue] | None = None,
        *,
        role: str = "provider",
        extra: str = "",
        start: bool = True,
        poll_interval: float = 0.2,
        admit: bool = True,
        attestation_url: str | None = None,
        rpc_url: str | None = None,
        confirmations: int = 0,
    ) -> AgentProcess:
        """Write the config of agent ``name`` (state in ``root/name``, operator = dev
        account ``operator_index``) and start it unless ``start`` is False. Unless
        ``admit`` is False, governance first admits the operator as an organisation
        (one enclave per role) if it is not one yet. The agent asks the consortium's
        attestation service unless ``attestation_url`` names another, and the chain
        through ``rpc_url`` if given (e.g. a proxy), else the manifest's; it processes events
        ``confirmations`` blocks behind the head."""
        if name in self.agents:
            raise LocalnetError(f"an agent named {name!r} exists already")
        if admit:
            self.admit_organisation(self.w3.eth.accounts[operator_index], name)
        state_dir = self.root / name
        ensure_private_dir(state_dir)
        key_file = state_dir / "operator.key"
        write_private_file(key_file, dev_key(operator_index).encode())
        config = write_agent_config(
            state_dir / "agent.toml",
            name=name,
            role=role,
            state_dir=state_dir,
            manifest=self.manifest_path,
            operator_key_file=key_file,
            attestation_url=attestation_url or self.service_url,
            inputs=inputs,
            poll_interval=poll_interval,
            extra=extra,
            rpc_url=rpc_url,
            confirmations=confirmations,
        )
        command = "gateway" if role == "gateway" else "run"
        agent = AgentProcess(name, config, state_dir, state_dir / "agent.log", command)
        self.agents[name] = agent
        if start:
            agent.start()
        return agent

    def admit_organisation(
        self, operator: str, name: str, *, roles: int = BOTH_ROLES, max_enclaves_per_role: int = 1
    ) -> bool:
        """Governance admits ``operator`` (no-op if it is an organisation already)."""
        if int(self.registry.functions.organisation(operator).call()[0]) != 0:
            return False
        self.w3.eth.wait_for_transaction_receipt(
            self.registry.functions.admitOrganisation(operator, name, roles, max_enclaves_per_role).transact(
                {"from": self.governor}
            )
        )
        return True

    def check_alive(self) -> None:
        """AgentExitedError (with the log's tail) if an agent exited other than by
        ``stop`` (0) or ``kill9`` (-9)."""
        for agent in self.agents.values():
            code = agent.returncode
            if code is not None and code not in (0, -9):
                raise AgentExitedError(f"agent {agent.name} exited {code}:\n{agent.logs()[-4000:]}")

    def wait_synchronised(self, providers: int, timeout: float = 90) -> None:
        """Wait until ``providers`` providers are active and their epoch is synchronised."""

        def ready() -> bool:
            self.check_alive()
            members = self.registry.functions.activeMembers(PROVIDER_ROLE).call()
            return len(members) == providers and bool(self.registry.functions.isSynchronised().call())

        wait_until(ready, timeout, f"{providers} providers registered and synchronised")

    # -- rounds ------------------------------------------------------------------------

    def open_round(self, tag: str, length: int, **changes: Any) -> int:
        """Open a round over the active providers (as coordinator); returns its id.
        ``changes``: fields of ``RoundRequest`` to change from its defaults, except
        the windows: a local consortium runs shorter ones (60 s posting, 120 s in all)
        unless given, so that tests of a dropout reach the deadline sooner."""
        request = RoundRequest(tag, length, **({"posting_window": 60, "window": 120} | changes))
        call = open_round_call(self.w3, self.contracts, request)
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": self.governor}))
        round_id = round_id_of(self.contracts, receipt)
        log.info("opened round %d (%s/%s, d=%d)", round_id, request.scheme, request.encoding, length)
        return round_id

    def round_state(self, round_id: int) -> int:
        return int(self.exchange.functions.state(round_id).call())

    def wait_round(
        self,
        round_id: int,
        timeout: float = 120,
        states: Iterable[int] = (COMPLETED, ABORTED),
        *,
        interval: float = 0.25,
    ) -> int:
        """Wait until the round reaches one of ``states``; returns that state."""
        wanted = set(states)

        def done() -> int | None:
            self.check_alive()
            state = self.round_state(round_id)
            return state if state in wanted else None

        return wait_until(
            done, timeout, f"round {round_id} to reach one of {sorted(wanted)}", interval=interval
        )

    def round_events(self, round_id: int, name: str) -> list[Any]:
        """Decoded ``name`` events of ShareExchange for ``round_id``."""
        event = getattr(self.exchange.events, name)()
        return list(event.get_logs(from_block=0, argument_filters={"roundId": round_id}))

    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward (deadlines) and mine a block."""
        self.anvil.increase_time(seconds)

    # -- inspection ----------------------------------------------------------------------

    def fused_aggregate(self, round_id: int, frac_bits: int | None = None) -> np.ndarray:
        """Simulated mode only: the round's aggregate, recombined from the holders'
        fused shares unsealed from outside (see ``AgentProcess.unseal``); decoded
        with the round's fraction bits unless ``frac_bits`` is given. Shamir shares
        are checked like the agents check them (every share, Reed-Solomon): shares
        off one polynomial raise rather than give a wrong aggregate."""
        info = self.exchange.functions.roundInfo(round_id).call()
        spec, holders, threshold = info[0], int(info[7]), int(info[2])
        modulus, bits = int(spec[4]), int(spec[1]) if frac_bits is None else frac_bits
        participants = self.exchange.functions.participants(round_id).call()
        by_address = {agent.enclave_address(): agent for agent in self.agents.values()}
        fused: dict[int, np.ndarray] = {}
        for index, address in enumerate(participants):
            if holders >> index & 1 and address in by_address:
                share = by_address[address].fused(round_id)
                if share is not None:
                    fused[index + 1] = share
        if not fused:
            raise LocalnetError(f"round {round_id}: no agent here holds a fused share")
        if modulus == RING64:
            total = np.zeros_like(next(iter(fused.values())))
            for share in fused.values():
                total = total + share  # uint64 wrap-around is the ring
            if self.round_events(round_id, "RecoveryStarted"):  # plus the recovery's public correction
                holding = [by_address[participants[x - 1]] for x in fused]
                raw = wait_until(
                    lambda: next((r for a in holding if (r := a.blob(correction_key(round_id)))), None),
                    30,
                    f"round {round_id}: the recovery correction",
                )
                total = total + np.frombuffer(raw, dtype="<u8").astype(np.uint64)
            return decode(total, bits, modulus)
        return decode(robust_reconstruct(fused, threshold, modulus).secret, bits, modulus)

    def chain_bytes(self) -> list[bytes]:
        """Every transaction's calldata and every log's topics and data, block by block."""
        return chain_bytes(self.w3)

    def round_transactions(self, round_id: int) -> list[SentTransaction]:
        """The transactions participants sent for ``round_id`` (from its opening block on)."""
        opened = self.round_events(round_id, "RoundOpened")
        if not opened:
            raise LocalnetError(f"round {round_id} was never opened")
        return round_transactions(self.w3, self.exchange, round_id, int(opened[0]["blockNumber"]))

    # -- shutdown ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the agents (all at once), then the attestation service, then anvil.
        Idempotent; every process is stopped even if stopping another one fails."""
        try:
            for agent in self.agents.values():
                agent.terminate()
            for agent in self.agents.values():
                agent.stop()
        finally:
            try:
                self.service.stop(timeout=10)
            finally:
                self.anvil.stop()


def start_consortium(
    root: Path,
    anvil_args: Iterable[str] = (),
    *,
    accounts: int = DEFAULT_ACCOUNTS,
    base_anvil_args: Iterable[str] = DEFAULT_ANVIL_ARGS,
    engine: str | None = None,
) -> Consortium:
    """Start anvil and the attestation service, deploy the contracts (this code's
    measurement approved for providers and gateways, the service's signer trusted)
    and write ``root/manifest.json``. Agents are added with ``add_agent``.

    Use it as a context manager, or call ``stop()``; processes left running are also
    stopped at interpreter exit."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    engine = engine or chain_engine()
    if engine != "anvil" and anvil_args:
        raise LocalnetError(f"anvil arguments given for a {engine} node: {list(anvil_args)}")
    anvil = AnvilProcess(
        [*base_anvil_args, *anvil_args] if engine == "anvil" else [],
        log_path=root / f"{engine}.log",
        engine=engine,
        accounts=accounts,
    )
    anvil.start()
    service: ChildProcess | None = None
    try:
        w3 = connect(anvil.url, timeout=60)
        key_file = root / "attestation-service.key"
        service = python_child(
            "attestation service",
            "enclave_devnet.attestation_service",
            "--key",
            key_file,
            "--port",
            "0",
            log=root / "attestation-service.log",
        )
        service.start()
        signer, service_url = _service_endpoint(service)
        measurement = measure_package()
        manifest = deploy_contracts(
            w3,
            w3.eth.accounts[0],
            abi_dir=REPO_ROOT / "build" / "contracts",
            measurements={1: measurement, 2: measurement},
            signers=[signer],
            rpc_url=anvil.url,
        )
        manifest_path = root / "manifest.json"
        write_manifest(manifest, manifest_path)
    except BaseException:
        if service is not None:
            service.stop(timeout=5)
        anvil.stop()
        raise
    log.info("local consortium up: %s, manifest %s", anvil.url, manifest_path)
    return Consortium(root, anvil, w3, manifest, manifest_path, service, service_url, key_file)


def _service_endpoint(service: ChildProcess, timeout: float = 20) -> tuple[str, str]:
    """The signer address and URL the attestation service prints once it listens."""

    def announced() -> tuple[str, str] | None:
        match = _SERVICE_LINE.search(service.output())
        if match:
            return match.group(1), match.group(2)
        if not service.running:
            raise LocalnetError(
                f"attestation service exited {service.returncode}: {service.output()[-2000:]}"
            )
        return None

    return wait_until(announced, timeout, "the attestation service", interval=0.05)
