use libp2p::swarm::ListenError;

use super::*;

const LOCAL: &str = "/ip4/192.0.2.1/tcp/4001";

fn addr(s: &str) -> Multiaddr {
    s.parse().expect("multiaddr")
}

fn caps(per_ip: u32, per_prefix: u32) -> Behaviour {
    Behaviour::new(IpLimits {
        per_ip,
        per_prefix,
        exempt_loopback: true,
    })
}

/// Drives one inbound connection from `remote` through the pending and established stages as
/// the swarm does; whether it was let in.
fn connect(b: &mut Behaviour, id: usize, remote: &str) -> bool {
    let (local, remote_addr) = (addr(LOCAL), addr(remote));
    let cid = ConnectionId::new_unchecked(id);
    match b.handle_pending_inbound_connection(cid, &local, &remote_addr) {
        Ok(()) => establish(b, id, remote),
        Err(cause) => fail(b, id, remote, cause),
    }
}

/// The established stage of a connection whose handshake was let in.
fn establish(b: &mut Behaviour, id: usize, remote: &str) -> bool {
    let (local, remote_addr) = (addr(LOCAL), addr(remote));
    let cid = ConnectionId::new_unchecked(id);
    let peer = PeerId::random();
    if let Err(cause) = b.handle_established_inbound_connection(cid, peer, &local, &remote_addr) {
        return fail(b, id, remote, cause);
    }
    let endpoint = ConnectedPoint::Listener {
        local_addr: local,
        send_back_addr: remote_addr,
    };
    b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: peer,
        connection_id: cid,
        endpoint: &endpoint,
        failed_addresses: &[],
        other_established: 0,
    }));
    true
}

/// What the swarm tells the behaviours when a connection is denied or its handshake fails.
fn fail(b: &mut Behaviour, id: usize, remote: &str, cause: ConnectionDenied) -> bool {
    let error = ListenError::Denied { cause };
    b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
        local_addr: &addr(LOCAL),
        send_back_addr: &addr(remote),
        error: &error,
        connection_id: ConnectionId::new_unchecked(id),
        peer_id: None,
    }));
    false
}

fn close(b: &mut Behaviour, id: usize, remote: &str) {
    let endpoint = ConnectedPoint::Listener {
        local_addr: addr(LOCAL),
        send_back_addr: addr(remote),
    };
    b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
        peer_id: PeerId::random(),
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &endpoint,
        cause: None,
        remaining_established: 0,
    }));
}

#[test]
fn sources_group_ipv6_by_64_and_prefixes_by_24_and_48() {
    let s = Source::of(&addr("/ip4/203.0.113.77/tcp/1"), true).expect("capped");
    assert_eq!(s.ip.to_string(), "203.0.113.77");
    assert_eq!(s.prefix.to_string(), "203.0.113.0");
    let s = Source::of(&addr("/ip6/2001:db8:aa:bb:1:2:3:4/udp/1/quic-v1"), true).expect("v6");
    assert_eq!(s.ip.to_string(), "2001:db8:aa:bb::");
    assert_eq!(s.prefix.to_string(), "2001:db8:aa::");
    // An IPv4 peer on a dual-stack socket is the same source as over IPv4.
    let mapped = Source::of(&addr("/ip6/::ffff:203.0.113.77/tcp/1"), true).expect("mapped");
    assert_eq!(mapped.ip.to_string(), "203.0.113.77");
    // Not capped: loopback when exempt, relayed connections, non-IP transports.
    assert!(Source::of(&addr("/ip4/127.0.0.1/tcp/1"), true).is_none());
    assert!(Source::of(&addr("/ip6/::1/tcp/1"), true).is_none());
    assert!(Source::of(&addr("/ip4/127.0.0.1/tcp/1"), false).is_some());
    let relayed = format!(
        "/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit/p2p/{}",
        PeerId::random(),
        PeerId::random()
    );
    assert!(Source::of(&addr(&relayed), true).is_none());
    assert!(Source::of(&addr("/memory/17"), true).is_none());
}

#[test]
fn one_address_gets_its_share_and_a_closed_connection_gives_its_slot_back() {
    let mut b = caps(3, 100);
    let sybil = "/ip4/203.0.113.7/tcp/5000";
    let admitted: Vec<bool> = (0..5).map(|i| connect(&mut b, i, sybil)).collect();
    assert_eq!(admitted, [true, true, true, false, false]);
    // Another host is not affected; nor is a host in the same /24 (under its prefix cap).
    assert!(connect(&mut b, 10, "/ip4/198.51.100.9/tcp/5000"));
    assert!(connect(&mut b, 11, "/ip4/203.0.113.8/tcp/5000"));
    // Any address in the same IPv6 /64 is the same source.
    for (i, a) in ["::1", "::2", "::3", "::4"].iter().enumerate() {
        let ok = connect(&mut b, 20 + i, &format!("/ip6/2001:db8:0:1{a}/tcp/1"));
        assert_eq!(ok, i < 3, "{a}");
    }
    close(&mut b, 0, sybil);
    assert!(connect(&mut b, 30, sybil), "slot given back");
    assert!(!connect(&mut b, 31, sybil));
}

#[test]
fn one_prefix_gets_its_share_whatever_its_addresses() {
    let mut b = caps(2, 5);
    let admitted: Vec<bool> = (0..8)
        .map(|i| connect(&mut b, i, &format!("/ip4/203.0.113.{}/tcp/1", 1 + i)))
        .collect();
    assert_eq!(
        admitted,
        [true, true, true, true, true, false, false, false]
    );
    assert!(connect(&mut b, 20, "/ip4/203.0.114.1/tcp/1"), "next /24");
    let admitted: Vec<bool> = (0..7)
        .map(|i| connect(&mut b, 30 + i, &format!("/ip6/2001:db8:7:{i:x}::1/tcp/1")))
        .collect();
    assert_eq!(admitted, [true, true, true, true, true, false, false]);
    assert!(connect(&mut b, 40, "/ip6/2001:db8:8::1/tcp/1"), "next /48");
}

#[test]
fn handshakes_in_progress_are_capped_per_address_and_freed_when_they_end() {
    let mut b = caps(2, 100);
    let sybil = "/ip4/203.0.113.7/tcp/1";
    let (local, remote) = (addr(LOCAL), addr(sybil));
    let pending = |b: &mut Behaviour, id| {
        b.handle_pending_inbound_connection(ConnectionId::new_unchecked(id), &local, &remote)
    };
    assert!(pending(&mut b, 1).is_ok());
    assert!(pending(&mut b, 2).is_ok());
    let denied = pending(&mut b, 3).expect_err("third handshake from one address");
    let why = std::error::Error::source(&denied).map(ToString::to_string);
    assert!(
        why.as_deref().is_some_and(|w| w.contains("pending")),
        "{why:?}"
    );
    assert!(pending(&mut b, 3).is_err(), "a denied one takes no slot");
    // One times out (the swarm reports a listen failure): its slot is free again.
    let error = ListenError::Aborted;
    b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
        local_addr: &local,
        send_back_addr: &remote,
        error: &error,
        connection_id: ConnectionId::new_unchecked(1),
        peer_id: None,
    }));
    assert!(pending(&mut b, 4).is_ok());
    assert!(pending(&mut b, 5).is_err());
    // A handshake that completes leaves the pending count for the established one.
    assert!(establish(&mut b, 2, sybil));
    assert!(pending(&mut b, 6).is_ok());
    assert!(establish(&mut b, 4, sybil));
    assert!(
        !establish(&mut b, 6, sybil),
        "third established from one address"
    );
    assert_eq!(b.pending.len(), 0);
}

#[test]
fn loopback_is_capped_only_when_not_exempt_and_dialed_connections_never() {
    let mut exempt = caps(1, 1);
    assert!((0..5).all(|i| connect(&mut exempt, i, "/ip4/127.0.0.1/tcp/1")));
    let mut strict = Behaviour::new(IpLimits {
        per_ip: 1,
        per_prefix: 1,
        exempt_loopback: false,
    });
    assert!(connect(&mut strict, 0, "/ip4/127.0.0.1/tcp/1"));
    assert!(!connect(&mut strict, 1, "/ip4/127.0.0.1/tcp/2"));
    assert!(
        connect(&mut strict, 2, "/ip6/::1/tcp/1"),
        "::1 is another source"
    );
    // A connection this node dialed is not counted, but its source is known (rate limits).
    let endpoint = ConnectedPoint::Dialer {
        address: addr("/ip4/127.0.0.1/tcp/9"),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    };
    let id = ConnectionId::new_unchecked(3);
    strict.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: PeerId::random(),
        connection_id: id,
        endpoint: &endpoint,
        failed_addresses: &[],
        other_established: 0,
    }));
    assert_eq!(
        strict.source_of(id).map(|s| s.ip.to_string()).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(strict.inbound_tally.ips.values().sum::<u32>(), 2);
}
