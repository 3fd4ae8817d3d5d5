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


def anvil_state_dirs() -> set[Path]:
    return set(ANVIL_STATES.glob("anvil-state-*")) if ANVIL_STATES.is_dir() else set()


def made_since(started: float, before: set[Path]) -> list[Path]:
    """The state directories made since ``started`` that were not there before. Anvil
    makes its directory when it first writes a state to disk, which under load can be
    minutes after it started, and names it by that minute."""
    floor = time.strftime("%Y%m%d%H%M", time.localtime(started))
    made = []
    for directory in anvil_state_dirs() - before:
        stamp = directory.name[len("anvil-state-") :][:16]  # dd-mm-YYYY-HH-MM
        day, month, year, hour, minute = stamp.split("-") if stamp.count("-") == 4 else ("",) * 5
        if f"{year}{month}{day}{hour}{minute}" >= floor:
            made.append(directory)
    return made


@pytest.fixture(scope="session", autouse=True)
def anvil_states_removed():
    """Brownie starts Anvil without a history limit (its settings have no such flag), and
    Anvil never removes the past states it writes under ~/.foundry/anvil/tmp: about
    1.2 GB per run of this suite. Remove this run's when the suite ends (the local
    consortium's nodes write none: they run with --prune-history)."""
    before, started = anvil_state_dirs(), time.time()
    yield
    for directory in made_since(started - 60, before):
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


@pytest.fixture(scope="module")
def _world5(governor, coordinator, operators):
    return build_world(governor, coordinator, operators, n_providers=5)


@pytest.fixture
def world5(_world5):
    """Five providers and a gateway (a ring of five for sparse masks; two exclusions)."""
    return _world5.clone()


@pytest.fixture
def bare(_bare):
    """Deployed, measurement approved, signer trusted, no members."""
    return _bare.clone()


@pytest.fixture
def world(_world):
    """Three providers and a gateway registered, epoch synchronised."""
    return _world.clone()
