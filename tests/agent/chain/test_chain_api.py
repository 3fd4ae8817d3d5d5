"""The public surface other packages build on: pinned so a change is deliberate."""

from __future__ import annotations

import inspect

import enclave_agent.chain as chain
import enclave_agent.store as store


def params(obj: object) -> list[str]:
    return list(inspect.signature(obj).parameters)  # type: ignore[arg-type]


def test_chain_exports() -> None:
    assert sorted(chain.__all__) == sorted(
        [
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
    )
    for name in chain.__all__:
        assert getattr(chain, name) is not None


def test_store_exports() -> None:
    assert sorted(store.__all__) == ["SCHEMA_VERSION", "Store", "StoreError"]
    methods = {
        "transaction",
        "get_checkpoint",
        "set_checkpoint",
        "mark_processed",
        "is_processed",
        "put_blob",
        "get_blob",
        "delete_blob",
        "put_json",
        "get_json",
        "keys",
        "record_tx",
        "txs",
    }
    assert methods <= set(dir(store.Store))


def test_signatures_others_rely_on() -> None:
    assert params(chain.connect) == ["rpc_url", "timeout"]
    assert params(chain.TxSender) == [
        "w3",
        "account",
        "decoder",
        "store",
        "max_retries",
        "gas_buffer",
        "receipt_timeout",
        "backoff",
    ]
    assert params(chain.TxSender.send) == ["self", "fn", "label", "value"]
    assert params(chain.TxSender.transfer) == ["self", "to", "value", "label"]
    assert params(chain.EventFollower) == [
        "w3",
        "contracts",
        "store",
        "name",
        "start_block",
        "confirmations",
        "batch_blocks",
        "persist_seconds",
        "clock",
    ]
    assert params(chain.EventFollower.process) == ["self", "handler", "head"]
    assert params(chain.deploy_contracts) == [
        "w3",
        "governor",
        "abi_dir",
        "measurements",
        "signers",
        "rpc_url",
        "coordinator",
    ]
    assert params(chain.Contracts) == ["w3", "manifest"]
    assert params(chain.ErrorDecoder.decode) == ["self", "revert_data", "context"]
    assert [f for f in chain.ChainEvent.__dataclass_fields__] == [
        "contract",
        "name",
        "args",
        "block_number",
        "tx_hash",
        "log_index",
        "block_hash",
    ]
