//! The libp2p behaviours a node runs and the transports under them.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, Swarm, connection_limits, gossipsub, identify, identity, kad, mdns, noise, ping,
    request_response, tcp, yamux,
};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::addr::peer_of;
use super::handle::NetworkConfig;
use super::owners::{CircuitAccess, Owners};
use super::{ip_limits, wire};
use crate::error::NodeError;

/// Streams one connection may have open for `/tokenim/msg` at once, inbound and outbound
/// together; the node drops inbound streams beyond it. A peer keeps at most 32 deliveries in
/// flight to us (`max_inflight_per_peer`), and our own requests on the same connection
/// (receipts, batched; mailbox traffic) need a few more; an outbound request over the limit
/// fails and is retried. Lower than libp2p's 100 and the 64 we had: with frames read as they
/// arrive within one shared budget, what each stalled stream still costs is the yamux stream
/// and its task, and a connection should not hold more of those than an honest peer uses.
const MAX_STREAMS_PER_CONNECTION: usize = 48;

/// Chunk streams one connection may have open at once: a download keeps a window of 8 in
/// flight, and a node may serve a few downloads to the same peer.
const MAX_CHUNK_STREAMS_PER_CONNECTION: usize = 32;

const KAD_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/tokenim/kad/1.0.0");

/// Gossipsub application score of a peer outside [`NetworkConfig::gossip_peers`]: far below the
/// graylist threshold (-80), so nothing is published, forwarded or gossiped to it, it is never
/// in a mesh, and what it sends is dropped unread.
pub(super) const OUTSIDER_SCORE: f64 = -1000.0;

#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub(crate) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    /// Inbound connections per source address and prefix, which peer ids do not bound.
    pub(super) ip_limits: ip_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) msg: request_response::Behaviour<wire::Codec>,
    /// File chunks, on their own protocol (`chunks.rs`).
    pub(super) chunks: request_response::Behaviour<super::chunks::Codec>,
    pub(super) gossipsub: gossipsub::Behaviour,
    /// Kademlia, only when there is a DHT to join (bootstrap peers) or serve (relays).
    pub(super) kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    /// Circuit relay v2 server, on relay nodes, for NAT-ed personal nodes.
    pub(super) circuit: Toggle<libp2p::relay::Behaviour>,
    /// Circuit relay v2 client: listen through home relays, dial `/p2p-circuit` addresses.
    /// Only with the TCP/QUIC transport.
    pub(super) relay_client: Toggle<libp2p::relay::client::Behaviour>,
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

/// `owners`: who registered a mailbox here, when reservations are for them only.
pub(super) fn build_swarm(
    keypair: identity::Keypair,
    cfg: &NetworkConfig,
    owners: Option<&Owners>,
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
            .with_behaviour(|key| behaviour(key, cfg, owners, None))
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
            .with_behaviour(|key, client| behaviour(key, cfg, owners, Some(client)))
            .map_err(|e| net(&e))?
            .with_swarm_config(idle)
            .build(),
    };
    Ok(swarm)
}

fn behaviour(
    key: &identity::Keypair,
    cfg: &NetworkConfig,
    owners: Option<&Owners>,
    relay_client: Option<libp2p::relay::client::Behaviour>,
) -> Result<Behaviour, BuildError> {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
        .with_max_pending_incoming(Some(128))
        .with_max_pending_outgoing(Some(128));
    // The request timeout also bounds each inbound stream, from the moment it is accepted
    // (reading, answering, writing): a stalled stream is dropped and its budget given back.
    let msg = request_response::Behaviour::with_codec(
        wire::Codec::new(wire::ReadBudget::new(wire::READ_BUDGET_BYTES)),
        [(wire::PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.request_timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
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
        ip_limits: ip_limits::Behaviour::new(cfg.ip_limits),
        identify: identify::Behaviour::new(identify::Config::new(
            "/tokenim/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new()),
        msg,
        chunks: request_response::Behaviour::with_codec(
            super::chunks::Codec::new(cfg.relay_role),
            [(
                super::chunks::PROTOCOL,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(cfg.request_timeout)
                .with_max_concurrent_streams(MAX_CHUNK_STREAMS_PER_CONNECTION),
        ),
        gossipsub: gossipsub_behaviour(&cfg.topics)?,
        kad: Toggle::from(kad),
        mdns: Toggle::from(mdns),
        circuit: Toggle::from(
            (cfg.relay_role && cfg.circuit != CircuitAccess::Off)
                .then(|| libp2p::relay::Behaviour::new(peer_id, circuit_limits(owners))),
        ),
        relay_client: Toggle::from(relay_client),
    })
}

/// Circuit relay limits, near libp2p's defaults: circuits cost the relay bandwidth for traffic
/// it cannot store or check, so they stay short and few.
///
/// * Reservations: 512 (libp2p 128), since only owners of mailboxes hosted here get one (with
///   `owners`) and a community relay hosts more than 128 NAT-ed nodes; as many as connections
///   (`max_connections`), which every reservation holds one of. Per peer, an hour each, and
///   libp2p's rate limits per peer and per IP address: as the defaults.
/// * Circuits: 64 at once (libp2p 16; a relay of hundreds of owners sees more conversations),
///   4 per peer as the default, each for at most 10 minutes and 1 MiB (libp2p 2 minutes and
///   128 KiB): enough for a conversation's worth of messages (an envelope is at most 64 KiB,
///   most are padded to 512 bytes or 2 KiB) before the sender dials a new one; rate limits per
///   source peer (30, then one per 2 minutes) and IP address (60, one a minute) as the
///   defaults.
///
/// With `owners` the first check on every reservation request, new or renewed, is that the
/// peer registered a mailbox here; refused requests take no rate-limit token.
fn circuit_limits(owners: Option<&Owners>) -> libp2p::relay::Config {
    let mut cfg = libp2p::relay::Config {
        max_reservations: 512,
        max_circuits: 64,
        max_circuit_duration: Duration::from_secs(10 * 60),
        max_circuit_bytes: 1 << 20,
        ..Default::default()
    };
    if let Some(owners) = owners {
        cfg.reservation_rate_limiters
            .insert(0, owners.reservation_check());
    }
    cfg
}

/// Gossipsub as the design asks: anonymous publishing (an author would reveal the sending
/// node) and a content-hash message id (the default id of anonymous messages is constant).
fn gossipsub_behaviour(topics: &[String]) -> Result<gossipsub::Behaviour, BuildError> {
    let cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec())
        })
        // Nothing is forwarded before the relay role checked it (`report_message_validation_result`).
        .validate_messages()
        // One envelope or tombstone per message.
        .max_transmit_size(tokenim_crypto::MAX_ENVELOPE_BYTES + 1024)
        .build()?;
    let mut behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, cfg)?;
    // Peer scoring throttles and prunes peers that send invalid messages: each one costs its
    // sender 50 points on a shard topic (squared as they add up), so two take a peer below the
    // graylist threshold (-80). Quiet mesh peers are not penalised (mail is bursty).
    let shard = gossipsub::TopicScoreParams {
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        ..Default::default()
    };
    let params = gossipsub::PeerScoreParams {
        topics: topics
            .iter()
            .map(|t| (gossipsub::IdentTopic::new(t.clone()).hash(), shard.clone()))
            .collect(),
        // The application score only ever keeps outsiders off the topics ([`OUTSIDER_SCORE`]).
        app_specific_weight: 1.0,
        ..Default::default()
    };
    behaviour.with_peer_score(params, gossipsub::PeerScoreThresholds::default())?;
    Ok(behaviour)
}

/// Joins the gossip topics and the DHT the config names.
pub(super) fn join(swarm: &mut Swarm<Behaviour>, cfg: &NetworkConfig) -> Result<(), NodeError> {
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
    Ok(())
}
