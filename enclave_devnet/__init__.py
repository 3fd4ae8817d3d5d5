"""A local consortium on one machine, for the integration tests, the benchmark and
``enclave-devnet demo``: Anvil, the simulated attestation service and provider
agents, each a separate OS process meeting the others only through the chain.

    from enclave_devnet import start_consortium

    with start_consortium(Path("var/local")) as c:   # anvil, service, contracts, manifest
        for i in range(3):
            c.add_agent(f"provider-{i}", operator_index=i + 1, inputs={"v": [1.0, 2.0]})
        c.wait_synchronised(3)
        round_id = c.open_round("v", 2, scheme="additive", encoding="seeded")
        assert c.wait_round(round_id) == COMPLETED

Every child runs in its own process group and is stopped by ``Consortium.stop()``,
on leaving the ``with`` block (SIGINT, SIGTERM and SIGHUP included), at interpreter
exit and, on Linux, by the kernel if the parent dies (see ``processes``).

Simulated mode only: ``AgentProcess.unseal`` (and ``fused``) open an agent's
sealed state from outside to check results. The simulated TEE's documented
assumption is that operators cannot do this; real hardware enforces it, this
tooling deliberately does not.
"""

from enclave_devnet.agents import AgentProcess, dev_key, write_agent_config
from enclave_devnet.anvil import (
    DEV_MNEMONIC,
    ENGINE_ENV,
    ENGINES,
    TX_GAS_CAP_ARGS,
    AnvilProcess,
    anvil_binary,
    chain_engine,
    free_port,
)
from enclave_devnet.chainscan import (
    SentTransaction,
    chain_bytes,
    distinctive,
    found_on_chain,
    round_transactions,
)
from enclave_devnet.consortium import (
    ABORTED,
    COMPLETED,
    DEFAULT_ANVIL_ARGS,
    FUSING,
    POSTING,
    Consortium,
    start_consortium,
    wait_until,
)
from enclave_devnet.errors import AgentExitedError, AnvilError, LocalnetError
from enclave_devnet.processes import (
    REPO_ROOT,
    ChildProcess,
    exit_on_termination,
    running_children,
    stop_all,
)

__all__ = [
    "ABORTED",
    "COMPLETED",
    "DEFAULT_ANVIL_ARGS",
    "DEV_MNEMONIC",
    "ENGINES",
    "ENGINE_ENV",
    "FUSING",
    "POSTING",
    "REPO_ROOT",
    "TX_GAS_CAP_ARGS",
    "AgentExitedError",
    "AgentProcess",
    "AnvilError",
    "AnvilProcess",
    "ChildProcess",
    "Consortium",
    "LocalnetError",
    "SentTransaction",
    "anvil_binary",
    "chain_bytes",
    "chain_engine",
    "dev_key",
    "distinctive",
    "exit_on_termination",
    "found_on_chain",
    "free_port",
    "round_transactions",
    "running_children",
    "start_consortium",
    "stop_all",
    "wait_until",
    "write_agent_config",
]
