"""Intel DCAP and AMD SEV-SNP evidence through the evidence verifier service and a
peer's own re-verification, and the chain-anchored challenge that makes evidence
without a signed time fresh (``enclave_agent.tee.anchor``).

Accepted SNP evidence is a report made under a test ARK -> ASK -> VCEK chain
(``tests/support/snp_reports.py``; verifiers pin that ARK for Milan), bound to fresh
keys and anchored to a block of a real Anvil chain. Real recorded evidence (a TDX
quote with its Intel collateral, a Milan report with AMD's certificates) passes every
platform check at its own time and is refused by policy for its binding and freshness:
its report data was fixed when it was recorded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3

from enclave_agent.errors import ConfigError
from enclave_agent.protocol.evidence import EvidenceJudge, PeerEvidenceRefused, verify_member_evidence
from enclave_agent.protocol.membership import MemberRecord
from enclave_agent.tee.anchor import block_time_on, challenge_time, recent_block_hash
from enclave_agent.tee.backend import new_secp256k1_key
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.evidence import EvidenceType, EvidenceTypeError, verify_presented
from enclave_agent.tee.policy import EvidenceRefused, Policy, TypeRule
from enclave_agent.tee.quote import ROLE_PROVIDER, Quote, sign_possession
from enclave_agent.tee.sevsnp import SnpReport, snp_measurement
from enclave_agent.tee.verifier_service import (
    ChainUnreachable,
    EvidenceVerifierService,
    _reachable,
    build_app,
    parse_ark_pins,
    verifiers_for,
)
from tests.support.snp_reports import ReportSigner
from tests.support.tee_samples import DCAP_VECTORS, SNP, SNP_AT, snp_report
from tests.support.tee_samples import quote as sample_quote

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SNP_MEASUREMENT = b"\x05" * 48
TDX = next(v for v in DCAP_VECTORS if v.row == "7")  # a TDX v4 quote, UpToDate at its time
REAL_SNP = "virtee_milan_report.hex"


@pytest.fixture(scope="module")
def chip(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportSigner, Path]:
    signer = ReportSigner()
    return signer, signer.save(tmp_path_factory.mktemp("snp"))


@pytest.fixture(scope="module")
def dcap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dcap")
    for path in TDX.collateral_paths():
        shutil.copy(path, directory / path.name)
    return directory


def snp_verifiers(chip: tuple[ReportSigner, Path]) -> dict[str, Any]:
    signer, collateral = chip
    return verifiers_for(snp_collateral=collateral, amd_ark_sha256={"Milan": signer.ark_sha256})


def snp_policy(*measurements: bytes, max_age: int = 600) -> Policy:
    rule = TypeRule(approved=tuple({"MEASUREMENT": m} for m in measurements), max_age=max_age)
    return Policy({"provider": {"amd-sev-snp": rule}}, source="test")


def quote(chain_id: int, measurement: bytes, **changes: Any) -> Quote:
    fields: dict[str, Any] = {
        "role": ROLE_PROVIDER,
        "measurement": measurement,
        "operator": to_checksum_address(os.urandom(20)),
        "enclave": Account.create().address,
        "x25519_key": os.urandom(32),
        "chain_id": chain_id,
        "registry": REGISTRY,
        "nonce": os.urandom(32),
        "expiry": int(time.time()) + 3600,
    }
    return Quote(**(fields | changes))


def claims_of(q: Quote) -> BindingClaims:
    return BindingClaims(enclave=q.enclave, x25519_key=q.x25519_key, chain_id=q.chain_id, registry=q.registry)


def service(verifiers: dict[str, Any], policy: Policy, chain: Any = None) -> EvidenceVerifierService:
    return EvidenceVerifierService(
        new_secp256k1_key(), policy=policy, policy_bytes=b"test", verifiers=verifiers, chain=chain
    )


def rules(exc: pytest.ExceptionInfo[EvidenceRefused]) -> dict[str, str]:
    return {r.rule: r.reason for r in exc.value.verdict.refusals}


def head_time(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


# ------------------------------------------------------------- the verifier service


def test_a_bound_anchored_snp_report_is_signed(anvil: Web3, chip: tuple[ReportSigner, Path]) -> None:
    signer, _ = chip
    measurement = snp_measurement(SnpReport(signer.report(bytes(64))))
    q = quote(anvil.eth.chain_id, measurement)
    report = signer.report(claims_of(q).report_data(recent_block_hash(anvil, 0)))
    s = service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), (anvil.eth.chain_id, block_time_on(anvil)))
    claim, _ = s.verify_and_sign(q, "amd-sev-snp", report, now=head_time(anvil) + 5)
    assert claim.evidence_type == EvidenceType.AMD_SEV_SNP


def test_snp_freshness_needs_a_recent_block_of_the_quotes_chain(
    anvil: Web3, chip: tuple[ReportSigner, Path]
) -> None:
    signer, _ = chip
    measurement = snp_measurement(SnpReport(signer.report(bytes(64))))
    q = quote(anvil.eth.chain_id, measurement)
    anchored = signer.report(claims_of(q).report_data(recent_block_hash(anvil, 0)))
    unanchored = signer.report(claims_of(q).report_data(os.urandom(32)))
    chain = (anvil.eth.chain_id, block_time_on(anvil))
    now = head_time(anvil) + 5
    cases = [
        (service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT)), anchored, now, "freshness"),  # no RPC
        (service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), chain), unanchored, now, "freshness"),
        (service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), chain), anchored, now + 601, "max_age"),
        (  # the quote names another chain than the one the service anchors to
            service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), (anvil.eth.chain_id + 1, chain[1])),
            anchored,
            now,
            "freshness",
        ),
    ]
    for s, report, at, rule in cases:
        with pytest.raises(EvidenceRefused) as refused:
            s.verify_and_sign(q, "amd-sev-snp", report, now=at)
        assert set(rules(refused)) == {rule}, rules(refused)


def test_debug_other_measurement_and_unpinned_chips_are_refused(
    anvil: Web3, chip: tuple[ReportSigner, Path]
) -> None:
    signer, collateral = chip
    chain = (anvil.eth.chain_id, block_time_on(anvil))
    q = quote(anvil.eth.chain_id, snp_measurement(SnpReport(signer.report(bytes(64)))))
    data = claims_of(q).report_data(recent_block_hash(anvil, 0))
    now = head_time(anvil) + 5
    with pytest.raises(EvidenceRefused) as refused:
        service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), chain).verify_and_sign(
            q, "amd-sev-snp", signer.report(data, debug=True), now=now
        )
    assert set(rules(refused)) == {"debug"}
    other = signer.report(data, measurement=b"\x06" * 48)
    with pytest.raises(EvidenceRefused) as refused:
        service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), chain).verify_and_sign(
            q, "amd-sev-snp", other, now=now
        )
    assert set(rules(refused)) == {"measurement", "quote"}
    amd_only = verifiers_for(snp_collateral=collateral)  # AMD's ARKs: the test chip is nobody's
    with pytest.raises(EvidenceRefused) as refused:
        service(amd_only, snp_policy(SNP_MEASUREMENT), chain).verify_and_sign(
            q, "amd-sev-snp", signer.report(data), now=now
        )
    assert "no pinned AMD ARK" in rules(refused)["verification"]


def test_a_real_tdx_quote_verifies_and_is_refused_for_binding_and_freshness(dcap_dir: Path) -> None:
    verifiers = verifiers_for(dcap_collateral=dcap_dir)
    evidence = sample_quote(TDX.quote)
    verified = verifiers["intel-tdx"].verify(evidence, at=TDX.at)
    keys = ("MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3")
    entry = {k: verified.platform_measurements[k] for k in keys}
    policy = Policy({"provider": {"intel-tdx": TypeRule(approved=(entry,))}}, source="test")
    q = quote(1, verified.measurement)
    with pytest.raises(EvidenceRefused) as refused:
        service(verifiers, policy).verify_and_sign(q, "intel-tdx", evidence, now=TDX.at)
    assert set(rules(refused)) == {"binding", "freshness"}
    with pytest.raises(EvidenceRefused) as refused:  # a TDX quote presented as SGX
        service(verifiers, policy).verify_and_sign(q, "intel-sgx", evidence, now=TDX.at)
    assert rules(refused) == {"type": "evidence presented as intel-sgx is intel-tdx evidence"}
    with pytest.raises(EvidenceRefused) as refused:  # its collateral has expired since
        service(verifiers, policy).verify_and_sign(q, "intel-tdx", evidence, now=TDX.at + 400 * 86400)
    assert set(rules(refused)) == {"verification"}
    with pytest.raises(EvidenceRefused) as refused:  # a service without DCAP collateral
        service(verifiers_for(), policy).verify_and_sign(q, "intel-tdx", evidence, now=TDX.at)
    assert "no intel-tdx verifier here" in rules(refused)["type"]


def test_a_real_milan_report_verifies_and_is_refused_for_binding_and_freshness() -> None:
    verifiers = verifiers_for(snp_collateral=SNP)
    report = snp_report(REAL_SNP)
    measurement = SnpReport(report).measurement
    q = quote(1, snp_measurement(SnpReport(report)))
    with pytest.raises(EvidenceRefused) as refused:
        service(verifiers, snp_policy(measurement)).verify_and_sign(q, "amd-sev-snp", report, now=SNP_AT)
    assert set(rules(refused)) == {"binding", "freshness"}


def test_an_unreachable_anchor_chain_is_503_not_a_verdict(chip: tuple[ReportSigner, Path]) -> None:
    signer, _ = chip

    def down(_: bytes) -> int | None:
        raise ConnectionError("refused")

    q = quote(31337, snp_measurement(SnpReport(signer.report(bytes(64)))))
    report = signer.report(claims_of(q).report_data(os.urandom(32)))
    s = service(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT), (31337, _reachable(down, "http://x")))
    with pytest.raises(ChainUnreachable, match="chain at http://x unreachable"):
        s.verify_and_sign(q, "amd-sev-snp", report)
    loop = asyncio.new_event_loop()
    from aiohttp import web

    runner = web.AppRunner(build_app(s))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        body = json.dumps(
            {"quote": q.to_json(), "evidenceType": "amd-sev-snp", "evidence": _b64(report)}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{runner.addresses[0][1]}/v1/verify", data=body, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 (loopback)
        assert answer.value.code == 503 and answer.value.headers["Retry-After"] == "5"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# ----------------------------------------------------------------- a peer's own check


def member(q: Quote, account: Any, evidence: bytes) -> MemberRecord:
    return MemberRecord(
        enclave=q.enclave,
        role=ROLE_PROVIDER,
        quote=q,
        signature=b"",
        possession=sign_possession(q, bytes(account.key)),
        evidence_type=int(EvidenceType.AMD_SEV_SNP),
        evidence=evidence,
    )


def test_a_peer_accepts_an_anchored_snp_member_and_refuses_a_stale_or_unanchored_one(
    anvil: Web3, chip: tuple[ReportSigner, Path]
) -> None:
    signer, _ = chip
    account = Account.create()
    measurement = snp_measurement(SnpReport(signer.report(bytes(64))))
    q = quote(anvil.eth.chain_id, measurement, enclave=account.address)
    judge = EvidenceJudge(snp_verifiers(chip), snp_policy(SNP_MEASUREMENT))
    anchored = member(q, account, signer.report(claims_of(q).report_data(recent_block_hash(anvil, 0))))
    now = head_time(anvil) + 5

    def check(record: MemberRecord, at: int, block_time: Any = block_time_on(anvil)) -> None:
        verify_member_evidence(
            record,
            judge,
            approved_measurements={measurement},
            chain_id=anvil.eth.chain_id,
            registry=REGISTRY,
            now=at,
            block_time=block_time,
        )

    check(anchored, now)
    with pytest.raises(PeerEvidenceRefused, match="max_age"):
        check(anchored, now + 601)
    with pytest.raises(PeerEvidenceRefused, match="freshness"):
        check(anchored, now, block_time=None)
    unanchored = member(q, account, signer.report(claims_of(q).report_data(os.urandom(32))))
    with pytest.raises(PeerEvidenceRefused, match="freshness"):
        check(unanchored, now)
    mislabelled = MemberRecord(**{**anchored.__dict__, "evidence_type": int(EvidenceType.INTEL_TDX)})
    with pytest.raises(PeerEvidenceRefused, match="verifies no intel-tdx evidence"):
        check(mislabelled, now)


def test_verify_presented_checks_the_type_the_evidence_proves(
    anvil: Web3, chip: tuple[ReportSigner, Path], dcap_dir: Path
) -> None:
    signer, _ = chip
    verifiers = snp_verifiers(chip) | verifiers_for(dcap_collateral=dcap_dir)
    with pytest.raises(EvidenceTypeError, match="intel-sgx is intel-tdx"):
        verify_presented(verifiers, "intel-sgx", sample_quote(TDX.quote), now=TDX.at)
    with pytest.raises(EvidenceTypeError, match="no simulated verifier here"):
        verify_presented(verifiers, "simulated", b"x", now=0)
    verified = verify_presented(verifiers, "amd-sev-snp", signer.report(bytes(64)), now=int(time.time()))
    assert challenge_time(verified, block_time_on(anvil)) is None  # zero challenge: no block


def test_recent_block_hash_is_confirmed_depth_below_the_head(anvil: Web3) -> None:
    head = anvil.eth.block_number
    assert recent_block_hash(anvil, 0) == bytes(anvil.eth.get_block(head)["hash"])
    assert recent_block_hash(anvil, 10**6) == bytes(anvil.eth.get_block(0)["hash"])
    assert block_time_on(anvil)(recent_block_hash(anvil, 0)) == anvil.eth.get_block(head)["timestamp"]


# ------------------------------------------------------------------- configuration


def test_collateral_and_pins_are_checked_when_configured(tmp_path: Path, chip: Any) -> None:
    with pytest.raises(ConfigError, match="SNP collateral: .* is not a directory"):
        verifiers_for(snp_collateral=tmp_path / "none")
    with pytest.raises(ConfigError, match="holds no certificate"):
        verifiers_for(snp_collateral=tmp_path)
    with pytest.raises(ConfigError, match="DCAP collateral: .* is not a directory"):
        verifiers_for(dcap_collateral=tmp_path / "none")
    with pytest.raises(ConfigError, match="no SNP collateral"):
        verifiers_for(amd_ark_sha256={"Milan": bytes(32)})
    with pytest.raises(ConfigError, match="unknown product family 'Rome'"):
        parse_ark_pins({"Rome": "00" * 32}, "pins")
    with pytest.raises(ConfigError, match="expected 32 bytes of hex"):
        parse_ark_pins({"Milan": "abc"}, "pins")
    assert parse_ark_pins({}, "pins") is None
