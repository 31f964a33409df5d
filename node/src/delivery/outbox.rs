//! When each outbox entry is due, and how many deliveries are in flight (in total and per
//! peer). Owns no I/O: callers pass `now`.

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use super::ids::{IdentityKey, OutboxId};

#[derive(Debug)]
pub(super) struct Schedule {
    /// Entries not in flight, by due time.
    due: BTreeSet<(Instant, OutboxId)>,
    scheduled: HashMap<OutboxId, Instant>,
    in_flight: HashMap<IdentityKey, usize>,
    in_flight_total: usize,
    max_total: usize,
    max_per_peer: usize,
}

impl Schedule {
    pub(super) fn new(max_total: usize, max_per_peer: usize) -> Self {
        Self {
            due: BTreeSet::new(),
            scheduled: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_total: 0,
            max_total,
            max_per_peer,
        }
    }

    /// Entries waiting for their turn (not in flight).
    pub(super) fn len(&self) -> usize {
        self.scheduled.len()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = OutboxId> + '_ {
        self.scheduled.keys().copied()
    }

    /// (Re)schedules `id` at `at`.
    pub(super) fn schedule(&mut self, id: OutboxId, at: Instant) {
        if let Some(old) = self.scheduled.insert(id, at) {
            self.due.remove(&(old, id));
        }
        self.due.insert((at, id));
    }

    pub(super) fn unschedule(&mut self, id: &OutboxId) {
        if let Some(at) = self.scheduled.remove(id) {
            self.due.remove(&(at, *id));
        }
    }

    /// When the next entry may start; none while every delivery slot is taken (a result
    /// frees one and wakes the caller).
    pub(super) fn next_due(&self) -> Option<Instant> {
        if self.in_flight_total >= self.max_total {
            return None;
        }
        self.due.first().map(|(at, _)| *at)
    }

    /// The next entry due by `now`, if a delivery slot is free. It stays scheduled until
    /// [`Schedule::started`] or [`Schedule::unschedule`].
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<OutboxId> {
        if self.in_flight_total >= self.max_total {
            return None;
        }
        let &(at, id) = self.due.first()?;
        if at > now {
            return None;
        }
        self.due.remove(&(at, id));
        Some(id)
    }

    /// Whether `peer` is below its in-flight limit.
    pub(super) fn has_room(&self, peer: &IdentityKey) -> bool {
        self.in_flight.get(peer).copied().unwrap_or(0) < self.max_per_peer
    }

    pub(super) fn started(&mut self, id: &OutboxId, peer: IdentityKey) {
        *self.in_flight.entry(peer).or_default() += 1;
        self.in_flight_total += 1;
        self.scheduled.remove(id);
    }

    /// A delivery to `peer` reported back.
    pub(super) fn finished(&mut self, peer: &IdentityKey) {
        self.in_flight_total = self.in_flight_total.saturating_sub(1);
        if let Some(n) = self.in_flight.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(peer);
            }
        }
    }

    /// Puts an entry popped by [`Schedule::pop_due`] back, due at `at`.
    pub(super) fn defer(&mut self, id: OutboxId, at: Instant) {
        self.scheduled.insert(id, at);
        self.due.insert((at, id));
    }
}
