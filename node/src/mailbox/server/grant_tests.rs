//! Write grants at the relay: who may store into a mailbox, and how much each may add.

use tokenim_crypto::Identity;

use super::*;

const POLICY: GrantPolicy = GrantPolicy {
    required: true,
    first_contact_max: 3,
    per_grant_max: 5,
};

struct Rig {
    relay: Relay,
    relay_key: [u8; 32],
    owner: tokenim_crypto::MailboxKey,
    seq: u32,
}

impl Rig {
    fn new() -> Self {
        let store = Store::in_memory();
        let key = SigningKey::from_bytes(&[7; 32]);
        let relay_key = key.verifying_key().to_bytes();
        let owner = Identity::from_seed([1; 32]).mailbox_key(0);
        store
            .mailbox_register(&owner.id().0, now_secs())
            .expect("register");
        let relay = Relay::new(store, key, 3600, Metrics::default()).with_grants(POLICY);
        Self {
            relay,
            relay_key,
            owner,
            seq: 0,
        }
    }

    /// Stores `n` fresh envelopes for the owner's mailbox with `grant`: the rejection code, if
    /// refused.
    fn store(&mut self, n: usize, grant: Vec<u8>) -> Option<RejectCode> {
        let now = now_secs();
        let envelopes = (0..n)
            .map(|_| {
                self.seq += 1;
                let mut body = vec![0; 512];
                body[..4].copy_from_slice(&self.seq.to_be_bytes());
                prost::Message::encode_to_vec(&Envelope::new(self.owner.id(), body, now, 600))
            })
            .collect();
        let store = pb::StoreEnvelope { envelopes, grant };
        let (r, _) = self
            .relay
            .handle(PeerId::random(), pb::request::Kind::Store(store));
        match r.kind {
            Some(pb::response::Kind::Stored(_)) => None,
            Some(pb::response::Kind::Rejected(x)) => RejectCode::try_from(x.code).ok(),
            other => panic!("{other:?}"),
        }
    }

    /// The owner drains its mailbox (one page is enough to count as a drain).
    fn drain(&self) {
        let peer = PeerId::random();
        let (r, _) = self
            .relay
            .handle(peer, pb::request::Kind::GetChallenge(pb::GetChallenge {}));
        let Some(pb::response::Kind::Challenge(c)) = r.kind else {
            panic!("no challenge")
        };
        let proof = self
            .owner
            .sign_registration(&self.relay_key, &c.challenge, now_secs());
        let fetch = pb::FetchMailbox {
            registration: proof.to_bytes(),
            after_seq: 0,
            limit: 1,
        };
        let (r, _) = self.relay.handle(peer, pb::request::Kind::Fetch(fetch));
        assert!(matches!(r.kind, Some(pb::response::Kind::Page(_))), "{r:?}");
    }
}

#[test]
fn without_a_valid_grant_of_the_mailbox_nothing_is_stored() {
    let mut r = Rig::new();
    let far = u64::MAX;
    let stranger = Identity::from_seed([2; 32]).mailbox_key(0);
    let mut other_mailbox = stranger.contact_grant(&[5; 32], far);
    let expired = r.owner.contact_grant(&[5; 32], now_secs() - 1);
    other_mailbox.mailbox = r.owner.id(); // a forgery: signed by another key
    for grant in [
        Vec::new(),
        vec![1, 2, 3],
        stranger.contact_grant(&[5; 32], far).to_bytes(),
        other_mailbox.to_bytes(),
        expired.to_bytes(),
    ] {
        assert_eq!(r.store(1, grant), Some(RejectCode::Forbidden));
    }
    assert_eq!(
        r.store(1, r.owner.contact_grant(&[5; 32], far).to_bytes()),
        None
    );
}

#[test]
fn strangers_share_a_small_first_contact_window_that_the_owners_drain_renews() {
    let mut r = Rig::new();
    let card_grant = r.owner.first_contact_grant(u64::MAX).to_bytes();
    assert_eq!(r.store(2, card_grant.clone()), None);
    assert_eq!(r.store(1, card_grant.clone()), None);
    assert_eq!(r.store(1, card_grant.clone()), Some(RejectCode::Quota));
    // A contact's own grant is not held back by strangers.
    let contact = r.owner.contact_grant(&[5; 32], u64::MAX).to_bytes();
    assert_eq!(r.store(1, contact), None);
    r.drain();
    assert_eq!(r.store(3, card_grant), None);
}

#[test]
fn one_contact_cannot_take_more_than_its_share() {
    let mut r = Rig::new();
    let greedy = r.owner.contact_grant(&[5; 32], u64::MAX).to_bytes();
    let other = r.owner.contact_grant(&[6; 32], u64::MAX).to_bytes();
    assert_eq!(r.store(5, greedy.clone()), None);
    assert_eq!(r.store(1, greedy.clone()), Some(RejectCode::Quota));
    assert_eq!(r.store(5, other), None);
    r.drain();
    assert_eq!(r.store(1, greedy), None);
}
