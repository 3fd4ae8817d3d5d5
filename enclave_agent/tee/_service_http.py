"""Asking an attestation or evidence-verifier service over HTTP: one JSON POST, with the
scheme checked and every transport failure said the same way."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from enclave_agent.errors import AttestationError, ConfigError


class ServiceRefused(AttestationError):
    """The service answered with an HTTP error: ``status`` and its body, ``detail``."""

    def __init__(self, service: str, url: str, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{service} at {url} failed: HTTP {status} {detail}")


def post_json(service: str, url: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    """POST ``body`` to ``url`` + ``path`` and return the decoded JSON answer. ``service``
    names it in errors: ConfigError for a URL that is not http(s), ServiceRefused for an
    HTTP error, AttestationError when it is unreachable or answers garbage."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{service} URL must be http(s): {url!r}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ServiceRefused(service, url, exc.code, exc.read().decode(errors="replace")) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AttestationError(f"{service} at {url} unreachable or answered garbage: {exc}") from None
