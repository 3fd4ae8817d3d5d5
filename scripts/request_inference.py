"""An outside client: sign an inference request with a wallet key (EIP-712) and send
it to a running gateway.

    ENCLAVE_CLIENT_KEY=0x<private key> brownie run scripts/request_inference.py main \
        http://127.0.0.1:8700 breast-cancer-fedavg '{"mean_radius": 14.1, ...}'

The wallet must hold client access on chain (scripts/clients.py grant) and a fee
deposit; the gateway refuses anything the chain would not authorise.
"""

from __future__ import annotations

import json
import os

from enclave_agent.gateway.client import GatewayClient


def main(url: str = "http://127.0.0.1:8700", model: str = "", features: str = "{}") -> dict:
    key = os.environ.get("ENCLAVE_CLIENT_KEY")
    if not key:
        raise SystemExit("set ENCLAVE_CLIENT_KEY to the client's wallet private key")
    client = GatewayClient(url, wallet_key=key)
    model_ref: int | str = int(model) if model.isdigit() else model
    answer = client.infer(model_ref, {"features": json.loads(features)})
    print(json.dumps(answer, indent=2))
    return answer
