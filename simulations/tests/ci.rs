//! The small scenario, run twice: everything is delivered, exactly once, and both runs hash the
//! same trace.

use std::path::Path;

use tokenim_sim::{RunOptions, Scenario, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_scenario_delivers_everything_and_is_reproducible() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/ci-small.toml");
    let scenario = Scenario::load(&path).expect("scenario");
    let out = tempfile::tempdir().expect("tempdir");
    let first = run(
        &scenario,
        &RunOptions {
            out: Some(out.path().to_path_buf()),
            progress: false,
        },
    )
    .await
    .expect("first run");
    let s = &first.summary;
    assert!(s.messages_planned > 100, "planned {}", s.messages_planned);
    assert_eq!(
        s.messages_delivered,
        s.messages_planned,
        "undelivered: {:?}",
        first
            .deliveries
            .iter()
            .filter(|r| !r.delivered)
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    );
    assert_eq!(s.delivery_ratio, 1.0);
    assert_eq!(s.duplicates.extra_copies, 0, "inbox must be exactly-once");
    for f in [
        "summary.json",
        "deliveries.csv",
        "nodes.csv",
        "latency_cdf.svg",
        "delivery_ratio.svg",
        "bandwidth.svg",
    ] {
        let meta = std::fs::metadata(out.path().join(f)).expect(f);
        assert!(meta.len() > 0, "{f} is empty");
    }
    let csv = std::fs::read_to_string(out.path().join("deliveries.csv")).expect("csv");
    assert_eq!(csv.lines().count(), s.messages_planned + 1);

    let second = run(&scenario, &RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.summary.trace_hash, s.trace_hash);

    let mut other = scenario.clone();
    other.seed += 1;
    let third = tokenim_sim::Plan::new(&other);
    assert_ne!(
        third.messages,
        tokenim_sim::Plan::new(&scenario).messages,
        "another seed plans other traffic"
    );
}

/// Offline recipients are reached through their home relays' mailboxes: everything arrives,
/// exactly once, and some of it was stored at relays first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipients_drain_their_mailboxes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/ci-relays.toml");
    let scenario = Scenario::load(&path).expect("scenario");
    assert!(scenario.relays > 0);
    let outcome = run(&scenario, &RunOptions::default())
        .await
        .expect("relay run");
    let s = &outcome.summary;
    assert!(s.messages_planned > 30, "planned {}", s.messages_planned);
    assert_eq!(s.messages_delivered, s.messages_planned);
    assert_eq!(s.duplicates.extra_copies, 0, "inbox must be exactly-once");
    let via = s.via_relays.as_ref().expect("relay figures");
    assert!(
        via.messages_via_relays > 0 && via.envelopes_stored > 0,
        "offline recipients must be reached through mailboxes: {via:?}"
    );
    let (registered, expected) = via.mailboxes_registered_at_setup;
    assert!(expected >= 12, "every node has 1-2 home relays");
    assert_eq!(registered, expected);
    assert_eq!(outcome.nodes.iter().filter(|n| n.relay).count(), 2);
}

/// Groups created through the owners' nodes: every member gets every group message, exactly
/// once, members offline for a moment included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_reach_every_member() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/ci-groups.toml");
    let scenario = Scenario::load(&path).expect("scenario");
    let out = tempfile::tempdir().expect("tempdir");
    let outcome = run(
        &scenario,
        &RunOptions {
            out: Some(out.path().to_path_buf()),
            progress: false,
        },
    )
    .await
    .expect("group run");
    let s = &outcome.summary;
    let g = s.groups.as_ref().expect("group figures");
    assert_eq!(g.setup.members_ready, g.setup.members_expected);
    assert_eq!(g.setup.sender_keys_held, g.setup.sender_keys_expected);
    assert!(g.setup.sender_keys_expected > 100);
    assert!(g.total.messages > 10, "group messages {}", g.total.messages);
    assert_eq!(g.total.deliveries_planned, s.messages_planned);
    assert_eq!(
        s.messages_delivered,
        s.messages_planned,
        "undelivered (seq, group, to): {:?}",
        outcome
            .deliveries
            .iter()
            .filter(|r| !r.delivered)
            .map(|r| (r.seq, r.group, r.to))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.delivery_ratio, 1.0);
    assert_eq!(s.duplicates.extra_copies, 0, "inbox must be exactly-once");
    assert_eq!(g.buckets.len(), 2);
    assert!(g.buckets.iter().all(|b| b.delivery_ratio == 1.0));
    assert!(
        outcome.nodes.iter().any(|n| n.offline_windows > 0),
        "some members go offline"
    );
    for f in ["groups.csv", "group_latency_cdf.svg"] {
        let meta = std::fs::metadata(out.path().join(f)).expect(f);
        assert!(meta.len() > 0, "{f} is empty");
    }
    let csv = std::fs::read_to_string(out.path().join("deliveries.csv")).expect("csv");
    assert!(csv.lines().next().is_some_and(|h| h.ends_with(",group")));
}
