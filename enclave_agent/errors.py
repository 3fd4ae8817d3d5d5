"""The enclave agent's exception tree. Every error the agent raises on purpose is
an ``EnclaveAgentError``; messages name the culprit and never carry secrets.
Subclasses that belong to one component live in its module (named in brackets).

    EnclaveAgentError
    ├── ConfigError (ValueError)            invalid config, manifest or CLI input
    │   └── RequestFieldError               bad field in a quote request [tee.attestation_service]
    ├── CryptoError                         encoding, sharing, AEAD failures
    │   ├── FixedPointRangeError (ValueError)  value would overflow the modulus
    │   └── DecryptionError                 wrong key, wrong associated data, tampering
    ├── AttestationError                    a quote or evidence does not verify
    │   ├── MeasurementMismatchError        a peer runs other code than ours
    │   ├── MalformedQuoteError, UntrustedSignerError, QuoteRoleError,
    │   │   QuoteBindingError, QuoteExpiredError, MeasurementNotApprovedError [tee.quote]
    │   └── NitroDocumentError              AWS Nitro evidence [tee.nitro]
    ├── SealingError                        sealed state cannot be opened
    ├── StoreError                          SQLite state unusable [store.db]
    ├── ChainError                          JSON-RPC / transaction failures
    │   └── ContractRevert                  a custom error decoded from a revert
    │       (one subclass per contract error: enclave_agent.chain.errors.error_class)
    ├── ProtocolError                       a peer or round breaks the protocol
    │   └── InputNotReady                   an input waits for an aggregate [protocol.inputs]
    ├── AgentRefused, AgentRevoked,         exit codes 3, 4 and 5 [protocol.onboarding]
    │   AgentRecordMismatch
    ├── ChainChanged                        the node is on another chain than the state: exit 6
    ├── AuthError                           gateway client authentication, HTTP 401 [gateway.auth]
    ├── InvalidRequest                      gateway input validation, HTTP 4xx [gateway.validation]
    ├── GatewayHTTPError                    an error answer seen by the client [gateway.client]
    └── LocalnetError (RuntimeError)        local consortium tooling [localnet.errors]
        ├── AnvilError
        └── AgentExitedError
"""

from __future__ import annotations


class EnclaveAgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(EnclaveAgentError, ValueError):
    """A config file, manifest or command-line value is invalid."""


class CryptoError(EnclaveAgentError):
    """Encoding, sharing or encryption failed."""


class FixedPointRangeError(CryptoError, ValueError):
    """A value does not fit the fixed-point range of the modulus."""


class DecryptionError(CryptoError):
    """A ciphertext failed authentication (wrong key, associated data or tampering)."""


class AttestationError(EnclaveAgentError):
    """A quote or attestation evidence failed verification."""


class MeasurementMismatchError(AttestationError):
    """A peer's measurement differs from ours or from the approved one."""


class SealingError(EnclaveAgentError):
    """Sealed state cannot be opened: other code, other key, or tampered."""


class ChainError(EnclaveAgentError):
    """A JSON-RPC call or transaction failed."""


class ContractRevert(ChainError):
    """A transaction reverted with a custom error; ``name`` and ``args`` decode it."""

    def __init__(self, name: str, args: dict[str, object], message: str | None = None) -> None:
        self.error_name = name
        self.error_args = args
        super().__init__(message or f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})")


class ProtocolError(EnclaveAgentError):
    """A peer or a round broke the protocol."""


class ChainChanged(EnclaveAgentError):
    """The node is not on the chain this deployment or this agent's state belongs to
    (a reset, another chain behind the URL, a reorganisation below the confirmation depth)."""
