//! The crate's single error type.

use std::fmt;

/// Which quota a rejected mailbox put would have broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// Per-mailbox message count (`StoreOptions::mailbox_max_messages`).
    MailboxMessages,
    /// Per-mailbox payload bytes (`StoreOptions::mailbox_max_bytes`).
    MailboxBytes,
    /// Payload bytes across all mailboxes (`StoreOptions::total_max_bytes`).
    TotalBytes,
}

impl Quota {
    /// Stable machine-readable name, e.g. for API error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::MailboxMessages => "mailbox_messages",
            Quota::MailboxBytes => "mailbox_bytes",
            Quota::TotalBytes => "total_bytes",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quota::MailboxMessages => "mailbox message count",
            Quota::MailboxBytes => "mailbox byte",
            Quota::TotalBytes => "relay total storage",
        })
    }
}

/// Everything that can go wrong in `tokenim-store`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error (I/O, lock held by another process, corruption it detected...).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A filesystem operation outside RocksDB failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record or key could not be decoded. Never a panic: the bytes on disk are data.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The kind of record or key.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The database was written by a newer version of TokenIM.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); \
         upgrade tokenim or use a different data directory"
    )]
    SchemaTooNew {
        /// Version found on disk.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// A mailbox put would exceed a quota; nothing was written.
    #[error("{quota} quota exceeded: {used} used + {requested} requested > limit {limit}")]
    QuotaExceeded {
        /// Which quota.
        quota: Quota,
        /// The configured limit.
        limit: u64,
        /// Current usage.
        used: u64,
        /// What the rejected put needed.
        requested: u64,
    },
    /// The disk is (nearly) full: a write that would grow the database was refused to keep
    /// the free-space reserve, or the filesystem itself said it has no space. Nothing was
    /// written; it passes once space returns.
    #[error("disk full: {0}")]
    StorageFull(String),
    /// Mailbox operation on a mailbox this relay does not host.
    #[error("mailbox is not registered on this relay")]
    MailboxNotRegistered,
    /// A message id is already used by a message of another conversation, direction or sender.
    #[error("message id already belongs to a different conversation, direction or sender")]
    MessageIdConflict,
    /// A caller-provided value was rejected (bad cursor text, reserved meta key...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.into(),
    }
}
