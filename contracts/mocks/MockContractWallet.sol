// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title A minimal contract wallet for tests (not deployed by the project)
/// @notice Accepts signatures by its owner key (EIP-1271) and lets the owner call out,
/// e.g. to deposit into the InferenceGateway.
contract MockContractWallet is IERC1271 {
    /// @notice Only the owner may make the wallet call out.
    error MockWalletNotOwner(address caller);
    /// @notice The call the owner asked for reverted.
    error MockWalletCallFailed(address target);

    address public immutable owner;

    constructor(address owner_) payable {
        owner = owner_;
    }

    receive() external payable {}

    /// @notice Call `target` with `data` and `value` (owner only).
    function execute(address target, bytes calldata data, uint256 value) external payable returns (bytes memory result) {
        if (msg.sender != owner) revert MockWalletNotOwner(msg.sender);
        bool ok;
        (ok, result) = target.call{value: value}(data);
        if (!ok) revert MockWalletCallFailed(target);
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError failure,) = ECDSA.tryRecover(hash, signature);
        return failure == ECDSA.RecoverError.NoError && recovered == owner ? this.isValidSignature.selector : bytes4(0);
    }
}
