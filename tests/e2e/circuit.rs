//! Circuit relay reservations at a real relay: for the owners of mailboxes it hosts, not for
//! strangers (`[relay] circuit = "owners"`, the default).

use anyhow::{Context, Result, ensure};
use libp2p::{Multiaddr, PeerId};
use tokenim_crypto::Identity;
use tokenim_node::peer::{self, NetEvent, NetworkConfig, wire};
use tokio::sync::mpsc;
use wire::pb;

use crate::harness::{NodeProc, WAIT, init};
use crate::relay::{edit_config, poll_until};

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// How many reservation requests the relay answered with `event` (its libp2p metrics).
async fn reservations(relay: &NodeProc, event: &str) -> Result<u64> {
    let metrics = relay.client.get_text("/metrics").await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("libp2p_relay_events_total") && l.contains(event))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Waits for a listen address through a circuit among the peer's network events.
async fn circuit_address(events: &mut mpsc::Receiver<NetEvent>) -> Result<Multiaddr> {
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let NetEvent::ListenAddrs(addrs) = event
                && let Some(a) = addrs
                    .into_iter()
                    .find(|a| a.to_string().contains("p2p-circuit"))
            {
                return Ok(a);
            }
        }
        anyhow::bail!("the peer's network stopped")
    })
    .await
    .context("no circuit reservation")?
}

/// The finding: the circuit relay served anyone, with limits 8-128x libp2p's. Now Bob, who
/// registered his mailbox at the relay, gets a reservation; a stranger's request is refused
/// until the stranger registers a mailbox there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_reservations_are_for_mailbox_owners_only() -> Result<()> {
    let root = tempfile::tempdir()?;
    let relay_dir = init(root.path(), "relay1")?;
    // Owners only is the default; written out so the test says what it checks.
    edit_config(&relay_dir, |cfg| {
        cfg.relay.circuit = tokenim_node::config::CircuitMode::Owners;
    })?;
    let relay = NodeProc::start_with(&relay_dir, LOOPBACK, &["--relay".into()]).await?;
    let relay_addr: Multiaddr = relay.listen_addr().await?.parse()?;
    let relay_id: PeerId = relay.client.identity().await?["peer_id"]
        .as_str()
        .context("relay peer id")?
        .parse()?;

    // Bob names the relay his home relay: he registers, then reserves.
    let bob_dir = init(root.path(), "bob")?;
    edit_config(&bob_dir, |cfg| cfg.network.publish_direct_addrs = false)?;
    let flags = ["--home-relay".to_string(), relay.p2p_addr().await?];
    let bob = NodeProc::start_with(&bob_dir, LOOPBACK, &flags).await?;
    poll_until("Bob got no circuit address", || async {
        let addrs = bob.client.identity().await?["listen_addrs"].to_string();
        Ok(addrs.contains("p2p-circuit"))
    })
    .await?;
    ensure!(reservations(&relay, "ReservationReqAccepted").await? >= 1);
    let denied_before = reservations(&relay, "ReservationReqDenied").await?;

    // A stranger asks for a reservation: refused.
    let mut registry = prometheus_client::registry::Registry::default();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let cfg = NetworkConfig::peer(LOOPBACK.parse()?);
    let (stranger, mut events, _task) = peer::spawn(key, cfg, &mut registry).await?;
    stranger.listen_via(relay_id, relay_addr.clone()).await;
    poll_until("the stranger's reservation was not refused", || async {
        Ok(reservations(&relay, "ReservationReqDenied").await? > denied_before)
    })
    .await?;
    while let Ok(event) = events.try_recv() {
        if let NetEvent::ListenAddrs(addrs) = event {
            ensure!(
                !addrs.iter().any(|a| a.to_string().contains("p2p-circuit")),
                "the stranger got a reservation: {addrs:?}"
            );
        }
    }

    // The same peer registers a mailbox at the relay: now it is an owner and may reserve.
    let ask = |kind| {
        let request = wire::Request { kind: Some(kind) };
        stranger.request(relay_id, vec![relay_addr.clone()], request)
    };
    let challenge = match ask(pb::request::Kind::GetChallenge(pb::GetChallenge {}))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .kind
    {
        Some(pb::response::Kind::Challenge(c)) => c.challenge,
        other => anyhow::bail!("no challenge: {other:?}"),
    };
    let relay_key = peer::relay_key_of(&relay_id).context("relay key")?;
    let proof = Identity::from_seed([21; 32])
        .mailbox_key(0)
        .sign_registration(&relay_key, &challenge, peer::now_secs())
        .to_bytes();
    let registered = ask(pb::request::Kind::Register(pb::RegisterMailbox {
        registration: proof,
    }))
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(
        matches!(registered.kind, Some(pb::response::Kind::Accepted(_))),
        "{registered:?}"
    );
    stranger.listen_via(relay_id, relay_addr).await;
    let addr = circuit_address(&mut events).await?;
    ensure!(addr.to_string().contains(&relay_id.to_string()), "{addr}");

    stranger.shutdown().await;
    bob.stop().await?;
    relay.stop().await?;
    Ok(())
}
