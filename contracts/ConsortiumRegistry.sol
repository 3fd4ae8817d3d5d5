// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {Role, Quote, Member, Organisation, OrgStatus, RevokeReason, EvidenceClaim} from "./types/Types.sol";

/// @title ConsortiumRegistry
/// @notice See {IConsortiumRegistry}.
contract ConsortiumRegistry is IConsortiumRegistry, AccessControl, Pausable, EIP712 {
    /// @notice Governance: admits organisations, approves measurements and signers,
    /// revokes members, sets limits, pauses.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");

    bytes32 public constant QUOTE_TYPEHASH = keccak256(
        "Quote(uint8 role,bytes32 measurement,address operator,address enclave,bytes32 x25519Key,"
        "uint256 chainId,address registry,bytes32 nonce,uint64 expiry)"
    );
    bytes32 public constant POSSESSION_TYPEHASH = keccak256("Possession(bytes32 quoteDigest)");
    bytes32 public constant VERIFIED_EVIDENCE_TYPEHASH = keccak256(
        "VerifiedEvidence(bytes32 quoteDigest,uint8 evidenceType,bytes32 evidenceHash,bytes32 policyHash)"
    );
    /// @notice Evidence type codes below this are not hardware evidence (0 none, 1 simulated).
    uint8 public constant MIN_HARDWARE_EVIDENCE_TYPE = 2;

    /// @notice Most active members a role may ever have (a round's participants fit a bitmap).
    uint16 public constant MAX_ROLE_LIMIT = 64;
    uint64 public constant MIN_SYNC_WINDOW = 10;
    uint64 public constant MAX_SYNC_WINDOW = 7 days;
    uint64 public constant MAX_COOLDOWN = 365 days;

    mapping(Role => mapping(bytes32 => bool)) private _approved;
    mapping(address => bool) private _trustedSigners;
    /// @dev An evidence claim and the epoch its registration opened (a later simulated
    /// registration of the same enclave opens another, which hides the stale claim).
    struct EvidenceRecord {
        uint8 evidenceType;
        uint64 joinedEpoch;
        bytes32 evidenceHash;
        bytes32 policyHash;
    }

    /// @dev The evidence verifiers, their m-of-n threshold and the claims recorded.
    struct Evidence {
        mapping(address => bool) verifiers;
        uint248 count;
        uint8 threshold;
        mapping(address => EvidenceRecord) records;
    }

    Evidence private _evidence;
    mapping(bytes32 => bool) private _usedNonces;
    mapping(address => Member) private _memberOf;
    mapping(address => Organisation) private _orgs;
    mapping(address => mapping(Role => uint256)) private _enclavesOf;
    /// @dev Active members in registration order; at most MAX_ROLE_LIMIT per role.
    address[] private _active;
    /// @dev keccak chain over `_active` (see membershipDigest): extended on every
    /// registration, rebuilt only when members leave.
    bytes32 private _listHash;
    mapping(Role => uint256) private _activeCount;
    mapping(Role => bytes32) private _activeMeasurement;
    mapping(Role => uint16) private _roleLimit;

    /// @dev The epoch clock and its synchronisation policy, in one storage slot.
    struct Epochs {
        uint64 current;
        uint64 synchronised;
        uint64 deadline; // of the current epoch's digests
        uint32 window; // seconds a new epoch has to synchronise
        uint32 cooldown; // seconds a dropped organisation waits
    }

    Epochs private _epochs = Epochs({current: 0, synchronised: 0, deadline: 0, window: 10 minutes, cooldown: 1 days});
    uint256 private _matchingDigests;
    /// @dev A member whose digest did not match may post again (after re-verifying).
    mapping(uint64 => mapping(address => bool)) private _digestMatched;

    constructor(address governor) EIP712("EnclaveShareRegistry", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
        _evidence.threshold = 1;
        _roleLimit[Role.Provider] = MAX_ROLE_LIMIT;
        _roleLimit[Role.Gateway] = MAX_ROLE_LIMIT;
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
        uint256 count = _active.length;
        for (uint256 i; i < count; ++i) {
            address enclave = _active[i];
            Member storage m = _memberOf[enclave];
            if (m.role == role && m.measurement == measurement) {
                _deactivate(enclave, RevokeReason.MeasurementRevoked);
                ++deactivated;
            }
        }
        emit MeasurementRevoked(role, measurement, deactivated);
        if (deactivated > 0) _compactAndStartEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function setAttestationSigner(address signer, bool trusted) external onlyRole(GOVERNOR_ROLE) {
        if (_trustedSigners[signer] == trusted) revert RegistrySignerUnchanged(signer, trusted);
        _trustedSigners[signer] = trusted;
        emit AttestationSignerSet(signer, trusted);
    }

    /// @inheritdoc IConsortiumRegistry
    function setEvidenceVerifier(address verifier, bool trusted) external onlyRole(GOVERNOR_ROLE) {
        if (_evidence.verifiers[verifier] == trusted) revert RegistryVerifierUnchanged(verifier, trusted);
        uint248 count = trusted ? _evidence.count + 1 : _evidence.count - 1;
        if (count != 0 && count < _evidence.threshold) {
            revert RegistryInvalidVerifierThreshold(_evidence.threshold, count);
        }
        _evidence.verifiers[verifier] = trusted;
        _evidence.count = count;
        emit EvidenceVerifierSet(verifier, trusted, count);
    }

    /// @inheritdoc IConsortiumRegistry
    function setVerifierThreshold(uint8 threshold) external onlyRole(GOVERNOR_ROLE) {
        if (threshold == 0 || threshold > _evidence.count) {
            revert RegistryInvalidVerifierThreshold(threshold, _evidence.count);
        }
        _evidence.threshold = threshold;
        emit VerifierThresholdSet(threshold);
    }

    /// @inheritdoc IConsortiumRegistry
    function admitOrganisation(address operator, string calldata name, uint8 roles, uint16 maxEnclavesPerRole)
        external
        onlyRole(GOVERNOR_ROLE)
    {
        uint8 enclaveRoles = _roleBit(Role.Provider) | _roleBit(Role.Gateway);
        if (
            operator == address(0) || bytes(name).length == 0 || roles == 0 || roles & ~enclaveRoles != 0
                || maxEnclavesPerRole == 0
        ) revert RegistryInvalidOrganisation(operator, roles, maxEnclavesPerRole);
        if (_orgs[operator].status != OrgStatus.None) revert RegistryOrganisationExists(operator);
        _orgs[operator] = Organisation({
            status: OrgStatus.Admitted,
            roles: roles,
            maxEnclavesPerRole: maxEnclavesPerRole,
            coolingUntil: 0,
            name: name
        });
        emit OrganisationAdmitted(operator, name, roles, maxEnclavesPerRole);
    }

    /// @inheritdoc IConsortiumRegistry
    function suspendOrganisation(address operator) external onlyRole(GOVERNOR_ROLE) {
        Organisation storage org = _orgs[operator];
        if (org.status != OrgStatus.Admitted) revert RegistryOrganisationNotAdmitted(operator);
        org.status = OrgStatus.Suspended;
        uint256 revoked;
        uint256 count = _active.length;
        for (uint256 i; i < count; ++i) {
            address enclave = _active[i];
            if (_memberOf[enclave].operator == operator) {
                _deactivate(enclave, RevokeReason.OrganisationSuspended);
                ++revoked;
            }
        }
        emit OrganisationSuspended(operator, revoked);
        if (revoked > 0) _compactAndStartEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function reinstateOrganisation(address operator) external onlyRole(GOVERNOR_ROLE) {
        Organisation storage org = _orgs[operator];
        bool cooling = org.status == OrgStatus.Admitted && org.coolingUntil > block.timestamp;
        if (org.status != OrgStatus.Suspended && !cooling) revert RegistryOrganisationNotSuspended(operator);
        org.status = OrgStatus.Admitted;
        org.coolingUntil = 0;
        emit OrganisationReinstated(operator);
    }

    /// @inheritdoc IConsortiumRegistry
    function setRoleLimit(Role role, uint16 limit) external onlyRole(GOVERNOR_ROLE) {
        _requireEnclaveRole(role);
        if (limit == 0 || limit > MAX_ROLE_LIMIT) revert RegistryInvalidRoleLimit(role, limit);
        _roleLimit[role] = limit;
        emit RoleLimitSet(role, limit);
    }

    /// @inheritdoc IConsortiumRegistry
    function setSyncPolicy(uint64 window, uint64 cooldown) external onlyRole(GOVERNOR_ROLE) {
        if (window < MIN_SYNC_WINDOW || window > MAX_SYNC_WINDOW || cooldown > MAX_COOLDOWN) {
            revert RegistryInvalidSyncPolicy(window, cooldown);
        }
        _epochs.window = uint32(window);
        _epochs.cooldown = uint32(cooldown);
        emit SyncPolicySet(window, cooldown);
    }

    /// @inheritdoc IConsortiumRegistry
    function pause() external onlyRole(GOVERNOR_ROLE) {
        _pause();
    }

    /// @inheritdoc IConsortiumRegistry
    function unpause() external onlyRole(GOVERNOR_ROLE) {
        _unpause();
        // No digest could be posted while paused: an unsynchronised epoch gets a full
        // window from now, so that nobody is expired (and cooled down) for the pause.
        Epochs storage epochs = _epochs;
        if (epochs.current != 0 && epochs.synchronised != epochs.current) {
            uint64 fresh = uint64(block.timestamp) + epochs.window;
            if (fresh > epochs.deadline) {
                epochs.deadline = fresh;
                emit SyncDeadlineExtended(epochs.current, fresh);
            }
        }
    }

    // ------------------------------------------------------------------ membership

    /// @inheritdoc IConsortiumRegistry
    function register(Quote calldata quote, bytes calldata signature, bytes calldata possession)
        external
        payable
        whenNotPaused
    {
        bytes32 digest = _checkApplicant(quote);
        address signer = ECDSA.recover(digest, signature);
        if (!_trustedSigners[signer]) revert RegistryUntrustedSigner(signer);
        _checkQuote(quote, digest, possession);
        _admit(quote);
        emit MemberRegistered(quote.enclave, quote.operator, quote.role, _epochs.current + 1, quote, signature, possession);
        _startEpochAndFund(quote.enclave);
    }

    /// @inheritdoc IConsortiumRegistry
    function registerWithEvidence(
        Quote calldata quote,
        EvidenceClaim calldata claim,
        bytes[] calldata verifierSignatures,
        bytes calldata possession,
        bytes calldata evidence
    ) external payable whenNotPaused {
        bytes32 digest = _checkApplicant(quote);
        address[] memory verifiers = _checkEvidence(digest, claim, verifierSignatures, evidence);
        _checkQuote(quote, digest, possession);
        _admit(quote);
        uint64 joined = _epochs.current + 1;
        _evidence.records[quote.enclave] = EvidenceRecord({
            evidenceType: claim.evidenceType,
            joinedEpoch: joined,
            evidenceHash: claim.evidenceHash,
            policyHash: claim.policyHash
        });
        emit EvidenceRecorded(
            quote.enclave, claim.evidenceType, claim.evidenceHash, claim.policyHash, verifiers, evidence
        );
        emit MemberRegistered(quote.enclave, quote.operator, quote.role, joined, quote, "", possession);
        _startEpochAndFund(quote.enclave);
    }

    /// @inheritdoc IConsortiumRegistry
    function revoke(address enclave) external {
        Member storage m = _memberOf[enclave];
        if (!m.active) revert RegistryNotActiveMember(enclave);
        bool own = msg.sender == enclave || msg.sender == m.operator;
        if (!own && !hasRole(GOVERNOR_ROLE, msg.sender)) revert RegistryRevokeUnauthorized(msg.sender, enclave);
        _deactivate(enclave, own ? RevokeReason.Operator : RevokeReason.Governance);
        _compactAndStartEpoch();
    }

    /// @inheritdoc IConsortiumRegistry
    function postMembershipDigest(uint64 postedEpoch, bytes32 digest) external whenNotPaused {
        if (!_memberOf[msg.sender].active) revert RegistryNotActiveMember(msg.sender);
        if (postedEpoch != _epochs.current) revert RegistryWrongEpoch(postedEpoch, _epochs.current);
        if (_digestMatched[postedEpoch][msg.sender]) revert RegistryDigestAlreadyPosted(msg.sender, postedEpoch);
        bytes32 canonical = membershipDigest();
        bool matches = digest == canonical;
        emit MembershipDigestPosted(postedEpoch, msg.sender, digest, matches);
        if (!matches) return;
        _digestMatched[postedEpoch][msg.sender] = true;
        _matchingDigests += 1;
        if (_matchingDigests == _active.length) {
            _epochs.synchronised = postedEpoch;
            emit EpochSynchronised(postedEpoch, canonical);
        }
    }

    /// @inheritdoc IConsortiumRegistry
    function expireUnsynchronised() external whenNotPaused {
        Epochs memory epochs = _epochs;
        uint64 current = epochs.current;
        if (current == 0 || epochs.synchronised == current) revert RegistryEpochSynchronised(current);
        if (block.timestamp <= epochs.deadline) revert RegistrySyncStillOpen(current, epochs.deadline);
        if (_matchingDigests == 0) revert RegistryNoMemberSynchronised(current);
        uint64 coolingUntil = uint64(block.timestamp) + epochs.cooldown;
        uint256 count = _active.length;
        for (uint256 i; i < count; ++i) {
            address enclave = _active[i];
            if (!_digestMatched[current][enclave]) {
                _orgs[_memberOf[enclave].operator].coolingUntil = coolingUntil;
                _deactivate(enclave, RevokeReason.Unsynchronised);
            }
        }
        _compactAndStartEpoch();
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
    function possessionDigest(Quote calldata quote) external view returns (bytes32) {
        return _possessionDigest(quoteDigest(quote));
    }

    /// @inheritdoc IConsortiumRegistry
    function verifiedEvidenceDigest(Quote calldata quote, EvidenceClaim calldata claim)
        external
        view
        returns (bytes32)
    {
        return _verifiedEvidenceDigest(quoteDigest(quote), claim);
    }

    /// @inheritdoc IConsortiumRegistry
    function evidenceOf(address enclave) external view returns (EvidenceClaim memory claim) {
        EvidenceRecord storage record = _evidence.records[enclave];
        if (record.joinedEpoch != 0 && record.joinedEpoch == _memberOf[enclave].joinedEpoch) {
            claim = EvidenceClaim(record.evidenceType, record.evidenceHash, record.policyHash);
        }
    }

    /// @inheritdoc IConsortiumRegistry
    function isEvidenceVerifier(address verifier) external view returns (bool) {
        return _evidence.verifiers[verifier];
    }

    /// @inheritdoc IConsortiumRegistry
    function verifierCount() external view returns (uint256) {
        return _evidence.count;
    }

    /// @inheritdoc IConsortiumRegistry
    function verifierThreshold() external view returns (uint8) {
        return _evidence.threshold;
    }

    /// @inheritdoc IConsortiumRegistry
    function epoch() external view returns (uint64) {
        return _epochs.current;
    }

    /// @inheritdoc IConsortiumRegistry
    function isSynchronised() external view returns (bool) {
        return _epochs.current != 0 && _epochs.synchronised == _epochs.current;
    }

    /// @inheritdoc IConsortiumRegistry
    function synchronisedEpoch() external view returns (uint64) {
        return _epochs.synchronised;
    }

    /// @inheritdoc IConsortiumRegistry
    function syncDeadline() external view returns (uint64) {
        return _epochs.deadline;
    }

    /// @inheritdoc IConsortiumRegistry
    function digestMatched(uint64 postedEpoch, address account) external view returns (bool) {
        return _digestMatched[postedEpoch][account];
    }

    /// @inheritdoc IConsortiumRegistry
    function membershipDigest() public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), _epochs.current, _listHash));
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
    function organisation(address operator) external view returns (Organisation memory) {
        return _orgs[operator];
    }

    /// @inheritdoc IConsortiumRegistry
    function enclaveCount(address operator, Role role) external view returns (uint256) {
        return _enclavesOf[operator][role];
    }

    /// @inheritdoc IConsortiumRegistry
    function roleLimit(Role role) external view returns (uint16) {
        return _roleLimit[role];
    }

    /// @inheritdoc IConsortiumRegistry
    function syncPolicy() external view returns (uint64 window, uint64 cooldown) {
        return (_epochs.window, _epochs.cooldown);
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

    /// @dev Who may register what: the caller is the quote's operator, an admitted
    /// organisation that may add an enclave of the role; the enclave and key are not
    /// zero. Returns the quote's digest.
    function _checkApplicant(Quote calldata quote) private view returns (bytes32) {
        if (msg.sender != quote.operator) revert RegistryNotOperator(msg.sender, quote.operator);
        _requireEnclaveRole(quote.role);
        _requireMayRegister(quote.operator, quote.role);
        if (quote.enclave == address(0) || quote.x25519Key == bytes32(0)) {
            revert RegistryInvalidEnclave(quote.enclave);
        }
        return quoteDigest(quote);
    }

    /// @dev The quote's own checks, once its signer (attestation signer or evidence
    /// verifiers) is accepted: signed by the enclave's key, bound here, fresh, approved
    /// and matching the role's measurement, room in the role.
    function _checkQuote(Quote calldata quote, bytes32 digest, bytes calldata possession) private view {
        (address holder, ECDSA.RecoverError failure,) = ECDSA.tryRecover(_possessionDigest(digest), possession);
        if (failure != ECDSA.RecoverError.NoError || holder != quote.enclave) {
            revert RegistryPossessionNotProven(quote.enclave, holder);
        }
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
        if (_activeCount[quote.role] >= _roleLimit[quote.role]) {
            revert RegistryRoleFull(quote.role, _roleLimit[quote.role]);
        }
    }

    /// @dev Hardware evidence: a hardware type, bytes that hash to the claim, and at
    /// least the threshold of distinct trusted verifiers (ascending) signing the claim
    /// for this quote. Returns the verifiers.
    function _checkEvidence(
        bytes32 digest,
        EvidenceClaim calldata claim,
        bytes[] calldata signatures,
        bytes calldata evidence
    ) private view returns (address[] memory verifiers) {
        if (claim.evidenceType < MIN_HARDWARE_EVIDENCE_TYPE) revert RegistryInvalidEvidenceType(claim.evidenceType);
        bytes32 actual = keccak256(evidence);
        if (actual != claim.evidenceHash) revert RegistryEvidenceHashMismatch(claim.evidenceHash, actual);
        uint256 count = signatures.length;
        if (count < _evidence.threshold) revert RegistryTooFewVerifierSignatures(count, _evidence.threshold);
        bytes32 verified = _verifiedEvidenceDigest(digest, claim);
        verifiers = new address[](count);
        address previous;
        for (uint256 i; i < count; ++i) {
            address signer = ECDSA.recover(verified, signatures[i]);
            if (!_evidence.verifiers[signer]) revert RegistryUntrustedVerifier(signer);
            if (signer <= previous) revert RegistryVerifiersNotAscending(previous, signer);
            verifiers[i] = signer;
            previous = signer;
        }
    }

    /// @dev The state change of a registration (after every check).
    function _admit(Quote calldata quote) private {
        _usedNonces[quote.nonce] = true;
        _memberOf[quote.enclave] = Member({
            role: quote.role,
            active: true,
            operator: quote.operator,
            measurement: quote.measurement,
            x25519Key: quote.x25519Key,
            joinedEpoch: _epochs.current + 1
        });
        _active.push(quote.enclave);
        _listHash = _chain(_listHash, quote.enclave, quote.role, quote.measurement, quote.x25519Key);
        _activeCount[quote.role] += 1;
        _enclavesOf[quote.operator][quote.role] += 1;
        _activeMeasurement[quote.role] = quote.measurement;
    }

    /// @dev After `MemberRegistered`: the new epoch, then any value sent goes to the
    /// enclave, which proved it holds this account's key (an externally owned account).
    function _startEpochAndFund(address enclave) private {
        _startEpoch();
        if (msg.value > 0) {
            (bool ok,) = enclave.call{value: msg.value}("");
            if (!ok) revert RegistryFundingFailed(enclave, msg.value);
        }
    }

    function _requireMayRegister(address operator, Role role) private view {
        Organisation storage org = _orgs[operator];
        if (org.status != OrgStatus.Admitted) revert RegistryOrganisationNotAdmitted(operator);
        if (block.timestamp < org.coolingUntil) revert RegistryOrganisationCoolingDown(operator, org.coolingUntil);
        if (org.roles & _roleBit(role) == 0) revert RegistryRoleNotAllowed(operator, role);
        if (_enclavesOf[operator][role] >= org.maxEnclavesPerRole) {
            revert RegistryEnclaveLimit(operator, role, org.maxEnclavesPerRole);
        }
    }

    function _roleBit(Role role) private pure returns (uint8) {
        return uint8(1 << uint8(role));
    }

    function _possessionDigest(bytes32 quoteDigest_) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(POSSESSION_TYPEHASH, quoteDigest_)));
    }

    function _verifiedEvidenceDigest(bytes32 quoteDigest_, EvidenceClaim calldata claim)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    VERIFIED_EVIDENCE_TYPEHASH, quoteDigest_, claim.evidenceType, claim.evidenceHash, claim.policyHash
                )
            )
        );
    }

    function _chain(bytes32 previous, address enclave, Role role, bytes32 measurement, bytes32 x25519Key)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(previous, enclave, role, measurement, x25519Key));
    }

    /// @dev Marks a member inactive and emits why; `_compactAndStartEpoch` then drops
    /// it from `_active` (once per transaction, however many left).
    function _deactivate(address enclave, RevokeReason reason) private {
        Member storage m = _memberOf[enclave];
        m.active = false;
        _activeCount[m.role] -= 1;
        _enclavesOf[m.operator][m.role] -= 1;
        emit MemberRevoked(enclave, msg.sender, _epochs.current + 1, reason);
    }

    /// @dev One pass: keeps the active members in registration order and rebuilds the
    /// list hash over them, then starts the next epoch.
    function _compactAndStartEpoch() private {
        uint256 count = _active.length;
        uint256 kept;
        bytes32 listHash;
        for (uint256 i; i < count; ++i) {
            address enclave = _active[i];
            Member storage m = _memberOf[enclave];
            if (!m.active) continue;
            if (kept != i) _active[kept] = enclave;
            listHash = _chain(listHash, enclave, m.role, m.measurement, m.x25519Key);
            ++kept;
        }
        for (uint256 i = kept; i < count; ++i) {
            _active.pop();
        }
        _listHash = listHash;
        _startEpoch();
    }

    function _startEpoch() private {
        Epochs storage epochs = _epochs;
        epochs.current += 1;
        epochs.deadline = uint64(block.timestamp) + epochs.window;
        _matchingDigests = 0;
        emit EpochStarted(epochs.current, membershipDigest(), _active.length, epochs.deadline);
    }
}
