"""The gateway agent: gated private inference over HTTP, answered through the chain."""

from __future__ import annotations

from enclave_agent.gateway.auth import AuthError, hash_api_key, new_api_key
from enclave_agent.gateway.client import GatewayClient, GatewayHTTPError
from enclave_agent.gateway.validation import InvalidRequest

__all__ = ["AuthError", "GatewayClient", "GatewayHTTPError", "InvalidRequest", "hash_api_key", "new_api_key"]
