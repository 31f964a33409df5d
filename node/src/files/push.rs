//! The sender's side of relays: when a message with files could only be left at the
//! recipient's home relays (a relay signed its custody receipt), its files go there too — the
//! list, then the chunks, a window at a time — so that the recipient can fetch them while the
//! sender is offline. The recipient releases them once it holds them.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::ContactCard;
use tokenim_crypto::file::FileManifest;
use tracing::{debug, info};

use super::{FileError, Files, disk};
use crate::net::wire::pb::{ChunkPut, ChunkRequest, chunk_request, chunk_response};

impl Files {
    /// Message `message` to `to` is held by relays: leave its files at `to`'s home relays.
    pub(super) async fn push_for(&self, message: [u8; 16], to: [u8; 32]) {
        let files = match self.0.store.files_of_message(&message) {
            Ok(f) => f,
            Err(e) => {
                debug!(error = %e, "files of a stored message");
                return;
            }
        };
        let card = self
            .0
            .store
            .get_contact(&to)
            .ok()
            .flatten()
            .and_then(|c| ContactCard::from_uri(&c.card_uri, 0).ok());
        let Some(card) = card else { return };
        let Some(mailbox) = card.mailboxes.first().copied() else {
            return;
        };
        for f in files.into_iter().filter(|f| f.outgoing) {
            let fresh = self.0.pushed.lock().is_ok_and(|mut p| p.insert(f.id));
            if !fresh {
                continue;
            }
            for relay in &card.home_relays {
                let Ok(peer) = PeerId::from_bytes(&relay.peer_id) else {
                    continue;
                };
                let addrs: Vec<Multiaddr> =
                    relay.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                match self.push(&f.id, &f.manifest, mailbox.0, peer, addrs).await {
                    Ok(n) => info!(chunks = n, %peer, "file left at the recipient's relay"),
                    Err(e) => debug!(error = %e, %peer, "cannot leave a file at a relay"),
                }
            }
        }
    }

    async fn push(
        &self,
        id: &[u8; 16],
        manifest: &[u8],
        mailbox: [u8; 32],
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<u32, FileError> {
        let manifest = FileManifest::from_bytes(manifest, u64::MAX)
            .map_err(|e| FileError::Io(format!("stored manifest: {e}")))?;
        let root = manifest.root().to_vec();
        let put = |list: bool, index: u32, data: Vec<u8>| {
            let request = ChunkRequest {
                kind: Some(chunk_request::Kind::Put(ChunkPut {
                    mailbox: mailbox.to_vec(),
                    root: root.clone(),
                    list,
                    index,
                    data,
                })),
            };
            let net = self.0.net.clone();
            let addrs = addrs.clone();
            async move {
                match net.chunk_request(peer, addrs, request).await {
                    Ok(r) => match r.kind {
                        Some(chunk_response::Kind::Done(_)) => Ok(()),
                        Some(
                            chunk_response::Kind::Missing(why) | chunk_response::Kind::Busy(why),
                        ) => Err(FileError::Invalid(format!("relay refused: {why}"))),
                        _ => Err(FileError::Invalid("relay answered nothing".into())),
                    },
                    Err(e) => Err(FileError::Invalid(format!("relay unreachable: {e:?}"))),
                }
            }
        };
        let list = disk::read(disk::list_path(&self.0.dir, id))
            .await?
            .ok_or_else(|| FileError::NotFound("chunk list".into()))?;
        put(true, 0, list).await?;
        let enc = disk::enc_path(&self.0.dir, id);
        let count = manifest.chunk_count();
        let mut inflight = FuturesUnordered::new();
        let mut next = 0u32;
        loop {
            while inflight.len() < self.0.settings.window.max(1) && next < count {
                let len = manifest
                    .chunk_len(next)
                    .ok_or_else(|| FileError::Invalid("chunk past the last".into()))?;
                let at = disk::offset(manifest.chunk_size(), next);
                let data = disk::read_at(enc.clone(), at, len).await?;
                inflight.push(put(false, next, data));
                next += 1;
            }
            match inflight.next().await {
                Some(r) => r?,
                None => break,
            }
        }
        Ok(count)
    }
}
