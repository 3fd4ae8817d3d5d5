"""The HTTP surface is what the OpenAPI document says, and the wallet page's files
are all packaged and served."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, cast

from enclave_agent.gateway import auth, vendor
from enclave_agent.gateway.http import WEB_FILES, build_app

UNDOCUMENTED = {"/web/{name}", "/web/vendor/{name}"}  # the page's assets


def _spec() -> dict[str, Any]:
    return cast(
        dict[str, Any],
        json.loads(resources.files("enclave_agent.gateway").joinpath("openapi.json").read_text()),
    )


def test_every_route_is_documented_with_its_methods_and_nothing_else_is() -> None:
    app = build_app(cast(Any, None))
    served: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path not in UNDOCUMENTED:
            served.add((path, route.method.lower()))
    documented = {(path, method) for path, ops in _spec()["paths"].items() for method in ops}
    assert served == documented


def test_every_page_file_is_packaged_and_the_page_loads_only_its_own_files() -> None:
    web = resources.files("enclave_agent.gateway").joinpath("web")
    # vendor.json pins what make setup copies into vendor/ (git-ignored, unmeasured).
    assert sorted(p.name for p in web.iterdir() if p.name not in ("vendor", "vendor.json")) == sorted(
        WEB_FILES
    )
    html = web.joinpath("index.html").read_text()
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    for name in WEB_FILES:  # modules the page's scripts import
        if name.endswith(".js"):
            imported = re.findall(r'from "\./([^"]+)"', web.joinpath(name).read_text())
            referenced |= {f"/web/{module}" for module in imported}
    pinned = {f"/web/vendor/{name}" for name in vendor.pins() if name.endswith(".js")}
    assert referenced == {f"/web/{name}" for name in WEB_FILES if name != "index.html"} | pinned


def test_wallet_typed_data_is_what_the_gateway_verifies() -> None:
    typed = auth.typed_request(
        chain_id=31337,
        gateway_contract="0x" + "11" * 20,
        client="0x" + "22" * 20,
        model_id=3,
        rows=2,
        inputs_hash=b"\x33" * 32,
        nonce=2**200 + 7,  # beyond a JavaScript number: travels as a decimal string
        deadline=99,
        max_fee=10**30,
    )
    wallet = json.loads(json.dumps(auth.wallet_typed_data(typed)))
    assert wallet["types"]["EIP712Domain"] == auth.DOMAIN_TYPE
    assert wallet["message"]["inputHash"] == "0x" + "33" * 32
    assert (wallet["message"]["nonce"], wallet["message"]["maxFee"]) == (str(2**200 + 7), str(10**30))
    assert auth.request_digest(wallet) == auth.request_digest(typed)
