// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IShareExchange} from "./interfaces/IShareExchange.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {DataSpec, OutputPolicy, OutputKind, RoundState, AbortReason, Scheme, Role} from "./types/Types.sol";

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

    struct Round {
        DataSpec spec;
        OutputPolicy policy;
        uint16 threshold;
        uint64 epoch;
        uint64 postingDeadline;
        uint64 deadline;
        RoundState status; // Posting, Fusing, Completed or Aborted; Expired is derived
        uint256 posted; // bitmap: complete share postings
        uint256 excluded; // bitmap: senders whose shares were rejected (Shamir)
        uint256 contributors; // bitmap frozen when posting closes
        uint256 holders; // bitmap: fused commitments over the current contributors
        address[] participants;
    }

    struct Posting {
        uint16 chunks;
        uint16 chunkCount;
        bytes32 commitment;
        bytes32 running;
    }

    IConsortiumRegistry public immutable registry;

    mapping(uint256 => Round) private _rounds;
    mapping(uint256 => mapping(address => uint256)) private _indexPlusOne;
    mapping(uint256 => mapping(address => Posting)) private _postings;
    mapping(uint256 => mapping(address => bool)) private _revealed;
    uint256 private _roundCount;

    constructor(IConsortiumRegistry registry_, address governor) {
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
        _setRoleAdmin(COORDINATOR_ROLE, GOVERNOR_ROLE);
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
        if (n < 2 || n > MAX_PARTICIPANTS) revert RoundInvalidParticipants(n);
        if (
            (spec.scheme == Scheme.Additive && threshold != n)
                || (spec.scheme == Scheme.Shamir && (threshold < 2 || threshold > n))
        ) revert RoundInvalidThreshold(threshold, n, spec.scheme);
        if (spec.length == 0 || spec.length > MAX_LENGTH || spec.fracBits > MAX_FRAC_BITS || spec.modulus < 3) {
            revert RoundInvalidSpec(spec.length, spec.fracBits, spec.modulus);
        }
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
        r.participants = members;
        for (uint256 i; i < n; ++i) {
            _indexPlusOne[roundId][members[i]] = i + 1;
        }
        emit RoundOpened(roundId, epoch, inputTag, members, spec, threshold, postingDeadline, deadline, policy);
    }

    /// @inheritdoc IShareExchange
    function postShares(uint256 roundId, uint16 chunkIndex, uint16 chunkCount, bytes32 commitment, bytes calldata payload)
        external
        whenRegistryLive
    {
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
            p.chunkCount = chunkCount;
            p.commitment = commitment;
        } else if (chunkCount != p.chunkCount || commitment != p.commitment) {
            revert RoundChunkHeaderMismatch(roundId, msg.sender, chunkCount, commitment);
        }
        bytes32 running = keccak256(abi.encodePacked(p.running, keccak256(payload)));
        if (chunkIndex + 1 == chunkCount && running != commitment) {
            revert RoundCommitmentMismatch(roundId, msg.sender, commitment, running);
        }
        p.running = running;
        p.chunks = chunkIndex + 1;
        emit SharesPosted(roundId, msg.sender, chunkIndex, chunkCount, commitment, payload);
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
        if (r.spec.scheme == Scheme.Shamir && _popcount(r.posted) >= r.threshold) {
            _enterFusing(roundId, r);
        } else {
            _abort(roundId, r, AbortReason.MissingShares, _members(r, ~(r.posted | r.excluded)));
        }
    }

    /// @inheritdoc IShareExchange
    function reportInvalidShare(uint256 roundId, address sender) external {
        Round storage r = _rounds[roundId];
        RoundState current = _validateState(roundId, _bit(RoundState.Posting) | _bit(RoundState.Fusing));
        uint256 reporterBit = _participantBit(roundId, msg.sender);
        if (r.excluded & reporterBit != 0) revert RoundSenderExcluded(roundId, msg.sender);
        uint256 accusedBit = _indexPlusOne[roundId][sender] == 0 ? 0 : 1 << (_indexPlusOne[roundId][sender] - 1);
        if (accusedBit == 0) revert RoundNotParticipant(roundId, sender);
        if (r.excluded & accusedBit != 0) revert RoundSenderExcluded(roundId, sender);
        if (r.posted & accusedBit == 0) revert RoundNothingPosted(roundId, sender);

        if (r.spec.scheme == Scheme.Additive) {
            emit ShareRejected(roundId, msg.sender, sender, r.contributors);
            _abort(roundId, r, AbortReason.InvalidShare, _members(r, accusedBit));
            return;
        }
        r.excluded |= accusedBit;
        r.posted &= ~accusedBit;
        r.holders = 0; // every fused share included the rejected sender
        if (current == RoundState.Fusing) r.contributors &= ~accusedBit;
        emit ShareRejected(roundId, msg.sender, sender, r.contributors);
        // While posting, every sender not excluded may still contribute; once fusing, the
        // frozen contributor set is all there is, and it must not fall below t either.
        uint256 remaining =
            current == RoundState.Fusing ? _popcount(r.contributors) : r.participants.length - _popcount(r.excluded);
        if (remaining < r.threshold) {
            _abort(roundId, r, AbortReason.TooFewContributors, _members(r, r.excluded));
        } else if (current == RoundState.Posting) {
            _closePostingIfComplete(roundId, r);
        }
    }

    /// @inheritdoc IShareExchange
    function postFused(uint256 roundId, bytes32 commitment, uint256 contributors) external whenRegistryLive {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Fusing));
        uint256 bit = _participantBit(roundId, msg.sender);
        if (r.excluded & bit != 0) revert RoundSenderExcluded(roundId, msg.sender);
        if (contributors != r.contributors) revert RoundStaleContributors(roundId, contributors, r.contributors);
        if (r.holders & bit != 0) revert RoundAlreadyFused(roundId, msg.sender);
        r.holders |= bit;
        emit FusedCommitted(roundId, msg.sender, commitment, contributors);
        if (_popcount(r.holders) == r.participants.length - _popcount(r.excluded)) {
            r.status = RoundState.Completed;
            emit RoundCompleted(roundId, r.contributors, r.holders);
        }
    }

    /// @inheritdoc IShareExchange
    function finalize(uint256 roundId) external {
        Round storage r = _rounds[roundId];
        _validateState(roundId, _bit(RoundState.Expired));
        if (r.status == RoundState.Posting) {
            _abort(roundId, r, AbortReason.MissingShares, _members(r, ~(r.posted | r.excluded)));
        } else if (r.spec.scheme == Scheme.Shamir && _popcount(r.holders) >= r.threshold) {
            r.status = RoundState.Completed;
            emit RoundCompleted(roundId, r.contributors, r.holders);
        } else {
            _abort(roundId, r, AbortReason.MissingFusion, _members(r, ~(r.holders | r.excluded)));
        }
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

    // ------------------------------------------------------------------ views

    /// @inheritdoc IShareExchange
    function state(uint256 roundId) public view returns (RoundState) {
        Round storage r = _rounds[roundId];
        RoundState status = r.status;
        if ((status == RoundState.Posting || status == RoundState.Fusing) && block.timestamp > r.deadline) {
            return RoundState.Expired;
        }
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
