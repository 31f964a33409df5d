//! Inbound requests per second, per peer id and per source address: peer ids cost nothing to
//! mint, so a host running many of them shares one budget (see [`super::ip_limits::Source`]
//! for what one source is).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Windows kept before stale ones are swept: sources are not forgotten on disconnect (one
/// source has many connections), so the map is swept instead.
const SWEEP_AT: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// Fixed one-second windows per key: cheap, bounded by the keys seen in the last second.
struct Windows<K> {
    per_sec: u32,
    windows: HashMap<K, (Instant, u32)>,
}

impl<K: Hash + Eq> Windows<K> {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            windows: HashMap::new(),
        }
    }

    fn allow(&mut self, key: K, now: Instant) -> bool {
        if self.windows.len() >= SWEEP_AT {
            self.windows.retain(|_, w| now.duration_since(w.0) < WINDOW);
        }
        let w = self.windows.entry(key).or_insert((now, 0));
        if now.duration_since(w.0) >= WINDOW {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= self.per_sec
    }
}

pub(super) struct RateLimiter {
    peers: Windows<PeerId>,
    sources: Windows<IpAddr>,
}

impl RateLimiter {
    pub(super) fn new(per_peer: u32, per_source: u32) -> Self {
        Self {
            peers: Windows::new(per_peer),
            sources: Windows::new(per_source),
        }
    }

    /// Whether a request from `peer` over a connection from `source` (`None`: not limited per
    /// source, e.g. exempt loopback) is served. A request over its peer's own limit does not
    /// count against its source, so one greedy peer does not starve others behind its NAT.
    pub(super) fn allow(&mut self, peer: PeerId, source: Option<IpAddr>) -> bool {
        let now = Instant::now();
        self.peers.allow(peer, now) && source.is_none_or(|ip| self.sources.allow(ip, now))
    }

    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.peers.windows.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sybil_peer_ids_from_one_source_share_its_budget() {
        let mut rate = RateLimiter::new(100, 10);
        let sybil: IpAddr = "203.0.113.7".parse().expect("ip");
        let served = (0..40)
            .filter(|_| rate.allow(PeerId::random(), Some(sybil)))
            .count();
        assert_eq!(served, 10, "forty peer ids, one address");
        let honest: IpAddr = "198.51.100.1".parse().expect("ip");
        assert!(rate.allow(PeerId::random(), Some(honest)), "another source");
        // Without a source (exempt), only the per-peer limit applies.
        let peer = PeerId::random();
        assert_eq!((0..150).filter(|_| rate.allow(peer, None)).count(), 100);
    }

    #[test]
    fn a_peer_over_its_own_limit_costs_its_source_nothing() {
        let mut rate = RateLimiter::new(5, 10);
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let greedy = PeerId::random();
        assert_eq!((0..50).filter(|_| rate.allow(greedy, Some(ip))).count(), 5);
        let neighbour = PeerId::random();
        assert_eq!(
            (0..5).filter(|_| rate.allow(neighbour, Some(ip))).count(),
            5
        );
    }

    #[test]
    fn windows_reset_after_a_second_and_stale_ones_are_swept() {
        let mut w = Windows::new(1);
        let t0 = Instant::now();
        assert!(w.allow(1u32, t0));
        assert!(!w.allow(1, t0));
        assert!(w.allow(1, t0 + WINDOW));
        for k in 0..SWEEP_AT as u32 {
            w.allow(k + 10, t0);
        }
        w.allow(7, t0 + 3 * WINDOW);
        assert!(w.windows.len() <= 2, "{}", w.windows.len());
    }
}
