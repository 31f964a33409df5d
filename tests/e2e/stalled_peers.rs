//! Peers that open `/tokenim/msg` streams to a real node, send a frame's length prefix (the
//! largest the node accepts) and perhaps part of the frame, then stall. The node must not
//! hold a frame-sized buffer for each of them, must bound what all of them hold together,
//! must drop each stalled stream within its request timeout, and must keep serving.
//!
//! The stalling clients are plain libp2p swarms (TCP, Noise, Yamux) with a request-response
//! codec of their own that writes the stall and then waits; each has its own peer id and
//! connection, as an attacker's would.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, StreamProtocol, noise, request_response, tcp, yamux};
use tokenim_node::peer::wire;

use crate::harness::{NodeProc, WAIT, pair, wait_event};

/// Separate stalling peers, each on its own connection.
const CLIENTS: usize = 200;
/// What the node's RSS may grow by while all of them stall after a length prefix (about
/// 110 KiB per connection and 2.5 KiB per stream are libp2p's).
const RSS_BOUND: u64 = 64 << 20;
/// The node's request-response timeout (`request_timeout` in `app/launch.rs`).
const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a stalled stream checks whether the node has dropped it (an empty write fails
/// once the node reset the stream); the precision of the held times measured.
const PROBE: Duration = Duration::from_secs(2);

/// Bytes of the frame each stalling client sends after the prefix in the second attack:
/// over a growth step (64 KiB), under a yamux window (256 KiB).
const PARTIAL: usize = 96 * 1024;

/// Alice and Bob, an honest message delivered (so what it takes is in the baseline), and
/// Bob's settled RSS.
async fn warm_pair(
    root: &std::path::Path,
) -> Result<(
    NodeProc,
    NodeProc,
    impl futures::Stream<Item = Result<serde_json::Value>> + Unpin,
    u64,
)> {
    let (alice, bob) = pair(root).await?;
    let mut bob_events = bob.client.events().await?;
    alice.send("bob", "before").await?;
    wait_event(&mut bob_events, "message", |_| true).await?;
    let before = settled_rss(&bob).await?;
    Ok((alice, bob, bob_events, before))
}

/// The allocation-before-payload finding: before the fix each stream that sent a length
/// prefix got a buffer of the size it claimed (528 KiB), so this attack (12,800 streams) grew
/// the node by 8 GiB. Now a stalled prefix costs no buffer, only its yamux stream and task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_length_prefixes_hold_no_frame_buffers_and_the_node_keeps_delivering() -> Result<()>
{
    let root = tempfile::tempdir()?;
    let (alice, bob, mut bob_events, before) = warm_pair(root.path()).await?;

    // More streams per client than the node lets one connection have: it drops the rest.
    let attack = Attack::start(&bob, CLIENTS, 64, 0).await?;
    let held = attack.wait_for_stalls().await?;
    let during = peak_rss(&bob).await?;
    let growth = during.saturating_sub(before);
    eprintln!(
        "prefix-only stalls: {held} streams held by {CLIENTS} clients; node RSS {} -> {} KiB (+{} KiB)",
        before >> 10,
        during >> 10,
        growth >> 10
    );
    ensure!(
        held >= CLIENTS * 16,
        "the attack did not hold enough streams open to mean anything: {held}"
    );
    ensure!(
        growth < RSS_BOUND,
        "node RSS grew by {} MiB while {held} streams stalled after a length prefix",
        growth >> 20
    );

    // The node still serves while they stall: its API, and an honest delivery.
    bob.client.get("/health").await?;
    alice.send("bob", "during").await?;
    wait_event(&mut bob_events, "message", |m| {
        m["message"]["body"] == "during"
    })
    .await?;
    ensure!(
        attack.tally.open() > 0,
        "the stalls ended before the honest delivery"
    );

    // Each stalled stream is dropped within the node's request timeout.
    let longest = attack.wait_until_all_dropped().await?;
    eprintln!("longest a stalled stream was held: {longest:?}");
    ensure!(
        longest <= NODE_REQUEST_TIMEOUT + PROBE + Duration::from_secs(5),
        "a stalled stream was held for {longest:?}"
    );
    attack.stop();
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

/// Stalls after part of a frame cost the node what they sent, and all of them together no
/// more than its read budget (32 MiB): streams beyond it are refused rather than buffered.
/// Once the stalls are dropped the budget is whole again and honest requests are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partial_frames_stay_within_the_read_budget() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob, mut bob_events, before) = warm_pair(root.path()).await?;

    // 200 × 8 × 96 KiB: 150 MiB sent and then held back, over four times the budget.
    let attack = Attack::start(&bob, CLIENTS, 8, PARTIAL).await?;
    let held = attack.wait_for_stalls().await?;
    let during = peak_rss(&bob).await?;
    let growth = during.saturating_sub(before);
    let refused =
        attack.tally.refused.load(Ordering::SeqCst) + attack.tally.dropped.load(Ordering::SeqCst);
    eprintln!(
        "partial-frame stalls: {held} streams held, {refused} refused; node RSS {} -> {} KiB (+{} KiB)",
        before >> 10,
        during >> 10,
        growth >> 10
    );
    ensure!(held > 0, "no stalled stream was held");
    // The budget, plus what the clients' connections and streams cost (the first test).
    ensure!(
        growth < wire::READ_BUDGET_BYTES as u64 + RSS_BOUND,
        "node RSS grew by {} MiB while {held} streams stalled after {PARTIAL} bytes",
        growth >> 20
    );
    ensure!(refused > 0, "the read budget refused no stream");
    ensure!(
        held * PARTIAL <= wire::READ_BUDGET_BYTES,
        "{held} streams of {PARTIAL} bytes held, over the read budget"
    );

    attack.wait_until_all_dropped().await?;
    alice.send("bob", "after").await?;
    wait_event(&mut bob_events, "message", |m| {
        m["message"]["body"] == "after"
    })
    .await?;
    attack.stop();
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

/// A line of the node's `/proc/<pid>/status` in bytes, e.g. `VmRSS` (resident now).
fn status_bytes(node: &NodeProc, field: &str) -> Result<u64> {
    let pid = node.child.id().context("node pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field}"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib << 10)
}

/// The RSS once it stopped moving for a second (the baseline).
async fn settled_rss(node: &NodeProc) -> Result<u64> {
    let mut last = status_bytes(node, "VmRSS")?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = status_bytes(node, "VmRSS")?;
        if now.abs_diff(last) < 256 << 10 {
            return Ok(now.max(last));
        }
        last = now;
    }
    Ok(last)
}

/// The highest RSS over two seconds once the stalls are in place: what they hold. (Not the
/// high-water mark: while the clients' bytes are in flight, yamux buffers them per stream
/// before any codec reads them, which no read budget sees; that is bounded by yamux's
/// windows and paid for in the attacker's bandwidth.)
async fn peak_rss(node: &NodeProc) -> Result<u64> {
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(status_bytes(node, "VmRSS")?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(peak)
}

/// What the stalling clients saw, shared by all their codecs.
#[derive(Debug, Default)]
struct Tally {
    /// Streams on which the stall was written.
    stalled: AtomicUsize,
    /// Streams the node reset before the stall was written (refused at once).
    refused: AtomicUsize,
    /// Of those, the streams the node has dropped (reset) since.
    dropped: AtomicUsize,
    /// The longest a dropped stream was held, in milliseconds.
    longest_held_ms: AtomicU64,
    /// Clients whose connection is up.
    connected: AtomicUsize,
    /// When the last stall was written, in milliseconds since the attack started.
    last_stall_ms: AtomicU64,
}

impl Tally {
    fn open(&self) -> usize {
        self.stalled
            .load(Ordering::SeqCst)
            .saturating_sub(self.dropped.load(Ordering::SeqCst))
    }
}

/// A request-response codec that writes a length prefix claiming the largest frame the node
/// accepts, then `payload` bytes of it, then nothing: it waits until the node drops the stream.
#[derive(Debug, Clone)]
struct Stall {
    payload: usize,
    tally: Arc<Tally>,
    started: Instant,
}

impl request_response::Codec for Stall {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("a stalling client serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("a stalling client reads nothing"))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut stall = Vec::new();
        prost::encoding::encode_varint(wire::MAX_FRAME_BYTES as u64, &mut stall);
        stall.resize(stall.len() + self.payload, 0x5a);
        let written = async {
            io.write_all(&stall).await?;
            io.flush().await
        };
        if let Err(e) = written.await {
            self.tally.refused.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        let since = Instant::now();
        self.tally.stalled.fetch_add(1, Ordering::SeqCst);
        self.tally
            .last_stall_ms
            .fetch_max(millis(self.started.elapsed()), Ordering::SeqCst);
        loop {
            tokio::time::sleep(PROBE).await;
            // An empty write sends an empty data frame (no bytes of the frame) and fails once
            // the node has reset the stream.
            let probe = async {
                match io.write(&[]).await {
                    Ok(_nothing) => io.flush().await,
                    Err(e) => Err(e),
                }
            };
            if probe.await.is_err() {
                self.tally.dropped.fetch_add(1, Ordering::SeqCst);
                self.tally
                    .longest_held_ms
                    .fetch_max(millis(since.elapsed()), Ordering::SeqCst);
                return Err(io::Error::other("the node dropped the stream"));
            }
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("a stalling client serves nothing"))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `clients` stalling peers against one node, each opening `streams` stalled streams.
struct Attack {
    tally: Arc<Tally>,
    started: Instant,
    clients: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Attack {
    async fn start(
        node: &NodeProc,
        clients: usize,
        streams: usize,
        payload: usize,
    ) -> Result<Self> {
        let id = node.client.identity().await?;
        let peer: PeerId = id["peer_id"].as_str().context("peer id")?.parse()?;
        let addr: Multiaddr = node.listen_addr().await?.parse()?;
        let tally = Arc::new(Tally::default());
        let started = Instant::now();
        let codec = Stall {
            payload,
            tally: tally.clone(),
            started,
        };
        // Few dials at once: the node accepts 128 pending connections.
        let dials = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let swarm = stalling_swarm(codec.clone(), streams)?;
            tasks.push(tokio::spawn(run_client(
                swarm,
                peer,
                addr.clone(),
                streams,
                dials.clone(),
                tally.clone(),
            )));
        }
        Ok(Self {
            tally,
            started,
            clients,
            tasks,
        })
    }

    /// Waits until every client is connected and no stall was written for longer than a
    /// probe (so streams the node refused at once are counted as dropped); returns how many
    /// streams are held open.
    async fn wait_for_stalls(&self) -> Result<usize> {
        let deadline = Instant::now() + WAIT;
        loop {
            let connected = self.tally.connected.load(Ordering::SeqCst);
            let quiet = millis(self.started.elapsed())
                .saturating_sub(self.tally.last_stall_ms.load(Ordering::SeqCst));
            if connected == self.clients
                && self.tally.stalled.load(Ordering::SeqCst) > 0
                && quiet > millis(PROBE) + 1000
            {
                return Ok(self.tally.open());
            }
            ensure!(
                Instant::now() < deadline,
                "only {connected} of {} clients connected, {} streams stalled",
                self.clients,
                self.tally.stalled.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the node dropped every stalled stream; returns the longest one was held.
    async fn wait_until_all_dropped(&self) -> Result<Duration> {
        let deadline = Instant::now() + NODE_REQUEST_TIMEOUT + WAIT;
        while self.tally.open() > 0 {
            ensure!(
                Instant::now() < deadline,
                "{} stalled streams still held",
                self.tally.open()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Duration::from_millis(
            self.tally.longest_held_ms.load(Ordering::SeqCst),
        ))
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn stalling_swarm(
    codec: Stall,
    streams: usize,
) -> Result<libp2p::Swarm<request_response::Behaviour<Stall>>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                codec,
                [(wire::PROTOCOL, request_response::ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(600))
                    .with_max_concurrent_streams(streams),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build())
}

async fn run_client(
    mut swarm: libp2p::Swarm<request_response::Behaviour<Stall>>,
    node: PeerId,
    addr: Multiaddr,
    streams: usize,
    dials: Arc<tokio::sync::Semaphore>,
    tally: Arc<Tally>,
) {
    let Ok(permit) = dials.acquire_owned().await else {
        return;
    };
    let mut permit = Some(permit);
    if swarm
        .dial(DialOpts::peer_id(node).addresses(vec![addr]).build())
        .is_err()
    {
        return;
    }
    while let Some(event) = swarm.next().await {
        match event {
            SwarmEvent::ConnectionEstablished { .. } if permit.is_some() => {
                permit = None;
                tally.connected.fetch_add(1, Ordering::SeqCst);
                for _ in 0..streams {
                    swarm.behaviour_mut().send_request(&node, ());
                }
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                eprintln!("stalling client could not connect: {error}");
                return;
            }
            _ => {}
        }
    }
}
