"""A client of the gateway's HTTP API (`enclave-agent request`): authenticates with
an API key or signs the request with a wallet key (EIP-712), optionally asks for
end-to-end encrypted results and opens them locally."""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from enclave_agent.crypto.aead import public_key_bytes
from enclave_agent.crypto.sealed_box import open_sealed
from enclave_agent.errors import ConfigError, EnclaveAgentError
from enclave_agent.gateway import auth
from enclave_agent.protocol import queries


class GatewayHTTPError(EnclaveAgentError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {json.dumps(body)}")


@dataclass
class GatewayClient:
    url: str
    api_key: str | None = None
    wallet_key: str | None = None
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"gateway URL must be http(s): {self.url!r}")
        self.url = self.url.rstrip("/")
        if self.api_key is None and self.wallet_key is None:
            raise ConfigError("give an API key or a wallet key file")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("X-API-Key", self.api_key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read())
            except ValueError:
                payload = {"error": exc.reason}
            raise GatewayHTTPError(exc.code, payload) from None
        except urllib.error.URLError as exc:
            raise EnclaveAgentError(f"gateway {self.url} does not answer: {exc.reason}") from exc

    def health(self) -> dict[str, Any]:
        try:
            return self._call("GET", "/healthz")
        except GatewayHTTPError as exc:
            return exc.body

    def models(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/models")["models"])

    def request_status(self, request_id: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/requests/{request_id}")

    def infer(self, model: int | str, inputs: dict[str, Any], *, encrypt: bool = False) -> dict[str, Any]:
        """POST /v1/inference; `inputs` is {"features": ...}, {"rows": ...} or {"statistic": ...}."""
        body: dict[str, Any] = {"model": model} | inputs
        secret: X25519PrivateKey | None = None
        if encrypt:
            secret = X25519PrivateKey.generate()
            body["encrypt_to"] = "0x" + public_key_bytes(secret).hex()
        if self.api_key is None:
            body |= self._signature(model, inputs)
        answer = self._call("POST", "/v1/inference", body)
        if secret is not None:
            answer = _open(answer, secret)
        return answer

    def _signature(self, model: int | str, inputs: dict[str, Any]) -> dict[str, Any]:
        assert self.wallet_key is not None
        health = self.health()
        model_id = model if isinstance(model, int) else _model_id(self.models(), model)
        account = Account.from_key(self.wallet_key)
        nonce, deadline = secrets.randbits(63), int(time.time()) + 300
        typed = auth.typed_request(
            chain_id=int(health["chain_id"]),
            gateway_contract=str(health["inference_gateway"]),
            client=account.address,
            model_id=model_id,
            inputs_hash=auth.input_hash(inputs),
            nonce=nonce,
            deadline=deadline,
        )
        signature = auth.sign_request(self.wallet_key, typed)
        return {
            "client": account.address,
            "nonce": nonce,
            "deadline": deadline,
            "signature": "0x" + signature.hex(),
        }


def _model_id(models: list[dict[str, Any]], name: str) -> int:
    for model in models:
        if model["name"] == name:
            return int(model["id"])
    raise ConfigError(f"the gateway has no model named {name!r}")


def _open(answer: dict[str, Any], secret: X25519PrivateKey) -> dict[str, Any]:
    def one(item: dict[str, Any]) -> dict[str, Any]:
        sealed = item.get("sealed")
        if sealed is None:
            return item
        ad = queries.result_ad(int(item["request_id"]), int(item.get("row", 0)))
        plaintext = open_sealed(
            secret, bytes.fromhex(sealed["ephemeral_public"][2:]), bytes.fromhex(sealed["ciphertext"][2:]), ad
        )
        return dict(json.loads(plaintext)) | {"end_to_end": True}

    if "results" in answer:
        return answer | {"results": [one(r) for r in answer["results"]]}
    return one(answer)
