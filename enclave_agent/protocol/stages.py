"""Protocol stages. The agent is a state machine over these constants; each stage
has exactly one handler in `enclave_agent.protocol.agent`.

Membership (per agent)::

    UNREGISTERED -> REGISTERING -> ATTESTED -> VERIFIED -> SYNCHRONISED
                          |             \\-> (new epoch) -> VERIFIED ...
                          \\-> REFUSED (registry refused our quote)      REVOKED

Round (per round the agent takes part in)::

    POSTING -> FUSING -> COMPLETED          (or ABORTED from either)
"""

from __future__ import annotations

from typing import Final

from enclave_agent.onchain import (
    AbortReason,
    BlameReason,
    Encoding,
    ExclusionReason,
    OutputKind,
    RevokeReason,
    RoundState,
    Scheme,
)

UNREGISTERED: Final = "unregistered"
REGISTERING: Final = "registering"
ATTESTED: Final = "attested"
VERIFIED: Final = "verified"
SYNCHRONISED: Final = "synchronised"
REFUSED: Final = "refused"
REVOKED: Final = "revoked"

ROUND_POSTING: Final = "posting"
ROUND_FUSING: Final = "fusing"
ROUND_COMPLETED: Final = "completed"
ROUND_ABORTED: Final = "aborted"
ROUND_FINAL: Final = frozenset({ROUND_COMPLETED, ROUND_ABORTED})

# On-chain enum values by their labels (index = the contracts' value), from the one
# source of the contracts' names (enclave_agent.onchain, generated from Types.sol).
SCHEMES: Final = tuple(m.label for m in Scheme)
ENCODINGS: Final = tuple(m.label for m in Encoding)
OUTPUT_KINDS: Final = tuple(m.label for m in OutputKind)
ABORT_REASONS: Final = tuple(m.label for m in AbortReason)
ROUND_STATES: Final = tuple(m.label for m in RoundState)
EXCLUSION_REASONS: Final = tuple(m.label for m in ExclusionReason)
BLAME_REASONS: Final = tuple(m.label for m in BlameReason)
REVOKE_REASONS: Final = tuple(m.label for m in RevokeReason)
