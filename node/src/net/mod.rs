//! The libp2p side of a node. One task owns the [`Swarm`]; everything else talks to it through
//! a cloneable [`NetworkHandle`] that sends [`Command`]s over a bounded channel with oneshot
//! replies, and receives [`NetEvent`]s over another bounded channel.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::metrics::Recorder;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, gossipsub, identify, identity, kad, mdns, noise,
    ping, request_response, tcp, yamux,
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::circuit::CircuitListeners;
use crate::error::NodeError;
use crate::wire::{self, RejectCode};

/// Depth of the command and event channels: callers wait (backpressure) rather than queue
/// without bound.
const CHANNEL_DEPTH: usize = 1024;
const KAD_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/tokenim/kad/1.0.0");

#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    msg: request_response::Behaviour<wire::Codec>,
    gossipsub: gossipsub::Behaviour,
    /// Kademlia, only when there is a DHT to join (bootstrap peers) or serve (relays).
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    /// Circuit relay v2 server, on relay nodes, for NAT-ed personal nodes.
    circuit: Toggle<libp2p::relay::Behaviour>,
    /// Circuit relay v2 client: listen through home relays, dial `/p2p-circuit` addresses.
    /// Only with the TCP/QUIC transport.
    relay_client: Toggle<libp2p::relay::client::Behaviour>,
}

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub inbound_per_peer_per_sec: u32,
    pub request_timeout: Duration,
    /// Relay role: answer Kademlia queries and serve circuit relay v2; personal nodes only ask.
    pub relay_role: bool,
    /// Addresses others reach this node at (a relay hands them out in circuit reservations).
    /// Empty on a relay: its concrete listen addresses are taken as reachable.
    pub external: Vec<Multiaddr>,
    /// Gossipsub topics to join.
    pub topics: Vec<String>,
}

impl NetworkConfig {
    /// A plain peer on one listen address with no discovery, no topics and no relay role:
    /// what tools and tests use to speak the TokenIM protocol to a node.
    pub fn peer(listen: Multiaddr) -> Self {
        Self {
            listen: vec![listen],
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 16,
            max_connections_per_peer: 2,
            inbound_per_peer_per_sec: 1_000,
            request_timeout: Duration::from_secs(30),
            relay_role: false,
            external: Vec::new(),
            topics: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub enum DeliverError {
    /// No connection could be made or the stream failed; worth retrying later.
    Unreachable(String),
    ShuttingDown,
}

/// A snapshot of the network state for the API.
#[derive(Debug, Clone)]
pub struct NetInfo {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub connected: Vec<(PeerId, Vec<Multiaddr>)>,
}

#[derive(Debug)]
enum Command {
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: wire::Request,
        reply: oneshot::Sender<Result<wire::Response, DeliverError>>,
    },
    Info {
        reply: oneshot::Sender<NetInfo>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
    },
    ListenVia {
        relay: PeerId,
        addr: Multiaddr,
    },
    StopListenVia {
        relay: PeerId,
    },
    Shutdown,
}

/// Events the node's engine acts on.
#[derive(Debug)]
pub enum NetEvent {
    /// A peer sent a request; answer through `reply` (dropping it answers `internal`).
    Request {
        peer: PeerId,
        request: wire::Request,
        reply: oneshot::Sender<wire::Response>,
    },
    /// A gossipsub message on a subscribed topic.
    Gossip {
        topic: String,
        data: Vec<u8>,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// The set of addresses this node listens on changed (its contact card must follow).
    ListenAddrs(Vec<Multiaddr>),
}

#[derive(Debug, Clone)]
pub struct NetworkHandle {
    peer_id: PeerId,
    tx: mpsc::Sender<Command>,
}

impl NetworkHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Sends one request to `peer`, dialing `addrs` if not connected.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: wire::Request,
    ) -> Result<wire::Response, DeliverError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request {
                peer,
                addrs,
                request,
                reply,
            })
            .await
            .map_err(|_| DeliverError::ShuttingDown)?;
        rx.await.map_err(|_| DeliverError::ShuttingDown)?
    }

    pub async fn info(&self) -> Result<NetInfo, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Info { reply })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Publishes on a gossipsub topic; best effort (no peers on the topic is not an error).
    pub fn publish(&self, topic: String, data: Vec<u8>) {
        if self.tx.try_send(Command::Publish { topic, data }).is_err() {
            debug!("network busy; gossip publish dropped");
        }
    }

    /// Keeps a reservation at the circuit relay `relay` (reached at `addr`), so that peers
    /// that cannot dial this node directly reach it through the relay; retried with backoff
    /// until [`NetworkHandle::stop_listen_via`]. Idempotent.
    pub async fn listen_via(&self, relay: PeerId, addr: Multiaddr) {
        let _ = self.tx.send(Command::ListenVia { relay, addr }).await;
    }

    pub async fn stop_listen_via(&self, relay: PeerId) {
        let _ = self.tx.send(Command::StopListenVia { relay }).await;
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// Builds the swarm, starts listening and spawns the task that owns it.
pub async fn spawn(
    keypair: identity::Keypair,
    cfg: NetworkConfig,
    transport: Transport,
    registry: &mut Registry,
) -> Result<
    (
        NetworkHandle,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NodeError,
> {
    let mut swarm = build_swarm(keypair, &cfg, transport, registry)?;
    let mut listeners = HashSet::new();
    for addr in &cfg.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Network(format!("cannot listen on {addr}: {e}")))?;
        listeners.insert(id);
    }
    let listen_addrs = wait_for_listeners(&mut swarm, listeners).await?;
    // A circuit relay server only serves, and only hands out in reservations, confirmed
    // external addresses.
    let confirm_listen_addrs = cfg.relay_role && cfg.external.is_empty();
    for addr in &cfg.external {
        swarm.add_external_address(addr.clone());
    }
    if confirm_listen_addrs {
        for addr in listen_addrs.iter().filter(|a| is_reachable(a)) {
            swarm.add_external_address(addr.clone());
        }
    }
    for topic in &cfg.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic.clone()))
            .map_err(|e| NodeError::Network(format!("subscribing to {topic}: {e}")))?;
    }
    for addr in &cfg.bootstrap {
        match peer_of(addr) {
            Some(peer) => {
                if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
                    kad.add_address(&peer, addr.clone());
                }
            }
            None => warn!(%addr, "bootstrap address lacks /p2p/<peer id>; ignored"),
        }
    }
    if !cfg.bootstrap.is_empty()
        && let Some(kad) = swarm.behaviour_mut().kad.as_mut()
        && let Err(e) = kad.bootstrap()
    {
        warn!("kademlia bootstrap: {e}");
    }
    let metrics = libp2p::metrics::Metrics::new(registry);
    let peers = prometheus_client::metrics::gauge::Gauge::default();
    registry.sub_registry_with_prefix("tokenim").register(
        "peers",
        "Peers with at least one connection",
        peers.clone(),
    );
    let peer_id = *swarm.local_peer_id();
    let (tx, cmd_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_DEPTH);
    let task = SwarmTask {
        swarm,
        metrics,
        events: ev_tx,
        pending_out: HashMap::new(),
        pending_in: FuturesUnordered::new(),
        listen_addrs,
        confirm_listen_addrs,
        circuits: CircuitListeners::default(),
        connected: HashMap::new(),
        peers,
        rate: RateLimiter::new(cfg.inbound_per_peer_per_sec),
    };
    let join = tokio::spawn(task.run(cmd_rx));
    Ok((NetworkHandle { peer_id, tx }, ev_rx, join))
}

/// Drives the swarm until every listener reported an address, so the first contact card this
/// node hands out already says where to reach it.
async fn wait_for_listeners(
    swarm: &mut Swarm<Behaviour>,
    mut pending: HashSet<libp2p::core::transport::ListenerId>,
) -> Result<Vec<Multiaddr>, NodeError> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !pending.is_empty() {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    info!(%address, "listening");
                    pending.remove(&listener_id);
                    addrs.push(address);
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(NodeError::Network(format!("listener failed: {error}")));
                }
                SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(NodeError::Network(format!("listener failed: {error}")));
                }
                _ => {}
            },
            () = &mut deadline => {
                return Err(NodeError::Network("listeners did not start within 10 s".into()));
            }
        }
    }
    Ok(addrs)
}

/// Builds the connection stack of a simulated or embedded node (e.g. an in-memory transport with
/// a link model); it must authenticate and multiplex, as TCP + Noise + Yamux does.
pub type TransportFactory = Box<
    dyn FnOnce(
            &identity::Keypair,
        )
            -> libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>
        + Send,
>;

/// Which transports the swarm runs.
#[derive(Default)]
pub enum Transport {
    /// TCP and QUIC, each with Noise and Yamux (QUIC brings its own).
    #[default]
    TcpQuic,
    /// Anything else, e.g. the simulator's in-memory links.
    Custom(TransportFactory),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TcpQuic => "TcpQuic",
            Self::Custom(_) => "Custom",
        })
    }
}

type BuildError = Box<dyn std::error::Error + Send + Sync>;

fn build_swarm(
    keypair: identity::Keypair,
    cfg: &NetworkConfig,
    transport: Transport,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(120));
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm = match transport {
        Transport::Custom(factory) => builder
            .with_other_transport(factory)
            .map_err(|e| net(&e))?
            .with_behaviour(|key| behaviour(key, cfg, None))
            .map_err(|e| net(&e))?
            .with_swarm_config(idle)
            .build(),
        Transport::TcpQuic => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| net(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key, client| behaviour(key, cfg, Some(client)))
            .map_err(|e| net(&e))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

fn behaviour(
    key: &identity::Keypair,
    cfg: &NetworkConfig,
    relay_client: Option<libp2p::relay::client::Behaviour>,
) -> Result<Behaviour, BuildError> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
        .with_max_pending_incoming(Some(128))
        .with_max_pending_outgoing(Some(128));
    let msg = request_response::Behaviour::with_codec(
        wire::Codec,
        [(wire::PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(64),
    );
    let kad = (cfg.relay_role || !cfg.bootstrap.is_empty()).then(|| {
        let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
        kad_cfg.set_periodic_bootstrap_interval(None);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        // Personal nodes only query the DHT; relays (server mode) answer it.
        kad.set_mode(Some(if cfg.relay_role {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        }));
        kad
    });
    let mdns = if cfg.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(identify::Config::new(
            "/tokenim/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new()),
        msg,
        gossipsub: gossipsub_behaviour()?,
        kad: Toggle::from(kad),
        mdns: Toggle::from(mdns),
        circuit: Toggle::from(
            cfg.relay_role
                .then(|| libp2p::relay::Behaviour::new(peer_id, circuit_limits())),
        ),
        relay_client: Toggle::from(relay_client),
    })
}

/// Circuits carry messages, not bulk data, yet libp2p's defaults (2 minutes, 128 KiB) would
/// close a chatty conversation's circuit every few dozen messages; and a community relay
/// serves more than the default 128 NAT-ed nodes.
fn circuit_limits() -> libp2p::relay::Config {
    libp2p::relay::Config {
        max_reservations: 4096,
        max_circuits: 1024,
        max_circuits_per_peer: 16,
        max_circuit_duration: Duration::from_secs(30 * 60),
        max_circuit_bytes: 16 << 20,
        ..Default::default()
    }
}

/// Gossipsub as the design asks: anonymous publishing (an author would reveal the sending
/// node) and a content-hash message id (the default id of anonymous messages is constant).
fn gossipsub_behaviour() -> Result<gossipsub::Behaviour, BuildError> {
    let cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec())
        })
        // One envelope or tombstone per message.
        .max_transmit_size(tokenim_crypto::MAX_ENVELOPE_BYTES + 1024)
        .build()?;
    let mut behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, cfg)?;
    // Peer scoring throttles and eventually prunes peers that flood or send invalid messages.
    behaviour.with_peer_score(
        gossipsub::PeerScoreParams::default(),
        gossipsub::PeerScoreThresholds::default(),
    )?;
    Ok(behaviour)
}

/// Whether `addr` goes through a circuit relay (`…/p2p-circuit…`).
pub(crate) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// Unspecified listen addresses (0.0.0.0) cannot be dialed; the concrete ones are reported
/// separately by the transport.
pub(crate) fn is_dialable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// A direct address others can dial: what a relay confirms as external.
fn is_reachable(addr: &Multiaddr) -> bool {
    is_dialable(addr) && !is_circuit(addr)
}

/// The peer id a multiaddr ends in (`…/p2p/<peer id>`).
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

type PendingResponse = futures::future::BoxFuture<
    'static,
    (
        request_response::ResponseChannel<wire::Response>,
        wire::Response,
    ),
>;

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    metrics: libp2p::metrics::Metrics,
    events: mpsc::Sender<NetEvent>,
    pending_out: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<wire::Response, DeliverError>>,
    >,
    pending_in: FuturesUnordered<PendingResponse>,
    listen_addrs: Vec<Multiaddr>,
    /// Relay without configured external addresses: its listen addresses count as reachable.
    confirm_listen_addrs: bool,
    circuits: CircuitListeners,
    connected: HashMap<PeerId, HashSet<Multiaddr>>,
    peers: prometheus_client::metrics::gauge::Gauge,
    rate: RateLimiter,
}

impl SwarmTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                (relay, addr) = self.circuits.next_retry() => self.listen_via(relay, addr),
                Some((channel, response)) = self.pending_in.next(), if !self.pending_in.is_empty() => {
                    // Fails only if the peer went away meanwhile; it will retry.
                    let _ = self.swarm.behaviour_mut().msg.send_response(channel, response);
                }
            }
        }
        debug!("swarm task stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request {
                peer,
                addrs,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .msg
                    .send_request_with_addresses(&peer, request, addrs);
                self.pending_out.insert(id, reply);
            }
            Command::Info { reply } => {
                let _ = reply.send(NetInfo {
                    peer_id: *self.swarm.local_peer_id(),
                    listen_addrs: self.listen_addrs.clone(),
                    connected: self
                        .connected
                        .iter()
                        .map(|(p, a)| (*p, a.iter().cloned().collect()))
                        .collect(),
                });
            }
            Command::Publish { topic, data } => {
                let topic = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    debug!("gossip publish: {e}");
                }
            }
            Command::ListenVia { relay, addr } => {
                if let Some(circuit) = self.circuits.want(relay, addr) {
                    self.listen_via(relay, circuit);
                }
            }
            Command::StopListenVia { relay } => {
                if let Some(id) = self.circuits.unwant(&relay) {
                    self.swarm.remove_listener(id);
                }
            }
            Command::Shutdown => {}
        }
    }

    fn listen_via(&mut self, relay: PeerId, circuit: Multiaddr) {
        let id = match self.swarm.listen_on(circuit) {
            Ok(id) => Some(id),
            Err(e) => {
                debug!(%relay, "cannot listen through relay: {e}");
                None
            }
        };
        self.circuits.started(relay, id);
    }

    /// Tells the engine (its contact card lists these addresses).
    fn listen_addrs_changed(&self) {
        let _ = self
            .events
            .try_send(NetEvent::ListenAddrs(self.listen_addrs.clone()));
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                // A circuit reservation reports its address again at every renewal.
                self.circuits.reserved(listener_id);
                if self.listen_addrs.contains(&address) {
                    return;
                }
                info!(%address, "listening");
                if self.confirm_listen_addrs && is_reachable(&address) {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
                self.listen_addrs_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
                self.listen_addrs.retain(|a| a != &address);
                self.listen_addrs_changed();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.connected
                    .entry(peer_id)
                    .or_default()
                    .insert(endpoint.get_remote_address().clone());
                if num_established.get() == 1 {
                    self.peers.set(self.connected.len() as i64);
                    let _ = self.events.try_send(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(set) = self.connected.get_mut(&peer_id) {
                    set.remove(endpoint.get_remote_address());
                }
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.peers.set(self.connected.len() as i64);
                    self.rate.forget(&peer_id);
                    let _ = self.events.try_send(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                // A circuit listener ends with the relay connection or a refused reservation.
                if let Some((relay, retry)) = self.circuits.closed(listener_id) {
                    debug!(%relay, ?reason, ?retry, "circuit listener closed");
                }
                self.listen_addrs.retain(|a| !addresses.contains(a));
                self.listen_addrs_changed();
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Msg(event) => self.on_msg_event(event),
            BehaviourEvent::Identify(event) => {
                self.metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    for addr in info.listen_addrs {
                        self.swarm.add_peer_address(peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Ping(event) => self.metrics.record(&event),
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.record(&event);
                if let gossipsub::Event::Message { message, .. } = event {
                    let ev = NetEvent::Gossip {
                        topic: message.topic.into_string(),
                        data: message.data,
                    };
                    if self.events.try_send(ev).is_err() {
                        debug!("engine busy; gossip message dropped");
                    }
                }
            }
            BehaviourEvent::Kad(event) => self.metrics.record(&event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    debug!(%peer, %addr, "mdns discovered");
                    self.swarm.add_peer_address(peer, addr);
                }
            }
            BehaviourEvent::Circuit(event) => self.metrics.record(&event),
            BehaviourEvent::RelayClient(event) => debug!(?event, "circuit relay client"),
            BehaviourEvent::Mdns(_) | BehaviourEvent::Limits(_) => {}
        }
    }

    fn on_msg_event(&mut self, event: request_response::Event<wire::Request, wire::Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if !self.rate.allow(peer) {
                    let _ = self.swarm.behaviour_mut().msg.send_response(
                        channel,
                        wire::Response::rejected(RejectCode::RateLimited, "slow down"),
                    );
                    return;
                }
                let (reply, rx) = oneshot::channel();
                match self.events.try_send(NetEvent::Request {
                    peer,
                    request,
                    reply,
                }) {
                    Ok(()) => self.pending_in.push(Box::pin(async move {
                        let response = rx.await.unwrap_or_else(|_| {
                            wire::Response::rejected(RejectCode::Internal, "request dropped")
                        });
                        (channel, response)
                    })),
                    Err(_) => {
                        // The engine is saturated: say so rather than queue without bound.
                        let _ = self.swarm.behaviour_mut().msg.send_response(
                            channel,
                            wire::Response::rejected(RejectCode::RateLimited, "node busy"),
                        );
                    }
                }
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(tx) = self.pending_out.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                debug!(%peer, %error, "outbound request failed");
                if let Some(tx) = self.pending_out.remove(&request_id) {
                    let _ = tx.send(Err(DeliverError::Unreachable(error.to_string())));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

/// Fixed one-second windows per peer: cheap, bounded by the number of connected peers.
struct RateLimiter {
    per_sec: u32,
    windows: HashMap<PeerId, (Instant, u32)>,
}

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            windows: HashMap::new(),
        }
    }

    fn allow(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let w = self.windows.entry(peer).or_insert((now, 0));
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= self.per_sec
    }

    fn forget(&mut self, peer: &PeerId) {
        self.windows.remove(peer);
    }
}
