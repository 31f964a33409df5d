//! The one error type of this crate.
//!
//! Variants are distinct per failure so that callers (and tests) can tell a typo from a forgery
//! from an expired card; messages never contain secret material.

/// `Result` with [`CryptoError`].
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;

/// Everything that can go wrong in `tokenim-crypto`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    // --- addresses and ids ---
    /// The address checksum does not match: most likely a typo.
    #[error("address checksum mismatch (typo?)")]
    AddressChecksum,
    /// The text is a bech32 string, but not a TokenIM address.
    #[error("wrong address prefix {found:?}, expected \"tim\"")]
    AddressPrefix {
        /// The human-readable part that was found.
        found: String,
    },
    /// The address decodes to the wrong number of bytes.
    #[error("address holds {found} bytes, expected 32")]
    AddressLength {
        /// Number of bytes found.
        found: usize,
    },
    /// Not a bech32m string at all (bad characters, mixed case, no separator...).
    #[error("malformed address: {0}")]
    AddressMalformed(String),
    /// A mailbox id is not 64 lowercase hex digits / 32 bytes.
    #[error("malformed mailbox id")]
    MailboxIdMalformed,

    // --- keys and signatures ---
    /// Bytes that should be a public key are not a valid (or are a weak) key.
    #[error("invalid {0} public key")]
    InvalidPublicKey(&'static str),
    /// A signature does not verify.
    #[error("bad {0} signature")]
    BadSignature(&'static str),
    /// A public identity's X25519 key is not validly signed by its identity key (or is weak).
    #[error("identity's Noise key signature is invalid")]
    IdentityInvalid,
    /// The encoded identity secret is unreadable.
    #[error("invalid identity secret encoding: {0}")]
    InvalidSecret(&'static str),

    // --- generic decoding ---
    /// Bytes that do not decode as the expected structure, or break one of its limits.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A version number this implementation does not speak.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version found.
        version: u32,
    },

    // --- contact cards ---
    /// The card's expiry time has passed.
    #[error("contact card expired at {expires_at} (now {now})")]
    CardExpired {
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// The encoded card would exceed [`crate::MAX_CARD_URI_BYTES`].
    #[error("contact card too large: {len} bytes, max {max}")]
    CardTooLarge {
        /// Encoded length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `to_uri` was called with an identity other than the card's.
    #[error("the signer is not the card's identity")]
    SignerMismatch,

    // --- envelopes ---
    /// An envelope is larger than [`crate::MAX_ENVELOPE_BYTES`].
    #[error("envelope too large: {len} bytes")]
    EnvelopeTooLarge {
        /// Its length.
        len: usize,
    },
    /// Ciphertext or frame length is not one of the size buckets.
    #[error("length {len} is not a size bucket")]
    NotABucket {
        /// The length found.
        len: usize,
    },
    /// The message id is not the hash of the ciphertext.
    #[error("message id does not match ciphertext")]
    MessageIdMismatch,
    /// The envelope timestamp is not coarse (a multiple of 60 s).
    #[error("envelope timestamp is not coarse")]
    TimestampNotCoarse,

    // --- messages and sessions ---
    /// The inner message body exceeds [`crate::MAX_BODY_BYTES`] (API: 413).
    #[error("message too large: {size} bytes, max {max}")]
    MessageTooLarge {
        /// Size found.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// An inner message breaks a rule other than the body size (id length, ref ids...).
    #[error("invalid inner message: {0}")]
    InvalidMessage(&'static str),
    /// A frame is truncated or its header is unreadable.
    #[error("malformed frame: {0}")]
    FrameMalformed(&'static str),
    /// Unknown frame kind byte.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// A transport frame for a session we do not hold (never had, or dropped for forward
    /// secrecy), or a response to an init we no longer wait for.
    #[error("unknown session")]
    UnknownSession,
    /// A frame that was already accepted (replay).
    #[error("duplicate frame (replay)")]
    Replay,
    /// A transport nonce older than the replay window.
    #[error("nonce too old for the replay window")]
    NonceTooOld,
    /// Authenticated decryption failed: wrong key, or the frame was modified.
    #[error("decryption failed")]
    DecryptFailed,
    /// The Noise handshake failed (bad message, wrong key...).
    #[error("noise handshake failed: {0}")]
    Handshake(#[source] snow::Error),
    /// The identity in the init payload does not match the Noise static key that sent it.
    #[error("sender identity does not match its Noise key")]
    SenderMismatch,
    /// Too many peers held in memory ([`crate::SessionPolicy::max_peers`]).
    #[error("too many peers with session state")]
    TooManyPeers,
    /// A send session exhausted its nonces (cannot happen with a sane rekey policy).
    #[error("nonce space exhausted")]
    NonceExhausted,

    // --- receipts, acks, registrations ---
    /// Signed for another mailbox than expected.
    #[error("wrong mailbox")]
    WrongMailbox,
    /// Signed by or for another relay than expected.
    #[error("wrong relay")]
    WrongRelay,
    /// Refers to another message than expected.
    #[error("wrong message id")]
    WrongMessage,
    /// Answers another challenge than expected.
    #[error("wrong challenge")]
    WrongChallenge,
    /// The signed timestamp is outside the accepted window around now.
    #[error("timestamp {timestamp} outside window of {window_secs} s around {now}")]
    OutsideTimeWindow {
        /// Signed timestamp.
        timestamp: u64,
        /// Verifier's clock.
        now: u64,
        /// Allowed skew each way.
        window_secs: u64,
    },

    // --- groups (sender keys) ---
    /// A group frame under a sender key we do not hold: never given to us, superseded by newer
    /// epochs of its sender, or its sender was removed.
    #[error("unknown sender key")]
    UnknownSenderKey,
    /// A distribution older than every epoch held of its sender.
    #[error("sender key older than the epochs held")]
    StaleSenderKey,
    /// The message key of a group frame is no longer held: the frame is older than the
    /// distribution we were given, or than the skipped keys we keep.
    #[error("group frame too old for the keys held")]
    SenderKeyTooOld,
    /// A group frame too far ahead of its sender's chain.
    #[error("group frame {ahead} messages ahead of its chain, max {max}")]
    SenderKeyTooFarAhead {
        /// Iterations between the chain and the frame.
        ahead: u32,
        /// Limit.
        max: u32,
    },
    /// More senders in one group than [`crate::group::sender_key::MAX_SENDERS`].
    #[error("too many group senders")]
    TooManySenders,
    // --- groups ---
    /// The signer of a group change or invite is not entitled to it at that point of the log,
    /// or the change would do nothing.
    #[error("group change not allowed: {0}")]
    GroupNotAllowed(&'static str),
    /// The group has as many members as its limit allows.
    #[error("group is full: at most {max} members")]
    GroupFull {
        /// The group's member limit.
        max: u32,
    },
    /// A change, invite or sender key of another group.
    #[error("change, invite or sender key of another group")]
    WrongGroup,
    /// A bound of a group log was reached (changes waiting for parents, log size).
    #[error("group log limit reached: {0}")]
    GroupLimit(&'static str),
    /// A group invite past its expiry.
    #[error("group invite expired at {expires_at} (now {now})")]
    InviteExpired {
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The time it was checked at (for a join: the join's own time).
        now: u64,
    },
    /// As many joins as the invite allows already counted.
    #[error("group invite used up")]
    InviteUsedUp,

    // --- devices ---
    /// A device list would hold more than [`crate::device::MAX_DEVICES`] devices.
    #[error("too many devices: at most {max}")]
    TooManyDevices {
        /// The limit.
        max: usize,
    },
    /// The device is already in the list.
    #[error("device already listed")]
    DeviceAlreadyListed,
    /// The device is not in the list.
    #[error("device not listed")]
    DeviceNotListed,
    /// The account's own device (the first entry) cannot be removed.
    #[error("the account's own device cannot be removed")]
    PrimaryDevice,
    /// A device list, card or signer of another account than expected.
    #[error("device list of another account")]
    WrongAccount,
    /// A device list older than the one held: refused (no rollback).
    #[error("device list version {got} is older than the held version {held}")]
    DeviceListRollback {
        /// Version held.
        held: u64,
        /// Version offered.
        got: u64,
    },
    /// A device list of the version held but with other content: the account signed two
    /// different lists with one version.
    #[error("two different device lists with version {version}")]
    DeviceListEquivocation {
        /// The version both carry.
        version: u64,
    },
    /// A link offer past its expiry.
    #[error("link offer expired at {expires_at} (now {now})")]
    LinkExpired {
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// A link request that names another offer than the one it is checked against.
    #[error("link request for another offer")]
    WrongLinkOffer,
    /// A link request whose proof does not verify with the offer's secret.
    #[error("link request proof does not verify")]
    BadLinkProof,

    // --- files ---
    /// A file name that cannot be used as one: empty, longer than
    /// [`crate::file::MAX_FILE_NAME_BYTES`], `.` or `..`, or holding a path separator, NUL, a
    /// control or a bidirectional-control character.
    #[error("invalid file name: {0}")]
    FileName(&'static str),
    /// A MIME type longer than [`crate::file::MAX_MIME_BYTES`] or not printable ASCII.
    #[error("invalid file type: {0}")]
    FileMime(&'static str),
    /// A file larger than the limit the caller set.
    #[error("file too large: {size} bytes, max {max}")]
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A chunk size outside [`crate::file::MIN_CHUNK_SIZE`]..=[`crate::file::MAX_CHUNK_SIZE`].
    #[error(
        "chunk size {size} outside {}..={}",
        crate::file::MIN_CHUNK_SIZE,
        crate::file::MAX_CHUNK_SIZE
    )]
    ChunkSize {
        /// The chunk size found.
        size: u32,
    },
    /// A file would have more than [`crate::file::MAX_CHUNKS`] chunks.
    #[error("too many chunks: at most {max}")]
    TooManyChunks {
        /// The limit.
        max: u32,
    },
    /// A chunk list whose length is not the chunk count the manifest's size and chunk size give.
    #[error("chunk list of {found} ids, the manifest needs {expected}")]
    ChunkCount {
        /// Chunks the manifest implies.
        expected: u32,
        /// Ids in the list.
        found: usize,
    },
    /// A chunk list that does not hash to the manifest's root.
    #[error("chunk list does not match the manifest's root")]
    ChunkListRoot,
    /// A plaintext chunk longer than the chunk size (or than [`crate::file::MAX_CHUNK_SIZE`]).
    #[error("chunk of {len} bytes, max {max}")]
    ChunkTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A chunk ciphertext of another length than the manifest gives for its index.
    #[error("chunk {index} is {len} bytes, expected {expected}")]
    ChunkLength {
        /// The chunk's index.
        index: u32,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A chunk whose hash is not the id the list names for its index.
    #[error("chunk {index} is not the chunk the list names")]
    ChunkIdMismatch {
        /// The chunk's index.
        index: u32,
    },
    /// A chunk that does not decrypt under the file key at its index and position (modified,
    /// moved, or a non-last chunk passed off as the last).
    #[error("chunk {index} does not decrypt")]
    ChunkDecryptFailed {
        /// The chunk's index.
        index: u32,
    },
    /// The opened file's size is not the manifest's.
    #[error("file is {got} bytes, the manifest says {expected}")]
    FileSizeMismatch {
        /// Size in the manifest.
        expected: u64,
        /// Bytes opened.
        got: u64,
    },
    /// The opened file's SHA-256 is not the manifest's.
    #[error("file content does not match the manifest's SHA-256")]
    FileHashMismatch,
    /// A file sealer or opener used out of order: a chunk after the last, or `finish` before it.
    #[error("file stream: {0}")]
    FileState(&'static str),

    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

impl CryptoError {
    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        CryptoError::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}
