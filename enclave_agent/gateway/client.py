"""A client of the gateway's HTTP API (`enclave-agent request`): authenticates with
an API key or signs the request with a wallet key (EIP-712), optionally asks for
end-to-end encrypted results and opens them locally. The analysts' client
(``enclave_client.Client``) talks to the gateway through this one too."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from enclave_agent.crypto.aead import public_key_bytes
from enclave_agent.crypto.sealed_box import open_sealed
from enclave_agent.errors import ConfigError, EnclaveAgentError
from enclave_agent.gateway import auth, validation
from enclave_agent.protocol import queries


class GatewayHTTPError(EnclaveAgentError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {json.dumps(body)}")


class GatewayUnreachable(EnclaveAgentError, ConnectionError):
    """The gateway did not answer at all (refused, reset, timed out): nothing is
    known about the call."""


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
            raise GatewayUnreachable(f"gateway {self.url} does not answer: {exc.reason}") from exc
        except (TimeoutError, ConnectionError) as exc:  # raised while reading the answer
            raise GatewayUnreachable(f"gateway {self.url} does not answer: {exc}") from exc

    def health(self) -> dict[str, Any]:
        try:
            return self._call("GET", "/healthz")
        except GatewayHTTPError as exc:
            return exc.body

    def catalogue(self) -> dict[str, Any]:
        """``GET /v1/models`` as sent: the models and the gateway's ``max_batch``."""
        return self._call("GET", "/v1/models")

    def models(self) -> list[dict[str, Any]]:
        return list(self.catalogue()["models"])

    def request_status(self, request_id: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/requests/{request_id}")

    def infer(
        self,
        model: int | str,
        inputs: dict[str, Any],
        *,
        encrypt: bool = False,
        secret: X25519PrivateKey | None = None,
    ) -> dict[str, Any]:
        """POST /v1/inference; `inputs` is {"features": ...}, {"rows": ...} or {"statistic": ...}.
        With a wallet key every on-chain request is signed here, after checking that the
        gateway prepared exactly this query at the model's fee (a batch longer than the
        model's ``rows_per_request`` is signed and sent in parts). ``encrypt`` seals the
        answer end to end to a key made for this call, or to ``secret`` if given."""
        extra: dict[str, Any] = {}
        if encrypt or secret is not None:
            secret = secret or X25519PrivateKey.generate()
            extra["encrypt_to"] = "0x" + public_key_bytes(secret).hex()
        if self.api_key is not None:
            answer = self._call("POST", "/v1/inference", {"model": model} | inputs | extra)
        else:
            info = _model_info(self.models(), model)
            parts = [inputs]
            if "rows" in inputs:
                size = int(info["rows_per_request"])
                rows = list(inputs["rows"])
                parts = [{"rows": rows[i : i + size]} for i in range(0, len(rows), size)]
            answers = [
                self._call(
                    "POST", "/v1/inference", {"model": info["id"]} | part | extra | self._sign(info, part)
                )
                for part in parts
            ]
            answer = (
                answers[0] if len(answers) == 1 else {"results": [r for a in answers for r in a["results"]]}
            )
        if secret is not None:
            answer = open_answer(answer, secret)
        return answer

    def _sign(self, info: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """Have the gateway prepare the EIP-712 request, check it, sign it."""
        assert self.wallet_key is not None
        account = Account.from_key(self.wallet_key)
        prepared = self._call(
            "POST", "/v1/inference/typed-data", {"model": info["id"], "client": account.address} | inputs
        )
        typed = prepared["typed_data"]
        query = _query(info, inputs)
        message = typed["message"]
        expected = {
            "client": account.address,
            "modelId": int(info["id"]),
            "rows": query.row_count,
            "inputHash": "0x" + auth.input_hash(query).hex(),
            "maxFee": str(int(info["fee_wei"]) * query.row_count),
        }
        got = {k: (int(message[k]) if k in ("modelId", "rows") else message[k]) for k in expected}
        if got != expected:
            raise EnclaveAgentError(f"the gateway prepared another request than asked ({got} != {expected})")
        signature = auth.sign_request(self.wallet_key, typed)
        return {
            "client": account.address,
            "nonce": prepared["nonce"],
            "deadline": prepared["deadline"],
            "max_fee": prepared["max_fee"],
            "signature": "0x" + signature.hex(),
        }


def _model_info(models: list[dict[str, Any]], ref: int | str) -> dict[str, Any]:
    for model in models:
        if model["id"] == ref or model["name"] == ref:
            return model
    raise ConfigError(f"the gateway has no model {ref!r}")


def _query(info: dict[str, Any], inputs: dict[str, Any]) -> queries.Query:
    """The canonical query of ``inputs`` for the model, as the gateway builds it."""
    features = list(info["features"])
    if info["kind"] == "statistic":
        column = validation.parse_statistic_request(inputs, features).column
        return queries.Query(queries.KIND_STATISTIC, column=column)
    score = validation.parse_score_request(inputs, features, queries.MAX_ROWS)
    return queries.Query(queries.KIND_SCORE, rows=tuple(tuple(row) for row in score.rows))


def open_answer(answer: dict[str, Any], secret: X25519PrivateKey) -> dict[str, Any]:
    """An answer (one result, or {"results": [...]}) with every sealed result opened."""

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
