//! Starting deliveries: the recipient's node first, its home relays when that fails.

use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, warn};

use super::attempt::{Attempt, Outcome};
use super::cards::{node_route, relay_routes};
use super::error::DeliveryError;
use super::ids::{IdentityKey, OutboxId};
use super::{Delivery, FIRST_RETRY};
use crate::mailbox::{RelayRoute, StoreBatches, store_at_relays};
use crate::net::{DeliverError, NetworkHandle, wire};

impl Delivery {
    pub(super) fn start_due_deliveries(&mut self) {
        let now = Instant::now();
        let mut deferred = Vec::new();
        while let Some(id) = self.schedule.pop_due(now) {
            match self.start_delivery(id) {
                Ok(true) => {}
                Ok(false) => deferred.push(id),
                Err(e) => {
                    warn!(outbox = %id, error = %e, "cannot start delivery");
                    deferred.push(id);
                }
            }
        }
        // Entries held back by the per-peer limit wait for that peer's next result.
        for id in deferred {
            self.schedule.defer(id, now + FIRST_RETRY);
        }
    }

    /// Ok(false) when the peer's in-flight limit defers the entry.
    fn start_delivery(&mut self, id: OutboxId) -> Result<bool, DeliveryError> {
        let Some(entry) = self.store.get_outbox(&id.0)? else {
            self.schedule.unschedule(&id);
            return Ok(true);
        };
        if entry.expires_at_ms <= self.clock.now_ms() {
            self.expire(&entry);
            return Ok(true);
        }
        let peer = IdentityKey(entry.peer);
        if !self.schedule.has_room(&peer) {
            return Ok(false);
        }
        // One read of the contact serves its card and its write grant; a co-member who is not
        // a contact is reached by the group's card.
        let record = self.store.get_contact(&peer.0)?;
        let from_record = match &record {
            Some(r) => self.cards.card_of(&peer, r),
            None => Err(DeliveryError::UnknownContact(peer.address())),
        };
        let routed = from_record
            .or_else(|e| self.groups.card_of(&peer.0).ok_or(e))
            .or_else(|e| self.cards.device(&peer).ok_or(e))
            .or_else(|e| self.devices.own_card(&peer.0).ok_or(e));
        let card = match routed {
            Ok(card) => card,
            Err(e) => {
                // E.g. the contact was deleted: back off until the message expires.
                debug!(outbox = %id, error = %e, "no card to deliver to");
                self.retry_later(entry);
                return Ok(true);
            }
        };
        let direct = node_route(&card);
        let relays = relay_routes(&card);
        if direct.is_none() && relays.is_empty() {
            // A newer card (learnt from the contact's messages) may bring a route.
            warn!("contact's card names neither a node nor a home relay; will retry");
            self.retry_later(entry);
            return Ok(true);
        }
        // Relays that require grants take the contact's own grant, or else its card's
        // first-contact grant.
        let grant = match record {
            Some(c) if !c.write_grant.is_empty() => c.write_grant,
            _ => card.intro_grant.clone(),
        };
        self.schedule.started(&id, peer);
        if let Some((peer_id, _)) = &direct {
            self.peer_ids.insert(*peer_id, peer);
        }
        self.metrics.delivery_attempts.inc();
        let net = self.net.clone();
        let batches = self.store_batches.clone();
        let tx = self.attempts_tx.clone();
        let span = debug_span!("deliver", envelope = %envelope_tag(&entry.envelope));
        tokio::spawn(
            async move {
                let envelope = entry.envelope;
                let outcome = deliver(&net, &batches, direct, &relays, envelope, &grant).await;
                let _ = tx
                    .send(Attempt {
                        outbox_id: id,
                        peer,
                        outcome,
                    })
                    .await;
            }
            .instrument(span),
        );
        Ok(true)
    }

    /// Makes every entry queued for `peer` due now (its node just connected).
    pub(super) fn make_due_now(&mut self, peer: IdentityKey) {
        let now = Instant::now();
        let ids: Vec<_> = self
            .schedule
            .ids()
            .filter(|id| {
                self.store
                    .get_outbox(&id.0)
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.peer == peer.0)
            })
            .collect();
        for id in ids {
            self.schedule.schedule(id, now);
        }
    }
}

/// Direct delivery first; if the recipient's node cannot be reached, its home relays.
async fn deliver(
    net: &NetworkHandle,
    batches: &StoreBatches,
    direct: Option<(PeerId, Vec<Multiaddr>)>,
    relays: &[RelayRoute],
    envelope: Vec<u8>,
    grant: &[u8],
) -> Outcome {
    if let Some((peer, addrs)) = direct {
        let result = net
            .request(peer, addrs, wire::Request::deliver(envelope.clone()))
            .await;
        if relays.is_empty() || !matches!(result, Err(DeliverError::Unreachable(_))) {
            return Outcome::Direct(result);
        }
    }
    Outcome::Relayed(store_at_relays(net, batches, relays, &envelope, grant).await)
}

/// The first bytes of an envelope's id, as it appears in the logs of sender, relay and
/// recipient (never anything of the content).
pub(crate) fn envelope_tag(encoded: &[u8]) -> String {
    tokenim_crypto::Envelope::decode_checked(encoded)
        .map(|e| hex::encode(&e.id()[..8]))
        .unwrap_or_else(|_| "malformed".into())
}
