//! On a relay: files senders leave for the mailboxes it hosts, when the recipient was offline.
//! Each is a directory `files/held/<root>/` with the chunk list, one file per chunk and a
//! `meta` file (the mailbox and the expiry). A list is taken only if it hashes to its root and
//! a chunk only if it hashes to its id in that list; each mailbox has a byte quota, each file
//! a retention, and the recipient's `release` (once it holds the file) deletes it at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokenim_crypto::file::{ChunkList, chunk_id};

use super::HoldLimits;

struct Entry {
    mailbox: [u8; 32],
    bytes: u64,
    expires_at: u64,
    list: Option<ChunkList>,
}

pub(super) struct Held {
    dir: PathBuf,
    limits: HoldLimits,
    state: Mutex<HashMap<[u8; 32], Entry>>,
}

fn root_dir(dir: &Path, root: &[u8; 32]) -> PathBuf {
    dir.join(hex::encode(root))
}

impl Held {
    /// Loads what an earlier run held (files past their retention go).
    pub(super) fn load(dir: PathBuf, limits: HoldLimits, now: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut files = HashMap::new();
        for d in std::fs::read_dir(&dir)?.flatten() {
            let path = d.path();
            let parsed = hex::decode(d.file_name().to_string_lossy().as_bytes())
                .ok()
                .and_then(|r| <[u8; 32]>::try_from(r).ok());
            let meta = std::fs::read(path.join("meta")).ok();
            let (Some(root), Some(meta)) = (parsed, meta) else {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            };
            let (Ok(mailbox), Ok(expires)) = (
                <[u8; 32]>::try_from(meta.get(..32).unwrap_or_default()),
                <[u8; 8]>::try_from(meta.get(32..40).unwrap_or_default()),
            ) else {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            };
            let expires_at = u64::from_be_bytes(expires);
            if expires_at <= now {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let bytes = std::fs::read_dir(&path)
                .map(|it| {
                    it.flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            let list = std::fs::read(path.join("list"))
                .ok()
                .and_then(|b| ChunkList::from_bytes(&b).ok());
            files.insert(
                root,
                Entry {
                    mailbox,
                    bytes,
                    expires_at,
                    list,
                },
            );
        }
        Ok(Self {
            dir,
            limits,
            state: Mutex::new(files),
        })
    }

    fn usage(files: &HashMap<[u8; 32], Entry>, mailbox: &[u8; 32]) -> u64 {
        files
            .values()
            .filter(|e| e.mailbox == *mailbox)
            .map(|e| e.bytes)
            .sum()
    }

    /// Keeps a list or chunk a sender leaves for `mailbox`. Blocking (disk).
    pub(super) fn put(
        &self,
        mailbox: [u8; 32],
        root: [u8; 32],
        index: Option<u32>,
        data: &[u8],
        now: u64,
    ) -> Result<(), String> {
        let mut files = self.state.lock().map_err(|_| "poisoned".to_owned())?;
        if Self::usage(&files, &mailbox) + data.len() as u64 > self.limits.quota {
            return Err(format!(
                "the mailbox's file quota of {} bytes is used up",
                self.limits.quota
            ));
        }
        let dir = root_dir(&self.dir, &root);
        let name = match index {
            None => {
                let list = ChunkList::from_bytes(data).map_err(|e| format!("chunk list: {e}"))?;
                if list.root() != root {
                    return Err("the chunk list does not hash to its root".into());
                }
                let entry = files.entry(root).or_insert_with(|| Entry {
                    mailbox,
                    bytes: 0,
                    expires_at: now + self.limits.retention_secs,
                    list: None,
                });
                if entry.mailbox != mailbox {
                    return Err("this file is held for another mailbox".into());
                }
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let mut meta = mailbox.to_vec();
                meta.extend_from_slice(&entry.expires_at.to_be_bytes());
                std::fs::write(dir.join("meta"), meta).map_err(|e| e.to_string())?;
                if entry.list.is_none() {
                    entry.bytes += data.len() as u64;
                }
                entry.list = Some(list);
                "list".to_owned()
            }
            Some(i) => {
                let entry = files
                    .get_mut(&root)
                    .filter(|e| e.mailbox == mailbox)
                    .ok_or("send the chunk list first")?;
                let list = entry.list.as_ref().ok_or("send the chunk list first")?;
                if list.get(i) != Some(&chunk_id(data)) {
                    return Err(format!("chunk {i} does not hash to its id"));
                }
                entry.bytes += data.len() as u64;
                i.to_string()
            }
        };
        std::fs::write(dir.join(name), data).map_err(|e| e.to_string())
    }

    /// The list (`None` index) or a chunk, if held. Blocking (disk).
    pub(super) fn get(&self, root: &[u8; 32], index: Option<u32>) -> Option<Vec<u8>> {
        if !self.state.lock().ok()?.contains_key(root) {
            return None;
        }
        let name = index.map_or_else(|| "list".to_owned(), |i| i.to_string());
        std::fs::read(root_dir(&self.dir, root).join(name)).ok()
    }

    /// Deletes a file (released by its recipient, or expired).
    pub(super) fn release(&self, root: &[u8; 32]) -> bool {
        let removed = self
            .state
            .lock()
            .map(|mut f| f.remove(root).is_some())
            .unwrap_or(false);
        if removed {
            let _ = std::fs::remove_dir_all(root_dir(&self.dir, root));
        }
        removed
    }

    /// Deletes what is past its retention.
    pub(super) fn sweep(&self, now: u64) {
        let expired: Vec<[u8; 32]> = self
            .state
            .lock()
            .map(|f| {
                f.iter()
                    .filter(|(_, e)| e.expires_at <= now)
                    .map(|(r, _)| *r)
                    .collect()
            })
            .unwrap_or_default();
        for root in expired {
            self.release(&root);
        }
    }

    /// Files and bytes held.
    pub(super) fn stats(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|f| (f.len() as u64, f.values().map(|e| e.bytes).sum()))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use tokenim_crypto::file::{ChunkList, chunk_id};

    use super::*;

    fn list(chunks: &[&[u8]]) -> ChunkList {
        ChunkList::new(chunks.iter().map(|c| chunk_id(c)).collect()).expect("list")
    }

    #[test]
    fn a_relay_keeps_only_what_hashes_to_its_address_within_the_quota() {
        let dir = tempfile::tempdir().expect("dir");
        let limits = HoldLimits {
            quota: 200,
            retention_secs: 100,
        };
        let held = Held::load(dir.path().to_path_buf(), limits, 0).expect("load");
        let (a, b) = (vec![1u8; 40], vec![2u8; 40]);
        let l = list(&[&a, &b]);
        let (root, m) = (l.root(), [7u8; 32]);
        assert!(
            held.put(m, root, Some(0), &a, 0).is_err(),
            "a chunk before its list"
        );
        assert!(
            held.put(m, [9; 32], None, &l.to_bytes(), 0).is_err(),
            "a list under another root"
        );
        held.put(m, root, None, &l.to_bytes(), 0).expect("list");
        assert!(
            held.put(m, root, Some(0), &b, 0).is_err(),
            "chunk 1's bytes as chunk 0"
        );
        assert!(
            held.put([8; 32], root, Some(0), &a, 0).is_err(),
            "another mailbox"
        );
        held.put(m, root, Some(0), &a, 0).expect("chunk 0");
        assert_eq!(held.get(&root, Some(0)), Some(a.clone()));
        assert_eq!(held.get(&root, None), Some(l.to_bytes()));
        // Held: list (68) and chunks (80); a second file's list fits, its 100-byte chunk not.
        held.put(m, root, Some(1), &b, 0).expect("chunk 1");
        let big = vec![3u8; 100];
        let l2 = list(&[&big]);
        assert!(
            held.put(m, l2.root(), None, &l2.to_bytes(), 0).is_ok()
                && held.put(m, l2.root(), Some(0), &big, 0).is_err(),
            "over the mailbox's quota"
        );
        // Loaded again, it holds the same; released, gone; past retention, swept.
        drop(held);
        let held = Held::load(dir.path().to_path_buf(), limits, 1).expect("reload");
        assert_eq!(held.get(&root, Some(1)), Some(b));
        assert!(held.release(&root));
        assert_eq!(held.get(&root, Some(0)), None);
        held.sweep(1_000);
        assert_eq!(held.stats(), (0, 0));
    }
}
