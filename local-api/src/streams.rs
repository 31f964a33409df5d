//! Book-keeping of `/v1/events` connections: the slots of authenticated streams, the bounded
//! queue of connections still waiting for their auth frame, and the token each stream
//! authenticated with, so that revoking a token closes its streams at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

/// Shared by every `/v1/events` connection of one router.
pub(crate) struct EventStreams {
    /// One permit per authenticated stream.
    slots: Arc<Semaphore>,
    /// Connections without a token that may wait for their auth frame at once (at least 1).
    max_pending: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Streams (and streams being authenticated) by their id: the token id, and the switch
    /// that tells the stream its token was revoked.
    watched: HashMap<u64, (String, watch::Sender<bool>)>,
    /// Connections waiting for their auth frame, oldest first, with what evicts them.
    pending: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl EventStreams {
    pub(crate) fn new(max_streams: usize, max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_streams)),
            max_pending: max_pending.max(1),
            inner: Mutex::default(),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for an authenticated stream, if one is free; freed when the permit drops.
    pub(crate) fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Starts watching `token_id`: [`EventStreams::revoke`] on it from now on trips the watch.
    /// Take it *before* checking the token, so that no revocation falls between the check
    /// and the watch.
    pub(crate) fn watch_token(self: &Arc<Self>, token_id: &str) -> TokenWatch {
        let (tx, rx) = watch::channel(false);
        let mut inner = self.inner();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watched.insert(id, (token_id.to_owned(), tx));
        TokenWatch {
            streams: self.clone(),
            id,
            revoked: rx,
        }
    }

    /// Trips the watch of every stream authenticated (or being authenticated) with `token_id`;
    /// returns how many there were.
    pub(crate) fn revoke(&self, token_id: &str) -> usize {
        let inner = self.inner();
        let mut tripped = 0;
        for (watched, tx) in inner.watched.values() {
            if watched == token_id {
                tx.send_replace(true);
                tripped += 1;
            }
        }
        tripped
    }

    /// Queues a connection that is to authenticate with its first frame. When the queue is
    /// full, the connection that has waited longest is evicted to make room: unauthenticated
    /// sockets can delay one another, never hold authenticated streams' slots.
    pub(crate) fn wait_for_auth(self: &Arc<Self>) -> PendingAuth {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner();
        while inner.pending.len() >= self.max_pending {
            if let Some((_, oldest)) = inner.pending.pop_front() {
                let _ = oldest.send(());
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.pending.push_back((id, tx));
        PendingAuth {
            streams: self.clone(),
            id,
            evicted: rx,
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.watched.len(), inner.pending.len())
    }
}

impl std::fmt::Debug for EventStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStreams")
            .field("free_slots", &self.slots.available_permits())
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

/// The watch on one stream's token; unregisters itself when dropped.
#[derive(Debug)]
pub(crate) struct TokenWatch {
    streams: Arc<EventStreams>,
    id: u64,
    revoked: watch::Receiver<bool>,
}

impl TokenWatch {
    /// Completes once the token is revoked (at once if it already was).
    pub(crate) async fn revoked(&mut self) {
        // The sender lives in the registry as long as `self`: an error cannot happen, and is
        // not a revocation if it does.
        if self.revoked.wait_for(|revoked| *revoked).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(crate) fn is_revoked(&self) -> bool {
        *self.revoked.borrow()
    }
}

impl Drop for TokenWatch {
    fn drop(&mut self) {
        self.streams.inner().watched.remove(&self.id);
    }
}

/// A connection's place in the queue of those waiting for their auth frame; leaves the queue
/// when dropped.
#[derive(Debug)]
pub(crate) struct PendingAuth {
    streams: Arc<EventStreams>,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl PendingAuth {
    /// Completes when a newer connection took this one's place.
    pub(crate) async fn evicted(&mut self) {
        // The sender is dropped only by sending, or with `self` gone: either way, evicted.
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for PendingAuth {
    fn drop(&mut self) {
        let mut inner = self.streams.inner();
        if let Some(at) = inner.pending.iter().position(|(id, _)| *id == self.id) {
            inner.pending.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn revoking_trips_only_that_tokens_watches() {
        let streams = EventStreams::new(4, 4);
        let a1 = streams.watch_token("a");
        let mut a2 = streams.watch_token("a");
        let b = streams.watch_token("b");
        assert_eq!(streams.revoke("a"), 2);
        assert!(a1.is_revoked() && a2.is_revoked() && !b.is_revoked());
        assert!(a2.revoked().now_or_never().is_some());
        assert_eq!(streams.revoke("nobody"), 0);
        drop((a1, a2, b));
        assert_eq!(streams.counts(), (0, 0));
    }

    #[test]
    fn a_full_queue_evicts_the_longest_waiting() {
        let streams = EventStreams::new(4, 2);
        let mut first = streams.wait_for_auth();
        let mut second = streams.wait_for_auth();
        assert!(first.evicted().now_or_never().is_none());
        let mut third = streams.wait_for_auth();
        assert!(first.evicted().now_or_never().is_some());
        assert!(second.evicted().now_or_never().is_none());
        assert!(third.evicted().now_or_never().is_none());
        assert_eq!(streams.counts(), (0, 2));
        drop(second);
        let _fourth = streams.wait_for_auth();
        assert!(third.evicted().now_or_never().is_none(), "room was made");
        drop((first, third));
        assert_eq!(streams.counts(), (0, 1));
    }

    #[test]
    fn slots_are_bounded_and_freed() {
        let streams = EventStreams::new(1, 1);
        let slot = streams.try_slot();
        assert!(slot.is_some());
        assert!(streams.try_slot().is_none());
        drop(slot);
        assert!(streams.try_slot().is_some());
    }
}
