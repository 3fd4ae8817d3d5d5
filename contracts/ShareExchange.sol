// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IShareExchange} from "./interfaces/IShareExchange.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {
    DataSpec,
    OutputPolicy,
    OutputKind,
    RoundState,
    AbortReason,
    Scheme,
    Role,
    ExclusionReason,
    BlameReason
} from "./types/Types.sol";

/// @title ShareExchange
/// @notice See {IShareExchange}.
contract ShareExchange is IShareExchange, AccessControl {
    /// @notice Governance: grants the coordinator role.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");
    /// @notice May open rounds.
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    uint256 public constant MAX_PARTICIPANTS = 64;
    uint32 public constant MAX_LENGTH = 10_000_000;
    uint8 public constant MAX_FRAC_BITS = 40;
    /// @notice No round completes with fewer contributors than this, whatever governance sets.
    uint16 public constant MIN_FLOOR = 3;
    /// @notice Domain of the per-posting key commitments in a posting's key table.
    bytes32 public constant KEY_COMMITMENT_TAG = keccak256("enclave-share/posting-key/v1");
    /// @notice The shortest recovery window; otherwise it is as long as the fusing window.
    uint64 public constant MIN_RECOVERY_SECONDS = 60;

    struct Round {
        DataSpec spec;
        OutputPolicy policy;
        uint16 threshold;
        uint64 epoch;
        uint64 postingDeadline;
        uint64 deadline;
        RoundState status; // Posting, Fusing, Recovering, Completed or Aborted; Expired is derived
        uint64 recoveryDeadline; // set when recovery starts
        uint256 posted; // bitmap: complete share postings
        uint256 excluded; // bitmap: senders whose shares were rejected (Shamir)
        uint256 contributors; // bitmap frozen when posting closes
        uint256 holders; // bitmap: fused commitments over the current contributors
        uint16 floor; // minimum contributors, fixed at opening
        uint256 recovered; // bitmap: holders that revealed their recovery keys
        Complaint complaint; // the one complaint being judged, if any
        address[] participants;
    }

    struct Complaint {
        uint8 accuserPlusOne; // participant index + 1; zero when no complaint is pending
        uint8 senderPlusOne;
        uint256 judges; // bitmap of the contributors who must judge
        uint256 guilty; // judges who found the sender at fault
        uint256 innocent; // judges who found the sender's ciphertext valid
    }

    struct Posting {
        uint16 chunks;
        uint16 chunkCount;
        bytes32 commitment;
        bytes32 running;
        bytes32 keyTableHash;
    }

    IConsortiumRegistry public immutable registry;

    mapping(uint256 => Round) private _rounds;
    mapping(uint256 => mapping(address => uint256)) private _indexPlusOne;
    mapping(uint256 => mapping(address => Posting)) private _postings;
    mapping(uint256 => mapping(address => bool)) private _revealed;
    mapping(uint256 => mapping(bytes32 => bool)) private _blamed;
    uint256 private _roundCount;
    uint16 private _contributorFloor = MIN_FLOOR;

    constructor(IConsortiumRegistry registry_, address governor) {
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
        _setRoleAdmin(COORDINATOR_ROLE, GOVERNOR_ROLE);
    }

    // ------------------------------------------------------------------ governance

    /// @inheritdoc IShareExchange
    function setContributorFloor(uint16 floor) external onlyRole(GOVERNOR_ROLE) {
        if (floor < MIN_FLOOR || floor > MAX_PARTICIPANTS) revert RoundInvalidFloor(floor);
        _contributorFloor = floor;
        emit ContributorFloorSet(floor);
    }

    modifier whenRegistryLive() {
        if (registry.paused()) revert RoundRegistryPaused();
        _;
    }

    // ------------------------------------------------------------------ lifecycle

    /// @inheritdoc IShareExchange
    function openRound(
        bytes32 inputTag,
        DataSpec calldata spec,
        uint16 threshold,
        uint64 postingDeadline,
        uint64 deadline,
        OutputPolicy calldata policy
    ) external onlyRole(COORDINATOR_ROLE) whenRegistryLive returns (uint256 roundId) {
        uint64 epoch = registry.epoch();
        if (!registry.isSynchronised()) revert RoundEpochNotSynchronised(epoch);
        address[] memory members = registry.activeMembers(Role.Provider);
        uint256 n = members.length;
        if (n < MIN_FLOOR || n > MAX_PARTICIPANTS) revert RoundInvalidParticipants(n);
        if (threshold < 2 || threshold > n) revert RoundInvalidThreshold(threshold, n, spec.scheme);
        if (spec.length == 0 || spec.length > MAX_LENGTH || spec.fracBits > MAX_FRAC_BITS || spec.modulus < 3) {
            revert RoundInvalidSpec(spec.length, spec.fracBits, spec.modulus);
        }
        // A sparse mask is for n-of-n rounds: a recovery makes the shares of a holder's absent
        // neighbours public, and with k neighbours a holder could lose them all.
        if (
            spec.maskDegree != 0
                && (spec.scheme != Scheme.Additive || spec.maskDegree % 2 != 0 || threshold != n)
        ) revert RoundInvalidMaskDegree(spec.maskDegree, spec.scheme);
        if (postingDeadline <= block.timestamp || deadline < postingDeadline) {
            revert RoundInvalidDeadlines(postingDeadline, deadline, block.timestamp);
        }
        if (policy.minContributors > n) revert RoundInvalidPolicy(policy.minContributors, n);
        roundId = ++_roundCount;
        Round storage r = _rounds[roundId];
        r.spec = spec;
        r.policy = policy;
        r.threshold = threshold;
        r.epoch = epoch;
        r.postingDeadline = postingDeadline;
        r.deadline = deadline;
        r.status = RoundState.Posting;
        r.floor = _floorFor(spec.scheme, threshold, policy.minContributors, n);
        r.participants = members;
        for (uint256 i; i < n; ++i) {
            _indexPlusOne[roundId][members[i]] = i + 1;
        }
        _emitOpened(roundId, inputTag, r);
    }

    /// @dev RoundOpened from the stored round (keeps openRound's stack shallow).
    function _emitOpened(uint256 roundId, bytes32 inputTag, Round storage r) private {
        emit RoundOpened(
            roundId,
            r.epoch,
            inputTag,
            r.participants,
            r.spec,
            r.threshold,
            r.postingDeadline,
            r.deadline,
            r.policy,
            r.floor
        );
    }

    /// @inheritdoc IShareExchange
    function postShares(
        uint256 roundId,
        uint16 chunkIndex,
        uint16 chunkCount,
        bytes32 commitment,
        bytes32[] calldata keyTable,
        bytes calldata payload
    ) external whenRegistryLive {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Posting));
        uint256 bit = _participantBit(roundId, msg.sender);
        if (block.timestamp > r.postingDeadline) revert RoundPostingDeadlinePassed(roundId, r.postingDeadline);
        if (r.excluded & bit != 0) revert RoundSenderExcluded(roundId, msg.sender);
        if (r.posted & bit != 0) revert RoundAlreadyPosted(roundId, msg.sender);

        Posting storage p = _postings[roundId][msg.sender];
        if (chunkIndex != p.chunks) revert RoundChunkOutOfOrder(roundId, msg.sender, p.chunks, chunkIndex);
        if (chunkIndex == 0) {
            if (chunkCount == 0 || commitment == bytes32(0)) {
                revert RoundChunkHeaderMismatch(roundId, msg.sender, chunkCount, commitment);
            }
            if (keyTable.length != r.participants.length) {
                revert RoundKeyTableInvalid(roundId, msg.sender, keyTable.length);
            }
            p.chunkCount = chunkCount;
            p.commitment = commitment;
            p.keyTableHash = keccak256(abi.encodePacked(keyTable));
        } else if (chunkCount != p.chunkCount || commitment != p.commitment) {
            revert RoundChunkHeaderMismatch(roundId, msg.sender, chunkCount, commitment);
        } else if (keyTable.length != 0) {
            revert RoundKeyTableInvalid(roundId, msg.sender, keyTable.length);
        }
        bytes32 running = keccak256(abi.encodePacked(p.running, keccak256(payload)));
        if (chunkIndex + 1 == chunkCount && running != commitment) {
            revert RoundCommitmentMismatch(roundId, msg.sender, commitment, running);
        }
        p.running = running;
        p.chunks = chunkIndex + 1;
        emit SharesPosted(roundId, msg.sender, chunkIndex, chunkCount, commitment, keyTable, payload);
        if (p.chunks == chunkCount) {
            r.posted |= bit;
            _closePostingIfComplete(roundId, r);
        }
    }

    /// @inheritdoc IShareExchange
    function closePosting(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Posting));
        if (block.timestamp <= r.postingDeadline) revert RoundPostingStillOpen(roundId, r.postingDeadline);
        if (_popcount(r.posted) >= r.floor) {
            _enterFusing(roundId, r);
        } else {
            _abort(roundId, r, AbortReason.MissingShares, _members(r, ~(r.posted | r.excluded)));
        }
    }

    /// @inheritdoc IShareExchange
    function complain(uint256 roundId, address sender, bytes32 postingKey, bytes32[] calldata keyTable) external {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Fusing));
        (uint256 accuserIndex, uint256 senderIndex) = _complaintParties(roundId, r, sender);
        _checkKeyTable(roundId, sender, keyTable);

        if (!_neighbours(r, accuserIndex, senderIndex)) revert RoundNotNeighbour(roundId, msg.sender, sender);
        uint256 parties = (1 << accuserIndex) | (1 << senderIndex);
        if (keyTable[accuserIndex] != _keyCommitment(roundId, sender, msg.sender, postingKey)) {
            // The revealed key is not the one the sender committed to: either the sender
            // committed to a key the accuser cannot derive, or the accuser lies. Both go.
            emit ComplaintFiled(roundId, msg.sender, sender, postingKey, 0);
            _exclude(roundId, r, parties, ExclusionReason.KeyMismatch);
            return;
        }
        uint256 judges = r.contributors & ~parties;
        Complaint storage c = r.complaint;
        c.accuserPlusOne = uint8(accuserIndex + 1);
        c.senderPlusOne = uint8(senderIndex + 1);
        c.judges = judges;
        r.holders = 0; // the contributor set is about to change
        emit ComplaintFiled(roundId, msg.sender, sender, postingKey, judges);
    }

    /// @inheritdoc IShareExchange
    function judgeComplaint(uint256 roundId, bool senderAtFault) external {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Fusing));
        Complaint storage c = r.complaint;
        if (c.accuserPlusOne == 0) revert RoundNoComplaint(roundId);
        uint256 bit = _participantBit(roundId, msg.sender);
        if (c.judges & bit == 0) revert RoundNotJudge(roundId, msg.sender);
        if ((c.guilty | c.innocent) & bit != 0) revert RoundAlreadyJudged(roundId, msg.sender);
        if (senderAtFault) c.guilty |= bit;
        else c.innocent |= bit;
        address accuser = r.participants[c.accuserPlusOne - 1];
        address sender = r.participants[c.senderPlusOne - 1];
        emit ComplaintJudged(roundId, msg.sender, accuser, sender, senderAtFault);
        if ((c.guilty | c.innocent) != c.judges) return;

        uint256 guilty = c.guilty;
        uint256 innocent = c.innocent;
        uint256 accuserBit = 1 << (c.accuserPlusOne - 1);
        uint256 senderBit = 1 << (c.senderPlusOne - 1);
        delete r.complaint;
        if (innocent == 0) {
            _exclude(roundId, r, senderBit, ExclusionReason.InvalidShare);
        } else if (guilty == 0) {
            _exclude(roundId, r, accuserBit, ExclusionReason.FalseComplaint);
        } else {
            _abort(roundId, r, AbortReason.SplitVerdict, _members(r, accuserBit | senderBit));
        }
    }

    /// @inheritdoc IShareExchange
    function postFused(uint256 roundId, bytes32 commitment, uint256 contributors) external whenRegistryLive {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Fusing));
        uint256 bit = _participantBit(roundId, msg.sender);
        if (r.excluded & bit != 0) revert RoundSenderExcluded(roundId, msg.sender);
        Complaint storage c = r.complaint;
        if (c.accuserPlusOne != 0) {
            revert RoundComplaintPending(
                roundId, r.participants[c.accuserPlusOne - 1], r.participants[c.senderPlusOne - 1]
            );
        }
        if (contributors != r.contributors) revert RoundStaleContributors(roundId, contributors, r.contributors);
        if (r.holders & bit != 0) revert RoundAlreadyFused(roundId, msg.sender);
        r.holders |= bit;
        emit FusedCommitted(roundId, msg.sender, commitment, contributors);
        if (_popcount(r.holders) == r.participants.length - _popcount(r.excluded)) {
            if (r.excluded != 0 && _tolerant(r)) {
                _startRecovery(roundId, r); // the excluded were owed shares
            } else {
                r.status = RoundState.Completed;
                emit RoundCompleted(roundId, r.contributors, r.holders);
            }
        }
    }

    /// @inheritdoc IShareExchange
    function finalize(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Expired));
        Complaint storage c = r.complaint;
        if (r.status == RoundState.Posting) {
            _abort(roundId, r, AbortReason.MissingShares, _members(r, ~(r.posted | r.excluded)));
        } else if (r.status == RoundState.Recovering) {
            _abort(roundId, r, AbortReason.MissingRecovery, _members(r, r.holders & ~r.recovered));
        } else if (c.accuserPlusOne != 0) {
            _abort(roundId, r, AbortReason.MissingVerdict, _members(r, c.judges & ~(c.guilty | c.innocent)));
        } else if (r.spec.scheme == Scheme.Shamir && _popcount(r.holders) >= r.threshold) {
            r.status = RoundState.Completed;
            emit RoundCompleted(roundId, r.contributors, r.holders);
        } else if (_tolerant(r) && _popcount(r.holders & r.contributors) >= r.floor) {
            _startRecovery(roundId, r);
        } else {
            _abort(roundId, r, AbortReason.MissingFusion, _members(r, ~(r.holders | r.excluded)));
        }
    }

    /// @inheritdoc IShareExchange
    function recoverAbsent(
        uint256 roundId,
        bytes32[] calldata sentKeys,
        bytes32[] calldata receivedKeys,
        bytes32[] calldata ownTable,
        bytes32[][] calldata absentTables
    ) external whenRegistryLive {
        Round storage r = _rounds[roundId];
        _checkRecoveryCounts(roundId, r, sentKeys.length, receivedKeys.length, absentTables.length);
        if (sentKeys.length != 0) _checkSentKeys(roundId, r, sentKeys, ownTable);
        if (receivedKeys.length != 0) _checkReceivedKeys(roundId, r, receivedKeys, absentTables);
        r.recovered |= 1 << (_indexPlusOne[roundId][msg.sender] - 1);
        emit RecoveryKeysRevealed(roundId, msg.sender, sentKeys, receivedKeys);
        if (r.recovered == r.holders) _completeRecovered(roundId, r);
    }

    /// @inheritdoc IShareExchange
    function revealFused(uint256 roundId, bytes calldata payload) external whenRegistryLive {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Completed));
        if (r.policy.kind != OutputKind.Intermediate) revert RoundNotIntermediate(roundId);
        uint256 bit = _participantBit(roundId, msg.sender);
        if (r.holders & bit == 0) revert RoundNotHolder(roundId, msg.sender);
        if (_revealed[roundId][msg.sender]) revert RoundAlreadyRevealed(roundId, msg.sender);
        _revealed[roundId][msg.sender] = true;
        emit FusedRevealed(roundId, msg.sender, payload);
    }

    /// @inheritdoc IShareExchange
    function reportMisbehaviour(uint256 roundId, address member, BlameReason reason, bytes calldata evidence)
        external
    {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Completed));
        if (_indexPlusOne[roundId][msg.sender] != 0) {
            _participantBit(roundId, msg.sender);
        } else if (!registry.isActiveMember(msg.sender, Role.Gateway)) {
            revert RoundNotParticipant(roundId, msg.sender);
        }
        uint256 index = _indexPlusOne[roundId][member];
        if (index == 0 || r.holders & (1 << (index - 1)) == 0) revert RoundNotHolder(roundId, member);
        if (reason == BlameReason.None) revert RoundInvalidBlame(roundId, reason);
        bytes32 key = keccak256(abi.encode(msg.sender, member, reason, keccak256(evidence)));
        if (_blamed[roundId][key]) revert RoundAlreadyBlamed(roundId, msg.sender, member);
        _blamed[roundId][key] = true;
        emit MemberBlamed(roundId, member, msg.sender, reason, evidence);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IShareExchange
    function state(uint256 roundId) public view returns (RoundState) {
        Round storage r = _rounds[roundId];
        RoundState status = r.status;
        if ((status == RoundState.Posting || status == RoundState.Fusing) && block.timestamp > r.deadline) {
            return RoundState.Expired;
        }
        if (status == RoundState.Recovering && block.timestamp > r.recoveryDeadline) return RoundState.Expired;
        return status;
    }

    /// @inheritdoc IShareExchange
    function participants(uint256 roundId) external view returns (address[] memory) {
        return _rounds[roundId].participants;
    }

    /// @inheritdoc IShareExchange
    function roundInfo(uint256 roundId)
        external
        view
        returns (
            DataSpec memory spec,
            OutputPolicy memory policy,
            uint16 threshold,
            uint64 epoch,
            uint64 postingDeadline,
            uint64 deadline,
            uint256 contributors,
            uint256 holders
        )
    {
        Round storage r = _rounds[roundId];
        return (r.spec, r.policy, r.threshold, r.epoch, r.postingDeadline, r.deadline, r.contributors, r.holders);
    }

    /// @inheritdoc IShareExchange
    function isHolder(uint256 roundId, address account) external view returns (bool) {
        uint256 index = _indexPlusOne[roundId][account];
        Round storage r = _rounds[roundId];
        return index != 0 && r.status == RoundState.Completed && r.holders & (1 << (index - 1)) != 0;
    }

    /// @inheritdoc IShareExchange
    function shareCommitment(uint256 roundId, address sender) external view returns (bytes32) {
        Posting storage p = _postings[roundId][sender];
        return p.chunks != 0 && p.chunks == p.chunkCount ? p.commitment : bytes32(0);
    }

    /// @inheritdoc IShareExchange
    function chunksPosted(uint256 roundId, address sender) external view returns (uint16) {
        return _postings[roundId][sender].chunks;
    }

    /// @inheritdoc IShareExchange
    function roundCount() external view returns (uint256) {
        return _roundCount;
    }

    /// @inheritdoc IShareExchange
    function contributorFloor() external view returns (uint16) {
        return _contributorFloor;
    }

    /// @inheritdoc IShareExchange
    function roundGuards(uint256 roundId) external view returns (uint16 floor, uint256 excluded) {
        Round storage r = _rounds[roundId];
        return (r.floor, r.excluded);
    }

    /// @inheritdoc IShareExchange
    function pendingComplaint(uint256 roundId)
        external
        view
        returns (address accuser, address sender, uint256 judges, uint256 guilty, uint256 innocent)
    {
        Round storage r = _rounds[roundId];
        Complaint storage c = r.complaint;
        if (c.accuserPlusOne == 0) return (address(0), address(0), 0, 0, 0);
        return (
            r.participants[c.accuserPlusOne - 1], r.participants[c.senderPlusOne - 1], c.judges, c.guilty, c.innocent
        );
    }

    /// @inheritdoc IShareExchange
    function recoveryInfo(uint256 roundId)
        external
        view
        returns (uint64 recoveryDeadline, uint256 owing, uint256 recovered)
    {
        Round storage r = _rounds[roundId];
        return (r.recoveryDeadline, r.recoveryDeadline == 0 ? 0 : r.holders, r.recovered);
    }

    /// @inheritdoc IShareExchange
    function keyTableHash(uint256 roundId, address sender) external view returns (bytes32) {
        return _postings[roundId][sender].keyTableHash;
    }

    // ------------------------------------------------------------------ internal

    /// @dev The one state guard: reverts unless the derived state is in `allowed`.
    function _validateState(uint256 roundId, bytes32 allowed) private view returns (RoundState current) {
        current = state(roundId);
        if (_bit(current) & allowed == 0) revert RoundUnexpectedState(roundId, current, allowed);
    }

    function _bit(RoundState s) private pure returns (bytes32) {
        return bytes32(1 << uint8(s));
    }

    function _participantBit(uint256 roundId, address account) private view returns (uint256) {
        uint256 index = _indexPlusOne[roundId][account];
        if (index == 0) revert RoundNotParticipant(roundId, account);
        if (!registry.isActiveMember(account, Role.Provider)) revert RoundNotAttested(account);
        return 1 << (index - 1);
    }

    /// @dev The accuser's and the accused sender's participant indices, after checking
    /// both may take part in a complaint now.
    function _complaintParties(uint256 roundId, Round storage r, address sender)
        private
        view
        returns (uint256 accuserIndex, uint256 senderIndex)
    {
        uint256 accuserBit = _participantBit(roundId, msg.sender);
        if (r.excluded & accuserBit != 0) revert RoundSenderExcluded(roundId, msg.sender);
        if (sender == msg.sender) revert RoundSelfComplaint(roundId, msg.sender);
        senderIndex = _indexPlusOne[roundId][sender];
        if (senderIndex == 0) revert RoundNotParticipant(roundId, sender);
        senderIndex -= 1;
        uint256 senderBit = 1 << senderIndex;
        if (r.excluded & senderBit != 0) revert RoundSenderExcluded(roundId, sender);
        if (r.contributors & senderBit == 0) revert RoundNothingPosted(roundId, sender);
        Complaint storage c = r.complaint;
        if (c.accuserPlusOne != 0) {
            revert RoundComplaintPending(
                roundId, r.participants[c.accuserPlusOne - 1], r.participants[c.senderPlusOne - 1]
            );
        }
        accuserIndex = _indexPlusOne[roundId][msg.sender] - 1;
    }

    /// @dev Whether participants `a` and `b` exchange shares: always with a full mask; with
    /// a sparse mask of degree k, when they are within k/2 of each other around the circle.
    function _neighbours(Round storage r, uint256 a, uint256 b) private view returns (bool) {
        uint256 k = r.spec.maskDegree;
        if (k == 0) return true;
        uint256 n = r.participants.length;
        uint256 gap = a > b ? a - b : b - a;
        if (n - gap < gap) gap = n - gap;
        return gap <= k / 2;
    }

    /// @dev The commitment a sender posts for the key of its ciphertext to `recipient`.
    function _keyCommitment(uint256 roundId, address sender, address recipient, bytes32 postingKey)
        private
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(KEY_COMMITMENT_TAG, block.chainid, address(this), roundId, sender, recipient, postingKey)
        );
    }

    /// @dev Additive n-of-n: everyone. Otherwise max(t, governance floor, policy minimum, 3).
    function _floorFor(Scheme scheme, uint16 threshold, uint16 minContributors, uint256 n)
        private
        view
        returns (uint16 floor)
    {
        if (scheme == Scheme.Additive && threshold == n) return uint16(n);
        floor = _contributorFloor;
        if (threshold > floor) floor = threshold;
        if (minContributors > floor) floor = minContributors;
        if (floor > n) revert RoundFloorAboveParticipants(floor, n);
    }

    /// @dev Remove `mask` from the contributors, naming each member and the reason; an
    /// additive round, or one left below its floor, aborts.
    function _exclude(uint256 roundId, Round storage r, uint256 mask, ExclusionReason reason) private {
        r.excluded |= mask;
        r.posted &= ~mask;
        r.contributors &= ~mask;
        r.holders = 0; // every fused share included the excluded members
        uint256 n = r.participants.length;
        for (uint256 i; i < n; ++i) {
            if (mask & (1 << i) != 0) emit MemberExcluded(roundId, r.participants[i], reason, r.contributors);
        }
        if (r.spec.scheme == Scheme.Additive && !_tolerant(r)) {
            AbortReason why = reason == ExclusionReason.InvalidShare
                ? AbortReason.InvalidShare
                : reason == ExclusionReason.FalseComplaint ? AbortReason.FalseComplaint : AbortReason.KeyMismatch;
            _abort(roundId, r, why, _members(r, mask));
        } else if (_popcount(r.contributors) < r.floor) {
            _abort(roundId, r, AbortReason.TooFewContributors, _members(r, r.excluded));
        }
    }

    /// @dev An additive round that survives dropouts (threshold below n).
    function _tolerant(Round storage r) private view returns (bool) {
        return r.spec.scheme == Scheme.Additive && r.threshold < r.participants.length;
    }

    /// @dev Freeze the holders: every pair shares (no sparse mask here), so each owes keys.
    function _startRecovery(uint256 roundId, Round storage r) private {
        uint256 absent = ((1 << r.participants.length) - 1) & ~r.holders;
        r.status = RoundState.Recovering;
        uint64 window = r.deadline - r.postingDeadline;
        r.recoveryDeadline = uint64(block.timestamp) + (window < MIN_RECOVERY_SECONDS ? MIN_RECOVERY_SECONDS : window);
        emit RecoveryStarted(roundId, absent, r.holders, r.recoveryDeadline);
    }

    /// @dev The aggregate now covers the holders that contributed.
    function _completeRecovered(uint256 roundId, Round storage r) private {
        r.status = RoundState.Completed;
        r.contributors &= r.holders;
        emit RoundCompleted(roundId, r.contributors, r.holders);
    }

    /// @dev How many keys participant `me` reveals: one per absent participant for its own
    /// ciphertexts (if it posted) and one per absent contributor for theirs.
    function _recoveryCounts(Round storage r, uint256 me) private view returns (uint256 sent, uint256 received) {
        uint256 n = r.participants.length;
        bool posted = r.contributors & (1 << me) != 0;
        for (uint256 j; j < n; ++j) {
            if (r.holders & (1 << j) != 0) continue;
            if (posted) ++sent;
            if (r.contributors & (1 << j) != 0) ++received;
        }
    }

    /// @dev The caller may reveal recovery keys now, in these numbers.
    function _checkRecoveryCounts(uint256 roundId, Round storage r, uint256 sent, uint256 received, uint256 tables)
        private
        view
    {
        _validateState(roundId, _bit(RoundState.Recovering));
        uint256 bit = _participantBit(roundId, msg.sender);
        if (r.holders & bit == 0) revert RoundNothingToRecover(roundId, msg.sender);
        if (r.recovered & bit != 0) revert RoundAlreadyRecovered(roundId, msg.sender);
        (uint256 expectSent, uint256 expectReceived) = _recoveryCounts(r, _indexPlusOne[roundId][msg.sender] - 1);
        if (sent != expectSent || received != expectReceived || tables != expectReceived) {
            revert RoundRecoveryKeyCount(roundId, msg.sender, expectSent, expectReceived);
        }
    }

    /// @dev The caller's keys for its ciphertexts to the absent, against its table.
    function _checkSentKeys(uint256 roundId, Round storage r, bytes32[] calldata keys, bytes32[] calldata table)
        private
        view
    {
        _checkKeyTable(roundId, msg.sender, table);
        uint256 n = r.participants.length;
        uint256 k;
        for (uint256 j; j < n; ++j) {
            if (r.holders & (1 << j) != 0) continue;
            _checkKey(roundId, msg.sender, r.participants[j], keys[k++], table[j]);
        }
    }

    /// @dev The keys of the absent contributors' ciphertexts to the caller, against their tables.
    function _checkReceivedKeys(
        uint256 roundId,
        Round storage r,
        bytes32[] calldata keys,
        bytes32[][] calldata tables
    ) private view {
        uint256 me = _indexPlusOne[roundId][msg.sender] - 1;
        uint256 n = r.participants.length;
        uint256 k;
        for (uint256 j; j < n; ++j) {
            if (r.holders & (1 << j) != 0 || r.contributors & (1 << j) == 0) continue;
            address sender = r.participants[j];
            _checkKeyTable(roundId, sender, tables[k]);
            _checkKey(roundId, sender, msg.sender, keys[k], tables[k][me]);
            ++k;
        }
    }

    function _checkKeyTable(uint256 roundId, address sender, bytes32[] calldata table) private view {
        bytes32 posted = _postings[roundId][sender].keyTableHash;
        bytes32 given = keccak256(abi.encodePacked(table));
        if (given != posted) revert RoundKeyTableMismatch(roundId, sender, posted, given);
    }

    function _checkKey(uint256 roundId, address sender, address recipient, bytes32 key, bytes32 committed)
        private
        view
    {
        if (committed != _keyCommitment(roundId, sender, recipient, key)) {
            revert RoundRecoveryKeyMismatch(roundId, sender, recipient);
        }
    }

    function _closePostingIfComplete(uint256 roundId, Round storage r) private {
        if (_popcount(r.posted) + _popcount(r.excluded) == r.participants.length) {
            _enterFusing(roundId, r);
        }
    }

    function _enterFusing(uint256 roundId, Round storage r) private {
        r.status = RoundState.Fusing;
        r.contributors = r.posted;
        emit PostingClosed(roundId, r.posted);
    }

    function _abort(uint256 roundId, Round storage r, AbortReason reason, address[] memory culprits) private {
        r.status = RoundState.Aborted;
        delete r.complaint; // nothing is judged in a terminal round
        emit RoundAborted(roundId, reason, culprits);
    }

    function _members(Round storage r, uint256 mask) private view returns (address[] memory out) {
        uint256 n = r.participants.length;
        uint256 count;
        for (uint256 i; i < n; ++i) {
            if (mask & (1 << i) != 0) ++count;
        }
        out = new address[](count);
        count = 0;
        for (uint256 i; i < n; ++i) {
            if (mask & (1 << i) != 0) out[count++] = r.participants[i];
        }
    }

    function _popcount(uint256 x) private pure returns (uint256 count) {
        while (x != 0) {
            x &= x - 1;
            ++count;
        }
    }
}
