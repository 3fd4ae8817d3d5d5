// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Shared enums and structs of the enclave-share contracts.

/// @dev The role an attested enclave plays in the consortium.
enum Role {
    None,
    Provider,
    Gateway
}

/// @dev How a participant's vector is split into shares.
enum Scheme {
    Additive, // n-of-n; with a threshold t < n, survivors recover the shares owed to the absent (t-of-n)
    Shamir // t-of-n over a prime field, survives n - t dropouts
}

/// @dev What travels on chain for each recipient.
enum Encoding {
    Dense, // the encrypted share vector itself
    Seeded // an encrypted 32-byte PRG seed the recipient expands
}

/// @dev What a completed round's aggregate may be used for.
enum OutputKind {
    SharedModel, // stays secret-shared; answers inference requests
    Statistic, // column sums/counts released through the gateway
    Intermediate // revealed to the participants' enclaves only (federated-averaging steps, joint scaling)
}

/// @dev Lifecycle of a share-exchange round. `Expired` is derived from time.
enum RoundState {
    None,
    Posting,
    Fusing,
    Completed,
    Aborted,
    Expired,
    Recovering // additive t-of-n: the holders reveal the keys of the shares owed to the absent
}

/// @dev Lifecycle of an inference request. `Expired` is derived from time.
enum RequestState {
    None,
    Pending,
    Completed,
    Expired,
    Refunded
}

/// @dev Why a round was aborted.
enum AbortReason {
    None,
    MissingShares, // a participant did not post by the posting deadline
    InvalidShare, // a recipient could not authenticate a sender's ciphertext
    MissingFusion, // too few fused commitments by the deadline
    TooFewContributors, // exclusions left fewer contributors than the round's floor
    FalseComplaint, // additive: the judges found the accused sender's share valid
    KeyMismatch, // additive: the revealed key is not the one the sender committed to
    SplitVerdict, // the judges of a complaint disagreed
    MissingVerdict, // a complaint was still unjudged at the deadline
    MissingRecovery // a holder did not reveal its recovery keys by the recovery deadline
}

/// @dev Why a member was excluded from a round's contributors (always with evidence).
enum ExclusionReason {
    None,
    InvalidShare, // complaint upheld: the sender's ciphertext fails under the key it committed to
    FalseComplaint, // complaint rejected: the sender's ciphertext opens fine under that key
    KeyMismatch // the accuser revealed another key than the sender committed to: one of the two lies
}

/// @dev What a member was caught doing after completion (a detection, not an exclusion).
enum BlameReason {
    None,
    RevealMismatch, // a revealed fused share does not open its fused commitment
    RevealUnreadable, // a revealed fused share does not decrypt for its recipient
    ShareOffPolynomial, // a fused share does not lie on the holders' polynomial
    WrongPartial, // a partial result does not lie on the providers' polynomial
    RecoveryUnreadable // a holder's ciphertext for an absent neighbour fails under its checked recovery key
}

/// @dev The statement an attestation service signs (EIP-712 `Quote`).
struct Quote {
    Role role;
    bytes32 measurement;
    address operator;
    address enclave;
    bytes32 x25519Key;
    uint256 chainId;
    address registry;
    bytes32 nonce;
    uint64 expiry;
}

/// @dev What a registration with hardware evidence claims, and what the consortium's
/// evidence verifiers sign (EIP-712 `VerifiedEvidence`, with the quote's digest).
struct EvidenceClaim {
    // EvidenceType code (enclave_agent.tee.evidence): 2 aws-nitro, 3 intel-sgx, 4 intel-tdx, 5 amd-sev-snp
    uint8 evidenceType;
    bytes32 evidenceHash; // keccak256 of the raw evidence bytes
    bytes32 policyHash; // keccak256 of the policy file the verifiers judged the evidence under
}

/// @dev A registered enclave.
struct Member {
    Role role;
    bool active;
    address operator;
    bytes32 measurement;
    bytes32 x25519Key;
    uint64 joinedEpoch;
}

/// @dev The data a round aggregates.
struct DataSpec {
    uint32 length; // vector length d
    uint8 fracBits; // fixed-point scale 2^fracBits
    Scheme scheme;
    Encoding encoding;
    uint256 modulus; // ring 2^64 (additive) or a prime (Shamir)
    // Additive only: 0 shares with every other participant; an even k >= 2 places the
    // participants on a circle and shares only with the k/2 nearest on each side (a
    // k-connected circulant graph: fewer than k colluders learn nothing beyond the sum).
    uint16 maskDegree;
}

/// @dev What may be released from a round's aggregate.
struct OutputPolicy {
    OutputKind kind;
    uint16 minContributors;
}

/// @dev An organisation's standing: governance admits it, may suspend it and reinstate it.
enum OrgStatus {
    None,
    Admitted,
    Suspended
}

/// @dev Why a member left (carried by `MemberRevoked`).
enum RevokeReason {
    None,
    Governance, // governance removed the enclave
    Operator, // the enclave or its operator left
    MeasurementRevoked, // governance withdrew the code measurement it runs
    OrganisationSuspended, // governance suspended its organisation
    Unsynchronised // it posted no matching membership digest by the epoch's deadline
}

/// @dev A member organisation, keyed by its operator address.
struct Organisation {
    OrgStatus status;
    uint8 roles; // bitmap over Role: bit 1 << uint8(role) set when the role is allowed
    uint16 maxEnclavesPerRole;
    uint64 coolingUntil; // no registration before this time (after being dropped)
    string name;
}

/// @dev What a client signs (EIP-712 `InferenceRequest`) to let a gateway spend its
/// quota and deposit on one request.
struct ClientRequest {
    address client;
    uint256 modelId;
    uint32 rows;
    bytes32 inputHash; // keccak256 of the canonical query bytes (see the README)
    uint256 nonce;
    uint64 deadline; // the signature is void after this time
    uint256 maxFee; // the most the request may cost the client, in wei
}
