//! The relay role: mailboxes for registered users in the store, signed custody receipts,
//! ownership proofs by challenge, paging, and deletion on the owner's signed acknowledgement.
//! Requests are answered synchronously from the engine task (store calls only, no awaits).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{CustodyReceipt, Envelope, MailboxAck, MailboxId, Registration};
use tokenim_store::{Store, StoreError};
use tracing::{debug, warn};

use crate::engine::now_secs;
use crate::metrics::Metrics;
use crate::wire::{RejectCode, Response, pb};

/// How long a challenge may be used for registration and fetch proofs.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
/// Acks are accepted within this many seconds of the relay's clock.
pub const ACK_WINDOW_SECS: u64 = 600;
/// Largest page a relay hands out.
pub const MAX_PAGE: usize = 256;

/// The Ed25519 key behind a PeerId, which signs that peer's custody receipts.
pub fn relay_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = libp2p::multihash::Multihash::<64>::from_bytes(&peer.to_bytes()).ok()?;
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

pub struct Relay {
    store: Store,
    key: SigningKey,
    relay_key: [u8; 32],
    retention_secs: u64,
    /// Latest challenge handed to each connected peer (dropped on disconnect).
    challenges: HashMap<PeerId, ([u8; 32], Instant)>,
    /// Connected owners to push new envelopes to.
    subscribers: HashMap<MailboxId, PeerId>,
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

/// What the engine must do after a relay request besides answering it.
#[derive(Debug, Default)]
pub struct Followup {
    /// Push a newly stored envelope to its connected owner.
    pub push: Option<(PeerId, Vec<u8>)>,
    /// Publish on a gossipsub topic (new envelopes and tombstones reach the mailbox's other
    /// relays).
    pub publish: Option<(String, Vec<u8>)>,
}

impl Relay {
    pub fn new(store: Store, key: SigningKey, retention_secs: u64, metrics: Metrics) -> Self {
        let relay_key = key.verifying_key().to_bytes();
        Self {
            store,
            key,
            relay_key,
            retention_secs,
            challenges: HashMap::new(),
            subscribers: HashMap::new(),
            metrics,
        }
    }

    pub fn handle(&mut self, peer: PeerId, kind: pb::request::Kind) -> (Response, Followup) {
        use pb::request::Kind;
        match kind {
            Kind::Store(s) => self.store_envelope(&s.envelope),
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

    pub fn peer_disconnected(&mut self, peer: &PeerId) {
        self.challenges.remove(peer);
        self.subscribers.retain(|_, p| p != peer);
    }

    fn store_envelope(&mut self, bytes: &[u8]) -> (Response, Followup) {
        self.metrics.envelopes_in.inc();
        let envelope = match Envelope::decode_checked(bytes) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.envelopes_rejected.inc();
                return (
                    Response::rejected(RejectCode::Malformed, e.to_string()),
                    Followup::default(),
                );
            }
        };
        let Ok(mailbox) = envelope.mailbox() else {
            return (
                Response::rejected(RejectCode::Malformed, "bad mailbox id"),
                Followup::default(),
            );
        };
        let now = now_secs();
        let ttl = u64::from(envelope.ttl_secs).min(self.retention_secs);
        let id = envelope.id();
        let outcome = match self.store.mailbox_put(&mailbox.0, &id, bytes, now, ttl) {
            Ok(o) => o,
            Err(e) => {
                self.metrics.envelopes_rejected.inc();
                let code = match &e {
                    StoreError::MailboxNotRegistered => RejectCode::UnknownMailbox,
                    StoreError::QuotaExceeded { .. } => RejectCode::Quota,
                    _ => {
                        warn!("mailbox put failed: {e}");
                        RejectCode::Internal
                    }
                };
                return (Response::rejected(code, e.to_string()), Followup::default());
            }
        };
        let receipt = CustodyReceipt::sign(&self.key, id, mailbox, now, outcome.expires_at);
        let followup = self.stored_followup(&mailbox, outcome.duplicate, bytes);
        let response = Response {
            kind: Some(pb::response::Kind::Stored(pb::Stored {
                receipt: receipt.to_bytes(),
                duplicate: outcome.duplicate,
            })),
        };
        (response, followup)
    }

    fn stored_followup(&self, mailbox: &MailboxId, duplicate: bool, bytes: &[u8]) -> Followup {
        if duplicate {
            return Followup::default();
        }
        self.metrics.relay_stored.inc();
        Followup {
            push: self
                .subscribers
                .get(mailbox)
                .map(|owner| (*owner, bytes.to_vec())),
            publish: Some((shard_topic(mailbox), gossip_envelope(bytes.to_vec()))),
        }
    }

    /// A message on a shard topic: store envelopes for mailboxes hosted here, apply tombstones.
    /// Gossip has no one to answer, so failures are only counted.
    pub fn on_gossip(&mut self, data: &[u8]) -> Followup {
        let Ok(gossip) = <pb::Gossip as prost::Message>::decode(data) else {
            self.metrics.envelopes_rejected.inc();
            return Followup::default();
        };
        match gossip.kind {
            Some(pb::gossip::Kind::Envelope(bytes)) => {
                let Ok(envelope) = Envelope::decode_checked(&bytes) else {
                    self.metrics.envelopes_rejected.inc();
                    return Followup::default();
                };
                let Ok(mailbox) = envelope.mailbox() else {
                    return Followup::default();
                };
                let ttl = u64::from(envelope.ttl_secs).min(self.retention_secs);
                match self
                    .store
                    .mailbox_put(&mailbox.0, &envelope.id(), &bytes, now_secs(), ttl)
                {
                    Ok(outcome) => {
                        // Already gossiped: only the owner push is left to do.
                        let mut f = self.stored_followup(&mailbox, outcome.duplicate, &bytes);
                        f.publish = None;
                        f
                    }
                    Err(StoreError::MailboxNotRegistered) => Followup::default(),
                    Err(e) => {
                        debug!("gossiped envelope not stored: {e}");
                        Followup::default()
                    }
                }
            }
            Some(pb::gossip::Kind::Tombstone(bytes)) => {
                let Ok(ack) = MailboxAck::from_bytes(&bytes) else {
                    self.metrics.acks_rejected.inc();
                    return Followup::default();
                };
                // Addressed to the relay that accepted it; the owner's signature is what counts.
                if ack
                    .verify(&ack.mailbox, &ack.relay_key, now_secs(), ACK_WINDOW_SECS)
                    .is_err()
                {
                    self.metrics.acks_rejected.inc();
                    return Followup::default();
                }
                if let Ok(n) = self.store.mailbox_delete(&ack.mailbox.0, &ack.message_ids) {
                    self.metrics.relay_acked.inc_by(n as u64);
                }
                Followup::default()
            }
            None => Followup::default(),
        }
    }

    fn challenge(&mut self, peer: PeerId) -> Response {
        let challenge: [u8; 32] = rand::random();
        self.challenges.insert(peer, (challenge, Instant::now()));
        Response {
            kind: Some(pb::response::Kind::Challenge(pb::Challenge {
                challenge: challenge.to_vec(),
            })),
        }
    }

    /// Checks a registration-shaped proof against this peer's latest challenge.
    fn verify_proof(&self, peer: &PeerId, bytes: &[u8]) -> Result<MailboxId, Response> {
        let forbidden = |why: String| Response::rejected(RejectCode::Forbidden, why);
        let Some((challenge, issued)) = self.challenges.get(peer) else {
            return Err(forbidden("ask for a challenge first".into()));
        };
        if issued.elapsed() > CHALLENGE_TTL {
            return Err(forbidden("challenge expired".into()));
        }
        let reg = Registration::from_bytes(bytes).map_err(|e| forbidden(e.to_string()))?;
        reg.verify(
            &self.relay_key,
            challenge,
            now_secs(),
            CHALLENGE_TTL.as_secs(),
        )
        .map_err(|e| forbidden(e.to_string()))?;
        Ok(reg.mailbox)
    }

    fn register(&mut self, peer: PeerId, bytes: &[u8]) -> Response {
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
        self.subscribers.insert(mailbox, peer);
        Response::accepted(false)
    }

    fn fetch(&mut self, peer: PeerId, f: &pb::FetchMailbox) -> Response {
        let mailbox = match self.verify_proof(&peer, &f.registration) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let limit = (f.limit as usize).clamp(1, MAX_PAGE);
        let after = (f.after_seq > 0).then_some(f.after_seq);
        match self.store.mailbox_page(&mailbox.0, after, limit) {
            Ok(page) => {
                self.subscribers.insert(mailbox, peer);
                Response {
                    kind: Some(pb::response::Kind::Page(pb::Page {
                        more: page.len() == limit,
                        envelopes: page
                            .into_iter()
                            .map(|e| pb::PagedEnvelope {
                                seq: e.seq,
                                envelope: e.envelope,
                            })
                            .collect(),
                    })),
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

    fn ack(&mut self, bytes: &[u8]) -> (Response, Followup) {
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
                let acked = pb::Acked {
                    deleted: deleted as u32,
                };
                let response = Response {
                    kind: Some(pb::response::Kind::Acked(acked)),
                };
                let publish = Some((shard_topic(&ack.mailbox), tombstone));
                (
                    response,
                    Followup {
                        push: None,
                        publish,
                    },
                )
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
            Ok(report) => debug!(?report, "purged expired mailbox entries"),
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
        let mut relay = Relay::new(
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
                envelope: bytes.clone(),
            }),
        );
        assert_eq!(rejected_code(&r), RejectCode::UnknownMailbox);
        store
            .mailbox_register(&owner.id().0, now)
            .expect("register");
        let (r, _) = relay.handle(
            peer,
            pb::request::Kind::Store(pb::StoreEnvelope { envelope: bytes }),
        );
        let pb::response::Kind::Stored(stored) = kind(&r) else {
            panic!("not stored: {r:?}")
        };
        CustodyReceipt::from_bytes(&stored.receipt)
            .expect("receipt")
            .verify(&relay_key, &envelope.id(), &owner.id())
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
    fn fetching_needs_a_fresh_proof_for_this_peer() {
        let store = Store::in_memory();
        let mut relay = Relay::new(
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
