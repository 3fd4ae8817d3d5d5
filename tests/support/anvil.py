"""A real Anvil node for tests: ``with AnvilProcess() as node: ... node.url``.

The implementation is ``enclave_agent.localnet.anvil``, shared with the integration
tests, the benchmark and ``enclave-agent demo``; this module keeps the names the
chain and TEE tests import.
"""

from __future__ import annotations

from enclave_agent.localnet.anvil import AnvilProcess, anvil_binary, free_port
from enclave_agent.localnet.errors import AnvilError
from enclave_agent.localnet.processes import REPO_ROOT

__all__ = ["REPO_ROOT", "AnvilError", "AnvilProcess", "anvil_binary", "free_port"]
