"""Fixtures of the contract suite.

Every module starts from a fresh chain (Brownie's module isolation) and every test from
the snapshot taken after the module's fixtures ran (function isolation). Two bases:

- `bare`: contracts deployed and wired, measurement approved for both roles, the
  attestation signer trusted, no members.
- `world`: `bare` plus three provider enclaves and one gateway enclave registered
  from signed quotes, and the epoch synchronised with digests computed off-chain.

Both are independent deployments, so a module may use either or both in any order.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import brownie.network.account
import pytest
from brownie import accounts, web3
from helpers import GATEWAY, PROVIDER, Consortium
from web3.exceptions import TransactionNotFound


class _NoUndoRpc:
    """Brownie takes an anvil snapshot in a background thread after every transaction, for
    `chain.undo()`. Racing the next transaction (anvil copies its whole state per snapshot),
    it makes receipts late, and Brownie then reports a mined transaction as "dropped without
    known replacement". The tests never undo, so those snapshots are switched off; module
    and function isolation use their own snapshots and are unaffected."""

    def __init__(self, rpc):
        self._rpc = rpc

    def is_active(self):
        return False

    def __getattr__(self, name):
        return getattr(self._rpc, name)


brownie.network.account.rpc = _NoUndoRpc(brownie.network.account.rpc)


ANVIL_STATES = Path.home() / ".foundry" / "anvil" / "tmp"


def anvil_state_dirs(started: float) -> list[Path]:
    """The state directories of the Anvil started at ``started`` (a process create
    time): Anvil names them by its start minute."""
    if not ANVIL_STATES.is_dir():
        return []
    minutes = {time.strftime("%d-%m-%Y-%H-%M", time.localtime(started + d)) for d in (-1, 0, 1)}
    return [
        d
        for d in ANVIL_STATES.glob("anvil-state-*")
        if d.name[len("anvil-state-") :][:16] in minutes and d.stat().st_ctime >= started - 1
    ]


@pytest.fixture(scope="session", autouse=True)
def anvil_states_removed():
    """Brownie starts Anvil without a history limit (its settings have no such flag), and
    Anvil never removes the past states it writes under ~/.foundry/anvil/tmp: about
    1.2 GB per run of this suite. Remove this run's when the suite ends."""
    process = getattr(brownie.network.account.rpc, "process", None)  # the Rpc singleton
    started = process.create_time() if process is not None else None
    yield
    for directory in anvil_state_dirs(started) if started is not None else []:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def patient_receipts():
    """Anvil mines in the background: for a moment after a block, the sender's nonce has
    moved on while the receipt is not yet served. Brownie checks the nonce first and then
    reports the transaction as dropped. Asking for a missing receipt again a few times
    closes that window (a truly pending transaction only costs a short wait)."""
    eth = web3.eth
    original = eth.get_transaction_receipt

    def get_transaction_receipt(txid):
        for _ in range(40):
            try:
                return original(txid)
            except TransactionNotFound:
                time.sleep(0.025)
        return original(txid)

    eth.get_transaction_receipt = get_transaction_receipt
    yield
    eth.get_transaction_receipt = original


def pytest_configure(config):
    # Brownie's own snapshot/revert calls trip its "rpc.* should not be called directly" warning.
    config.addinivalue_line("filterwarnings", "ignore:rpc\\..*:FutureWarning")


@pytest.fixture(autouse=True)
def isolate(fn_isolation):
    """Each test starts from the module's snapshot."""


@pytest.fixture(scope="module")
def governor():
    return accounts[0]


@pytest.fixture(scope="module")
def coordinator():
    return accounts[1]


@pytest.fixture(scope="module")
def client():
    return accounts[2]


@pytest.fixture(scope="module")
def outsider():
    return accounts[3]


@pytest.fixture(scope="module")
def operators():
    """The operators of the first enclaves: one organisation each."""
    return [accounts[4], accounts[5], accounts[6], accounts[7]]


def build_world(
    governor, coordinator, operators, n_providers: int = 3, with_gateway: bool = True
) -> Consortium:
    c = Consortium.deploy(governor, coordinator)
    for i in range(n_providers):
        c.register(PROVIDER, operator=operators[i % len(operators)])
    if with_gateway:
        c.register(GATEWAY, operator=operators[-1])
    c.sync()
    return c


@pytest.fixture(scope="module")
def _bare(governor, coordinator):
    return Consortium.deploy(governor, coordinator)


@pytest.fixture(scope="module")
def _world(governor, coordinator, operators):
    return build_world(governor, coordinator, operators)


@pytest.fixture(scope="module")
def _world4(governor, coordinator, operators):
    return build_world(governor, coordinator, operators, n_providers=4)


@pytest.fixture
def world4(_world4):
    """Four providers and a gateway: Shamir rounds that survive an exclusion (floor 3)."""
    return _world4.clone()


@pytest.fixture
def bare(_bare):
    """Deployed, measurement approved, signer trusted, no members."""
    return _bare.clone()


@pytest.fixture
def world(_world):
    """Three providers and a gateway registered, epoch synchronised."""
    return _world.clone()
