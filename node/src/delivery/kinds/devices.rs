//! Messages to every device of an account: the account's first device sends its contacts the
//! own cards of its other devices (in the `payload` of a text that carries its card); a contact
//! keeps those listed in the account's newest device list, and seals each text once more for
//! each of them. Sync between one's own devices is not built yet.

use prost::Message as _;
use tokenim_crypto::ContactCard;
use tokenim_crypto::pb::DeviceCards;
use tokenim_store::ContactRecord;
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::cards::parse_stored_card;
use crate::delivery::ids::IdentityKey;

/// Most other devices (an account has ten at most).
const MAX_OTHER_DEVICES: usize = 9;

/// The devices of `record`'s account besides its first, as its newest card lists them.
pub(in crate::delivery) fn other_devices(record: &ContactRecord) -> Vec<ContactCard> {
    let Some(list) = parse_stored_card(&record.card_uri)
        .ok()
        .and_then(|c| c.devices().ok().flatten())
    else {
        return Vec::new();
    };
    record
        .device_cards
        .iter()
        .filter_map(|uri| parse_stored_card(uri).ok())
        .filter(|c| {
            let key = c.identity.identity_key;
            key != record.identity_key && list.contains(&key)
        })
        .take(MAX_OTHER_DEVICES)
        .collect()
}

impl Delivery {
    /// On the account's first device: its other devices' cards, as a text's payload.
    pub(in crate::delivery) fn device_cards_payload(&self) -> Vec<u8> {
        if self.devices.is_linked() {
            return Vec::new();
        }
        let cards = self.devices.cards();
        if cards.is_empty() {
            return Vec::new();
        }
        DeviceCards {
            cards: cards.into_iter().take(MAX_OTHER_DEVICES).collect(),
        }
        .encode_to_vec()
    }

    /// A contact's text carried its other devices' cards: `record` with those of them its
    /// newest card lists (None when nothing changes).
    pub(in crate::delivery) fn learn_device_cards(
        &mut self,
        record: Option<ContactRecord>,
        payload: &[u8],
    ) -> Option<ContactRecord> {
        let mut record = record?;
        let Ok(cards) = DeviceCards::decode(payload) else {
            debug!("a text's device cards do not decode");
            return None;
        };
        let mut candidate = record.clone();
        candidate.device_cards = cards.cards;
        let kept = other_devices(&candidate);
        let uris: Vec<String> = candidate
            .device_cards
            .into_iter()
            .filter(|u| {
                parse_stored_card(u).is_ok_and(|c| {
                    kept.iter()
                        .any(|k| k.identity.identity_key == c.identity.identity_key)
                })
            })
            .collect();
        if uris == record.device_cards {
            return None;
        }
        self.cards
            .set_devices(IdentityKey(record.identity_key), &kept);
        record.device_cards = uris;
        Some(record)
    }

    /// Routes to every contact's other devices (at start).
    pub(in crate::delivery) fn load_device_routes(
        &mut self,
    ) -> Result<(), tokenim_store::StoreError> {
        for c in self.store.list_contacts()? {
            if !c.device_cards.is_empty() {
                self.cards
                    .set_devices(IdentityKey(c.identity_key), &other_devices(&c));
            }
        }
        Ok(())
    }

    /// The other devices of contact `to`, to seal a text for each.
    pub(in crate::delivery) fn devices_of(&self, to: &IdentityKey) -> Vec<ContactCard> {
        match self.store.get_contact(&to.0) {
            Ok(Some(r)) if !r.device_cards.is_empty() => other_devices(&r),
            _ => Vec::new(),
        }
    }
}
