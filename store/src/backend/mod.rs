//! The one low-level storage trait and its two implementations.
//!
//! Everything typed lives in [`crate::Store`], written once against [`Backend`], so the same
//! conformance suite exercises both the in-memory and the RocksDB implementation.

mod mem;
mod rocks;

use std::fmt;

pub use mem::MemBackend;
pub use rocks::RocksBackend;

use crate::Result;

/// Column families. Each is a separate ordered keyspace (a RocksDB column family, or one
/// `BTreeMap` in [`MemBackend`]). Key layouts are documented in [`crate::keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Schema version, identity metadata, misc settings.
    Meta,
    /// Contacts by identity key.
    Contacts,
    /// Opaque session state per peer.
    Sessions,
    /// Accepted, not yet confirmed sends.
    Outbox,
    /// Messages ordered by conversation, then time.
    Messages,
    /// Message id -> key in `Messages`.
    MessageIndex,
    /// Messages of all conversations ordered by time (for the all-conversations listing).
    MessageTime,
    /// Relay role: stored envelopes by mailbox and sequence number.
    Mailboxes,
    /// Relay role: per-mailbox counters.
    MailboxMeta,
    /// Relay role: mailbox + message id -> sequence number (dedupe, ack deletion).
    MailboxIndex,
    /// Relay role: expiry time + mailbox + sequence number (retention sweeps).
    MailboxExpiry,
    /// Local API tokens (hashed).
    Tokens,
    /// Ids of already-processed incoming messages, with expiry.
    Seen,
    /// Groups this node is a member of: membership log and sender-key state.
    Groups,
    /// Sent group messages: each member's delivery state.
    MemberStates,
    /// File transfers, a message's attachments, uploads by chunk-list root.
    Files,
}

impl Cf {
    /// All column families, in a fixed order.
    pub const ALL: [Cf; 16] = [
        Cf::Meta,
        Cf::Contacts,
        Cf::Sessions,
        Cf::Outbox,
        Cf::Messages,
        Cf::MessageIndex,
        Cf::MessageTime,
        Cf::Mailboxes,
        Cf::MailboxMeta,
        Cf::MailboxIndex,
        Cf::MailboxExpiry,
        Cf::Tokens,
        Cf::Seen,
        Cf::Groups,
        Cf::MemberStates,
        Cf::Files,
    ];

    /// Name on disk. Never change one: it is part of the on-disk schema.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Contacts => "contacts",
            Cf::Sessions => "sessions",
            Cf::Outbox => "outbox",
            Cf::Messages => "messages",
            Cf::MessageIndex => "message_index",
            Cf::MessageTime => "message_time",
            Cf::Mailboxes => "mailboxes",
            Cf::MailboxMeta => "mailbox_meta",
            Cf::MailboxIndex => "mailbox_index",
            Cf::MailboxExpiry => "mailbox_expiry",
            Cf::Tokens => "tokens",
            Cf::Seen => "seen",
            Cf::Groups => "groups",
            Cf::MemberStates => "member_states",
            Cf::Files => "files",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One operation of an atomic [`Batch`].
#[derive(Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Insert or overwrite `key`.
    Put {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key` (no error if absent).
    Delete {
        /// Column family.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `from..to` (upper bound exclusive).
    DeleteRange {
        /// Column family.
        cf: Cf,
        /// Inclusive lower bound.
        from: Vec<u8>,
        /// Exclusive upper bound.
        to: Vec<u8>,
    },
}

// Values may hold session state or plaintext: show only sizes.
impl fmt::Debug for BatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchOp::Put { cf, key, value } => write!(
                f,
                "Put({}, {} B key, {} B value)",
                cf.name(),
                key.len(),
                value.len()
            ),
            BatchOp::Delete { cf, key } => write!(f, "Delete({}, {} B key)", cf.name(), key.len()),
            BatchOp::DeleteRange { cf, .. } => write!(f, "DeleteRange({})", cf.name()),
        }
    }
}

/// An ordered list of writes applied all-or-nothing by [`Backend::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a put.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Put {
            cf,
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Queue a delete.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Delete {
            cf,
            key: key.into(),
        });
        self
    }

    /// Queue a range delete of `from..to`.
    pub fn delete_range(
        &mut self,
        cf: Cf,
        from: impl Into<Vec<u8>>,
        to: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(BatchOp::DeleteRange {
            cf,
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Number of queued operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of the keys and values it puts: about what it adds to the database.
    pub fn bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value, .. } => (key.len() + value.len()) as u64,
                BatchOp::Delete { .. } | BatchOp::DeleteRange { .. } => 0,
            })
            .sum()
    }

    /// The queued operations, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Consume into the queued operations.
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Storage figures reported by a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes of all files in the database directory (what `du` would say). For
    /// [`MemBackend`], the bytes of all keys and values.
    pub disk_bytes: u64,
    /// Bytes of SST files holding live data (RocksDB `live-sst-files-size`, all column
    /// families). Drops once deleted data has been compacted away. Equals `disk_bytes` for
    /// [`MemBackend`].
    pub live_sst_bytes: u64,
    /// Bytes held in memtables (RocksDB `size-all-mem-tables`); 0 for [`MemBackend`].
    pub memtable_bytes: u64,
}

/// Space on the filesystem that holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use (`statvfs` `f_bavail`).
    pub free_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
}

/// The low-level storage contract: ordered byte keyspaces per [`Cf`], atomic batches, scans.
pub trait Backend: Send + Sync + 'static {
    /// Value of `key`, if present.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Values of several keys, in order.
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(cf, k)).collect()
    }

    /// Apply every operation of `batch`, in order, atomically: after a crash either all of
    /// them are visible or none.
    fn write(&self, batch: Batch) -> Result<()>;

    /// [`write`](Backend::write), durable when it returns: this write and every earlier one
    /// survive a power cut, not only a crash of the process (RocksDB fsyncs its write-ahead
    /// log; concurrent synced writes share one fsync). For writes someone is promised.
    fn write_synced(&self, batch: Batch) -> Result<()>;

    /// Up to `limit` entries with `lower <= key < upper` (`upper: None` = no upper bound), in
    /// ascending key order, or descending (starting from the largest key) if `reverse`.
    fn scan(
        &self,
        cf: Cf,
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>>;

    /// Rewrite the data in `start..end` (None = open end) so that deleted entries stop
    /// occupying disk. A no-op where there is nothing to reclaim.
    fn compact_range(&self, cf: Cf, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()>;

    /// Persist in-memory buffers (memtables) to durable files.
    fn flush(&self) -> Result<()>;

    /// Storage figures.
    fn stats(&self) -> Result<StorageStats>;

    /// Free and total space of the filesystem holding the data; `None` where there is no
    /// such thing (memory).
    fn disk_space(&self) -> Result<Option<DiskSpace>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_index_matches_all_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for (i, cf) in Cf::ALL.iter().enumerate() {
            assert_eq!(cf.index(), i);
            assert!(names.insert(cf.name()), "duplicate name {}", cf.name());
            assert_ne!(cf.name(), "default");
        }
    }

    #[test]
    fn batch_debug_hides_values() {
        let mut b = Batch::new();
        b.put(Cf::Sessions, b"peer".to_vec(), b"session-secret".to_vec());
        let text = format!("{b:?}");
        assert!(
            !text.contains("session-secret") && !text.contains("115"),
            "{text}"
        );
        assert!(text.contains("sessions"));
    }
}
