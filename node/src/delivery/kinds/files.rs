//! Files in messages: what a text offers (each attachment's manifest, in `attachments`) is
//! recorded as an offered file with where to fetch it; fetching is the files service's
//! (`crate::files`), told through a `FileOffered` event once the message is stored. A request
//! (a stranger's text) offers nothing: nothing of a stranger's is fetched.

use tokenim_crypto::file::FileManifest;
use tokenim_store::{FileRecord, FileState, Txn};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::cards::node_route;
use crate::delivery::ids::IdentityKey;
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;

impl Delivery {
    /// Records the files a text from `from` offers (`group`: a group text's).
    pub(in crate::delivery) fn offer_files<'s>(
        &mut self,
        from: IdentityKey,
        group: Option<&[u8; 32]>,
        message: [u8; 16],
        attachments: &[Vec<u8>],
        inbound: &mut Inbound<'_>,
        mut txn: Txn<'s>,
    ) -> Txn<'s> {
        if attachments.is_empty() {
            return txn;
        }
        let sources: Vec<String> = self
            .route_card(&from, group)
            .and_then(|c| node_route(&c))
            .map(|(peer, addrs)| {
                let mut s: Vec<String> = addrs.iter().map(|a| format!("{a}/p2p/{peer}")).collect();
                s.push(format!("/p2p/{peer}"));
                s
            })
            .unwrap_or_default();
        // Where a sender that went offline left them: this node's own home relays.
        let sources: Vec<String> = sources
            .into_iter()
            .chain(self.home.routes().into_iter().flat_map(|r| {
                let peer = r.peer;
                r.addrs.into_iter().map(move |a| format!("{a}/p2p/{peer}"))
            }))
            .collect();
        let now = self.clock.now_ms();
        for bytes in attachments.iter().take(tokenim_crypto::MAX_ATTACHMENTS) {
            let manifest = match FileManifest::from_bytes(bytes, u64::MAX) {
                Ok(m) => m,
                Err(e) => {
                    debug!(error = %e, "an attachment is refused");
                    continue;
                }
            };
            // Over this node's limit: listed with its message, as failed, never fetched.
            let max = self.settings.max_file_bytes;
            let (state, error) = if manifest.size() > max {
                let why = format!(
                    "a file of {} bytes is over this node's limit of {max} (limits.max_file_bytes)",
                    manifest.size()
                );
                (FileState::Failed, why)
            } else {
                (FileState::Offered, String::new())
            };
            let id: [u8; 16] = rand::random();
            let record = FileRecord {
                id,
                outgoing: false,
                manifest: bytes.clone(),
                name: manifest.name().to_owned(),
                mime: manifest.mime().to_owned(),
                size: manifest.size(),
                sha256: *manifest.sha256(),
                root: *manifest.root(),
                state,
                chunks: manifest.chunk_count(),
                next_chunk: 0,
                peer: from.0,
                sources: sources.clone(),
                message: Some(message),
                error,
                created_at_ms: now,
                updated_at_ms: now,
            };
            txn = txn.put_file(&record);
            inbound.events.push(NodeEvent::FileOffered(id));
        }
        txn
    }
}
