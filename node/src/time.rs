//! The one clock and the one retry backoff of the node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time: what is stored and compared with other nodes (expiries, receipts, cards).
/// Tests swap in a manual clock to drive expiry without waiting.
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    /// Milliseconds since the Unix epoch, set by the test.
    #[cfg_attr(not(test), allow(dead_code))]
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Self::System => now_ms(),
            Self::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Exponential backoff: `first`, doubling per failure, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The wait after `failures` failures in a row: none before the first.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        self.first
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_delay_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let delays: Vec<u64> = (0..10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_manual_clock_reads_what_was_set() {
        let ms = Arc::new(AtomicU64::new(12_345));
        let clock = Clock::Manual(ms.clone());
        assert_eq!((clock.now_ms(), clock.now_secs()), (12_345, 12));
        ms.store(99_000, Ordering::Relaxed);
        assert_eq!(clock.now_secs(), 99);
    }
}
