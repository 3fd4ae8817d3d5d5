"""enclave-share's consortium page: a small read-only service that follows the chain
(a deployment manifest and an RPC URL; no wallet, no keys) and shows members,
epochs, rounds and inference requests live, with charts (``enclave-console``).

This package is not enclave code: it is outside the code measurement that governance
approves (``enclave_agent.tee.measure``).
"""

from __future__ import annotations

from enclave_console.http import build_app
from enclave_console.view import ConsortiumView
from enclave_console.watcher import Watcher

__all__ = ["ConsortiumView", "Watcher", "build_app"]
