"""The state and services an enclave agent's parts share."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractFunction

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect
from enclave_agent.chain.identity import ChainChanged, ChainIdentity, IdentityGuard
from enclave_agent.chain.manifest import Manifest, load_manifest
from enclave_agent.chain.names import NameBook
from enclave_agent.chain.outage import Outage
from enclave_agent.chain.transport import block_timestamp
from enclave_agent.config import AgentConfig, load_account
from enclave_agent.crypto import field
from enclave_agent.errors import ConfigError, ContractRevert, StateLost
from enclave_agent.protocol import records, reveal
from enclave_agent.protocol.funding import Funding
from enclave_agent.protocol.membership import MembershipView
from enclave_agent.protocol.records import ModelRecord
from enclave_agent.protocol.rounds import RoundContext, RoundDoc, correction_key
from enclave_agent.protocol.stages import Stage, check_transition
from enclave_agent.store import Store, StoreError
from enclave_agent.tee._files import ensure_private_dir
from enclave_agent.tee.backend import TeeBackend
from enclave_agent.tee.simulated import SimulatedTee

log = logging.getLogger(__name__)


def tee_backend(config: AgentConfig) -> TeeBackend:
    """The backend ``[agent] tee`` names: simulated, or a hardware device
    (``enclave_agent.tee.hardware``), which registers through the consortium's
    evidence verifiers (``enclave_agent.protocol.evidence``)."""
    if config.tee == "simulated":
        return SimulatedTee(config.state_dir)
    from enclave_agent.tee.hardware import TeeDeviceError, hardware_backend

    try:
        return hardware_backend(config.tee)
    except (TeeDeviceError, OSError) as exc:
        raise ConfigError(f"{config.path}: agent.tee: {config.tee!r}: {exc}") from exc


@dataclass
class Wiring:
    """What an agent is wired to: its operator key, deployment, enclave, state store,
    node and transaction senders. ``wire`` builds them from a config for a real agent;
    a test passes its own (a shared node, a recording sender, a store of its choosing)."""

    operator: LocalAccount
    manifest: Manifest
    tee: TeeBackend
    store: Store
    w3: Web3
    rpc_url: str
    contracts: Contracts
    enclave_tx: TxSender
    operator_tx: TxSender
    state_lock: IO[str] | None = None  # held as long as the agent (see lock_state_dir)


def wire(config: AgentConfig, *, tee: TeeBackend | None = None) -> Wiring:
    """The parts a real agent runs on, from its config. Every input is checked before
    anything is created: a bad key file or manifest leaves no state behind."""
    operator = load_account(config.operator_key_file, "operator key")
    manifest = load_manifest(config.manifest)
    ensure_private_dir(config.state_dir)
    state_lock = lock_state_dir(config.state_dir)
    tee = tee or tee_backend(config)
    keys = tee.load_or_create_keys()
    store = Store(config.state_dir / "agent.sqlite3")
    rpc_url = config.rpc_url or manifest.rpc_url
    w3 = connect(rpc_url)
    decoder = ErrorDecoder.from_manifest(manifest)
    return Wiring(
        operator=operator,
        manifest=manifest,
        tee=tee,
        store=store,
        w3=w3,
        rpc_url=rpc_url,
        contracts=Contracts(w3, manifest),
        enclave_tx=TxSender(w3, keys.account, decoder, store=store),
        operator_tx=TxSender(w3, operator, decoder, store=store),
        state_lock=state_lock,
    )


class AgentContext:
    """What every part of an agent shares: its enclave (TEE, keys, sealed store), the
    chain (contracts, senders) and the persisted views of membership and rounds.
    It builds none of them (see ``Wiring``); it checks they belong together."""

    def __init__(self, config: AgentConfig, wiring: Wiring) -> None:
        self.config = config
        self.wiring = wiring
        self.operator: LocalAccount = wiring.operator
        self.manifest: Manifest = wiring.manifest
        self.tee = wiring.tee
        self.keys = self.tee.load_or_create_keys()
        self.address: str = self.keys.address
        self.measurement = self.tee.measurement()
        self.enclave_tx = wiring.enclave_tx
        self.operator_tx = wiring.operator_tx
        for sender, signer in ((self.enclave_tx, self.address), (self.operator_tx, self.operator.address)):
            if sender.account.address != signer:
                raise ConfigError(f"a sender signs as {sender.account.address}, not as {signer}")
        self.store = wiring.store
        self.store.check_integrity()
        fresh = self.store.is_empty()
        self.rpc_url = wiring.rpc_url
        self.w3 = wiring.w3
        self.outage = Outage(self.rpc_url)
        self.contracts = wiring.contracts
        self.names = NameBook(self.contracts)  # organisation names for log lines
        self.guard = self._chain_guard()  # the chain this manifest and this state belong to
        self.contracts.check_deployment()  # with code at every address
        if fresh and self.contracts.registry.functions.member(self.address).call()[1]:
            raise StateLost(
                f"enclave {self.address} is an active member on chain but its state store "
                f"{self.store.path} is new or emptied: its keys and shares of past rounds are gone. Restore "
                f"a backup (enclave-agent restore --config {config.path} --from FILE --yes), or have the "
                "enclave leave (registry revoke) and start over"
            )
        if self.store.get_json("chain/identity") is None:
            self.store.put_json("chain/identity", self.guard.recorded.to_json())
        self.chain_id = self.manifest.chain_id
        self.registry_address = to_checksum_address(self.contracts.registry.address)
        self.exchange_address = to_checksum_address(self.contracts.exchange.address)
        self.gateway_address = to_checksum_address(self.contracts.gateway.address)
        self.funding = Funding(self)  # keeps the enclave account able to pay for its transactions
        self.ctx = RoundContext(self.chain_id, self.exchange_address)
        self.stage = stored_stage(self.store)
        self._rounds: list[RoundDoc] | None = None  # the round documents of this step (see rounds)
        log.info(
            "agent %s role=%s enclave=%s tee=%s measurement=0x%s",
            config.name,
            config.role,
            self.address,
            "SIMULATED" if self.tee.simulated else self.tee.name,
            self.measurement.hex(),
        )

    def _chain_guard(self) -> IdentityGuard:
        """ChainChanged unless the node is on the chain of the manifest and of this
        agent's state (recorded at its first start, once the state is known to be sound);
        the guard re-checks it while running."""
        current = ChainIdentity.read(self.w3, self.manifest.deployed_block)
        manifest = self.manifest
        if manifest.genesis_hash and manifest.genesis_hash != current.genesis_hash:
            raise ChainChanged(
                f"the deployment manifest {self.config.manifest} belongs to another chain (genesis block "
                f"0x{manifest.genesis_hash[:16]}…, the node's is 0x{current.genesis_hash[:16]}…): "
                "use the manifest of the deployment on this chain"
            )
        remedy = (
            "If the chain was reset on purpose, start this agent over on the new deployment: "
            f"enclave-agent reset-state --config {self.config.path} --yes"
        )
        recorded = self.store.get_json("chain/identity")
        identity = current if recorded is None else ChainIdentity.from_json(recorded)
        guard = IdentityGuard(self.w3, identity, what="this agent's state", remedy=remedy)
        guard.check(force=True)
        return guard

    def set_stage(self, stage: Stage) -> None:
        """Move to ``stage`` and persist it; the same stage again changes nothing."""
        if stage != self.stage:
            check_transition(self.stage, stage)
            log.info("stage %s -> %s", self.stage, stage)
            self.stage = stage
            self.store.put_json("stage", stage.value)

    # ------------------------------------------------------------------ state helpers

    @property
    def view(self) -> MembershipView:
        return MembershipView.from_json(self.store.get_json("membership"))

    def save_view(self, view: MembershipView) -> None:
        self.store.put_json("membership", view.to_json())

    def round_doc(self, round_id: int) -> RoundDoc | None:
        key = f"round/{round_id}"
        data = self.store.get_json(key)
        return RoundDoc.from_json(data, key) if data else None

    def save_round(self, doc: RoundDoc) -> None:
        self.store.put_json(f"round/{doc.round_id}", doc.to_json())
        self._rounds = None

    def rounds(self) -> list[RoundDoc]:
        """Every round document, by id, for the agent's loop: loaded at most once per step
        until one is saved (most steps change nothing, yet every part and the status ask).
        Other threads (HTTP, metrics) use ``load_rounds``."""
        if self._rounds is None:
            self._rounds = self.load_rounds()
        return list(self._rounds)

    def load_rounds(self) -> list[RoundDoc]:
        """Every round document, by id, read from the store now."""
        keys = [k for k in self.store.keys("round/") if k.count("/") == 1]
        docs = (self.round_doc(int(k.split("/")[1])) for k in keys)
        return sorted((d for d in docs if d is not None), key=lambda d: d.round_id)

    def processed_block(self) -> int | None:
        """The last block whose events are all processed (None before the first)."""
        return self.store.get_checkpoint("main")

    def wake(self) -> None:
        """Ask the agent loop for a step now (see ``MemberAgent.wake``); a context that
        runs no loop has nothing to wake."""

    def forget_rounds(self) -> None:
        """Read the round documents from the store again at the next ``rounds()``."""
        self._rounds = None

    def seal_put(self, key: str, plaintext: bytes) -> None:
        self.store.put_blob(key, self.tee.seal(key, plaintext))

    def unseal_get(self, key: str) -> bytes | None:
        blob = self.store.get_blob(key)
        return None if blob is None else self.tee.unseal(key, blob)

    def epoch_keys(self, epoch: int) -> dict[str, bytes]:
        raw = self.unseal_get(f"keys/{epoch}")
        if raw is None:
            return {}
        return {addr: bytes.fromhex(k) for addr, k in json.loads(raw).items()}

    def chain_now(self) -> int:
        """Chain time: the time the next block will have ("pending": it includes any
        offset the node applies, e.g. evm_increaseTime), never before the latest block
        or, on an idle chain, the wall clock. Read raw, only the timestamps: every step of
        a round asks it (web3's formatting of the two blocks doubled its cost)."""
        times = (block_timestamp(self.w3, tag) for tag in ("latest", "pending"))
        return max(*times, int(time.time()))

    def send_or_done(self, fn: ContractFunction, label: str, *benign: str) -> bool:
        """Send an enclave transaction; a revert named in `benign` means it is done already."""
        try:
            self.enclave_tx.send(fn, label=label)
            return True
        except ContractRevert as exc:
            if exc.error_name in benign:
                log.debug("%s: %s (already done)", label, exc.error_name)
                return False
            raise

    def committed_share(self, round_id: int) -> np.ndarray | None:
        """My fused share as committed on chain (what an Intermediate reveal opens)."""
        raw = self.unseal_get(f"round/{round_id}/fused")
        return None if raw is None else elements(raw)

    def fused_share(self, round_id: int) -> np.ndarray | None:
        """My share of the round's aggregate: the committed one, plus a recovery's public
        correction if I am the first holder (None until that correction is known)."""
        share = self.committed_share(round_id)
        doc = self.round_doc(round_id)
        if share is None or doc is None or not doc.absent or doc.first_holder != self.address:
            return share
        raw = self.store.get_blob(correction_key(round_id))
        return None if raw is None else field.add(share, elements(raw), doc.modulus)

    def aggregate(self, round_id: int) -> np.ndarray | None:
        """The decoded aggregate of an Intermediate round, inside this enclave only."""
        doc = self.round_doc(round_id)
        raw = self.unseal_get(f"round/{round_id}/aggregate")
        if doc is None or raw is None:
            return None
        return reveal.aggregate_values(doc, elements(raw))

    def models(self) -> list[ModelRecord]:
        """Every model registered for inference, retired ones too, by id."""
        return records.load_models(self.store)


def stored_stage(store: Store) -> Stage:
    """The stage ``store`` holds (UNREGISTERED before the first change); a value this
    agent does not know (another version's state, a hand edit) stops it."""
    value = store.get_json("stage")
    if value is None:
        return Stage.UNREGISTERED
    try:
        return Stage(value)
    except ValueError:
        raise StoreError(
            f"{store.path}: stored stage {value!r} is none this agent knows ({', '.join(Stage)})"
        ) from None


def elements(blob: bytes) -> np.ndarray:
    """Little-endian uint64 words (how share vectors are stored) as an element array."""
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)


def lock_state_dir(state_dir: Path) -> IO[str]:
    """One agent process per state directory: two would race on the same enclave keys
    and post twice. The lock lives as long as the returned handle (the process)."""
    handle = (state_dir / "agent.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(
            f"{state_dir}: another agent process (pid {holder}) is using this state directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
