//! When each outbox entry is due, how many deliveries are in flight (in total and per peer),
//! and how many entries the user's own messages hold apart from what is owed to contacts
//! (receipts, handshake answers), so that neither kind takes the other's room. Owns no I/O:
//! callers pass `now`.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::time::Instant;

use super::ids::{IdentityKey, OutboxId};

#[derive(Debug)]
pub(super) struct Schedule {
    /// Entries not in flight, by due time.
    due: BTreeSet<(Instant, OutboxId)>,
    scheduled: HashMap<OutboxId, Instant>,
    /// Unsettled entries (waiting or in flight) carrying the user's messages.
    own: HashSet<OutboxId>,
    /// Unsettled entries owed to contacts.
    owed: HashSet<OutboxId>,
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
            own: HashSet::new(),
            owed: HashSet::new(),
            in_flight: HashMap::new(),
            in_flight_total: 0,
            max_total,
            max_per_peer,
        }
    }

    /// Unsettled entries, waiting or in flight.
    pub(super) fn len(&self) -> usize {
        self.own.len() + self.owed.len()
    }

    /// Unsettled entries carrying the user's own messages.
    pub(super) fn own_len(&self) -> usize {
        self.own.len()
    }

    /// Unsettled entries owed to contacts.
    pub(super) fn owed_len(&self) -> usize {
        self.owed.len()
    }

    /// A new entry, due at `at`; `own` when it carries a user's message.
    pub(super) fn add(&mut self, id: OutboxId, at: Instant, own: bool) {
        if own {
            self.own.insert(id);
        } else {
            self.owed.insert(id);
        }
        self.schedule(id, at);
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = OutboxId> + '_ {
        self.scheduled.keys().copied()
    }

    /// Reschedules an entry at `at`.
    pub(super) fn schedule(&mut self, id: OutboxId, at: Instant) {
        if let Some(old) = self.scheduled.insert(id, at) {
            self.due.remove(&(old, id));
        }
        self.due.insert((at, id));
    }

    /// The entry is settled (delivered, failed or gone).
    pub(super) fn unschedule(&mut self, id: &OutboxId) {
        if let Some(at) = self.scheduled.remove(id) {
            self.due.remove(&(at, *id));
        }
        self.own.remove(id);
        self.owed.remove(id);
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
