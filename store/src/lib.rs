//! TokenIM persistence: typed records in RocksDB (or memory), column families, retention and
//! quotas. No networking, no crypto: ids and keys are plain byte arrays.
//!
//! * [`Backend`] is the one low-level trait (get, atomic batch write, ordered scan, compact);
//!   [`RocksBackend`] and [`MemBackend`] implement it.
//! * [`Store`] implements every typed operation once on top of any backend, so one
//!   conformance suite covers both.
//! * [`Txn`] groups typed changes into one atomic batch.
//! * The on-disk schema is the key layouts in [`keys`] plus the protobuf records in
//!   [`records`], versioned by [`schema::SCHEMA_VERSION`] and checked on open.
//!
//! Durability: see [`StoreOptions::sync_writes`] and [`Txn::commit_durable`]; full disks:
//! [`StoreOptions::disk_reserve_bytes`] and [`Store::reclaim_space`].

pub mod backend;
mod error;
mod files;
pub mod keys;
mod mailbox;
mod member_states;
mod messages;
pub mod records;
pub mod schema;
mod space;
mod store;
mod txn;

pub use backend::{
    Backend, Batch, BatchOp, Cf, DiskSpace, KeyValue, MemBackend, RocksBackend, StorageStats,
};
pub use error::{Quota, Result, StoreError};
pub use files::{FileRecord, FileState};
pub use mailbox::{MailboxStats, MailboxUsage, PurgeReport, PutOutcome};
pub use member_states::MemberState;
pub use messages::Cursor;
pub use records::{
    ContactRecord, ContactState, Direction, GroupRecord, MessageRecord, MessageState, OutboxRecord,
    Record, StoredEnvelope, TokenRecord,
};
pub use schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY};
pub use space::SpaceStatus;
pub use store::{Store, StoreOptions};
pub use txn::Txn;
