//! The handle the rest of the node holds, the commands it sends the swarm task, and the
//! events and routes the swarm task hands back.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::ip_limits::IpLimits;
use super::owners::CircuitAccess;
use super::wire;
use crate::error::NodeError;

/// Where the swarm task hands the relay role's traffic. Calls must not block: the swarm task
/// makes them.
pub(crate) trait MailboxSink: Send + Sync + 'static {
    /// A mailbox request (store, challenge, register, fetch, ack); answer through `reply`.
    fn request(
        &self,
        peer: PeerId,
        kind: wire::pb::request::Kind,
        reply: oneshot::Sender<wire::Response>,
    );
    /// A message on a mailbox shard topic; whether it is valid (only valid ones are forwarded
    /// to the rest of the mesh).
    fn gossip(&self, data: Vec<u8>) -> bool;
    fn peer_disconnected(&self, peer: &PeerId);
}

/// Serves inbound chunk requests (`/tokenim/chunk`: the node's files service). Called by the
/// swarm task: it must not block; the answer comes later through the future.
pub(crate) trait ChunkServer: Send + Sync + 'static {
    fn serve(
        &self,
        peer: PeerId,
        request: wire::pb::ChunkRequest,
    ) -> futures::future::BoxFuture<'static, wire::pb::ChunkResponse>;
}

/// Where the swarm task finds the chunk server, set once the files service runs.
pub(crate) type ServerSlot = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn ChunkServer>>>;

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Inbound connections per source address and prefix.
    pub ip_limits: IpLimits,
    pub inbound_per_peer_per_sec: u32,
    /// Inbound requests per second from one source address (all its peer ids together).
    pub inbound_per_ip_per_sec: u32,
    pub request_timeout: Duration,
    /// Relay role: answer Kademlia queries and serve circuit relay v2; personal nodes only ask.
    pub relay_role: bool,
    /// Who may take a circuit relay reservation (relay role only).
    pub circuit: CircuitAccess,
    /// Addresses others reach this node at (a relay hands them out in circuit reservations).
    /// Empty on a relay: its concrete listen addresses are taken as reachable.
    pub external: Vec<Multiaddr>,
    /// Gossipsub topics to join.
    pub topics: Vec<String>,
    /// The only peers this node gossips with (a relay's mesh): every other peer is scored far
    /// below gossipsub's graylist threshold, so it is neither sent nor heard on any topic.
    /// `None`: no restriction.
    pub gossip_peers: Option<HashSet<PeerId>>,
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
            ip_limits: IpLimits {
                per_ip: 16,
                per_prefix: 16,
                exempt_loopback: true,
            },
            inbound_per_peer_per_sec: 1_000,
            inbound_per_ip_per_sec: 1_000,
            request_timeout: Duration::from_secs(30),
            relay_role: false,
            circuit: CircuitAccess::Off,
            external: Vec::new(),
            topics: Vec::new(),
            gossip_peers: None,
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
pub(crate) enum Command {
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: wire::Request,
        reply: oneshot::Sender<Result<wire::Response, DeliverError>>,
    },
    ChunkRequest {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: wire::pb::ChunkRequest,
        reply: oneshot::Sender<Result<wire::pb::ChunkResponse, DeliverError>>,
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

/// Events the delivery core acts on.
#[derive(Debug)]
pub enum NetEvent {
    /// A peer sent a `deliver` request; answer through `reply` (dropping it answers `internal`).
    Request {
        peer: PeerId,
        request: wire::Request,
        reply: oneshot::Sender<wire::Response>,
    },
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// The set of addresses this node listens on changed (its contact card must follow).
    ListenAddrs(Vec<Multiaddr>),
}

#[derive(Clone)]
pub struct NetworkHandle {
    pub(super) peer_id: PeerId,
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) chunk_server: ServerSlot,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl NetworkHandle {
    /// A handle with no swarm behind it: the test plays the network by answering commands.
    #[cfg(test)]
    pub(crate) fn fake(peer_id: PeerId) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(64);
        let chunk_server = std::sync::Arc::default();
        (
            Self {
                peer_id,
                tx,
                chunk_server,
            },
            rx,
        )
    }

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

    /// Asks `peer` for a chunk or a chunk list on `/tokenim/chunk`, dialing `addrs` if needed.
    pub(crate) async fn chunk_request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: wire::pb::ChunkRequest,
    ) -> Result<wire::pb::ChunkResponse, DeliverError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::ChunkRequest {
                peer,
                addrs,
                request,
                reply,
            })
            .await
            .map_err(|_| DeliverError::ShuttingDown)?;
        rx.await.map_err(|_| DeliverError::ShuttingDown)?
    }

    /// Who answers peers' chunk requests (set once; until then they are told `missing`).
    pub(crate) fn serve_chunks(&self, server: std::sync::Arc<dyn ChunkServer>) {
        let _ = self.chunk_server.set(server);
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

    pub(crate) async fn stop_listen_via(&self, relay: PeerId) {
        let _ = self.tx.send(Command::StopListenVia { relay }).await;
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
