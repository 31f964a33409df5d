//! The free-space reserve. Writes that grow the database with what others send (mailbox
//! envelopes, inbound messages) are refused while less than the reserve is free, so that what
//! frees space — deletes, memtable flushes, compactions — has room: a RocksDB that runs out
//! of space while writing its log or flushing stops taking writes, deletes included, until
//! space returns (it then resumes by itself, see `RocksBackend::open`). Deletes only free
//! space once flushed and compacted: [`Store::reclaim_space`] does it when space is short,
//! and only when the compaction fits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{Batch, Cf, DiskSpace};
use crate::keys::{mailbox_msg_key, prefix_end, successor};
use crate::store::{Store, lock, now_ms};
use crate::{Result, StoreError};

/// The disk counts as full from this much above the reserve: more than any one write the
/// reserve refuses (a relay's store batch is at most 528 KiB), so that a refused write always
/// shows as a full disk, and the space its refusal waits for is then reclaimed.
const FULL_MARGIN: u64 = 1 << 20;

/// Meta key of the small write that tells whether the disk takes writes again.
const PROBE_KEY: &[u8] = b"store.space_probe";

/// Where the database's disk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceStatus {
    /// Free bytes on its filesystem (`None`: the store is in memory).
    pub free_bytes: Option<u64>,
    /// What writes of others' data must leave free.
    pub reserve_bytes: u64,
    /// Below the reserve (or less than 1 MiB above it), or the last write failed for lack of
    /// space.
    pub full: bool,
}

#[derive(Default)]
pub(crate) struct SpaceState {
    /// Below the reserve (give or take [`FULL_MARGIN`]) at the last look.
    low: AtomicBool,
    /// The last write failed for lack of space (RocksDB takes none until it has recovered).
    write_failed: AtomicBool,
    /// Per mailbox, the lowest and highest seq deleted since the last reclaim: the ranges that
    /// [`Store::reclaim_space`] compacts if space is short. At most one entry per mailbox.
    deleted: Mutex<BTreeMap<[u8; 32], (u64, u64)>>,
}

impl SpaceState {
    pub(crate) fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Remembers that seqs `lo..=hi` of `mailbox` were deleted, for the next reclaim.
    pub(crate) fn deleted(&self, mailbox: &[u8; 32], lo: u64, hi: u64) {
        let mut deleted = lock(&self.deleted);
        let span = deleted.entry(*mailbox).or_insert((lo, hi));
        *span = (span.0.min(lo), span.1.max(hi));
    }
}

impl Store {
    /// Refuses ([`StoreError::StorageFull`]) a write of about `incoming` bytes of others' data
    /// that would leave less than the reserve free. A `statvfs` call: cheap enough for every
    /// such write. (After a write that found no space, writes are still tried: RocksDB refuses
    /// them at once while it is stopped, and the first that passes shows it has recovered.)
    pub fn ensure_space(&self, incoming: u64) -> Result<()> {
        let Some((disk, reserve)) = self.look()? else {
            return Ok(());
        };
        if reserve > 0 && disk.free_bytes < reserve.saturating_add(incoming) {
            return Err(StoreError::StorageFull(format!(
                "{} bytes free, {reserve} kept in reserve for deletes and compactions",
                disk.free_bytes
            )));
        }
        Ok(())
    }

    /// A fresh look at the disk (see [`SpaceStatus`]).
    pub fn space_status(&self) -> Result<SpaceStatus> {
        let write_failed = self.inner.space.write_failed.load(Ordering::Relaxed);
        Ok(match self.look()? {
            Some((disk, reserve)) => SpaceStatus {
                free_bytes: Some(disk.free_bytes),
                reserve_bytes: reserve,
                full: self.inner.space.is_low() || write_failed,
            },
            None => SpaceStatus {
                free_bytes: None,
                reserve_bytes: 0,
                full: write_failed,
            },
        })
    }

    /// Whether the disk was full at the last look or write: no system call, for hot paths
    /// that refuse work early. [`Store::space_status`] looks again.
    pub fn is_full(&self) -> bool {
        let space = &self.inner.space;
        space.is_low() || space.write_failed.load(Ordering::Relaxed)
    }

    /// The disk and the reserve on it (`None` in memory); remembers whether it is below.
    fn look(&self) -> Result<Option<(DiskSpace, u64)>> {
        let Some(disk) = self.be().disk_space()? else {
            return Ok(None);
        };
        let reserve = self.inner.opts.disk_reserve_bytes.min(disk.total_bytes / 4);
        let low = reserve > 0 && disk.free_bytes < reserve.saturating_add(FULL_MARGIN);
        self.inner.space.low.store(low, Ordering::Relaxed);
        Ok(Some((disk, reserve)))
    }

    /// Writes `batch`, fsynced first if `synced`, keeping track of writes the disk refused.
    pub(crate) fn write(&self, batch: Batch, synced: bool) -> Result<()> {
        let result = if synced {
            self.be().write_synced(batch)
        } else {
            self.be().write(batch)
        };
        let no_space = matches!(result, Err(StoreError::StorageFull(_)));
        self.inner
            .space
            .write_failed
            .store(no_space, Ordering::Relaxed);
        result
    }

    /// Turns recent deletes into free space when space is short (less than twice the reserve
    /// free), once it fits: flushes the memtables (their write-ahead log goes with them, and
    /// deleted entries are not written out) and compacts the deleted mailbox ranges. A
    /// compaction writes out the live data of the files it reads before deleting them, so it
    /// waits until what the mailboxes still hold, twice over, fits in the free space beyond
    /// half the reserve; until then, acks and expiry shrink it. With space to spare,
    /// RocksDB's own compactions do it in their time. After a write that found no space,
    /// first tries a small write, to notice that RocksDB has recovered. Returns the status
    /// afterwards. Cheap when there is nothing to do: meant to be called every second or so.
    pub fn reclaim_space(&self) -> Result<SpaceStatus> {
        let space = &self.inner.space;
        if space.write_failed.load(Ordering::Relaxed) {
            let mut probe = Batch::new();
            probe.put(
                Cf::Meta,
                PROBE_KEY.to_vec(),
                now_ms().to_be_bytes().to_vec(),
            );
            if self.write(probe, true).is_err() {
                return self.space_status();
            }
        }
        if lock(&space.deleted).is_empty() {
            return self.space_status();
        }
        let status = self.space_status()?;
        let Some(free) = status.free_bytes else {
            lock(&space.deleted).clear();
            return Ok(status);
        };
        let reserve = status.reserve_bytes;
        if free >= reserve.saturating_mul(2).saturating_add(FULL_MARGIN) {
            lock(&space.deleted).clear();
            return Ok(status);
        }
        let needed = self
            .mailbox_payload_bytes()
            .saturating_mul(2)
            .saturating_add(self.be().stats()?.memtable_bytes)
            .saturating_add(reserve / 2);
        if free <= needed {
            return Ok(status);
        }
        self.be().flush()?;
        let spans = std::mem::take(&mut *lock(&space.deleted));
        for (mailbox, (lo, hi)) in &spans {
            let start = mailbox_msg_key(mailbox, *lo);
            let end = successor(&mailbox_msg_key(mailbox, *hi));
            self.be()
                .compact_range(Cf::Mailboxes, Some(&start), Some(&end))?;
            let end = prefix_end(mailbox);
            self.be()
                .compact_range(Cf::MailboxIndex, Some(mailbox), end.as_deref())?;
        }
        // Expiry entries are ordered by time, not mailbox, and small: all of them.
        self.be().compact_range(Cf::MailboxExpiry, None, None)?;
        self.space_status()
    }
}
