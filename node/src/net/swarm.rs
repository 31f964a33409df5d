//! The task that owns the swarm: commands in, events out, inbound requests routed by kind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::metrics::Recorder;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, identity, mdns, request_response};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use super::addr::is_reachable;
use super::behaviour::{Behaviour, BehaviourEvent, OUTSIDER_SCORE, Transport, build_swarm};
use super::chunks::ChunkTraffic;
use super::circuit::CircuitListeners;
use super::handle::{
    Command, DeliverError, MailboxSink, NetEvent, NetInfo, NetworkConfig, NetworkHandle,
};
use super::listen::wait_for_listeners;
use super::owners::{CircuitAccess, Owners};
use super::rate::RateLimiter;
use super::wire::{self, RejectCode};
use crate::error::NodeError;

/// Depth of the command and event channels: callers wait (backpressure) rather than queue
/// without bound.
const CHANNEL_DEPTH: usize = 1024;

/// Builds the swarm, starts listening and spawns the task that owns it. Mailbox requests and
/// shard gossip go to `mailbox` (the relay role); without one they are refused.
pub(crate) async fn spawn(
    keypair: identity::Keypair,
    cfg: NetworkConfig,
    transport: Transport,
    registry: &mut Registry,
    mailbox: Option<Arc<dyn MailboxSink>>,
) -> Result<
    (
        NetworkHandle,
        mpsc::Receiver<NetEvent>,
        tokio::task::JoinHandle<()>,
    ),
    NodeError,
> {
    // Who may reserve a circuit: owners remembered up to four per connection slot, so that
    // registrations by throwaway peers must churn many to push out an owner who is online.
    let owners = (cfg.relay_role && cfg.circuit == CircuitAccess::Owners)
        .then(|| Owners::new(4 * cfg.max_connections as usize));
    let mut swarm = build_swarm(keypair, &cfg, owners.as_ref(), transport, registry)?;
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
    super::behaviour::join(&mut swarm, &cfg)?;
    let metrics = libp2p::metrics::Metrics::new(registry);
    let peers = prometheus_client::metrics::gauge::Gauge::default();
    registry.sub_registry_with_prefix("tokenim").register(
        "peers",
        "Peers with at least one connection",
        peers.clone(),
    );
    let peer_id = *swarm.local_peer_id();
    let (tx, cmd_rx) = mpsc::channel(CHANNEL_DEPTH);
    let chunks = ChunkTraffic::default();
    let chunk_server = chunks.server.clone();
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL_DEPTH);
    let task = SwarmTask {
        swarm,
        metrics,
        events: ev_tx,
        pending_out: HashMap::new(),
        pending_in: FuturesUnordered::new(),
        chunks,
        listen_addrs,
        confirm_listen_addrs,
        circuits: CircuitListeners::default(),
        connected: HashMap::new(),
        peers,
        rate: RateLimiter::new(cfg.inbound_per_peer_per_sec, cfg.inbound_per_ip_per_sec),
        mailbox,
        gossip_peers: cfg.gossip_peers,
        owners,
    };
    let join = tokio::spawn(task.run(cmd_rx));
    let handle = NetworkHandle {
        peer_id,
        tx,
        chunk_server,
    };
    Ok((handle, ev_rx, join))
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
    chunks: ChunkTraffic,
    listen_addrs: Vec<Multiaddr>,
    /// Relay without configured external addresses: its listen addresses count as reachable.
    confirm_listen_addrs: bool,
    circuits: CircuitListeners,
    connected: HashMap<PeerId, HashSet<Multiaddr>>,
    peers: prometheus_client::metrics::gauge::Gauge,
    rate: RateLimiter,
    mailbox: Option<Arc<dyn MailboxSink>>,
    gossip_peers: Option<HashSet<PeerId>>,
    owners: Option<Owners>,
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
                Some((channel, response)) = self.chunks.answering.next(), if !self.chunks.answering.is_empty() => {
                    let _ = self.swarm.behaviour_mut().chunks.send_response(channel, response);
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
            Command::ChunkRequest {
                peer,
                addrs,
                request,
                reply,
            } => {
                let rr = &mut self.swarm.behaviour_mut().chunks;
                self.chunks.request(rr, peer, addrs, request, reply);
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
                    // Gossipsub has just added the peer and read nothing from it yet.
                    if self
                        .gossip_peers
                        .as_ref()
                        .is_some_and(|p| !p.contains(&peer_id))
                    {
                        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                        gossip.set_application_score(&peer_id, OUTSIDER_SCORE);
                    }
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
                    if let Some(mailbox) = &self.mailbox {
                        mailbox.peer_disconnected(&peer_id);
                    }
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
            BehaviourEvent::Chunks(event) => {
                let rr = &mut self.swarm.behaviour_mut().chunks;
                self.chunks.on_event(rr, event);
            }
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
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    // Validated before anything is forwarded; a node without the relay role
                    // has no business on the shard topics.
                    let acceptance = match &self.mailbox {
                        Some(mailbox) if mailbox.gossip(message.data) => {
                            gossipsub::MessageAcceptance::Accept
                        }
                        Some(_) => gossipsub::MessageAcceptance::Reject,
                        None => gossipsub::MessageAcceptance::Ignore,
                    };
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
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
            BehaviourEvent::Mdns(_) | BehaviourEvent::Limits(_) | BehaviourEvent::IpLimits(_) => {}
        }
    }

    fn on_msg_event(&mut self, event: request_response::Event<wire::Request, wire::Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        request, channel, ..
                    },
            } => {
                let source = self.swarm.behaviour().ip_limits.source_of(connection_id);
                if !self.rate.allow(peer, source.map(|s| s.ip)) {
                    let _ = self.swarm.behaviour_mut().msg.send_response(
                        channel,
                        wire::Response::rejected(RejectCode::RateLimited, "slow down"),
                    );
                    return;
                }
                self.route_request(peer, request, channel);
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

impl SwarmTask {
    /// `deliver` to the delivery core, mailbox requests to the relay role; a full queue is
    /// answered `rate_limited` at once rather than queued without bound.
    fn route_request(
        &mut self,
        peer: PeerId,
        request: wire::Request,
        channel: request_response::ResponseChannel<wire::Response>,
    ) {
        let (reply, rx) = oneshot::channel();
        // An accepted registration makes the peer a mailbox owner (circuit reservations).
        let owners = match request.kind {
            Some(wire::pb::request::Kind::Register(_)) => self.owners.clone(),
            _ => None,
        };
        let routed = match request.kind {
            Some(wire::pb::request::Kind::Deliver(_) | wire::pb::request::Kind::Link(_)) => self
                .events
                .try_send(NetEvent::Request {
                    peer,
                    request,
                    reply,
                })
                .map_err(|_| wire::Response::rejected(RejectCode::RateLimited, "node busy")),
            Some(kind) => match &self.mailbox {
                Some(mailbox) => {
                    mailbox.request(peer, kind, reply);
                    Ok(())
                }
                None => Err(wire::Response::rejected(
                    RejectCode::UnknownMailbox,
                    "this node is not a relay",
                )),
            },
            None => Err(wire::Response::rejected(
                RejectCode::Malformed,
                "empty request",
            )),
        };
        match routed {
            Ok(()) => self.pending_in.push(Box::pin(async move {
                let response = rx.await.unwrap_or_else(|_| {
                    wire::Response::rejected(RejectCode::Internal, "request dropped")
                });
                if let Some(owners) = owners {
                    owners.note(peer, &response);
                }
                (channel, response)
            })),
            Err(response) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .msg
                    .send_response(channel, response);
            }
        }
    }
}
