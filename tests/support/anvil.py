"""A real Anvil node for tests: ``with AnvilProcess() as node: ... node.url``.

The implementation is ``enclave_devnet.anvil``, shared with the integration
tests, the benchmark and ``enclave-devnet demo``; this module keeps the names the
chain and TEE tests import.
"""

from __future__ import annotations

from enclave_devnet.anvil import AnvilProcess, anvil_binary, free_port
from enclave_devnet.errors import AnvilError
from enclave_devnet.processes import REPO_ROOT

__all__ = ["REPO_ROOT", "AnvilError", "AnvilProcess", "anvil_binary", "free_port"]
