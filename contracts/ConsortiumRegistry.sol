// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {Role, Quote, Member} from "./types/Types.sol";

/// @title ConsortiumRegistry
/// @notice See {IConsortiumRegistry}.
contract ConsortiumRegistry is IConsortiumRegistry, AccessControl, Pausable, EIP712 {
    /// @notice Governance: approves measurements and signers, revokes members, pauses.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");

    bytes32 public constant QUOTE_TYPEHASH = keccak256(
        "Quote(uint8 role,bytes32 measurement,address operator,address enclave,bytes32 x25519Key,"
        "uint256 chainId,address registry,bytes32 nonce,uint64 expiry)"
    );

    mapping(Role => mapping(bytes32 => bool)) private _approved;
    mapping(address => bool) private _trustedSigners;
    mapping(bytes32 => bool) private _usedNonces;
    mapping(address => Member) private _memberOf;
    /// @dev Active members in registration order; small (one per organisation).
    address[] private _active;
    mapping(Role => uint256) private _activeCount;
    mapping(Role => bytes32) private _activeMeasurement;

    uint64 private _epoch;
    uint64 private _synchronisedEpoch;
    uint256 private _matchingDigests;
    /// @dev A member whose digest did not match may post again (after re-verifying).
    mapping(uint64 => mapping(address => bool)) private _digestMatched;

    constructor(address governor) EIP712("EnclaveShareRegistry", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
    }

    // ------------------------------------------------------------------ governance

    /// @inheritdoc IConsortiumRegistry
    function approveMeasurement(Role role, bytes32 measurement) external onlyRole(GOVERNOR_ROLE) {
        _requireEnclaveRole(role);
        if (_approved[role][measurement]) revert RegistryMeasurementAlreadyApproved(role, measurement);
        _approved[role][measurement] = true;
        emit MeasurementApproved(role, measurement);
    }

    /// @inheritdoc IConsortiumRegistry
    function revokeMeasurement(Role role, bytes32 measurement) external onlyRole(GOVERNOR_ROLE) {
        if (!_approved[role][measurement]) revert RegistryMeasurementNotApproved(role, measurement);
        _approved[role][measurement] = false;
        uint256 deactivated;
        // Walk backwards: _deactivate removes entries from _active.
        for (uint256 i = _active.length; i > 0; --i) {
            address enclave = _active[i - 1];
            Member storage m = _memberOf[enclave];
            if (m.role == role && m.measurement == measurement) {
                _deactivate(enclave);
                emit MemberRevoked(enclave, msg.sender, _epoch + 1);
                ++deactivated;
            }
        }
        emit MeasurementRevoked(role, measurement, deactivated);
        if (deactivated > 0) _startEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function setAttestationSigner(address signer, bool trusted) external onlyRole(GOVERNOR_ROLE) {
        if (_trustedSigners[signer] == trusted) revert RegistrySignerUnchanged(signer, trusted);
        _trustedSigners[signer] = trusted;
        emit AttestationSignerSet(signer, trusted);
    }

    /// @inheritdoc IConsortiumRegistry
    function pause() external onlyRole(GOVERNOR_ROLE) {
        _pause();
    }

    /// @inheritdoc IConsortiumRegistry
    function unpause() external onlyRole(GOVERNOR_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ membership

    /// @inheritdoc IConsortiumRegistry
    function register(Quote calldata quote, bytes calldata signature) external whenNotPaused {
        if (msg.sender != quote.operator) revert RegistryNotOperator(msg.sender, quote.operator);
        _requireEnclaveRole(quote.role);
        if (quote.enclave == address(0) || quote.x25519Key == bytes32(0)) {
            revert RegistryInvalidEnclave(quote.enclave);
        }
        address signer = ECDSA.recover(quoteDigest(quote), signature);
        if (!_trustedSigners[signer]) revert RegistryUntrustedSigner(signer);
        if (quote.chainId != block.chainid || quote.registry != address(this)) {
            revert RegistryWrongBinding(quote.chainId, quote.registry);
        }
        if (_usedNonces[quote.nonce]) revert RegistryNonceUsed(quote.nonce);
        if (quote.expiry < block.timestamp) revert RegistryQuoteExpired(quote.expiry, block.timestamp);
        if (!_approved[quote.role][quote.measurement]) {
            revert RegistryMeasurementNotApproved(quote.role, quote.measurement);
        }
        if (_activeCount[quote.role] > 0 && _activeMeasurement[quote.role] != quote.measurement) {
            revert RegistryMeasurementMismatch(quote.role, _activeMeasurement[quote.role], quote.measurement);
        }
        if (_memberOf[quote.enclave].active) revert RegistryAlreadyMember(quote.enclave);

        _usedNonces[quote.nonce] = true;
        _memberOf[quote.enclave] = Member({
            role: quote.role,
            active: true,
            operator: quote.operator,
            measurement: quote.measurement,
            x25519Key: quote.x25519Key,
            joinedEpoch: _epoch + 1
        });
        _active.push(quote.enclave);
        _activeCount[quote.role] += 1;
        _activeMeasurement[quote.role] = quote.measurement;
        emit MemberRegistered(quote.enclave, quote.operator, quote.role, _epoch + 1, quote, signature);
        _startEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function revoke(address enclave) external {
        Member storage m = _memberOf[enclave];
        if (!m.active) revert RegistryNotActiveMember(enclave);
        if (msg.sender != enclave && msg.sender != m.operator && !hasRole(GOVERNOR_ROLE, msg.sender)) {
            revert RegistryRevokeUnauthorized(msg.sender, enclave);
        }
        _deactivate(enclave);
        emit MemberRevoked(enclave, msg.sender, _epoch + 1);
        _startEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function postMembershipDigest(uint64 postedEpoch, bytes32 digest) external whenNotPaused {
        if (!_memberOf[msg.sender].active) revert RegistryNotActiveMember(msg.sender);
        if (postedEpoch != _epoch) revert RegistryWrongEpoch(postedEpoch, _epoch);
        if (_digestMatched[postedEpoch][msg.sender]) revert RegistryDigestAlreadyPosted(msg.sender, postedEpoch);
        bytes32 canonical = membershipDigest();
        bool matches = digest == canonical;
        emit MembershipDigestPosted(postedEpoch, msg.sender, digest, matches);
        if (!matches) return;
        _digestMatched[postedEpoch][msg.sender] = true;
        _matchingDigests += 1;
        if (_matchingDigests == _active.length) {
            _synchronisedEpoch = postedEpoch;
            emit EpochSynchronised(postedEpoch, canonical);
        }
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IConsortiumRegistry
    function quoteDigest(Quote calldata quote) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    QUOTE_TYPEHASH,
                    quote.role,
                    quote.measurement,
                    quote.operator,
                    quote.enclave,
                    quote.x25519Key,
                    quote.chainId,
                    quote.registry,
                    quote.nonce,
                    quote.expiry
                )
            )
        );
    }

    /// @inheritdoc IConsortiumRegistry
    function epoch() external view returns (uint64) {
        return _epoch;
    }

    /// @inheritdoc IConsortiumRegistry
    function isSynchronised() external view returns (bool) {
        return _epoch != 0 && _synchronisedEpoch == _epoch;
    }

    /// @inheritdoc IConsortiumRegistry
    function synchronisedEpoch() external view returns (uint64) {
        return _synchronisedEpoch;
    }

    /// @inheritdoc IConsortiumRegistry
    function membershipDigest() public view returns (bytes32 digest) {
        digest = keccak256(abi.encode(block.chainid, address(this), _epoch));
        uint256 count = _active.length;
        for (uint256 i; i < count; ++i) {
            Member storage m = _memberOf[_active[i]];
            digest = keccak256(abi.encode(digest, _active[i], m.role, m.measurement, m.x25519Key));
        }
    }

    /// @inheritdoc IConsortiumRegistry
    function activeMembers(Role role) external view returns (address[] memory members) {
        members = new address[](_activeCount[role]);
        uint256 found;
        uint256 count = _active.length;
        for (uint256 i; i < count; ++i) {
            if (_memberOf[_active[i]].role == role) members[found++] = _active[i];
        }
    }

    /// @inheritdoc IConsortiumRegistry
    function member(address enclave) external view returns (Member memory) {
        return _memberOf[enclave];
    }

    /// @inheritdoc IConsortiumRegistry
    function isActiveMember(address account, Role role) external view returns (bool) {
        Member storage m = _memberOf[account];
        return m.active && m.role == role;
    }

    /// @inheritdoc IConsortiumRegistry
    function isApproved(Role role, bytes32 measurement) external view returns (bool) {
        return _approved[role][measurement];
    }

    /// @inheritdoc IConsortiumRegistry
    function isTrustedSigner(address signer) external view returns (bool) {
        return _trustedSigners[signer];
    }

    /// @inheritdoc IConsortiumRegistry
    function paused() public view override(IConsortiumRegistry, Pausable) returns (bool) {
        return super.paused();
    }

    // ------------------------------------------------------------------ internal

    function _requireEnclaveRole(Role role) private pure {
        if (role != Role.Provider && role != Role.Gateway) revert RegistryInvalidRole(role);
    }

    function _deactivate(address enclave) private {
        Member storage m = _memberOf[enclave];
        m.active = false;
        _activeCount[m.role] -= 1;
        uint256 count = _active.length;
        // Shift to keep registration order, which the membership digest depends on.
        uint256 i;
        while (_active[i] != enclave) ++i;
        for (; i + 1 < count; ++i) {
            _active[i] = _active[i + 1];
        }
        _active.pop();
    }

    function _startEpoch() private {
        _epoch += 1;
        _matchingDigests = 0;
        emit EpochStarted(_epoch, membershipDigest(), _active.length);
    }
}
