"""The trusted execution environment layer: code measurement, backends (keys and
sealing), and EIP-712 attestation quotes.

The simulated attestation service lives in ``enclave_agent.tee.attestation_service``
and is not imported here: it runs as its own process.
"""

from enclave_agent.tee.backend import EnclaveKeys, TeeBackend
from enclave_agent.tee.measure import measure_package
from enclave_agent.tee.quote import (
    ROLE_GATEWAY,
    ROLE_NAMES,
    ROLE_PROVIDER,
    Quote,
    quote_digest,
    recover_signer,
    sign_quote,
    verify_quote,
)
from enclave_agent.tee.simulated import SimulatedTee

__all__ = [
    "ROLE_GATEWAY",
    "ROLE_NAMES",
    "ROLE_PROVIDER",
    "EnclaveKeys",
    "Quote",
    "SimulatedTee",
    "TeeBackend",
    "measure_package",
    "quote_digest",
    "recover_signer",
    "sign_quote",
    "verify_quote",
]
