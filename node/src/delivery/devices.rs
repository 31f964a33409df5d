//! This account's devices as the delivery core holds them: the signed device list (kept by the
//! account's first device, which alone signs it), the link offers that device issued, and — on a
//! linked device — what the first device answered when it linked. Owns no I/O but the store.

use std::collections::{HashMap, VecDeque};

use tokenim_crypto::{DeviceList, LinkAccept, LinkOffer};
use tokenim_store::{Store, StoreError};

/// `meta` key of the device list on the account's first device.
const LIST_KEY: &str = "devices.list";
/// `meta` key of the `LinkAccept` a linked device got (the account's list and card).
const LINKED_KEY: &str = "devices.linked";
/// `meta` key of the linked devices' own cards (a JSON list of card URIs): on the first device
/// all of them, on a linked device the others.
const CARDS_KEY: &str = "devices.cards";
/// Link offers open at once; the oldest goes first.
const MAX_OFFERS: usize = 8;
/// Used offer ids remembered, so a second use is refused with a clear reason.
const MAX_USED: usize = 64;

/// Why a link request names no usable offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OfferRefusal {
    Unknown,
    Used,
    Expired,
}

impl OfferRefusal {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown link offer (issued by another device, or before a restart)",
            Self::Used => "this link offer was already used",
            Self::Expired => "this link offer has expired",
        }
    }
}

/// How much recent history the first device hands a device linked through an offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryScope {
    /// Messages received in the last this many days (0: none by age).
    pub days: u32,
    /// At most this many messages, newest first (0: none).
    pub messages: u32,
}

impl HistoryScope {
    pub fn is_empty(&self) -> bool {
        self.days == 0 || self.messages == 0
    }
}

#[derive(Default)]
pub(super) struct Devices {
    /// The account's list as this node holds it; None on a node that never linked a device.
    list: Option<DeviceList>,
    /// On a linked (secondary) device: the account's card.
    account_card: Option<String>,
    offers: HashMap<[u8; 32], (LinkOffer, HistoryScope)>,
    used: VecDeque<[u8; 32]>,
    /// Each linked device's own card (how it is reached), by device key; on a linked device,
    /// the other linked devices'.
    cards: HashMap<[u8; 32], String>,
    /// The cards above (or the account's) as parsed: they are read for every send.
    parsed: std::cell::RefCell<super::cards::ParsedCards>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices")
            .field("version", &self.list.as_ref().map(DeviceList::version))
            .field("offers", &self.offers.len())
            .finish_non_exhaustive()
    }
}

/// The account this node is a device of: on a linked device its first device's key, else
/// `me`. Reads the store (for views outside the delivery task).
pub(crate) fn account_key(store: &Store, me: [u8; 32]) -> [u8; 32] {
    store
        .get_meta(LINKED_KEY)
        .ok()
        .flatten()
        .and_then(|b| LinkAccept::from_bytes(&b).ok())
        .map_or(me, |a| a.device_list.account())
}

impl Devices {
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let corrupt = |e: tokenim_crypto::CryptoError| StoreError::Corrupt {
            what: "device list",
            reason: e.to_string(),
        };
        let mut devices = Self::default();
        if let Some(b) = store.get_meta(LINKED_KEY)? {
            let accept = LinkAccept::from_bytes(&b).map_err(corrupt)?;
            devices.list = Some(accept.device_list);
            devices.account_card = Some(accept.account_card);
        } else if let Some(b) = store.get_meta(LIST_KEY)? {
            devices.list = Some(DeviceList::from_bytes(&b).map_err(corrupt)?);
        }
        if let Some(b) = store.get_meta(CARDS_KEY)? {
            let uris: Vec<String> =
                serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                    what: "device cards",
                    reason: e.to_string(),
                })?;
            for uri in uris {
                if let Ok(card) = super::cards::parse_stored_card(&uri) {
                    devices.cards.insert(card.identity.identity_key, uri);
                }
            }
        }
        Ok(devices)
    }

    /// The linked devices' own cards.
    pub(super) fn cards(&self) -> Vec<String> {
        self.cards.values().cloned().collect()
    }

    /// The cards of this account's other devices this node can reach: the linked devices
    /// still listed, and on a linked device the first.
    pub(super) fn own_devices(&self) -> Vec<tokenim_crypto::ContactCard> {
        let Some(list) = &self.list else {
            return Vec::new();
        };
        let mut uris: Vec<([u8; 32], &String)> = self.cards.iter().map(|(k, u)| (*k, u)).collect();
        if let Some(account) = &self.account_card {
            uris.push((list.account(), account));
        }
        let mut parsed = self.parsed.borrow_mut();
        uris.into_iter()
            .filter(|(key, _)| list.contains(key))
            .filter_map(|(key, uri)| parsed.get(&key, uri).ok())
            .filter(|c| list.contains(&c.identity.identity_key))
            .collect()
    }

    /// Whether `peer` is another device of this account (one this node can reach). Cheap:
    /// asked for every frame.
    pub(super) fn is_own(&self, peer: &[u8; 32]) -> bool {
        let Some(list) = &self.list else {
            return false;
        };
        (self.account_card.is_some() && list.account() == *peer)
            || (self.cards.contains_key(peer) && list.contains(peer))
    }

    /// Whether `peer` is the account's first device, as seen from a linked device.
    pub(super) fn is_first(&self, peer: &[u8; 32]) -> bool {
        self.account_card.is_some() && self.list.as_ref().is_some_and(|l| l.account() == *peer)
    }

    /// The card of another device of this account, to route to it.
    pub(super) fn own_card(&self, peer: &[u8; 32]) -> Option<tokenim_crypto::ContactCard> {
        self.own_devices()
            .into_iter()
            .find(|c| c.identity.identity_key == *peer)
    }

    /// Keeps (or with `None`, forgets) a linked device's own card.
    pub(super) fn set_card(
        &mut self,
        store: &Store,
        device: [u8; 32],
        card: Option<String>,
    ) -> Result<(), StoreError> {
        match card {
            Some(c) => self.cards.insert(device, c),
            None => self.cards.remove(&device),
        };
        self.set_card_list(store)
    }

    fn set_card_list(&self, store: &Store) -> Result<(), StoreError> {
        let uris: Vec<&String> = self.cards.values().collect();
        let json =
            serde_json::to_vec(&uris).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        store.put_meta(CARDS_KEY, &json)
    }

    pub(super) fn list(&self) -> Option<&DeviceList> {
        self.list.as_ref()
    }

    /// Whether this node is a linked device (another device signs the account's list).
    pub(super) fn is_linked(&self) -> bool {
        self.account_card.is_some()
    }

    /// Persists and holds a new list signed here.
    pub(super) fn set_list(&mut self, store: &Store, list: DeviceList) -> Result<(), StoreError> {
        store.put_meta(LIST_KEY, &list.to_bytes())?;
        self.list = Some(list);
        Ok(())
    }

    /// On a linked device: the account's list (the one held or a newer one) and card, and the
    /// other linked devices' cards, from the first device. None when the list is refused;
    /// else whether it is newer than the one held.
    pub(super) fn set_synced(
        &mut self,
        store: &Store,
        accept: LinkAccept,
        cards: Vec<([u8; 32], String)>,
        me: &[u8; 32],
    ) -> Result<Option<bool>, StoreError> {
        let Some(held) = &self.list else {
            return Ok(None);
        };
        let Ok(newer) = DeviceList::supersedes(Some(held), &accept.device_list) else {
            return Ok(None);
        };
        self.set_linked(store, accept)?;
        self.cards.clear();
        for (key, card) in cards {
            if key != *me {
                self.cards.insert(key, card);
            }
        }
        self.set_card_list(store)?;
        Ok(Some(newer))
    }

    /// Persists and holds what the account's first device answered to this node's link.
    pub(super) fn set_linked(
        &mut self,
        store: &Store,
        accept: LinkAccept,
    ) -> Result<(), StoreError> {
        store.put_meta(LINKED_KEY, &accept.to_bytes())?;
        self.list = Some(accept.device_list);
        self.account_card = Some(accept.account_card);
        Ok(())
    }

    /// Keeps an offer this node issued until it is used or expires.
    pub(super) fn add_offer(&mut self, offer: LinkOffer, history: HistoryScope, now: u64) {
        self.offers.retain(|_, (o, _)| o.expires_at() > now);
        if self.offers.len() >= MAX_OFFERS
            && let Some(oldest) = self
                .offers
                .iter()
                .min_by_key(|(_, (o, _))| o.expires_at())
                .map(|(id, _)| *id)
        {
            self.offers.remove(&oldest);
        }
        self.offers.insert(offer.id(), (offer, history));
    }

    /// The offer `id` names, taken out: each offer links one device.
    pub(super) fn take_offer(
        &mut self,
        id: &[u8; 32],
        now: u64,
    ) -> Result<(LinkOffer, HistoryScope), OfferRefusal> {
        if self.used.contains(id) {
            return Err(OfferRefusal::Used);
        }
        let offer = self.offers.remove(id).ok_or(OfferRefusal::Unknown)?;
        if self.used.len() >= MAX_USED {
            self.used.pop_front();
        }
        self.used.push_back(*id);
        if offer.0.expires_at() <= now {
            return Err(OfferRefusal::Expired);
        }
        Ok(offer)
    }
}

#[cfg(test)]
mod tests {
    use tokenim_crypto::Identity;

    use super::*;

    fn offer(ttl: u64, now: u64) -> LinkOffer {
        let account = Identity::from_seed([3; 32]).public();
        LinkOffer::new(account, vec![1, 2, 3], Vec::new(), ttl, now).expect("offer")
    }

    #[test]
    fn an_offer_links_once_and_only_while_valid() {
        let mut d = Devices::default();
        let (used, expired) = (offer(600, 100), offer(10, 100));
        let (used_id, expired_id) = (used.id(), expired.id());
        d.add_offer(used, HistoryScope::default(), 100);
        d.add_offer(expired, HistoryScope::default(), 100);
        assert!(d.take_offer(&used_id, 200).is_ok());
        assert_eq!(d.take_offer(&used_id, 200).err(), Some(OfferRefusal::Used));
        assert_eq!(
            d.take_offer(&expired_id, 200).err(),
            Some(OfferRefusal::Expired)
        );
        assert_eq!(
            d.take_offer(&[7; 32], 200).err(),
            Some(OfferRefusal::Unknown)
        );
    }

    #[test]
    fn open_offers_are_bounded() {
        let mut d = Devices::default();
        let first = offer(600, 100);
        let first_id = first.id();
        d.add_offer(first, HistoryScope::default(), 100);
        for i in 0..MAX_OFFERS as u64 {
            d.add_offer(offer(600 + i + 1, 100), HistoryScope::default(), 100);
        }
        assert_eq!(d.offers.len(), MAX_OFFERS);
        assert_eq!(
            d.take_offer(&first_id, 101).err(),
            Some(OfferRefusal::Unknown)
        );
    }
}
