"""Protocol stages. The agent is a state machine over these constants; each stage
has exactly one handler in `enclave_agent.protocol.agent`.

Membership (per agent): a ``Stage``, changed only along ``TRANSITIONS``::

    UNREGISTERED -> REGISTERING -> ATTESTED -> VERIFIED -> SYNCHRONISED
                        |  ^
                        v  |  (a restart registers again)
                      REFUSED  (the registry or a verifier refused us: exit 3)

    VERIFIED, SYNCHRONISED -> ATTESTED              a new epoch: verify and re-key
    ATTESTED, VERIFIED -> UNREGISTERED              dropped for not synchronising in time
    ATTESTED, VERIFIED, SYNCHRONISED -> REVOKED     revoked for good (exit 4)
    UNREGISTERED, REFUSED -> ATTESTED               our registration read from the chain
                                                    (replayed after a restore or reset-state)

Round (per round the agent takes part in)::

    POSTING -> FUSING -> COMPLETED          (or ABORTED from either)
                  |          ^
                  v          |              (additive t-of-n with absent participants)
                RECOVERING --+
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from enclave_agent.errors import EnclaveAgentError
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


class Stage(StrEnum):
    """An agent's membership stage. Its value is what the state store keeps and what
    status, ``/healthz`` and the logs show."""

    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    ATTESTED = "attested"
    VERIFIED = "verified"
    SYNCHRONISED = "synchronised"
    REFUSED = "refused"
    REVOKED = "revoked"


# The registry lists us as a member: the stages that take part in rounds and serve.
MEMBER_STAGES = frozenset({Stage.ATTESTED, Stage.VERIFIED, Stage.SYNCHRONISED})

# The stages each stage may move to. Any other move is a bug, not a peer's doing: our
# own MemberRegistered/MemberRevoked events come in chain order, so e.g. REVOKED (the
# agent exits and never registers this enclave again) has no way out.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.UNREGISTERED: frozenset({Stage.REGISTERING, Stage.ATTESTED}),
    Stage.REGISTERING: frozenset({Stage.ATTESTED, Stage.REFUSED}),
    Stage.REFUSED: frozenset({Stage.REGISTERING, Stage.ATTESTED}),
    Stage.ATTESTED: frozenset({Stage.VERIFIED, Stage.UNREGISTERED, Stage.REVOKED}),
    Stage.VERIFIED: frozenset({Stage.SYNCHRONISED, Stage.ATTESTED, Stage.UNREGISTERED, Stage.REVOKED}),
    Stage.SYNCHRONISED: frozenset({Stage.ATTESTED, Stage.REVOKED}),
    Stage.REVOKED: frozenset(),
}


class IllegalStageTransition(EnclaveAgentError):
    """A stage change ``TRANSITIONS`` does not allow (a bug in the agent)."""

    def __init__(self, current: Stage, new: Stage) -> None:
        self.current, self.new = current, new
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(f"illegal stage transition {current} -> {new} (from {current}: {allowed})")


def check_transition(current: Stage, new: Stage) -> None:
    """IllegalStageTransition unless ``new`` may follow ``current`` (or is ``current``)."""
    if new != current and new not in TRANSITIONS[current]:
        raise IllegalStageTransition(current, new)


ROUND_POSTING: Final = "posting"
ROUND_FUSING: Final = "fusing"
ROUND_RECOVERING: Final = "recovering"  # additive t-of-n: holders reveal what the absent were owed
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
