// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Role, Quote, Member} from "../types/Types.sol";

/// @title The cluster management center of an enclave-share consortium
/// @notice Admits only enclaves whose attested code measurement is approved for
/// their role and identical to that of every other active member of the role.
/// Every membership change starts a new epoch; an epoch is synchronised once
/// every active member has posted the same digest of the membership it verified.
interface IConsortiumRegistry {
    /// @notice The measurement is not approved for the role.
    error RegistryMeasurementNotApproved(Role role, bytes32 measurement);
    /// @notice The measurement was already approved for the role.
    error RegistryMeasurementAlreadyApproved(Role role, bytes32 measurement);
    /// @notice Active members of the role run another measurement.
    error RegistryMeasurementMismatch(Role role, bytes32 active, bytes32 offered);
    /// @notice The quote was not signed by a trusted attestation signer.
    error RegistryUntrustedSigner(address signer);
    /// @notice The signer's trust is already in the requested state.
    error RegistrySignerUnchanged(address signer, bool trusted);
    /// @notice The quote is bound to another chain or registry.
    error RegistryWrongBinding(uint256 chainId, address registry);
    /// @notice The quote's nonce was used before.
    error RegistryNonceUsed(bytes32 nonce);
    /// @notice The quote expired.
    error RegistryQuoteExpired(uint64 expiry, uint256 nowTimestamp);
    /// @notice Only the quote's operator may submit it.
    error RegistryNotOperator(address caller, address operator);
    /// @notice The role is not one an enclave can register for.
    error RegistryInvalidRole(Role role);
    /// @notice The enclave or key is malformed (zero).
    error RegistryInvalidEnclave(address enclave);
    /// @notice The enclave is registered and active already.
    error RegistryAlreadyMember(address enclave);
    /// @notice The account is not an active member.
    error RegistryNotActiveMember(address account);
    /// @notice The caller may not revoke this member.
    error RegistryRevokeUnauthorized(address caller, address enclave);
    /// @notice A digest was posted for another epoch than the current one.
    error RegistryWrongEpoch(uint64 posted, uint64 current);
    /// @notice The member already posted the matching digest for this epoch.
    error RegistryDigestAlreadyPosted(address member, uint64 epoch);

    /// @notice Governance approved `measurement` for `role`.
    event MeasurementApproved(Role indexed role, bytes32 indexed measurement);
    /// @notice Governance withdrew `measurement`; `deactivated` members left with it.
    event MeasurementRevoked(Role indexed role, bytes32 indexed measurement, uint256 deactivated);
    /// @notice Governance changed the trust in an attestation signer.
    event AttestationSignerSet(address indexed signer, bool trusted);
    /// @notice An enclave was admitted; carries the quote and signature so every
    /// peer can re-verify it without another call.
    event MemberRegistered(
        address indexed enclave, address indexed operator, Role indexed role, uint64 epoch, Quote quote, bytes signature
    );
    /// @notice A member left or was removed.
    event MemberRevoked(address indexed enclave, address indexed by, uint64 epoch);
    /// @notice A new membership epoch began; agents re-key for it.
    event EpochStarted(uint64 indexed epoch, bytes32 membershipDigest, uint256 memberCount);
    /// @notice A member posted the digest of the membership it verified.
    event MembershipDigestPosted(uint64 indexed epoch, address indexed member, bytes32 digest, bool matches);
    /// @notice Every active member posted the canonical digest of `epoch`.
    event EpochSynchronised(uint64 indexed epoch, bytes32 membershipDigest);

    /// @notice Approve a code measurement for a role (governance).
    function approveMeasurement(Role role, bytes32 measurement) external;

    /// @notice Withdraw a measurement (governance); members running it are
    /// deactivated, which starts a new epoch when any were active.
    function revokeMeasurement(Role role, bytes32 measurement) external;

    /// @notice Trust or distrust an attestation signer (governance).
    function setAttestationSigner(address signer, bool trusted) external;

    /// @notice Register an enclave from a signed quote; called by the quote's operator.
    function register(Quote calldata quote, bytes calldata signature) external;

    /// @notice Remove a member: governance, or the member's own operator or enclave.
    function revoke(address enclave) external;

    /// @notice Post the digest of the membership this member verified for `epoch`.
    function postMembershipDigest(uint64 epoch, bytes32 digest) external;

    /// @notice Stop registrations and digests (governance).
    function pause() external;

    /// @notice Resume (governance).
    function unpause() external;

    /// @notice The EIP-712 digest an attestation service signs for `quote`.
    function quoteDigest(Quote calldata quote) external view returns (bytes32);

    /// @notice The current membership epoch (starts at 0, first member makes it 1).
    function epoch() external view returns (uint64);

    /// @notice Whether every active member posted the canonical digest of the current epoch.
    function isSynchronised() external view returns (bool);

    /// @notice The epoch last synchronised (0 if none).
    function synchronisedEpoch() external view returns (uint64);

    /// @notice keccak256 over the active members in registration order.
    function membershipDigest() external view returns (bytes32);

    /// @notice Active members of `role`, in registration order.
    function activeMembers(Role role) external view returns (address[] memory);

    /// @notice A member record (zeroed if never registered).
    function member(address enclave) external view returns (Member memory);

    /// @notice Whether `account` is an active enclave of `role`.
    function isActiveMember(address account, Role role) external view returns (bool);

    /// @notice Whether `measurement` is approved for `role`.
    function isApproved(Role role, bytes32 measurement) external view returns (bool);

    /// @notice Whether `signer` is a trusted attestation signer.
    function isTrustedSigner(address signer) external view returns (bool);

    /// @notice Whether registrations and digests are paused.
    function paused() external view returns (bool);
}
