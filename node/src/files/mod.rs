//! File transfer (docs/protocol.md §13): uploads sealed chunk by chunk to disk, the chunks
//! served to peers on `/tokenim/chunk`, and downloads of the files peers offer, fetched with a
//! window of parallel requests, written as they come, resumed after a restart and verified
//! before they are handed to an app. Owns its own tasks: bulk data never passes through the
//! delivery core (which only records the offers that messages carry).
//!
//! On disk, beside the database, each file is two files in `files/`: `<id>.enc`, the chunks'
//! ciphertexts at fixed strides (chunk `i` at `i × (chunk size + 16)`), and `<id>.list`, its
//! chunk list. Plaintext is never stored: reads decrypt the chunks they cover.

mod disk;
mod fetch;
mod held;
mod push;
mod read;
mod serve;
mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokenim_store::{FileRecord, FileState, Store};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::event::{Events, NodeEvent};
use crate::net::NetworkHandle;

/// An app's upload: the name and type the recipient will see, and the bytes.
pub(crate) struct Upload {
    pub(crate) name: String,
    pub(crate) mime: String,
    pub(crate) body: ByteStream,
}

/// Bytes as they stream in from an app, or out to one.
pub(crate) type ByteStream = futures::stream::BoxStream<'static, Result<Vec<u8>, std::io::Error>>;

/// What a relay allows of the files senders leave for its mailboxes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldLimits {
    /// Bytes of files held for one mailbox.
    pub(crate) quota: u64,
    /// How long a file is kept without a release.
    pub(crate) retention_secs: u64,
}

/// What the rest of the node tells the files service.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileNotice {
    /// A message brought this file.
    Offered([u8; 16]),
    /// A sent message with files is held by the recipient's relays.
    Stored { message: [u8; 16], to: [u8; 32] },
}

/// What the operator configures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileSettings {
    /// Largest file accepted, uploaded or offered.
    pub(crate) max_size: u64,
    /// Offered files up to this size are fetched at once; larger ones on request.
    pub(crate) auto_download: u64,
    /// Chunk requests in flight per download.
    pub(crate) window: usize,
    /// On a relay: files left for the mailboxes it hosts.
    pub(crate) hold: Option<HoldLimits>,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            max_size: tokenim_crypto::file::DEFAULT_MAX_FILE_SIZE,
            auto_download: 64 * 1024 * 1024,
            window: 8,
            hold: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("file {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("file of {size} bytes over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("file storage: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] tokenim_store::StoreError),
}

impl FileError {
    fn io(what: &str, e: &std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            Self::DiskFull(format!("{what}: {e}"))
        } else {
            Self::Io(format!("{what}: {e}"))
        }
    }
}

/// The files service; cheap to clone.
#[derive(Clone)]
pub(crate) struct Files(Arc<Inner>);

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Files")
    }
}

struct Inner {
    store: Store,
    dir: PathBuf,
    net: NetworkHandle,
    events: Events,
    settings: FileSettings,
    metrics: crate::metrics::Metrics,
    /// Downloads running, by file id.
    running: Mutex<HashMap<[u8; 16], tokio::task::AbortHandle>>,
    /// Chunk reads served at once; beyond, peers are told to come back.
    serving: Arc<tokio::sync::Semaphore>,
    /// On a relay: files left for its mailboxes.
    held: Option<Arc<held::Held>>,
    /// Uploads already left at relays (by this run).
    pushed: Mutex<std::collections::HashSet<[u8; 16]>>,
}

/// How often a relay deletes held files past their retention.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Reads served at once (each holds one chunk in memory).
const MAX_SERVING: usize = 32;

impl Files {
    /// Starts the service: serves chunks, resumes downloads that were running, and starts the
    /// ones `offers` announce (files that arrived in messages).
    pub(crate) fn start(
        store: Store,
        dir: PathBuf,
        net: NetworkHandle,
        events: Events,
        settings: FileSettings,
        metrics: crate::metrics::Metrics,
        mut notices: mpsc::Receiver<FileNotice>,
    ) -> Result<Self, FileError> {
        std::fs::create_dir_all(&dir).map_err(|e| FileError::io("creating files/", &e))?;
        let held = match settings.hold {
            Some(limits) => Some(Arc::new(
                held::Held::load(dir.join("held"), limits, crate::time::now_secs())
                    .map_err(|e| FileError::io("loading held files", &e))?,
            )),
            None => None,
        };
        let files = Self(Arc::new(Inner {
            store,
            dir,
            net: net.clone(),
            events,
            settings,
            metrics,
            running: Mutex::new(HashMap::new()),
            serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
            held,
            pushed: Mutex::new(std::collections::HashSet::new()),
        }));
        net.serve_chunks(Arc::new(serve::Server(Arc::downgrade(&files.0))));
        for f in files.0.store.list_files()? {
            if f.state == FileState::Downloading {
                files.spawn_fetch(f.id);
            }
        }
        let weak = Arc::downgrade(&files.0);
        tokio::spawn(async move {
            while let Some(notice) = notices.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                let files = Files(inner);
                match notice {
                    FileNotice::Offered(id) => files.offered(id),
                    FileNotice::Stored { message, to } => {
                        tokio::spawn(async move { files.push_for(message, to).await });
                    }
                }
            }
        });
        if let Some(held) = files.0.held.clone() {
            let weak = Arc::downgrade(&held);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP_EVERY).await;
                    let Some(held) = weak.upgrade() else { break };
                    let _ = tokio::task::spawn_blocking(move || {
                        held.sweep(crate::time::now_secs());
                    })
                    .await;
                }
            });
        }
        Ok(files)
    }

    fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn settings(&self) -> FileSettings {
        self.0.settings
    }

    /// A file a message brought: fetched now if it is small enough.
    fn offered(&self, id: [u8; 16]) {
        match self.store().get_file(&id) {
            Ok(Some(f))
                if f.state == FileState::Offered && f.size <= self.0.settings.auto_download =>
            {
                if let Err(e) = self.download(id) {
                    debug!(error = %e, "cannot start an automatic download");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "reading an offered file"),
        }
    }

    pub(crate) fn get(&self, id: &[u8; 16]) -> Result<FileRecord, FileError> {
        self.store()
            .get_file(id)?
            .ok_or_else(|| FileError::NotFound(hex::encode(id)))
    }

    pub(crate) fn list(&self) -> Result<Vec<FileRecord>, FileError> {
        Ok(self.store().list_files()?)
    }

    /// Bytes of `f` on disk and checked (all of an upload).
    pub(crate) fn done_bytes(f: &FileRecord) -> u64 {
        match f.state {
            FileState::Uploaded | FileState::Complete => f.size,
            _ => {
                let chunk = tokenim_crypto::file::FileManifest::from_bytes(&f.manifest, u64::MAX)
                    .map(|m| u64::from(m.chunk_size()))
                    .unwrap_or(0);
                (u64::from(f.next_chunk) * chunk).min(f.size)
            }
        }
    }

    /// Starts (or resumes) fetching an offered file.
    pub(crate) fn download(&self, id: [u8; 16]) -> Result<FileRecord, FileError> {
        let mut f = self.get(&id)?;
        match f.state {
            FileState::Uploaded | FileState::Complete => return Ok(f),
            FileState::Downloading if self.is_running(&id) => return Ok(f),
            _ => {}
        }
        f.state = FileState::Downloading;
        f.error.clear();
        self.store().txn().put_file(&f).commit()?;
        self.spawn_fetch(id);
        Ok(f)
    }

    fn is_running(&self, id: &[u8; 16]) -> bool {
        self.0
            .running
            .lock()
            .is_ok_and(|r| r.get(id).is_some_and(|h| !h.is_finished()))
    }

    fn spawn_fetch(&self, id: [u8; 16]) {
        let files = self.clone();
        let task = tokio::spawn(async move {
            let outcome = files.fetch(id).await;
            files.finished(id, outcome);
        });
        if let Ok(mut running) = self.0.running.lock() {
            running.retain(|_, h| !h.is_finished());
            running.insert(id, task.abort_handle());
        }
    }

    fn finished(&self, id: [u8; 16], outcome: Result<(), FileError>) {
        let Ok(mut f) = self.get(&id) else {
            return; // deleted meanwhile
        };
        match outcome {
            Ok(()) => {
                f.state = FileState::Complete;
                f.next_chunk = f.chunks;
                f.error.clear();
                self.release(&f);
                self.0.events.emit(NodeEvent::FileCompleted(id));
            }
            Err(e) => {
                f.state = FileState::Failed;
                f.error = e.to_string();
                self.0.events.emit(NodeEvent::FileFailed {
                    id,
                    error: f.error.clone(),
                });
            }
        }
        if let Err(e) = self.store().txn().put_file(&f).commit() {
            warn!(error = %e, "recording a finished download");
        }
    }

    /// Stops every running download; each resumes at the next start.
    pub(crate) fn stop(&self) {
        if let Ok(mut running) = self.0.running.lock() {
            for (_, h) in running.drain() {
                h.abort();
            }
        }
    }

    /// On a relay: files held for its mailboxes, and their bytes.
    pub(crate) fn held_stats(&self) -> Option<(u64, u64)> {
        self.0.held.as_ref().map(|h| h.stats())
    }

    /// Forgets a file: its record and its data on disk (a download stops).
    pub(crate) fn delete(&self, id: [u8; 16]) -> Result<(), FileError> {
        let f = self.get(&id)?;
        if let Some(h) = self.0.running.lock().ok().and_then(|mut r| r.remove(&id)) {
            h.abort();
        }
        self.store().txn().delete_file(&f).commit()?;
        disk::remove(&self.0.dir, &id);
        Ok(())
    }
}
