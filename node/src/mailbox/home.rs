//! This node's home relays as their own small task: the registry (configured ones and those
//! added through the API, kept in the store), one drain at a time per relay, retries with
//! backoff, a periodic resync, and the circuit reservation at each.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokenim_crypto::Identity;
use tokenim_crypto::card::MAX_CARD_LIST;
use tokenim_store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::client::{Ingest, sync_mailbox};
use super::protocol::RelayRoute;
use super::registry::{HomeRelayError, HomeRelayStatus, Registry};
use crate::event::{Events, NodeEvent};
use crate::net::NetworkHandle;
use crate::time::now_ms;

/// How often this node drains its mailboxes at its home relays besides being pushed to.
const RESYNC_EVERY: Duration = Duration::from_secs(300);

type Reply<T> = oneshot::Sender<Result<T, HomeRelayError>>;

#[derive(Debug)]
enum Cmd {
    List(oneshot::Sender<Vec<HomeRelayStatus>>),
    Add(String, Reply<(HomeRelayStatus, bool)>),
    Remove(String, Reply<()>),
    PeerConnected(PeerId),
}

/// Cloneable handle to the home-relays task; it also shows the current routes without asking.
#[derive(Debug, Clone)]
pub(crate) struct HomeRelaysHandle {
    tx: mpsc::Sender<Cmd>,
    routes: watch::Receiver<Vec<RelayRoute>>,
}

impl HomeRelaysHandle {
    pub(crate) fn route(&self, peer: &PeerId) -> Option<RelayRoute> {
        self.routes
            .borrow()
            .iter()
            .find(|r| r.peer == *peer)
            .cloned()
    }

    pub(crate) fn routes(&self) -> Vec<RelayRoute> {
        self.routes.borrow().clone()
    }

    /// Whether the routes changed since this handle last looked (the card lists them).
    pub(crate) fn changed(&mut self) -> bool {
        let changed = self.routes.has_changed().unwrap_or(false);
        self.routes.mark_unchanged();
        changed
    }

    /// A peer connected: if it is a home relay, drain the mailbox there now.
    pub(crate) fn peer_connected(&self, peer: PeerId) {
        let _ = self.tx.try_send(Cmd::PeerConnected(peer));
    }

    pub(crate) async fn list(&self) -> Vec<HomeRelayStatus> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::List(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Adds (and keeps) a relay; its status and whether it is new.
    pub(crate) async fn add(
        &self,
        addr: String,
    ) -> Result<(HomeRelayStatus, bool), HomeRelayError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Add(addr, reply))
            .await
            .map_err(|_| HomeRelayError::ShuttingDown)?;
        rx.await.map_err(|_| HomeRelayError::ShuttingDown)?
    }

    pub(crate) async fn remove(&self, peer_id: String) -> Result<(), HomeRelayError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Remove(peer_id, reply))
            .await
            .map_err(|_| HomeRelayError::ShuttingDown)?;
        rx.await.map_err(|_| HomeRelayError::ShuttingDown)?
    }
}

/// The task before it runs: the handle exists first, because the delivery core it drains into
/// needs the handle too.
#[derive(Debug)]
pub(crate) struct HomeTask {
    rx: mpsc::Receiver<Cmd>,
    routes: watch::Sender<Vec<RelayRoute>>,
    registry: Registry,
    store: Store,
}

/// Loads the home relays (configured, then added earlier through the API).
pub(crate) fn home_relays(
    configured: &[RelayRoute],
    store: &Store,
) -> (HomeRelaysHandle, HomeTask) {
    let registry = Registry::load(configured, store);
    let (routes_tx, routes) = watch::channel(registry.routes());
    let (tx, rx) = mpsc::channel(64);
    let task = HomeTask {
        rx,
        routes: routes_tx,
        registry,
        store: store.clone(),
    };
    (HomeRelaysHandle { tx, routes }, task)
}

type Retry = std::pin::Pin<Box<dyn Future<Output = PeerId> + Send>>;

/// What a running sync needs; `ingest` must not keep the delivery core alive.
pub(crate) struct SyncContext {
    pub(crate) net: NetworkHandle,
    pub(crate) identity: Arc<Identity>,
    pub(crate) ingest: Arc<dyn Ingest>,
    pub(crate) events: Events,
}

impl HomeTask {
    /// Runs until every handle is gone.
    pub(crate) fn spawn(self, ctx: SyncContext) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(ctx))
    }

    async fn run(mut self, ctx: SyncContext) {
        let (done_tx, mut done_rx) = mpsc::channel(MAX_CARD_LIST);
        let mut syncing = std::collections::HashSet::new();
        let mut retries: FuturesUnordered<Retry> = FuturesUnordered::new();
        let start = |route: RelayRoute, syncing: &mut std::collections::HashSet<PeerId>| {
            if !syncing.insert(route.peer) {
                return;
            }
            let (net, identity, ingest) =
                (ctx.net.clone(), ctx.identity.clone(), ctx.ingest.clone());
            let done = done_tx.clone();
            tokio::spawn(async move {
                let peer = route.peer;
                let result = sync_mailbox(net, ingest.as_ref(), identity, route).await;
                if let Err(e) = &result {
                    warn!(relay = %peer, error = %e, "mailbox sync failed; will retry");
                }
                let _ = done.send((peer, result)).await;
            });
        };
        for route in self.registry.routes() {
            start(route, &mut syncing);
        }
        // Relays push new envelopes, but a push can be skipped or fail: a periodic drain
        // fetches whatever is left. The first tick is at once; start-up already synced.
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            tokio::select! {
                _ = resync.tick() => {
                    for route in self.registry.routes() {
                        start(route, &mut syncing);
                    }
                }
                cmd = self.rx.recv() => match cmd {
                    None => break,
                    Some(Cmd::List(reply)) => {
                        let _ = reply.send(self.registry.statuses());
                    }
                    Some(Cmd::Add(addr, reply)) => {
                        let result = self.registry.add(&addr, &self.store);
                        if let Ok((route, _, true)) = &result {
                            self.routes.send_replace(self.registry.routes());
                            start(route.clone(), &mut syncing);
                        }
                        let _ = reply.send(result.map(|(_, status, added)| (status, added)));
                    }
                    Some(Cmd::Remove(peer_id, reply)) => {
                        let result = self.registry.remove(&peer_id, &self.store);
                        if let Ok(peer) = &result {
                            self.routes.send_replace(self.registry.routes());
                            ctx.net.stop_listen_via(*peer).await;
                        }
                        let _ = reply.send(result.map(drop));
                    }
                    Some(Cmd::PeerConnected(peer)) => {
                        if let Some(route) = self.registry.get(&peer).cloned() {
                            start(route, &mut syncing);
                        }
                    }
                },
                Some((relay, result)) = done_rx.recv() => {
                    syncing.remove(&relay);
                    if let Ok(drained) = &result {
                        ctx.events.emit(NodeEvent::MailboxSynced {
                            relay,
                            drained: *drained as u64,
                        });
                        // Registered: the relay now grants this node a circuit reservation.
                        if let Some(route) = self.registry.get(&relay).cloned() {
                            listen_via(&ctx.net, &route).await;
                        }
                    }
                    if let Some(delay) = self.registry.sync_done(&relay, result, now_ms()) {
                        retries.push(Box::pin(async move {
                            tokio::time::sleep(delay).await;
                            relay
                        }));
                    }
                }
                Some(relay) = retries.next(), if !retries.is_empty() => {
                    if let Some(route) = self.registry.get(&relay).cloned() {
                        start(route, &mut syncing);
                    }
                }
            }
        }
    }
}

/// Reachable through the relay's circuit too, for peers that cannot dial this node. Asked after
/// each sync that registered this node's mailbox there (relays reserve for their mailbox
/// owners); a no-op while the reservation holds.
async fn listen_via(net: &NetworkHandle, relay: &RelayRoute) {
    if let Some(addr) = relay.addrs.first() {
        net.listen_via(relay.peer, addr.clone()).await;
    }
}
