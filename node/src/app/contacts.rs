//! Contacts, message requests and blocking, as the local API sees them; the decisions
//! themselves are carried out by the delivery core ([`Consent`]).

use tokenim_api::ServiceError;
use tokenim_api::types::{ContactView, RequestView};
use tokenim_crypto::{Address, ContactCard, Identity};
use tokenim_store::{ContactRecord, ContactState, Store};

use super::errors::store_error as store_err;
use super::views::{self, parse_address};
use crate::delivery::{Consent, DeliveryHandle, IdentityKey, parse_stored_card};
use crate::time::now_secs;

type ServiceResult<T> = Result<T, ServiceError>;

/// Most messages of a conversation looked at for a request's held ones.
const HELD_SCAN: usize = 500;

/// The parts of the service that contacts, requests and blocking need.
pub(super) struct Contacts<'a> {
    pub(super) store: &'a Store,
    pub(super) delivery: &'a DeliveryHandle,
    pub(super) identity: &'a Identity,
}

impl Contacts<'_> {
    /// `to` is an address or a contact's local name.
    pub(super) fn resolve(&self, to: &str) -> ServiceResult<ContactRecord> {
        let to = to.trim();
        let by_address = match to.parse::<Address>() {
            Ok(a) => Some(a),
            // Text that looks like an address but is not one is a typo, not a name.
            Err(e) if to.starts_with("tim1") => {
                return Err(ServiceError::InvalidAddress(e.to_string()));
            }
            Err(_) => None,
        };
        let found = match by_address {
            Some(a) => self
                .store
                .get_contact(&a.identity_key())
                .map_err(store_err)?,
            None => self.store.find_contact_by_name(to).map_err(store_err)?,
        };
        // Requests and blocked peers are not found by name; by address the delivery core says
        // why it will not write to them.
        found
            .filter(|c| by_address.is_some() || c.state == ContactState::Accepted)
            .ok_or_else(|| ServiceError::UnknownContact(to.to_string()))
    }

    pub(super) fn contact_view(&self, c: &ContactRecord) -> ContactView {
        let card = parse_stored_card(&c.card_uri).ok();
        ContactView {
            address: views::address_of(&c.identity_key),
            name: c.name.clone(),
            display_name: card
                .as_ref()
                .map(|c| c.display_name.clone())
                .filter(|n| !n.is_empty()),
            added_at: c.added_at * 1000,
            device_list_version: card
                .as_ref()
                .and_then(|c| c.devices().ok().flatten())
                .map(|l| l.version()),
            card_expires_at: card.map(|c| c.expires_at * 1000),
            blocked: c.state == ContactState::Blocked,
        }
    }

    /// A contact or a blocked peer (requests are listed apart).
    fn listed_contact(&self, address: &str) -> ServiceResult<ContactRecord> {
        let a = parse_address(address)?;
        self.store
            .get_contact(&a.identity_key())
            .map_err(store_err)?
            .filter(|c| c.state != ContactState::Request)
            .ok_or_else(|| ServiceError::UnknownContact(address.to_string()))
    }

    fn request_view(&self, c: &ContactRecord) -> ServiceResult<RequestView> {
        let (held, _) = self
            .store
            .list_messages(Some(&c.identity_key), HELD_SCAN, None)
            .map_err(store_err)?;
        let held: Vec<_> = held.into_iter().filter(|m| m.held).collect();
        let view = self.contact_view(c);
        Ok(RequestView {
            address: view.address,
            display_name: view.display_name,
            messages: held.len() as u32,
            first_seen: held.last().map_or(c.added_at * 1000, |m| m.received_at_ms),
            last_seen: held
                .first()
                .map_or(c.updated_at * 1000, |m| m.received_at_ms),
        })
    }

    /// The sender of a pending request at `address`.
    fn request_of(&self, address: &str) -> ServiceResult<IdentityKey> {
        let a = parse_address(address)?;
        match self
            .store
            .get_contact(&a.identity_key())
            .map_err(store_err)?
        {
            Some(c) if c.state == ContactState::Request => Ok(IdentityKey(c.identity_key)),
            _ => Err(ServiceError::UnknownContact(address.to_string())),
        }
    }

    pub(super) async fn add_contact(
        &self,
        card: String,
        name: Option<String>,
    ) -> ServiceResult<ContactView> {
        let parsed = ContactCard::from_uri(card.trim(), now_secs())
            .map_err(|e| ServiceError::InvalidCard(e.to_string()))?;
        let key = parsed.identity.identity_key;
        if key == self.identity.public().identity_key {
            return Err(ServiceError::BadRequest(
                "that is this node's own card".into(),
            ));
        }
        let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            if n.starts_with("tim1") {
                return Err(ServiceError::BadRequest(
                    "a contact name cannot look like an address".into(),
                ));
            }
            if let Some(other) = self.store.find_contact_by_name(n).map_err(store_err)?
                && other.identity_key != key
            {
                return Err(ServiceError::Conflict(format!(
                    "the name {n:?} is taken by another contact"
                )));
            }
        }
        let existing = self.store.get_contact(&key).map_err(store_err)?;
        if let Some(old) = &existing
            && let Err(why) = crate::delivery::may_replace(&old.card_uri, &parsed)
        {
            return Err(ServiceError::Conflict(format!(
                "{why}: the card held for this contact is newer"
            )));
        }
        let now = now_secs();
        let record = ContactRecord {
            identity_key: key,
            name: name.or_else(|| existing.as_ref().and_then(|c| c.name.clone())),
            card_uri: card.trim().to_string(),
            added_at: existing.as_ref().map_or(now, |c| c.added_at),
            updated_at: now,
            // Importing a card is the user's consent, also to a request or a blocked peer;
            // the delivery core then releases what a request held.
            state: ContactState::Accepted,
            write_grant: existing
                .as_ref()
                .map(|c| c.write_grant.clone())
                .unwrap_or_default(),
            device_cards: existing.map(|c| c.device_cards).unwrap_or_default(),
        };
        self.store.put_contact(&record).map_err(store_err)?;
        let record = self
            .delivery
            .consent(IdentityKey(key), Consent::Accept { name: None })
            .await?
            .unwrap_or(record);
        Ok(self.contact_view(&record))
    }

    pub(super) async fn list_contacts(&self) -> ServiceResult<Vec<ContactView>> {
        let list = self.store.list_contacts().map_err(store_err)?;
        Ok(list
            .iter()
            .filter(|c| c.state != ContactState::Request)
            .map(|c| self.contact_view(c))
            .collect())
    }

    pub(super) async fn get_contact(&self, address: String) -> ServiceResult<ContactView> {
        Ok(self.contact_view(&self.listed_contact(&address)?))
    }

    pub(super) async fn delete_contact(&self, address: String) -> ServiceResult<()> {
        let c = self.listed_contact(&address)?;
        self.delivery
            .consent(IdentityKey(c.identity_key), Consent::Forget)
            .await?;
        Ok(())
    }

    pub(super) async fn list_requests(&self) -> ServiceResult<Vec<RequestView>> {
        let contacts = self.store.list_contacts().map_err(store_err)?;
        let mut out = contacts
            .iter()
            .filter(|c| c.state == ContactState::Request)
            .map(|c| self.request_view(c))
            .collect::<ServiceResult<Vec<_>>>()?;
        out.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        Ok(out)
    }

    pub(super) async fn accept_request(
        &self,
        address: String,
        name: Option<String>,
    ) -> ServiceResult<ContactView> {
        let key = self.request_of(&address)?;
        if let Some(n) = &name
            && let Some(other) = self.store.find_contact_by_name(n).map_err(store_err)?
            && other.identity_key != key.0
        {
            return Err(ServiceError::Conflict(format!(
                "the name {n:?} is taken by another contact"
            )));
        }
        let record = self
            .delivery
            .consent(key, Consent::Accept { name })
            .await?
            .ok_or(ServiceError::UnknownContact(address))?;
        Ok(self.contact_view(&record))
    }

    pub(super) async fn delete_request(&self, address: String) -> ServiceResult<()> {
        let key = self.request_of(&address)?;
        self.delivery.consent(key, Consent::Forget).await?;
        Ok(())
    }

    pub(super) async fn block(&self, address: String) -> ServiceResult<()> {
        let a = parse_address(&address)?;
        if a.identity_key() == self.identity.public().identity_key {
            return Err(ServiceError::BadRequest(
                "that is this node's own address".into(),
            ));
        }
        self.delivery
            .consent(IdentityKey(a.identity_key()), Consent::Block)
            .await?;
        Ok(())
    }

    pub(super) async fn unblock(&self, address: String) -> ServiceResult<()> {
        let a = parse_address(&address)?;
        self.delivery
            .consent(IdentityKey(a.identity_key()), Consent::Unblock)
            .await?;
        Ok(())
    }
}
