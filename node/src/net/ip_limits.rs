//! Inbound connections per IP address and per network prefix. libp2p's `connection_limits`
//! counts per peer id, which costs an attacker nothing to mint: from one host, fresh peer ids
//! alone would take every connection slot (and every slot for handshakes in progress). This
//! behaviour denies an inbound connection once its source address or prefix holds its share,
//! both while the handshake runs (pending) and once established.
//!
//! What counts as one source: an IPv4 address, or an IPv6 /64 (one host picks any address in
//! its /64 at will, so a single IPv6 address means nothing). What counts as one prefix: an
//! IPv4 /24 or an IPv6 /48 (what one site is usually given; a /56 would let a site with a /48
//! take 256 shares). Connections this node dialed are not capped (it chose them), relayed
//! connections (`/p2p-circuit`) carry the relay's address rather than the sender's and are
//! left to the relay's limits, and loopback may be exempt (see [`IpLimits::exempt_loopback`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// The caps, from `[network]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Inbound connections from one source (IPv4 address, IPv6 /64), established and pending
    /// each.
    pub per_ip: u32,
    /// Inbound connections from one prefix (IPv4 /24, IPv6 /48), established and pending each.
    pub per_prefix: u32,
    /// Neither count nor cap connections from loopback addresses: they come from this machine,
    /// whose processes can do worse than open connections, and tests and local tools run many
    /// nodes there. A node behind a local proxy (e.g. a Tor onion service) sees every user at
    /// loopback: it should either keep this on or raise the caps.
    pub exempt_loopback: bool,
}

/// Where an inbound connection comes from, as the caps count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source {
    /// The IPv4 address, or the IPv6 address with its last 64 bits cleared.
    pub(crate) ip: IpAddr,
    /// The IPv4 /24 or IPv6 /48 it is in.
    pub(crate) prefix: IpAddr,
}

impl Source {
    /// The source of a connection with remote address `addr`; `None` for what is not capped:
    /// relayed connections, addresses without an IP (e.g. the simulator's `/memory`), and
    /// loopback when exempt.
    pub(crate) fn of(addr: &Multiaddr, exempt_loopback: bool) -> Option<Self> {
        if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return None;
        }
        let ip = addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })?;
        // An IPv4 peer reaching a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if exempt_loopback && ip.is_loopback() {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => Self {
                ip,
                prefix: IpAddr::V4(Ipv4Addr::from(v4.to_bits() & !0xff)),
            },
            IpAddr::V6(v6) => Self {
                ip: IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
                prefix: IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 80) - 1))),
            },
        })
    }
}

/// Connections per source and per prefix.
#[derive(Debug, Default)]
struct Tally {
    ips: HashMap<IpAddr, u32>,
    prefixes: HashMap<IpAddr, u32>,
}

impl Tally {
    fn check(&self, s: &Source, limits: &IpLimits, stage: &str) -> Result<(), ConnectionDenied> {
        let held = |m: &HashMap<IpAddr, u32>, k| m.get(k).copied().unwrap_or(0);
        if held(&self.ips, &s.ip) >= limits.per_ip {
            return Err(ConnectionDenied::new(format!(
                "{stage} connections from {} at the cap of {}",
                s.ip, limits.per_ip
            )));
        }
        if held(&self.prefixes, &s.prefix) >= limits.per_prefix {
            return Err(ConnectionDenied::new(format!(
                "{stage} connections from prefix {} at the cap of {}",
                s.prefix, limits.per_prefix
            )));
        }
        Ok(())
    }

    fn add(&mut self, s: &Source) {
        *self.ips.entry(s.ip).or_default() += 1;
        *self.prefixes.entry(s.prefix).or_default() += 1;
    }

    fn remove(&mut self, s: &Source) {
        for (map, key) in [(&mut self.ips, s.ip), (&mut self.prefixes, s.prefix)] {
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

/// The behaviour; also tells the swarm task the source of any established connection, for
/// the per-IP rate limit.
#[derive(Debug)]
pub(crate) struct Behaviour {
    limits: IpLimits,
    pending: HashMap<ConnectionId, Source>,
    pending_tally: Tally,
    /// Every established connection with a capped source, inbound or not.
    established: HashMap<ConnectionId, (Source, Endpoint)>,
    /// Inbound ones only.
    inbound_tally: Tally,
}

impl Behaviour {
    pub(crate) fn new(limits: IpLimits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            pending_tally: Tally::default(),
            established: HashMap::new(),
            inbound_tally: Tally::default(),
        }
    }

    /// The source of an established connection (`None` if exempt or not an IP connection).
    pub(crate) fn source_of(&self, id: ConnectionId) -> Option<Source> {
        self.established.get(&id).map(|(s, _)| *s)
    }

    fn end_pending(&mut self, id: ConnectionId) {
        if let Some(s) = self.pending.remove(&id) {
            self.pending_tally.remove(&s);
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if let Some(s) = Source::of(remote, self.limits.exempt_loopback) {
            self.pending_tally.check(&s, &self.limits, "pending")?;
            self.pending_tally.add(&s);
            self.pending.insert(id, s);
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.end_pending(id);
        if let Some(s) = Source::of(remote, self.limits.exempt_loopback) {
            // Counted at `ConnectionEstablished`: another behaviour may still deny it.
            self.inbound_tally.check(&s, &self.limits, "established")?;
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            }) => {
                let Some(s) =
                    Source::of(endpoint.get_remote_address(), self.limits.exempt_loopback)
                else {
                    return;
                };
                let role = match endpoint {
                    ConnectedPoint::Listener { .. } => {
                        self.inbound_tally.add(&s);
                        Endpoint::Listener
                    }
                    ConnectedPoint::Dialer { .. } => Endpoint::Dialer,
                };
                self.established.insert(connection_id, (s, role));
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some((s, Endpoint::Listener)) = self.established.remove(&connection_id) {
                    self.inbound_tally.remove(&s);
                }
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.end_pending(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "ip_limits_tests.rs"]
mod tests;
