//! Downloads: the chunk list from a source (checked against the manifest's root), then the
//! chunks with a window of requests in flight, each checked against its id before it is
//! written at its place. Progress is recorded as the lowest index below which every chunk is on
//! disk (flushed first); on a restart the chunks written after that point are checked against
//! their ids where they lie, so only those that were in flight (one window) are fetched again.
//! At the end every chunk is opened in order and the whole checked against the manifest's
//! size and SHA-256.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::file::{ChunkList, FileManifest, FileOpener};
use tokio::time::Instant;
use tracing::debug;

use super::{FileError, Files, disk};
use crate::event::NodeEvent;
use crate::net::wire::pb::{ChunkRef, ChunkRequest, chunk_request, chunk_response};

/// Tries of one chunk (across sources) before the download fails.
const MAX_TRIES: u32 = 8;
/// Least time between two progress events (and records) of one download.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A place to fetch from: a peer and where to dial it.
#[derive(Debug, Clone)]
struct Source {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
}

fn sources(list: &[String]) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for s in list {
        let Ok(addr) = s.parse::<Multiaddr>() else {
            continue;
        };
        // The last `/p2p/` is the node (a circuit address names its relay first).
        let Some(peer) = addr.iter().fold(None, |last, p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => last,
        }) else {
            continue;
        };
        let dial: Multiaddr = addr
            .iter()
            .take_while(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(id) if *id == peer))
            .collect();
        match out.iter_mut().find(|s| s.peer == peer) {
            Some(s) if !dial.is_empty() => s.addrs.push(dial),
            Some(_) => {}
            None => out.push(Source {
                peer,
                addrs: if dial.is_empty() {
                    Vec::new()
                } else {
                    vec![dial]
                },
            }),
        }
    }
    out
}

impl Files {
    pub(super) async fn fetch(&self, id: [u8; 16]) -> Result<(), FileError> {
        let record = self.get(&id)?;
        let manifest = FileManifest::from_bytes(&record.manifest, self.0.settings.max_size)
            .map_err(|e| FileError::Invalid(format!("manifest: {e}")))?;
        let sources = sources(&record.sources);
        if sources.is_empty() {
            return Err(FileError::Invalid(
                "the file names no source to fetch from".into(),
            ));
        }
        let list = self.fetch_list(&id, &manifest, &sources).await?;
        let opener = FileOpener::new(&manifest, list)
            .map_err(|e| FileError::Invalid(format!("chunk list: {e}")))?;
        self.fetch_chunks(id, &manifest, &opener, &sources, record.next_chunk)
            .await?;
        self.verify(&id, &manifest, opener).await
    }

    async fn fetch_list(
        &self,
        id: &[u8; 16],
        manifest: &FileManifest,
        sources: &[Source],
    ) -> Result<ChunkList, FileError> {
        let path = disk::list_path(&self.0.dir, id);
        if let Some(bytes) = disk::read(path.clone()).await?
            && let Ok(list) = ChunkList::from_bytes(&bytes)
            && manifest.verify_list(&list).is_ok()
        {
            return Ok(list);
        }
        let request = ChunkRequest {
            kind: Some(chunk_request::Kind::List(manifest.root().to_vec())),
        };
        let mut last = String::from("no source answered");
        for _ in 0..MAX_TRIES {
            for s in sources {
                match self.ask(s, request.clone()).await {
                    Ok(bytes) => match ChunkList::from_bytes(&bytes)
                        .and_then(|l| manifest.verify_list(&l).map(|()| l))
                    {
                        Ok(list) => {
                            disk::write(path, bytes).await?;
                            return Ok(list);
                        }
                        Err(e) => last = format!("a source sent a wrong chunk list: {e}"),
                    },
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(FileError::Invalid(format!("chunk list: {last}")))
    }

    /// Tells the file's sources (the recipient's relays among them) that it is here: relays
    /// delete what they held of it. Best effort.
    pub(super) fn release(&self, f: &tokenim_store::FileRecord) {
        let request = ChunkRequest {
            kind: Some(chunk_request::Kind::Release(f.root.to_vec())),
        };
        for s in sources(&f.sources) {
            let net = self.0.net.clone();
            let request = request.clone();
            tokio::spawn(async move {
                let _ = net.chunk_request(s.peer, s.addrs, request).await;
            });
        }
    }

    /// One request; the data, or why there is none.
    async fn ask(&self, source: &Source, request: ChunkRequest) -> Result<Vec<u8>, String> {
        let answer = self
            .0
            .net
            .chunk_request(source.peer, source.addrs.clone(), request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        match answer.kind {
            Some(chunk_response::Kind::Data(b)) => Ok(b),
            Some(chunk_response::Kind::Missing(why) | chunk_response::Kind::Busy(why)) => Err(why),
            Some(chunk_response::Kind::Done(_)) | None => Err("no data in the answer".into()),
        }
    }

    async fn fetch_chunks(
        &self,
        id: [u8; 16],
        manifest: &FileManifest,
        opener: &FileOpener,
        sources: &[Source],
        start: u32,
    ) -> Result<(), FileError> {
        let count = manifest.chunk_count();
        let enc = disk::enc_path(&self.0.dir, &id);
        let root = manifest.root().to_vec();
        let window = self.0.settings.window.max(1);
        // What an earlier run wrote past its last record is kept if it checks.
        let mut done_above = self.written_since(&enc, manifest, opener, start).await;
        let mut contiguous = start;
        while done_above.remove(&contiguous) {
            contiguous += 1;
        }
        let mut missing = (contiguous..count)
            .filter(|i| !done_above.contains(i))
            .collect::<Vec<_>>()
            .into_iter();
        let mut tries = std::collections::HashMap::<u32, u32>::new();
        let mut inflight = FuturesUnordered::new();
        let mut last_note = Instant::now();
        let ask = |index: u32, attempt: u32| {
            let source = sources[(index as usize + attempt as usize) % sources.len()].clone();
            let request = ChunkRequest {
                kind: Some(chunk_request::Kind::Chunk(ChunkRef {
                    root: root.clone(),
                    index,
                })),
            };
            async move {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                (index, self.ask(&source, request).await)
            }
        };
        loop {
            while inflight.len() < window {
                let Some(index) = missing.next() else { break };
                inflight.push(ask(index, 0));
            }
            let Some((index, answer)) = inflight.next().await else {
                break;
            };
            let checked = answer.and_then(|b| {
                opener
                    .check(index, &b)
                    .map(|()| b)
                    .map_err(|e| format!("a source sent a wrong chunk: {e}"))
            });
            match checked {
                Ok(bytes) => {
                    disk::write_at(
                        enc.clone(),
                        disk::offset(manifest.chunk_size(), index),
                        bytes,
                    )
                    .await?;
                    self.0.metrics.file_chunks_fetched.inc();
                    done_above.insert(index);
                    while done_above.remove(&contiguous) {
                        contiguous += 1;
                    }
                }
                Err(why) => {
                    if why.starts_with("a source sent a wrong chunk") {
                        self.0.metrics.file_chunks_refused.inc();
                    }
                    let t = tries.entry(index).or_default();
                    *t += 1;
                    debug!(index, tries = *t, %why, "chunk fetch failed");
                    if *t >= MAX_TRIES {
                        self.note(&id, contiguous, &why).await?;
                        return Err(FileError::Invalid(format!("chunk {index}: {why}")));
                    }
                    inflight.push(ask(index, *t));
                }
            }
            if last_note.elapsed() >= PROGRESS_EVERY || contiguous == count {
                last_note = Instant::now();
                self.note(&id, contiguous, "").await?;
            }
        }
        Ok(())
    }

    /// The chunks from `start` on that are on disk and check against their ids (written by a
    /// run that stopped before it recorded them).
    async fn written_since(
        &self,
        enc: &std::path::Path,
        manifest: &FileManifest,
        opener: &FileOpener,
        start: u32,
    ) -> BTreeSet<u32> {
        let mut have = BTreeSet::new();
        let Ok(len) = tokio::fs::metadata(enc).await.map(|m| m.len()) else {
            return have;
        };
        for index in start..manifest.chunk_count() {
            let at = disk::offset(manifest.chunk_size(), index);
            let Some(chunk_len) = manifest.chunk_len(index) else {
                break;
            };
            if at + chunk_len as u64 > len {
                break;
            }
            if let Ok(bytes) = disk::read_at(enc.to_path_buf(), at, chunk_len).await
                && opener.check(index, &bytes).is_ok()
            {
                have.insert(index);
            }
        }
        have
    }

    /// Records that every chunk below `contiguous` is on disk (flushed first), and tells apps.
    async fn note(&self, id: &[u8; 16], contiguous: u32, error: &str) -> Result<(), FileError> {
        disk::sync(disk::enc_path(&self.0.dir, id)).await?;
        let mut f = self.get(id)?;
        f.next_chunk = contiguous;
        f.error = error.to_owned();
        f.updated_at_ms = crate::time::now_ms();
        self.0.store.txn().put_file(&f).commit()?;
        self.0.events.emit(NodeEvent::FileProgress {
            id: *id,
            done: Self::done_bytes(&f),
            total: f.size,
        });
        Ok(())
    }

    /// Opens every chunk in order and checks the whole against the manifest.
    async fn verify(
        &self,
        id: &[u8; 16],
        manifest: &FileManifest,
        mut opener: FileOpener,
    ) -> Result<(), FileError> {
        let enc = disk::enc_path(&self.0.dir, id);
        while let Some(index) = opener.next_index() {
            let len = manifest
                .chunk_len(index)
                .ok_or_else(|| FileError::Invalid("chunk past the last".into()))?;
            let at = disk::offset(manifest.chunk_size(), index);
            let bytes = disk::read_at(enc.clone(), at, len).await?;
            opener
                .push(&bytes)
                .map_err(|e| FileError::Invalid(format!("verifying the file: {e}")))?;
        }
        opener
            .finish()
            .map_err(|e| FileError::Invalid(format!("verifying the file: {e}")))
    }
}
