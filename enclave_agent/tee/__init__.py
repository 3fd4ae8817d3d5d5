"""The trusted execution environment layer: code measurement, backends (keys and
sealing), and EIP-712 attestation quotes.

The simulated attestation service is development tooling (``enclave_devnet``, its own
process; the agent's side is ``attestation_client``). The AWS Nitro verifier
(``enclave_agent.tee.nitro``, needs cbor2) is not imported here.
"""

from enclave_agent.tee.backend import EnclaveKeys, TeeBackend
from enclave_agent.tee.evidence import EvidenceVerifier, VerifiedEvidence, evidence_binding
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
    "EvidenceVerifier",
    "Quote",
    "SimulatedTee",
    "TeeBackend",
    "VerifiedEvidence",
    "evidence_binding",
    "measure_package",
    "quote_digest",
    "recover_signer",
    "sign_quote",
    "verify_quote",
]
