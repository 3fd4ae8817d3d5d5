"""Errors of the local consortium (development and test tooling, not the agent).

EnclaveAgentError
└── LocalnetError (RuntimeError)       a local process did not start or died
    ├── AnvilError                     anvil did not start, or a raw RPC call failed
    └── AgentExitedError               an agent process exited unexpectedly
"""

from __future__ import annotations

from enclave_agent.errors import EnclaveAgentError


class LocalnetError(EnclaveAgentError, RuntimeError):
    """A process of the local consortium did not start, or stopped unexpectedly."""


class AnvilError(LocalnetError):
    """Anvil did not start or a raw JSON-RPC call to it failed."""


class AgentExitedError(LocalnetError):
    """An agent process exited while the consortium still needed it."""
