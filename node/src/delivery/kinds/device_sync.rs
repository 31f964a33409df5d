//! Between one account's own devices: which devices there are (the first device tells the
//! linked ones, so each reaches every other), and the user's decisions about contacts and new
//! message requests (made on any device, applied on all).

use prost::Message as _;
use tokenim_crypto::pb::{ContactDecision, SyncContact, SyncDevices};
use tokenim_crypto::{InnerKind, InnerMessage, LinkAccept};
use tokenim_store::{ContactRecord, ContactState};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::cards::{may_replace, parse_stored_card};
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::IdentityKey;
use crate::delivery::requests::Consent;
use crate::event::NodeEvent;

impl Delivery {
    /// On the first device: tells every linked device (and `also`, a device just revoked) the
    /// account's list, card and the linked devices' cards.
    pub(in crate::delivery) fn share_devices(&mut self, also: Option<tokenim_crypto::ContactCard>) {
        if self.devices.is_linked() {
            return;
        }
        let Some(list) = self.devices.list().cloned() else {
            return;
        };
        let account_card = match self.build_card(self.clock.now_secs()) {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "no card to share with the other devices");
                return;
            }
        };
        let payload = SyncDevices {
            device_list: list.to_bytes(),
            account_card,
            cards: self.devices.cards(),
        }
        .encode_to_vec();
        let inner = super::group::control(InnerKind::SyncDevices, payload, "", self.clock.now_ms());
        for card in self.devices.own_devices().into_iter().chain(also) {
            if let Err(e) = self.queue_control(&card, &inner) {
                debug!(error = %e, "cannot tell a device of the account's devices");
            }
        }
    }

    /// On a linked device: the first device's news of the account's devices.
    pub(in crate::delivery) fn accept_sync_devices(&mut self, inner: &InnerMessage) {
        let Ok(sync) = SyncDevices::decode(inner.payload.as_slice()) else {
            debug!("a device sync does not decode");
            return;
        };
        let Ok(list) = tokenim_crypto::DeviceList::from_bytes(&sync.device_list) else {
            debug!("a device sync's list is not valid");
            return;
        };
        let card_ok = parse_stored_card(&sync.account_card)
            .is_ok_and(|c| c.identity.identity_key == list.account());
        if !card_ok || !self.devices.is_linked() {
            return;
        }
        let cards = sync
            .cards
            .into_iter()
            .filter_map(|uri| {
                let key = parse_stored_card(&uri).ok()?.identity.identity_key;
                list.contains(&key).then_some((key, uri))
            })
            .collect();
        let me = self.me.public().identity_key;
        let still_listed = list.contains(&me);
        let accept = LinkAccept {
            device_list: list,
            account_card: sync.account_card,
        };
        match self.devices.set_synced(&self.store, accept, cards, &me) {
            Ok(Some(true)) if !still_listed => {
                tracing::info!("this device was revoked");
                self.events.emit(NodeEvent::DeviceRevoked(me));
            }
            Ok(Some(_)) => {}
            Ok(None) => debug!("a device sync's list is refused (older, or not the account's)"),
            Err(e) => debug!(error = %e, "cannot keep the account's devices"),
        }
    }

    /// Tells the other devices what the user decided about `peer` here.
    pub(in crate::delivery) fn sync_contact(
        &mut self,
        peer: IdentityKey,
        consent: &Consent,
        record: Option<&ContactRecord>,
    ) {
        let decision = match consent {
            Consent::Accept { .. } => ContactDecision::Accept,
            Consent::Block => ContactDecision::Block,
            Consent::Unblock => ContactDecision::Unblock,
            Consent::Forget => ContactDecision::Forget,
        };
        self.tell_contact(peer, decision, record);
    }

    /// On the first device: a stranger's first message, so the request shows on every device.
    pub(in crate::delivery) fn sync_request(&mut self, record: &ContactRecord) {
        if !self.devices.is_linked() {
            let peer = IdentityKey(record.identity_key);
            self.tell_contact(peer, ContactDecision::Request, Some(record));
        }
    }

    fn tell_contact(
        &mut self,
        peer: IdentityKey,
        decision: ContactDecision,
        record: Option<&ContactRecord>,
    ) {
        let payload = SyncContact {
            peer: peer.0.to_vec(),
            decision: decision as i32,
            card: record.map(|r| r.card_uri.clone()).unwrap_or_default(),
            name: record.and_then(|r| r.name.clone()).unwrap_or_default(),
        };
        self.tell_own_devices(InnerKind::SyncContact, payload.encode_to_vec());
    }

    /// Another device of the account decided about a peer (or heard from a new one): the same
    /// here, without telling the devices again.
    pub(in crate::delivery) fn accept_sync_contact(&mut self, inner: &InnerMessage) {
        if let Err(e) = self.apply_sync_contact(inner) {
            debug!(error = %e, "a contact sync does not apply");
        }
    }

    fn apply_sync_contact(&mut self, inner: &InnerMessage) -> Result<(), DeliveryError> {
        let bad = |why: &str| DeliveryError::Invalid(format!("contact sync: {why}"));
        let sync = SyncContact::decode(inner.payload.as_slice()).map_err(|_| bad("decode"))?;
        let peer =
            IdentityKey(<[u8; 32]>::try_from(sync.peer.as_slice()).map_err(|_| bad("peer"))?);
        if peer.0 == self.me.public().identity_key || self.devices.is_own(&peer.0) {
            return Err(bad("one of this account's devices"));
        }
        let card = if sync.card.is_empty() {
            None
        } else {
            let c = parse_stored_card(&sync.card).map_err(|e| bad(&e.to_string()))?;
            if c.identity.identity_key != peer.0 {
                return Err(bad("the card is someone else's"));
            }
            Some(c)
        };
        let existing = self.standing(&peer)?;
        let name = Some(sync.name).filter(|n| !n.is_empty());
        let decision = ContactDecision::try_from(sync.decision).map_err(|_| bad("decision"))?;
        // The record to keep first (a newer card, a new request), then the decision.
        let now = self.clock.now_secs();
        let newer_card = match (&card, &existing) {
            (Some(c), Some(old)) => may_replace(&old.card_uri, c).is_ok(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let state = match decision {
            ContactDecision::Request if existing.is_some() => return Ok(()),
            ContactDecision::Request => ContactState::Request,
            _ => existing.as_ref().map_or(ContactState::Request, |e| e.state),
        };
        if existing.is_none() || newer_card {
            let mut record = existing.clone().unwrap_or_else(|| ContactRecord {
                identity_key: peer.0,
                name: None,
                card_uri: String::new(),
                added_at: now,
                updated_at: now,
                state,
                write_grant: Vec::new(),
                device_cards: Vec::new(),
            });
            if newer_card {
                record.card_uri = sync.card.clone();
            }
            record.updated_at = now;
            self.store.put_contact(&record)?;
            if decision == ContactDecision::Request {
                self.requests.load(peer, &[], now);
            }
        }
        let consent = match decision {
            ContactDecision::Accept => Consent::Accept { name },
            ContactDecision::Block => Consent::Block,
            ContactDecision::Unblock => Consent::Unblock,
            ContactDecision::Forget => Consent::Forget,
            ContactDecision::Request | ContactDecision::Unspecified => return Ok(()),
        };
        self.apply_consent(peer, consent)?;
        Ok(())
    }
}
