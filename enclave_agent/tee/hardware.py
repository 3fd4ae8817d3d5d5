"""Hardware TEE backends: evidence from a real device, behind ``TeeBackend``.

Devices (each asks for evidence over 64 bytes of report data laid out by
``enclave_agent.tee.binding``: binding || challenge):

- ``NitroNsmDevice``: ``/dev/nsm``, the Nitro Secure Module's ioctl with a CBOR
  ``Attestation`` request (``user_data`` = binding, ``nonce`` = challenge);
- ``ConfigfsTsmDevice``: Linux's configfs-tsm report interface
  (``/sys/kernel/config/tsm/report``; provider ``tdx_guest`` gives a TDX quote,
  ``sev_guest`` an SNP report): write ``inblob``, read ``outblob``;
- ``SevGuestDevice``: ``/dev/sev-guest``'s ``SNP_GET_REPORT`` ioctl.

NONE OF THIS RUNS ON THE MACHINES THIS PROJECT IS BUILT AND TESTED ON: there is no
Nitro, TDX or SNP hardware. The tests replay recorded real evidence through fake
devices (``tests/agent/tee/test_tee_hardware.py``): they check the requests we build
and the answers we parse, not a device. ``HardwareTee`` refuses evidence whose report
data is not what it asked for, so a stale or replayed answer never leaves it.

Keys and sealing: none of these devices gives this agent a sealing key it can use
today (Nitro and TDX have none; SNP's derived key is a later step), so a
``HardwareTee`` keeps its keys and sealing key in enclave memory only: a restart
makes new keys, and the enclave registers again. Persistent sealed state on hardware
needs a key-release service (KMS) bound to attestation.
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import logging
import os
import secrets
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclave_agent.errors import EnclaveAgentError, SealingError
from enclave_agent.tee.backend import EnclaveKeys
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.measure import measure_package

logger = logging.getLogger(__name__)

NSM_IOCTL_REQUEST = 0xC0200A00  # _IOWR(0x0A, 0, struct nsm_message) (32 bytes)
NSM_RESPONSE_MAX = 0x3000
SNP_GET_REPORT = 0xC0205300  # _IOWR('S', 0, struct snp_guest_request_ioctl) (32 bytes)
SNP_REPORT_RESPONSE = 4000
TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
Ioctl = Callable[[int, int, bytearray, bool], Any]


class TeeDeviceError(EnclaveAgentError):
    """A TEE device is missing, refused a request, or answered for other report data."""


class EvidenceDevice(Protocol):
    evidence_type: str

    def evidence(self, report_data: bytes) -> bytes:
        """Evidence over 64 bytes of report data."""
        ...


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR)
    except OSError as exc:
        raise TeeDeviceError(f"TEE device {path} cannot be opened: {exc.strerror}") from None


class NitroNsmDevice:
    evidence_type = "aws-nitro"

    def __init__(self, path: Path = Path("/dev/nsm"), *, ioctl: Ioctl | None = None) -> None:
        self.path, self._ioctl = Path(path), ioctl or fcntl.ioctl

    def evidence(self, report_data: bytes) -> bytes:
        request = cbor2.dumps(
            {"Attestation": {"user_data": report_data[:32], "nonce": report_data[32:], "public_key": None}}
        )
        req = ctypes.create_string_buffer(request, len(request))
        resp = ctypes.create_string_buffer(NSM_RESPONSE_MAX)
        message = bytearray(
            struct.pack(
                "<QQQQ", ctypes.addressof(req), len(request), ctypes.addressof(resp), NSM_RESPONSE_MAX
            )
        )
        fd = _open(self.path)
        try:
            self._ioctl(fd, NSM_IOCTL_REQUEST, message, True)
        except OSError as exc:
            raise TeeDeviceError(f"{self.path}: attestation request failed: {exc.strerror}") from None
        finally:
            os.close(fd)
        length = struct.unpack_from("<Q", message, 24)[0]
        try:
            answer = cbor2.loads(resp.raw[: min(length, NSM_RESPONSE_MAX)])
        except (cbor2.CBORError, ValueError, EOFError):
            raise TeeDeviceError(f"{self.path}: the NSM's answer is not CBOR") from None
        attestation = answer.get("Attestation") if isinstance(answer, dict) else None
        document = attestation.get("document") if isinstance(attestation, dict) else None
        if not isinstance(document, bytes):
            raise TeeDeviceError(f"{self.path}: the NSM answered {str(answer)[:80]}")
        return document


class SevGuestDevice:
    evidence_type = "amd-sev-snp"

    def __init__(
        self, path: Path = Path("/dev/sev-guest"), *, vmpl: int = 0, ioctl: Ioctl | None = None
    ) -> None:
        self.path, self.vmpl, self._ioctl = Path(path), vmpl, ioctl or fcntl.ioctl

    def evidence(self, report_data: bytes) -> bytes:
        req = ctypes.create_string_buffer(bytes(report_data) + struct.pack("<I", self.vmpl) + bytes(28), 96)
        resp = ctypes.create_string_buffer(SNP_REPORT_RESPONSE)
        message = bytearray(struct.pack("<B7xQQQ", 1, ctypes.addressof(req), ctypes.addressof(resp), 0))
        fd = _open(self.path)
        try:
            self._ioctl(fd, SNP_GET_REPORT, message, True)
        except OSError as exc:
            fw_error = struct.unpack_from("<I", message, 24)[0]
            raise TeeDeviceError(
                f"{self.path}: SNP_GET_REPORT failed: {exc.strerror} (firmware {fw_error:#x})"
            ) from None
        finally:
            os.close(fd)
        status, size = struct.unpack_from("<II", resp.raw, 0)
        if status != 0 or size != 0x4A0:
            raise TeeDeviceError(f"{self.path}: SNP report status {status:#x}, size {size}")
        return bytes(resp.raw[32 : 32 + size])


class TsmFs:
    """The file operations configfs-tsm needs (a seam for tests)."""

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()


class ConfigfsTsmDevice:
    """configfs-tsm: one report entry per request, ``generation`` checked so that a
    concurrent writer's inblob cannot slip in between."""

    def __init__(self, provider: str, root: Path = TSM_REPORT_ROOT, *, fs: TsmFs | None = None) -> None:
        types = {"tdx_guest": "intel-tdx", "sev_guest": "amd-sev-snp"}
        if provider not in types:
            raise TeeDeviceError(f"configfs-tsm provider {provider!r} is not tdx_guest or sev_guest")
        self.provider, self.evidence_type = provider, types[provider]
        self.root, self.fs = Path(root), fs or TsmFs()

    def evidence(self, report_data: bytes) -> bytes:
        entry = self.root / f"enclave-share-{secrets.token_hex(6)}"
        try:
            self.fs.mkdir(entry)
        except OSError as exc:
            raise TeeDeviceError(f"configfs-tsm {self.root} is not usable: {exc.strerror}") from None
        try:
            provider = self.fs.read(entry / "provider").decode().strip()
            if provider != self.provider:
                raise TeeDeviceError(f"configfs-tsm provider is {provider!r}, expected {self.provider!r}")
            self.fs.write(entry / "inblob", bytes(report_data))
            before = self.fs.read(entry / "generation")
            blob = self.fs.read(entry / "outblob")
            if self.fs.read(entry / "generation") != before:
                raise TeeDeviceError("configfs-tsm report entry changed while it was read")
            return blob
        except OSError as exc:
            raise TeeDeviceError(f"configfs-tsm {entry}: {exc.strerror}") from None
        finally:
            try:
                self.fs.rmdir(entry)
            except OSError:
                logger.warning("configfs-tsm entry %s could not be removed", entry)


def report_data_of(evidence_type: str, evidence: bytes) -> bytes:
    """The 64 bytes of report data the evidence carries (Nitro: user_data || nonce)."""
    if evidence_type == "aws-nitro":
        from enclave_agent.tee.nitro import NitroDocumentError

        try:
            cose = cbor2.loads(evidence)
            payload = cbor2.loads((cose.value if isinstance(cose, cbor2.CBORTag) else cose)[2])
            return bytes(payload.get("user_data") or b"") + bytes(payload.get("nonce") or b"")
        except (cbor2.CBORError, ValueError, TypeError, IndexError, AttributeError, EOFError):
            raise NitroDocumentError("the NSM's document does not decode") from None
    if evidence_type == "amd-sev-snp":
        from enclave_agent.tee.sevsnp import parse_report

        return parse_report(evidence).report_data
    from enclave_agent.tee.dcap_quote import parse_quote

    return parse_quote(evidence).body.report_data


class HardwareTee:
    """``TeeBackend`` on a TEE device: keys and sealing key in enclave memory only
    (see module doc), evidence from ``device``."""

    simulated = False

    def __init__(self, device: EvidenceDevice, *, measurement: bytes | None = None) -> None:
        self.device = device
        self.name = device.evidence_type
        self._measurement = measure_package() if measurement is None else measurement
        self._keys = EnclaveKeys.generate()
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        logger.info(
            "TEE backend: %s (hardware; keys in enclave memory only) address=%s",
            self.name,
            self._keys.address,
        )

    def measurement(self) -> bytes:
        """The agent code's measurement; the platform's own is in the evidence."""
        return self._measurement

    def load_or_create_keys(self) -> EnclaveKeys:
        return self._keys

    def seal(self, label: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return b"\x01" + nonce + self._aead.encrypt(nonce, plaintext, label.encode())

    def unseal(self, label: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], label.encode())
        except (InvalidTag, ValueError):
            raise SealingError(
                f"cannot unseal {label!r}: not sealed by this enclave run under this label"
            ) from None

    def raw_evidence(self, report_data: bytes) -> bytes:
        """Evidence over exactly ``report_data`` (64 bytes), checked to carry it."""
        if len(report_data) != 64:
            raise TeeDeviceError(f"report data is 64 bytes, got {len(report_data)}")
        evidence = self.device.evidence(report_data)
        if report_data_of(self.name, evidence) != report_data:
            raise TeeDeviceError(f"{self.name} device answered with evidence for other report data")
        return evidence

    def attest(self, claims: BindingClaims, challenge: bytes = bytes(32)) -> dict[str, object]:
        """An evidence bundle (``enclave_agent.tee.verify``) binding this enclave's keys."""
        keys = self._keys
        if (claims.enclave, claims.x25519_key) != (keys.address, keys.x25519_public):
            raise TeeDeviceError("attest: the claims name other keys than this enclave's")
        evidence = self.raw_evidence(claims.report_data(challenge))
        return {
            "type": self.name,
            "evidence": base64.b64encode(evidence).decode(),
            "claims": claims.to_json(),
            "challenge": "0x" + bytes(challenge).hex(),
        }


def hardware_backend(tee: str, *, device_path: Path | None = None) -> HardwareTee:
    """The backend ``[agent] tee = ...`` names (``simulated`` is ``SimulatedTee``)."""
    devices: dict[str, Callable[[], EvidenceDevice]] = {
        "aws-nitro": lambda: NitroNsmDevice(device_path or Path("/dev/nsm")),
        "intel-tdx": lambda: ConfigfsTsmDevice("tdx_guest", device_path or TSM_REPORT_ROOT),
        "amd-sev-snp": lambda: SevGuestDevice(device_path or Path("/dev/sev-guest")),
    }
    if tee not in devices:
        raise TeeDeviceError(f"no hardware TEE backend {tee!r} ({', '.join(devices)})")
    return HardwareTee(devices[tee]())
