//! Contact cards: the parsed cards of contacts (verifying one costs two signature checks, too
//! much to repeat for every delivery) and this node's own card, rebuilt when what it lists
//! changes.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::card::MAX_CARD_LIST;
use tokenim_crypto::{ContactCard, CryptoError, Identity, MailboxKey, RelayInfo};
use tokenim_store::{ContactRecord, Store};

use super::error::DeliveryError;
use super::ids::IdentityKey;
use crate::mailbox::RelayRoute;
use crate::net::{is_circuit, is_dialable};

/// Lifetime of the contact card this node hands out.
pub(crate) const CARD_TTL_SECS: u64 = 30 * 24 * 3600;
/// This node's card is rebuilt at least this often (its addresses may have moved).
const REBUILD_AFTER_SECS: u64 = 3600;
/// Parsed contact cards kept in memory.
const CARD_CACHE: usize = 10_000;

/// What this node's card says besides its addresses.
#[derive(Debug)]
pub(super) struct CardInputs<'a> {
    pub(super) me: &'a Identity,
    pub(super) display_name: &'a str,
    pub(super) mailbox: &'a MailboxKey,
    pub(super) home_relays: &'a [RelayRoute],
    pub(super) node: PeerId,
    pub(super) publish_direct: bool,
    pub(super) device_list: Option<&'a tokenim_crypto::DeviceList>,
}

/// Cards parsed once, by the URI they came from: verifying one costs two signature checks, too
/// much to repeat for every delivery (contacts) or every member of every message (groups).
#[derive(Debug, Default)]
pub(super) struct ParsedCards(HashMap<[u8; 32], (String, ContactCard)>);

impl ParsedCards {
    /// `key`'s card from `uri`, parsed on first sight of that URI.
    pub(super) fn get(&mut self, key: &[u8; 32], uri: &str) -> Result<ContactCard, CryptoError> {
        if let Some((seen, card)) = self.0.get(key)
            && seen == uri
        {
            return Ok(card.clone());
        }
        let card = parse_stored_card(uri)?;
        if self.0.len() >= CARD_CACHE {
            self.0.clear();
        }
        self.0.insert(*key, (uri.to_owned(), card.clone()));
        Ok(card)
    }
}

#[derive(Debug, Default)]
pub(super) struct Cards {
    /// Contacts' parsed cards, by the URI they came from.
    cache: ParsedCards,
    /// This node's card and when it was made.
    mine: Option<(String, u64)>,
    /// Which of this node's cards each peer was last sent (a hash of it), so that a changed
    /// card (a new device list, new addresses) goes out with the next message.
    sent: HashMap<IdentityKey, u64>,
    /// Contacts' other devices by device key: how an outbox entry for one is routed, and whose
    /// account each speaks for.
    devices: HashMap<IdentityKey, (ContactCard, IdentityKey)>,
    listen_addrs: Vec<Multiaddr>,
}

impl Cards {
    /// A contact's card as stored (verified when it was added).
    pub(super) fn contact(
        &mut self,
        store: &Store,
        key: &IdentityKey,
    ) -> Result<ContactCard, DeliveryError> {
        let record = store
            .get_contact(&key.0)?
            .ok_or_else(|| DeliveryError::UnknownContact(key.address()))?;
        self.card_of(key, &record)
    }

    /// The card of a contact record already read.
    pub(super) fn card_of(
        &mut self,
        key: &IdentityKey,
        record: &ContactRecord,
    ) -> Result<ContactCard, DeliveryError> {
        self.cache
            .get(&key.0, &record.card_uri)
            .map_err(|e| DeliveryError::InvalidCard(format!("stored card for contact: {e}")))
    }

    /// This node's card if it is recent enough to hand out.
    pub(super) fn mine_fresh(&self, now: u64) -> Option<&str> {
        self.mine
            .as_ref()
            .filter(|(_, made)| now.saturating_sub(*made) < REBUILD_AFTER_SECS)
            .map(|(uri, _)| uri.as_str())
    }

    /// This node's last card, however old.
    pub(super) fn mine(&self) -> Option<&str> {
        self.mine.as_ref().map(|(uri, _)| uri.as_str())
    }

    /// What the card lists changed: the next one is built anew.
    /// Remembers each of `account`'s other devices (and forgets those no longer listed).
    pub(super) fn set_devices(&mut self, account: IdentityKey, cards: &[ContactCard]) {
        self.devices.retain(|_, (_, a)| *a != account);
        for c in cards {
            if self.devices.len() < CARD_CACHE {
                let key = IdentityKey(c.identity.identity_key);
                self.devices.insert(key, (c.clone(), account));
            }
        }
    }

    /// A contact's other device, by its device key.
    pub(super) fn device(&self, key: &IdentityKey) -> Option<ContactCard> {
        self.devices.get(key).map(|(c, _)| c.clone())
    }

    /// The contact whose device `key` is.
    pub(super) fn account_of(&self, key: &IdentityKey) -> Option<IdentityKey> {
        self.devices.get(key).map(|(_, a)| *a)
    }

    /// Whether `peer` has not been sent `card` yet; marks it sent.
    pub(super) fn send_to(&mut self, peer: IdentityKey, card: &str) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(card);
        if self.sent.len() >= CARD_CACHE && !self.sent.contains_key(&peer) {
            self.sent.clear();
        }
        self.sent.insert(peer, hash) != Some(hash)
    }

    pub(super) fn invalidate_mine(&mut self) {
        self.mine = None;
    }

    pub(super) fn set_listen_addrs(&mut self, addrs: Vec<Multiaddr>) {
        self.listen_addrs = addrs;
        self.mine = None;
    }

    pub(super) fn build_mine(
        &mut self,
        inputs: &CardInputs<'_>,
        now: u64,
    ) -> Result<String, DeliveryError> {
        let card = ContactCard {
            identity: inputs.me.public(),
            display_name: inputs.display_name.to_owned(),
            mailboxes: vec![inputs.mailbox.id()],
            home_relays: inputs
                .home_relays
                .iter()
                .take(MAX_CARD_LIST)
                .map(|r| RelayInfo {
                    peer_id: r.peer.to_bytes(),
                    addrs: r.addrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            node_peer_id: Some(inputs.node.to_bytes()),
            direct_addrs: card_addrs(&self.listen_addrs, inputs.publish_direct),
            created_at: now,
            expires_at: now + CARD_TTL_SECS,
            intro_grant: inputs
                .mailbox
                .first_contact_grant(now + CARD_TTL_SECS)
                .to_bytes(),
            device_list: inputs
                .device_list
                .map(tokenim_crypto::DeviceList::to_bytes)
                .unwrap_or_default(),
        };
        let uri = card.to_uri(inputs.me).map_err(DeliveryError::internal)?;
        self.mine = Some((uri.clone(), now));
        Ok(uri)
    }
}

/// Whether `new` may replace the stored card `old_uri` of the same identity: it is not older,
/// and the device list it carries is the one held or a later version of it (a contact refuses
/// a rolled-back or equivocating list, and a card without a list once one was held).
pub(crate) fn may_replace(old_uri: &str, new: &ContactCard) -> Result<(), String> {
    let Ok(old) = parse_stored_card(old_uri) else {
        return Ok(());
    };
    // The list first: it says why more precisely than the card's time.
    let held = old.devices().ok().flatten();
    match (held, new.devices().ok().flatten()) {
        (Some(held), Some(list)) => {
            tokenim_crypto::DeviceList::supersedes(Some(&held), &list)
                .map_err(|e| format!("device list refused: {e}"))?;
        }
        (Some(held), None) => {
            return Err(format!(
                "device list refused: the card carries none, version {} is held",
                held.version()
            ));
        }
        _ => {}
    }
    if old.created_at > new.created_at {
        return Err("the card is older than the one held".into());
    }
    Ok(())
}

/// A stored card was verified when it was added; expiry only means it is getting old, and
/// fresher cards arrive with every conversation, so routing keeps using it.
pub(crate) fn parse_stored_card(uri: &str) -> Result<ContactCard, CryptoError> {
    ContactCard::from_uri(uri, 0)
}

/// The contact's node and where to dial it.
pub(super) fn node_route(card: &ContactCard) -> Option<(PeerId, Vec<Multiaddr>)> {
    let peer = PeerId::from_bytes(card.node_peer_id.as_deref()?).ok()?;
    let addrs = card
        .direct_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    Some((peer, addrs))
}

/// The relays that keep the contact's mailbox.
pub(super) fn relay_routes(card: &ContactCard) -> Vec<RelayRoute> {
    card.home_relays
        .iter()
        .filter_map(|r| {
            let peer = PeerId::from_bytes(&r.peer_id).ok()?;
            let addrs = r.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            Some(RelayRoute { peer, addrs })
        })
        .collect()
}

/// The addresses a contact card lists, at most `MAX_CARD_LIST`: direct ones (when published)
/// and those through home relays' circuits, which reveal the relay, not this node. Circuit
/// addresses keep at least half of the places, as direct ones fail behind NAT.
fn card_addrs(listen: &[Multiaddr], publish_direct: bool) -> Vec<String> {
    let (circuit, direct): (Vec<_>, Vec<_>) = listen
        .iter()
        .filter(|a| is_dialable(a))
        .partition(|a| is_circuit(a));
    let direct = if publish_direct { direct } else { Vec::new() };
    let direct_room = MAX_CARD_LIST - circuit.len().min(MAX_CARD_LIST / 2);
    direct
        .into_iter()
        .take(direct_room)
        .chain(circuit)
        .take(MAX_CARD_LIST)
        .map(ToString::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use tokenim_crypto::{DeviceList, Identity};

    use super::*;

    fn card(
        account: &Identity,
        created_at: u64,
        list: Option<&DeviceList>,
    ) -> (String, ContactCard) {
        let mut card = ContactCard::new(account, "alice", created_at, CARD_TTL_SECS);
        card.device_list = list.map(DeviceList::to_bytes).unwrap_or_default();
        let uri = card.to_uri(account).expect("card");
        (uri.clone(), ContactCard::from_uri(&uri, 0).expect("parses"))
    }

    #[test]
    fn device_lists_in_cards_only_move_forward() {
        let alice = Identity::from_seed([1; 32]);
        let v1 = DeviceList::genesis(&alice, "phone", 10).expect("list");
        let laptop = Identity::from_seed([2; 32]).public();
        let tablet = Identity::from_seed([3; 32]).public();
        let v2 = v1.with_device(&alice, laptop, "laptop", 20).expect("v2");
        let v2_other = v1.with_device(&alice, tablet, "tablet", 20).expect("v2'");
        let (none_uri, none) = card(&alice, 5, None);
        let (v1_uri, v1_card) = card(&alice, 10, Some(&v1));
        let (v2_uri, v2_card) = card(&alice, 20, Some(&v2));
        let (_, v2_other_card) = card(&alice, 21, Some(&v2_other));
        let (_, v1_late) = card(&alice, 30, Some(&v1));
        let (_, none_late) = card(&alice, 30, None);
        assert!(may_replace(&none_uri, &v1_card).is_ok(), "a first list");
        assert!(may_replace(&v1_uri, &v2_card).is_ok(), "a later version");
        assert!(
            may_replace(&v2_uri, &v2_card).is_ok(),
            "the same list again"
        );
        assert!(
            may_replace(&v2_uri, &v1_late).is_err(),
            "rolled back, in a newer card"
        );
        assert!(
            may_replace(&v2_uri, &none_late).is_err(),
            "the list dropped"
        );
        assert!(
            may_replace(&v2_uri, &v2_other_card).is_err(),
            "equivocation"
        );
        assert!(may_replace(&v2_uri, &none).is_err(), "an older card");
    }
}
