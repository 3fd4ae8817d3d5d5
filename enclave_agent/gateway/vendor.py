"""Third-party browser code of the wallet page, served only as pinned.

``make setup`` copies each file named in ``web/vendor.json`` from ``node_modules``
(the npm package pinned in package-lock.json) into ``web/vendor/``, which git
ignores and the code measurement leaves out (``enclave_agent.tee.measure``).
``vendor.json`` itself is measured and holds each file's SHA-256: the gateway serves
a vendored file only if its bytes hash to the pin, so the measurement covers the
page's third-party code too, and a tree measures the same before and after the copy.
A missing or altered file is answered 404 (logged); the page then works without plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain", ".txt": "text/plain"}


def pins() -> dict[str, dict[str, Any]]:
    """name -> {"sha256", "from", "package"} as ``web/vendor.json`` has them."""
    text = resources.files("enclave_agent.gateway").joinpath("web", "vendor.json").read_text()
    files = json.loads(text)["files"]
    return {str(name): dict(entry) for name, entry in files.items()}


def content_type(name: str) -> str | None:
    return next((t for suffix, t in CONTENT_TYPES.items() if name.endswith(suffix)), None)


def read(name: str) -> bytes | None:
    """The bytes of vendored file ``name`` if it is pinned, present and as pinned."""
    pin = pins().get(name)
    if pin is None or content_type(name) is None:
        return None
    path = resources.files("enclave_agent.gateway").joinpath("web", "vendor", name)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        log.error("vendored %s is missing: run `make setup` (it copies it from node_modules)", name)
        return None
    if hashlib.sha256(data).hexdigest() != pin["sha256"]:
        log.error("vendored %s does not match its pin in vendor.json: not served", name)
        return None
    return data
