//! The mailbox protocol both roles share: limits, gossipsub shard topics, the relay routes a
//! card names, and the key that signs a relay's receipts.

use std::collections::HashSet;

use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::ed25519_dalek::SigningKey;
use tokenim_crypto::{Envelope, MAX_BATCH_IDS, MailboxAck, MailboxId, RelayedEnvelope};

use crate::net::wire::{MAX_BATCH_BYTES, pb};

/// Acks are accepted within this many seconds of the relay's clock.
pub(crate) const ACK_WINDOW_SECS: u64 = 600;
/// Relayed envelopes are accepted within this many seconds of the signing relay's clock:
/// gossip takes seconds, the rest is for clock skew between relays. Replays within it are
/// harmless (the envelope id dedupes), and after it a captured copy is worthless.
pub(crate) const GOSSIP_WINDOW_SECS: u64 = 300;

/// Most envelopes a relay hands out in one page.
pub(crate) const MAX_PAGE: usize = 256;
/// Most envelope bytes in one page (a page always holds at least one envelope).
pub(crate) const MAX_PAGE_BYTES: usize = MAX_BATCH_BYTES;
/// Most envelopes in one `store` request.
pub(crate) const MAX_STORE_BATCH: usize = 256;
const _: () = assert!(
    MAX_STORE_BATCH <= MAX_BATCH_IDS,
    "one receipt signs a whole batch"
);

/// The Ed25519 key behind a PeerId, which signs that peer's custody receipts.
pub fn relay_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = libp2p::multihash::Multihash::<64>::from_bytes(&peer.to_bytes()).ok()?;
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// Gossipsub shards of the mailbox space; relays join all of them.
pub(crate) const SHARDS: u16 = 64;

/// The gossipsub topic of a mailbox's shard.
pub(crate) fn shard_topic(mailbox: &MailboxId) -> String {
    let shard = u16::from_be_bytes([mailbox.0[0], mailbox.0[1]]) % SHARDS;
    format!("tokenim/mailbox/1/{shard}")
}

pub(crate) fn all_topics() -> Vec<String> {
    (0..SHARDS)
        .map(|s| format!("tokenim/mailbox/1/{s}"))
        .collect()
}

/// The relays of a mesh, by the Ed25519 key behind their PeerId: whose relayed envelopes a
/// relay stores and forwards (see [`check_gossip`]).
pub(crate) type MeshKeys = HashSet<[u8; 32]>;

/// An envelope this relay stored, signed for the rest of its mesh.
pub(crate) fn relayed_gossip(key: &SigningKey, envelope: Vec<u8>, now_secs: u64) -> Vec<u8> {
    let copy = RelayedEnvelope::sign(key, envelope, now_secs);
    prost::Message::encode_to_vec(&pb::Gossip {
        kind: Some(pb::gossip::Kind::Relayed(copy.to_bytes())),
    })
}

/// A relay that keeps mailboxes for someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelayRoute {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
}

impl RelayRoute {
    /// Parses `…/p2p/<peer id>`.
    pub(crate) fn parse(addr: &str) -> Option<Self> {
        let full: Multiaddr = addr.parse().ok()?;
        let peer = crate::net::peer_of(&full)?;
        let dial: Multiaddr = full
            .iter()
            .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            .collect();
        Some(Self {
            peer,
            addrs: vec![dial],
        })
    }
}

/// A shard-topic message that a relay may forward, parsed once.
#[derive(Debug)]
pub(crate) enum ValidGossip {
    /// An envelope that checks (its id is the hash of its ciphertext, its size a bucket),
    /// freshly signed by a relay of the mesh.
    Envelope {
        envelope: Envelope,
        mailbox: MailboxId,
        bytes: Vec<u8>,
    },
    /// A tombstone its mailbox's owner signed, within the ack window.
    Tombstone(MailboxAck),
}

/// Why a shard-topic message was rejected (each counts in its own metric).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InvalidGossip {
    /// Not a message of ours, or an envelope that does not check.
    Envelope,
    /// An envelope no relay of the mesh signed, or signed out of its time window: what a
    /// plain peer, a relay outside the mesh or a replay would publish.
    Unvouched,
    Tombstone,
}

/// Checks a shard-topic message before it goes further; anything but an envelope a relay of
/// `mesh` signed within [`GOSSIP_WINDOW_SECS`] or an owner-signed tombstone is rejected, and
/// costs its sender score. The signer is looked up before its signature is checked: an
/// unknown one costs no signature check.
pub(crate) fn check_gossip(
    data: &[u8],
    now_secs: u64,
    mesh: &MeshKeys,
) -> Result<ValidGossip, InvalidGossip> {
    let gossip =
        <pb::Gossip as prost::Message>::decode(data).map_err(|_| InvalidGossip::Envelope)?;
    match gossip.kind {
        Some(pb::gossip::Kind::Relayed(copy)) => {
            let copy = RelayedEnvelope::from_bytes(&copy).map_err(|_| InvalidGossip::Envelope)?;
            if !mesh.contains(&copy.relay_key) {
                return Err(InvalidGossip::Unvouched);
            }
            copy.verify(now_secs, GOSSIP_WINDOW_SECS)
                .map_err(|_| InvalidGossip::Unvouched)?;
            let bytes = copy.envelope;
            let envelope = Envelope::decode_checked(&bytes).map_err(|_| InvalidGossip::Envelope)?;
            let mailbox = envelope.mailbox().map_err(|_| InvalidGossip::Envelope)?;
            Ok(ValidGossip::Envelope {
                envelope,
                mailbox,
                bytes,
            })
        }
        Some(pb::gossip::Kind::Tombstone(bytes)) => {
            let ack = MailboxAck::from_bytes(&bytes).map_err(|_| InvalidGossip::Tombstone)?;
            ack.verify(&ack.mailbox, &ack.relay_key, now_secs, ACK_WINDOW_SECS)
                .map_err(|_| InvalidGossip::Tombstone)?;
            Ok(ValidGossip::Tombstone(ack))
        }
        None => Err(InvalidGossip::Envelope),
    }
}
