//! In-memory backend: one `BTreeMap` per column family behind one lock.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError, RwLock};

use super::{Backend, Batch, BatchOp, Cf, DiskSpace, KeyValue, StorageStats};
use crate::Result;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Volatile backend for tests, the simulator and ephemeral nodes. A single lock over all
/// column families makes every [`Batch`] atomic and every read see whole batches.
///
/// For tests of durability it can also play what a power cut leaves of a database with a
/// write-ahead log ([`MemBackend::with_power_loss`]), and report any disk space
/// ([`MemBackend::set_disk_space`]).
pub struct MemBackend {
    maps: RwLock<Vec<Map>>,
    /// With power-loss tracking: what survives a power cut.
    durable: Option<Mutex<Durable>>,
    disk_space: Mutex<Option<DiskSpace>>,
}

/// A write-ahead log's view: the writes up to the last synced one are on disk, later ones
/// only in the page cache.
struct Durable {
    maps: Vec<Map>,
    unsynced: Vec<Batch>,
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
        Self::with_maps(vec![Map::new(); Cf::ALL.len()], false)
    }

    /// An empty store that remembers which writes a power cut would lose: those after the
    /// last [`Backend::write_synced`]. See [`MemBackend::power_cut`].
    pub fn with_power_loss() -> Self {
        Self::with_maps(vec![Map::new(); Cf::ALL.len()], true)
    }

    fn with_maps(maps: Vec<Map>, track: bool) -> Self {
        Self {
            durable: track.then(|| {
                Mutex::new(Durable {
                    maps: maps.clone(),
                    unsynced: Vec::new(),
                })
            }),
            maps: RwLock::new(maps),
            disk_space: Mutex::new(None),
        }
    }

    /// What a power cut leaves: a new backend holding the writes up to the last synced one
    /// (all of them on a backend without power-loss tracking). It tracks power loss too.
    pub fn power_cut(&self) -> MemBackend {
        let maps = match &self.durable {
            Some(d) => d
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .maps
                .clone(),
            None => self
                .maps
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        Self::with_maps(maps, true)
    }

    /// What [`Backend::disk_space`] reports from now on (`None`, the default: no disk).
    pub fn set_disk_space(&self, space: Option<DiskSpace>) {
        *self
            .disk_space
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = space;
    }

    /// [`Backend::write`] without the `Result`: applying to maps cannot fail.
    pub(crate) fn apply(&self, batch: Batch) {
        self.apply_as(batch, true);
    }

    fn apply_as(&self, batch: Batch, synced: bool) {
        // Held across both copies so that they see the writes in the same order.
        let mut durable = self
            .durable
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(d) = durable.as_deref_mut() {
            d.unsynced.push(batch.clone());
            if synced {
                for b in std::mem::take(&mut d.unsynced) {
                    apply_to(&mut d.maps, b);
                }
            }
        }
        // A panic cannot happen half-way through `apply_to` (no user code runs), so a
        // poisoned lock still guards consistent maps.
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        apply_to(&mut maps, batch);
    }
}

fn apply_to(maps: &mut [Map], batch: Batch) {
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

impl Backend for MemBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        Ok(maps[cf.index()].get(key).cloned())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.apply_as(batch, false);
        Ok(())
    }

    fn write_synced(&self, batch: Batch) -> Result<()> {
        self.apply_as(batch, true);
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

    fn disk_space(&self) -> Result<Option<DiskSpace>> {
        Ok(*self
            .disk_space
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}
