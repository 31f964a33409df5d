//! Relay role: mailboxes of offline envelopes with dedupe, quotas and retention.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::{Backend, Batch, Cf};
use crate::keys::{
    self, MailboxIndexValue, SEEN_EXPIRY, concat, mailbox_expiry_key, mailbox_index_key,
    mailbox_msg_key, prefix_end, seen_key, successor,
};
use crate::records::{MailboxMeta, Record, StoredEnvelope};
use crate::store::{Store, lock, scan_each};
use crate::{Quota, Result, StoreError};

/// Expired entries handled per batch (and per hold of the mailbox lock) by a purge.
const PURGE_CHUNK: usize = 4096;
/// Most `compact_range` calls one purge makes; beyond, neighbouring spans are merged.
const MAX_COMPACTIONS: usize = 64;
/// Lock stripes: puts to different mailboxes run concurrently (RocksDB then groups their
/// writes), puts to one mailbox are serialised so seqs are committed in order.
const STRIPES: usize = 64;

/// Result of an accepted [`Store::mailbox_put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// Sequence number of the stored envelope (the existing one for a duplicate).
    pub seq: u64,
    /// The message id was already stored; nothing was written.
    pub duplicate: bool,
    /// When it will be purged (unix seconds), after clamping the TTL.
    pub expires_at: u64,
}

/// Counters of one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxUsage {
    /// Unix seconds.
    pub registered_at: u64,
    /// Envelopes held.
    pub messages: u64,
    /// Envelope bytes held.
    pub bytes: u64,
    /// Sequence number the next accepted envelope will get.
    pub next_seq: u64,
}

/// Counters of all mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxStats {
    /// Registered mailboxes.
    pub mailboxes: u64,
    /// Envelopes held in all of them.
    pub stored_messages: u64,
    /// Envelope bytes held in all of them.
    pub stored_bytes: u64,
    /// Each mailbox, by id.
    pub per_mailbox: Vec<([u8; 32], MailboxUsage)>,
}

/// What [`Store::purge_expired`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Expired mailbox envelopes deleted.
    pub mailbox_messages: u64,
    /// Their bytes.
    pub mailbox_bytes: u64,
    /// Expired seen ids deleted.
    pub seen_ids: u64,
}

fn usage(m: &MailboxMeta) -> MailboxUsage {
    MailboxUsage {
        registered_at: m.registered_at,
        messages: m.messages,
        bytes: m.bytes,
        next_seq: m.next_seq,
    }
}

/// In-memory copy of every mailbox's counters, authoritative while the store is open (the
/// persisted copies are written in the same batches as the data they count). Striped by
/// mailbox; operations spanning mailboxes (purge, stats) take every stripe in order.
pub(crate) struct MailboxState {
    stripes: Box<[Mutex<Metas>]>,
    hasher: std::collections::hash_map::RandomState,
    total_messages: AtomicU64,
    total_bytes: AtomicU64,
}

type Metas = HashMap<[u8; 32], MailboxMeta>;

impl Default for MailboxState {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(Metas::new())).collect(),
            hasher: Default::default(),
            total_messages: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for MailboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxState")
            .field("total_messages", &self.total_messages)
            .field("total_bytes", &self.total_bytes)
            .finish_non_exhaustive()
    }
}

/// Every stripe, locked; index with [`MailboxState::stripe`].
struct AllStripes<'a>(Vec<MutexGuard<'a, Metas>>);

impl MailboxState {
    pub(crate) fn load(backend: &dyn Backend) -> Result<Self> {
        let state = MailboxState::default();
        let mut all = state.lock_all();
        scan_each(backend, Cf::MailboxMeta, &[], None, &mut |k, v| {
            let mailbox = keys::array::<32>("mailbox meta key", &k, 0)?;
            keys::expect_len("mailbox meta key", &k, 32)?;
            let meta = MailboxMeta::from_bytes(&v)?;
            state.adjust(MailboxMeta::default(), meta);
            all.0[state.stripe(&mailbox)].insert(mailbox, meta);
            Ok(())
        })?;
        drop(all);
        Ok(state)
    }

    fn stripe(&self, mailbox: &[u8; 32]) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write(mailbox);
        (h.finish() % STRIPES as u64) as usize
    }

    fn lock(&self, mailbox: &[u8; 32]) -> MutexGuard<'_, Metas> {
        lock(&self.stripes[self.stripe(mailbox)])
    }

    /// Lock every stripe, always in the same order (single-stripe holders never wait for a
    /// second one, so this cannot deadlock).
    fn lock_all(&self) -> AllStripes<'_> {
        AllStripes(self.stripes.iter().map(|m| lock(m)).collect())
    }

    fn get(&self, all: &AllStripes<'_>, mailbox: &[u8; 32]) -> Option<MailboxMeta> {
        all.0[self.stripe(mailbox)].get(mailbox).copied()
    }

    /// Apply a mailbox's change from `old` to `new` to the totals.
    fn adjust(&self, old: MailboxMeta, new: MailboxMeta) {
        let apply = |total: &AtomicU64, old: u64, new: u64| {
            if new >= old {
                total.fetch_add(new - old, Ordering::SeqCst);
            } else {
                // Saturating: totals are derived data and must never wrap.
                let _ = total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                    Some(t.saturating_sub(old - new))
                });
            }
        };
        apply(&self.total_messages, old.messages, new.messages);
        apply(&self.total_bytes, old.bytes, new.bytes);
    }

    /// Reserve `bytes` of the total budget, or report the usage that prevents it.
    fn reserve_bytes(&self, bytes: u64, limit: u64) -> std::result::Result<(), u64> {
        self.total_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&t| t <= limit)
            })
            .map(|_| ())
    }

    fn release_bytes(&self, bytes: u64) {
        let _ = self
            .total_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_sub(bytes))
            });
    }
}

/// `mailbox..` every key of the mailbox in a column family keyed `mailbox · ...`.
fn mailbox_bounds(mailbox: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    // No key is longer than 80 bytes, so 81 x 0xff is past all of them.
    (
        mailbox.to_vec(),
        prefix_end(mailbox).unwrap_or_else(|| vec![0xff; 81]),
    )
}

impl Store {
    /// Host `mailbox` on this relay. Idempotent: an existing mailbox keeps its contents.
    pub fn mailbox_register(&self, mailbox: &[u8; 32], now: u64) -> Result<()> {
        let state = &self.inner.mailboxes;
        let mut metas = state.lock(mailbox);
        if metas.contains_key(mailbox) {
            return Ok(());
        }
        let meta = MailboxMeta {
            registered_at: now,
            next_seq: 1,
            messages: 0,
            bytes: 0,
        };
        let mut batch = Batch::new();
        batch.put(Cf::MailboxMeta, *mailbox, meta.to_bytes());
        // Synced: the owner is told it is registered.
        self.write(batch, true)?;
        metas.insert(*mailbox, meta);
        Ok(())
    }

    /// Whether `mailbox` is hosted here.
    pub fn mailbox_is_registered(&self, mailbox: &[u8; 32]) -> Result<bool> {
        Ok(self.inner.mailboxes.lock(mailbox).contains_key(mailbox))
    }

    /// Stop hosting `mailbox` and delete everything it holds, atomically. Whether it was
    /// registered. Registering it again starts a new mailbox whose seqs restart at 1.
    pub fn mailbox_unregister(&self, mailbox: &[u8; 32]) -> Result<bool> {
        let state = &self.inner.mailboxes;
        let mut metas = state.lock(mailbox);
        let Some(meta) = metas.get(mailbox).copied() else {
            return Ok(false);
        };
        let (lo, hi) = mailbox_bounds(mailbox);
        let mut batch = Batch::new();
        // Expiry entries are ordered by time, not mailbox: find them through the index. The
        // batch is bounded by the per-mailbox message quota.
        scan_each(self.be(), Cf::MailboxIndex, &lo, Some(&hi), &mut |_, v| {
            let iv = MailboxIndexValue::decode(&v)?;
            batch.delete(
                Cf::MailboxExpiry,
                mailbox_expiry_key(iv.expires_at, mailbox, iv.seq),
            );
            Ok(())
        })?;
        batch.delete_range(Cf::MailboxIndex, lo.clone(), hi.clone());
        batch.delete_range(Cf::Mailboxes, lo, hi);
        batch.delete(Cf::MailboxMeta, *mailbox);
        self.write(batch, false)?;
        state.adjust(meta, MailboxMeta::default());
        metas.remove(mailbox);
        Ok(true)
    }

    /// Store an envelope in `mailbox` for `ttl_secs` (clamped to
    /// `StoreOptions::mailbox_max_ttl_secs`). A message id already in the mailbox is a
    /// duplicate: nothing is written and the stored seq is returned. Errors:
    /// [`StoreError::MailboxNotRegistered`], [`StoreError::QuotaExceeded`],
    /// [`StoreError::StorageFull`] (below the free-space reserve).
    ///
    /// Durable when it returns `Ok`: the write is fsynced (concurrent puts share the fsync),
    /// since a relay signs a custody receipt for it next.
    ///
    /// Safe to call concurrently: puts to one mailbox are serialised (seqs are committed in
    /// order, so a reader paging by seq never skips one), puts to different mailboxes run in
    /// parallel and the shared total budget is reserved atomically.
    pub fn mailbox_put(
        &self,
        mailbox: &[u8; 32],
        message_id: &[u8; 32],
        envelope: &[u8],
        now: u64,
        ttl_secs: u64,
    ) -> Result<PutOutcome> {
        let mut out = self.mailbox_put_many(mailbox, &[(message_id, envelope)], now, ttl_secs)?;
        out.pop()
            .ok_or_else(|| StoreError::InvalidInput("empty put".into()))
    }

    /// Store several envelopes in one atomic batch (faster than one put each). Quotas apply
    /// to the batch as a whole: if it does not fit, nothing is written. Outcomes are in input
    /// order; repeated ids within the batch are duplicates of the first.
    pub fn mailbox_put_many(
        &self,
        mailbox: &[u8; 32],
        items: &[(&[u8; 32], &[u8])],
        now: u64,
        ttl_secs: u64,
    ) -> Result<Vec<PutOutcome>> {
        let opts = &self.inner.opts;
        let state = &self.inner.mailboxes;
        let mut metas = state.lock(mailbox);
        let old = *metas.get(mailbox).ok_or(StoreError::MailboxNotRegistered)?;
        let expires_at = now.saturating_add(ttl_secs.min(opts.mailbox_max_ttl_secs));
        let mut meta = old;
        let mut batch = Batch::new();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut fresh: HashMap<&[u8; 32], PutOutcome> = HashMap::new();
        for &(message_id, envelope) in items {
            if let Some(o) = fresh.get(message_id) {
                outcomes.push(PutOutcome {
                    duplicate: true,
                    ..*o
                });
                continue;
            }
            let index_key = mailbox_index_key(mailbox, message_id);
            if let Some(v) = self.be().get(Cf::MailboxIndex, &index_key)? {
                let iv = MailboxIndexValue::decode(&v)?;
                outcomes.push(PutOutcome {
                    seq: iv.seq,
                    duplicate: true,
                    expires_at: iv.expires_at,
                });
                continue;
            }
            let size = envelope.len() as u64;
            let seq = meta.next_seq;
            meta.next_seq = seq
                .checked_add(1)
                .ok_or_else(|| StoreError::InvalidInput("mailbox sequence exhausted".into()))?;
            meta.messages += 1;
            meta.bytes = meta.bytes.saturating_add(size);
            batch.put(
                Cf::Mailboxes,
                mailbox_msg_key(mailbox, seq),
                StoredEnvelope::encode_value(message_id, envelope, now, expires_at),
            );
            batch.put(
                Cf::MailboxIndex,
                index_key,
                MailboxIndexValue {
                    seq,
                    expires_at,
                    size,
                }
                .encode(),
            );
            batch.put(
                Cf::MailboxExpiry,
                mailbox_expiry_key(expires_at, mailbox, seq),
                concat(&[message_id, &size.to_be_bytes()]),
            );
            let outcome = PutOutcome {
                seq,
                duplicate: false,
                expires_at,
            };
            if items.len() > 1 {
                fresh.insert(message_id, outcome);
            }
            outcomes.push(outcome);
        }
        if batch.is_empty() {
            return Ok(outcomes);
        }
        let added_bytes = meta.bytes - old.bytes;
        self.ensure_space(batch.bytes())?;
        let checks = [
            (
                Quota::MailboxMessages,
                opts.mailbox_max_messages,
                old.messages,
                meta.messages - old.messages,
            ),
            (
                Quota::MailboxBytes,
                opts.mailbox_max_bytes,
                old.bytes,
                added_bytes,
            ),
        ];
        for (quota, limit, used, requested) in checks {
            if used.saturating_add(requested) > limit {
                return Err(StoreError::QuotaExceeded {
                    quota,
                    limit,
                    used,
                    requested,
                });
            }
        }
        // The total budget is shared by all stripes: reserve atomically, give back on failure.
        state
            .reserve_bytes(added_bytes, opts.total_max_bytes)
            .map_err(|used| StoreError::QuotaExceeded {
                quota: Quota::TotalBytes,
                limit: opts.total_max_bytes,
                used,
                requested: added_bytes,
            })?;
        batch.put(Cf::MailboxMeta, *mailbox, meta.to_bytes());
        // Synced before it returns: the relay signs a custody receipt for it next.
        if let Err(e) = self.write(batch, true) {
            state.release_bytes(added_bytes);
            return Err(e);
        }
        state
            .total_messages
            .fetch_add(meta.messages - old.messages, Ordering::SeqCst);
        metas.insert(*mailbox, meta);
        Ok(outcomes)
    }

    /// Up to `limit` envelopes of `mailbox` with seq greater than `after_seq`, in seq order.
    /// Expired envelopes are returned until [`purge_expired`](Store::purge_expired) removes
    /// them; callers may filter on `expires_at`.
    pub fn mailbox_page(
        &self,
        mailbox: &[u8; 32],
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>> {
        let first = match after_seq {
            None => 0,
            Some(s) => match s.checked_add(1) {
                Some(f) => f,
                None => return Ok(Vec::new()),
            },
        };
        let upper = prefix_end(mailbox);
        self.be()
            .scan(
                Cf::Mailboxes,
                &mailbox_msg_key(mailbox, first),
                upper.as_deref(),
                limit,
                false,
            )?
            .into_iter()
            .map(|(k, v)| {
                keys::expect_len("mailbox key", &k, 40)?;
                StoredEnvelope::decode_value(keys::u64_at("mailbox key", &k, 32)?, &v)
            })
            .collect()
    }

    /// Delete envelopes by message id (the recipient acknowledged them). Unknown ids are
    /// ignored; returns how many were deleted.
    pub fn mailbox_delete(&self, mailbox: &[u8; 32], message_ids: &[[u8; 32]]) -> Result<usize> {
        let state = &self.inner.mailboxes;
        let mut metas = state.lock(mailbox);
        let Some(old) = metas.get(mailbox).copied() else {
            return Ok(0);
        };
        let mut meta = old;
        let mut batch = Batch::new();
        let mut deleted = 0;
        let mut seqs = Vec::new();
        let mut done = HashSet::new();
        for id in message_ids {
            if !done.insert(id) {
                continue;
            }
            let index_key = mailbox_index_key(mailbox, id);
            let Some(v) = self.be().get(Cf::MailboxIndex, &index_key)? else {
                continue;
            };
            let iv = MailboxIndexValue::decode(&v)?;
            batch.delete(Cf::Mailboxes, mailbox_msg_key(mailbox, iv.seq));
            batch.delete(
                Cf::MailboxExpiry,
                mailbox_expiry_key(iv.expires_at, mailbox, iv.seq),
            );
            batch.delete(Cf::MailboxIndex, index_key);
            meta.messages = meta.messages.saturating_sub(1);
            meta.bytes = meta.bytes.saturating_sub(iv.size);
            seqs.push(iv.seq);
            deleted += 1;
        }
        if deleted > 0 {
            batch.put(Cf::MailboxMeta, *mailbox, meta.to_bytes());
            self.write(batch, false)?;
            if let (Some(lo), Some(hi)) = (seqs.iter().min(), seqs.iter().max()) {
                self.inner.space.deleted(mailbox, *lo, *hi);
            }
            state.adjust(old, meta);
            metas.insert(*mailbox, meta);
        }
        Ok(deleted)
    }

    /// Counters of one mailbox ([`StoreError::MailboxNotRegistered`] if not hosted).
    pub fn mailbox_usage(&self, mailbox: &[u8; 32]) -> Result<MailboxUsage> {
        self.inner
            .mailboxes
            .lock(mailbox)
            .get(mailbox)
            .map(usage)
            .ok_or(StoreError::MailboxNotRegistered)
    }

    /// Envelope bytes held in all mailboxes (no lock taken).
    pub(crate) fn mailbox_payload_bytes(&self) -> u64 {
        self.inner.mailboxes.total_bytes.load(Ordering::SeqCst)
    }

    /// Counters of all mailboxes.
    pub fn mailbox_stats(&self) -> Result<MailboxStats> {
        let state = &self.inner.mailboxes;
        // All stripes locked: the totals match the per-mailbox figures.
        let all = state.lock_all();
        let mut per_mailbox: Vec<_> = all
            .0
            .iter()
            .flat_map(|metas| metas.iter().map(|(k, m)| (*k, usage(m))))
            .collect();
        per_mailbox.sort_unstable_by_key(|(k, _)| *k);
        Ok(MailboxStats {
            mailboxes: per_mailbox.len() as u64,
            stored_messages: state.total_messages.load(Ordering::SeqCst),
            stored_bytes: state.total_bytes.load(Ordering::SeqCst),
            per_mailbox,
        })
    }

    /// Delete mailbox envelopes and seen ids whose `expires_at <= now` (unix seconds), then
    /// (if `compact_after_purge`) compact the purged key ranges so the disk space is freed.
    ///
    /// Envelopes of one mailbox expire roughly in seq order, so consecutive seqs are removed
    /// with range deletes. Work is done in chunks so puts are not blocked for long.
    pub fn purge_expired(&self, now: u64) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let spans = self.purge_mailboxes(now, &mut report)?;
        report.seen_ids = self.purge_seen(now)?;
        if self.inner.space.is_low() {
            // A compaction may not fit now: `reclaim_space` does it when it does.
            for (mailbox, (lo, hi)) in &spans {
                self.inner.space.deleted(mailbox, *lo, *hi);
            }
        } else if self.inner.opts.compact_after_purge {
            self.compact_purged(&spans, now, report.seen_ids > 0)?;
        }
        Ok(report)
    }

    /// Returns, per mailbox touched, the lowest and highest seq purged.
    fn purge_mailboxes(
        &self,
        now: u64,
        report: &mut PurgeReport,
    ) -> Result<BTreeMap<[u8; 32], (u64, u64)>> {
        const WHAT: &str = "mailbox expiry entry";
        let upper = now.checked_add(1).map(|n| n.to_be_bytes().to_vec());
        let mut spans: BTreeMap<[u8; 32], (u64, u64)> = BTreeMap::new();
        let mut from = Vec::new();
        loop {
            let state = &self.inner.mailboxes;
            let mut all = state.lock_all();
            let rows = self.be().scan(
                Cf::MailboxExpiry,
                &from,
                upper.as_deref(),
                PURGE_CHUNK,
                false,
            )?;
            let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) else {
                break;
            };
            let mut batch = Batch::new();
            batch.delete_range(Cf::MailboxExpiry, first.clone(), successor(last));
            from = successor(last);
            let full = rows.len() == PURGE_CHUNK;

            let mut per_mailbox: BTreeMap<[u8; 32], (Vec<u64>, u64)> = BTreeMap::new();
            for (k, v) in &rows {
                keys::expect_len(WHAT, k, 48)?;
                let mailbox = keys::array::<32>(WHAT, k, 8)?;
                let seq = keys::u64_at(WHAT, k, 40)?;
                keys::expect_len(WHAT, v, 40)?;
                let message_id = keys::array::<32>(WHAT, v, 0)?;
                let size = keys::u64_at(WHAT, v, 32)?;
                batch.delete(Cf::MailboxIndex, mailbox_index_key(&mailbox, &message_id));
                let e = per_mailbox.entry(mailbox).or_default();
                e.0.push(seq);
                e.1 += size;
            }
            let mut updates = Vec::new();
            for (mailbox, (mut seqs, bytes)) in per_mailbox {
                seqs.sort_unstable();
                delete_seq_runs(&mut batch, &mailbox, &seqs);
                let (lo, hi) = (seqs[0], seqs[seqs.len() - 1]);
                let span = spans.entry(mailbox).or_insert((lo, hi));
                *span = (span.0.min(lo), span.1.max(hi));
                report.mailbox_messages += seqs.len() as u64;
                report.mailbox_bytes += bytes;
                if let Some(old) = state.get(&all, &mailbox) {
                    let mut meta = old;
                    meta.messages = meta.messages.saturating_sub(seqs.len() as u64);
                    meta.bytes = meta.bytes.saturating_sub(bytes);
                    batch.put(Cf::MailboxMeta, mailbox, meta.to_bytes());
                    updates.push((mailbox, old, meta));
                }
            }
            self.write(batch, false)?;
            for (mailbox, old, meta) in updates {
                state.adjust(old, meta);
                all.0[state.stripe(&mailbox)].insert(mailbox, meta);
            }
            drop(all);
            if !full {
                break;
            }
        }
        Ok(spans)
    }

    /// Delete the seen ids whose `expires_at <= now` (what [`Store::purge_expired`] does
    /// besides mailboxes, without compacting): for personal nodes, which host no mailboxes.
    /// Returns how many were deleted.
    pub fn purge_seen(&self, now: u64) -> Result<u64> {
        const WHAT: &str = "seen expiry entry";
        let lower = vec![SEEN_EXPIRY];
        let upper = match now.checked_add(1) {
            Some(n) => concat(&[&[SEEN_EXPIRY], &n.to_be_bytes()]),
            None => vec![SEEN_EXPIRY + 1],
        };
        let mut from = lower;
        let mut purged = 0;
        loop {
            let _guard = lock(&self.inner.txn_lock);
            let rows = self
                .be()
                .scan(Cf::Seen, &from, Some(&upper), PURGE_CHUNK, false)?;
            let (Some((first, _)), Some((last, _))) = (rows.first(), rows.last()) else {
                break;
            };
            let mut batch = Batch::new();
            batch.delete_range(Cf::Seen, first.clone(), successor(last));
            from = successor(last);
            for (k, _) in &rows {
                keys::expect_len(WHAT, k, 57)?;
                let peer = keys::array::<32>(WHAT, k, 9)?;
                let inner_id = keys::array::<16>(WHAT, k, 41)?;
                batch.delete(Cf::Seen, seen_key(&peer, &inner_id));
            }
            self.write(batch, false)?;
            purged += rows.len() as u64;
            if rows.len() < PURGE_CHUNK {
                break;
            }
        }
        Ok(purged)
    }

    fn compact_purged(
        &self,
        spans: &BTreeMap<[u8; 32], (u64, u64)>,
        now: u64,
        seen: bool,
    ) -> Result<()> {
        if !spans.is_empty() {
            let spans: Vec<_> = spans.iter().collect();
            let group = spans.len().div_ceil(MAX_COMPACTIONS);
            for g in spans.chunks(group) {
                let (Some((first_mb, (lo, _))), Some((last_mb, (_, hi)))) = (g.first(), g.last())
                else {
                    continue;
                };
                let start = mailbox_msg_key(first_mb, *lo);
                let end = successor(&mailbox_msg_key(last_mb, *hi));
                self.be()
                    .compact_range(Cf::Mailboxes, Some(&start), Some(&end))?;
                let (start, _) = mailbox_bounds(first_mb);
                let (_, end) = mailbox_bounds(last_mb);
                self.be()
                    .compact_range(Cf::MailboxIndex, Some(&start), Some(&end))?;
            }
            let end = now.checked_add(1).map(|n| n.to_be_bytes());
            self.be()
                .compact_range(Cf::MailboxExpiry, None, end.as_ref().map(|e| &e[..]))?;
        }
        if seen {
            self.be().compact_range(Cf::Seen, None, None)?;
        }
        Ok(())
    }
}

/// Delete the envelopes with the given (sorted, distinct) seqs, one range delete per run of
/// consecutive seqs.
fn delete_seq_runs(batch: &mut Batch, mailbox: &[u8; 32], seqs: &[u64]) {
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        let end = seqs[j];
        if start == end {
            batch.delete(Cf::Mailboxes, mailbox_msg_key(mailbox, start));
        } else {
            batch.delete_range(
                Cf::Mailboxes,
                mailbox_msg_key(mailbox, start),
                successor(&mailbox_msg_key(mailbox, end)),
            );
        }
        i = j + 1;
    }
}
