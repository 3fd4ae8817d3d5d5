"""Agent config: a valid file loads; every kind of mistake is one clear line
naming the file and the key, and `enclave-agent` exits 2 without starting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from enclave_agent.config import load_config
from enclave_agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
CLIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HASH = "ab" * 32

VALID = """
[agent]
name = "bank-a"
role = "provider"
state_dir = "state"

[chain]
manifest = "manifest.json"
confirmations = 2
poll_interval = 1

[operator]
key_file = "operator.key"

[attestation]
service_url = "http://127.0.0.1:8600/"

[data]
csv = "data.csv"
label_column = "target"

[inputs.vec]
values = [1, 2.5, -3]

[inputs.big]
file = "vector.npy"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("a,target\n1,0\n")
    (tmp_path / "vector.npy").write_bytes(b"")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def test_valid_config_resolves_paths_relative_to_the_file(folder: Path) -> None:
    config = load_config(write(folder, VALID))
    assert (config.name, config.role, config.role_id) == ("bank-a", "provider", 1)
    assert config.state_dir == folder / "state" and config.manifest == folder / "manifest.json"
    assert config.confirmations == 2 and config.poll_interval == 1.0
    assert config.attestation_url == "http://127.0.0.1:8600"
    assert config.data is not None and config.data.csv == folder / "data.csv"
    assert config.inputs["vec"].values == (1.0, 2.5, -3.0)
    assert config.inputs["big"].file == folder / "vector.npy"
    assert config.gateway is None


def test_gateway_config(folder: Path) -> None:
    gateway_table = "[gateway]\nport = 9000\nmax_batch = 8\nrequest_timeout = 5\npartial_grace = 1.5\n"
    keys = f'[gateway.api_keys]\n"{CLIENT.lower()}" = "{HASH}"\n'
    custody = f'[gateway.custody_keys]\n"{CLIENT}" = "keys/client.key"\n'
    text = VALID.replace('role = "provider"', 'role = "gateway"') + "\n" + gateway_table + keys + custody
    gateway = load_config(write(folder, text)).gateway
    assert gateway is not None
    assert (gateway.port, gateway.max_batch, gateway.request_timeout) == (9000, 8, 5.0)
    assert gateway.partial_grace == 1.5
    assert (gateway.rate_per_minute, gateway.rate_burst) == (600, 8)  # burst defaults to max_batch
    assert gateway.api_keys == {CLIENT: HASH}
    assert gateway.custody_keys == {CLIENT: folder / "keys" / "client.key"}  # relative to the config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t + "\n[extra]\n", "extra: unknown table"),
        (lambda t: t.replace("[operator]", "[operators]"), "operators: unknown table"),
        (lambda t: t.replace('[operator]\nkey_file = "operator.key"\n', ""), "operator: missing table"),
        (lambda t: t.replace('name = "bank-a"', 'name = "bank a!"'), "agent.name: use letters"),
        (
            lambda t: t.replace('role = "provider"', 'role = "auditor"'),
            "agent.role: must be one of provider, gateway",
        ),
        (
            lambda t: t.replace('state_dir = "state"', "state_dir = 3"),
            "agent.state_dir: expected str, got int",
        ),
        (lambda t: t.replace("confirmations = 2", "confirmations = -1"), "chain.confirmations: must be >= 0"),
        (
            lambda t: t.replace("confirmations = 2", "confirmations = true"),
            "chain.confirmations: expected int",
        ),
        (
            lambda t: t.replace("poll_interval = 1", "poll_interval = 0"),
            "chain.poll_interval: must be between",
        ),
        (
            lambda t: t.replace("[chain]", '[chain]\nrpc_url = "ws://x"'),
            "chain.rpc_url: must be an http(s) URL",
        ),
        (
            lambda t: t.replace('service_url = "http://127.0.0.1:8600/"', 'service_url = "ftp://x"'),
            "service_url",
        ),
        (lambda t: t.replace('csv = "data.csv"', 'csv = "missing.csv"'), "data.csv: file"),
        (lambda t: t.replace('label_column = "target"\n', ""), "data.label_column: missing"),
        (
            lambda t: t.replace("values = [1, 2.5, -3]", "values = []"),
            "inputs.vec.values: must be a non-empty list",
        ),
        (lambda t: t.replace("values = [1, 2.5, -3]", 'values = [1, "x"]'), "inputs.vec.values"),
        (lambda t: t.replace("values = [1, 2.5, -3]", "values = [1, nan]"), "must be finite numbers"),
        (lambda t: t.replace('file = "vector.npy"', 'file = "vector.npy"\nvalues = [1]'), "exactly one of"),
        (lambda t: t.replace("[inputs.vec]", '[inputs."' + "x" * 33 + '"]'), "at most 32 bytes"),
        (lambda t: t.replace('role = "provider"', 'role = "gateway"'), "gateway: missing table"),
        (lambda t: t + "\n[gateway]\nport = 70000\n", "gateway.port: must be 0..65535"),
        (lambda t: t + "\n[health]\nport = 70000\n", "health.port: must be 0..65535"),
        (lambda t: t + '\n[health]\nhost = "::1"\n', "health.port: missing"),
        (lambda t: t + "\n[gateway]\nmax_batch = 0\n", "gateway.max_batch: must be between"),
        (lambda t: t + "\n[gateway]\nrate_per_minute = 0\n", "gateway.rate_per_minute: must be between"),
        (
            lambda t: t + "\n[gateway]\nrequest_timeout = 5\npartial_grace = 6\n",
            "gateway.partial_grace: must be between 0 and request_timeout (5)",
        ),
        (
            lambda t: t + "\n[gateway]\nmax_batch = 50\nrate_burst = 10\n",
            "gateway.rate_burst: must be between max_batch (50) and 1000000",
        ),
        (
            lambda t: t + f'\n[gateway]\n[gateway.api_keys]\n"not-an-address" = "{HASH}"\n',
            "key must be a client address",
        ),
        (lambda t: t + f'\n[gateway]\n[gateway.api_keys]\n"{CLIENT}" = "secret"\n', "SHA-256 hex"),
        (
            lambda t: t + f'\n[gateway]\n[gateway.api_keys]\n"{CLIENT}" = "{HASH}"\n',
            f"gateway.api_keys.{CLIENT}: an API-key client is a custody account",
        ),
        (
            lambda t: t + '\n[gateway]\n[gateway.custody_keys]\n"nobody" = "k.key"\n',
            "gateway.custody_keys.nobody: key must be a client address",
        ),
        (lambda t: t.replace("[agent]", "[agent"), "invalid TOML"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(folder: Path, change, message: str) -> None:
    path = write(folder, change(VALID))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_unreadable_file(folder: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(folder / "nope.toml")


@pytest.mark.parametrize("command", ["run", "gateway", "status"])
def test_cli_exits_2_with_one_line_and_starts_nothing(folder: Path, command: str) -> None:
    path = write(folder, VALID.replace('role = "provider"', 'role = "auditor"'))
    result = subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("enclave-agent: error: ")
    assert "agent.role" in result.stderr
    assert not (folder / "state").exists()


def test_run_refuses_a_gateway_config_and_gateway_a_provider_config(folder: Path) -> None:
    path = write(folder, VALID)
    result = subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", "gateway", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 2 and "use `enclave-agent run` for providers" in result.stderr


def test_key_files_are_read_with_clear_errors(tmp_path: Path) -> None:
    from enclave_agent.config import load_account

    good = tmp_path / "good.key"
    good.write_text("0x" + "11" * 32 + "\n")
    good.chmod(0o600)
    assert load_account(good, "operator key").address.startswith("0x")
    bad = tmp_path / "bad.key"
    bad.write_text("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match=f"operator key file {bad} does not hold a hex private key"):
        load_account(bad, "operator key")
    with pytest.raises(ConfigError, match="coordinator key file .*missing.key cannot be read"):
        load_account(tmp_path / "missing.key", "coordinator key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused_unless_warned(
    tmp_path: Path, mode: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from enclave_agent.config import load_account
    from enclave_agent.tee._files import INSECURE_KEYS_ENV

    key = tmp_path / "operator.key"
    key.write_text("0x" + "11" * 32 + "\n")
    key.chmod(mode)
    monkeypatch.delenv(INSECURE_KEYS_ENV, raising=False)
    with pytest.raises(
        ConfigError, match=f"readable by group or others \\(mode {mode:04o}\\): chmod 600 {key}"
    ):
        load_account(key, "operator key")
    monkeypatch.setenv(INSECURE_KEYS_ENV, "warn")
    assert load_account(key, "operator key").address.startswith("0x")
    assert f"operator key file {key} is readable by group or others" in caplog.text
    assert "11" * 32 not in caplog.text


def test_key_files_the_tooling_writes_are_owner_only(tmp_path: Path) -> None:
    import stat

    from enclave_agent.tee._files import write_private_file

    path = tmp_path / "k.key"
    path.write_text("old")
    path.chmod(0o644)
    write_private_file(path, b"new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


EVIDENCE = """
[evidence]
verifier_urls = ["http://127.0.0.1:8700/"]
policy = "policy.toml"
nitro_root_sha256 = ["641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"]
"""


def test_evidence_table(folder: Path) -> None:
    (folder / "policy.toml").write_text("version = 1\n")
    text = VALID.replace('state_dir = "state"', 'state_dir = "state"\ntee = "aws-nitro"') + EVIDENCE
    config = load_config(write(folder, text))
    assert config.tee == "aws-nitro"
    assert config.evidence.verifier_urls == ("http://127.0.0.1:8700",)
    assert config.evidence.policy == folder / "policy.toml"
    assert config.evidence.nitro_roots_sha256 == (
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b",
    )
    assert load_config(write(folder, VALID)).evidence.verifier_urls == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            VALID.replace('state_dir = "state"', 'state_dir = "state"\ntee = "aws-nitro"'),
            "agent.tee: 'aws-nitro' needs [evidence] verifier_urls",
        ),
        (
            VALID + "[evidence]\nverifier_urls = ['ftp://x']\n",
            "evidence.verifier_urls: must be a list of http(s) URLs",
        ),
        (VALID + "[evidence]\npolicy = 'missing.toml'\n", "evidence.policy: file"),
        (
            VALID + "[evidence]\nnitro_root_sha256 = ['abc']\n",
            "evidence.nitro_root_sha256: expected SHA-256 hex",
        ),
        (VALID + "[evidence]\nverifiers = []\n", "evidence.verifiers: unknown key"),
    ],
)
def test_evidence_table_mistakes(folder: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(folder, text))


def test_evidence_collateral_and_amd_pins(folder: Path) -> None:
    from enclave_agent.protocol.evidence import EvidenceJudge
    from enclave_agent.tee.sevsnp import AMD_ARK_SHA256
    from tests.support.tee_samples import SNP

    pin = AMD_ARK_SHA256["Milan"].hex()
    text = VALID + f'[evidence]\nsnp_collateral = "{SNP}"\namd_ark_sha256 = {{ Milan = "{pin}" }}\n'
    config = load_config(write(folder, text))
    assert config.evidence.snp_collateral == SNP
    assert config.evidence.amd_ark_sha256 == (("Milan", pin),)
    judge = EvidenceJudge.from_config(config.evidence)
    assert sorted(judge.verifiers) == ["amd-sev-snp", "aws-nitro"]
    assert judge.verifiers["amd-sev-snp"].ark_sha256 == {"Milan": AMD_ARK_SHA256["Milan"]}  # type: ignore[attr-defined]
    for extra, message in [
        (f'amd_ark_sha256 = {{ Milan = "{pin}" }}\n', "snp_collateral is not set"),
        ('snp_collateral = "nowhere"\n', "directory .*nowhere does not exist"),
        (f'snp_collateral = "{SNP}"\namd_ark_sha256 = {{ Rome = "{pin}" }}\n', "unknown product family"),
        (f'snp_collateral = "{SNP}"\namd_ark_sha256 = {{ Milan = "abc" }}\n', "32 bytes of hex"),
        ('dcap_collateral = "nowhere"\n', "dcap_collateral: directory"),
        ("snp_colateral = 1\n", "did you mean 'snp_collateral'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(write(folder, VALID + "[evidence]\n" + extra))
