//! Runs a [`Relay`] on a few dedicated threads: its store writes, signatures and page reads
//! block, so they stay off the async runtime, and requests from many peers are served in
//! parallel instead of one at a time on the engine task.

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use libp2p::PeerId;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::network::NetworkHandle;
use crate::relay::{Followup, Relay};
use crate::wire::{self, RejectCode, pb};

/// Relay work waiting for a thread; beyond this, requests are answered `rate_limited`.
const QUEUE: usize = 1024;

#[derive(Debug)]
pub enum Work {
    Request {
        peer: PeerId,
        kind: pb::request::Kind,
        reply: oneshot::Sender<wire::Response>,
    },
    Gossip(Vec<u8>),
    Purge,
}

/// Cloneable; the threads stop when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    tx: Sender<Work>,
    relay: Arc<Relay>,
    metrics: Metrics,
}

impl RelayHandle {
    /// Starts `threads` workers. Must be called inside the tokio runtime (pushes to owners are
    /// spawned on it). Without `net` (benchmarks), pushes and gossip are left undone.
    pub fn spawn(
        relay: Relay,
        net: Option<NetworkHandle>,
        threads: usize,
        metrics: Metrics,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let relay = Arc::new(relay);
        let runtime = tokio::runtime::Handle::current();
        for i in 0..threads.max(1) {
            let (rx, relay, net, runtime) =
                (rx.clone(), relay.clone(), net.clone(), runtime.clone());
            let metrics = metrics.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || {
                    while let Ok(work) = rx.recv() {
                        metrics.relay_queue.dec();
                        let followup = match work {
                            Work::Request { peer, kind, reply } => {
                                let (response, followup) = relay.handle(peer, kind);
                                let _ = reply.send(response);
                                followup
                            }
                            Work::Gossip(data) => relay.on_gossip(&data),
                            Work::Purge => {
                                relay.purge();
                                Followup::default()
                            }
                        };
                        if let Some(net) = &net {
                            follow_up(net, &runtime, followup);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("starting relay thread {i}: {e}");
            }
        }
        Self { tx, relay, metrics }
    }

    /// Queues work; a full queue answers requests `rate_limited` and drops gossip (which other
    /// relays of the mesh still carry).
    pub fn submit(&self, work: Work) {
        self.metrics.relay_queue.inc();
        match self.tx.try_send(work) {
            Ok(()) => {}
            Err(TrySendError::Full(work) | TrySendError::Disconnected(work)) => {
                self.metrics.relay_queue.dec();
                if let Work::Request { reply, .. } = work {
                    let _ = reply.send(wire::Response::rejected(
                        RejectCode::RateLimited,
                        "relay busy; retry later",
                    ));
                }
                self.metrics.envelopes_rejected.inc();
            }
        }
    }

    pub fn peer_disconnected(&self, peer: &PeerId) {
        self.relay.peer_disconnected(peer);
    }
}

fn follow_up(net: &NetworkHandle, runtime: &tokio::runtime::Handle, followup: Followup) {
    for (topic, data) in followup.publish {
        net.publish(topic, data);
    }
    for (owner, envelope) in followup.push {
        let net = net.clone();
        runtime.spawn(async move {
            let _ = net
                .request(owner, Vec::new(), wire::Request::deliver(envelope))
                .await;
        });
    }
}
