//! Runs the relay's [`Relay`] on a few dedicated threads: its store writes, signatures and page
//! reads block, so they stay off the async runtime, and requests from many peers are served in
//! parallel. The swarm task hands mailbox requests and shard gossip straight to these queues:
//! owners' requests have their own, served first, and stores are refused before they queue
//! while the disk is full.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::protocol::{InvalidGossip, ValidGossip, check_gossip};
use super::server::{Followup, Relay};
use crate::metrics::Metrics;
use crate::net::wire::{self, RejectCode, pb};
use crate::net::{MailboxSink, NetworkHandle};
use crate::time::now_secs;

/// Relay work waiting for a thread; beyond this, requests are answered `rate_limited`.
const QUEUE: usize = 1024;
/// Owners' requests (challenge, registration, fetch, ack) waiting for a thread, in a queue of
/// their own that threads serve first: however many stores wait (or fail on a full disk), an
/// owner can drain its mailbox, which is what frees a full relay.
const OWNER_QUEUE: usize = 256;
/// How often the first worker looks after the disk (and how long any worker waits idle).
const TICK: Duration = Duration::from_secs(1);
/// How often expired envelopes are purged (by the first worker, between requests).
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Owner pushes running at once (each carries one request's new envelopes).
const PUSHES_IN_FLIGHT: usize = 64;

#[derive(Debug)]
pub(crate) enum Work {
    Request {
        peer: PeerId,
        kind: pb::request::Kind,
        reply: oneshot::Sender<wire::Response>,
    },
    Gossip(ValidGossip),
}

/// Cloneable; the threads stop when the last handle is dropped, and that drop waits for them.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    // Dropped before `threads`: the last senders gone end the workers' loops, then they are
    // joined.
    tx: Sender<Work>,
    owner_tx: Sender<Work>,
    relay: Arc<Relay>,
    metrics: Metrics,
    threads: Arc<Threads>,
}

/// The worker threads, joined when the last handle goes: they hold the store, and RocksDB
/// must be closed before the process exits (a database still open in another thread while
/// exit runs C++ static destructors corrupts the heap).
#[derive(Debug, Default)]
struct Threads(Mutex<Vec<std::thread::JoinHandle<()>>>);

impl Drop for Threads {
    fn drop(&mut self) {
        let threads = std::mem::take(self.0.get_mut().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The queues' receiving ends, until [`RelayHandle::start`] gives them threads.
#[derive(Debug)]
pub struct Idle(Queues);

#[derive(Debug, Clone)]
struct Queues {
    owner: Receiver<Work>,
    other: Receiver<Work>,
}

impl RelayHandle {
    /// The queues, before any thread serves them: the swarm task needs the handle to route to,
    /// and the threads need the swarm's handle to push and gossip.
    pub fn new(relay: Relay, metrics: Metrics) -> (Self, Idle) {
        let (tx, other) = crossbeam_channel::bounded(QUEUE);
        let (owner_tx, owner) = crossbeam_channel::bounded(OWNER_QUEUE);
        let handle = Self {
            tx,
            owner_tx,
            relay: Arc::new(relay),
            metrics,
            threads: Arc::default(),
        };
        (handle, Idle(Queues { owner, other }))
    }

    /// Starts `threads` workers. Must be called inside the tokio runtime (pushes to owners are
    /// spawned on it). Without `net` (benchmarks), pushes and gossip are left undone.
    pub fn start(&self, idle: Idle, net: Option<NetworkHandle>, threads: usize) {
        let push = net.map(|net| {
            Arc::new(PushContext {
                net,
                runtime: tokio::runtime::Handle::current(),
                pushes: Arc::new(tokio::sync::Semaphore::new(PUSHES_IN_FLIGHT)),
                metrics: self.metrics.clone(),
            })
        });
        let mut joins = self
            .threads
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for i in 0..threads.max(1) {
            let queues = idle.0.clone();
            let (relay, push, metrics) = (self.relay.clone(), push.clone(), self.metrics.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || serve(&queues, &relay, push.as_deref(), &metrics, i == 0));
            match spawned {
                Ok(join) => joins.push(join),
                Err(e) => tracing::error!("starting relay thread {i}: {e}"),
            }
        }
    }

    /// Queues a mailbox request; the answer comes through `reply`. A store while the disk is
    /// full is refused at once, with a hint to retry later: it would only fail in the queue.
    pub fn request(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
        reply: oneshot::Sender<wire::Response>,
    ) {
        if let pb::request::Kind::Store(s) = &kind
            && self.relay.storage_full()
        {
            self.metrics
                .envelopes_rejected
                .inc_by(s.envelopes.len() as u64);
            let _ = reply.send(wire::Response::storage_full());
            return;
        }
        self.submit(Work::Request { peer, kind, reply });
    }

    /// Queues work; a full queue answers requests `rate_limited` and drops gossip (which other
    /// relays of the mesh still carry).
    fn submit(&self, work: Work) {
        use pb::request::Kind;
        let queue = match &work {
            Work::Request {
                kind: Kind::GetChallenge(_) | Kind::Register(_) | Kind::Fetch(_) | Kind::Ack(_),
                ..
            } => &self.owner_tx,
            Work::Request { .. } | Work::Gossip(_) => &self.tx,
        };
        self.metrics.relay_queue.inc();
        match queue.try_send(work) {
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
}

impl MailboxSink for RelayHandle {
    fn request(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
        reply: oneshot::Sender<wire::Response>,
    ) {
        RelayHandle::request(self, peer, kind, reply);
    }

    fn gossip(&self, data: Vec<u8>) -> bool {
        match check_gossip(&data, now_secs(), self.relay.mesh()) {
            Ok(gossip) => {
                self.submit(Work::Gossip(gossip));
                true
            }
            Err(InvalidGossip::Envelope) => {
                self.metrics.envelopes_rejected.inc();
                false
            }
            Err(InvalidGossip::Unvouched) => {
                self.metrics.gossip_unvouched.inc();
                false
            }
            Err(InvalidGossip::Tombstone) => {
                self.metrics.acks_rejected.inc();
                false
            }
        }
    }

    fn peer_disconnected(&self, peer: &PeerId) {
        self.relay.peer_disconnected(peer);
    }
}

/// One worker's loop; the `keeper` also looks after the disk between requests: expired
/// envelopes every [`PURGE_EVERY`], and every [`TICK`], acks turned into free space when
/// space is short (which also notices a full disk, and space coming back).
fn serve(
    queues: &Queues,
    relay: &Relay,
    push: Option<&PushContext>,
    metrics: &Metrics,
    keeper: bool,
) {
    let mut disk = Disk::new();
    loop {
        if keeper {
            disk.maintain(relay);
        }
        let Some(work) = next_work(queues) else {
            return;
        };
        let Some(work) = work else {
            continue;
        };
        metrics.relay_queue.dec();
        let followup = match work {
            Work::Request { peer, kind, reply } => {
                let (response, followup) = relay.handle(peer, kind);
                let _ = reply.send(response);
                followup
            }
            Work::Gossip(gossip) => relay.on_gossip(gossip),
        };
        if let Some(push) = push {
            follow_up(push, followup);
        }
    }
}

/// The next work, owners' first; `Some(None)` after [`TICK`] without any, `None` once the
/// handles are gone.
fn next_work(queues: &Queues) -> Option<Option<Work>> {
    if let Ok(work) = queues.owner.try_recv() {
        return Some(Some(work));
    }
    crossbeam_channel::select! {
        recv(queues.owner) -> work => work.ok().map(Some),
        recv(queues.other) -> work => work.ok().map(Some),
        default(TICK) => Some(None),
    }
}

/// The keeper's schedule.
struct Disk {
    next_purge: Instant,
    next_look: Instant,
    full: bool,
}

impl Disk {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            next_purge: now + PURGE_EVERY,
            next_look: now + TICK,
            full: false,
        }
    }

    fn maintain(&mut self, relay: &Relay) {
        let now = Instant::now();
        if now >= self.next_purge {
            relay.purge();
            self.next_purge = now + PURGE_EVERY;
        }
        if now < self.next_look {
            return;
        }
        self.next_look = now + TICK;
        let full = relay.reclaim();
        if full && !self.full {
            tracing::warn!("disk full: refusing stores until owners' acks or expiry free space");
        } else if self.full && !full {
            tracing::info!("disk space is back: taking stores again");
        }
        self.full = full;
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

struct PushContext {
    net: NetworkHandle,
    runtime: tokio::runtime::Handle,
    pushes: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
}

#[cfg(test)]
mod tests;
