//! Many peer ids from one host against a real node: connections (and handshakes in progress)
//! are capped per source address, and requests are rate-limited per address as well as per
//! peer id, while a peer from another address still gets in and is served. Every node here
//! runs on loopback, which the caps leave alone by default (`exempt_loopback`): these tests
//! turn that off, and play the other host from `::1`.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use libp2p::{Multiaddr, PeerId};
use tokenim_node::peer::{self, DeliverError, NetworkConfig, NetworkHandle, wire};
use tokio::io::AsyncReadExt;
use wire::{RejectCode, pb};

use crate::harness::{NodeProc, WAIT, init};
use crate::relay::{edit_config, poll_until};

const V4: &str = "/ip4/127.0.0.1/tcp/0";
const V6: &str = "/ip6/::1/tcp/0";

/// A node listening on both loopbacks, with per-IP caps on loopback, and its peer id and
/// addresses (IPv4, IPv6).
async fn target(
    root: &std::path::Path,
    edit: impl FnOnce(&mut tokenim_node::config::Config),
) -> Result<(NodeProc, PeerId, Multiaddr, Multiaddr)> {
    let dir = init(root, "target")?;
    edit_config(&dir, |cfg| {
        cfg.network.exempt_loopback = false;
        edit(cfg);
    })?;
    let node = NodeProc::start_with(&dir, V4, &["--listen".into(), V6.into()]).await?;
    let id = node.client.identity().await?;
    let peer: PeerId = id["peer_id"].as_str().context("peer id")?.parse()?;
    let addrs: Vec<Multiaddr> = id["listen_addrs"]
        .as_array()
        .context("listen addrs")?
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    let find = |family: &str| {
        addrs
            .iter()
            .find(|a| a.to_string().starts_with(family))
            .cloned()
            .with_context(|| format!("no {family} address in {addrs:?}"))
    };
    let (v4, v6) = (find("/ip4/127.0.0.1/tcp/")?, find("/ip6/::1/tcp/")?);
    Ok((node, peer, v4, v6))
}

/// A bare wire peer with a fresh peer id, as a Sybil (or an honest peer) would be.
struct Wire {
    net: NetworkHandle,
    node: PeerId,
    addr: Multiaddr,
}

impl Wire {
    async fn new(listen: &str, node: PeerId, addr: &Multiaddr) -> Result<Self> {
        let cfg = NetworkConfig::peer(listen.parse()?);
        let mut registry = prometheus_client::registry::Registry::default();
        let key = libp2p::identity::Keypair::generate_ed25519();
        let (net, _events, _task) = peer::spawn(key, cfg, &mut registry).await?;
        Ok(Self {
            net,
            node,
            addr: addr.clone(),
        })
    }

    /// One request a personal node answers at once (it hosts no mailbox); a transport error
    /// when the node did not let the connection in.
    async fn ask(&self) -> Result<RejectCode, DeliverError> {
        let request = wire::Request {
            kind: Some(pb::request::Kind::GetChallenge(pb::GetChallenge {})),
        };
        let answer = self
            .net
            .request(self.node, vec![self.addr.clone()], request)
            .await?;
        match answer.kind {
            Some(pb::response::Kind::Rejected(r)) => Ok(r.code()),
            other => Err(DeliverError::Unreachable(format!("odd answer {other:?}"))),
        }
    }

    async fn admitted(&self) -> Result<bool> {
        match self.ask().await {
            Ok(RejectCode::UnknownMailbox) => Ok(true),
            Ok(code) => bail!("unexpected refusal {code:?}"),
            Err(DeliverError::Unreachable(_)) => Ok(false),
            Err(e) => bail!("{e:?}"),
        }
    }
}

/// The finding: fresh peer ids from one host took every connection slot and every slot for
/// handshakes in progress. Now one address gets `max_connections_per_ip` of each; a peer from
/// another address still gets in, and a slot given back is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_are_capped_and_another_host_still_gets_in() -> Result<()> {
    const CAP: usize = 4;
    let root = tempfile::tempdir()?;
    let (node, node_id, v4, v6) = target(root.path(), |cfg| {
        cfg.network.max_connections_per_ip = CAP as u32;
    })
    .await?;
    let v4_port = v4
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .context("port")?;

    // Handshakes that never finish (raw TCP, nothing sent) hold the address's pending slots;
    // the one beyond the cap is closed at once, and so is a real peer's connection.
    let mut silent = Vec::new();
    for _ in 0..CAP {
        silent.push(tokio::net::TcpStream::connect(("127.0.0.1", v4_port)).await?);
    }
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", v4_port)).await?;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
    ensure!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a handshake beyond the cap was not closed at once: {closed:?}"
    );
    let first = Wire::new(V4, node_id, &v4).await?;
    ensure!(
        !first.admitted().await?,
        "a peer got in while its address held every handshake slot"
    );
    let other_host = Wire::new(V6, node_id, &v6).await?;
    ensure!(other_host.admitted().await?, "::1 was refused");
    // The stalled handshakes end (their sockets close): the address may connect again.
    drop(silent);
    poll_until("the pending slots never came back", || first.admitted()).await?;

    // Established connections: fresh peer ids from 127.0.0.1 until the cap, then refused.
    let mut sybils = vec![first];
    for i in 1..CAP + 3 {
        let sybil = Wire::new(V4, node_id, &v4).await?;
        let admitted = sybil.admitted().await?;
        ensure!(admitted == (i < CAP), "sybil {i}: admitted {admitted}");
        sybils.push(sybil);
    }
    let other_host = Wire::new(V6, node_id, &v6).await?;
    ensure!(other_host.admitted().await?, "::1 was refused");
    // The node still serves its own API meanwhile.
    node.client.get("/health").await?;
    // One leaves; a refused one takes its place, and the address is at the cap again.
    sybils.swap_remove(0).net.shutdown().await;
    let waiting = sybils.pop().context("a refused sybil")?;
    poll_until("the freed slot was never taken", || waiting.admitted()).await?;
    ensure!(
        !sybils.pop().context("another")?.admitted().await?,
        "over the cap again"
    );
    node.stop().await?;
    Ok(())
}

/// Peer ids from one address share its request budget: their requests beyond it are answered
/// `rate_limited` though each peer is far below its own limit, while a peer at another address
/// is served in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_sharing_an_address_share_its_request_rate() -> Result<()> {
    const PER_IP: usize = 10;
    const SYBILS: usize = 4;
    let root = tempfile::tempdir()?;
    let (node, node_id, v4, v6) = target(root.path(), |cfg| {
        cfg.limits.inbound_per_ip_per_sec = PER_IP as u32;
        cfg.limits.inbound_per_peer_per_sec = 1_000;
    })
    .await?;
    let mut sybils = Vec::new();
    for _ in 0..SYBILS {
        sybils.push(Wire::new(V4, node_id, &v4).await?);
    }
    // Connect each first, one request apart, so the burst below is not dialing.
    for s in &sybils {
        poll_until("a sybil never connected", || async {
            Ok(matches!(s.ask().await, Ok(RejectCode::UnknownMailbox)))
        })
        .await?;
    }
    let asks = sybils
        .iter()
        .flat_map(|s| (0..PER_IP).map(move |_| s.ask()));
    let started = std::time::Instant::now();
    let answers = tokio::time::timeout(WAIT, futures::future::join_all(asks)).await?;
    let took = started.elapsed();
    let limited = answers
        .iter()
        .filter(|a| matches!(a, Ok(RejectCode::RateLimited)))
        .count();
    let served = answers
        .iter()
        .filter(|a| matches!(a, Ok(RejectCode::UnknownMailbox)))
        .count();
    eprintln!(
        "{SYBILS} sybils x {PER_IP} requests in {took:?}: {served} served, {limited} rate_limited"
    );
    ensure!(served + limited == answers.len(), "{answers:?}");
    // Served at most PER_IP per one-second window the burst touched.
    let windows = took.as_secs() as usize + 2;
    ensure!(
        limited > 0 && served <= PER_IP * windows,
        "the address's budget did not hold: {served} served in {took:?}"
    );

    let honest = Wire::new(V6, node_id, &v6).await?;
    let answers = futures::future::join_all((0..PER_IP - 2).map(|_| honest.ask())).await;
    ensure!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(RejectCode::UnknownMailbox))),
        "the peer at ::1 was not served in full: {answers:?}"
    );
    node.stop().await?;
    Ok(())
}
