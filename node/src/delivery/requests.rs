//! The pending message requests and their bounds: what strangers can make the node keep. Owns
//! no I/O; [`super::consent`] applies its answers to the store.

use std::collections::HashMap;

use tokenim_store::MessageRecord;

use super::ids::IdentityKey;

/// What the user decides about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// Make it a contact (optionally naming it): its held messages join the conversation and
    /// are receipted.
    Accept { name: Option<String> },
    /// Drop its messages from now on; held ones are deleted.
    Block,
    /// Undo a block: a named contact is a contact again, anyone else a stranger.
    Unblock,
    /// Forget the peer: its record, session and held messages (the conversation history of a
    /// former contact stays). Its next message is a request again.
    Forget,
}

/// Bounds on what strangers can make the node keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    /// Peers with a pending request; a new one beyond this pushes out the least recent.
    pub(crate) max_requests: usize,
    /// Messages held per request; later ones are dropped until the user decides.
    pub(crate) max_messages: u32,
    /// Body bytes held per request.
    pub(crate) max_bytes: u64,
    /// A request nobody answered is deleted after this long without a new message.
    pub(crate) ttl_secs: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_requests: 256,
            max_messages: 20,
            max_bytes: 64 * 1024,
            ttl_secs: 30 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    messages: u32,
    bytes: u64,
    last_seen: u64,
}

/// The pending requests, in memory (rebuilt from the store at start).
#[derive(Debug, Default)]
pub(super) struct Requests {
    pending: HashMap<IdentityKey, Pending>,
}

/// Whether a stranger's message is held.
pub(super) enum Admit {
    /// Hold it; first delete the request of `evict` (the least recent) to make room.
    Hold { evict: Option<IdentityKey> },
    /// This request is full: drop the message until the user decides.
    Full,
}

impl Requests {
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn load(&mut self, peer: IdentityKey, held: &[MessageRecord], last_seen: u64) {
        self.pending.insert(
            peer,
            Pending {
                messages: held.len() as u32,
                bytes: held.iter().map(|m| m.body.len() as u64).sum(),
                last_seen,
            },
        );
    }

    /// Counts a message of `bytes` from `peer` if the limits let it in.
    pub(super) fn admit(
        &mut self,
        peer: IdentityKey,
        bytes: u64,
        now: u64,
        limits: &RequestLimits,
    ) -> Admit {
        if let Some(p) = self.pending.get_mut(&peer) {
            if p.messages >= limits.max_messages || p.bytes + bytes > limits.max_bytes {
                return Admit::Full;
            }
            p.messages += 1;
            p.bytes += bytes;
            p.last_seen = now;
            return Admit::Hold { evict: None };
        }
        if bytes > limits.max_bytes {
            return Admit::Full;
        }
        let evict = (self.pending.len() >= limits.max_requests)
            .then(|| self.least_recent())
            .flatten();
        if let Some(e) = &evict {
            self.pending.remove(e);
        }
        self.pending.insert(
            peer,
            Pending {
                messages: 1,
                bytes,
                last_seen: now,
            },
        );
        Admit::Hold { evict }
    }

    fn least_recent(&self) -> Option<IdentityKey> {
        self.pending
            .iter()
            .min_by_key(|(k, p)| (p.last_seen, **k))
            .map(|(k, _)| *k)
    }

    pub(super) fn remove(&mut self, peer: &IdentityKey) {
        self.pending.remove(peer);
    }

    /// Requests with no message for `ttl_secs`.
    pub(super) fn expired(&self, now: u64, ttl_secs: u64) -> Vec<IdentityKey> {
        self.pending
            .iter()
            .filter(|(_, p)| p.last_seen.saturating_add(ttl_secs) <= now)
            .map(|(k, _)| *k)
            .collect()
    }
}
