//! The TokenIM node, in four layers, each using only those below it:
//!
//! * `app` — start-up, config, the local API's service, views (the only layer naming the API);
//! * `delivery` — the messaging core: sessions, outbox, inbox, one module per message kind;
//! * `mailbox` — the mailbox protocol, relay and owner roles, home relays;
//! * `net` — libp2p: the swarm task and its handle, the wire codec, circuits.
//!
//! What is public here is the whole interface: embed a node with [`launch`] or [`start`],
//! talk to it through [`RunningNode`], [`DeliveryHandle`] or [`Service`] (whose event stream
//! carries the API's form of each [`NodeEvent`]).
#![warn(unreachable_pub)]

mod app;
mod delivery;
mod error;
mod event;
mod files;
mod mailbox;
mod metrics;
mod net;
mod time;

pub use app::{
    Client, InitReport, NodeParts, RunningNode, Service, config, init, launch, logging, short,
    start,
};
pub use config::Config;
pub use delivery::{
    Consent, DeliveryError, DeliveryHandle, GroupEdit, HistoryScope, IdentityKey, MessageId,
};
pub use error::NodeError;
pub use event::NodeEvent;
pub use net::{Transport, TransportFactory};

/// A bare libp2p peer that speaks TokenIM's wire protocol with no node behind it: for load
/// generators and tests that play a sender, an owner or a hostile peer against real nodes.
pub mod peer {
    pub use crate::mailbox::relay_key_of;
    pub use crate::net::wire;
    pub use crate::net::{
        CircuitAccess, DeliverError, IpLimits, NetEvent, NetInfo, NetworkConfig, NetworkHandle,
    };

    /// Starts the peer's swarm on `cfg.listen` over TCP and QUIC.
    pub async fn spawn(
        key: libp2p::identity::Keypair,
        cfg: NetworkConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<
        (
            NetworkHandle,
            tokio::sync::mpsc::Receiver<NetEvent>,
            tokio::task::JoinHandle<()>,
        ),
        crate::NodeError,
    > {
        crate::net::spawn(key, cfg, crate::Transport::TcpQuic, registry, None).await
    }

    /// Seconds since the Unix epoch, as the protocol's signatures and acks count them.
    pub fn now_secs() -> u64 {
        crate::time::now_secs()
    }
}

/// The relay's request handling without a network, for the relay benchmark.
#[doc(hidden)]
pub mod bench {
    pub use crate::mailbox::{Followup, Idle, Relay, RelayHandle};
    pub use crate::metrics::Metrics;
}
