"""Evidence policy: what verified evidence must show to count for a role.

A ``Policy`` maps role -> evidence type -> ``TypeRule``. ``Policy.evaluate`` applies
every rule and returns a ``Verdict`` listing every refusal, each naming its rule and
the offending value (never only the first). The rules:

``type``         the role accepts this evidence type at all
``measurement``  the platform measurements equal one approved entry (PCR0-2 for Nitro,
                 MRTD and RTMR0-3 for TDX, MRENCLAVE or MRSIGNER for SGX, MEASUREMENT
                 for SNP, the code measurement for simulated quotes)
``debug``        debug evidence (Nitro zero PCRs, SGX/TDX DEBUG attribute, SNP policy
                 bit 19) is refused unless the rule allows it
``tcb``          Intel's TCB status at least ``min_tcb_status`` (order: ``TCB_STATUSES``);
                 SNP's REPORTED_TCB at least ``min_tcb`` per component
``max_age``      evidence with a signed time (Nitro) at most ``max_age`` seconds old
``freshness``    evidence without one (DCAP, SNP) is fresh only through a challenge
``challenge``    the evidence's nonce equals the verifier's challenge, when one is given
``binding``      the report data binds the claimed keys and consortium
                 (``enclave_agent.tee.binding``)

Policy files: ``enclave_agent.tee.policy_file``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from enclave_agent.errors import AttestationError
from enclave_agent.tee.binding import BindingClaims, BindingError, check_binding, split_report_data
from enclave_agent.tee.dcap_tcb import TCB_STATUSES
from enclave_agent.tee.evidence import VerifiedEvidence

CLOCK_SKEW = 60  # seconds evidence may seem to come from the future
DEFAULT_MAX_AGE = 600
# Per evidence type: the platform measurements a policy may name, with their sizes...
MEASUREMENT_KEYS: dict[str, dict[str, int]] = {
    "aws-nitro": {f"PCR{i}": 48 for i in range(32)},
    "intel-sgx": {"MRENCLAVE": 32, "MRSIGNER": 32},
    "intel-tdx": {
        "MRTD": 48,
        **{f"RTMR{i}": 48 for i in range(4)},
        "MRSEAM": 48,
        "MRCONFIGID": 48,
        "MROWNER": 48,
        "MROWNERCONFIG": 48,
    },
    "amd-sev-snp": {"MEASUREMENT": 48, "HOST_DATA": 32, "ID_KEY_DIGEST": 48, "AUTHOR_KEY_DIGEST": 48},
    "simulated": {"measurement": 32},
}
# ...and the ones every approved entry must name (any one of the sets).
REQUIRED_KEYS: dict[str, tuple[frozenset[str], ...]] = {
    "aws-nitro": (frozenset({"PCR0", "PCR1", "PCR2"}),),
    "intel-sgx": (frozenset({"MRENCLAVE"}), frozenset({"MRSIGNER"})),
    "intel-tdx": (frozenset({"MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3"}),),
    "amd-sev-snp": (frozenset({"MEASUREMENT"}),),
    "simulated": (frozenset({"measurement"}),),
}
# What a refusal shows as the offending measurement.
SHOWN_KEYS = {
    "aws-nitro": ("PCR0", "PCR1", "PCR2"),
    "intel-sgx": ("MRENCLAVE", "MRSIGNER"),
    "intel-tdx": ("MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3"),
    "amd-sev-snp": ("MEASUREMENT",),
    "simulated": ("measurement",),
}
SNP_TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode")


class EvidenceRefused(AttestationError):
    """Verified evidence does not satisfy the policy; ``verdict`` lists every reason."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__("; ".join(str(r) for r in verdict.refusals))


@dataclass(frozen=True)
class Refusal:
    rule: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason} ({self.value})"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class Verdict:
    refusals: tuple[Refusal, ...]

    @property
    def accepted(self) -> bool:
        return not self.refusals

    def raise_if_refused(self) -> None:
        if self.refusals:
            raise EvidenceRefused(self)


@dataclass(frozen=True)
class TypeRule:
    """What one role requires of one evidence type."""

    approved: tuple[Mapping[str, bytes], ...]
    allow_debug: bool = False
    min_tcb_status: str = "UpToDate"
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    max_age: int = DEFAULT_MAX_AGE


def shown(verified: VerifiedEvidence) -> str:
    keys = SHOWN_KEYS.get(verified.platform, tuple(verified.platform_measurements))
    return ",".join(
        f"{k}={verified.platform_measurements[k].hex()}" for k in keys if k in verified.platform_measurements
    )


def _matches(entry: Mapping[str, bytes], measurements: Mapping[str, bytes]) -> bool:
    return all(measurements.get(key) == value for key, value in entry.items())


def _tcb_refusals(rule: TypeRule, verified: VerifiedEvidence) -> list[Refusal]:
    refusals = []
    status = verified.tcb_status
    if status is not None and TCB_STATUSES.index(status) > TCB_STATUSES.index(rule.min_tcb_status):
        advisories = f" [{', '.join(verified.advisories)}]" if verified.advisories else ""
        refusals.append(
            Refusal("tcb", status + advisories, f"TCB status below the minimum {rule.min_tcb_status}")
        )
    for component, minimum in rule.min_tcb.items():
        have = verified.tcb.get(component)
        if have is None or have < minimum:
            refusals.append(
                Refusal(
                    "tcb", f"{component}={have}", f"TCB component {component} below the minimum {minimum}"
                )
            )
    return refusals


def _freshness_refusals(
    rule: TypeRule, verified: VerifiedEvidence, challenge: bytes | None, challenge_time: int | None, now: int
) -> list[Refusal]:
    if verified.platform == "simulated":
        return []  # a simulated quote's freshness is its own signed expiry (verify_quote)
    refusals = []
    produced = verified.timestamp if verified.timestamp is not None else challenge_time
    if produced is not None:
        age = now - produced
        if not -CLOCK_SKEW <= age <= rule.max_age:
            what = "produced at" if verified.timestamp is not None else "challenge block of"
            refusals.append(
                Refusal(
                    "max_age",
                    f"{what} {produced}, {age}s before {now}",
                    f"older than {rule.max_age}s or from the future",
                )
            )
    elif challenge is None:
        refusals.append(
            Refusal(
                "freshness",
                "no signed time, no challenge",
                f"{verified.platform} evidence is fresh only through a challenge nonce",
            )
        )
    if challenge is not None and verified.nonce != challenge:
        nonce = "none" if verified.nonce is None else verified.nonce.hex()
        refusals.append(
            Refusal("challenge", nonce, f"the evidence's nonce is not the challenge {challenge.hex()}")
        )
    return refusals


def _binding_refusals(verified: VerifiedEvidence, claims: BindingClaims | None) -> list[Refusal]:
    if claims is None:
        try:
            value = split_report_data(verified.report_data)[0].hex()
        except BindingError:
            value = "none"
        return [Refusal("binding", value, "no binding claims given: the evidence binds unknown keys")]
    try:
        check_binding(verified.report_data, claims)
    except BindingError as exc:
        value = verified.report_data.hex() if verified.report_data is not None else "none"
        return [Refusal("binding", value, str(exc))]
    return []


@dataclass(frozen=True)
class Policy:
    """role -> evidence type (``EvidenceType.label``) -> ``TypeRule``."""

    roles: Mapping[str, Mapping[str, TypeRule]]
    source: str = ""

    def evaluate(
        self,
        verified: VerifiedEvidence,
        *,
        role: str,
        claims: BindingClaims | None,
        now: int,
        challenge: bytes | None = None,
        challenge_time: int | None = None,
    ) -> Verdict:
        """Every rule's refusal for ``verified`` presented for ``role`` by ``claims``.
        ``challenge_time``: when the challenge came to be (a chain-anchored challenge is
        a block hash: its block's timestamp), which bounds the age of evidence that
        signs no time of its own."""
        rules = self.roles.get(role, {})
        rule = rules.get(verified.platform)
        if rule is None:
            accepted = ", ".join(sorted(rules)) or "none"
            wrong_type = Refusal(
                "type", verified.platform, f"role {role!r} accepts no such evidence ({accepted})"
            )
            return Verdict((wrong_type, *_binding_refusals(verified, claims)))
        refusals: list[Refusal] = []
        if not any(_matches(entry, verified.platform_measurements) for entry in rule.approved):
            refusals.append(Refusal("measurement", shown(verified), f"not approved for role {role!r}"))
        if verified.debug and not rule.allow_debug:
            refusals.append(
                Refusal("debug", "debug=true", f"{verified.platform} evidence from a debug enclave")
            )
        refusals += _tcb_refusals(rule, verified)
        refusals += _freshness_refusals(rule, verified, challenge, challenge_time, now)
        refusals += _binding_refusals(verified, claims)
        return Verdict(tuple(refusals))
