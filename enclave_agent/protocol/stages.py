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

# On-chain enum values (contracts/types/Types.sol).
SCHEMES: Final = ("additive", "shamir")
ENCODINGS: Final = ("dense", "seeded")
OUTPUT_KINDS: Final = ("shared-model", "statistic", "intermediate")
ABORT_REASONS: Final = (
    "none",
    "missing-shares",
    "invalid-share",
    "missing-fusion",
    "too-few-contributors",
    "false-complaint",
    "key-mismatch",
    "split-verdict",
    "missing-verdict",
)
ROUND_STATES: Final = ("none", "posting", "fusing", "completed", "aborted", "expired")
