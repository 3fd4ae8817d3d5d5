"""Decoding contract reverts into typed exceptions."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from enclave_agent.chain import ErrorDecoder, error_class, revert_data
from enclave_agent.chain.manifest import CONTRACT_NAMES
from enclave_agent.errors import ChainError, ContractRevert

REPO = Path(__file__).resolve().parents[3]


def abi(name: str) -> list[dict[str, object]]:
    return json.loads((REPO / "build" / "contracts" / f"{name}.json").read_text())["abi"]


@pytest.fixture(scope="module")
def decoder() -> ErrorDecoder:
    return ErrorDecoder(abi(name) for name in CONTRACT_NAMES)


def data(signature: str, types: list[str], values: list[object]) -> bytes:
    return function_signature_to_4byte_selector(signature) + encode(types, values)


def test_every_error_declared_in_the_interfaces_is_known(decoder: ErrorDecoder) -> None:
    declared = set()
    for sol in (REPO / "contracts" / "interfaces").glob("*.sol"):
        declared |= set(re.findall(r"^\s*error (\w+)\(", sol.read_text(), re.MULTILINE))
    known = {spec.name for spec in decoder.errors.values()}
    assert len(declared) > 50
    assert declared <= known
    # OpenZeppelin errors inherited by the contracts, and Solidity's built-ins.
    assert {
        "AccessControlUnauthorizedAccount",
        "EnforcedPause",
        "ECDSAInvalidSignature",
        "Error",
        "Panic",
    } <= known


def test_custom_error_decodes_to_its_own_class(decoder: ErrorDecoder) -> None:
    nonce = bytes(range(32))
    error = decoder.decode(data("RegistryNonceUsed(bytes32)", ["bytes32"], [nonce]))
    assert type(error) is error_class("RegistryNonceUsed")
    assert type(error).__name__ == "RegistryNonceUsed"
    assert isinstance(error, ContractRevert) and isinstance(error, ChainError)
    assert error.error_name == "RegistryNonceUsed"
    assert error.error_args == {"nonce": "0x" + nonce.hex()}
    assert str(error) == f"RegistryNonceUsed(nonce=0x{nonce.hex()})"
    with pytest.raises(error_class("RegistryNonceUsed")):
        raise error


def test_error_class_is_created_once_per_name() -> None:
    assert error_class("RegistryNonceUsed") is error_class("RegistryNonceUsed")
    assert error_class("RegistryNonceUsed") is not error_class("RegistryQuoteExpired")
    with pytest.raises(ValueError):
        error_class("not a name")


def test_other_error_classes_do_not_catch_it(decoder: ErrorDecoder) -> None:
    error = decoder.decode(data("RegistryNonceUsed(bytes32)", ["bytes32"], [b"\x01" * 32]))
    with pytest.raises(error_class("RegistryNonceUsed")):
        try:
            raise error
        except error_class("RegistryQuoteExpired"):
            pytest.fail("wrong class caught the error")


def test_multiple_arguments_with_enums_addresses_and_numbers(decoder: ErrorDecoder) -> None:
    account = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    raw = data(
        "RoundChunkOutOfOrder(uint256,address,uint16,uint16)",
        ["uint256", "address", "uint16", "uint16"],
        [7, account, 2, 5],
    )
    error = decoder.decode(raw, context="post-7")
    assert error.error_args == {"roundId": 7, "sender": account, "expected": 2, "given": 5}
    assert str(error).startswith("post-7: RoundChunkOutOfOrder(roundId=7")
    mismatch = decoder.decode(
        data(
            "RegistryMeasurementMismatch(uint8,bytes32,bytes32)",
            ["uint8", "bytes32", "bytes32"],
            [1, b"a" * 32, b"b" * 32],
        )
    )
    assert mismatch.error_args == {"role": 1, "active": "0x" + "61" * 32, "offered": "0x" + "62" * 32}


def test_openzeppelin_access_control_error(decoder: ErrorDecoder) -> None:
    role = b"\x12" * 32
    account = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    error = decoder.decode(
        data("AccessControlUnauthorizedAccount(address,bytes32)", ["address", "bytes32"], [account, role])
    )
    assert type(error) is error_class("AccessControlUnauthorizedAccount")
    assert error.error_args == {"account": account, "neededRole": "0x" + role.hex()}


def test_error_without_arguments(decoder: ErrorDecoder) -> None:
    error = decoder.decode(function_signature_to_4byte_selector("RoundRegistryPaused()"))
    assert type(error) is error_class("RoundRegistryPaused")
    assert error.error_args == {}


def test_error_string_and_panic(decoder: ErrorDecoder) -> None:
    error = decoder.decode(data("Error(string)", ["string"], ["not allowed"]))
    assert type(error) is error_class("Error")
    assert error.error_args == {"reason": "not allowed"}
    panic = decoder.decode(data("Panic(uint256)", ["uint256"], [0x11]))
    assert type(panic) is error_class("Panic")
    assert panic.error_args == {"code": 0x11}
    assert "overflow" in str(panic)


def test_unknown_selector_and_garbage(decoder: ErrorDecoder) -> None:
    raw = bytes.fromhex("deadbeef") + b"\x00" * 32
    error = decoder.decode(raw)
    assert type(error) is error_class("UnknownError")
    assert error.error_args == {"data": "0x" + raw.hex()}
    # A known selector with a truncated payload is not forced into that error.
    truncated = function_signature_to_4byte_selector("RegistryNonceUsed(bytes32)") + b"\x01" * 5
    assert decoder.decode(truncated).error_name == "UnknownError"
    assert decoder.decode(b"").error_args == {"data": "0x"}
    assert decoder.decode("0x").error_name == "UnknownError"


def test_hex_string_input(decoder: ErrorDecoder) -> None:
    raw = data("RegistryWrongEpoch(uint64,uint64)", ["uint64", "uint64"], [3, 4])
    assert decoder.decode("0x" + raw.hex()).error_args == {"posted": 3, "current": 4}


def test_struct_and_array_arguments_become_dicts_and_lists() -> None:
    custom = [
        {
            "type": "error",
            "name": "BadSpec",
            "inputs": [
                {
                    "name": "spec",
                    "type": "tuple",
                    "components": [{"name": "length", "type": "uint32"}, {"name": "tag", "type": "bytes32"}],
                },
                {"name": "who", "type": "address[]"},
                {"name": "", "type": "bytes"},
            ],
        }
    ]
    decoder = ErrorDecoder([custom])
    who = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
    raw = data(
        "BadSpec((uint32,bytes32),address[],bytes)",
        ["(uint32,bytes32)", "address[]", "bytes"],
        [(9, b"t" * 32), who, b"\x01\x02"],
    )
    error = decoder.decode(raw)
    assert error.error_args == {"spec": {"length": 9, "tag": "0x" + "74" * 32}, "who": who, "arg2": "0x0102"}


def test_decoded_errors_pickle(decoder: ErrorDecoder) -> None:
    error = decoder.decode(data("RegistryWrongEpoch(uint64,uint64)", ["uint64", "uint64"], [3, 4]))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.error_name, copy.error_args, str(copy)) == (error.error_name, error.error_args, str(error))


def test_revert_data_from_web3_exceptions(decoder: ErrorDecoder) -> None:
    raw = data("RegistryWrongEpoch(uint64,uint64)", ["uint64", "uint64"], [1, 2])
    hexed = "0x" + raw.hex()
    assert revert_data(ContractCustomError(hexed, data=hexed)) == raw
    assert revert_data(ContractLogicError("execution reverted", data={"data": hexed})) == raw
    assert revert_data(ContractLogicError("execution reverted", data="Reverted " + hexed)) == raw
    rpc = Web3RPCError(
        "boom", rpc_response={"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "x", "data": hexed}}
    )
    assert revert_data(rpc) == raw
    assert revert_data(ContractLogicError("execution reverted", data=None)) is None
    error = decoder.from_exception(ContractCustomError(hexed, data=hexed), context="digest")
    assert error.error_args == {"posted": 1, "current": 2}
    no_data = decoder.from_exception(ContractLogicError("execution reverted", data=None))
    assert no_data.error_name == "UnknownError" and "execution reverted" in str(no_data)


def test_selector_lookup(decoder: ErrorDecoder) -> None:
    assert decoder.selector("RegistryNonceUsed") == function_signature_to_4byte_selector(
        "RegistryNonceUsed(bytes32)"
    )
    assert decoder.spec("RoundUnexpectedState").signature == "RoundUnexpectedState(uint256,uint8,bytes32)"
    with pytest.raises(KeyError):
        decoder.spec("NoSuchError")


def test_ganaches_revert_shape_is_decoded() -> None:
    """Ganache reports an estimate's revert as {"result": "0x…", "message": "revert"}."""
    from web3.exceptions import ContractLogicError

    from enclave_agent.chain.errors import revert_data

    data = "0x0cf900e000000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8"
    exc = ContractLogicError("execution reverted", data={"hash": None, "result": data, "message": "revert"})
    assert revert_data(exc) == bytes.fromhex(data[2:])
