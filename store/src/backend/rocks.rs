//! RocksDB backend: one column family per [`Cf`].

use std::fmt;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    FlushOptions, Options, ReadOptions, WriteBatch, WriteOptions, properties,
};

use super::{Backend, Batch, BatchOp, Cf, KeyValue, StorageStats};
use crate::{Result, StoreError};

/// Shared block cache for all column families. Small: the hot read paths (mailbox pages,
/// recent messages) are sequential and the OS page cache does the rest.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Cap on memtable memory across column families; keeps an idle personal node small.
const DB_WRITE_BUFFER_BYTES: usize = 128 << 20;
/// WAL size that forces flushing rarely-written column families, so old WAL files can go.
const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;

/// RocksDB on disk.
pub struct RocksBackend {
    db: DB,
    write_opts: WriteOptions,
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
    /// `sync_writes`: fsync the WAL on every write. Without it a committed write survives a
    /// process crash (it is in the OS page cache) but may be lost on power failure or kernel
    /// crash; with it, writes cost a disk flush each (~100x slower on typical SSDs).
    pub fn open(path: &Path, sync_writes: bool) -> Result<Self> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        db_opts.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_compression_type(DBCompressionType::None);

        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut descriptors: Vec<ColumnFamilyDescriptor> = Cf::ALL
            .iter()
            .map(|&cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf, &cache)))
            .collect();
        // Column families created by a newer version must still be opened (RocksDB refuses
        // otherwise) so that the schema check can report the version mismatch clearly.
        if let Ok(existing) = DB::list_cf(&db_opts, path) {
            for name in existing {
                if name != "default" && !Cf::ALL.iter().any(|cf| cf.name() == name) {
                    descriptors.push(ColumnFamilyDescriptor::new(name, Options::default()));
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(sync_writes);
        Ok(Self {
            db,
            write_opts,
            path: path.to_path_buf(),
        })
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
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

fn cf_options(cf: Cf, cache: &Cache) -> Options {
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
    opts.set_write_buffer_size(write_buffer);
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
        Ok(self.db.write_opt(wb, &self.write_opts)?)
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
}
