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

/// Cloneable; the threads stop when the last handle is dropped, and that drop waits for them.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    // Dropped before `_threads`: the last sender gone ends the workers' loops, then they are
    // joined.
    tx: Sender<Work>,
    relay: Arc<Relay>,
    metrics: Metrics,
    _threads: Arc<Threads>,
}

/// The worker threads, joined when the last handle goes: they hold the store, and RocksDB
/// must be closed before the process exits (a database still open in another thread while
/// exit runs C++ static destructors corrupts the heap).
#[derive(Debug)]
struct Threads(Vec<std::thread::JoinHandle<()>>);

impl Drop for Threads {
    fn drop(&mut self) {
        for t in self.0.drain(..) {
            let _ = t.join();
        }
    }
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
        let push = net.map(|net| {
            Arc::new(PushContext {
                net,
                runtime: tokio::runtime::Handle::current(),
                pushes: Arc::new(tokio::sync::Semaphore::new(PUSHES_IN_FLIGHT)),
                metrics: metrics.clone(),
            })
        });
        let mut joins = Vec::new();
        for i in 0..threads.max(1) {
            let (rx, relay, push) = (rx.clone(), relay.clone(), push.clone());
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
                        if let Some(push) = &push {
                            follow_up(push, followup);
                        }
                    }
                });
            match spawned {
                Ok(join) => joins.push(join),
                Err(e) => tracing::error!("starting relay thread {i}: {e}"),
            }
        }
        Self {
            tx,
            relay,
            metrics,
            _threads: Arc::new(Threads(joins)),
        }
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

/// Does what a request left to do: gossip, and pushes to the connected owner, one request at a
/// time per batch and at most [`PUSHES_IN_FLIGHT`] batches at once. A push that fails or is
/// skipped is not lost: the envelope stays in the mailbox until the owner's next sync.
fn follow_up(ctx: &PushContext, followup: Followup) {
    for (topic, data) in followup.publish {
        ctx.net.publish(topic, data);
    }
    if followup.push.is_empty() {
        return;
    }
    let Ok(permit) = ctx.pushes.clone().try_acquire_owned() else {
        ctx.metrics
            .relay_pushes_skipped
            .inc_by(followup.push.len() as u64);
        return;
    };
    let net = ctx.net.clone();
    ctx.runtime.spawn(async move {
        for (owner, envelope) in followup.push {
            let pushed = net
                .request(owner, Vec::new(), wire::Request::deliver(envelope))
                .await;
            if pushed.is_err() {
                break; // the owner went away; it drains on reconnect
            }
        }
        drop(permit);
    });
}

/// Owner pushes running at once (each carries one request's new envelopes).
const PUSHES_IN_FLIGHT: usize = 64;

struct PushContext {
    net: NetworkHandle,
    runtime: tokio::runtime::Handle,
    pushes: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
}
