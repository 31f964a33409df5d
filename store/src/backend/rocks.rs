//! RocksDB backend: one column family per [`Cf`].

use std::fmt;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    FlushOptions, Options, ReadOptions, WriteBatch, WriteOptions, properties,
};

use super::{Backend, Batch, BatchOp, Cf, DiskSpace, KeyValue, StorageStats};
use crate::{Result, StoreError};

/// Shared block cache for all column families. Small: the hot read paths (mailbox pages,
/// recent messages) are sequential and the OS page cache does the rest.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Cap on memtable memory across column families; keeps an idle personal node small.
const DB_WRITE_BUFFER_BYTES: usize = 128 << 20;
/// WAL size that forces flushing rarely-written column families, so old WAL files can go.
const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;
/// Smallest memtable budget, however small the filesystem.
const MIN_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// RocksDB on disk.
pub struct RocksBackend {
    db: DB,
    write_opts: WriteOptions,
    synced_opts: WriteOptions,
    path: PathBuf,
}

impl fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RocksBackend {
    /// Open or create the database in directory `path`.
    ///
    /// `sync_writes`: fsync the WAL on every write, not only on [`Backend::write_synced`].
    /// Without it a plain write survives a process crash (it is in the OS page cache) but may
    /// be lost on power failure or kernel crash, until a later synced write.
    ///
    /// On a filesystem under 1 GiB, memtables (and so the write-ahead log, which holds what
    /// they hold) are kept to an eighth of it: a flush must always fit in the free-space
    /// reserve (see `StoreOptions::disk_reserve_bytes`), or RocksDB stops taking writes. If
    /// it does run out of space (something else filled the disk), it stops taking writes and
    /// its default `SstFileManager` checks every 5 s, resuming once the largest write buffer
    /// fits again: small write buffers make that soon.
    pub fn open(path: &Path, sync_writes: bool) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let memtables = match disk_space(path) {
            Some(space) => usize::try_from(space.total_bytes / 8)
                .unwrap_or(usize::MAX)
                .clamp(MIN_WRITE_BUFFER_BYTES, DB_WRITE_BUFFER_BYTES),
            None => DB_WRITE_BUFFER_BYTES,
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES.min(memtables as u64));
        db_opts.set_db_write_buffer_size(memtables);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_compression_type(DBCompressionType::None);

        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cf_buffer = (memtables / 2).max(MIN_WRITE_BUFFER_BYTES);
        let mut descriptors: Vec<ColumnFamilyDescriptor> = Cf::ALL
            .iter()
            .map(|&cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, &cache, cf_buffer)))
            .collect();
        // Unused, but always open, and RocksDB sizes its recovery from a full disk by the
        // largest write buffer of any column family.
        descriptors.push(ColumnFamilyDescriptor::new(
            "default",
            plain_cf_options(cf_buffer),
        ));
        // Column families created by a newer version must still be opened (RocksDB refuses
        // otherwise) so that the schema check can report the version mismatch clearly.
        if let Ok(existing) = DB::list_cf(&db_opts, path) {
            for name in existing {
                if name != "default" && !Cf::ALL.iter().any(|cf| cf.name() == name) {
                    descriptors.push(ColumnFamilyDescriptor::new(
                        name,
                        plain_cf_options(cf_buffer),
                    ));
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(sync_writes);
        let mut synced_opts = WriteOptions::default();
        synced_opts.set_sync(true);
        Ok(Self {
            db,
            write_opts,
            synced_opts,
            path: path.to_path_buf(),
        })
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_batch(&self, batch: Batch) -> Result<WriteBatch> {
        let mut wb = WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                BatchOp::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                BatchOp::DeleteRange { cf, from, to } => {
                    if from < to {
                        wb.delete_range_cf(self.cf(cf)?, from, to);
                    }
                }
            }
        }
        Ok(wb)
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StoreError::Corrupt {
                what: "column family",
                reason: format!("{} is missing", cf.name()),
            })
    }
}

/// Free and total bytes of the filesystem holding `path`.
#[cfg(unix)]
fn disk_space(path: &Path) -> Option<DiskSpace> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(DiskSpace {
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

#[cfg(not(unix))]
fn disk_space(_path: &Path) -> Option<DiskSpace> {
    None
}

/// RocksDB says "no space" for ENOSPC and for its own space limit; either way the disk is
/// full, which callers must tell apart from other failures (it passes when space returns).
fn write_error(e: rocksdb::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("No space left on device") || text.contains("Space limit") {
        StoreError::StorageFull(text)
    } else {
        StoreError::Rocks(e)
    }
}

fn plain_cf_options(write_buffer: usize) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(write_buffer.min(4 << 20));
    opts
}

fn cf_options(cf: Cf, cache: &Cache, max_write_buffer: usize) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Point lookups (dedupe, id -> key) mostly miss: bloom filters spare the disk reads.
    table.set_bloom_filter(10.0, false);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    // Payloads are ciphertext and keys are random ids: compression would only burn CPU.
    opts.set_compression_type(DBCompressionType::None);
    opts.set_bottommost_compression_type(DBCompressionType::None);
    opts.set_level_compaction_dynamic_level_bytes(true);
    let write_buffer = match cf {
        Cf::Mailboxes => 64 << 20,
        Cf::MailboxIndex | Cf::MailboxExpiry => 16 << 20,
        _ => 4 << 20,
    };
    opts.set_write_buffer_size(write_buffer.min(max_write_buffer));
    if matches!(
        cf,
        Cf::Mailboxes | Cf::MailboxIndex | Cf::MailboxExpiry | Cf::Seen
    ) {
        // Retention deletes in bulk; have SSTs dense with tombstones compacted promptly.
        opts.add_compact_on_deletion_collector_factory(16_384, 8_192, 0.5);
    }
    opts
}

impl Backend for RocksBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let handle = self.cf(cf)?;
        self.db
            .batched_multi_get_cf(handle, keys, false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.db
            .write_opt(self.write_batch(batch)?, &self.write_opts)
            .map_err(write_error)
    }

    fn write_synced(&self, batch: Batch) -> Result<()> {
        self.db
            .write_opt(self.write_batch(batch)?, &self.synced_opts)
            .map_err(write_error)
    }

    fn scan(
        &self,
        cf: Cf,
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>> {
        if limit == 0 || upper.is_some_and(|u| u <= lower) {
            return Ok(Vec::new());
        }
        let mut ro = ReadOptions::default();
        // Mailbox envelopes are read once (then acked and deleted): caching their blocks would
        // only evict hot index and filter blocks, and costs cache-lock traffic per page.
        ro.fill_cache(cf != Cf::Mailboxes);
        ro.set_iterate_lower_bound(lower.to_vec());
        if let Some(upper) = upper {
            ro.set_iterate_upper_bound(upper.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        if reverse {
            it.seek_to_last();
        } else {
            it.seek(lower);
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            out.push((k.to_vec(), v.to_vec()));
            if reverse {
                it.prev();
            } else {
                it.next();
            }
        }
        it.status()?;
        Ok(out)
    }

    fn compact_range(&self, cf: Cf, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.db.compact_range_cf(self.cf(cf)?, start, end);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let handles = Cf::ALL
            .iter()
            .map(|&cf| self.cf(cf))
            .collect::<Result<Vec<_>>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&handles, &fo)?;
        Ok(())
    }

    fn stats(&self) -> Result<StorageStats> {
        let mut stats = StorageStats::default();
        for &cf in &Cf::ALL {
            let handle = self.cf(cf)?;
            stats.live_sst_bytes += self
                .db
                .property_int_value_cf(handle, properties::LIVE_SST_FILES_SIZE)?
                .unwrap_or(0);
            stats.memtable_bytes += self
                .db
                .property_int_value_cf(handle, properties::SIZE_ALL_MEM_TABLES)?
                .unwrap_or(0);
        }
        for entry in std::fs::read_dir(&self.path)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                stats.disk_bytes += meta.len();
            }
        }
        Ok(stats)
    }

    fn disk_space(&self) -> Result<Option<DiskSpace>> {
        Ok(disk_space(&self.path))
    }
}
