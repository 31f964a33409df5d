//! libp2p only: one task owns the [`Swarm`](libp2p::Swarm); everything else talks to it
//! through a cloneable [`NetworkHandle`] that sends commands over a bounded channel with
//! oneshot replies. Inbound traffic is routed by kind: `deliver` requests, peer and address
//! changes go to the delivery core as [`NetEvent`]s; mailbox requests and shard gossip go
//! straight to the relay's [`MailboxSink`]. Names neither of the layers above.

mod addr;
mod behaviour;
mod chunks;
mod circuit;
mod handle;
mod ip_limits;
mod listen;
mod owners;
mod rate;
mod swarm;
pub mod wire;

pub(crate) use addr::{is_circuit, is_dialable, peer_of};
pub use behaviour::{Transport, TransportFactory};
#[cfg(test)]
pub(crate) use handle::Command;
pub(crate) use handle::{ChunkServer, MailboxSink};
pub use handle::{DeliverError, NetEvent, NetInfo, NetworkConfig, NetworkHandle};
pub use ip_limits::IpLimits;
pub use owners::CircuitAccess;
pub(crate) use swarm::spawn;
