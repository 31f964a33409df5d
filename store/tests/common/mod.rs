//! Shared test helpers: a fixture that opens either backend and can reopen it.
#![allow(dead_code)]

use std::sync::Arc;

use tempfile::TempDir;
use tokenim_store::{
    Backend, Direction, MemBackend, MessageRecord, MessageState, Result, Store, StoreOptions,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mem,
    Rocks,
}

/// A store plus what is needed to reopen it (a shared MemBackend, or the RocksDB directory).
pub struct Fixture {
    pub kind: Kind,
    mem: Arc<MemBackend>,
    dir: TempDir,
    store: Option<Store>,
    pub opts: StoreOptions,
}

impl Fixture {
    pub fn new(kind: Kind) -> Fixture {
        Fixture::with_options(kind, StoreOptions::default())
    }

    pub fn with_options(kind: Kind, opts: StoreOptions) -> Fixture {
        let mut f = Fixture {
            kind,
            mem: Arc::new(MemBackend::new()),
            dir: tempfile::tempdir().expect("create temp dir"),
            store: None,
            opts,
        };
        f.reopen().expect("open fresh store");
        f
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    /// Close and open again (same options), like a node restart.
    pub fn reopen(&mut self) -> Result<()> {
        let opts = self.opts.clone();
        self.reopen_with(opts)
    }

    pub fn reopen_with(&mut self, opts: StoreOptions) -> Result<()> {
        // RocksDB holds a lock on the directory: close first.
        self.store = None;
        self.opts = opts.clone();
        let store = match self.kind {
            Kind::Mem => {
                let backend: Arc<dyn Backend> = self.mem.clone();
                Store::with_backend(backend, opts)?
            }
            Kind::Rocks => Store::open(self.dir.path(), opts)?,
        };
        self.store = Some(store);
        Ok(())
    }
}

pub fn id16(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn id32(n: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[24..].copy_from_slice(&n.to_be_bytes());
    id
}

pub const ME: [u8; 32] = [0xee; 32];

/// A message in conversation with `peer`.
pub fn message(id: [u8; 16], peer: [u8; 32], received_at_ms: u64, incoming: bool) -> MessageRecord {
    let (from, to, direction, state) = if incoming {
        (peer, ME, Direction::Incoming, MessageState::Received)
    } else {
        (ME, peer, Direction::Outgoing, MessageState::Queued)
    };
    MessageRecord {
        id,
        conversation: peer,
        direction,
        from,
        to,
        kind: 1,
        body: format!(
            "body {}",
            u64::from_be_bytes(id[8..].try_into().expect("8 bytes"))
        ),
        sent_at_ms: received_at_ms.saturating_sub(5),
        received_at_ms,
        state,
        relays: 0,
        envelope_id: None,
        updated_at_ms: received_at_ms,
        held: false,
        group: false,
        reached: 0,
        delivered_to: 0,
        read_by: 0,
    }
}

/// Expected listing order: newest first by (received_at_ms, id).
pub fn newest_first(mut v: Vec<MessageRecord>) -> Vec<MessageRecord> {
    v.sort_by_key(|m| std::cmp::Reverse((m.received_at_ms, m.id)));
    v
}
