"""The public Python surface of each package is pinned: a change to it is deliberate."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "enclave_agent": ["__version__"],
    "enclave_agent.gateway": [
        "AuthError",
        "GatewayClient",
        "GatewayHTTPError",
        "InvalidRequest",
        "hash_api_key",
        "new_api_key",
    ],
    "enclave_agent.operator": [
        "Sender",
        "Session",
        "list_models",
        "model_spec_for_round",
        "register_model",
        "register_statistic",
        "retire_model",
    ],
    "enclave_agent.store": ["SCHEMA_VERSION", "Store", "StoreError"],
    "enclave_client": [
        "STATISTICS",
        "AccessDenied",
        "AnswerTimeout",
        "AuthenticationError",
        "Client",
        "Conflict",
        "GatewayError",
        "GatewayHTTPError",
        "GatewayUnreachable",
        "InvalidInput",
        "Model",
        "NotFound",
        "OutOfRange",
        "PaymentRequired",
        "QuotaExhausted",
        "RateLimited",
        "Unavailable",
        "UnknownModel",
        "UnsealedAnswer",
    ],
    "enclave_console": ["ConsortiumView", "Watcher", "build_app"],
    "enclave_agent.tee": [
        "EnclaveKeys",
        "EvidenceVerifier",
        "Quote",
        "ROLE_GATEWAY",
        "ROLE_NAMES",
        "ROLE_PROVIDER",
        "SimulatedTee",
        "TeeBackend",
        "VerifiedEvidence",
        "evidence_binding",
        "measure_package",
        "quote_digest",
        "recover_signer",
        "sign_quote",
        "verify_quote",
    ],
    "enclave_agent.protocol.agent": [
        "EXIT_CHAIN_CHANGED",
        "EXIT_RECORD_MISMATCH",
        "EXIT_REFUSED",
        "EXIT_REVOKED",
        "EXIT_STATE_LOST",
        "Agent",
        "AgentRecordMismatch",
        "AgentRefused",
        "AgentRevoked",
        "MemberAgent",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned_and_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"
