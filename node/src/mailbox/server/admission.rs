//! Who may open a mailbox at a relay. An operator runs an open relay (anyone may register) or
//! an allow-listed one (only the mailbox ids it lists); either way one connection registers at
//! most a few mailboxes, and new mailboxes open at a bounded rate, so nobody can make a relay
//! host thousands of junk mailboxes in a burst. (Connections per IP are bounded by the network
//! layer, so Sybil peer ids from one host do not multiply the per-connection bound much.)

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokenim_crypto::MailboxId;

use crate::net::wire::RejectCode;

/// The operator's registration rules.
#[derive(Debug, Clone)]
pub(crate) struct RegistrationPolicy {
    /// `None`: open; otherwise only these mailboxes may register.
    pub(crate) allowed: Option<HashSet<MailboxId>>,
    /// Distinct mailboxes one connection may register (or re-register).
    pub(crate) per_connection: usize,
    /// Mailboxes new to this relay per minute, all peers together.
    pub(crate) new_per_minute: u32,
}

impl RegistrationPolicy {
    pub(crate) fn open() -> Self {
        Self {
            allowed: None,
            per_connection: 4,
            new_per_minute: 120,
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// What registrations have been seen: per connection, and new ones in the current minute.
#[derive(Debug)]
pub(super) struct Admission {
    by_peer: Mutex<HashMap<PeerId, Vec<MailboxId>>>,
    window: Mutex<(Instant, u32)>,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            by_peer: Mutex::default(),
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Admission {
    /// Whether `peer` may register `mailbox` (`known`: the relay hosts it already); counts it.
    pub(super) fn admit(
        &self,
        policy: &RegistrationPolicy,
        peer: PeerId,
        mailbox: MailboxId,
        known: bool,
    ) -> Result<(), (RejectCode, &'static str)> {
        if let Some(allowed) = &policy.allowed
            && !allowed.contains(&mailbox)
        {
            return Err((
                RejectCode::Forbidden,
                "this relay hosts listed mailboxes only",
            ));
        }
        let mut by_peer = lock(&self.by_peer);
        let mine = by_peer.entry(peer).or_default();
        if !mine.contains(&mailbox) {
            if mine.len() >= policy.per_connection {
                return Err((
                    RejectCode::RateLimited,
                    "too many mailboxes registered over one connection",
                ));
            }
            if !known {
                let mut window = lock(&self.window);
                if window.0.elapsed() >= MINUTE {
                    *window = (Instant::now(), 0);
                }
                if window.1 >= policy.new_per_minute {
                    return Err((
                        RejectCode::RateLimited,
                        "too many new mailboxes; retry later",
                    ));
                }
                window.1 += 1;
            }
            mine.push(mailbox);
        }
        Ok(())
    }

    pub(super) fn disconnected(&self, peer: &PeerId) {
        lock(&self.by_peer).remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_registers_a_few_mailboxes_and_new_ones_open_at_a_bounded_rate() {
        let a = Admission::default();
        let policy = RegistrationPolicy {
            allowed: None,
            per_connection: 2,
            new_per_minute: 3,
        };
        let (p, q) = (PeerId::random(), PeerId::random());
        let m = |n: u8| MailboxId([n; 32]);
        assert!(a.admit(&policy, p, m(1), false).is_ok());
        assert!(
            a.admit(&policy, p, m(1), true).is_ok(),
            "re-registration is free"
        );
        assert!(a.admit(&policy, p, m(2), false).is_ok());
        assert_eq!(
            a.admit(&policy, p, m(3), false).map_err(|e| e.0),
            Err(RejectCode::RateLimited),
            "a third mailbox over one connection"
        );
        assert!(a.admit(&policy, q, m(3), false).is_ok());
        assert_eq!(
            a.admit(&policy, q, m(4), false).map_err(|e| e.0),
            Err(RejectCode::RateLimited),
            "a fourth new mailbox within the minute"
        );
        assert!(
            a.admit(&policy, q, m(1), true).is_ok(),
            "known mailboxes still come back"
        );
        a.disconnected(&p);
        assert!(a.admit(&policy, p, m(2), true).is_ok());
    }

    #[test]
    fn an_allow_listed_relay_refuses_other_mailboxes() {
        let a = Admission::default();
        let policy = RegistrationPolicy {
            allowed: Some([MailboxId([1; 32])].into_iter().collect()),
            ..RegistrationPolicy::open()
        };
        assert!(
            a.admit(&policy, PeerId::random(), MailboxId([1; 32]), false)
                .is_ok()
        );
        assert_eq!(
            a.admit(&policy, PeerId::random(), MailboxId([2; 32]), false)
                .map_err(|e| e.0),
            Err(RejectCode::Forbidden)
        );
    }
}
