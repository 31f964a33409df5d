//! Which circuit relays this node listens through, and when to try again. A personal node
//! behind NAT takes a reservation at each home relay (circuit relay v2), so contacts reach it at
//! `<relay addr>/p2p/<relay>/p2p-circuit/p2p/<node>`. A reservation ends with the connection to
//! the relay or when the relay refuses it; it is then retried with backoff for as long as the
//! relay stays a home relay. Kept apart from the swarm task so the bookkeeping is testable.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::time::Backoff;

const RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

type Retry = Pin<Box<dyn Future<Output = PeerId> + Send>>;

struct Wanted {
    /// The relay's address, ending in `/p2p/<relay>`.
    addr: Multiaddr,
    /// Failures since the last reservation that held.
    failures: u32,
    listener: Option<ListenerId>,
}

#[derive(Default)]
pub(crate) struct CircuitListeners {
    wanted: HashMap<PeerId, Wanted>,
    retries: FuturesUnordered<Retry>,
}

impl std::fmt::Debug for CircuitListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitListeners")
            .field("relays", &self.wanted.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CircuitListeners {
    /// Starts wanting a reservation at `relay`; the address to listen on, unless a listener
    /// is already up. Asked again while a retry is pending, it tries at once: the caller
    /// learned the relay should now accept (relays reserve for the mailbox owners registered
    /// there, and this node just registered), so the backoff need not be waited out.
    pub(crate) fn want(&mut self, relay: PeerId, addr: Multiaddr) -> Option<Multiaddr> {
        let addr = match addr.iter().last() {
            Some(Protocol::P2p(p)) if p == relay => addr,
            _ => addr.with(Protocol::P2p(relay)),
        };
        if let Some(w) = self.wanted.get(&relay) {
            return w
                .listener
                .is_none()
                .then(|| w.addr.clone().with(Protocol::P2pCircuit));
        }
        let circuit = addr.clone().with(Protocol::P2pCircuit);
        self.wanted.insert(
            relay,
            Wanted {
                addr,
                failures: 0,
                listener: None,
            },
        );
        Some(circuit)
    }

    /// Stops wanting `relay`; the listener to remove, if one is up.
    pub(crate) fn unwant(&mut self, relay: &PeerId) -> Option<ListenerId> {
        self.wanted.remove(relay)?.listener
    }

    /// `listen_on` for `relay` returned `id` (or failed: `None`, retried later).
    pub(crate) fn started(&mut self, relay: PeerId, id: Option<ListenerId>) {
        match (self.wanted.get_mut(&relay), id) {
            (Some(w), Some(id)) => w.listener = Some(id),
            (Some(_), None) => {
                self.retry_later(relay);
            }
            (None, _) => {}
        }
    }

    /// A reservation was accepted on `id`: the next failure starts from the first delay again.
    pub(crate) fn reserved(&mut self, id: ListenerId) {
        if let Some(relay) = self.relay_of(id)
            && let Some(w) = self.wanted.get_mut(&relay)
        {
            w.failures = 0;
        }
    }

    /// The listener `id` closed; if its relay is still wanted, the relay and the delay after
    /// which it is tried again.
    pub(crate) fn closed(&mut self, id: ListenerId) -> Option<(PeerId, Duration)> {
        let relay = self.relay_of(id)?;
        if let Some(w) = self.wanted.get_mut(&relay) {
            w.listener = None;
        }
        Some((relay, self.retry_later(relay)?))
    }

    /// The next relay whose retry is due, with the address to listen on. Pending forever while
    /// no retry is scheduled.
    pub(crate) async fn next_retry(&mut self) -> (PeerId, Multiaddr) {
        loop {
            if self.retries.is_empty() {
                futures::future::pending::<()>().await;
            }
            let Some(relay) = self.retries.next().await else {
                continue;
            };
            if let Some(w) = self.wanted.get(&relay)
                && w.listener.is_none()
            {
                return (relay, w.addr.clone().with(Protocol::P2pCircuit));
            }
        }
    }

    fn relay_of(&self, id: ListenerId) -> Option<PeerId> {
        self.wanted
            .iter()
            .find(|(_, w)| w.listener == Some(id))
            .map(|(p, _)| *p)
    }

    fn retry_later(&mut self, relay: PeerId) -> Option<Duration> {
        let w = self.wanted.get_mut(&relay)?;
        w.failures = w.failures.saturating_add(1);
        let delay = RETRY.delay(w.failures);
        self.retries.push(Box::pin(async move {
            tokio::time::sleep(delay).await;
            relay
        }));
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_addr() -> (PeerId, Multiaddr) {
        let relay = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("multiaddr");
        (relay, addr)
    }

    #[test]
    fn a_relay_is_listened_through_once_and_forgotten_on_removal() {
        let (relay, addr) = relay_addr();
        let mut c = CircuitListeners::default();
        let circuit = c.want(relay, addr.clone()).expect("first want listens");
        assert_eq!(
            circuit.to_string(),
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
        );
        let id = ListenerId::next();
        c.started(relay, Some(id));
        assert!(c.want(relay, addr).is_none(), "already listening");
        assert_eq!(c.unwant(&relay), Some(id));
        assert_eq!(c.unwant(&relay), None);
        assert_eq!(c.closed(id), None, "a removed relay is not retried");
    }

    #[test]
    fn a_closed_listener_is_retried_with_growing_delays() {
        let (relay, addr) = relay_addr();
        let mut c = CircuitListeners::default();
        c.want(relay, addr).expect("listens");
        let mut delays = Vec::new();
        for _ in 0..8 {
            let id = ListenerId::next();
            c.started(relay, Some(id));
            let (again, delay) = c.closed(id).expect("still wanted");
            assert_eq!(again, relay);
            delays.push(delay.as_secs());
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        // A reservation that held starts over from the first delay.
        let id = ListenerId::next();
        c.started(relay, Some(id));
        c.reserved(id);
        assert_eq!(c.closed(id), Some((relay, RETRY.first)));
        // While a retry is pending (no listener), wanting again tries at once, at the address
        // first given; with a listener up it does nothing.
        let again = c.want(relay, "/ip4/127.0.0.1/tcp/1".parse().expect("addr"));
        assert_eq!(
            again.map(|a| a.to_string()),
            Some(format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit"))
        );
        c.started(relay, Some(ListenerId::next()));
        assert!(c.want(relay, relay_addr().1).is_none());
    }
}
