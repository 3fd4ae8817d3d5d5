"""The enclave agent's exception tree. Every error the agent raises on purpose is
an ``EnclaveAgentError``; messages name the culprit and never carry secrets.
Subclasses that belong to one component live in its module (named in brackets).

    EnclaveAgentError
    ├── ConfigError (ValueError)            invalid config, manifest or CLI input
    │   ├── RequestFieldError               bad field in a quote request [tee.attestation_client]
    │   └── PolicyFileError                 invalid evidence policy file [tee.policy_file]
    ├── CryptoError                         encoding, sharing, AEAD failures
    │   ├── FixedPointRangeError (ValueError)  value would overflow the modulus
    │   ├── DecryptionError                 wrong key, wrong associated data, tampering
    │   └── UncorrectableSharesError        shares off one polynomial, too many to correct
    │                                       [crypto.reed_solomon]
    ├── AttestationError                    a quote or evidence does not verify
    │   ├── MeasurementMismatchError        a peer runs other code than ours
    │   ├── MalformedQuoteError, UntrustedSignerError, QuoteRoleError,
    │   │   QuoteBindingError, QuoteExpiredError, MeasurementNotApprovedError [tee.quote]
    │   ├── NitroDocumentError              AWS Nitro evidence [tee.nitro]
    │   ├── DcapError                       Intel SGX/TDX DCAP evidence [tee.dcap_quote]
    │   │   ├── DcapQuoteFormatError (ValueError)  malformed quote [tee.dcap_quote]
    │   │   ├── DcapSignatureError          quote, QE report, key binding or collateral signature [tee.dcap]
    │   │   ├── DcapCertificateError        PCK chain, root pin, validity, revocation [tee.dcap_pck]
    │   │   ├── DcapCollateralError         collateral missing or not current [tee.dcap_collateral]
    │   │   └── DcapTcbError                no TCB level, QE or TDX module identity, revoked [tee.dcap_tcb]
    │   ├── SnpError                        AMD SEV-SNP evidence [tee.sevsnp]
    │   │   ├── SnpReportFormatError (ValueError), SnpCertificateError,
    │   │   │   SnpTcbMismatchError, SnpSignatureError
    │   ├── BindingError                    report data does not bind the claimed keys [tee.binding]
    │   └── EvidenceRefused                 verified evidence refused by policy [tee.policy]
    ├── SealingError                        sealed state cannot be opened
    ├── TeeDeviceError                      a TEE device is missing or answered wrongly [tee.hardware]
    ├── StoreError                          SQLite state unusable [store.db]
    ├── ChainError                          JSON-RPC / transaction failures
    │   ├── ContractRevert                  a custom error decoded from a revert
    │   └── InsufficientFunds               the sending account cannot pay for gas [chain.sender]
    │       (one subclass per contract error: enclave_agent.chain.errors.error_class)
    ├── ProtocolError                       a peer or round breaks the protocol
    │   ├── InputNotReady                   an input waits for an aggregate [protocol.inputs]
    │   └── InconsistentPartials            providers' partials disagree beyond correction,
    │                                       HTTP 502 [gateway.scoring]
    ├── AgentRefused, AgentRevoked,         exit codes 3, 4 and 5 [protocol.onboarding]
    │   AgentRecordMismatch
    ├── IllegalStageTransition              a stage change the transition table forbids: a bug
    │                                       [protocol.stages]
    ├── ChainChanged                        the node is on another chain than the state: exit 6
    ├── StateLost                           the state store lost what the chain says we hold: exit 7
    ├── AuthError                           gateway client authentication, HTTP 401 [gateway.auth]
    ├── InvalidRequest                      gateway input validation, HTTP 4xx [gateway.validation]
    ├── GatewayHTTPError                    an error answer seen by the client [gateway.client]
    └── LocalnetError (RuntimeError)        local consortium tooling [localnet.errors]
        ├── AnvilError
        └── AgentExitedError
"""

from __future__ import annotations

# Exit codes of every enclave-agent command (docs/error_codes.md), defined once.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_REVOKED = 4
EXIT_RECORD_MISMATCH = 5
EXIT_CHAIN_CHANGED = 6
EXIT_STATE_LOST = 7
EXIT_EVIDENCE_INVALID = 8  # verify-evidence: the evidence does not verify
EXIT_EVIDENCE_REFUSED = 9  # verify-evidence: verified, refused by the policy
EXIT_ROUND_ABORTED = 10  # round wait: the round aborted
EXIT_TIMEOUT = 11  # round wait, request: no outcome within --timeout


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


class InsufficientFunds(ChainError):
    """The node refused a transaction: its sender cannot pay for its gas (and value)."""


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


class StateLost(EnclaveAgentError):
    """The state store is empty or lacks what this enclave's membership requires (keys,
    shares) while the chain says the enclave is a member: the agent must not pretend."""
