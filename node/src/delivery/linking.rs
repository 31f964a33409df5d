//! Linking devices to this account (docs/protocol.md §12): the account's first device issues
//! one-time link offers, answers a new device's link request with the next signed device list
//! and its card, and revokes devices; a new device sends the request. After a link or a
//! revocation the first device tells every device (`kinds/device_sync.rs`), and gives a new
//! device the account's groups and, if the user asked, recent history.

use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::{CryptoError, DeviceList, LinkAccept, LinkOffer, LinkRequest};
use tokenim_store::{ContactRecord, ContactState};
use tracing::info;

use crate::delivery::Delivery;
use crate::delivery::devices::HistoryScope;
use crate::delivery::error::DeliveryError;
use crate::event::NodeEvent;
use crate::net::DeliverError;
use crate::net::wire::{self, RejectCode, pb};

/// The name of the account's first device in a list it signs the first time.
const FIRST_DEVICE: &str = "first device";
/// Addresses a link offer names (the format allows 8).
const OFFER_ADDRS: usize = 8;

fn not_first() -> DeliveryError {
    DeliveryError::NotAllowed("only the account's first device links and revokes devices".into())
}

impl Delivery {
    /// The account's device list: the one held, or this node alone.
    pub(in crate::delivery) fn device_list(&self) -> Result<DeviceList, DeliveryError> {
        match self.devices.list() {
            Some(list) => Ok(list.clone()),
            None => DeviceList::genesis(&self.me, FIRST_DEVICE, self.clock.now_secs())
                .map_err(DeliveryError::internal),
        }
    }

    /// A one-time link offer valid for `ttl_secs`, naming where this node can be dialled.
    pub(in crate::delivery) async fn issue_link(
        &mut self,
        ttl_secs: u64,
        history: HistoryScope,
    ) -> Result<(String, u64), DeliveryError> {
        if self.devices.is_linked() {
            return Err(not_first());
        }
        let info = self
            .net
            .info()
            .await
            .map_err(|_| DeliveryError::ShuttingDown)?;
        let addrs = info
            .listen_addrs
            .iter()
            .take(OFFER_ADDRS)
            .map(ToString::to_string)
            .collect();
        let now = self.clock.now_secs();
        let offer = LinkOffer::new(
            self.me.public(),
            info.peer_id.to_bytes(),
            addrs,
            ttl_secs,
            now,
        )
        .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let uri = offer.to_uri().to_string();
        let expires_at = offer.expires_at();
        self.devices.add_offer(offer, history, now);
        Ok((uri, expires_at))
    }

    /// A new device's link request (on the account's first device): the next list, with it,
    /// and the account's contacts.
    pub(in crate::delivery) fn on_link(
        &mut self,
        bytes: &[u8],
        device_card: &str,
    ) -> wire::Response {
        let refuse = |detail: &str| wire::Response::rejected(RejectCode::Forbidden, detail);
        if self.devices.is_linked() {
            return refuse("this device does not link devices: its account's first device does");
        }
        let Ok(request) = LinkRequest::from_bytes(bytes) else {
            return wire::Response::rejected(RejectCode::Malformed, "link request");
        };
        let now = self.clock.now_secs();
        let (offer, history) = match self.devices.take_offer(&request.offer_id, now) {
            Ok(o) => o,
            Err(why) => return refuse(why.as_str()),
        };
        if let Err(e) = request.verify(&offer, now) {
            return refuse(&format!("link request: {e}"));
        }
        // The proof binds the device key; its card must be that device's.
        let card_ok = super::cards::parse_stored_card(device_card)
            .is_ok_and(|c| c.identity == request.device);
        if !card_ok {
            return refuse("the device card is not the requesting device's");
        }
        let linked = self.device_list().and_then(|list| {
            list.with_device(&self.me, request.device.clone(), &request.name, now)
                .map_err(|e| DeliveryError::NotAllowed(e.to_string()))
        });
        let list = match linked {
            Ok(l) => l,
            Err(e) => return refuse(&e.to_string()),
        };
        let device = request.device.identity_key;
        let stored = self
            .devices
            .set_list(&self.store, list.clone())
            .and_then(|()| {
                self.devices
                    .set_card(&self.store, device, Some(device_card.to_owned()))
            })
            .map_err(DeliveryError::from);
        let answer = stored.and_then(|()| {
            self.cards.invalidate_mine();
            Ok((self.build_card(now)?, self.synced_contacts()?))
        });
        let (card, contacts) = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "linking a device");
                return wire::Response::rejected(RejectCode::Internal, "storage error");
            }
        };
        info!(version = list.version(), "device linked");
        self.events.emit(NodeEvent::DeviceLinked(device));
        // Queued now, read by the new device once it has the answer below.
        self.share_devices(None);
        self.share_groups();
        if let Some(card) = self.devices.own_card(&device) {
            self.hand_over_history(&card, history);
        }
        let accept = LinkAccept {
            device_list: list,
            account_card: card,
        };
        wire::Response {
            kind: Some(pb::response::Kind::Linked(pb::Linked {
                accept: accept.to_bytes(),
                contacts,
            })),
        }
    }

    /// The account's accepted contacts, for a new device.
    fn synced_contacts(&self) -> Result<Vec<pb::SyncedContact>, DeliveryError> {
        Ok(self
            .store
            .list_contacts()?
            .into_iter()
            .filter(|c| c.state == ContactState::Accepted && !c.card_uri.is_empty())
            .map(|c| pb::SyncedContact {
                card: c.card_uri,
                name: c.name.unwrap_or_default(),
            })
            .collect())
    }

    /// Links this (new) node to the account whose first device issued `uri`.
    pub(in crate::delivery) async fn join_account(
        &mut self,
        uri: &str,
        name: &str,
    ) -> Result<DeviceList, DeliveryError> {
        if self.devices.list().is_some() {
            return Err(DeliveryError::NotAllowed(
                "this node already belongs to an account with devices".into(),
            ));
        }
        let now = self.clock.now_secs();
        let offer = LinkOffer::from_uri(uri, now).map_err(|e| match e {
            CryptoError::LinkExpired { .. } => DeliveryError::Invalid(
                "this link has expired: ask the other device for a new one".into(),
            ),
            e => DeliveryError::Invalid(format!("not a device link: {e}")),
        })?;
        let me = self.me.public();
        if offer.account().identity_key == me.identity_key {
            return Err(DeliveryError::Invalid("a device cannot link itself".into()));
        }
        let request = LinkRequest::new(&offer, &self.me, name)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let peer = PeerId::from_bytes(offer.peer_id())
            .map_err(|e| DeliveryError::Invalid(format!("link names no valid peer: {e}")))?;
        let addrs: Vec<Multiaddr> = offer
            .addrs()
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let my_card = self.my_card().await?;
        let response = self
            .net
            .request(
                peer,
                addrs,
                wire::Request::link(request.to_bytes(), my_card),
            )
            .await
            .map_err(|e| match e {
                DeliverError::Unreachable(why) => {
                    DeliveryError::Unreachable(format!("the linking device: {why}"))
                }
                DeliverError::ShuttingDown => DeliveryError::ShuttingDown,
            })?;
        let (accept, contacts) = match response.kind {
            Some(pb::response::Kind::Linked(l)) => (
                LinkAccept::from_bytes(&l.accept)
                    .map_err(|e| DeliveryError::Invalid(format!("link answer: {e}")))?,
                l.contacts,
            ),
            Some(pb::response::Kind::Rejected(r)) if r.detail.contains("already used") => {
                return Err(DeliveryError::NotAllowed(r.detail));
            }
            Some(pb::response::Kind::Rejected(r)) => {
                return Err(DeliveryError::Invalid(format!(
                    "link refused: {}",
                    r.detail
                )));
            }
            _ => return Err(DeliveryError::Invalid("unexpected link answer".into())),
        };
        accept
            .check(&offer, &me, now)
            .map_err(|e| DeliveryError::Invalid(format!("link answer: {e}")))?;
        let list = accept.device_list.clone();
        self.devices.set_linked(&self.store, accept)?;
        self.take_contacts(contacts, now)?;
        self.events.emit(NodeEvent::DeviceLinked(me.identity_key));
        Ok(list)
    }

    /// The account's contacts, from its first device: accepted here too (the user accepted
    /// them there), so that their messages are taken on this device.
    fn take_contacts(
        &mut self,
        contacts: Vec<pb::SyncedContact>,
        now: u64,
    ) -> Result<(), DeliveryError> {
        let mut txn = self.store.txn();
        for c in contacts {
            let Ok(card) = super::cards::parse_stored_card(&c.card) else {
                continue;
            };
            let key = card.identity.identity_key;
            self.sessions.set_known(&key, true);
            txn = txn.put_contact(&ContactRecord {
                identity_key: key,
                name: Some(c.name).filter(|n| !n.is_empty()),
                card_uri: c.card,
                added_at: now,
                updated_at: now,
                state: ContactState::Accepted,
                write_grant: Vec::new(),
                device_cards: Vec::new(),
            });
        }
        txn.commit()?;
        Ok(())
    }

    /// Takes `device` off the account's list (on its first device).
    pub(in crate::delivery) fn revoke_device(
        &mut self,
        device: [u8; 32],
    ) -> Result<DeviceList, DeliveryError> {
        if self.devices.is_linked() {
            return Err(not_first());
        }
        let list = self.device_list()?;
        let now = self.clock.now_secs();
        let list = list
            .without_device(&self.me, &device, now)
            .map_err(|e| match e {
                CryptoError::DeviceNotListed => {
                    DeliveryError::NotFound(format!("device {}", hex::encode(device)))
                }
                CryptoError::PrimaryDevice => {
                    DeliveryError::Invalid("the account's first device cannot be revoked".into())
                }
                e => DeliveryError::internal(e),
            })?;
        let revoked = self.devices.own_card(&device);
        self.devices.set_list(&self.store, list.clone())?;
        self.devices.set_card(&self.store, device, None)?;
        self.cards.invalidate_mine();
        self.share_devices(revoked);
        info!(version = list.version(), "device revoked");
        self.events.emit(NodeEvent::DeviceRevoked(device));
        Ok(list)
    }
}
