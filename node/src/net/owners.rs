//! Who may take a circuit relay reservation at this relay. A reservation lets a peer be
//! reached through the relay (the relay carries its traffic), so by default only mailbox
//! owners get one: peers whose `register` request this node's relay role accepted, i.e. that
//! proved they hold a mailbox key hosted here. The net layer learns this from the relay
//! role's own answers (it routes them), so the mailbox layer needs no hook into the swarm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId, relay};

use super::wire;

/// Who may reserve, from `[relay] circuit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CircuitAccess {
    /// No circuit relay server.
    Off,
    /// Anyone, within the rate limits.
    Open,
    /// Peers that registered a mailbox here.
    #[default]
    Owners,
}

/// How long a registration counts: an owner's node registers again at every mailbox sync
/// (every few minutes while it runs), and a reservation lasts an hour before it is renewed.
const OWNER_FOR: Duration = Duration::from_secs(3600);

/// Peers that registered a mailbox here, with when they last did; shared by the swarm task
/// (which records registrations) and the relay behaviour's reservation check.
#[derive(Debug, Clone)]
pub(crate) struct Owners {
    inner: Arc<Mutex<HashMap<PeerId, Instant>>>,
    cap: usize,
}

impl Owners {
    /// Remembers at most `cap` owners; beyond it the one that registered longest ago goes.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::default(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn registered(&self, peer: PeerId, now: Instant) {
        let mut owners = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if owners.len() >= self.cap && !owners.contains_key(&peer) {
            owners.retain(|_, at| now.duration_since(*at) < OWNER_FOR);
            if owners.len() >= self.cap
                && let Some(oldest) = owners.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p)
            {
                owners.remove(&oldest);
            }
        }
        owners.insert(peer, now);
    }

    pub(crate) fn is_owner(&self, peer: &PeerId, now: Instant) -> bool {
        let owners = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        owners
            .get(peer)
            .is_some_and(|at| now.duration_since(*at) < OWNER_FOR)
    }

    /// Records `peer` as an owner if `response` accepted its registration.
    pub(crate) fn note(&self, peer: PeerId, response: &wire::Response) {
        if matches!(response.kind, Some(wire::pb::response::Kind::Accepted(_))) {
            self.registered(peer, Instant::now());
        }
    }

    /// The check the relay behaviour runs on every reservation request (new or renewed) before
    /// its rate limits; a refused one is answered `RESOURCE_LIMIT_EXCEEDED`.
    pub(crate) fn reservation_check(&self) -> Box<dyn relay::RateLimiter> {
        Box::new(OwnersOnly(self.clone()))
    }
}

struct OwnersOnly(Owners);

impl relay::RateLimiter for OwnersOnly {
    fn try_next(&mut self, peer: PeerId, _addr: &Multiaddr, now: Instant) -> bool {
        self.0.is_owner(&peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accepted_registrations_make_owners_for_a_while() {
        let owners = Owners::new(8);
        let (alice, stranger) = (PeerId::random(), PeerId::random());
        let mut check = owners.reservation_check();
        let addr: Multiaddr = "/ip4/203.0.113.7/tcp/1".parse().expect("addr");
        let now = Instant::now();
        assert!(!check.try_next(alice, &addr, now));
        owners.note(
            stranger,
            &wire::Response::rejected(wire::RejectCode::Malformed, "bad proof"),
        );
        owners.note(alice, &wire::Response::accepted(false));
        let now = Instant::now();
        assert!(check.try_next(alice, &addr, now));
        assert!(!check.try_next(stranger, &addr, now));
        assert!(!check.try_next(alice, &addr, now + OWNER_FOR), "expired");
    }

    #[test]
    fn the_set_is_bounded_and_gives_up_the_oldest_registration_first() {
        let owners = Owners::new(3);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            owners.registered(*p, t0 + Duration::from_secs(i as u64));
        }
        let now = t0 + Duration::from_secs(10);
        let kept: Vec<bool> = peers.iter().map(|p| owners.is_owner(p, now)).collect();
        assert_eq!(kept, [false, false, true, true, true]);
        // Registering again refreshes without taking another place.
        owners.registered(peers[2], now);
        owners.registered(PeerId::random(), now);
        assert!(owners.is_owner(&peers[2], now));
        assert!(!owners.is_owner(&peers[3], now));
    }
}
