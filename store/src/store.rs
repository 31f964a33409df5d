//! [`Store`]: the typed layer, implemented once over any [`Backend`].

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, Cf, MemBackend, RocksBackend, StorageStats};
use crate::keys::{seen_key, successor};
use crate::mailbox::MailboxState;
use crate::records::{ContactRecord, GroupRecord, OutboxRecord, Record, TokenRecord};
use crate::{Result, StoreError, schema};

/// Entries fetched per backend call when walking a whole column family.
pub(crate) const SCAN_CHUNK: usize = 1024;

/// Open options. `Deserialize` so that it can sit in the node's config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreOptions {
    /// fsync the write-ahead log on every write. Writes that someone is promised are synced
    /// whatever this says: mailbox puts (a relay signs a custody receipt for them), mailbox
    /// registrations and [`Txn::commit_durable`](crate::Txn::commit_durable). Default
    /// `false`: other writes (acks, states, purges, tokens) survive a process crash (they are
    /// in the OS page cache) but the last few may be lost on power failure or kernel panic,
    /// until the next synced write. `true` syncs those too, at one disk flush per write.
    pub sync_writes: bool,
    /// Free bytes to keep on the database's filesystem (at most a quarter of its size):
    /// writes of others' data (mailbox puts, [`Txn::commit_durable`](crate::Txn::commit_durable))
    /// are refused with [`StoreError::StorageFull`] below it, so that deletes, flushes and
    /// compactions, which free space, always have room. 0 turns the check off.
    pub disk_reserve_bytes: u64,
    /// Relay role: most envelopes one mailbox may hold.
    pub mailbox_max_messages: u64,
    /// Relay role: most envelope bytes one mailbox may hold.
    pub mailbox_max_bytes: u64,
    /// Relay role: most envelope bytes across all mailboxes. Counts payload bytes, so actual
    /// disk use is higher by keys, indexes and LSM overhead (see [`Store::disk_usage`]).
    pub total_max_bytes: u64,
    /// Relay role: longest retention granted to an envelope; longer TTLs are clamped.
    pub mailbox_max_ttl_secs: u64,
    /// How long an incoming message's id stays in the dedupe set after it was received.
    pub seen_ttl_secs: u64,
    /// Compact the purged key ranges at the end of [`Store::purge_expired`] so that the disk
    /// space is returned at once rather than by later background compactions.
    pub compact_after_purge: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sync_writes: false,
            disk_reserve_bytes: 256 << 20,
            mailbox_max_messages: 10_000,
            mailbox_max_bytes: 64 << 20,
            total_max_bytes: 4 << 30,
            mailbox_max_ttl_secs: 30 * 24 * 3600,
            seen_ttl_secs: 30 * 24 * 3600,
            compact_after_purge: true,
        }
    }
}

/// Typed persistence for a node. Cheap to clone (an `Arc` inside); all clones share state.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) opts: StoreOptions,
    /// Serialises read-modify-write of personal data (message index, seen ids) by `Txn`s.
    pub(crate) txn_lock: Mutex<()>,
    /// Every mailbox's counters, with the (striped) locks that serialise their updates.
    pub(crate) mailboxes: MailboxState,
    /// Records that lists skipped because they did not decode (see [`Store::skipped_corrupt`]).
    pub(crate) skipped_corrupt: std::sync::atomic::AtomicU64,
    /// The free-space reserve's state.
    pub(crate) space: crate::space::SpaceState,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Guarded state is only updated after a successful write, so it stays consistent even
    // if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn check_meta_key(key: &str) -> Result<()> {
    if key.starts_with("store.") {
        Err(StoreError::InvalidInput(format!(
            "meta key {key:?}: the store. prefix is reserved"
        )))
    } else {
        Ok(())
    }
}

pub(crate) fn meta_key_checked(key: &str) -> Result<&str> {
    check_meta_key(key).map(|()| key)
}

impl Store {
    /// Open (or create) a RocksDB store in directory `path`, checking and migrating the
    /// schema.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let backend = RocksBackend::open(path, opts.sync_writes)?;
        Store::with_backend(Arc::new(backend), opts)
    }

    /// A fresh volatile store with default options.
    pub fn in_memory() -> Store {
        Store::in_memory_with(StoreOptions::default())
    }

    /// A fresh volatile store.
    pub fn in_memory_with(opts: StoreOptions) -> Store {
        let backend = MemBackend::new();
        backend.apply(schema::version_batch(schema::SCHEMA_VERSION));
        Store::assemble(Arc::new(backend), opts, MailboxState::default())
    }

    /// A store over any backend (e.g. a shared [`MemBackend`] to simulate restarts). Checks
    /// and migrates the schema and loads the mailbox counters.
    pub fn with_backend(backend: Arc<dyn Backend>, opts: StoreOptions) -> Result<Store> {
        schema::check_and_migrate(backend.as_ref())?;
        let state = MailboxState::load(backend.as_ref())?;
        Ok(Store::assemble(backend, opts, state))
    }

    fn assemble(backend: Arc<dyn Backend>, opts: StoreOptions, state: MailboxState) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                opts,
                txn_lock: Mutex::new(()),
                mailboxes: state,
                skipped_corrupt: Default::default(),
                space: Default::default(),
            }),
        }
    }

    /// The raw backend, for tools and tests. Writing through it bypasses every invariant.
    pub fn backend(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    pub(crate) fn be(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    /// Call `f` on every entry with `lower <= key < upper`, in key order, without loading the
    /// whole range at once.
    pub(crate) fn scan_each(
        &self,
        cf: Cf,
        lower: &[u8],
        upper: Option<&[u8]>,
        mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        scan_each(self.be(), cf, lower, upper, &mut f)
    }

    /// Every record of `cf` that decodes. One corrupt record must not hold back the others
    /// (a listing, or the node's start-up): it is skipped and counted; reading it by its key
    /// still says [`StoreError::Corrupt`].
    fn collect<T: Record>(&self, cf: Cf) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.scan_each(cf, &[], None, |_, v| {
            match T::from_bytes(&v) {
                Ok(record) => out.push(record),
                Err(StoreError::Corrupt { .. }) => self.count_corrupt(),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn count_corrupt(&self) {
        self.inner
            .skipped_corrupt
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many corrupt records listings have skipped since the store was opened.
    pub fn skipped_corrupt(&self) -> u64 {
        self.inner
            .skipped_corrupt
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn get_record<T: Record>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        self.be()
            .get(cf, key)?
            .map(|v| T::from_bytes(&v))
            .transpose()
    }

    // ------------------------------------------------------------ meta

    /// A `meta` value.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.be().get(Cf::Meta, key.as_bytes())
    }

    /// Set a `meta` value. Keys starting with `store.` are reserved ([`StoreError::InvalidInput`]).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.txn().put_meta(key, value).commit()
    }

    /// Remove a `meta` value; whether it existed.
    pub fn delete_meta(&self, key: &str) -> Result<bool> {
        check_meta_key(key)?;
        let existed = self.get_meta(key)?.is_some();
        self.txn().delete_meta(key).commit()?;
        Ok(existed)
    }

    // ------------------------------------------------------------ contacts

    /// Insert or replace a contact.
    pub fn put_contact(&self, c: &ContactRecord) -> Result<()> {
        self.txn().put_contact(c).commit()
    }

    /// A contact by identity key.
    pub fn get_contact(&self, identity_key: &[u8; 32]) -> Result<Option<ContactRecord>> {
        self.get_record(Cf::Contacts, identity_key)
    }

    /// The contact named exactly `name` (the first by identity key if several are). A linear
    /// scan: contact lists are small.
    pub fn find_contact_by_name(&self, name: &str) -> Result<Option<ContactRecord>> {
        let mut found = None;
        self.scan_each(Cf::Contacts, &[], None, |_, v| {
            if found.is_none() {
                match ContactRecord::from_bytes(&v) {
                    Ok(c) if c.name.as_deref() == Some(name) => found = Some(c),
                    Ok(_) => {}
                    Err(StoreError::Corrupt { .. }) => self.count_corrupt(),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// All contacts, by identity key.
    pub fn list_contacts(&self) -> Result<Vec<ContactRecord>> {
        self.collect(Cf::Contacts)
    }

    /// Remove a contact; whether it existed. Its session and messages are kept.
    pub fn delete_contact(&self, identity_key: &[u8; 32]) -> Result<bool> {
        let existed = self.be().get(Cf::Contacts, identity_key)?.is_some();
        self.txn().delete_contact(identity_key).commit()?;
        Ok(existed)
    }

    // ------------------------------------------------------------ sessions

    /// Store a peer's opaque session state.
    pub fn put_session(&self, peer: &[u8; 32], state: &[u8]) -> Result<()> {
        self.txn().put_session(peer, state).commit()
    }

    /// A peer's session state.
    pub fn get_session(&self, peer: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.be().get(Cf::Sessions, peer)
    }

    /// All sessions, by peer.
    pub fn list_sessions(&self) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        let mut out = Vec::new();
        self.scan_each(Cf::Sessions, &[], None, |k, v| {
            match crate::keys::array::<32>("session key", &k, 0) {
                Ok(key) => out.push((key, v)),
                Err(StoreError::Corrupt { .. }) => self.count_corrupt(),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Remove a peer's session; whether it existed.
    pub fn delete_session(&self, peer: &[u8; 32]) -> Result<bool> {
        let existed = self.get_session(peer)?.is_some();
        self.txn().delete_session(peer).commit()?;
        Ok(existed)
    }

    // ------------------------------------------------------------ outbox

    /// Insert or replace an outbox entry.
    pub fn put_outbox(&self, o: &OutboxRecord) -> Result<()> {
        self.txn().put_outbox(o).commit()
    }

    /// An outbox entry.
    pub fn get_outbox(&self, id: &[u8; 16]) -> Result<Option<OutboxRecord>> {
        self.get_record(Cf::Outbox, id)
    }

    /// All outbox entries, soonest `next_attempt_ms` first (ties by id).
    pub fn list_outbox(&self) -> Result<Vec<OutboxRecord>> {
        let mut all: Vec<OutboxRecord> = self.collect(Cf::Outbox)?;
        all.sort_by_key(|o| (o.next_attempt_ms, o.id));
        Ok(all)
    }

    /// Remove an outbox entry; whether it existed.
    pub fn delete_outbox(&self, id: &[u8; 16]) -> Result<bool> {
        let existed = self.be().get(Cf::Outbox, id)?.is_some();
        self.txn().delete_outbox(id).commit()?;
        Ok(existed)
    }

    // ------------------------------------------------------------ seen ids

    /// Whether an incoming message `inner_id` from `peer` was already processed: its id was
    /// marked seen (and not yet purged), or a message with that id from that peer is stored.
    pub fn is_seen(&self, peer: &[u8; 32], inner_id: &[u8; 16]) -> Result<bool> {
        if self
            .be()
            .get(Cf::Seen, &seen_key(peer, inner_id))?
            .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .get_message(inner_id)?
            .is_some_and(|m| m.direction == crate::Direction::Incoming && &m.from == peer))
    }

    /// Record `inner_id` from `peer` as processed until `expires_at` (unix seconds). A later
    /// expiry already recorded is kept.
    pub fn mark_seen(&self, peer: &[u8; 32], inner_id: &[u8; 16], expires_at: u64) -> Result<()> {
        self.txn().mark_seen(peer, inner_id, expires_at).commit()
    }

    // ------------------------------------------------------------ tokens

    /// Insert or replace an API token.
    pub fn put_token(&self, t: &TokenRecord) -> Result<()> {
        self.txn().put_token(t).commit()
    }

    /// An API token by id.
    pub fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get_record(Cf::Tokens, id.as_bytes())
    }

    /// All API tokens, by id.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.collect(Cf::Tokens)
    }

    /// Revoke an API token; whether it existed.
    pub fn delete_token(&self, id: &str) -> Result<bool> {
        let existed = self.be().get(Cf::Tokens, id.as_bytes())?.is_some();
        self.txn().delete_token(id).commit()?;
        Ok(existed)
    }

    // ------------------------------------------------------------ groups

    /// Insert or replace a group.
    pub fn put_group(&self, g: &GroupRecord) -> Result<()> {
        self.txn().put_group(g).commit()
    }

    /// A group by id.
    pub fn get_group(&self, id: &[u8; 32]) -> Result<Option<GroupRecord>> {
        self.get_record(Cf::Groups, id)
    }

    /// All groups, by id (records that do not decode are skipped and counted).
    pub fn list_groups(&self) -> Result<Vec<GroupRecord>> {
        self.collect(Cf::Groups)
    }

    // ------------------------------------------------------------ storage

    /// Bytes the database occupies on disk (all files in its directory), for the relay's
    /// disk budget and the metrics endpoint. In memory: bytes of keys and values.
    pub fn disk_usage(&self) -> Result<u64> {
        Ok(self.be().stats()?.disk_bytes)
    }

    /// Detailed storage figures.
    pub fn storage_stats(&self) -> Result<StorageStats> {
        self.be().stats()
    }

    /// Write memtables to disk (e.g. before a backup or to measure SST sizes).
    pub fn flush(&self) -> Result<()> {
        self.be().flush()
    }
}

pub(crate) fn scan_each(
    backend: &dyn Backend,
    cf: Cf,
    lower: &[u8],
    upper: Option<&[u8]>,
    f: &mut dyn FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut from = lower.to_vec();
    loop {
        let rows = backend.scan(cf, &from, upper, SCAN_CHUNK, false)?;
        let full = rows.len() == SCAN_CHUNK;
        let next = rows.last().map(|(k, _)| successor(k));
        for (k, v) in rows {
            f(k, v)?;
        }
        match next {
            Some(n) if full => from = n,
            _ => return Ok(()),
        }
    }
}
