//! The mailbox protocol, both roles: the relay's server and its worker threads, and the
//! personal node's client (stores at a recipient's relays, drains of its own mailbox) with its
//! home relays. Never names the delivery core: drained pages reach it through [`Ingest`].

mod client;
mod home;
mod protocol;
mod registry;
mod server;
mod workers;

pub(crate) use client::{Ingest, StoreBatches, ack, store_at_relays};
#[cfg(test)]
pub(crate) use home::HomeTask;
pub(crate) use home::{HomeRelaysHandle, SyncContext, home_relays};
pub use protocol::relay_key_of;
pub(crate) use protocol::{RelayRoute, all_topics};
pub(crate) use registry::{HomeRelayError, HomeRelayStatus};
pub use server::{Followup, Relay};
pub(crate) use server::{GrantPolicy, RegistrationPolicy};
pub use workers::{Idle, RelayHandle};
