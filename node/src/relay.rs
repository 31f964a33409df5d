//! The relay role: mailboxes for registered users in the store, signed custody receipts,
//! ownership proofs by challenge, paging, and deletion on the owner's signed acknowledgement.
//! Every method takes `&self` and does blocking store calls: [`crate::relay_workers`] runs them
//! on a few dedicated threads, off the async runtime and off the engine task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{
    CustodyReceipt, Envelope, MAX_BATCH_IDS, MailboxAck, MailboxId, Registration,
};
use tokenim_store::{Store, StoreError};
use tracing::{debug, warn};

use crate::engine::now_secs;
use crate::metrics::Metrics;
use crate::wire::{MAX_BATCH_BYTES, RejectCode, Response, pb};

/// How long a challenge may be used for registration and fetch proofs.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// Acks are accepted within this many seconds of the relay's clock.
pub const ACK_WINDOW_SECS: u64 = 600;
/// Most envelopes a relay hands out in one page.
pub const MAX_PAGE: usize = 256;
/// Most envelope bytes in one page (a page always holds at least one envelope).
pub const MAX_PAGE_BYTES: usize = MAX_BATCH_BYTES;
/// Most envelopes in one `store` request.
pub const MAX_STORE_BATCH: usize = 256;
const _: () = assert!(
    MAX_STORE_BATCH <= MAX_BATCH_IDS,
    "one receipt signs a whole batch"
);
/// Outstanding challenges: swept of expired ones from this many on, refused beyond the max.
const SWEEP_CHALLENGES_AT: usize = 4096;
const MAX_CHALLENGES: usize = 65_536;
/// Verified fetch proofs remembered per connection, so paging costs no signature check.
const PROVEN_PER_PEER: usize = 4;

/// The Ed25519 key behind a PeerId, which signs that peer's custody receipts.
pub fn relay_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = libp2p::multihash::Multihash::<64>::from_bytes(&peer.to_bytes()).ok()?;
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

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
    metrics: Metrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("relay_key", &hex::encode(self.relay_key))
            .finish_non_exhaustive()
    }
}

/// Gossipsub shards of the mailbox space; relays join all of them.
pub const SHARDS: u16 = 64;

/// The gossipsub topic of a mailbox's shard.
pub fn shard_topic(mailbox: &MailboxId) -> String {
    let shard = u16::from_be_bytes([mailbox.0[0], mailbox.0[1]]) % SHARDS;
    format!("tokenim/mailbox/1/{shard}")
}

pub fn all_topics() -> Vec<String> {
    (0..SHARDS)
        .map(|s| format!("tokenim/mailbox/1/{s}"))
        .collect()
}

pub fn gossip_envelope(envelope: Vec<u8>) -> Vec<u8> {
    prost::Message::encode_to_vec(&pb::Gossip {
        kind: Some(pb::gossip::Kind::Envelope(envelope)),
    })
}

/// What must happen after a relay request besides answering it.
#[derive(Debug, Default)]
pub struct Followup {
    /// Push newly stored envelopes to their connected owner.
    pub push: Vec<(PeerId, Vec<u8>)>,
    /// Publish on gossipsub topics (new envelopes and tombstones reach the mailbox's other
    /// relays).
    pub publish: Vec<(String, Vec<u8>)>,
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
            metrics,
        }
    }

    pub fn handle(&self, peer: PeerId, kind: pb::request::Kind) -> (Response, Followup) {
        use pb::request::Kind;
        match kind {
            Kind::Store(s) => self.store_envelopes(&s.envelopes),
            Kind::GetChallenge(_) => (self.challenge(peer), Followup::default()),
            Kind::Register(r) => (self.register(peer, &r.registration), Followup::default()),
            Kind::Fetch(f) => (self.fetch(peer, &f), Followup::default()),
            Kind::Ack(a) => self.ack(&a.ack),
            Kind::Deliver(_) => (
                Response::rejected(
                    RejectCode::UnknownMailbox,
                    "relays take `store`, not `deliver`",
                ),
                Followup::default(),
            ),
        }
    }

    pub fn peer_disconnected(&self, peer: &PeerId) {
        lock(&self.challenges).remove(peer);
        lock(&self.subscribers).retain(|_, p| p != peer);
    }

    /// Stores a batch for one mailbox in one atomic write and signs one receipt for all of it.
    /// All or nothing: any envelope that fails its checks rejects the whole request.
    fn store_envelopes(&self, batch: &[Vec<u8>]) -> (Response, Followup) {
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
        let items: Vec<(&[u8; 32], &[u8])> = ids
            .iter()
            .zip(batch)
            .map(|(id, b)| (id, b.as_slice()))
            .collect();
        let outcomes = match self.store.mailbox_put_many(&mailbox.0, &items, now, ttl) {
            Ok(o) => o,
            Err(e) => {
                let code = match &e {
                    StoreError::MailboxNotRegistered => RejectCode::UnknownMailbox,
                    StoreError::QuotaExceeded { .. } => RejectCode::Quota,
                    _ => {
                        warn!("mailbox put failed: {e}");
                        RejectCode::Internal
                    }
                };
                return reject(code, e.to_string());
            }
        };
        // The promise holds for the whole batch: until the earliest expiry in it.
        let expires_at = outcomes.iter().map(|o| o.expires_at).min().unwrap_or(now);
        let receipt = CustodyReceipt::sign(&self.key, &ids, mailbox, now, expires_at);
        let mut followup = Followup::default();
        let mut duplicates = 0;
        for (outcome, bytes) in outcomes.iter().zip(batch) {
            if outcome.duplicate {
                duplicates += 1;
            } else {
                self.stored_followup(&mailbox, bytes, &mut followup);
            }
        }
        let response = Response {
            kind: Some(pb::response::Kind::Stored(pb::Stored {
                receipt: receipt.to_bytes(),
                duplicates,
            })),
        };
        (response, followup)
    }

    fn stored_followup(&self, mailbox: &MailboxId, bytes: &[u8], followup: &mut Followup) {
        self.metrics.relay_stored.inc();
        if let Some(owner) = lock(&self.subscribers).get(mailbox) {
            followup.push.push((*owner, bytes.to_vec()));
        }
        followup
            .publish
            .push((shard_topic(mailbox), gossip_envelope(bytes.to_vec())));
    }

    /// A message on a shard topic: store envelopes for mailboxes hosted here, apply tombstones.
    /// Gossip has no one to answer, so failures are only counted.
    pub fn on_gossip(&self, data: &[u8]) -> Followup {
        let mut followup = Followup::default();
        let Ok(gossip) = <pb::Gossip as prost::Message>::decode(data) else {
            self.metrics.envelopes_rejected.inc();
            return followup;
        };
        match gossip.kind {
            Some(pb::gossip::Kind::Envelope(bytes)) => {
                let Ok(envelope) = Envelope::decode_checked(&bytes) else {
                    self.metrics.envelopes_rejected.inc();
                    return followup;
                };
                let Ok(mailbox) = envelope.mailbox() else {
                    return followup;
                };
                let ttl = u64::from(envelope.ttl_secs).min(self.retention_secs);
                match self
                    .store
                    .mailbox_put(&mailbox.0, &envelope.id(), &bytes, now_secs(), ttl)
                {
                    Ok(outcome) if !outcome.duplicate => {
                        self.stored_followup(&mailbox, &bytes, &mut followup);
                        // Already gossiped: only the owner push is left to do.
                        followup.publish.clear();
                    }
                    Ok(_) | Err(StoreError::MailboxNotRegistered) => {}
                    Err(e) => debug!("gossiped envelope not stored: {e}"),
                }
            }
            Some(pb::gossip::Kind::Tombstone(bytes)) => {
                let Ok(ack) = MailboxAck::from_bytes(&bytes) else {
                    self.metrics.acks_rejected.inc();
                    return followup;
                };
                // Addressed to the relay that accepted it; the owner's signature is what counts.
                if ack
                    .verify(&ack.mailbox, &ack.relay_key, now_secs(), ACK_WINDOW_SECS)
                    .is_err()
                {
                    self.metrics.acks_rejected.inc();
                    return followup;
                }
                if let Ok(n) = self.store.mailbox_delete(&ack.mailbox.0, &ack.message_ids) {
                    self.metrics.relay_acked.inc_by(n as u64);
                }
            }
            None => {}
        }
        followup
    }

    fn challenge(&self, peer: PeerId) -> Response {
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
    fn verify_proof(&self, peer: &PeerId, bytes: &[u8]) -> Result<MailboxId, Response> {
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

    fn register(&self, peer: PeerId, bytes: &[u8]) -> Response {
        let mailbox = match self.verify_proof(&peer, bytes) {
            Ok(m) => m,
            Err(r) => {
                self.metrics.envelopes_rejected.inc();
                return r;
            }
        };
        if let Err(e) = self.store.mailbox_register(&mailbox.0, now_secs()) {
            warn!("registering a mailbox failed: {e}");
            return Response::rejected(RejectCode::Internal, "storage error");
        }
        debug!(%peer, "mailbox registered");
        lock(&self.subscribers).insert(mailbox, peer);
        Response::accepted(false)
    }

    fn fetch(&self, peer: PeerId, f: &pb::FetchMailbox) -> Response {
        let mailbox = match self.verify_proof(&peer, &f.registration) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let limit = (f.limit as usize).clamp(1, MAX_PAGE);
        let after = (f.after_seq > 0).then_some(f.after_seq);
        match self.store.mailbox_page(&mailbox.0, after, limit) {
            Ok(page) => {
                lock(&self.subscribers).insert(mailbox, peer);
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

    fn ack(&self, bytes: &[u8]) -> (Response, Followup) {
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
                    publish: vec![(shard_topic(&ack.mailbox), tombstone)],
                };
                (response, followup)
            }
            Err(e) => {
                warn!("mailbox delete failed: {e}");
                let r = Response::rejected(RejectCode::Internal, "storage error");
                (r, Followup::default())
            }
        }
    }

    /// Deletes expired envelopes (and frees their disk).
    pub fn purge(&self) {
        match self.store.purge_expired(now_secs()) {
            Ok(report) => {
                self.metrics.relay_expired.inc_by(report.mailbox_messages);
                debug!(?report, "purged expired mailbox entries");
            }
            Err(e) => warn!("purging expired mailbox entries: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokenim_crypto::Identity;

    use super::*;

    fn kind(r: &Response) -> &pb::response::Kind {
        r.kind.as_ref().expect("a response kind")
    }

    fn rejected_code(r: &Response) -> RejectCode {
        match kind(r) {
            pb::response::Kind::Rejected(x) => RejectCode::try_from(x.code).expect("code"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn forged_foreign_and_stale_acks_are_rejected_and_delete_nothing() {
        let store = Store::in_memory();
        let relay = Relay::new(
            store.clone(),
            SigningKey::from_bytes(&[7; 32]),
            3600,
            Metrics::default(),
        );
        let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        let peer = PeerId::random();
        let owner = Identity::from_seed([1; 32]).mailbox_key(0);
        let attacker = Identity::from_seed([2; 32]).mailbox_key(0);
        let now = now_secs();
        let envelope = Envelope::new(owner.id(), vec![0; 512], now, 600);
        let bytes = prost::Message::encode_to_vec(&envelope);

        // Unregistered mailboxes are refused; registered ones get a receipt that verifies.
        let (r, _) = relay.handle(
            peer,
            pb::request::Kind::Store(pb::StoreEnvelope {
                envelopes: vec![bytes.clone()],
            }),
        );
        assert_eq!(rejected_code(&r), RejectCode::UnknownMailbox);
        store
            .mailbox_register(&owner.id().0, now)
            .expect("register");
        let (r, _) = relay.handle(
            peer,
            pb::request::Kind::Store(pb::StoreEnvelope {
                envelopes: vec![bytes],
            }),
        );
        let pb::response::Kind::Stored(stored) = kind(&r) else {
            panic!("not stored: {r:?}")
        };
        CustodyReceipt::from_bytes(&stored.receipt)
            .expect("receipt")
            .verify(&relay_key, &owner.id(), &[envelope.id()])
            .expect("receipt verifies");

        let ids = [envelope.id()];
        let mut forged = attacker.sign_ack(&relay_key, &ids, now);
        forged.mailbox = owner.id();
        let for_other_relay = owner.sign_ack(&[9; 32], &ids, now);
        let stale = owner.sign_ack(&relay_key, &ids, now - 2 * ACK_WINDOW_SECS);
        for bad in [
            forged.to_bytes(),
            for_other_relay.to_bytes(),
            stale.to_bytes(),
            vec![1, 2, 3],
        ] {
            let (r, _) = relay.handle(peer, pb::request::Kind::Ack(pb::AckMailbox { ack: bad }));
            assert!(matches!(
                rejected_code(&r),
                RejectCode::Forbidden | RejectCode::Malformed
            ));
        }
        assert_eq!(relay.metrics.acks_rejected.get(), 4);
        assert_eq!(
            store.mailbox_usage(&owner.id().0).expect("usage").messages,
            1,
            "nothing deleted"
        );

        let good = owner.sign_ack(&relay_key, &ids, now);
        let (r, _) = relay.handle(
            peer,
            pb::request::Kind::Ack(pb::AckMailbox {
                ack: good.to_bytes(),
            }),
        );
        assert!(matches!(kind(&r), pb::response::Kind::Acked(a) if a.deleted == 1));
        assert_eq!(
            store.mailbox_usage(&owner.id().0).expect("usage").messages,
            0
        );
    }

    #[test]
    fn a_batch_is_stored_whole_under_one_receipt_or_not_at_all() {
        let store = Store::in_memory();
        let key = SigningKey::from_bytes(&[7; 32]);
        let relay_key = key.verifying_key().to_bytes();
        let relay = Relay::new(store.clone(), key, 3600, Metrics::default());
        let owner = Identity::from_seed([1; 32]).mailbox_key(0);
        let other = Identity::from_seed([2; 32]).mailbox_key(0);
        let now = now_secs();
        for m in [&owner, &other] {
            store.mailbox_register(&m.id().0, now).expect("register");
        }
        let envelope =
            |m: &tokenim_crypto::MailboxKey, i: u8| Envelope::new(m.id(), vec![i; 512], now, 600);
        let store_req = |envelopes: Vec<&Envelope>| {
            pb::request::Kind::Store(pb::StoreEnvelope {
                envelopes: envelopes
                    .into_iter()
                    .map(prost::Message::encode_to_vec)
                    .collect(),
            })
        };
        let usage = |m: &tokenim_crypto::MailboxKey| {
            store.mailbox_usage(&m.id().0).expect("usage").messages
        };
        let (a, b, c) = (
            envelope(&owner, 1),
            envelope(&owner, 2),
            envelope(&other, 3),
        );

        // Two mailboxes in one request, garbage, or nothing: refused, nothing stored.
        let (r, _) = relay.handle(PeerId::random(), store_req(vec![&a, &c]));
        assert_eq!(rejected_code(&r), RejectCode::Malformed);
        let garbage = pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: vec![prost::Message::encode_to_vec(&a), vec![9; 40]],
        });
        let (r, _) = relay.handle(PeerId::random(), garbage);
        assert_eq!(rejected_code(&r), RejectCode::Malformed);
        let (r, _) = relay.handle(PeerId::random(), store_req(vec![]));
        assert_eq!(rejected_code(&r), RejectCode::Malformed);
        assert_eq!(usage(&owner) + usage(&other), 0);

        // One receipt covers the batch; a repeat is all duplicates and is receipted again.
        for expected_duplicates in [0, 2] {
            let (r, followup) = relay.handle(PeerId::random(), store_req(vec![&a, &b]));
            let pb::response::Kind::Stored(stored) = kind(&r) else {
                panic!("not stored: {r:?}")
            };
            assert_eq!(stored.duplicates, expected_duplicates);
            assert_eq!(followup.publish.len(), 2 - expected_duplicates as usize);
            CustodyReceipt::from_bytes(&stored.receipt)
                .expect("receipt")
                .verify(&relay_key, &owner.id(), &[a.id(), b.id()])
                .expect("covers both");
        }
        assert_eq!(usage(&owner), 2);
    }

    #[test]
    fn pages_of_large_envelopes_fit_one_frame() {
        let store = Store::in_memory();
        let key = SigningKey::from_bytes(&[7; 32]);
        let relay_key = key.verifying_key().to_bytes();
        let relay = Relay::new(store.clone(), key, 3600, Metrics::default());
        let owner = Identity::from_seed([1; 32]).mailbox_key(0);
        let now = now_secs();
        store
            .mailbox_register(&owner.id().0, now)
            .expect("register");
        for i in 0..40u8 {
            let e = Envelope::new(owner.id(), vec![i; 32 * 1024], now, 600);
            let bytes = prost::Message::encode_to_vec(&e);
            store
                .mailbox_put(&owner.id().0, &e.id(), &bytes, now, 600)
                .expect("put");
        }
        let peer = PeerId::random();
        let (r, _) = relay.handle(peer, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
        let pb::response::Kind::Challenge(c) = kind(&r) else {
            panic!("no challenge")
        };
        let proof = owner.sign_registration(&relay_key, &c.challenge, now);
        let (mut after_seq, mut total) = (0, 0);
        loop {
            let fetch = pb::FetchMailbox {
                registration: proof.to_bytes(),
                after_seq,
                limit: MAX_PAGE as u32,
            };
            let (r, _) = relay.handle(peer, pb::request::Kind::Fetch(fetch));
            assert!(prost::Message::encoded_len(&r) <= crate::wire::MAX_FRAME_BYTES);
            let pb::response::Kind::Page(page) = kind(&r) else {
                panic!("no page: {r:?}")
            };
            assert!(!page.envelopes.is_empty() && page.envelopes.len() < 40);
            total += page.envelopes.len();
            after_seq = page.envelopes.last().map_or(after_seq, |e| e.seq);
            if !page.more {
                break;
            }
        }
        assert_eq!(total, 40);
    }

    #[test]
    fn fetching_needs_a_fresh_proof_for_this_peer() {
        let store = Store::in_memory();
        let relay = Relay::new(
            store,
            SigningKey::from_bytes(&[7; 32]),
            3600,
            Metrics::default(),
        );
        let relay_key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        let owner = Identity::from_seed([1; 32]).mailbox_key(0);
        let (alice, mallory) = (PeerId::random(), PeerId::random());
        let (r, _) = relay.handle(alice, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
        let pb::response::Kind::Challenge(c) = kind(&r) else {
            panic!("no challenge")
        };
        let proof = owner
            .sign_registration(&relay_key, &c.challenge, now_secs())
            .to_bytes();
        let register = |p: &Vec<u8>| {
            pb::request::Kind::Register(pb::RegisterMailbox {
                registration: p.clone(),
            })
        };
        // The proof is bound to the challenge given to alice's connection.
        let (r, _) = relay.handle(mallory, register(&proof));
        assert_eq!(rejected_code(&r), RejectCode::Forbidden);
        let (r, _) = relay.handle(alice, register(&proof));
        assert!(matches!(kind(&r), pb::response::Kind::Accepted(_)));
        let fetch = pb::FetchMailbox {
            registration: proof,
            after_seq: 0,
            limit: 10,
        };
        let (r, _) = relay.handle(alice, pb::request::Kind::Fetch(fetch.clone()));
        assert!(
            matches!(kind(&r), pb::response::Kind::Page(p) if p.envelopes.is_empty() && !p.more)
        );
        relay.peer_disconnected(&alice);
        let (r, _) = relay.handle(alice, pb::request::Kind::Fetch(fetch));
        assert_eq!(
            rejected_code(&r),
            RejectCode::Forbidden,
            "challenges die with the connection"
        );
    }
}
