// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {RequestState, RoundState, OutputKind, ClientRequest} from "../types/Types.sol";

/// @title Gated private inference over secret-shared models
/// @notice A model is the aggregate of a completed share-exchange round; it stays
/// secret-shared among the round's holders. Only an attested gateway enclave may
/// record a request, and only with the client's own EIP-712 signature over it
/// (ECDSA for accounts, EIP-1271 for contract wallets): a client holding CLIENT_ROLE,
/// with quota left and the fee covered by its deposit and within its signed cap. Providers post encrypted partial results
/// as events; the gateway records a result commitment. A request not completed by
/// its deadline expires and its fee is refunded. Lifecycle: Pending -> Completed, or
/// Pending -> Expired (derived from time) -> Refunded.
interface IInferenceGateway {
    /// @notice Transition attempted from the wrong state; `expected` is a bitmap of RequestState.
    error InferenceUnexpectedState(uint256 requestId, RequestState current, bytes32 expected);
    /// @notice The round is not completed.
    error InferenceRoundNotCompleted(uint256 roundId, RoundState current);
    /// @notice Unknown or retired model.
    error InferenceUnknownModel(uint256 modelId);
    /// @notice The caller is not an active gateway enclave.
    error InferenceNotGateway(address account);
    /// @notice The caller is not an active provider enclave holding a share of the model.
    error InferenceNotShareholder(uint256 requestId, address account);
    /// @notice Only the gateway that recorded the request may complete it.
    error InferenceWrongGateway(uint256 requestId, address caller, address gateway);
    /// @notice The client does not hold CLIENT_ROLE.
    error InferenceClientNotAuthorised(address client);
    /// @notice The request's rows do not fit in what is left of the client's quota.
    error InferenceQuotaExhausted(address client, uint256 used, uint256 quota);
    /// @notice The client's deposit does not cover the model's fee for every row.
    error InferenceFeeUnpaid(address client, uint256 balance, uint256 fee);
    /// @notice A request carries 1..MAX_ROWS rows, and a statistic exactly one.
    error InferenceInvalidRows(uint256 modelId, uint256 rows, uint256 maximum);
    /// @notice The signed request was recorded before (replay).
    error InferenceRequestReplayed(bytes32 requestDigest);
    /// @notice The signature is not the client's over this request (EIP-712; EIP-1271 for
    /// a contract wallet).
    error InferenceInvalidClientSignature(address client, bytes32 requestDigest);
    /// @notice The client's signature is void: its deadline passed.
    error InferenceSignatureExpired(uint64 deadline, uint256 nowTimestamp);
    /// @notice The request would cost more than the client signed for.
    error InferenceFeeAboveCap(uint256 fee, uint256 maxFee);
    /// @notice The statistic has fewer contributors than its release rule needs.
    error InferenceTooFewContributors(uint256 modelId, uint256 contributors, uint256 minimum);
    /// @notice The provider already posted its partial result.
    error InferencePartialAlreadyPosted(uint256 requestId, address provider);
    /// @notice Withdrawal larger than the balance.
    error InferenceInsufficientBalance(address account, uint256 balance, uint256 amount);
    /// @notice A value transfer failed.
    error InferenceTransferFailed(address to, uint256 amount);
    /// @notice Request time-to-live out of range.
    error InferenceInvalidTtl(uint64 ttl);
    /// @notice The registry is paused.
    error InferenceRegistryPaused();
    /// @notice No provider posted a partial result yet.
    error InferenceNoPartials(uint256 requestId);
    /// @notice A batch needs one ciphertext (postPartials) or commitment (completeRequests)
    /// per request id, and at least one request.
    error InferenceInvalidBatch(uint256 requestIds, uint256 ciphertexts);
    /// @notice The round's output stays inside the enclaves and cannot back a model.
    error InferenceRoundNotServable(uint256 roundId, OutputKind kind);
    /// @notice The caller is not an active provider enclave holding a share of the model.
    error InferenceNotModelHolder(uint256 modelId, address account);

    /// @notice A model was bound to a completed round; `metadata` (JSON) holds feature
    /// names, scaling and link function.
    event ModelRegistered(
        uint256 indexed modelId, uint256 indexed roundId, OutputKind kind, uint256 fee, string name, string metadata
    );
    /// @notice A model stopped taking requests.
    event ModelRetired(uint256 indexed modelId);
    /// @notice A holder's enclave published the input range the model answers exactly
    /// (`range`: JSON with one magnitude per feature and the query encoding; no weights).
    event ModelRangePublished(uint256 indexed modelId, address indexed provider, string range);
    /// @notice Governance granted a client access with a quota of requests.
    event ClientAccessSet(address indexed client, uint256 quota);
    /// @notice A client deposited or withdrew fee balance.
    event BalanceChanged(address indexed client, uint256 balance);
    /// @notice The gateway recorded a request of `rows` rows (the fee is for all of
    /// them) that the client signed; `encryptedQuery` holds one ciphertext per provider,
    /// and a provider answers only if the query it opens hashes to `inputHash`.
    event RequestSubmitted(
        uint256 indexed requestId,
        uint256 indexed modelId,
        address indexed client,
        address gateway,
        bytes32 requestDigest,
        bytes32 inputHash,
        uint64 deadline,
        uint256 fee,
        uint32 rows,
        bytes encryptedQuery
    );
    /// @notice A provider posted its encrypted partial result.
    event PartialPosted(uint256 indexed requestId, address indexed provider, bytes ciphertext);
    /// @notice The gateway answered the request.
    event RequestCompleted(uint256 indexed requestId, bytes32 resultCommitment, uint256 partials);
    /// @notice Governance changed how long new requests stay answerable.
    event RequestTtlSet(uint64 ttl);
    /// @notice Governance sent the collected fees to `to`.
    event FeesWithdrawn(address indexed to, uint256 amount);
    /// @notice The request expired and its fee went back to the client's balance.
    event RequestRefunded(uint256 indexed requestId, address indexed client, uint256 fee);

    /// @notice Bind a model to a completed round (governance).
    function registerModel(uint256 roundId, string calldata name, string calldata metadata, uint256 fee)
        external
        returns (uint256 modelId);

    /// @notice Stop taking requests for a model (governance).
    function retireModel(uint256 modelId) external;

    /// @notice Publish the input range of a model (an active provider enclave holding a
    /// share of it); gateways refuse queries outside it before anything is recorded.
    function publishModelRange(uint256 modelId, string calldata range) external;

    /// @notice Grant CLIENT_ROLE with `quota` requests, or revoke with quota 0 (governance).
    function setClientAccess(address client, uint256 quota) external;

    /// @notice Set how long requests stay answerable (governance).
    function setRequestTtl(uint64 ttl) external;

    /// @notice Add to the caller's fee balance.
    function deposit() external payable;

    /// @notice Withdraw from the caller's fee balance.
    function withdraw(uint256 amount) external;

    /// @notice Send collected fees to `to` (governance).
    function withdrawFees(address payable to) external;

    /// @notice Record `request` (attested gateway enclave only) with the client's
    /// `signature` over `requestDigest(request)`: it uses `request.rows` of the client's
    /// quota and `request.rows` times the model's fee, at most `request.maxFee`.
    function submitRequest(ClientRequest calldata request, bytes calldata signature, bytes calldata encryptedQuery)
        external
        returns (uint256 requestId);

    /// @notice Post an encrypted partial result (a shareholding provider enclave).
    function postPartial(uint256 requestId, bytes calldata ciphertext) external;

    /// @notice Post the encrypted partial results of several requests in one transaction
    /// (a shareholding provider enclave answering every request it saw in a block). A
    /// request no longer pending, or already answered by the caller, is skipped: a batch
    /// races expiry and retries. Any other refusal reverts the whole batch.
    /// @return posted How many partial results were posted (one PartialPosted each).
    function postPartials(uint256[] calldata requestIds, bytes[] calldata ciphertexts)
        external
        returns (uint256 posted);

    /// @notice Record the result commitment and collect the fee (the request's gateway,
    /// while it is still an active gateway enclave).
    function completeRequest(uint256 requestId, bytes32 resultCommitment) external;

    /// @notice Complete several of the caller's requests in one transaction (the gateway
    /// enclave completing every request answered by a block). A request no longer
    /// pending (completed already, expired or refunded) is skipped: a batch races
    /// expiry and retries. Any other refusal reverts the whole batch.
    /// @return completed How many requests were completed (one RequestCompleted each).
    function completeRequests(uint256[] calldata requestIds, bytes32[] calldata resultCommitments)
        external
        returns (uint256 completed);

    /// @notice Refund an expired request's fee to its client (anyone).
    function refundExpired(uint256 requestId) external;

    /// @notice The EIP-712 digest of `InferenceRequest(address client,uint256 modelId,uint32 rows,
    /// bytes32 inputHash,uint256 nonce,uint64 deadline,uint256 maxFee)` the client signs,
    /// under the domain ("EnclaveShareGateway", "1", chain id, this contract).
    function requestDigest(ClientRequest calldata request) external view returns (bytes32);

    /// @notice The derived lifecycle state.
    function state(uint256 requestId) external view returns (RequestState);

    /// @notice A request's model, client, gateway, fee, deadline and partial count.
    function requestInfo(uint256 requestId)
        external
        view
        returns (uint256 modelId, address client, address gateway, uint256 fee, uint64 deadline, uint256 partials);

    /// @notice A model's round, kind, fee and whether it takes requests.
    function modelInfo(uint256 modelId)
        external
        view
        returns (uint256 roundId, OutputKind kind, uint256 fee, bool active, bytes32 metadataHash);

    /// @notice The client's quota (requests allowed in total) and the requests it made so far.
    function quotaOf(address client) external view returns (uint256 quota, uint256 used);

    /// @notice The client's fee balance.
    function balanceOf(address client) external view returns (uint256);

    /// @notice Number of models registered.
    function modelCount() external view returns (uint256);

    /// @notice Number of requests recorded.
    function requestCount() external view returns (uint256);
}
