"""Intel DCAP TCB evaluation as pure functions over verified collateral: the QE
identity and its TCB status, the platform's TCB level (TCB Info v2 and v3, SGX and
TDX), the TDX module's identity and status, and the converged status, following
Intel's Quote Verification Library (``TcbLevelCheck``, ``TdxModuleCheck``,
``convergeTcbStatus*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from enclave_agent.tee.dcap_pck import PckTcb
from enclave_agent.tee.dcap_quote import DcapError, EnclaveReport, TdReport

# Intel's statuses, best first; policy's minimum TCB status compares by this order.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)


class DcapTcbError(DcapError):
    """The quote's QE, platform or TDX module matches no acceptable TCB level or identity."""


@dataclass(frozen=True)
class TcbResult:
    status: str
    advisories: tuple[str, ...] = ()
    date: str = ""


def tcb_rank(status: str) -> int:
    """Position of ``status`` in ``TCB_STATUSES`` (0 is best)."""
    try:
        return TCB_STATUSES.index(status)
    except ValueError:
        raise DcapTcbError(f"unknown TCB status {status!r}") from None


def _hex(body: dict[str, Any], key: str, size: int, what: str) -> bytes:
    try:
        value = bytes.fromhex(str(body[key]))
    except (KeyError, ValueError):
        value = b""
    if len(value) != size:
        raise DcapTcbError(f"{what}: {key} is not {size} bytes of hex")
    return value


def _level(level: Any, what: str) -> TcbResult:
    if not isinstance(level, dict) or not isinstance(level.get("tcbStatus"), str):
        raise DcapTcbError(f"{what}: a TCB level has no tcbStatus")
    tcb_rank(level["tcbStatus"])
    advisories = level.get("advisoryIDs", [])
    return TcbResult(level["tcbStatus"], tuple(str(a) for a in advisories), str(level.get("tcbDate", "")))


def _levels(body: dict[str, Any], what: str) -> list[Any]:
    levels = body.get("tcbLevels")
    if not isinstance(levels, list) or not levels:
        raise DcapTcbError(f"{what} has no tcbLevels")
    return levels


def _isvsvn(level: Any, what: str) -> int:
    try:
        return int(level["tcb"]["isvsvn"])
    except (KeyError, TypeError, ValueError):
        raise DcapTcbError(f"{what}: a TCB level has no tcb.isvsvn") from None


def qe_identity_status(identity: dict[str, Any], qe: EnclaveReport, expected_id: str) -> TcbResult:
    """Check the QE report against Intel's QE Identity; its TCB status by ISVSVN."""
    what = f"QE Identity {identity.get('id')!r}"
    if identity.get("id") != expected_id:
        raise DcapTcbError(f"{what} is not for {expected_id}")
    misc = int.from_bytes(_hex(identity, "miscselect", 4, what), "big")
    misc_mask = int.from_bytes(_hex(identity, "miscselectMask", 4, what), "big")
    if qe.miscselect & misc_mask != misc:
        raise DcapTcbError(f"{what}: QE MISCSELECT {qe.miscselect:#010x} does not match {misc:#010x}")
    attributes, mask = _hex(identity, "attributes", 16, what), _hex(identity, "attributesMask", 16, what)
    if bytes(a & m for a, m in zip(qe.attributes, mask, strict=True)) != attributes:
        raise DcapTcbError(f"{what}: QE ATTRIBUTES {qe.attributes.hex()} do not match {attributes.hex()}")
    if qe.mrsigner != _hex(identity, "mrsigner", 32, what):
        raise DcapTcbError(f"{what}: QE MRSIGNER {qe.mrsigner.hex()} is not Intel's")
    if qe.isvprodid != identity.get("isvprodid"):
        raise DcapTcbError(f"{what}: QE ISVPRODID {qe.isvprodid} is not {identity.get('isvprodid')}")
    for level in _levels(identity, what):
        if qe.isvsvn >= _isvsvn(level, what):
            return _level(level, what)
    raise DcapTcbError(f"{what}: QE ISVSVN {qe.isvsvn} is below every TCB level")


def _sgx_components(tcb: dict[str, Any], version: int) -> list[int]:
    if version >= 3:
        return [int(c["svn"]) for c in tcb["sgxtcbcomponents"]]
    return [int(tcb[f"sgxtcbcomp{i:02d}svn"]) for i in range(1, 17)]


def platform_tcb(
    tcb_info: dict[str, Any], pck: PckTcb, tee_tcb_svn: bytes | None, *, quote_version: int
) -> TcbResult:
    """The first TCB level the platform meets: every PCK component SVN and the PCESVN
    (and for TDX every TEE_TCB_SVN byte, except the module's two when a module
    identity covers them) at or above the level's."""
    version = int(tcb_info.get("version", 0))
    what = f"TCB Info (FMSPC {tcb_info.get('fmspc')})"
    for level in _levels(tcb_info, what):
        try:
            tcb = level["tcb"]
            required = _sgx_components(tcb, version)
            pcesvn = int(tcb["pcesvn"])
            tdx = [int(c["svn"]) for c in tcb["tdxtcbcomponents"]] if tee_tcb_svn is not None else []
        except (KeyError, TypeError, ValueError):
            raise DcapTcbError(f"{what}: a TCB level is malformed") from None
        if len(required) != 16 or (tee_tcb_svn is not None and len(tdx) != 16):
            raise DcapTcbError(f"{what}: a TCB level does not list 16 components")
        if (
            any(have < need for have, need in zip(pck.components, required, strict=True))
            or pck.pcesvn < pcesvn
        ):
            continue
        if tee_tcb_svn is not None:
            skip = 2 if quote_version > 3 and tee_tcb_svn[1] > 0 else 0
            if any(tee_tcb_svn[i] < tdx[i] for i in range(skip, 16)):
                continue
        return _level(level, what)
    svns = ",".join(map(str, pck.components))
    raise DcapTcbError(
        f"{what}: no TCB level matches the platform (PCK SVNs [{svns}], PCESVN {pck.pcesvn}"
        + (f", TEE_TCB_SVN {tee_tcb_svn.hex()}" if tee_tcb_svn is not None else "")
        + "): TCB unrecognized"
    )


def _masked(value: bytes, mask: bytes) -> bytes:
    return bytes(v & m for v, m in zip(value, mask, strict=True))


def tdx_module_status(tcb_info: dict[str, Any], td: TdReport) -> TcbResult:
    """The TDX module's identity (MRSIGNERSEAM, SEAM attributes) and TCB status."""
    svn = td.tee_tcb_svn
    if svn[1] == 0:
        module, module_id = tcb_info.get("tdxModule"), "tdxModule"
    else:
        module_id = f"TDX_{svn[1]:02X}"
        identities = tcb_info.get("tdxModuleIdentities", [])
        module = next((m for m in identities if isinstance(m, dict) and m.get("id") == module_id), None)
    what = f"TDX module {module_id}"
    if not isinstance(module, dict):
        raise DcapTcbError(f"{what} has no identity in the TCB Info")
    if td.mrsignerseam != _hex(module, "mrsigner", 48, what):
        raise DcapTcbError(f"{what}: MRSIGNERSEAM {td.mrsignerseam.hex()} is not the module signer")
    mask = _hex(module, "attributesMask", 8, what)
    if _masked(td.seam_attributes, mask) != _masked(_hex(module, "attributes", 8, what), mask):
        raise DcapTcbError(f"{what}: SEAM attributes {td.seam_attributes.hex()} do not match")
    if svn[1] == 0:
        return TcbResult("UpToDate")
    for level in _levels(module, what):
        if svn[0] >= _isvsvn(level, what):
            return _level(level, what)
    raise DcapTcbError(f"{what}: TEE_TCB_SVN[0] = {svn[0]} is below every TCB level")


def converge(platform: TcbResult, others: Sequence[TcbResult]) -> TcbResult:
    """The platform status adjusted by the QE's and the TDX module's, as Intel does:
    an out-of-date QE or module makes the result out of date, a revoked one revoked."""
    status = platform.status
    for other in others:
        if other.status == "Revoked":
            status = "Revoked"
        elif other.status == "OutOfDate":
            if status in ("UpToDate", "SWHardeningNeeded"):
                status = "OutOfDate"
            elif status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
                status = "OutOfDateConfigurationNeeded"
    advisories = list(platform.advisories)
    for other in others:
        advisories.extend(a for a in other.advisories if a not in advisories)
    return TcbResult(status, tuple(advisories), platform.date)
