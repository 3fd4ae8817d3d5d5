"""Evidence policy files (TOML). Every problem is one ``PolicyFileError`` line naming
the file and the key. Example::

    version = 1

    [defaults]                       # every role and type, unless its own table says otherwise
    allow_debug = false
    max_age = 600                    # seconds; evidence with a signed time (Nitro)
    min_tcb_status = "UpToDate"      # Intel DCAP: UpToDate, SWHardeningNeeded, ConfigurationNeeded,
                                     # ConfigurationAndSWHardeningNeeded, OutOfDate,
                                     # OutOfDateConfigurationNeeded

    [roles.provider.aws-nitro]
    approved = [{ PCR0 = "f4d4...", PCR1 = "bcdf...", PCR2 = "d8f1..." }]

    [roles.provider.intel-tdx]
    approved = [{ MRTD = "...", RTMR0 = "...", RTMR1 = "...", RTMR2 = "...", RTMR3 = "..." }]
    min_tcb_status = "OutOfDate"

    [roles.provider.intel-sgx]
    approved = [{ MRENCLAVE = "..." }, { MRSIGNER = "..." }]

    [roles.provider.amd-sev-snp]
    approved = [{ MEASUREMENT = "..." }]
    min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }

    [roles.gateway.simulated]
    approved = [{ measurement = "0x..." }]

Roles are the registry's (``provider``, ``gateway``); evidence types are
``EvidenceType`` labels. Each approved entry names at least the measurements the
type requires (``policy.REQUIRED_KEYS``); values are hex, with or without ``0x``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from enclave_agent.errors import ConfigError
from enclave_agent.onchain import ROLES as ONCHAIN_ROLES
from enclave_agent.tee.dcap_tcb import TCB_STATUSES
from enclave_agent.tee.policy import (
    DEFAULT_MAX_AGE,
    MEASUREMENT_KEYS,
    REQUIRED_KEYS,
    SNP_TCB_COMPONENTS,
    Policy,
    TypeRule,
)

ROLES = tuple(ONCHAIN_ROLES)
_RULE_KEYS = {"approved", "allow_debug", "max_age", "min_tcb_status", "min_tcb"}


class PolicyFileError(ConfigError):
    """A policy file is unreadable or invalid (one line: file, key, problem)."""


class _Context:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> PolicyFileError:
        return PolicyFileError(f"{self.path}: {key}: {problem}")


def _settings(ctx: _Context, table: dict[str, Any], where: str, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` overridden by the rule settings in ``table`` (``approved`` excluded)."""
    settings = dict(base)
    if "allow_debug" in table:
        if not isinstance(table["allow_debug"], bool):
            raise ctx.fail(f"{where}allow_debug", "expected true or false")
        settings["allow_debug"] = table["allow_debug"]
    if "max_age" in table:
        value = table["max_age"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31 * 86400:
            raise ctx.fail(f"{where}max_age", "expected seconds between 1 and 2678400")
        settings["max_age"] = value
    if "min_tcb_status" in table:
        if table["min_tcb_status"] not in TCB_STATUSES[:-1]:
            raise ctx.fail(f"{where}min_tcb_status", f"expected one of {', '.join(TCB_STATUSES[:-1])}")
        settings["min_tcb_status"] = table["min_tcb_status"]
    if "min_tcb" in table:
        value = table["min_tcb"]
        if not isinstance(value, dict):
            raise ctx.fail(f"{where}min_tcb", "expected a table of SNP TCB components")
        for component, svn in value.items():
            if component not in SNP_TCB_COMPONENTS:
                raise ctx.fail(
                    f"{where}min_tcb.{component}", f"expected one of {', '.join(SNP_TCB_COMPONENTS)}"
                )
            if isinstance(svn, bool) or not isinstance(svn, int) or not 0 <= svn <= 255:
                raise ctx.fail(f"{where}min_tcb.{component}", "expected an integer 0..255")
        settings["min_tcb"] = dict(value)
    return settings


def _entry(ctx: _Context, entry: Any, evidence_type: str, where: str) -> dict[str, bytes]:
    if not isinstance(entry, dict) or not entry:
        raise ctx.fail(where, 'expected a table of measurements, e.g. { MRTD = "..." }')
    sizes = MEASUREMENT_KEYS[evidence_type]
    values: dict[str, bytes] = {}
    for key, text in entry.items():
        if key not in sizes:
            raise ctx.fail(
                f"{where}.{key}", f"not a measurement of {evidence_type} ({', '.join(sorted(sizes))})"
            )
        try:
            value = bytes.fromhex(text.removeprefix("0x")) if isinstance(text, str) else b""
        except ValueError:
            value = b""
        if len(value) != sizes[key]:
            raise ctx.fail(f"{where}.{key}", f"expected {sizes[key]} bytes of hex")
        values[key] = value
    if not any(required <= values.keys() for required in REQUIRED_KEYS[evidence_type]):
        options = " or ".join("+".join(sorted(r)) for r in REQUIRED_KEYS[evidence_type])
        raise ctx.fail(where, f"an approved {evidence_type} entry must name {options}")
    return values


def _rule(ctx: _Context, table: Any, where: str, evidence_type: str, defaults: dict[str, Any]) -> TypeRule:
    if not isinstance(table, dict):
        raise ctx.fail(where.rstrip("."), "expected a table")
    unknown = set(table) - _RULE_KEYS
    if unknown:
        raise ctx.fail(
            f"{where}{sorted(unknown)[0]}", f"unknown key (expected {', '.join(sorted(_RULE_KEYS))})"
        )
    approved = table.get("approved")
    if not isinstance(approved, list) or not approved:
        raise ctx.fail(f"{where}approved", "expected a non-empty list of measurement tables")
    entries = tuple(
        _entry(ctx, entry, evidence_type, f"{where}approved[{i}]") for i, entry in enumerate(approved)
    )
    settings = _settings(ctx, table, where, defaults)
    return TypeRule(approved=entries, **settings)


def parse_policy(raw: dict[str, Any], path: Path) -> Policy:
    ctx = _Context(path)
    unknown = set(raw) - {"version", "defaults", "roles"}
    if unknown:
        raise ctx.fail(sorted(unknown)[0], "unknown key (expected version, defaults, roles)")
    if raw.get("version") != 1:
        raise ctx.fail("version", "expected 1")
    defaults_table = raw.get("defaults", {})
    if not isinstance(defaults_table, dict):
        raise ctx.fail("defaults", "expected a table")
    unknown = set(defaults_table) - (_RULE_KEYS - {"approved"})
    if unknown:
        raise ctx.fail(f"defaults.{sorted(unknown)[0]}", "unknown key")
    base = {"allow_debug": False, "max_age": DEFAULT_MAX_AGE, "min_tcb_status": "UpToDate", "min_tcb": {}}
    defaults = _settings(ctx, defaults_table, "defaults.", base)
    roles_table = raw.get("roles")
    if not isinstance(roles_table, dict) or not roles_table:
        raise ctx.fail("roles", "expected at least one [roles.ROLE.TYPE] table")
    roles: dict[str, dict[str, TypeRule]] = {}
    for role, types in roles_table.items():
        if role not in ROLES:
            raise ctx.fail(f"roles.{role}", f"unknown role (expected {', '.join(ROLES)})")
        if not isinstance(types, dict) or not types:
            raise ctx.fail(f"roles.{role}", "expected one table per evidence type")
        roles[role] = {}
        for evidence_type, table in types.items():
            if evidence_type not in MEASUREMENT_KEYS:
                raise ctx.fail(
                    f"roles.{role}.{evidence_type}",
                    f"unknown evidence type (expected {', '.join(MEASUREMENT_KEYS)})",
                )
            roles[role][evidence_type] = _rule(
                ctx, table, f"roles.{role}.{evidence_type}.", evidence_type, defaults
            )
    return Policy(roles=roles, source=str(path))


def load_policy(path: Path | str) -> Policy:
    """Read and check a policy file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read policy: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: invalid TOML: {exc}") from None
    return parse_policy(raw, path)
