"""Evidence policy and key binding: debug evidence passes the signature checks and is
refused by policy; evidence bound to other keys is refused; every refusal names its
rule and value; policy files fail in one line naming file and key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from eth_utils import to_canonical_address, to_checksum_address

from enclave_agent.tee.binding import (
    BindingClaims,
    BindingError,
    check_binding,
    evidence_binding,
    split_report_data,
)
from enclave_agent.tee.evidence import VerifiedEvidence
from enclave_agent.tee.nitro import NitroVerifier
from enclave_agent.tee.policy import EvidenceRefused, Policy, TypeRule
from enclave_agent.tee.policy_file import PolicyFileError, load_policy
from tests.support.tee_samples import DCAP_VECTORS, SNP_AT, nitro_sample, quote, snp_report, snp_verifier

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BY_ROW = {v.row: v for v in DCAP_VECTORS}


def claims(**changes: object) -> BindingClaims:
    fields: dict[str, object] = {
        "enclave": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "x25519_key": bytes(range(32)),
        "chain_id": 31337,
        "registry": REGISTRY,
    }
    fields.update(changes)
    return BindingClaims(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ binding layout


def test_binding_layout_known_answer() -> None:
    c = claims()
    expected = hashlib.sha256(
        b"enclave-share/evidence-binding/v1\0"
        + to_canonical_address(c.enclave)
        + bytes(range(32))
        + (31337).to_bytes(32, "big")
        + to_canonical_address(REGISTRY)
    ).digest()
    assert c.digest() == expected
    assert (
        evidence_binding(enclave=c.enclave, x25519_key=c.x25519_key, chain_id=31337, registry=REGISTRY)
        == expected
    )
    challenge = os.urandom(32)
    assert c.report_data(challenge) == expected + challenge
    assert c.report_data() == expected + bytes(32)
    assert split_report_data(expected) == (expected, None)
    assert split_report_data(expected + challenge) == (expected, challenge)


@pytest.mark.parametrize(
    "change",
    [
        {"enclave": to_checksum_address(os.urandom(20))},
        {"x25519_key": os.urandom(32)},
        {"chain_id": 1},
        {"registry": to_checksum_address(os.urandom(20))},
    ],
    ids=["enclave", "x25519", "chain", "registry"],
)
def test_every_claim_changes_the_binding(change: dict[str, object]) -> None:
    report_data = claims().report_data()
    with pytest.raises(BindingError, match="report data binds"):
        check_binding(report_data, claims(**change))
    assert check_binding(report_data, claims()) == bytes(32)


def test_malformed_claims_and_report_data_are_refused() -> None:
    for bad in ({"x25519_key": b"short"}, {"chain_id": 0}, {"chain_id": True}, {"enclave": "0x12"}):
        with pytest.raises(BindingError):
            claims(**bad)
    for data in (None, b"", bytes(48)):
        with pytest.raises(BindingError):
            split_report_data(data)
    assert BindingClaims.from_json(claims().to_json()) == claims()
    with pytest.raises(BindingError, match="lack chainId"):
        BindingClaims.from_json({"enclave": REGISTRY, "x25519Key": "00" * 32, "registry": REGISTRY})


# ------------------------------------------------------------------ policy rules


def evidence(**changes: object) -> VerifiedEvidence:
    fields: dict[str, object] = {
        "platform": "intel-tdx",
        "measurement": bytes(32),
        "platform_measurements": {"MRTD": b"\x01" * 48, **{f"RTMR{i}": bytes(48) for i in range(4)}},
        "timestamp": None,
        "debug": False,
        "report_data": claims().report_data(b"\x07" * 32),
        "nonce": b"\x07" * 32,
        "tcb_status": "UpToDate",
    }
    fields.update(changes)
    return VerifiedEvidence(**fields)  # type: ignore[arg-type]


TDX_RULE = TypeRule(approved=({"MRTD": b"\x01" * 48, **{f"RTMR{i}": bytes(48) for i in range(4)}},))
POLICY = Policy({"provider": {"intel-tdx": TDX_RULE}})


def rules_of(verified: VerifiedEvidence, **kwargs: object) -> list[str]:
    args: dict[str, object] = {"role": "provider", "claims": claims(), "now": 1000, "challenge": b"\x07" * 32}
    args.update(kwargs)
    return [r.rule for r in POLICY.evaluate(verified, **args).refusals]  # type: ignore[arg-type]


def test_bound_fresh_approved_evidence_is_accepted() -> None:
    verdict = POLICY.evaluate(evidence(), role="provider", claims=claims(), now=1000, challenge=b"\x07" * 32)
    assert verdict.accepted
    verdict.raise_if_refused()


def test_each_rule_refuses_and_names_its_value() -> None:
    assert rules_of(evidence(platform_measurements={"MRTD": b"\x02" * 48})) == ["measurement"]
    assert rules_of(evidence(debug=True)) == ["debug"]
    assert rules_of(evidence(tcb_status="OutOfDate")) == ["tcb"]
    assert rules_of(evidence(), claims=claims(x25519_key=os.urandom(32))) == ["binding"]
    assert rules_of(evidence(), claims=None) == ["binding"]
    assert rules_of(evidence(), challenge=None) == ["freshness"]
    assert rules_of(evidence(), challenge=b"\x08" * 32) == ["challenge"]
    assert rules_of(evidence(), role="gateway") == ["type"]
    assert rules_of(evidence(platform="amd-sev-snp")) == ["type"]
    verdict = POLICY.evaluate(
        evidence(debug=True, tcb_status="OutOfDate", advisories=("INTEL-SA-1",)),
        role="provider",
        claims=None,
        now=0,
    )
    shown = {r.rule: r.value for r in verdict.refusals}
    assert shown["tcb"] == "OutOfDate [INTEL-SA-1]" and shown["debug"] == "debug=true"
    assert set(shown) == {"debug", "tcb", "freshness", "binding"}
    with pytest.raises(EvidenceRefused, match="debug: .*; tcb: "):
        verdict.raise_if_refused()


def test_signed_time_is_judged_by_max_age() -> None:
    rule = TypeRule(
        approved=({"PCR0": b"\x00" * 48, "PCR1": b"\x00" * 48, "PCR2": b"\x00" * 48},), max_age=600
    )
    policy = Policy({"provider": {"aws-nitro": rule}})
    nitro = evidence(
        platform="aws-nitro",
        platform_measurements={f"PCR{i}": bytes(48) for i in range(3)},
        timestamp=1000,
        report_data=claims().digest(),
        nonce=None,
    )
    assert policy.evaluate(nitro, role="provider", claims=claims(), now=1500).accepted
    late = policy.evaluate(nitro, role="provider", claims=claims(), now=1601).refusals
    assert [r.rule for r in late] == ["max_age"] and "601s before 1601" in late[0].value
    early = policy.evaluate(nitro, role="provider", claims=claims(), now=900).refusals
    assert [r.rule for r in early] == ["max_age"]


# ------------------------------------------------------------------ real debug evidence


def test_real_debug_evidence_verifies_and_policy_refuses_it() -> None:
    # Nitro: PCR0..2 zero. Approving exactly those measurements still refuses debug.
    nitro = NitroVerifier().verify(nitro_sample("evervault_2022-10-12_debug.cose"))
    sgx_vector = BY_ROW["6"]
    sgx = sgx_vector.verifier().verify(quote(sgx_vector.quote), at=sgx_vector.at)
    snp = snp_verifier().verify(snp_report("gosevguest_milan_report.bin"), at=SNP_AT)
    assert nitro.debug and sgx.debug and snp.debug
    policy = Policy(
        {
            "provider": {
                "aws-nitro": TypeRule(
                    approved=({k: nitro.platform_measurements[k] for k in ("PCR0", "PCR1", "PCR2")},)
                ),
                "intel-sgx": TypeRule(
                    approved=({"MRENCLAVE": sgx.platform_measurements["MRENCLAVE"]},),
                    min_tcb_status="ConfigurationAndSWHardeningNeeded",
                ),
                "amd-sev-snp": TypeRule(
                    approved=({"MEASUREMENT": snp.platform_measurements["MEASUREMENT"]},)
                ),
            }
        }
    )
    for verified, challenge in ((nitro, None), (sgx, sgx.nonce), (snp, snp.nonce)):
        refusals = policy.evaluate(
            verified, role="provider", claims=claims(), now=verified.verified_at, challenge=challenge
        ).refusals
        rules = [r.rule for r in refusals]
        assert "debug" in rules and "measurement" not in rules, (verified.platform, rules)
        # Nor do they bind our keys: they were made for other protocols.
        assert "binding" in rules


def test_real_production_evidence_for_other_keys_is_refused() -> None:
    vector = BY_ROW["7"]
    tdx = vector.verifier().verify(quote(vector.quote), at=vector.at)
    policy = Policy(
        {
            "provider": {
                "intel-tdx": TypeRule(
                    approved=(
                        {
                            k: tdx.platform_measurements[k]
                            for k in ("MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3")
                        },
                    )
                )
            }
        }
    )
    verdict = policy.evaluate(tdx, role="provider", claims=claims(), now=vector.at, challenge=tdx.nonce)
    assert [r.rule for r in verdict.refusals] == ["binding"]
    assert verdict.refusals[0].value == (tdx.report_data or b"").hex()


# ------------------------------------------------------------------ policy files

MRTD = "aa" * 48
Z48 = "00" * 48
SGX = f"version = 1\n[roles.provider.intel-sgx]\napproved=[{{MRSIGNER='{'00' * 32}'}}]"
SNP_ = f"version = 1\n[roles.provider.amd-sev-snp]\napproved=[{{MEASUREMENT='{Z48}'}}]"
GOOD = f"""
version = 1
[defaults]
max_age = 300
min_tcb_status = "SWHardeningNeeded"

[roles.provider.intel-tdx]
approved = [{{ MRTD = "{MRTD}", RTMR0 = "{Z48}", RTMR1 = "{Z48}", RTMR2 = "{Z48}", RTMR3 = "{Z48}" }}]
min_tcb_status = "OutOfDate"

[roles.provider.aws-nitro]
approved = [{{ PCR0 = "0x{"11" * 48}", PCR1 = "{"22" * 48}", PCR2 = "{"33" * 48}" }}]

[roles.gateway.simulated]
approved = [{{ measurement = "0x{"44" * 32}" }}]

[roles.gateway.amd-sev-snp]
approved = [{{ MEASUREMENT = "{"55" * 48}" }}]
min_tcb = {{ bootloader = 3, microcode = 115 }}
allow_debug = true
"""


def test_policy_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD)
    policy = load_policy(path)
    tdx = policy.roles["provider"]["intel-tdx"]
    assert (
        tdx.min_tcb_status == "OutOfDate"
        and tdx.max_age == 300
        and tdx.approved[0]["MRTD"] == bytes.fromhex(MRTD)
    )
    nitro = policy.roles["provider"]["aws-nitro"]
    assert nitro.min_tcb_status == "SWHardeningNeeded" and nitro.approved[0]["PCR0"] == b"\x11" * 48
    snp = policy.roles["gateway"]["amd-sev-snp"]
    assert snp.allow_debug and dict(snp.min_tcb) == {"bootloader": 3, "microcode": 115}
    assert policy.roles["gateway"]["simulated"].approved[0]["measurement"] == b"\x44" * 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 2\n[roles.provider.simulated]\napproved=[{measurement='00'}]", r"version: expected 1"),
        ("version = 1", r"roles: expected at least one"),
        ("version = 1\n[roles.auditor.simulated]\napproved=[]", r"roles\.auditor: unknown role"),
        (
            "version = 1\n[roles.provider.intel-sev]\napproved=[]",
            r"roles\.provider\.intel-sev: unknown evidence type",
        ),
        (
            "version = 1\n[roles.provider.intel-tdx]\napproved=[]",
            r"roles\.provider\.intel-tdx\.approved: expected a non-empty",
        ),
        (
            f"version = 1\n[roles.provider.intel-tdx]\napproved=[{{MRTD='{MRTD}'}}]",
            r"roles\.provider\.intel-tdx\.approved\[0\]: an approved intel-tdx entry must name MRTD\+RTMR0",
        ),
        (
            "version = 1\n[roles.provider.intel-sgx]\napproved=[{MRENCLAVE='abcd'}]",
            r"roles\.provider\.intel-sgx\.approved\[0\]\.MRENCLAVE: expected 32 bytes of hex",
        ),
        (
            "version = 1\n[roles.provider.intel-sgx]\napproved=[{PCR0='00'}]",
            r"roles\.provider\.intel-sgx\.approved\[0\]\.PCR0: not a measurement of intel-sgx",
        ),
        (
            SGX + "\nmin_tcb_status='Revoked'",
            r"roles\.provider\.intel-sgx\.min_tcb_status: expected one of",
        ),
        (
            SGX.replace("version = 1", "version = 1\n[defaults]\nmax_age = 0"),
            r"defaults\.max_age: expected seconds",
        ),
        (
            SNP_ + "\nmin_tcb={fmc=1}",
            r"roles\.provider\.amd-sev-snp\.min_tcb\.fmc: expected one of",
        ),
        (
            SGX + "\nallow_debug='yes'",
            r"roles\.provider\.intel-sgx\.allow_debug: expected true or false",
        ),
        ("version = 1\n[roles.provider.intel-sgx]\napproved=[{MRSIGNER=", r"invalid TOML"),
    ],
)
def test_policy_file_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=f"^{path}: {message}") as raised:
        load_policy(path)
    assert "\n" not in str(raised.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read policy"):
        load_policy(tmp_path / "nope.toml")
