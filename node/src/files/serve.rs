//! Answers peers' chunk requests for files uploaded here. Knowing a list's root is what lets a
//! peer ask: the root travels only inside end-to-end messages, with the file's key.

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::PeerId;
use tokenim_crypto::file::FileManifest;

use super::{Files, disk};
use crate::net::ChunkServer;
use crate::net::wire::pb::{ChunkRequest, ChunkResponse, chunk_request};

/// What the network holds to reach the files service: weakly, so that the service (and the
/// store it holds) goes when the node stops, whoever still holds a network handle.
pub(super) struct Server(pub(super) std::sync::Weak<super::Inner>);

impl ChunkServer for Server {
    fn serve(&self, _peer: PeerId, request: ChunkRequest) -> BoxFuture<'static, ChunkResponse> {
        let Some(inner) = self.0.upgrade() else {
            return futures::future::ready(ChunkResponse::missing("the node is stopping")).boxed();
        };
        Files(inner).serve(request)
    }
}

impl Files {
    fn serve(&self, request: ChunkRequest) -> BoxFuture<'static, ChunkResponse> {
        let Ok(permit) = self.0.serving.clone().try_acquire_owned() else {
            return futures::future::ready(ChunkResponse::busy("serving too many chunks")).boxed();
        };
        let files = self.clone();
        async move {
            let answer = files.answer(request).await;
            drop(permit);
            answer
        }
        .boxed()
    }
}

impl Files {
    async fn answer(&self, request: ChunkRequest) -> ChunkResponse {
        let root = match &request.kind {
            Some(chunk_request::Kind::List(root) | chunk_request::Kind::Release(root)) => {
                root.as_slice()
            }
            Some(chunk_request::Kind::Chunk(c)) => c.root.as_slice(),
            Some(chunk_request::Kind::Put(p)) => p.root.as_slice(),
            None => return ChunkResponse::missing("empty request"),
        };
        let Ok(root) = <[u8; 32]>::try_from(root) else {
            return ChunkResponse::missing("a root is 32 bytes");
        };
        let file = match self.0.store.file_by_root(&root) {
            Ok(Some(f)) => f,
            _ => return self.answer_held(root, request).await,
        };
        let dir = &self.0.dir;
        let read = match request.kind {
            Some(chunk_request::Kind::List(_)) => disk::read(disk::list_path(dir, &file.id))
                .await
                .and_then(|b| b.ok_or_else(|| super::FileError::NotFound("chunk list".into()))),
            Some(chunk_request::Kind::Chunk(c)) => {
                let Ok(m) = FileManifest::from_bytes(&file.manifest, u64::MAX) else {
                    return ChunkResponse::missing("unreadable manifest");
                };
                let Some(len) = m.chunk_len(c.index) else {
                    return ChunkResponse::missing("no such chunk");
                };
                let at = disk::offset(m.chunk_size(), c.index);
                disk::read_at(disk::enc_path(dir, &file.id), at, len).await
            }
            _ => return ChunkResponse::missing("not a request for this node"),
        };
        match read {
            Ok(bytes) => {
                self.0.metrics.file_chunks_served.inc();
                ChunkResponse::data(bytes)
            }
            Err(e) => ChunkResponse::missing(e.to_string()),
        }
    }
}

impl Files {
    /// On a relay: what senders left for its mailboxes.
    async fn answer_held(&self, root: [u8; 32], request: ChunkRequest) -> ChunkResponse {
        let Some(held) = self.0.held.clone() else {
            return ChunkResponse::missing("no such file here");
        };
        let hosted = |mailbox: &[u8; 32]| self.0.store.mailbox_usage(mailbox).is_ok();
        let put = match &request.kind {
            Some(chunk_request::Kind::Put(p)) => match <[u8; 32]>::try_from(p.mailbox.as_slice()) {
                Ok(m) if hosted(&m) => Some(m),
                _ => return ChunkResponse::missing("no such mailbox here"),
            },
            _ => None,
        };
        let metrics = self.0.metrics.clone();
        let answer = tokio::task::spawn_blocking(move || match request.kind {
            Some(chunk_request::Kind::List(_)) => held.get(&root, None).map_or_else(
                || ChunkResponse::missing("no such file here"),
                ChunkResponse::data,
            ),
            Some(chunk_request::Kind::Chunk(c)) => match held.get(&root, Some(c.index)) {
                Some(b) => {
                    metrics.file_chunks_served.inc();
                    ChunkResponse::data(b)
                }
                None => ChunkResponse::missing("no such chunk here"),
            },
            Some(chunk_request::Kind::Put(p)) => {
                let mailbox = put.unwrap_or_default();
                let index = (!p.list).then_some(p.index);
                let stored = held.put(mailbox, root, index, &p.data, crate::time::now_secs());
                held_gauges(&held, &metrics);
                stored.map_or_else(ChunkResponse::missing, |()| ChunkResponse::done())
            }
            Some(chunk_request::Kind::Release(_)) => {
                held.release(&root);
                held_gauges(&held, &metrics);
                ChunkResponse::done()
            }
            None => ChunkResponse::missing("empty request"),
        })
        .await;
        answer.unwrap_or_else(|_| ChunkResponse::busy("disk task failed"))
    }
}

/// The relay's held-file gauges, after a change.
fn held_gauges(held: &super::held::Held, metrics: &crate::metrics::Metrics) {
    let (files, bytes) = held.stats();
    metrics.relay_held_files.set(files as i64);
    metrics.relay_held_file_bytes.set(bytes as i64);
}
