//! What peers say about themselves inside their messages: a newer card, a write grant for
//! their mailbox, or just that they wrote (a bare request).

use tokenim_crypto::{ContactCard, GrantScope, PublicIdentity, WriteGrant};
use tokenim_store::{ContactRecord, ContactState};
use tracing::{debug, warn};

use crate::delivery::Delivery;
use crate::delivery::ids::IdentityKey;

impl Delivery {
    /// Keeps the newest valid card a peer sent about itself, without touching the name the
    /// user gave it or where the peer stands (a new peer is a request).
    pub(super) fn learn_card(
        &mut self,
        from: &PublicIdentity,
        uri: &str,
        existing: Option<&ContactRecord>,
    ) -> Option<ContactRecord> {
        let key = IdentityKey(from.identity_key);
        if existing.is_some_and(|old| old.card_uri == uri) {
            return None; // the usual case, and it needs no signature check
        }
        let now = self.clock.now_secs();
        let card = ContactCard::from_uri(uri, now).ok()?;
        if card.identity != *from {
            warn!("peer sent a card of another identity; ignored");
            return None;
        }
        if let Some(old) = existing
            && let Err(why) = super::cards::may_replace(&old.card_uri, &card)
        {
            debug!(%why, "a contact's card not taken");
            return None;
        }
        Some(ContactRecord {
            identity_key: key.0,
            card_uri: uri.to_string(),
            updated_at: now,
            ..existing.cloned().unwrap_or_else(|| self.bare_request(&key))
        })
    }

    /// `record` with the write grant the peer sent for its mailbox, if it is new and valid: a
    /// contact grant of a mailbox the peer's card lists.
    pub(super) fn learn_grant(
        &self,
        record: Option<ContactRecord>,
        grant: Vec<u8>,
    ) -> Option<ContactRecord> {
        let mut record = record?;
        if record.write_grant == grant {
            return None;
        }
        let parsed = WriteGrant::from_bytes(&grant).ok()?;
        let card = super::parse_stored_card(&record.card_uri).ok()?;
        let valid = parsed.scope == GrantScope::Contact
            && card.mailboxes.contains(&parsed.mailbox)
            && parsed.verify(self.clock.now_secs()).is_ok();
        if !valid {
            debug!("peer sent a write grant that does not check; ignored");
            return None;
        }
        record.write_grant = grant;
        Some(record)
    }

    /// The record of a new message request, before any card is known.
    pub(super) fn bare_request(&self, peer: &IdentityKey) -> ContactRecord {
        let now = self.clock.now_secs();
        ContactRecord {
            identity_key: peer.0,
            name: None,
            card_uri: String::new(),
            added_at: now,
            updated_at: now,
            state: ContactState::Request,
            write_grant: Vec::new(),
            device_cards: Vec::new(),
        }
    }
}
