"""The simulated attestation service: it signs verifiable quotes for the build it
measured itself (never for a path or measurement a caller names), refuses bad
requests by field, says it is simulated, and runs as its own process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_account import Account
from eth_utils import to_checksum_address

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee.attestation_client import RequestFieldError, request_quote
from enclave_agent.tee.backend import new_secp256k1_key
from enclave_agent.tee.measure import measure_package
from enclave_agent.tee.quote import ROLE_GATEWAY, ROLE_PROVIDER, Quote, recover_signer, verify_quote
from enclave_agent.tee.service_key import load_or_create_service_key
from enclave_devnet.attestation_service import SIMULATED_NOTE, AttestationService, build_app

REPO = Path(__file__).resolve().parents[3]
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def address() -> str:
    return to_checksum_address(os.urandom(20))


@pytest.fixture
def service(tiny_package: tuple[Path, Path]) -> AttestationService:
    """A service whose own build is the tiny package."""
    return AttestationService(
        new_secp256k1_key(), default_ttl=600, measurement=measure_package(*tiny_package)
    )


@pytest.fixture
def server(service: AttestationService) -> Iterator[str]:
    """The service's aiohttp app on a free port, served from a background thread."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(service))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def fields(tiny_package: tuple[Path, Path], **overrides: Any) -> dict[str, Any]:
    base = {
        "role": ROLE_PROVIDER,
        "operator": address(),
        "enclave": address(),
        "x25519_key": os.urandom(32),
        "chain_id": 31337,
        "registry": REGISTRY,
    }
    base.update(overrides)
    return base


def body(tiny_package: tuple[Path, Path], **overrides: Any) -> dict[str, Any]:
    f = fields(tiny_package)
    base = {
        "role": f["role"],
        "operator": f["operator"],
        "enclave": f["enclave"],
        "x25519Key": "0x" + f["x25519_key"].hex(),
        "chainId": f["chain_id"],
        "registry": f["registry"],
    }
    base.update(overrides)
    return base


def call(url: str, path: str, payload: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path,
        data=payload,
        headers={"Content-Type": "application/json"},
        method="POST" if payload else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def verify(service: AttestationService, quote: Quote, signature: bytes, measurement: bytes) -> None:
    verify_quote(
        quote,
        signature,
        trusted_signers=[service.signer_address],
        approved_measurements=[measurement],
        expected_measurement=measurement,
        chain_id=31337,
        registry=REGISTRY,
        now=int(time.time()),
        expected_role=quote.role,
    )


def test_issue_signs_the_services_own_measurement(
    service: AttestationService, tiny_package: tuple[Path, Path]
) -> None:
    request = fields(tiny_package)
    quote, signature = service.issue(**request, now=1_000)
    assert quote.measurement == measure_package(*tiny_package)
    assert (quote.operator, quote.enclave, quote.x25519_key) == (
        request["operator"],
        request["enclave"],
        request["x25519_key"],
    )
    assert quote.expiry == 1_000 + 600
    assert recover_signer(quote, signature) == service.signer_address
    assert service.signer_address == Account.from_key(service._key).address
    # Fresh random nonce per quote.
    second, second_signature = service.issue(**request)
    assert second.nonce != quote.nonce and len(second.nonce) == 32
    verify(service, second, second_signature, quote.measurement)


def test_by_default_the_service_measures_the_package_it_runs() -> None:
    assert AttestationService(new_secp256k1_key()).measurement == measure_package()


def test_a_changed_build_is_another_measurement(tiny_package: tuple[Path, Path], tmp_path: Path) -> None:
    package, lock = tiny_package
    copy = tmp_path / "copy" / "enclave_agent"
    shutil.copytree(package, copy)
    key = new_secp256k1_key()
    original = AttestationService(key, measurement=measure_package(package, lock))
    logic = copy / "tee" / "logic.py"
    logic.write_bytes(logic.read_bytes().replace(b"42", b"43"))
    altered = AttestationService(key, measurement=measure_package(copy, lock))
    assert altered.measurement != original.measurement
    assert altered.issue(**fields(tiny_package))[0].measurement == measure_package(copy, lock)


@pytest.mark.parametrize("named", ["measurement", "code_dir", "lock_file"])
def test_a_caller_cannot_name_a_measurement_or_a_path(
    service: AttestationService, tiny_package: tuple[Path, Path], named: str
) -> None:
    with pytest.raises(TypeError):
        service.issue(**fields(tiny_package), **{named: b"\x00" * 32})


@pytest.mark.parametrize(
    ("override", "field", "problem"),
    [
        ({"role": 0}, "role", "must be one of 1 (provider), 2 (gateway)"),
        ({"role": "auditor"}, "role", "must be one of"),
        ({"operator": "0x123"}, "operator", "is not an address"),
        ({"enclave": "0x" + "00" * 20}, "enclave", "zero address"),
        ({"x25519_key": b"\x01" * 31}, "x25519Key", "32 bytes"),
        ({"x25519_key": bytes(32)}, "x25519Key", "all zero"),
        ({"chain_id": 0}, "chainId", "positive integer"),
        ({"registry": 5}, "registry", "is not an address"),
    ],
)
def test_issue_names_the_bad_field(
    service: AttestationService,
    tiny_package: tuple[Path, Path],
    override: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    with pytest.raises(RequestFieldError, match=re.escape(problem)) as err:
        service.issue(**fields(tiny_package, **override))
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_role_by_name(service: AttestationService, tiny_package: tuple[Path, Path]) -> None:
    quote, _ = service.issue(**fields(tiny_package, role="gateway"))
    assert quote.role == ROLE_GATEWAY


def test_http_round_trip(service: AttestationService, server: str, tiny_package: tuple[Path, Path]) -> None:
    request = fields(tiny_package, role=ROLE_GATEWAY)
    quote, signature = request_quote(server, **request)
    assert quote.measurement == service.measurement
    assert quote.measurement == measure_package(*tiny_package)
    assert quote.role == ROLE_GATEWAY and quote.enclave == request["enclave"]
    verify(service, quote, signature, measure_package(*tiny_package))


def test_http_signer_and_health_say_simulated_and_which_build(
    service: AttestationService, server: str
) -> None:
    identity = {
        "signer": service.signer_address,
        "measurement": "0x" + service.measurement.hex(),
        "simulated": True,
        "note": SIMULATED_NOTE,
    }
    assert call(server, "/v1/signer") == (200, identity)
    assert call(server, "/healthz") == (200, {"status": "ok"} | identity)
    assert "trusted stand-in for TEE hardware" in SIMULATED_NOTE


def test_http_quote_json_shape(
    service: AttestationService, server: str, tiny_package: tuple[Path, Path]
) -> None:
    status, reply = call(server, "/v1/quote", json.dumps(body(tiny_package)).encode())
    assert status == 200
    assert reply["signer"] == service.signer_address
    quote = Quote.from_json(reply["quote"])
    assert reply["quote"]["measurement"] == "0x" + measure_package(*tiny_package).hex()
    assert recover_signer(quote, bytes.fromhex(reply["signature"][2:])) == service.signer_address


@pytest.mark.parametrize(
    ("override", "field", "problem"),
    [
        ({"x25519Key": "0xnothex"}, "x25519Key", "not hex"),
        ({"chainId": "31337"}, "chainId", "positive integer"),
        ({"role": None}, "role", "must be one of"),
        ({"codeDir": "/tmp/rogue/enclave_agent"}, "codeDir", "unknown field"),
        ({"lockFile": "/tmp/rogue.lock"}, "lockFile", "unknown field"),
        ({"operator": None}, "operator", "not an address"),
        ({"measurement": "0x" + "11" * 32}, "measurement", "unknown field"),
    ],
)
def test_http_bad_field_is_400_naming_it(
    server: str, tiny_package: tuple[Path, Path], override: dict[str, Any], field: str, problem: str
) -> None:
    status, reply = call(server, "/v1/quote", json.dumps(body(tiny_package, **override)).encode())
    assert status == 400
    assert reply["field"] == field
    assert reply["error"].startswith(f"{field}: ") and problem in reply["error"]


def test_http_missing_field_and_bad_body(server: str, tiny_package: tuple[Path, Path]) -> None:
    incomplete = body(tiny_package)
    del incomplete["registry"]
    assert call(server, "/v1/quote", json.dumps(incomplete).encode()) == (
        400,
        {"error": "registry: missing", "field": "registry"},
    )
    assert call(server, "/v1/quote", b"{not json") == (400, {"error": "request body is not valid JSON"})
    assert call(server, "/v1/quote", b"[1, 2]") == (400, {"error": "request body must be a JSON object"})


def test_client_reports_refusals_and_unreachable_service(
    server: str, tiny_package: tuple[Path, Path]
) -> None:
    with pytest.raises(ConfigError, match="refused the quote request: x25519Key: must be 32 bytes"):
        request_quote(server, **fields(tiny_package, x25519_key=b"\x01" * 5))
    with pytest.raises(ConfigError, match="must be http"):
        request_quote("file:///etc/passwd", **fields(tiny_package))
    with pytest.raises(AttestationError, match="unreachable"):
        request_quote(closed_port_url(), **fields(tiny_package), timeout=5)


def closed_port_url() -> str:
    """A URL on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_service_key_file(tmp_path: Path) -> None:
    path = tmp_path / "service" / "key.hex"
    key = load_or_create_service_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_service_key(path) == key
    assert AttestationService(key).signer_address == Account.from_key(key).address
    path.write_text("0xdeadbeef-not-a-key\n")
    with pytest.raises(ConfigError, match="does not hold a 32-byte hex secp256k1 key") as err:
        load_or_create_service_key(path)
    assert "deadbeef" not in str(err.value)


def test_service_refuses_invalid_keys_and_ttl() -> None:
    with pytest.raises(ConfigError, match="secp256k1"):
        AttestationService(bytes(32))
    with pytest.raises(ConfigError, match="default_ttl"):
        AttestationService(new_secp256k1_key(), default_ttl=0)
    assert new_secp256k1_key().hex() not in repr(AttestationService(new_secp256k1_key()))


def test_main_serves_until_sigterm(tmp_path: Path, tiny_package: tuple[Path, Path]) -> None:
    key_file = tmp_path / "svc.key"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "enclave_devnet.attestation_service",
            "--key",
            str(key_file),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        signer = Account.from_key(bytes.fromhex(key_file.read_text().strip()[2:])).address
        match = re.fullmatch(
            r"attestation service \(SIMULATED: a trusted stand-in for TEE hardware\) "
            rf"measurement=0x{measure_package().hex()} signer={signer} listening on (http://127\.0\.0\.1:\d+)",
            line,
        )
        assert match, line
        url = match.group(1)
        assert call(url, "/healthz")[0] == 200
        quote, _ = request_quote(url, **fields(tiny_package))
        assert quote.measurement == measure_package()  # its own build, whatever the caller runs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
