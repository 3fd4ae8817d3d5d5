"""Agent configuration: one TOML file per agent.

Example (provider)::

    [agent]
    name = "bank-a"
    role = "provider"             # provider | gateway
    state_dir = "var/bank-a"      # SQLite state, sealed keys, platform secret
    tee = "simulated"             # or aws-nitro, intel-tdx, amd-sev-snp (enclave_agent.tee.hardware)

    [chain]
    manifest = "deployments/local.json"
    rpc_url = "http://127.0.0.1:8545"   # optional: overrides the manifest's
    confirmations = 0
    poll_interval = 0.5

    [operator]
    key_file = "var/bank-a/operator.key" # hex private key of the operator account

    [attestation]
    service_url = "http://127.0.0.1:8600"

    [evidence]                          # optional: hardware evidence (issue 14)
    verifier_urls = ["http://127.0.0.1:8700"]  # a hardware member's evidence verifiers
                                        # (enclave-agent evidence-verifier); every one is asked
    policy = "evidence-policy.toml"     # the policy peers' hardware evidence is re-verified under
    nitro_root_sha256 = ["641a03..."]   # pinned AWS Nitro roots (default: AWS's)
    dcap_collateral = "collateral/intel"  # Intel TCB Info, QE Identity, CRLs: peers' SGX/TDX quotes
    snp_collateral = "collateral/amd"   # VCEKs and AMD ASK/ARK chains: peers' SEV-SNP reports
    amd_ark_sha256 = { Milan = "..." }  # pinned AMD ARKs per family (default: AMD's)

    [data]
    csv = "data/bank-a.csv"
    label_column = "target"

    [inputs.demo-vector]               # a named round input (inputTag on chain)
    values = [1.5, -2.0, 3.25]         # or: file = "vector.npy" / "vector.csv"

    [health]                            # optional: /healthz and /metrics (providers;
    host = "127.0.0.1"                  # the gateway serves them with its API)
    port = 8801

    [gateway]                           # gateway role only
    host = "127.0.0.1"
    port = 8700
    max_batch = 256
    # request_timeout = 60.0            # optional: seconds an HTTP call waits for the providers;
                                        # default: until the request expires on chain
    shutdown_grace = 30.0               # seconds SIGTERM waits for calls in flight
    partial_grace = 3.0                 # seconds to wait for every holder's partial once t
                                        # arrived (Shamir): more partials check and correct more
    rate_per_minute = 600               # requests (rows) a minute per client, then HTTP 429
    rate_burst = 256                    # at once; at least max_batch

    [gateway.api_keys]                  # client address = SHA-256 hex of its API key
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" = "5e88...<64 hex>"

    [gateway.custody_keys]              # API-key clients are custody accounts: the gateway
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" = "keys/client.key"  # signs with this key

Every problem is reported as one ConfigError line naming the file and the key.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from enclave_agent.errors import ConfigError
from enclave_agent.onchain import ROLES
from enclave_agent.tee._files import check_owner_only

TEE_BACKENDS = ("simulated", "aws-nitro", "intel-tdx", "amd-sev-snp")


@dataclass(frozen=True)
class InputSpec:
    """A round input the agent contributes when a round names its tag."""

    tag: str
    values: tuple[float, ...] | None = None
    file: Path | None = None


@dataclass(frozen=True)
class DataConfig:
    csv: Path
    label_column: str


@dataclass(frozen=True)
class HealthConfig:
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    api_keys: dict[str, str] = field(default_factory=dict)  # client address -> SHA-256 hex of its key
    custody_keys: dict[str, Path] = field(default_factory=dict)  # client address -> its key file
    max_batch: int = 256
    request_timeout: float | None = None  # None: until the request's on-chain deadline
    partial_grace: float = 3.0
    shutdown_grace: float = 30.0
    rate_per_minute: int = 600
    rate_burst: int = 256


@dataclass(frozen=True)
class EvidenceConfig:
    """Hardware evidence: where this member gets its evidence signed, and how it
    re-verifies its peers' evidence."""

    verifier_urls: tuple[str, ...] = ()
    policy: Path | None = None
    nitro_roots_sha256: tuple[str, ...] = ()
    dcap_collateral: Path | None = None
    snp_collateral: Path | None = None
    amd_ark_sha256: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    name: str
    role: str
    state_dir: Path
    tee: str
    manifest: Path
    rpc_url: str | None
    confirmations: int
    poll_interval: float
    operator_key_file: Path
    attestation_url: str
    data: DataConfig | None
    inputs: dict[str, InputSpec]
    gateway: GatewayConfig | None
    health: HealthConfig | None = None
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    @property
    def role_id(self) -> int:
        return ROLES[self.role]


class _Reader:
    """Typed access to one TOML table with errors that name file and key."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str) -> None:
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.prefix}{key}: {problem}")

    def get(self, key: str, kind: type, default: Any = ..., *, required: bool = True) -> Any:
        if key not in self.table:
            if default is not ... or not required:
                return None if default is ... else default
            raise self.fail(key, "missing")
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def path_of(self, key: str, base: Path, *, required: bool = True) -> Path | None:
        value = self.get(key, str, required=required)
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else (base / p)

    def only(self, *known: str) -> None:
        """Refuse a key this table does not have (a misspelling would be ignored silently)."""
        for key in self.table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                raise self.fail(key, "unknown key" + hint)

    def sub(self, key: str, *, required: bool = True) -> _Reader | None:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing table")
            return None
        value = self.table[key]
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return _Reader(self.path, value, f"{self.prefix}{key}.")


def load_config(path: Path | str) -> AgentConfig:
    """Parse and validate an agent config file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    base = path.resolve().parent
    root = _Reader(path, raw, "")
    unknown = set(raw) - {
        "agent",
        "chain",
        "operator",
        "attestation",
        "evidence",
        "data",
        "inputs",
        "gateway",
        "health",
    }
    if unknown:
        raise root.fail(sorted(unknown)[0], "unknown table")

    agent = root.sub("agent")
    chain = root.sub("chain")
    operator = root.sub("operator")
    attestation = root.sub("attestation")
    assert agent and chain and operator and attestation
    agent.only("name", "role", "state_dir", "tee")
    chain.only("manifest", "rpc_url", "confirmations", "poll_interval")
    operator.only("key_file")
    attestation.only("service_url")

    name = agent.get("name", str)
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise agent.fail("name", "use letters, digits, '-' and '_' only")
    role = agent.get("role", str)
    if role not in ROLES:
        raise agent.fail("role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    tee = agent.get("tee", str, "simulated")
    if tee not in TEE_BACKENDS:
        raise agent.fail("tee", f"must be one of {', '.join(TEE_BACKENDS)}, got {tee!r}")

    confirmations = chain.get("confirmations", int, 0)
    if confirmations < 0:
        raise chain.fail("confirmations", "must be >= 0")
    poll_interval = chain.get("poll_interval", float, 0.5)
    if not (math.isfinite(poll_interval) and 0.05 <= poll_interval <= 60):
        raise chain.fail("poll_interval", "must be between 0.05 and 60 seconds")
    rpc_url = chain.get("rpc_url", str, required=False)
    if rpc_url is not None and not rpc_url.startswith(("http://", "https://")):
        raise chain.fail("rpc_url", "must be an http(s) URL")
    service_url = attestation.get("service_url", str)
    if not service_url.startswith(("http://", "https://")):
        raise attestation.fail("service_url", "must be an http(s) URL")

    data_table = root.sub("data", required=False)
    data = None
    if data_table is not None:
        data_table.only("csv", "label_column")
        csv = data_table.path_of("csv", base)
        assert csv is not None
        if not csv.is_file():
            raise data_table.fail("csv", f"file {csv} does not exist")
        data = DataConfig(csv=csv, label_column=data_table.get("label_column", str))

    inputs: dict[str, InputSpec] = {}
    inputs_table = root.sub("inputs", required=False)
    if inputs_table is not None:
        for tag in inputs_table.table:
            if len(tag.encode()) > 32:
                raise inputs_table.fail(tag, "an input tag is at most 32 bytes")
            spec = inputs_table.sub(tag)
            assert spec is not None
            inputs[tag] = _input_spec(tag, spec, base)

    gateway = None
    gateway_table = root.sub("gateway", required=role == "gateway")
    if gateway_table is not None:
        gateway_table.only(
            "host",
            "port",
            "max_batch",
            "request_timeout",
            "shutdown_grace",
            "partial_grace",
            "rate_per_minute",
            "rate_burst",
            "api_keys",
            "custody_keys",
        )
        port = gateway_table.get("port", int, 8700)
        if not 0 <= port <= 65535:
            raise gateway_table.fail("port", "must be 0..65535")
        keys = gateway_table.sub("api_keys", required=False)
        api_keys: dict[str, str] = {}
        for client, digest in keys.table.items() if keys else []:
            if not is_address(client):
                raise gateway_table.fail(f"api_keys.{client}", "key must be a client address")
            if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
                raise gateway_table.fail(f"api_keys.{client}", "value must be the SHA-256 hex of the API key")
            api_keys[str(to_checksum_address(client))] = digest.lower()
        custody = gateway_table.sub("custody_keys", required=False)
        custody_keys: dict[str, Path] = {}
        for client in custody.table if custody else []:
            if not is_address(client):
                raise gateway_table.fail(f"custody_keys.{client}", "key must be a client address")
            assert custody is not None
            key_path = custody.path_of(client, base)
            assert key_path is not None
            custody_keys[str(to_checksum_address(client))] = key_path
        for client in api_keys:
            if client not in custody_keys:
                raise gateway_table.fail(
                    f"api_keys.{client}",
                    "an API-key client is a custody account: give its key file in [gateway.custody_keys]",
                )
        timeout = gateway_table.get("request_timeout", float, required=False)
        if timeout is not None and not 1 <= timeout <= 3600:
            raise gateway_table.fail("request_timeout", "must be between 1 and 3600 seconds")
        grace = gateway_table.get("partial_grace", float, 3.0)
        if not 0 <= grace <= (timeout or 3600):
            limit = timeout or 3600
            raise gateway_table.fail("partial_grace", f"must be between 0 and request_timeout ({limit:g})")
        shutdown_grace = gateway_table.get("shutdown_grace", float, 30.0)
        if not 0 <= shutdown_grace <= 3600:
            raise gateway_table.fail("shutdown_grace", "must be between 0 and 3600 seconds")
        max_batch = gateway_table.get("max_batch", int, 256)
        if not 1 <= max_batch <= 10_000:
            raise gateway_table.fail("max_batch", "must be between 1 and 10000")
        rate = gateway_table.get("rate_per_minute", int, 600)
        if not 1 <= rate <= 1_000_000:
            raise gateway_table.fail("rate_per_minute", "must be between 1 and 1000000")
        burst = gateway_table.get("rate_burst", int, max_batch)
        if not max_batch <= burst <= 1_000_000:
            raise gateway_table.fail(
                "rate_burst",
                f"must be between max_batch ({max_batch}) and 1000000, or a full batch never passes",
            )
        gateway = GatewayConfig(
            host=gateway_table.get("host", str, "127.0.0.1"),
            port=port,
            api_keys=api_keys,
            custody_keys=custody_keys,
            max_batch=max_batch,
            request_timeout=timeout,
            partial_grace=grace,
            shutdown_grace=shutdown_grace,
            rate_per_minute=rate,
            rate_burst=burst,
        )

    health = None
    health_table = root.sub("health", required=False)
    if health_table is not None:
        health_table.only("host", "port")
        health_port = health_table.get("port", int)
        if not 0 <= health_port <= 65535:
            raise health_table.fail("port", "must be 0..65535")
        health = HealthConfig(host=health_table.get("host", str, "127.0.0.1"), port=health_port)

    evidence = _evidence_config(root.sub("evidence", required=False), base)
    if tee != "simulated" and not evidence.verifier_urls:
        raise agent.fail(
            "tee", f"{tee!r} needs [evidence] verifier_urls (the verifiers that sign its evidence)"
        )

    state_dir = agent.path_of("state_dir", base)
    manifest = chain.path_of("manifest", base)
    key_file = operator.path_of("key_file", base)
    assert state_dir and manifest and key_file
    if state_dir.exists() and not state_dir.is_dir():
        raise agent.fail("state_dir", f"{state_dir} is a file, not a directory")
    return AgentConfig(
        path=path,
        name=name,
        role=role,
        state_dir=state_dir,
        tee=tee,
        manifest=manifest,
        rpc_url=rpc_url,
        confirmations=confirmations,
        poll_interval=poll_interval,
        operator_key_file=key_file,
        attestation_url=service_url.rstrip("/"),
        data=data,
        inputs=inputs,
        gateway=gateway,
        health=health,
        evidence=evidence,
    )


def _evidence_config(table: _Reader | None, base: Path) -> EvidenceConfig:
    if table is None:
        return EvidenceConfig()
    from enclave_agent.tee.verifier_service import parse_ark_pins, parse_roots

    table.only(
        "verifier_urls", "policy", "nitro_root_sha256", "dcap_collateral", "snp_collateral", "amd_ark_sha256"
    )
    urls = table.get("verifier_urls", list, [])
    if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
        raise table.fail("verifier_urls", "must be a list of http(s) URLs")
    roots = table.get("nitro_root_sha256", list, [])
    arks = table.get("amd_ark_sha256", dict, {})
    try:
        parse_roots(roots, "expected SHA-256 hex strings") if roots else None
    except ConfigError as exc:
        raise table.fail("nitro_root_sha256", str(exc)) from None
    try:
        parse_ark_pins(arks, "expected {family = SHA-256 hex}")
    except ConfigError as exc:
        raise table.fail("amd_ark_sha256", str(exc)) from None
    policy = table.path_of("policy", base, required=False)
    if policy is not None and not policy.is_file():
        raise table.fail("policy", f"file {policy} does not exist")
    collateral: dict[str, Path | None] = {}
    for key in ("dcap_collateral", "snp_collateral"):
        directory = collateral[key] = table.path_of(key, base, required=False)
        if directory is not None and not directory.is_dir():
            raise table.fail(key, f"directory {directory} does not exist")
    if arks and collateral["snp_collateral"] is None:
        raise table.fail("amd_ark_sha256", "pins AMD ARKs, but snp_collateral is not set")
    return EvidenceConfig(
        verifier_urls=tuple(u.rstrip("/") for u in urls),
        policy=policy,
        nitro_roots_sha256=tuple(roots),
        dcap_collateral=collateral["dcap_collateral"],
        snp_collateral=collateral["snp_collateral"],
        amd_ark_sha256=tuple(sorted(arks.items())),
    )


def read_secret(path: Path, what: str) -> str:
    """The stripped contents of a key file; ConfigError naming `what` and the path.
    A key file others can read is refused (see ``check_owner_only``)."""
    check_owner_only(path, what)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what} file {path} cannot be read: {exc.strerror}") from exc


def load_account(path: Path, what: str) -> LocalAccount:
    """A chain account from a file holding a hex private key."""
    key = read_secret(path, what)
    try:
        account: LocalAccount = Account.from_key(key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} file {path} does not hold a hex private key") from exc
    return account


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _input_spec(tag: str, spec: _Reader, base: Path) -> InputSpec:
    spec.only("values", "file")
    if ("values" in spec.table) == ("file" in spec.table):
        raise spec.fail("", "give exactly one of 'values' or 'file'")
    if "values" in spec.table:
        values = spec.get("values", list)
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise spec.fail("values", "must be a non-empty list of numbers")
        if not all(math.isfinite(float(v)) for v in values):
            raise spec.fail("values", "must be finite numbers")
        return InputSpec(tag=tag, values=tuple(float(v) for v in values))
    file = spec.path_of("file", base)
    assert file is not None
    if not file.is_file():
        raise spec.fail("file", f"file {file} does not exist")
    return InputSpec(tag=tag, file=file)
