//! Owner-issued write permissions at a relay. With grants required, a mailbox takes a store
//! only with a [`WriteGrant`] its owner signed: each contact holds its own, and the contact
//! card carries one first-contact grant. So a stranger (who has only the card) can put at most
//! `first_contact_max` envelopes into a mailbox between two drains of its owner, and one contact
//! at most `per_grant_max` — nobody can fill a mailbox alone. Counts are of envelopes stored
//! since the owner last fetched (a drain renews them) and live in memory: a relay restart
//! renews them too, which at worst doubles one window.

use std::collections::HashMap;
use std::sync::Mutex;

use tokenim_crypto::{GrantScope, MailboxId, WriteGrant};

use crate::net::wire::RejectCode;

/// What a relay asks of stores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrantPolicy {
    /// Refuse stores without a valid grant of the mailbox.
    pub(crate) required: bool,
    /// Envelopes the first-contact grant may add to one mailbox between two drains.
    pub(crate) first_contact_max: u32,
    /// Envelopes one contact's grant may add to one mailbox between two drains.
    pub(crate) per_grant_max: u32,
}

impl GrantPolicy {
    /// No grants asked: every store that fits the quotas is taken.
    pub(crate) const OPEN: GrantPolicy = GrantPolicy {
        required: false,
        first_contact_max: u32::MAX,
        per_grant_max: u32::MAX,
    };
}

/// Envelopes stored per mailbox and grant since the owner's last drain.
#[derive(Debug, Default)]
pub(super) struct GrantCounts(Mutex<HashMap<MailboxId, HashMap<[u8; 16], u32>>>);

impl GrantCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, HashMap<[u8; 16], u32>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks `grant` for a batch of `n` envelopes into `mailbox`; the grant id to count them
    /// under once stored (`None`: nothing to count).
    pub(super) fn admit(
        &self,
        policy: &GrantPolicy,
        grant: &[u8],
        mailbox: &MailboxId,
        n: u32,
        now_secs: u64,
    ) -> Result<Option<[u8; 16]>, (RejectCode, &'static str)> {
        if !policy.required {
            return Ok(None);
        }
        let forbidden = (
            RejectCode::Forbidden,
            "this relay stores only with a write grant of the mailbox's owner",
        );
        if grant.is_empty() {
            return Err(forbidden);
        }
        let grant = WriteGrant::from_bytes(grant).map_err(|_| forbidden)?;
        if grant.mailbox != *mailbox || grant.verify(now_secs).is_err() {
            return Err(forbidden);
        }
        let (max, full) = match grant.scope {
            GrantScope::FirstContact => (
                policy.first_contact_max,
                (
                    RejectCode::Quota,
                    "first contacts for this mailbox wait until its owner drains it",
                ),
            ),
            GrantScope::Contact => (
                policy.per_grant_max,
                (
                    RejectCode::Quota,
                    "this sender's share of the mailbox is full",
                ),
            ),
        };
        let used = self
            .lock()
            .get(mailbox)
            .and_then(|m| m.get(&grant.grant_id))
            .copied()
            .unwrap_or(0);
        if used.saturating_add(n) > max {
            return Err(full);
        }
        Ok(Some(grant.grant_id))
    }

    /// `n` new envelopes were stored under `grant_id`.
    pub(super) fn add(&self, mailbox: MailboxId, grant_id: [u8; 16], n: u32) {
        let mut counts = self.lock();
        let c = counts
            .entry(mailbox)
            .or_default()
            .entry(grant_id)
            .or_default();
        *c = c.saturating_add(n);
    }

    /// The owner drained its mailbox: every sender's window starts again.
    pub(super) fn drained(&self, mailbox: &MailboxId) {
        self.lock().remove(mailbox);
    }
}
