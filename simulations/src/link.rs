//! The link model: an in-memory libp2p transport whose byte pipes delay, pace and cut traffic.
//!
//! Each connection is a pair of one-way pipes. A write becomes a chunk stamped with the time it
//! may be read:
//!
//! ```text
//! depart  = max(now, sender uplink busy-until) + size / sender bandwidth
//! arrive  = depart + latency + U(0, jitter) + retransmissions (loss: each with p, RTO doubling)
//! arrive  = max(arrive, receiver downlink busy-until + size / receiver bandwidth)
//! arrive  = max(arrive, previous chunk's arrival)     -- a stream stays in order
//! ```
//!
//! The reader sleeps (tokio timer) until the head chunk is due. Each direction buffers at most
//! [`WINDOW`] bytes (like a socket send buffer), so a slow link pushes back on the writer instead
//! of growing memory. Partitions are a shared schedule that pipes consult on every read and
//! write and on dial: while two regions are cut off, dials are refused and live connections are
//! reset (as a long outage eventually resets TCP). Loss is modelled as retransmission delay,
//! because the node runs over a reliable stream (TCP/QUIC); bytes are never silently dropped.
//!
//! The pipes are upgraded with the real Noise and Yamux, exactly as the node's TCP transport is.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{AsyncRead, AsyncWrite, Stream, future};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, noise, yamux};
use tokenim_node::TransportFactory;
use tokio::time::{Instant, Sleep};

use crate::plan::{NodePlan, PORT_BASE, PartitionWindow};
use crate::rng::SimRng;

/// Bytes buffered per direction before the writer is made to wait.
pub const WINDOW: usize = 1024 * 1024;
/// Largest chunk one write produces (a chunk is the unit of delay, jitter and loss).
const MAX_CHUNK: usize = 64 * 1024;
/// Repeated losses of one chunk are capped (the RTO doubles each time).
const MAX_RETRANSMISSIONS: u32 = 6;
/// Pending inbound connections per listener (a listen backlog).
const BACKLOG: usize = 128;

/// Delay characteristics of the path between two regions.
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    pub latency: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub rto: Duration,
}

/// Static description of the simulated network.
#[derive(Debug, Clone)]
pub struct NetModel {
    pub seed: u64,
    pub default: LinkParams,
    /// Overrides keyed by (smaller region index, larger region index).
    pub between: HashMap<(usize, usize), LinkParams>,
    pub node_region: Vec<usize>,
    /// Per-node access bandwidth in bits per second, each direction; 0 = unlimited.
    pub node_bps: Vec<f64>,
    pub partitions: Vec<PartitionWindow>,
}

impl NetModel {
    pub fn params(&self, a: usize, b: usize) -> LinkParams {
        let (ra, rb) = (self.node_region[a], self.node_region[b]);
        let key = (ra.min(rb), ra.max(rb));
        self.between.get(&key).copied().unwrap_or(self.default)
    }
}

struct Nic {
    up_busy: Mutex<Option<Instant>>,
    down_busy: Mutex<Option<Instant>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

struct HubEntry {
    node: usize,
    generation: u64,
    tx: mpsc::Sender<Incoming>,
}

/// The shared medium: listener registry, per-node interfaces and the partition clock.
pub struct Network {
    model: NetModel,
    t0: OnceLock<Instant>,
    hub: Mutex<HashMap<u64, HubEntry>>,
    nics: Vec<Nic>,
    next_generation: AtomicU64,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nics.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a pipe lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Network {
    pub fn new(model: NetModel) -> Arc<Self> {
        let nics = (0..model.node_region.len())
            .map(|_| Nic {
                up_busy: Mutex::new(None),
                down_busy: Mutex::new(None),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
            })
            .collect();
        Arc::new(Self {
            model,
            t0: OnceLock::new(),
            hub: Mutex::new(HashMap::new()),
            nics,
            next_generation: AtomicU64::new(1),
            next_connection: AtomicU64::new(0),
        })
    }

    /// Starts the scenario clock that partition windows are measured against.
    pub fn start_clock(&self, t0: Instant) {
        let _ = self.t0.set(t0);
    }

    /// Bytes (in, out) that crossed node `i`'s interface, transport overhead included.
    pub fn bytes(&self, i: usize) -> (u64, u64) {
        let n = &self.nics[i];
        (
            n.bytes_in.load(Ordering::Relaxed),
            n.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Whether `a` and `b` are cut off from each other at `now`.
    pub fn cut(&self, a: usize, b: usize, now: Instant) -> bool {
        let Some(t0) = self.t0.get() else {
            return false;
        };
        let t = now.saturating_duration_since(*t0).as_millis() as u64;
        let (ra, rb) = (self.model.node_region[a], self.model.node_region[b]);
        self.model.partitions.iter().any(|w| {
            w.start_ms <= t
                && t < w.end_ms
                && matches!((w.group_of_region[ra], w.group_of_region[rb]), (Some(x), Some(y)) if x != y)
        })
    }

    fn register(&self, port: u64, node: usize) -> Option<(u64, mpsc::Receiver<Incoming>)> {
        let mut hub = lock(&self.hub);
        if hub.contains_key(&port) {
            return None;
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(BACKLOG);
        hub.insert(
            port,
            HubEntry {
                node,
                generation,
                tx,
            },
        );
        Some((generation, rx))
    }

    fn unregister(&self, port: u64, generation: u64) {
        let mut hub = lock(&self.hub);
        if hub.get(&port).is_some_and(|e| e.generation == generation) {
            hub.remove(&port);
        }
    }

    /// Opens a connection from node `from` to whoever listens on `port`.
    fn connect(self: &Arc<Self>, from: usize, port: u64) -> io::Result<Pipe> {
        let refused = |why: &str| io::Error::new(io::ErrorKind::ConnectionRefused, why.to_string());
        let (to, mut tx) = {
            let hub = lock(&self.hub);
            let e = hub
                .get(&port)
                .ok_or_else(|| refused("nobody listens there"))?;
            (e.node, e.tx.clone())
        };
        if self.cut(from, to, Instant::now()) {
            return Err(refused("partitioned"));
        }
        let (a, b) = self.pipe_pair(from, to);
        tx.try_send(Incoming {
            pipe: b,
            from: Protocol::Memory(NodePlan::port(from)).into(),
        })
        .map_err(|_| refused("listener gone or backlog full"))?;
        Ok(a)
    }

    /// Both ends of a fresh connection between nodes `a` and `b`.
    pub fn pipe_pair(self: &Arc<Self>, a: usize, b: usize) -> (Pipe, Pipe) {
        let conn = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let params = self.model.params(a, b);
        let dir = |k: u64| {
            Arc::new(Mutex::new(Dir {
                queue: VecDeque::new(),
                queued: 0,
                closed: false,
                gone: false,
                reset: false,
                reader: None,
                writer: None,
                last_at: None,
                rng: SimRng::derive(self.model.seed, "link", conn * 2 + k),
            }))
        };
        let (ab, ba) = (dir(0), dir(1));
        let end = |local, remote, tx: &Arc<Mutex<Dir>>, rx: &Arc<Mutex<Dir>>| Pipe {
            net: self.clone(),
            local,
            remote,
            params,
            tx: tx.clone(),
            rx: rx.clone(),
            sleep: None,
        };
        (end(a, b, &ab, &ba), end(b, a, &ba, &ab))
    }

    /// When `n` bytes written now from `from` to `to` may be read.
    fn arrival(&self, from: usize, to: usize, n: usize, p: &LinkParams, d: &mut Dir) -> Instant {
        let now = Instant::now();
        let ser = |bps: f64| {
            if bps > 0.0 {
                Duration::from_secs_f64(n as f64 * 8.0 / bps)
            } else {
                Duration::ZERO
            }
        };
        let depart = {
            let mut busy = lock(&self.nics[from].up_busy);
            let t = busy.map_or(now, |b| b.max(now)) + ser(self.model.node_bps[from]);
            *busy = Some(t);
            t
        };
        let mut at = depart + p.latency;
        if !p.jitter.is_zero() {
            at += p.jitter.mul_f64(d.rng.unit());
        }
        let mut rto = p.rto;
        let mut tries = 0;
        while p.loss > 0.0 && tries < MAX_RETRANSMISSIONS && d.rng.unit() < p.loss {
            at += rto;
            rto *= 2;
            tries += 1;
        }
        let down = ser(self.model.node_bps[to]);
        if !down.is_zero() {
            let mut busy = lock(&self.nics[to].down_busy);
            if let Some(b) = *busy {
                at = at.max(b + down);
            }
            *busy = Some(at);
        }
        if let Some(last) = d.last_at {
            at = at.max(last);
        }
        self.nics[from]
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        self.nics[to]
            .bytes_in
            .fetch_add(n as u64, Ordering::Relaxed);
        at
    }
}

struct Chunk {
    data: Vec<u8>,
    pos: usize,
    at: Instant,
}

/// One direction of a connection.
struct Dir {
    queue: VecDeque<Chunk>,
    queued: usize,
    /// The writer closed (EOF after the queue drains).
    closed: bool,
    /// The reader went away.
    gone: bool,
    /// The connection was reset (partition).
    reset: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    last_at: Option<Instant>,
    rng: SimRng,
}

impl Dir {
    fn wake_all(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// One end of a simulated connection (a byte stream, before Noise).
pub struct Pipe {
    net: Arc<Network>,
    local: usize,
    remote: usize,
    params: LinkParams,
    tx: Arc<Mutex<Dir>>,
    rx: Arc<Mutex<Dir>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "link partitioned")
}

impl Pipe {
    fn reset(&self) {
        for d in [&self.tx, &self.rx] {
            let mut d = lock(d);
            d.reset = true;
            d.wake_all();
        }
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            let mut d = lock(&this.rx);
            if d.reset {
                return Poll::Ready(Err(reset_error()));
            }
            let due = match d.queue.front() {
                None if d.closed => return Poll::Ready(Ok(0)),
                None => {
                    d.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Some(c) => c.at,
            };
            if due <= now {
                if this.net.cut(this.local, this.remote, now) {
                    drop(d);
                    this.reset();
                    return Poll::Ready(Err(reset_error()));
                }
                let mut n = 0;
                while n < buf.len() {
                    let Some(c) = d.queue.front_mut() else { break };
                    if c.at > now {
                        break;
                    }
                    let k = (c.data.len() - c.pos).min(buf.len() - n);
                    buf[n..n + k].copy_from_slice(&c.data[c.pos..c.pos + k]);
                    c.pos += k;
                    n += k;
                    if c.pos == c.data.len() {
                        d.queue.pop_front();
                    }
                }
                d.queued -= n;
                if let Some(w) = d.writer.take() {
                    w.wake();
                }
                return Poll::Ready(Ok(n));
            }
            drop(d);
            match &mut this.sleep {
                Some(s) if s.deadline() == due => {}
                Some(s) => s.as_mut().reset(due),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(due))),
            }
            if let Some(s) = &mut this.sleep
                && s.as_mut().poll(cx).is_pending()
            {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.net.cut(this.local, this.remote, Instant::now()) {
            this.reset();
            return Poll::Ready(Err(reset_error()));
        }
        let mut d = lock(&this.tx);
        if d.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if d.gone || d.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if d.queued >= WINDOW {
            d.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(WINDOW - d.queued).min(MAX_CHUNK);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let at = this
            .net
            .arrival(this.local, this.remote, n, &this.params, &mut d);
        d.last_at = Some(at);
        d.queue.push_back(Chunk {
            data: buf[..n].to_vec(),
            pos: 0,
            at,
        });
        d.queued += n;
        if let Some(w) = d.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut d = lock(&self.tx);
        d.closed = true;
        d.wake_all();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        {
            let mut d = lock(&self.tx);
            d.closed = true;
            d.wake_all();
        }
        let mut d = lock(&self.rx);
        d.gone = true;
        // Nobody will read what is queued: free it now.
        d.queue.clear();
        d.queued = 0;
        d.wake_all();
    }
}

struct Incoming {
    pipe: Pipe,
    from: Multiaddr,
}

struct SimListener {
    id: ListenerId,
    port: u64,
    generation: u64,
    addr: Multiaddr,
    rx: mpsc::Receiver<Incoming>,
    announce: bool,
}

/// The raw (unauthenticated) transport of node `node`: `/memory/<port>` addresses.
pub struct SimTransport {
    net: Arc<Network>,
    node: usize,
    listeners: Vec<SimListener>,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl SimTransport {
    pub fn new(net: Arc<Network>, node: usize) -> Self {
        Self {
            net,
            node,
            listeners: Vec::new(),
        }
    }
}

fn memory_port(addr: &Multiaddr) -> Option<u64> {
    let mut it = addr.iter();
    match (it.next(), it.next()) {
        (Some(Protocol::Memory(port)), None | Some(Protocol::P2p(_))) if port >= PORT_BASE => {
            Some(port)
        }
        _ => None,
    }
}

impl Drop for SimTransport {
    fn drop(&mut self) {
        for l in &self.listeners {
            self.net.unregister(l.port, l.generation);
        }
    }
}

impl Transport for SimTransport {
    type Output = Pipe;
    type Error = io::Error;
    type ListenerUpgrade = future::Ready<Result<Pipe, io::Error>>;
    type Dial = future::Ready<Result<Pipe, io::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let port = memory_port(&addr).ok_or(TransportError::MultiaddrNotSupported(addr))?;
        let (generation, rx) = self.net.register(port, self.node).ok_or_else(|| {
            TransportError::Other(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("/memory/{port} is taken"),
            ))
        })?;
        self.listeners.push(SimListener {
            id,
            port,
            generation,
            addr: Protocol::Memory(port).into(),
            rx,
            announce: true,
        });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let Some(i) = self.listeners.iter().position(|l| l.id == id) else {
            return false;
        };
        let l = self.listeners.swap_remove(i);
        self.net.unregister(l.port, l.generation);
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let port = memory_port(&addr).ok_or(TransportError::MultiaddrNotSupported(addr))?;
        Ok(future::ready(self.net.connect(self.node, port)))
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        for l in &mut self.listeners {
            if l.announce {
                l.announce = false;
                return Poll::Ready(TransportEvent::NewAddress {
                    listener_id: l.id,
                    listen_addr: l.addr.clone(),
                });
            }
            if let Poll::Ready(Some(inc)) = Pin::new(&mut l.rx).poll_next(cx) {
                return Poll::Ready(TransportEvent::Incoming {
                    listener_id: l.id,
                    upgrade: future::ready(Ok(inc.pipe)),
                    local_addr: l.addr.clone(),
                    send_back_addr: inc.from,
                });
            }
        }
        Poll::Pending
    }
}

/// The node's connection stack over the link model: the real Noise and Yamux on top.
pub fn transport_factory(net: Arc<Network>, node: usize) -> TransportFactory {
    Box::new(move |key: &Keypair| {
        let noise = noise::Config::new(key).expect("an Ed25519 node key always yields Noise keys");
        SimTransport::new(net, node)
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(Duration::from_secs(20))
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    fn model(latency_ms: u64, bps: f64, partitions: Vec<PartitionWindow>) -> NetModel {
        NetModel {
            seed: 1,
            default: LinkParams {
                latency: Duration::from_millis(latency_ms),
                jitter: Duration::ZERO,
                loss: 0.0,
                rto: Duration::from_millis(200),
            },
            between: HashMap::new(),
            node_region: vec![0, 1],
            node_bps: vec![bps, bps],
            partitions,
        }
    }

    // Paused tokio time: the clock only moves when every task waits, so these are exact.
    #[tokio::test(start_paused = true)]
    async fn bytes_arrive_in_order_after_latency_and_serialisation() {
        let net = Network::new(model(50, 8_000_000.0, vec![]));
        let (mut a, mut b) = net.pipe_pair(0, 1);
        let start = Instant::now();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn(async move {
            a.write_all(&data).await.expect("write");
            a.close().await.expect("close");
            data
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        let sent = writer.await.expect("writer");
        assert_eq!(got, sent);
        // 200 kB at 1 MB/s is 200 ms of serialisation, plus 50 ms latency.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_millis(300), "{took:?}");
        assert_eq!(net.bytes(0), (0, 200_000));
        assert_eq!(net.bytes(1), (200_000, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_refuses_dials_and_resets_connections_until_it_heals() {
        let window = PartitionWindow {
            start_ms: 100,
            end_ms: 1_000,
            group_of_region: vec![Some(0), Some(1)],
        };
        let net = Network::new(model(10, 0.0, vec![window]));
        net.start_clock(Instant::now());
        let mut listener = SimTransport::new(net.clone(), 1);
        listener
            .listen_on(ListenerId::next(), "/memory/10001".parse().expect("addr"))
            .expect("listen");
        let (mut a, mut b) = net.pipe_pair(0, 1);
        a.write_all(b"before")
            .await
            .expect("write before the partition");
        let mut buf = [0u8; 6];
        b.read_exact(&mut buf)
            .await
            .expect("read before the partition");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(a.write_all(b"during").await.is_err());
        assert!(
            b.read_exact(&mut buf).await.is_err(),
            "the reset reaches both ends"
        );
        assert!(net.connect(0, 10_001).is_err(), "dial refused while cut");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(net.connect(0, 10_001).is_ok(), "dial works once healed");
        drop(listener);
        assert!(
            net.connect(0, 10_001).is_err(),
            "a dropped listener frees its port"
        );
    }
}
