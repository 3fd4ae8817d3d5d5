// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {IInferenceGateway} from "./interfaces/IInferenceGateway.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {IShareExchange} from "./interfaces/IShareExchange.sol";
import {RequestState, RoundState, OutputKind, OutputPolicy, Role, ClientRequest} from "./types/Types.sol";

/// @title InferenceGateway
/// @notice See {IInferenceGateway}.
contract InferenceGateway is IInferenceGateway, AccessControl, ReentrancyGuard, EIP712 {
    /// @notice Governance: models, client access, fees.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");
    /// @notice Outside clients allowed to query models.
    bytes32 public constant CLIENT_ROLE = keccak256("CLIENT_ROLE");
    bytes32 public constant REQUEST_TYPEHASH = keccak256(
        "InferenceRequest(address client,uint256 modelId,uint32 rows,bytes32 inputHash,uint256 nonce,"
        "uint64 deadline,uint256 maxFee)"
    );

    uint64 public constant MIN_TTL = 10;
    uint64 public constant MAX_TTL = 1 days;
    /// @notice Most rows one request may carry (the gateway splits larger batches).
    uint32 public constant MAX_ROWS = 256;

    struct Model {
        uint256 roundId;
        OutputKind kind;
        bool active;
        uint256 fee;
        bytes32 metadataHash;
    }

    struct Request {
        uint256 modelId;
        address client;
        uint32 rows; // packed with client
        address gateway;
        uint64 deadline;
        RequestState status; // Pending, Completed or Refunded; Expired is derived
        uint256 fee;
        uint256 partials;
    }

    IConsortiumRegistry public immutable registry;
    IShareExchange public immutable exchange;
    uint64 public requestTtl = 120;
    uint256 public collectedFees;

    mapping(uint256 => Model) private _models;
    mapping(uint256 => Request) private _requests;
    mapping(uint256 => mapping(address => bool)) private _partialPosted;
    mapping(bytes32 => bool) private _usedDigests;
    mapping(address => uint256) private _quota;
    mapping(address => uint256) private _used;
    mapping(address => uint256) private _balance;
    uint256 private _modelCount;
    uint256 private _requestCount;

    constructor(IConsortiumRegistry registry_, IShareExchange exchange_, address governor)
        EIP712("EnclaveShareGateway", "1")
    {
        registry = registry_;
        exchange = exchange_;
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
        _setRoleAdmin(CLIENT_ROLE, GOVERNOR_ROLE);
    }

    modifier whenRegistryLive() {
        if (registry.paused()) revert InferenceRegistryPaused();
        _;
    }

    // ------------------------------------------------------------------ governance

    /// @inheritdoc IInferenceGateway
    function registerModel(uint256 roundId, string calldata name, string calldata metadata, uint256 fee)
        external
        onlyRole(GOVERNOR_ROLE)
        returns (uint256 modelId)
    {
        RoundState roundState = exchange.state(roundId);
        if (roundState != RoundState.Completed) revert InferenceRoundNotCompleted(roundId, roundState);
        (, OutputPolicy memory policy,,,,,,) = exchange.roundInfo(roundId);
        if (policy.kind == OutputKind.Intermediate) revert InferenceRoundNotServable(roundId, policy.kind);
        modelId = ++_modelCount;
        _models[modelId] = Model({
            roundId: roundId,
            kind: policy.kind,
            active: true,
            fee: fee,
            metadataHash: keccak256(bytes(metadata))
        });
        emit ModelRegistered(modelId, roundId, policy.kind, fee, name, metadata);
    }

    /// @inheritdoc IInferenceGateway
    function retireModel(uint256 modelId) external onlyRole(GOVERNOR_ROLE) {
        if (!_models[modelId].active) revert InferenceUnknownModel(modelId);
        _models[modelId].active = false;
        emit ModelRetired(modelId);
    }

    /// @inheritdoc IInferenceGateway
    function setClientAccess(address client, uint256 quota) external onlyRole(GOVERNOR_ROLE) {
        _quota[client] = quota;
        if (quota == 0) {
            _revokeRole(CLIENT_ROLE, client);
        } else {
            _grantRole(CLIENT_ROLE, client);
        }
        emit ClientAccessSet(client, quota);
    }

    /// @inheritdoc IInferenceGateway
    function setRequestTtl(uint64 ttl) external onlyRole(GOVERNOR_ROLE) {
        if (ttl < MIN_TTL || ttl > MAX_TTL) revert InferenceInvalidTtl(ttl);
        requestTtl = ttl;
        emit RequestTtlSet(ttl);
    }

    /// @inheritdoc IInferenceGateway
    function withdrawFees(address payable to) external onlyRole(GOVERNOR_ROLE) nonReentrant {
        uint256 amount = collectedFees;
        collectedFees = 0;
        emit FeesWithdrawn(to, amount);
        _send(to, amount);
    }

    // ------------------------------------------------------------------ model holders

    /// @inheritdoc IInferenceGateway
    function publishModelRange(uint256 modelId, string calldata range) external whenRegistryLive {
        Model storage model = _models[modelId];
        if (!model.active) revert InferenceUnknownModel(modelId);
        if (!registry.isActiveMember(msg.sender, Role.Provider) || !exchange.isHolder(model.roundId, msg.sender)) {
            revert InferenceNotModelHolder(modelId, msg.sender);
        }
        emit ModelRangePublished(modelId, msg.sender, range);
    }

    // ------------------------------------------------------------------ client funds

    /// @inheritdoc IInferenceGateway
    function deposit() external payable {
        _balance[msg.sender] += msg.value;
        emit BalanceChanged(msg.sender, _balance[msg.sender]);
    }

    /// @inheritdoc IInferenceGateway
    function withdraw(uint256 amount) external nonReentrant {
        uint256 balance = _balance[msg.sender];
        if (amount > balance) revert InferenceInsufficientBalance(msg.sender, balance, amount);
        _balance[msg.sender] = balance - amount;
        emit BalanceChanged(msg.sender, balance - amount);
        _send(payable(msg.sender), amount);
    }

    // ------------------------------------------------------------------ requests

    /// @inheritdoc IInferenceGateway
    function submitRequest(ClientRequest calldata request, bytes calldata signature, bytes calldata encryptedQuery)
        external
        whenRegistryLive
        returns (uint256 requestId)
    {
        if (!registry.isActiveMember(msg.sender, Role.Gateway)) revert InferenceNotGateway(msg.sender);
        bytes32 digest = _validateClientRequest(request, signature);
        address client = request.client;
        uint32 rows = request.rows;
        uint256 fee = _models[request.modelId].fee * rows;
        if (fee > request.maxFee) revert InferenceFeeAboveCap(fee, request.maxFee);
        if (_used[client] + rows > _quota[client]) revert InferenceQuotaExhausted(client, _used[client], _quota[client]);
        if (_balance[client] < fee) revert InferenceFeeUnpaid(client, _balance[client], fee);

        _usedDigests[digest] = true;
        _used[client] += rows;
        _balance[client] -= fee;
        requestId = _record(request, digest, fee, encryptedQuery);
    }

    /// @inheritdoc IInferenceGateway
    function postPartial(uint256 requestId, bytes calldata ciphertext) external whenRegistryLive {
        _postPartial(requestId, ciphertext);
    }

    /// @inheritdoc IInferenceGateway
    function postPartials(uint256[] calldata requestIds, bytes[] calldata ciphertexts)
        external
        whenRegistryLive
        returns (uint256 posted)
    {
        if (requestIds.length == 0 || requestIds.length != ciphertexts.length) {
            revert InferenceInvalidBatch(requestIds.length, ciphertexts.length);
        }
        for (uint256 i; i < requestIds.length; ++i) {
            uint256 requestId = requestIds[i];
            if (state(requestId) != RequestState.Pending || _partialPosted[requestId][msg.sender]) continue;
            _postPartial(requestId, ciphertexts[i]);
            ++posted;
        }
    }

    /// @inheritdoc IInferenceGateway
    function completeRequest(uint256 requestId, bytes32 resultCommitment) external {
        _validateState(requestId, _bit(RequestState.Pending));
        _checkGateway(requestId);
        // A revoked gateway leaves its pending requests to expire and be refunded.
        if (!registry.isActiveMember(msg.sender, Role.Gateway)) revert InferenceNotGateway(msg.sender);
        _complete(requestId, resultCommitment);
    }

    /// @inheritdoc IInferenceGateway
    function completeRequests(uint256[] calldata requestIds, bytes32[] calldata resultCommitments)
        external
        returns (uint256 completed)
    {
        if (requestIds.length == 0 || requestIds.length != resultCommitments.length) {
            revert InferenceInvalidBatch(requestIds.length, resultCommitments.length);
        }
        if (!registry.isActiveMember(msg.sender, Role.Gateway)) revert InferenceNotGateway(msg.sender);
        for (uint256 i; i < requestIds.length; ++i) {
            if (state(requestIds[i]) != RequestState.Pending) continue;
            _checkGateway(requestIds[i]);
            _complete(requestIds[i], resultCommitments[i]);
            ++completed;
        }
    }

    /// @dev Only the gateway that recorded a request completes it.
    function _checkGateway(uint256 requestId) private view {
        address gateway = _requests[requestId].gateway;
        if (msg.sender != gateway) revert InferenceWrongGateway(requestId, msg.sender, gateway);
    }

    /// @dev Complete a pending request of the caller's (an active gateway enclave).
    function _complete(uint256 requestId, bytes32 resultCommitment) private {
        Request storage request = _requests[requestId];
        if (request.partials == 0) revert InferenceNoPartials(requestId);
        request.status = RequestState.Completed;
        collectedFees += request.fee;
        emit RequestCompleted(requestId, resultCommitment, request.partials);
    }

    /// @inheritdoc IInferenceGateway
    function refundExpired(uint256 requestId) external {
        _validateState(requestId, _bit(RequestState.Expired));
        Request storage request = _requests[requestId];
        request.status = RequestState.Refunded;
        _balance[request.client] += request.fee;
        // An unanswered request does not count against the client's quota.
        _used[request.client] -= request.rows;
        emit RequestRefunded(requestId, request.client, request.fee);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IInferenceGateway
    function requestDigest(ClientRequest calldata request) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    REQUEST_TYPEHASH,
                    request.client,
                    request.modelId,
                    request.rows,
                    request.inputHash,
                    request.nonce,
                    request.deadline,
                    request.maxFee
                )
            )
        );
    }

    /// @inheritdoc IInferenceGateway
    function state(uint256 requestId) public view returns (RequestState) {
        Request storage request = _requests[requestId];
        if (request.status == RequestState.Pending && block.timestamp > request.deadline) {
            return RequestState.Expired;
        }
        return request.status;
    }

    /// @inheritdoc IInferenceGateway
    function requestInfo(uint256 requestId)
        external
        view
        returns (uint256 modelId, address client, address gateway, uint256 fee, uint64 deadline, uint256 partials)
    {
        Request storage r = _requests[requestId];
        return (r.modelId, r.client, r.gateway, r.fee, r.deadline, r.partials);
    }

    /// @inheritdoc IInferenceGateway
    function modelInfo(uint256 modelId)
        external
        view
        returns (uint256 roundId, OutputKind kind, uint256 fee, bool active, bytes32 metadataHash)
    {
        Model storage m = _models[modelId];
        return (m.roundId, m.kind, m.fee, m.active, m.metadataHash);
    }

    /// @inheritdoc IInferenceGateway
    function quotaOf(address client) external view returns (uint256 quota, uint256 used) {
        return (_quota[client], _used[client]);
    }

    /// @inheritdoc IInferenceGateway
    function balanceOf(address client) external view returns (uint256) {
        return _balance[client];
    }

    /// @inheritdoc IInferenceGateway
    function modelCount() external view returns (uint256) {
        return _modelCount;
    }

    /// @inheritdoc IInferenceGateway
    function requestCount() external view returns (uint256) {
        return _requestCount;
    }

    // ------------------------------------------------------------------ internal

    function _record(ClientRequest calldata request, bytes32 digest, uint256 fee, bytes calldata encryptedQuery)
        private
        returns (uint256 requestId)
    {
        requestId = ++_requestCount;
        uint64 deadline = uint64(block.timestamp) + requestTtl;
        _requests[requestId] = Request({
            modelId: request.modelId,
            client: request.client,
            rows: request.rows,
            gateway: msg.sender,
            deadline: deadline,
            status: RequestState.Pending,
            fee: fee,
            partials: 0
        });
        emit RequestSubmitted(
            requestId,
            request.modelId,
            request.client,
            msg.sender,
            digest,
            request.inputHash,
            deadline,
            fee,
            request.rows,
            encryptedQuery
        );
    }

    /// @dev Everything about a request that does not touch the client's funds: model,
    /// rows, the signature's deadline, replay, the client's own signature, its role and
    /// the statistic's release rule. Returns the request digest.
    function _validateClientRequest(ClientRequest calldata request, bytes calldata signature)
        private
        view
        returns (bytes32 digest)
    {
        Model storage model = _models[request.modelId];
        if (!model.active) revert InferenceUnknownModel(request.modelId);
        uint32 maximum = model.kind == OutputKind.Statistic ? 1 : MAX_ROWS;
        if (request.rows == 0 || request.rows > maximum) {
            revert InferenceInvalidRows(request.modelId, request.rows, maximum);
        }
        if (block.timestamp > request.deadline) revert InferenceSignatureExpired(request.deadline, block.timestamp);
        digest = requestDigest(request);
        if (_usedDigests[digest]) revert InferenceRequestReplayed(digest);
        if (!_isClientSignature(request.client, digest, signature)) {
            revert InferenceInvalidClientSignature(request.client, digest);
        }
        if (!hasRole(CLIENT_ROLE, request.client)) revert InferenceClientNotAuthorised(request.client);
        if (model.kind == OutputKind.Statistic) {
            (, OutputPolicy memory policy,,,,, uint256 contributors,) = exchange.roundInfo(model.roundId);
            uint256 count = _popcount(contributors);
            if (count < policy.minContributors) {
                revert InferenceTooFewContributors(request.modelId, count, policy.minContributors);
            }
        }
    }

    /// @dev The one state guard: reverts unless the derived state is in `allowed`.
    function _postPartial(uint256 requestId, bytes calldata ciphertext) private {
        _validateState(requestId, _bit(RequestState.Pending));
        Request storage request = _requests[requestId];
        if (
            !registry.isActiveMember(msg.sender, Role.Provider)
                || !exchange.isHolder(_models[request.modelId].roundId, msg.sender)
        ) revert InferenceNotShareholder(requestId, msg.sender);
        if (_partialPosted[requestId][msg.sender]) revert InferencePartialAlreadyPosted(requestId, msg.sender);
        _partialPosted[requestId][msg.sender] = true;
        request.partials += 1;
        emit PartialPosted(requestId, msg.sender, ciphertext);
    }

    function _validateState(uint256 requestId, bytes32 allowed) private view {
        RequestState current = state(requestId);
        if (_bit(current) & allowed == 0) revert InferenceUnexpectedState(requestId, current, allowed);
    }

    /// @dev ECDSA for an account, EIP-1271 for a contract wallet (OpenZeppelin's
    /// SignatureChecker does the same but, since 5.4, needs a Cancun VM, which Ganache lacks).
    function _isClientSignature(address client, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        if (client.code.length == 0) {
            (address recovered, ECDSA.RecoverError failure,) = ECDSA.tryRecover(digest, signature);
            return failure == ECDSA.RecoverError.NoError && recovered == client;
        }
        (bool ok, bytes memory result) =
            client.staticcall(abi.encodeCall(IERC1271.isValidSignature, (digest, signature)));
        return ok && result.length >= 32
            && abi.decode(result, (bytes32)) == bytes32(IERC1271.isValidSignature.selector);
    }

    function _bit(RequestState s) private pure returns (bytes32) {
        return bytes32(1 << uint8(s));
    }

    function _send(address payable to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert InferenceTransferFailed(to, amount);
    }

    function _popcount(uint256 x) private pure returns (uint256 count) {
        while (x != 0) {
            x &= x - 1;
            ++count;
        }
    }
}
