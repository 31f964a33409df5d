//! In-memory backend: one `BTreeMap` per column family behind one lock.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use super::{Backend, Batch, BatchOp, Cf, KeyValue, StorageStats};
use crate::Result;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Volatile backend for tests, the simulator and ephemeral nodes. A single lock over all
/// column families makes every [`Batch`] atomic and every read see whole batches.
pub struct MemBackend {
    maps: RwLock<Vec<Map>>,
}

impl Default for MemBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemBackend").finish_non_exhaustive()
    }
}

impl MemBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            maps: RwLock::new(vec![Map::new(); Cf::ALL.len()]),
        }
    }

    /// [`Backend::write`] without the `Result`: applying to maps cannot fail.
    pub(crate) fn apply(&self, batch: Batch) {
        // A panic cannot happen half-way through the loop below (no user code runs), so a
        // poisoned lock still guards consistent maps.
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { cf, key, value } => {
                    maps[cf.index()].insert(key, value);
                }
                BatchOp::Delete { cf, key } => {
                    maps[cf.index()].remove(&key);
                }
                BatchOp::DeleteRange { cf, from, to } => {
                    if from < to {
                        let map = &mut maps[cf.index()];
                        let mut tail = map.split_off(&from);
                        let mut rest = tail.split_off(&to);
                        map.append(&mut rest);
                    }
                }
            }
        }
    }
}

impl Backend for MemBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        Ok(maps[cf.index()].get(key).cloned())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.apply(batch);
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>> {
        if upper.is_some_and(|u| u <= lower) {
            return Ok(Vec::new());
        }
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        let range = maps[cf.index()].range::<[u8], _>((
            Bound::Included(lower),
            upper.map_or(Bound::Unbounded, Bound::Excluded),
        ));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            range.rev().take(limit).map(clone).collect()
        } else {
            range.take(limit).map(clone).collect()
        })
    }

    fn compact_range(&self, _cf: Cf, _start: Option<&[u8]>, _end: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Result<StorageStats> {
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        let bytes: usize = maps
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let bytes = bytes as u64;
        Ok(StorageStats {
            disk_bytes: bytes,
            live_sst_bytes: bytes,
            memtable_bytes: 0,
        })
    }
}
