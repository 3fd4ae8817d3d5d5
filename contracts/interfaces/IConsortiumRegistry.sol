// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Role, Quote, Member, Organisation, RevokeReason, EvidenceClaim} from "../types/Types.sol";

/// @title The cluster management center of an enclave-share consortium
/// @notice Governance admits organisations (an operator address, the roles it may
/// hold, how many enclaves per role). Only an admitted organisation's operator can
/// register an enclave, and only with a quote from a trusted attestation signer for
/// an approved measurement identical to that of every other active member of the
/// role, signed also by the enclave's own key (proof of possession). Every
/// membership change starts a new epoch; an epoch is synchronised once every active
/// member has posted the same digest of the membership it verified. A member that
/// has not done so by the epoch's deadline can be dropped by anyone.
///
/// Hardware evidence (AWS Nitro, Intel DCAP, AMD SEV-SNP) takes another path,
/// `registerWithEvidence`: the quote is signed by no attestation signer; instead at
/// least `verifierThreshold()` distinct evidence verifiers (a role of their own) sign
/// EIP-712 `VerifiedEvidence(quoteDigest, evidenceType, evidenceHash, policyHash)`,
/// "evidence with this hash proves this quote under this policy". The contract checks
/// the evidence bytes hash to `evidenceHash`, records the claim and emits the bytes,
/// so that every peer re-verifies the evidence itself. The quote's other checks are
/// those of `register`.
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
    /// @notice The possession signature was not made by the quoted enclave's key.
    error RegistryPossessionNotProven(address enclave, address recovered);
    /// @notice The operator is not an admitted organisation (never admitted, or suspended).
    error RegistryOrganisationNotAdmitted(address operator);
    /// @notice The operator is admitted already (or suspended: reinstate it instead).
    error RegistryOrganisationExists(address operator);
    /// @notice The operator is not suspended or cooling down, so there is nothing to reinstate.
    error RegistryOrganisationNotSuspended(address operator);
    /// @notice Organisation fields out of range: zero operator, empty name, roles outside
    /// {provider, gateway} or none, or a zero enclave limit.
    error RegistryInvalidOrganisation(address operator, uint8 roles, uint16 maxEnclavesPerRole);
    /// @notice The organisation may not run an enclave of this role.
    error RegistryRoleNotAllowed(address operator, Role role);
    /// @notice The organisation runs as many enclaves of the role as it may.
    error RegistryEnclaveLimit(address operator, Role role, uint16 maxEnclavesPerRole);
    /// @notice The organisation was dropped for not synchronising and may register again
    /// only after `coolingUntil` (or once governance reinstates it).
    error RegistryOrganisationCoolingDown(address operator, uint64 coolingUntil);
    /// @notice The role has as many active members as governance allows.
    error RegistryRoleFull(Role role, uint16 limit);
    /// @notice A role limit out of range (1..MAX_ROLE_LIMIT).
    error RegistryInvalidRoleLimit(Role role, uint16 limit);
    /// @notice Synchronisation window or cool-down out of range.
    error RegistryInvalidSyncPolicy(uint64 window, uint64 cooldown);
    /// @notice The current epoch is synchronised (or there is none): nobody to drop.
    error RegistryEpochSynchronised(uint64 epoch);
    /// @notice The epoch's synchronisation deadline has not passed.
    error RegistrySyncStillOpen(uint64 epoch, uint64 deadline);
    /// @notice No member posted a matching digest: nothing tells the laggards apart.
    error RegistryNoMemberSynchronised(uint64 epoch);
    /// @notice The value sent with a registration could not be forwarded to the enclave.
    error RegistryFundingFailed(address enclave, uint256 amount);
    /// @notice The verifier's trust is already in the requested state.
    error RegistryVerifierUnchanged(address verifier, bool trusted);
    /// @notice A verifier threshold of 0 or above the number of trusted verifiers; or a
    /// verifier removal that would leave fewer verifiers than the threshold (but some).
    error RegistryInvalidVerifierThreshold(uint8 threshold, uint256 verifierCount);
    /// @notice Not a hardware evidence type (0 is none, 1 is simulated: use `register`).
    error RegistryInvalidEvidenceType(uint8 evidenceType);
    /// @notice The evidence bytes do not hash (keccak256) to the claimed evidence hash.
    error RegistryEvidenceHashMismatch(bytes32 claimed, bytes32 actual);
    /// @notice Fewer verifier signatures than the threshold.
    error RegistryTooFewVerifierSignatures(uint256 given, uint8 threshold);
    /// @notice A verifier signature was not made by a trusted evidence verifier.
    error RegistryUntrustedVerifier(address signer);
    /// @notice Verifier signatures must come in strictly ascending signer order (no signer twice).
    error RegistryVerifiersNotAscending(address previous, address signer);

    /// @notice Governance approved `measurement` for `role`.
    event MeasurementApproved(Role indexed role, bytes32 indexed measurement);
    /// @notice Governance withdrew `measurement`; `deactivated` members left with it.
    event MeasurementRevoked(Role indexed role, bytes32 indexed measurement, uint256 deactivated);
    /// @notice Governance changed the trust in an attestation signer.
    event AttestationSignerSet(address indexed signer, bool trusted);
    /// @notice Governance admitted an organisation.
    event OrganisationAdmitted(address indexed operator, string name, uint8 roles, uint16 maxEnclavesPerRole);
    /// @notice Governance suspended an organisation; `revoked` of its enclaves left with it.
    event OrganisationSuspended(address indexed operator, uint256 revoked);
    /// @notice Governance re-enabled a suspended or cooling-down organisation.
    event OrganisationReinstated(address indexed operator);
    /// @notice Governance set the most active members a role may have.
    event RoleLimitSet(Role indexed role, uint16 limit);
    /// @notice Governance set how long an epoch may take to synchronise and how long a
    /// dropped organisation waits before registering again.
    event SyncPolicySet(uint64 window, uint64 cooldown);
    /// @notice An enclave was admitted; carries the quote and both signatures so every
    /// peer can re-verify it without another call.
    event MemberRegistered(
        address indexed enclave,
        address indexed operator,
        Role indexed role,
        uint64 epoch,
        Quote quote,
        bytes signature,
        bytes possession
    );
    /// @notice Governance changed the trust in an evidence verifier; `verifierCount` trusted now.
    event EvidenceVerifierSet(address indexed verifier, bool trusted, uint256 verifierCount);
    /// @notice Governance set how many distinct verifiers must sign a `VerifiedEvidence`.
    event VerifierThresholdSet(uint8 threshold);
    /// @notice An enclave registered with hardware evidence (emitted just before its
    /// `MemberRegistered`, whose `signature` is empty): the claim, the verifiers that
    /// signed it and the raw evidence bytes, so that every peer re-verifies them itself.
    event EvidenceRecorded(
        address indexed enclave,
        uint8 indexed evidenceType,
        bytes32 evidenceHash,
        bytes32 policyHash,
        address[] verifiers,
        bytes evidence
    );
    /// @notice A member left or was removed, and why.
    event MemberRevoked(address indexed enclave, address indexed by, uint64 epoch, RevokeReason reason);
    /// @notice A new membership epoch began; agents re-key for it and post their digest
    /// before `syncDeadline`.
    event EpochStarted(uint64 indexed epoch, bytes32 membershipDigest, uint256 memberCount, uint64 syncDeadline);
    /// @notice The current epoch's sync deadline moved to `syncDeadline` (on `unpause`:
    /// digests could not be posted while the registry was paused).
    event SyncDeadlineExtended(uint64 indexed epoch, uint64 syncDeadline);
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

    /// @notice Trust or distrust an evidence verifier (governance). Removing one may not
    /// leave fewer verifiers than the threshold, unless it leaves none.
    function setEvidenceVerifier(address verifier, bool trusted) external;

    /// @notice Set how many distinct trusted verifiers must sign a `VerifiedEvidence`
    /// (governance): 1..verifier count (default 1).
    function setVerifierThreshold(uint8 threshold) external;

    /// @notice Admit an organisation (governance): its operator may then register up to
    /// `maxEnclavesPerRole` enclaves of each role in the `roles` bitmap.
    function admitOrganisation(address operator, string calldata name, uint8 roles, uint16 maxEnclavesPerRole)
        external;

    /// @notice Suspend an organisation (governance): its enclaves are revoked, which
    /// starts a new epoch when any were active, and it cannot register until reinstated.
    function suspendOrganisation(address operator) external;

    /// @notice Re-enable a suspended organisation, or end its cool-down early (governance).
    function reinstateOrganisation(address operator) external;

    /// @notice Set the most active members `role` may have (governance), 1..MAX_ROLE_LIMIT.
    function setRoleLimit(Role role, uint16 limit) external;

    /// @notice Set the synchronisation window of new epochs and the cool-down of a
    /// dropped organisation, in seconds (governance).
    function setSyncPolicy(uint64 window, uint64 cooldown) external;

    /// @notice Register an enclave from a signed quote; called by the quote's operator,
    /// an admitted organisation. `possession` is the enclave key's EIP-712 signature over
    /// `possessionDigest(quote)`. Any value sent is forwarded to the enclave account
    /// (its gas money), so the enclave is revealed only once it is registered.
    function register(Quote calldata quote, bytes calldata signature, bytes calldata possession) external payable;

    /// @notice Register an enclave from hardware evidence; called by the quote's operator.
    /// `verifierSignatures` are EIP-712 signatures over `verifiedEvidenceDigest(quote,
    /// claim)` by at least `verifierThreshold()` trusted verifiers, in strictly ascending
    /// signer order; `evidence` must hash (keccak256) to `claim.evidenceHash`. The quote
    /// is checked as in `register` (possession, binding, nonce, expiry, approved and
    /// identical measurement, organisation limits). Records the claim (`evidenceOf`) and
    /// emits `EvidenceRecorded` with the evidence bytes, then `MemberRegistered`.
    function registerWithEvidence(
        Quote calldata quote,
        EvidenceClaim calldata claim,
        bytes[] calldata verifierSignatures,
        bytes calldata possession,
        bytes calldata evidence
    ) external payable;

    /// @notice Remove a member: governance, or the member's own operator or enclave.
    function revoke(address enclave) external;

    /// @notice Post the digest of the membership this member verified for `epoch`.
    function postMembershipDigest(uint64 epoch, bytes32 digest) external;

    /// @notice After the current epoch's sync deadline (anyone): drop every member that
    /// has not posted a matching digest, put its organisation in cool-down and start
    /// the next epoch without it. Needs at least one member that did post.
    function expireUnsynchronised() external;

    /// @notice Stop registrations and digests (governance).
    function pause() external;

    /// @notice Resume (governance). If the current epoch is not synchronised, its sync
    /// deadline becomes at least now plus the sync window (no digest could be posted
    /// while paused, so no member is expired for the pause).
    function unpause() external;

    /// @notice The EIP-712 digest an attestation service signs for `quote`.
    function quoteDigest(Quote calldata quote) external view returns (bytes32);

    /// @notice The EIP-712 digest of `Possession(bytes32 quoteDigest)` the enclave signs.
    function possessionDigest(Quote calldata quote) external view returns (bytes32);

    /// @notice The EIP-712 digest of `VerifiedEvidence(bytes32 quoteDigest, uint8
    /// evidenceType, bytes32 evidenceHash, bytes32 policyHash)` an evidence verifier signs.
    function verifiedEvidenceDigest(Quote calldata quote, EvidenceClaim calldata claim)
        external
        view
        returns (bytes32);

    /// @notice The evidence claim `enclave` was last registered with (zeroed if its last
    /// registration was a simulated quote, or none).
    function evidenceOf(address enclave) external view returns (EvidenceClaim memory);

    /// @notice Whether `verifier` is a trusted evidence verifier.
    function isEvidenceVerifier(address verifier) external view returns (bool);

    /// @notice How many trusted evidence verifiers there are.
    function verifierCount() external view returns (uint256);

    /// @notice How many distinct verifiers must sign a `VerifiedEvidence`.
    function verifierThreshold() external view returns (uint8);

    /// @notice The current membership epoch (starts at 0, first member makes it 1).
    function epoch() external view returns (uint64);

    /// @notice Whether every active member posted the canonical digest of the current epoch.
    function isSynchronised() external view returns (bool);

    /// @notice The epoch last synchronised (0 if none).
    function synchronisedEpoch() external view returns (uint64);

    /// @notice The time by which the current epoch's members must post their digests
    /// (`EpochStarted.syncDeadline`, or later after an `unpause`).
    function syncDeadline() external view returns (uint64);

    /// @notice Whether `member` posted the matching digest of `epoch`.
    function digestMatched(uint64 epoch, address member) external view returns (bool);

    /// @notice keccak256(abi.encode(chainId, registry, epoch, listHash)) where listHash
    /// chains the active members in registration order: h = keccak256(abi.encode(h,
    /// enclave, role, measurement, x25519Key)) from h = 0. Computed once per epoch.
    function membershipDigest() external view returns (bytes32);

    /// @notice Active members of `role`, in registration order.
    function activeMembers(Role role) external view returns (address[] memory);

    /// @notice A member record (zeroed if never registered).
    function member(address enclave) external view returns (Member memory);

    /// @notice Whether `account` is an active enclave of `role`.
    function isActiveMember(address account, Role role) external view returns (bool);

    /// @notice An organisation record (zeroed if never admitted).
    function organisation(address operator) external view returns (Organisation memory);

    /// @notice How many active enclaves of `role` the organisation runs.
    function enclaveCount(address operator, Role role) external view returns (uint256);

    /// @notice The most active members `role` may have.
    function roleLimit(Role role) external view returns (uint16);

    /// @notice Seconds an epoch has to synchronise, and a dropped organisation's cool-down.
    function syncPolicy() external view returns (uint64 window, uint64 cooldown);

    /// @notice Whether `measurement` is approved for `role`.
    function isApproved(Role role, bytes32 measurement) external view returns (bool);

    /// @notice Whether `signer` is a trusted attestation signer.
    function isTrustedSigner(address signer) external view returns (bool);

    /// @notice Whether registrations and digests are paused.
    function paused() external view returns (bool);
}
