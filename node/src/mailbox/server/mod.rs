//! The relay role: mailboxes for registered users in the store, signed custody receipts,
//! ownership proofs by challenge, paging, and deletion on the owner's signed acknowledgement.
//! Every method takes `&self` and does blocking store calls: [`super::workers`] runs them
//! on a few dedicated threads, off the async runtime and off the network task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{CustodyReceipt, Envelope, MailboxId};
use tokenim_store::{Store, StoreError};
use tracing::{debug, warn};

use super::protocol::{MAX_STORE_BATCH, MeshKeys, ValidGossip, relayed_gossip, shard_topic};
use crate::metrics::Metrics;
use crate::net::wire::{MAX_BATCH_BYTES, RejectCode, Response, pb};
use crate::time::now_secs;
use admission::Admission;
pub(crate) use admission::RegistrationPolicy;
use grants::GrantCounts;
pub(crate) use grants::GrantPolicy;

/// How long a challenge may be used for registration and fetch proofs.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// Outstanding challenges: swept of expired ones from this many on, refused beyond the max.
const SWEEP_CHALLENGES_AT: usize = 4096;
const MAX_CHALLENGES: usize = 65_536;
/// Verified fetch proofs remembered per connection, so paging costs no signature check.
const PROVEN_PER_PEER: usize = 4;

/// The latest challenge handed to a connected peer, and the proofs already checked against it.
struct Challenge {
    value: [u8; 32],
    issued: Instant,
    proven: Vec<(Vec<u8>, MailboxId)>,
}

pub struct Relay {
    store: Store,
    key: SigningKey,
    relay_key: [u8; 32],
    retention_secs: u64,
    /// Per connected peer (dropped on disconnect).
    challenges: Mutex<HashMap<PeerId, Challenge>>,
    /// Connected owners to push new envelopes to.
    subscribers: Mutex<HashMap<MailboxId, PeerId>>,
    /// The relays whose signed envelopes this relay takes from gossip (its mesh); with none,
    /// it gossips nothing.
    mesh: MeshKeys,
    grants: GrantPolicy,
    grant_counts: GrantCounts,
    registration: RegistrationPolicy,
    admission: Admission,
    metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("relay_key", &hex::encode(self.relay_key))
            .finish_non_exhaustive()
    }
}

/// What must happen after a relay request besides answering it.
#[derive(Debug, Default)]
pub struct Followup {
    /// Push newly stored envelopes to their connected owner.
    pub(crate) push: Vec<(PeerId, Vec<u8>)>,
    /// Publish on gossipsub topics (new envelopes and tombstones reach the mailbox's other
    /// relays).
    pub(crate) publish: Vec<(String, Vec<u8>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariant a panicking holder could break halfway.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Relay {
    pub fn new(store: Store, key: SigningKey, retention_secs: u64, metrics: Metrics) -> Self {
        let relay_key = key.verifying_key().to_bytes();
        Self {
            store,
            key,
            relay_key,
            retention_secs,
            challenges: Mutex::default(),
            subscribers: Mutex::default(),
            mesh: MeshKeys::new(),
            grants: GrantPolicy::OPEN,
            grant_counts: GrantCounts::default(),
            registration: RegistrationPolicy::open(),
            admission: Admission::default(),
            metrics,
        }
    }

    /// The relays of this relay's mesh, by the Ed25519 key behind their PeerId.
    #[must_use]
    pub(crate) fn with_mesh(mut self, mesh: MeshKeys) -> Self {
        self.mesh = mesh;
        self
    }

    /// What stores must carry: owner-issued write grants, and how much each may add.
    #[must_use]
    pub(crate) fn with_grants(mut self, grants: GrantPolicy) -> Self {
        self.grants = grants;
        self
    }

    /// Who may register a mailbox here.
    #[must_use]
    pub(crate) fn with_registration(mut self, policy: RegistrationPolicy) -> Self {
        self.registration = policy;
        self
    }

    pub(crate) fn mesh(&self) -> &MeshKeys {
        &self.mesh
    }

    pub fn handle(&self, peer: PeerId, kind: pb::request::Kind) -> (Response, Followup) {
        use pb::request::Kind;
        match kind {
            Kind::Store(s) => self.store_envelopes(&s.envelopes, &s.grant),
            Kind::GetChallenge(_) => (self.challenge(peer), Followup::default()),
            Kind::Register(r) => (self.register(peer, &r.registration), Followup::default()),
            Kind::Fetch(f) => (self.fetch(peer, &f), Followup::default()),
            Kind::Ack(a) => self.ack(&a.ack),
            Kind::Deliver(_) | Kind::Link(_) => (
                Response::rejected(
                    RejectCode::UnknownMailbox,
                    "relays take mailbox requests, not `deliver` or `link`",
                ),
                Followup::default(),
            ),
        }
    }

    pub(crate) fn peer_disconnected(&self, peer: &PeerId) {
        lock(&self.challenges).remove(peer);
        lock(&self.subscribers).retain(|_, p| p != peer);
        self.admission.disconnected(peer);
    }

    /// Stores a batch for one mailbox in one atomic write and signs one receipt for all of it.
    /// All or nothing: any envelope that fails its checks rejects the whole request.
    fn store_envelopes(&self, batch: &[Vec<u8>], grant: &[u8]) -> (Response, Followup) {
        let n = batch.len() as u64;
        self.metrics.envelopes_in.inc_by(n);
        let reject = |code: RejectCode, detail: String| {
            self.metrics.envelopes_rejected.inc_by(n);
            (Response::rejected(code, detail), Followup::default())
        };
        if batch.is_empty() || batch.len() > MAX_STORE_BATCH {
            return reject(
                RejectCode::Malformed,
                format!("a store request carries 1..={MAX_STORE_BATCH} envelopes"),
            );
        }
        let bytes: usize = batch.iter().map(Vec::len).sum();
        if bytes > MAX_BATCH_BYTES {
            return reject(
                RejectCode::TooLarge,
                format!("{bytes} envelope bytes in one request; the limit is {MAX_BATCH_BYTES}"),
            );
        }
        let mut mailbox = None;
        let mut ids = Vec::with_capacity(batch.len());
        let mut ttl = self.retention_secs;
        for (i, bytes) in batch.iter().enumerate() {
            let envelope = match Envelope::decode_checked(bytes) {
                Ok(e) => e,
                Err(e) => return reject(RejectCode::Malformed, format!("envelope {i}: {e}")),
            };
            let Ok(m) = envelope.mailbox() else {
                return reject(
                    RejectCode::Malformed,
                    format!("envelope {i}: bad mailbox id"),
                );
            };
            if *mailbox.get_or_insert(m) != m {
                return reject(
                    RejectCode::Malformed,
                    "a store request's envelopes must share one mailbox".into(),
                );
            }
            ttl = ttl.min(u64::from(envelope.ttl_secs));
            ids.push(envelope.id());
        }
        let Some(mailbox) = mailbox else {
            return reject(RejectCode::Malformed, "no envelopes".into());
        };
        let now = now_secs();
        let counted = match self
            .grant_counts
            .admit(&self.grants, grant, &mailbox, n as u32, now)
        {
            Ok(c) => c,
            Err((code, detail)) => return reject(code, detail.into()),
        };
        let items: Vec<(&[u8; 32], &[u8])> = ids
            .iter()
            .zip(batch)
            .map(|(id, b)| (id, b.as_slice()))
            .collect();
        let outcomes = match self.store.mailbox_put_many(&mailbox.0, &items, now, ttl) {
            Ok(o) => o,
            Err(StoreError::StorageFull(why)) => {
                debug!(%why, "store refused: disk full");
                self.metrics.envelopes_rejected.inc_by(n);
                return (Response::storage_full(), Followup::default());
            }
            Err(e) => {
                // The detail says what kind of refusal it is, never how full a mailbox is.
                let (code, detail) = match &e {
                    StoreError::MailboxNotRegistered => {
                        (RejectCode::UnknownMailbox, "no such mailbox here")
                    }
                    StoreError::QuotaExceeded { .. } => (RejectCode::Quota, "mailbox full"),
                    _ => {
                        warn!(error = %e, "mailbox put failed");
                        (RejectCode::Internal, "storage error")
                    }
                };
                return reject(code, detail.into());
            }
        };
        // `mailbox_put_many` has fsynced the batch: the receipt cannot outlive the envelopes
        // in a power cut. The promise holds for the whole batch: until the earliest expiry.
        let expires_at = outcomes.iter().map(|o| o.expires_at).min().unwrap_or(now);
        let receipt = CustodyReceipt::sign(&self.key, &ids, mailbox, now, expires_at);
        let mut followup = Followup::default();
        let mut duplicates = 0;
        for ((outcome, bytes), id) in outcomes.iter().zip(batch).zip(&ids) {
            debug!(envelope = %hex::encode(&id[..8]), duplicate = outcome.duplicate, "in custody");
            if outcome.duplicate {
                duplicates += 1;
            } else {
                self.stored_followup(&mailbox, bytes, !self.mesh.is_empty(), &mut followup);
            }
        }
        if let Some(grant_id) = counted {
            self.grant_counts
                .add(mailbox, grant_id, n as u32 - duplicates);
        }
        let response = Response {
            kind: Some(pb::response::Kind::Stored(pb::Stored {
                receipt: receipt.to_bytes(),
                duplicates,
            })),
        };
        (response, followup)
    }

    /// A new envelope in custody: push it to its connected owner and, with `gossip`, sign it
    /// for the mesh's other relays.
    fn stored_followup(
        &self,
        mailbox: &MailboxId,
        bytes: &[u8],
        gossip: bool,
        followup: &mut Followup,
    ) {
        self.metrics.relay_stored.inc();
        if let Some(owner) = lock(&self.subscribers).get(mailbox) {
            followup.push.push((*owner, bytes.to_vec()));
        }
        if gossip {
            let copy = relayed_gossip(&self.key, bytes.to_vec(), now_secs());
            followup.publish.push((shard_topic(mailbox), copy));
        }
    }

    /// A checked message on a shard topic: store envelopes for mailboxes hosted here, apply
    /// tombstones. Gossip has no one to answer, so failures are only logged.
    pub(crate) fn on_gossip(&self, gossip: ValidGossip) -> Followup {
        let mut followup = Followup::default();
        match gossip {
            ValidGossip::Envelope {
                envelope,
                mailbox,
                bytes,
            } => {
                let ttl = u64::from(envelope.ttl_secs).min(self.retention_secs);
                match self
                    .store
                    .mailbox_put(&mailbox.0, &envelope.id(), &bytes, now_secs(), ttl)
                {
                    Ok(outcome) if !outcome.duplicate => {
                        // Already gossiped: only the owner push is left to do.
                        self.stored_followup(&mailbox, &bytes, false, &mut followup);
                    }
                    Ok(_) | Err(StoreError::MailboxNotRegistered) => {}
                    Err(e) => debug!(error = %e, "gossiped envelope not stored"),
                }
            }
            ValidGossip::Tombstone(ack) => {
                if let Ok(n) = self.store.mailbox_delete(&ack.mailbox.0, &ack.message_ids) {
                    self.metrics.relay_acked.inc_by(n as u64);
                }
            }
        }
        followup
    }

    /// Whether the disk was full at the last look: stores are refused before they queue.
    pub(crate) fn storage_full(&self) -> bool {
        self.store.is_full()
    }

    /// When space is short, turns owners' acks into free space; whether the disk is full.
    pub(crate) fn reclaim(&self) -> bool {
        match self.store.reclaim_space() {
            Ok(status) => status.full,
            Err(e) => {
                warn!("reclaiming disk space: {e}");
                self.store.is_full()
            }
        }
    }

    /// Deletes expired envelopes (and frees their disk).
    pub(crate) fn purge(&self) {
        match self.store.purge_expired(now_secs()) {
            Ok(report) => {
                self.metrics.relay_expired.inc_by(report.mailbox_messages);
                debug!(?report, "purged expired mailbox entries");
            }
            Err(e) => warn!("purging expired mailbox entries: {e}"),
        }
    }
}

mod admission;
#[cfg(test)]
mod grant_tests;
mod grants;
mod owner;
#[cfg(test)]
mod tests;
