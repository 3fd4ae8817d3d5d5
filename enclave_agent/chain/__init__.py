"""The agent's side of the chain: connection, contracts, typed reverts, signed
transactions, decoded events and exactly-once event following."""

from enclave_agent.chain.client import Contracts, connect
from enclave_agent.chain.deploy import deploy_contracts, load_artifact
from enclave_agent.chain.errors import ErrorDecoder, ErrorSpec, error_class, revert_data
from enclave_agent.chain.events import ChainEvent, decode_logs
from enclave_agent.chain.follower import EventFollower
from enclave_agent.chain.manifest import CONTRACT_NAMES, Manifest, load_manifest, write_manifest
from enclave_agent.chain.sender import TxSender, explain_failure
from enclave_agent.chain.transport import redact_url

__all__ = [
    "CONTRACT_NAMES",
    "ChainEvent",
    "Contracts",
    "ErrorDecoder",
    "ErrorSpec",
    "EventFollower",
    "Manifest",
    "TxSender",
    "connect",
    "decode_logs",
    "deploy_contracts",
    "error_class",
    "explain_failure",
    "load_artifact",
    "load_manifest",
    "redact_url",
    "revert_data",
    "write_manifest",
]
