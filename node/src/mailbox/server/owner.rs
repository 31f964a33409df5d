//! The owner's side of a relay: challenges, ownership proofs, registration, paging and
//! deletion on the owner's signed acknowledgement.

use std::time::Instant;

use libp2p::PeerId;
use tokenim_crypto::{MailboxAck, MailboxId, Registration};
use tokenim_store::StoreError;
use tracing::{debug, warn};

use super::super::protocol::{ACK_WINDOW_SECS, MAX_PAGE, MAX_PAGE_BYTES, shard_topic};
use super::{
    CHALLENGE_TTL, Challenge, Followup, MAX_CHALLENGES, PROVEN_PER_PEER, Relay,
    SWEEP_CHALLENGES_AT, lock,
};
use crate::net::wire::{RejectCode, Response, pb};
use crate::time::now_secs;

impl Relay {
    pub(super) fn challenge(&self, peer: PeerId) -> Response {
        let value: [u8; 32] = rand::random();
        let mut challenges = lock(&self.challenges);
        // Entries normally go with the connection, but a request still queued when its peer
        // disconnected leaves one behind: expired ones are swept before the map grows.
        if challenges.len() >= SWEEP_CHALLENGES_AT {
            challenges.retain(|_, c| c.issued.elapsed() <= CHALLENGE_TTL);
            if challenges.len() >= MAX_CHALLENGES {
                return Response::rejected(RejectCode::RateLimited, "too many open challenges");
            }
        }
        challenges.insert(
            peer,
            Challenge {
                value,
                issued: Instant::now(),
                proven: Vec::new(),
            },
        );
        drop(challenges);
        Response {
            kind: Some(pb::response::Kind::Challenge(pb::Challenge {
                challenge: value.to_vec(),
            })),
        }
    }

    /// Checks a registration-shaped proof against this peer's latest challenge. A proof
    /// already checked on this connection is recognised by its bytes.
    pub(super) fn verify_proof(&self, peer: &PeerId, bytes: &[u8]) -> Result<MailboxId, Response> {
        let forbidden = |why: String| Response::rejected(RejectCode::Forbidden, why);
        let challenge = {
            let challenges = lock(&self.challenges);
            let Some(c) = challenges.get(peer) else {
                return Err(forbidden("ask for a challenge first".into()));
            };
            if c.issued.elapsed() > CHALLENGE_TTL {
                return Err(forbidden("challenge expired".into()));
            }
            if let Some((_, mailbox)) = c.proven.iter().find(|(p, _)| p == bytes) {
                return Ok(*mailbox);
            }
            c.value
        };
        let reg = Registration::from_bytes(bytes).map_err(|e| forbidden(e.to_string()))?;
        reg.verify(
            &self.relay_key,
            &challenge,
            now_secs(),
            CHALLENGE_TTL.as_secs(),
        )
        .map_err(|e| forbidden(e.to_string()))?;
        if let Some(c) = lock(&self.challenges).get_mut(peer)
            && c.value == challenge
        {
            if c.proven.len() == PROVEN_PER_PEER {
                c.proven.remove(0);
            }
            c.proven.push((bytes.to_vec(), reg.mailbox));
        }
        Ok(reg.mailbox)
    }

    pub(super) fn register(&self, peer: PeerId, bytes: &[u8]) -> Response {
        let mailbox = match self.verify_proof(&peer, bytes) {
            Ok(m) => m,
            Err(r) => {
                self.metrics.envelopes_rejected.inc();
                return r;
            }
        };
        let known = self
            .store
            .mailbox_is_registered(&mailbox.0)
            .unwrap_or(false);
        if let Err((code, detail)) = self
            .admission
            .admit(&self.registration, peer, mailbox, known)
        {
            self.metrics.envelopes_rejected.inc();
            return Response::rejected(code, detail);
        }
        match self.store.mailbox_register(&mailbox.0, now_secs()) {
            Ok(()) => {}
            Err(StoreError::StorageFull(_)) => return Response::storage_full(),
            Err(e) => {
                warn!("registering a mailbox failed: {e}");
                return Response::rejected(RejectCode::Internal, "storage error");
            }
        }
        debug!(%peer, "mailbox registered");
        lock(&self.subscribers).insert(mailbox, peer);
        Response::accepted(false)
    }

    pub(super) fn fetch(&self, peer: PeerId, f: &pb::FetchMailbox) -> Response {
        let mailbox = match self.verify_proof(&peer, &f.registration) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let limit = (f.limit as usize).clamp(1, MAX_PAGE);
        let after = (f.after_seq > 0).then_some(f.after_seq);
        match self.store.mailbox_page(&mailbox.0, after, limit) {
            Ok(page) => {
                lock(&self.subscribers).insert(mailbox, peer);
                self.grant_counts.drained(&mailbox);
                let full = page.len() == limit;
                let mut bytes = 0;
                let mut envelopes = Vec::with_capacity(page.len());
                for e in page {
                    bytes += e.envelope.len();
                    if bytes > MAX_PAGE_BYTES && !envelopes.is_empty() {
                        break;
                    }
                    envelopes.push(pb::PagedEnvelope {
                        seq: e.seq,
                        envelope: e.envelope,
                    });
                }
                let more = full || bytes > MAX_PAGE_BYTES;
                Response {
                    kind: Some(pb::response::Kind::Page(pb::Page { more, envelopes })),
                }
            }
            Err(StoreError::MailboxNotRegistered) => {
                Response::rejected(RejectCode::UnknownMailbox, "mailbox not registered here")
            }
            Err(e) => {
                warn!("mailbox page failed: {e}");
                Response::rejected(RejectCode::Internal, "storage error")
            }
        }
    }

    pub(super) fn ack(&self, bytes: &[u8]) -> (Response, Followup) {
        let ack = match MailboxAck::from_bytes(bytes) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.acks_rejected.inc();
                let r = Response::rejected(RejectCode::Malformed, e.to_string());
                return (r, Followup::default());
            }
        };
        // The ack is self-certifying: its mailbox is the key that signed it.
        if let Err(e) = ack.verify(&ack.mailbox, &self.relay_key, now_secs(), ACK_WINDOW_SECS) {
            self.metrics.acks_rejected.inc();
            let r = Response::rejected(RejectCode::Forbidden, e.to_string());
            return (r, Followup::default());
        }
        match self.store.mailbox_delete(&ack.mailbox.0, &ack.message_ids) {
            Ok(deleted) => {
                self.metrics.relay_acked.inc_by(deleted as u64);
                let tombstone = prost::Message::encode_to_vec(&pb::Gossip {
                    kind: Some(pb::gossip::Kind::Tombstone(bytes.to_vec())),
                });
                let response = Response {
                    kind: Some(pb::response::Kind::Acked(pb::Acked {
                        deleted: deleted as u32,
                    })),
                };
                let followup = Followup {
                    push: Vec::new(),
                    publish: if self.mesh.is_empty() {
                        Vec::new()
                    } else {
                        vec![(shard_topic(&ack.mailbox), tombstone)]
                    },
                };
                (response, followup)
            }
            Err(StoreError::StorageFull(_)) => (Response::storage_full(), Followup::default()),
            Err(e) => {
                warn!("mailbox delete failed: {e}");
                let r = Response::rejected(RejectCode::Internal, "storage error");
                (r, Followup::default())
            }
        }
    }
}
