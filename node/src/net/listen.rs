//! Start-up: listen, and wait until the listeners report their addresses.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use tracing::info;

use super::behaviour::Behaviour;
use crate::error::NodeError;

/// Drives the swarm until every listener reported an address, so the first contact card this
/// node hands out already says where to reach it.
pub(super) async fn wait_for_listeners(
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
