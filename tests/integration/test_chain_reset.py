"""The chain behind the agents' endpoint is reset and the consortium redeployed at the
very same addresses (the case that used to pass unnoticed: agents reported
"synchronised, epoch N" on a chain with no members). Agents reach the chain through a
proxy whose upstream the test switches to a fresh Anvil. They stop with exit code 6
naming what changed; one without its state's chain refuses to start; after
`enclave-agent reset-state --yes` an agent registers on the new deployment."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave_agent.chain import connect, deploy_contracts
from enclave_agent.chain.manifest import load_manifest, write_manifest
from enclave_agent.tee.measure import measure_package
from enclave_devnet import REPO_ROOT, AnvilProcess, Consortium, wait_until
from tests.agent.chain.faultproxy import FaultProxy
from tests.integration.conftest import make_consortium
from tests.support.http import http_json

N = 2
EXIT_CHAIN_CHANGED = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, FaultProxy]]:
    for c in make_consortium(tmp_path_factory, "reset"):
        with FaultProxy(c.anvil.url) as proxy:
            for i in range(N):
                c.add_agent(
                    f"provider-{i}", operator_index=i + 1, inputs={"v": [1.0, 2.0]}, rpc_url=proxy.url
                )
            c.wait_synchronised(N)
            yield c, proxy


def fresh_chain(c: Consortium, proxy: FaultProxy, *, redeploy: bool, name: str) -> tuple[AnvilProcess, Path]:
    """A new Anvil (another genesis), the consortium redeployed on it at the same
    addresses if ``redeploy``; the proxy now forwards there. Returns it and its manifest."""
    anvil = AnvilProcess(["--timestamp", "1700000000"], accounts=20, log_path=c.root / f"{name}.log")
    anvil.start()
    manifest_path = c.root / f"{name}-manifest.json"
    if redeploy:
        w3 = connect(anvil.url)
        signer = http_json(c.service_url + "/v1/signer")[1]["signer"]
        manifest = deploy_contracts(
            w3,
            w3.eth.accounts[0],
            abi_dir=REPO_ROOT / "build" / "contracts",
            measurements={1: measure_package(), 2: measure_package()},
            signers=[signer],
            rpc_url=proxy.url,
        )
        assert manifest.contracts == c.manifest.contracts  # the very same addresses
        write_manifest(manifest, manifest_path)
    proxy.upstream = anvil.url
    return anvil, manifest_path


def test_a_reset_and_redeployed_chain_stops_every_agent_with_exit_6(
    setup: tuple[Consortium, FaultProxy],
) -> None:
    c, proxy = setup
    anvil, manifest_path = fresh_chain(c, proxy, redeploy=True, name="chain-b")
    switched = time.monotonic()
    try:
        for agent in c.agents.values():
            wait_until(lambda a=agent: not a.running, 30, f"{agent.name} to stop")
        print(f"every agent stopped {time.monotonic() - switched:.1f} s after the chain was replaced")
        for agent in c.agents.values():
            assert agent.returncode == EXIT_CHAIN_CHANGED, agent.logs()[-2000:]
            logs = agent.logs()
            assert "the node is not on the chain this agent's state belongs to" in logs
            assert "genesis block" in logs and "reset-state --config" in logs
        # An agent that was not running refuses to start on the other chain.
        stopped = c.agents["provider-0"]
        again = subprocess.run(
            [sys.executable, "-m", "enclave_agent.cli", "run", "--config", str(stopped.config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
        )
        assert again.returncode == EXIT_CHAIN_CHANGED, again.stderr[-2000:]
        assert "manifest" in again.stderr and "belongs to another chain" in again.stderr

        # Recovery: the new deployment's manifest, its organisations, reset-state, start again.
        w3 = connect(anvil.url)
        registry = w3.eth.contract(
            address=c.registry.address, abi=load_manifest(manifest_path).abi("ConsortiumRegistry")
        )
        operator = w3.eth.accounts[1]
        receipt = w3.eth.wait_for_transaction_receipt(
            registry.functions.admitOrganisation(operator, "provider-0", 2, 1).transact(
                {"from": w3.eth.accounts[0]}
            )
        )
        assert receipt["status"] == 1
        manifest_path.replace(c.manifest_path)
        cli = [sys.executable, "-m", "enclave_agent.cli", "reset-state", "--config", str(stopped.config)]
        dry = subprocess.run(cli, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert dry.returncode == 2 and "--yes" in dry.stderr
        assert (stopped.state_dir / "agent.sqlite3").exists()
        done = subprocess.run([*cli, "--yes"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        assert not (stopped.state_dir / "agent.sqlite3").exists()
        assert list(stopped.state_dir.glob("agent.sqlite3.reset-*"))  # set aside, not deleted
        stopped.start()
        wait_until(
            lambda: registry.functions.isActiveMember(stopped.enclave_address(), 1).call(),
            60,
            "re-registered",
        )
    finally:
        for agent in c.agents.values():
            agent.stop()
        proxy.upstream = c.anvil.url
        anvil.stop()
