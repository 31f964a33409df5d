//! Inbound requests per peer per second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Fixed one-second windows per peer: cheap, bounded by the number of connected peers.
pub(super) struct RateLimiter {
    per_sec: u32,
    windows: HashMap<PeerId, (Instant, u32)>,
}

impl RateLimiter {
    pub(super) fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            windows: HashMap::new(),
        }
    }

    pub(super) fn allow(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let w = self.windows.entry(peer).or_insert((now, 0));
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= self.per_sec
    }

    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.windows.remove(peer);
    }
}
