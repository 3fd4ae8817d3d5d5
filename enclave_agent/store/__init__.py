"""The agent's durable state (SQLite): checkpoints, processed events, sealed blobs,
JSON documents and sent transactions."""

from enclave_agent.store.db import SCHEMA_VERSION, Store, StoreError

__all__ = ["SCHEMA_VERSION", "Store", "StoreError"]
