//! What kind of address a multiaddr is.

use libp2p::{Multiaddr, PeerId};

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
pub(crate) fn is_reachable(addr: &Multiaddr) -> bool {
    is_dialable(addr) && !is_circuit(addr)
}

/// The peer id a multiaddr ends in (`…/p2p/<peer id>`).
pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}
