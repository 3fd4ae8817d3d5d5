"""Hardware backends, tested WITHOUT hardware: recorded real evidence replayed through
fake devices (the NSM and sev-guest ioctls, a configfs-tsm tree). These check the
requests we build and the answers we parse; they cannot show that a device behaves."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import cbor2
import pytest

from enclave_agent.config import TEE_BACKENDS
from enclave_agent.tee.backend import TeeBackend
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.hardware import (
    NSM_IOCTL_REQUEST,
    SNP_GET_REPORT,
    ConfigfsTsmDevice,
    HardwareTee,
    NitroNsmDevice,
    SevGuestDevice,
    TeeDeviceError,
    TsmFs,
    hardware_backend,
    report_data_of,
)
from enclave_agent.tee.nitro import NitroVerifier
from tests.support.tee_samples import DCAP_VECTORS, SNP_AT, nitro_sample, quote, snp_report, snp_verifier

BY_ROW = {v.row: v for v in DCAP_VECTORS}


class FakeNsm:
    """Answers an NSM Attestation ioctl with a recorded document."""

    def __init__(self, document: bytes) -> None:
        self.document, self.requests = document, []

    def __call__(self, fd: int, request: int, message: bytearray, mutate: bool) -> int:
        assert request == NSM_IOCTL_REQUEST and mutate and len(message) == 32
        req_addr, req_len, resp_addr, resp_cap = struct.unpack("<QQQQ", message)
        self.requests.append(cbor2.loads(ctypes.string_at(req_addr, req_len)))
        answer = cbor2.dumps({"Attestation": {"document": self.document}})
        assert len(answer) <= resp_cap
        ctypes.memmove(resp_addr, answer, len(answer))
        message[24:32] = struct.pack("<Q", len(answer))
        return 0


class FakeSevGuest:
    def __init__(self, report: bytes) -> None:
        self.report, self.requests = report, []

    def __call__(self, fd: int, request: int, message: bytearray, mutate: bool) -> int:
        assert request == SNP_GET_REPORT and len(message) == 32 and message[0] == 1
        req_addr, resp_addr = struct.unpack_from("<QQ", message, 8)
        self.requests.append(ctypes.string_at(req_addr, 96))
        answer = struct.pack("<II", 0, len(self.report)) + bytes(24) + self.report
        ctypes.memmove(resp_addr, answer, len(answer))
        return 0


class FakeTsm(TsmFs):
    """A configfs-tsm tree whose outblob is a recorded quote."""

    def __init__(self, provider: str, blob: bytes) -> None:
        self.provider, self.blob, self.files, self.dirs = provider, blob, {}, set()

    def mkdir(self, path: Path) -> None:
        self.dirs.add(path)

    def rmdir(self, path: Path) -> None:
        self.dirs.remove(path)

    def write(self, path: Path, data: bytes) -> None:
        assert path.parent in self.dirs and path.name == "inblob"
        self.files[path] = data

    def read(self, path: Path) -> bytes:
        assert path.parent in self.dirs
        return {"provider": self.provider.encode() + b"\n", "generation": b"1\n", "outblob": self.blob}[
            path.name
        ]


@pytest.fixture
def device_node(tmp_path: Path) -> Path:
    node = tmp_path / "device"
    node.write_bytes(b"")
    return node


def test_nitro_nsm_replay(device_node: Path) -> None:
    document = nitro_sample("anchorage_2022-11-09_eu-west-1.cose")
    fake = FakeNsm(document)
    tee = HardwareTee(NitroNsmDevice(device_node, ioctl=fake), measurement=bytes(32))
    assert isinstance(tee, TeeBackend) and not tee.simulated and tee.name == "aws-nitro"
    recorded = report_data_of("aws-nitro", document)  # user_data || nonce of the recorded document
    evidence = tee.raw_evidence(recorded)
    assert fake.requests == [
        {"Attestation": {"user_data": recorded[:32], "nonce": recorded[32:], "public_key": None}}
    ]
    assert NitroVerifier().verify(evidence).report_data == recorded[:32]


def test_a_replayed_answer_for_other_report_data_never_leaves(device_node: Path) -> None:
    tee = HardwareTee(
        NitroNsmDevice(device_node, ioctl=FakeNsm(nitro_sample("anchorage_2022-11-09_eu-west-1.cose")))
    )
    keys = tee.load_or_create_keys()
    claims = BindingClaims(
        keys.address, keys.x25519_public, 31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    )
    with pytest.raises(TeeDeviceError, match="evidence for other report data"):
        tee.attest(claims)
    other = BindingClaims(
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", keys.x25519_public, 31337, claims.registry
    )
    with pytest.raises(TeeDeviceError, match="other keys than this enclave's"):
        tee.attest(other)


def test_tdx_configfs_tsm_replay() -> None:
    vector = BY_ROW["7"]
    recorded = quote(vector.quote)
    fs = FakeTsm("tdx_guest", recorded)
    tee = HardwareTee(ConfigfsTsmDevice("tdx_guest", Path("/tsm"), fs=fs), measurement=bytes(32))
    report_data = report_data_of("intel-tdx", recorded)
    evidence = tee.raw_evidence(report_data)
    assert list(fs.files.values()) == [report_data] and not fs.dirs  # entry removed afterwards
    assert vector.verifier().verify(evidence, at=vector.at).tcb_status == "UpToDate"
    with pytest.raises(TeeDeviceError, match="provider is 'tdx_guest', expected 'sev_guest'"):
        ConfigfsTsmDevice("sev_guest", Path("/tsm"), fs=fs).evidence(report_data)


def test_snp_sev_guest_replay(device_node: Path) -> None:
    recorded = snp_report("virtee_milan_report.hex")
    fake = FakeSevGuest(recorded)
    tee = HardwareTee(SevGuestDevice(device_node, ioctl=fake), measurement=bytes(32))
    report_data = report_data_of("amd-sev-snp", recorded)
    evidence = tee.raw_evidence(report_data)
    assert fake.requests == [report_data + bytes(32)]  # user_data, VMPL 0, reserved
    assert snp_verifier().verify(evidence, at=SNP_AT).platform == "amd-sev-snp"


def test_keys_and_sealing_stay_in_enclave_memory(device_node: Path) -> None:
    tee = HardwareTee(NitroNsmDevice(device_node, ioctl=FakeNsm(b"")), measurement=bytes(32))
    blob = tee.seal("x", b"secret")
    assert tee.unseal("x", blob) == b"secret"
    with pytest.raises(Exception, match="cannot unseal"):
        HardwareTee(NitroNsmDevice(device_node, ioctl=FakeNsm(b"")), measurement=bytes(32)).unseal("x", blob)


def test_missing_devices_and_config_selection(tmp_path: Path) -> None:
    assert TEE_BACKENDS == ("simulated", "aws-nitro", "intel-tdx", "amd-sev-snp")
    for tee, message in (
        ("aws-nitro", "cannot be opened"),
        ("amd-sev-snp", "cannot be opened"),
        ("intel-tdx", "not usable"),
    ):
        backend = hardware_backend(tee, device_path=tmp_path / "absent")
        with pytest.raises(TeeDeviceError, match=message):
            backend.raw_evidence(bytes(64))
    with pytest.raises(TeeDeviceError, match="no hardware TEE backend"):
        hardware_backend("simulated")
