//! The personal node's side of relay mailboxes: storing envelopes at a recipient's home
//! relays when it cannot be reached directly, and draining this node's own mailbox from its
//! home relays (register by challenge, page through, hand each envelope to the engine, ack).

use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::{CustodyReceipt, Envelope, Identity, MAX_ACK_IDS};
use tracing::{debug, info, warn};

use crate::engine::{EngineHandle, now_secs};
use crate::network::{DeliverError, NetworkHandle};
use crate::relay::{MAX_PAGE, relay_key_of};
use crate::wire::{self, pb};

/// A relay that keeps mailboxes for someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRoute {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

impl RelayRoute {
    /// Parses `…/p2p/<peer id>`.
    pub fn parse(addr: &str) -> Option<Self> {
        let full: Multiaddr = addr.parse().ok()?;
        let peer = crate::network::peer_of(&full)?;
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

/// Hands `envelope` to every relay; returns the receipts that verified.
pub async fn store_at_relays(
    net: &NetworkHandle,
    relays: &[RelayRoute],
    envelope: &[u8],
) -> Vec<CustodyReceipt> {
    let Ok(parsed) = Envelope::decode_checked(envelope) else {
        return Vec::new();
    };
    let (Ok(mailbox), id) = (parsed.mailbox(), parsed.id()) else {
        return Vec::new();
    };
    let requests = relays.iter().map(|r| async move {
        let request = wire::Request {
            kind: Some(pb::request::Kind::Store(pb::StoreEnvelope {
                envelope: envelope.to_vec(),
            })),
        };
        let response = net.request(r.peer, r.addrs.clone(), request).await;
        let key = relay_key_of(&r.peer)?;
        match response {
            Ok(wire::Response {
                kind: Some(pb::response::Kind::Stored(s)),
            }) => {
                let receipt = CustodyReceipt::from_bytes(&s.receipt).ok()?;
                // A receipt that does not verify is worth nothing: the relay did not sign for it.
                match receipt.verify(&key, &id, &mailbox) {
                    Ok(()) => Some(receipt),
                    Err(e) => {
                        warn!(relay = %r.peer, "relay sent an invalid custody receipt: {e}");
                        None
                    }
                }
            }
            Ok(other) => {
                debug!(relay = %r.peer, ?other, "relay did not store");
                None
            }
            Err(e) => {
                debug!(relay = %r.peer, ?e, "relay unreachable");
                None
            }
        }
    });
    let receipts: Vec<_> = futures::future::join_all(requests)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Also on the mailbox's shard topic, so relays of the mesh that host it keep a copy.
    net.publish(
        crate::relay::shard_topic(&mailbox),
        crate::relay::gossip_envelope(envelope.to_vec()),
    );
    receipts
}

/// Registers this node's mailbox at `relay` and drains it.
pub async fn sync_mailbox(
    net: NetworkHandle,
    engine: EngineHandle,
    identity: std::sync::Arc<Identity>,
    relay: RelayRoute,
) -> Result<usize, String> {
    let relay_key = relay_key_of(&relay.peer).ok_or("relay peer id has no Ed25519 key")?;
    let ask = |kind| wire::Request { kind: Some(kind) };
    let challenge = match net
        .request(
            relay.peer,
            relay.addrs.clone(),
            ask(pb::request::Kind::GetChallenge(pb::GetChallenge {})),
        )
        .await
        .map_err(describe)?
    {
        wire::Response {
            kind: Some(pb::response::Kind::Challenge(c)),
        } => c.challenge,
        other => {
            return Err(format!(
                "unexpected answer to a challenge request: {other:?}"
            ));
        }
    };
    let mailbox_key = identity.mailbox_key(0);
    let proof = mailbox_key
        .sign_registration(&relay_key, &challenge, now_secs())
        .to_bytes();
    match net
        .request(
            relay.peer,
            Vec::new(),
            ask(pb::request::Kind::Register(pb::RegisterMailbox {
                registration: proof.clone(),
            })),
        )
        .await
        .map_err(describe)?
    {
        wire::Response {
            kind: Some(pb::response::Kind::Accepted(_)),
        } => {}
        other => return Err(format!("registration refused: {other:?}")),
    }
    let mut after_seq = 0;
    let mut drained = 0;
    loop {
        let fetch = pb::FetchMailbox {
            registration: proof.clone(),
            after_seq,
            limit: MAX_PAGE as u32,
        };
        let page = match net
            .request(relay.peer, Vec::new(), ask(pb::request::Kind::Fetch(fetch)))
            .await
            .map_err(describe)?
        {
            wire::Response {
                kind: Some(pb::response::Kind::Page(p)),
            } => p,
            other => return Err(format!("fetch refused: {other:?}")),
        };
        let mut done = Vec::new();
        for e in &page.envelopes {
            after_seq = after_seq.max(e.seq);
            if engine.ingest(relay.peer, e.envelope.clone()).await
                && let Ok(env) = Envelope::decode_checked(&e.envelope)
            {
                done.push(env.id());
            }
        }
        drained += done.len();
        ack(&net, &identity, &relay, &relay_key, &done).await;
        if !page.more {
            break;
        }
    }
    info!(relay = %relay.peer, drained, "mailbox synced");
    Ok(drained)
}

/// Tells `relay` to delete `ids` (signed by the mailbox key), in batches.
pub async fn ack(
    net: &NetworkHandle,
    identity: &Identity,
    relay: &RelayRoute,
    relay_key: &[u8; 32],
    ids: &[[u8; 32]],
) {
    let key = identity.mailbox_key(0);
    for chunk in ids.chunks(MAX_ACK_IDS) {
        let ack = key.sign_ack(relay_key, chunk, now_secs());
        let request = wire::Request {
            kind: Some(pb::request::Kind::Ack(pb::AckMailbox {
                ack: ack.to_bytes(),
            })),
        };
        match net.request(relay.peer, relay.addrs.clone(), request).await {
            Ok(wire::Response {
                kind: Some(pb::response::Kind::Acked(a)),
            }) => {
                debug!(relay = %relay.peer, deleted = a.deleted, "acked");
            }
            other => {
                warn!(relay = %relay.peer, ?other, "ack not taken; the relay keeps the envelopes until the next sync")
            }
        }
    }
}

fn describe(e: DeliverError) -> String {
    format!("{e:?}")
}
