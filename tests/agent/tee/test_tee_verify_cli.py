"""enclave-agent verify-evidence: verdicts, JSON and exit codes on the real samples."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from enclave_agent.cli import main
from tests.support.tee_samples import DCAP, DCAP_VECTORS, NITRO, SNP, SNP_AT, quote

BY_ROW = {v.row: v for v in DCAP_VECTORS}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["verify-evidence", *map(str, argv)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


@pytest.fixture
def row7(tmp_path: Path) -> Path:
    folder = tmp_path / "collateral"
    folder.mkdir()
    for path in BY_ROW["7"].collateral_paths():
        shutil.copy(path, folder)
    return folder


def test_dcap_quote_verified_without_policy(capsys: pytest.CaptureFixture[str], row7: Path) -> None:
    code, report = run(
        capsys, DCAP / "quotes" / BY_ROW["7"].quote, "--collateral", row7, "--at", BY_ROW["7"].at
    )
    assert code == 0 and report["verdict"] == "verified" and report["type"] == "intel-tdx"
    assert report["tcbStatus"] == "UpToDate" and str(report["measurement"]).startswith("0x")
    assert report["record"]["typeCode"] == 4  # type: ignore[index]


def test_tampered_quote_is_invalid(capsys: pytest.CaptureFixture[str], row7: Path, tmp_path: Path) -> None:
    data = bytearray(quote(BY_ROW["7"].quote))
    data[700] ^= 1
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    code, report = run(capsys, bad, "--collateral", row7, "--at", BY_ROW["7"].at)
    assert code == 8 and report["verdict"] == "invalid"
    assert report["reasons"][0]["rule"] == "verification"  # type: ignore[index]


def test_policy_refusal_lists_every_reason(
    capsys: pytest.CaptureFixture[str], row7: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    z = "00" * 48
    policy.write_text(
        f'version = 1\n[roles.provider.intel-tdx]\napproved = [{{ MRTD = "{"11" * 48}", RTMR0 = "{z}", '
        f'RTMR1 = "{z}", RTMR2 = "{z}", RTMR3 = "{z}" }}]\n'
    )
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "type": "intel-tdx",
                "evidence": base64.b64encode(quote(BY_ROW["7"].quote)).decode(),
                "claims": {
                    "enclave": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "x25519Key": "0x" + "ab" * 32,
                    "chainId": 31337,
                    "registry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                },
            }
        )
    )
    code, report = run(
        capsys, bundle, "--collateral", row7, "--at", "2025-07-19T10:00:34Z", "--policy", policy
    )
    assert code == 9 and report["verdict"] == "refused"
    assert [r["rule"] for r in report["reasons"]] == ["measurement", "freshness", "binding"]  # type: ignore[union-attr]
    assert report["boundKeys"]["claimsBound"] is False  # type: ignore[index]


def test_nitro_and_snp_are_recognised(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = run(capsys, NITRO / "evervault_2023-09-18_debug.b64")
    assert code == 0 and report["type"] == "aws-nitro" and report["debug"] is True
    code, report = run(capsys, SNP / "virtee_milan_report.hex", "--collateral", SNP, "--at", SNP_AT)
    assert code == 0 and report["type"] == "amd-sev-snp" and report["tcb"]["microcode"] == 115  # type: ignore[index]


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["verify-evidence", str(DCAP / "quotes" / BY_ROW["7"].quote)]) == 2
    assert "needs --collateral" in capsys.readouterr().err
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01\x02")
    assert main(["verify-evidence", str(junk)]) == 2
    assert main(["verify-evidence", str(NITRO / "evervault_2022-10-13_prod.cose"), "--at", "yesterday"]) == 2
    bad_policy = tmp_path / "p.toml"
    bad_policy.write_text("version = 3")
    assert (
        main(["verify-evidence", str(NITRO / "evervault_2022-10-13_prod.cose"), "--policy", str(bad_policy)])
        == 2
    )
    assert f"{bad_policy}: version: expected 1" in capsys.readouterr().err
