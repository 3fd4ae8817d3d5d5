// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {
    DataSpec, OutputPolicy, RoundState, AbortReason, Scheme, ExclusionReason, BlameReason
} from "../types/Types.sol";

/// @title Share-exchange rounds (secure aggregation through the chain)
/// @notice A round names the synchronised epoch's providers as participants. Each
/// participant posts one ciphertext per recipient as event data (in numbered chunks
/// under one hash commitment when it does not fit one transaction); nothing but the
/// commitment is stored. Recipients fuse what they received and post a commitment
/// to their share of the aggregate. Lifecycle: Posting -> Fusing -> Completed, or
/// Aborted with a reason and the members to blame.
///
/// Every round has a contributor floor fixed at opening: all n for additive n-of-n rounds,
/// max(t, governance floor, policy minimum, 3) for the others. No round completes
/// with fewer contributors. A participant is excluded only through a complaint with
/// evidence: the accuser reveals the per-posting key of the accused sender's ciphertext
/// for it; the contract checks that key against the key commitment the sender posted
/// with its shares, and the other contributors (the judges) check the ciphertext under
/// it. A valid complaint excludes the sender, a false one the accuser; a key the sender
/// did not commit to excludes both (the contract cannot tell which of the two lies).
///
/// An additive n-of-n round may use a sparse mask (`spec.maskDegree` k > 0, even): participants
/// i and j are neighbours when their indices are within k/2 of each other around the
/// circle of n participants, and a participant sends shares to its neighbours only. A
/// complaint needs a neighbour: nobody else was owed a share by the sender.
///
/// An additive round with a threshold t < n tolerates dropouts: posting closes with at
/// least the floor of posters, and if some participants hold no fused share at the
/// deadline (they never posted, never fused or were excluded), the round enters
/// Recovering instead of aborting. Each holder then reveals, per absent participant, the
/// key of its own ciphertext for it and (if the absent one posted) the key of the absent
/// one's ciphertext for the holder, each checked against the key tables. Those shares
/// become public: the aggregate is the holders' fused shares plus what the holders sent
/// the absent, minus what the absent sent the holders, the sum of the holders' inputs.
/// An absent member's input is never reconstructed (its kept share never left its
/// enclave); each absent participant counts as a colluder against a holder (so a sparse
/// mask, where a holder could lose every neighbour, is refused here).
/// On-chain bytes stay 32 per key, whatever the vector length.
interface IShareExchange {
    /// @notice Transition attempted from the wrong state; `expected` is a bitmap of RoundState.
    error RoundUnexpectedState(uint256 roundId, RoundState current, bytes32 expected);
    /// @notice The registry's current epoch is not synchronised.
    error RoundEpochNotSynchronised(uint64 epoch);
    /// @notice Participants out of range (3..64 providers).
    error RoundInvalidParticipants(uint256 count);
    /// @notice Threshold must be 2..n (n: additive n-of-n; below n: additive t-of-n or Shamir).
    error RoundInvalidThreshold(uint16 threshold, uint256 participants, Scheme scheme);
    /// @notice Data spec out of range.
    error RoundInvalidSpec(uint32 length, uint8 fracBits, uint256 modulus);
    /// @notice A mask degree is 0 (every pair) or even and at least 2, on additive n-of-n rounds only.
    error RoundInvalidMaskDegree(uint16 maskDegree, Scheme scheme);
    /// @notice With a sparse mask the accuser was never owed a share by the sender.
    error RoundNotNeighbour(uint256 roundId, address accuser, address sender);
    /// @notice Deadlines must be in the future with posting before the end.
    error RoundInvalidDeadlines(uint64 postingDeadline, uint64 deadline, uint256 nowTimestamp);
    /// @notice The output policy asks for more contributors than participants.
    error RoundInvalidPolicy(uint16 minContributors, uint256 participants);
    /// @notice The caller is not a participant of the round.
    error RoundNotParticipant(uint256 roundId, address account);
    /// @notice The caller is no longer an attested provider enclave.
    error RoundNotAttested(address account);
    /// @notice Chunks must arrive in order.
    error RoundChunkOutOfOrder(uint256 roundId, address sender, uint16 expected, uint16 given);
    /// @notice Chunk count or commitment changed between chunks, or is zero.
    error RoundChunkHeaderMismatch(uint256 roundId, address sender, uint16 chunkCount, bytes32 commitment);
    /// @notice The chunks do not hash to the announced commitment.
    error RoundCommitmentMismatch(uint256 roundId, address sender, bytes32 commitment, bytes32 computed);
    /// @notice The sender's shares are complete already.
    error RoundAlreadyPosted(uint256 roundId, address sender);
    /// @notice The member was excluded from the round after a complaint.
    error RoundSenderExcluded(uint256 roundId, address sender);
    /// @notice The posting deadline has not passed yet.
    error RoundPostingStillOpen(uint256 roundId, uint64 postingDeadline);
    /// @notice Shares arrived after the posting deadline.
    error RoundPostingDeadlinePassed(uint256 roundId, uint64 postingDeadline);
    /// @notice The accused sender has not posted shares.
    error RoundNothingPosted(uint256 roundId, address sender);
    /// @notice A fused commitment was computed over another contributor set.
    error RoundStaleContributors(uint256 roundId, uint256 given, uint256 current);
    /// @notice The member already posted its fused commitment for this contributor set.
    error RoundAlreadyFused(uint256 roundId, address member);
    /// @notice The registry is paused.
    error RoundRegistryPaused();
    /// @notice Only rounds with an Intermediate output are revealed to the enclaves.
    error RoundNotIntermediate(uint256 roundId);
    /// @notice The caller holds no fused share of the completed round.
    error RoundNotHolder(uint256 roundId, address account);
    /// @notice The holder revealed its fused share already.
    error RoundAlreadyRevealed(uint256 roundId, address member);
    /// @notice The round's contributor floor would exceed its participants.
    error RoundFloorAboveParticipants(uint256 floor, uint256 participants);
    /// @notice A governance floor below 3 or above 64.
    error RoundInvalidFloor(uint16 floor);
    /// @notice The key table of a posting must name one commitment per participant on
    /// the first chunk and be empty on later chunks.
    error RoundKeyTableInvalid(uint256 roundId, address sender, uint256 length);
    /// @notice The key table given with a complaint is not the one the sender posted.
    error RoundKeyTableMismatch(uint256 roundId, address sender, bytes32 posted, bytes32 given);
    /// @notice A participant cannot complain about its own posting.
    error RoundSelfComplaint(uint256 roundId, address account);
    /// @notice Another complaint is being judged; one complaint at a time per round.
    error RoundComplaintPending(uint256 roundId, address accuser, address sender);
    /// @notice No complaint is being judged.
    error RoundNoComplaint(uint256 roundId);
    /// @notice The caller is not a judge of the pending complaint.
    error RoundNotJudge(uint256 roundId, address account);
    /// @notice The judge has voted on the pending complaint already.
    error RoundAlreadyJudged(uint256 roundId, address judge);
    /// @notice A blame needs a reason (not None).
    error RoundInvalidBlame(uint256 roundId, BlameReason reason);
    /// @notice This reporter already blamed this member for this reason with this evidence.
    error RoundAlreadyBlamed(uint256 roundId, address reporter, address member);
    /// @notice The caller owes no recovery keys: it holds no fused share.
    error RoundNothingToRecover(uint256 roundId, address account);
    /// @notice The holder revealed its recovery keys already.
    error RoundAlreadyRecovered(uint256 roundId, address member);
    /// @notice Recovery keys or key tables in the wrong number: `sent` keys for the caller's
    /// ciphertexts to the absent, `received` keys (and as many key tables) for the absent
    /// contributors' ciphertexts to the caller.
    error RoundRecoveryKeyCount(uint256 roundId, address member, uint256 sent, uint256 received);
    /// @notice A revealed recovery key is not the one the sender committed to for that pair.
    error RoundRecoveryKeyMismatch(uint256 roundId, address sender, address recipient);

    /// @notice A round opened; carries everything a participant needs.
    event RoundOpened(
        uint256 indexed roundId,
        uint64 indexed epoch,
        bytes32 indexed inputTag,
        address[] participants,
        DataSpec spec,
        uint16 threshold,
        uint64 postingDeadline,
        uint64 deadline,
        OutputPolicy policy,
        uint16 floor
    );
    /// @notice One chunk of a participant's encrypted shares. The first chunk carries the
    /// key table: for each participant j (in index order) the commitment
    /// keccak256(abi.encode(KEY_COMMITMENT_TAG, chainid, exchange, roundId, sender, j, key))
    /// to the per-posting key under which the sender encrypted j's share (zero for itself).
    event SharesPosted(
        uint256 indexed roundId,
        address indexed sender,
        uint16 chunkIndex,
        uint16 chunkCount,
        bytes32 commitment,
        bytes32[] keyTable,
        bytes payload
    );
    /// @notice Posting ended; `contributors` is the bitmap (by participant index) whose shares count.
    event PostingClosed(uint256 indexed roundId, uint256 contributors);
    /// @notice `accuser` says `sender`'s ciphertext for it does not open, revealing the
    /// per-posting key; `judges` (bitmap) must now say whether it opens under that key.
    /// `judges` is zero when the key was not the committed one (both were excluded).
    event ComplaintFiled(
        uint256 indexed roundId, address indexed accuser, address indexed sender, bytes32 postingKey, uint256 judges
    );
    /// @notice A judge's verdict on the pending complaint.
    event ComplaintJudged(
        uint256 indexed roundId, address indexed judge, address accuser, address sender, bool senderAtFault
    );
    /// @notice `member` no longer contributes to the round; `contributors` is what remains.
    event MemberExcluded(
        uint256 indexed roundId, address indexed member, ExclusionReason reason, uint256 contributors
    );
    /// @notice `reporter` caught `member` misbehaving after completion; `evidence` lets
    /// others check it (for example the per-reveal key of the reveal at fault).
    event MemberBlamed(
        uint256 indexed roundId, address indexed member, address indexed reporter, BlameReason reason, bytes evidence
    );
    /// @notice Governance changed the minimum contributors of future Shamir rounds.
    event ContributorFloorSet(uint16 floor);
    /// @notice A participant committed to its share of the aggregate over `contributors`.
    event FusedCommitted(uint256 indexed roundId, address indexed member, bytes32 commitment, uint256 contributors);
    /// @notice The round completed; `holders` is the bitmap of participants holding fused shares.
    event RoundCompleted(uint256 indexed roundId, uint256 contributors, uint256 holders);
    /// @notice A holder sent its fused share of an Intermediate round to the other
    /// participants' enclaves, one AEAD ciphertext per recipient in `payload`.
    event FusedRevealed(uint256 indexed roundId, address indexed member, bytes payload);
    /// @notice The holders' fused shares are final and the `absent` participants (bitmap)
    /// hold none: each holder in `owing` (bitmap) must reveal its recovery keys by `recoveryDeadline`.
    event RecoveryStarted(uint256 indexed roundId, uint256 absent, uint256 owing, uint64 recoveryDeadline);
    /// @notice `member`'s recovery keys, one per absent participant in index order: `sentKeys`
    /// open its ciphertexts to them (empty if it did not post), `receivedKeys` open the absent
    /// contributors' ciphertexts to it.
    event RecoveryKeysRevealed(
        uint256 indexed roundId, address indexed member, bytes32[] sentKeys, bytes32[] receivedKeys
    );
    /// @notice The round aborted; `culprits` are the missing or rejected members.
    event RoundAborted(uint256 indexed roundId, AbortReason reason, address[] culprits);

    /// @notice Open a round over the providers of the synchronised epoch (coordinator).
    function openRound(
        bytes32 inputTag,
        DataSpec calldata spec,
        uint16 threshold,
        uint64 postingDeadline,
        uint64 deadline,
        OutputPolicy calldata policy
    ) external returns (uint256 roundId);

    /// @notice Governance: the minimum contributors of Shamir rounds opened from now on (3..64).
    function setContributorFloor(uint16 floor) external;

    /// @notice Post chunk `chunkIndex` of `chunkCount` of the sender's encrypted shares.
    /// @param commitment The hash chain over all chunks: c = keccak(c, keccak(chunk)) from c = 0.
    /// @param keyTable On chunk 0, one per-posting key commitment per participant; empty after.
    function postShares(
        uint256 roundId,
        uint16 chunkIndex,
        uint16 chunkCount,
        bytes32 commitment,
        bytes32[] calldata keyTable,
        bytes calldata payload
    ) external;

    /// @notice After the posting deadline: continue with those who posted (Shamir, at
    /// least the floor) or abort naming the missing members.
    function closePosting(uint256 roundId) external;

    /// @notice While fusing, a participant complains that `sender`'s ciphertext for it does
    /// not open (with a sparse mask, only a neighbour of the sender may), revealing the
    /// per-posting key (it opens that one ciphertext only).
    /// @param keyTable The sender's posted key table (checked against its hash).
    function complain(uint256 roundId, address sender, bytes32 postingKey, bytes32[] calldata keyTable) external;

    /// @notice A judge of the pending complaint: does the sender's ciphertext fail under the
    /// revealed key? Unanimous judges exclude the sender (true) or the accuser (false); a
    /// split verdict aborts the round.
    function judgeComplaint(uint256 roundId, bool senderAtFault) external;

    /// @notice After completion, a participant or gateway enclave records that holder
    /// `member` misbehaved (see {BlameReason}), with evidence for others to check.
    function reportMisbehaviour(uint256 roundId, address member, BlameReason reason, bytes calldata evidence)
        external;

    /// @notice Commit to the fused share computed over the `contributors` bitmap.
    function postFused(uint256 roundId, bytes32 commitment, uint256 contributors) external;

    /// @notice After the deadline: complete with at least t fused shares (Shamir), start
    /// recovery (additive t-of-n with the floor of holders that contributed) or abort; a
    /// complaint still unjudged aborts naming the silent judges. After the recovery
    /// deadline: abort naming the holders that did not reveal their recovery keys.
    function finalize(uint256 roundId) external;

    /// @notice While recovering, a holder reveals its recovery keys (see {RecoveryKeysRevealed}).
    /// The round completes when every owing holder has; its contributors are then the holders
    /// that contributed.
    /// @param ownTable The caller's posted key table (empty if it did not post).
    /// @param absentTables The posted key table of each absent contributor, in index order.
    function recoverAbsent(
        uint256 roundId,
        bytes32[] calldata sentKeys,
        bytes32[] calldata receivedKeys,
        bytes32[] calldata ownTable,
        bytes32[][] calldata absentTables
    ) external;

    /// @notice A holder of a completed Intermediate round reveals its fused share to the
    /// other participants' enclaves (encrypted pairwise), so that every enclave can
    /// reconstruct the aggregate inside; it never appears in the clear.
    function revealFused(uint256 roundId, bytes calldata payload) external;

    /// @notice The derived lifecycle state.
    function state(uint256 roundId) external view returns (RoundState);

    /// @notice The round's participants in index order.
    function participants(uint256 roundId) external view returns (address[] memory);

    /// @notice The round's spec, threshold, policy and progress.
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
        );

    /// @notice Whether `account` holds a fused share of a completed round.
    function isHolder(uint256 roundId, address account) external view returns (bool);

    /// @notice The sender's share commitment (zero until all chunks arrived).
    function shareCommitment(uint256 roundId, address sender) external view returns (bytes32);

    /// @notice How many chunks of `sender` the round has accepted.
    function chunksPosted(uint256 roundId, address sender) external view returns (uint16);

    /// @notice Number of rounds opened.
    function roundCount() external view returns (uint256);

    /// @notice The governance floor for Shamir rounds opened from now on.
    function contributorFloor() external view returns (uint16);

    /// @notice The round's contributor floor and its excluded members (bitmap).
    function roundGuards(uint256 roundId) external view returns (uint16 floor, uint256 excluded);

    /// @notice The pending complaint (zero addresses when none) and its votes (bitmaps).
    function pendingComplaint(uint256 roundId)
        external
        view
        returns (address accuser, address sender, uint256 judges, uint256 guilty, uint256 innocent);

    /// @notice Recovery progress: its deadline (zero until it starts), the holders that owe
    /// recovery keys and those that revealed them (bitmaps).
    function recoveryInfo(uint256 roundId)
        external
        view
        returns (uint64 recoveryDeadline, uint256 owing, uint256 recovered);

    /// @notice keccak256 of the sender's posted key table (zero before its first chunk).
    function keyTableHash(uint256 roundId, address sender) external view returns (bytes32);
}
