//! Turning a run into figures: `summary.json`, `deliveries.csv`, `nodes.csv`, the plots, and
//! the trace hash.
//!
//! The trace hash covers only what a seed fixes: for every planned message its sequence number,
//! sender, recipient, scheduled time and size, whether it reached the recipient's inbox, and how
//! many copies the inbox reported (exactly-once means 1). Latencies, byte counts and memory
//! depend on the machine and the scheduler and are left out.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::SimError;
use crate::plan::Plan;
use crate::scenario::Scenario;

/// What the runner observed for one message.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// The sender's node accepted it (sealed and queued in its outbox).
    pub sent: bool,
    /// First time it reached the recipient's inbox, ms from the start of the timeline.
    pub delivered_ms: Option<f64>,
    /// Copies the recipient's inbox reported.
    pub copies: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub node: usize,
    pub region: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub delivery_attempts: u64,
    pub offline_windows: usize,
    /// A relay (hosts mailboxes) rather than a personal node.
    pub relay: bool,
}

/// What went through relay mailboxes (scenarios with relays only).
#[derive(Debug, Clone, Serialize)]
pub struct RelayFigures {
    /// Planned messages whose sender got a custody receipt from at least one home relay of the
    /// recipient (direct delivery failed to connect), from the senders' stores.
    pub messages_via_relays: usize,
    /// `tokenim_relay_stored_total` summed over the relays: envelopes newly stored in a
    /// mailbox, by a sender's `store` or by gossip from another relay.
    pub envelopes_stored: u64,
    /// (registered, expected) mailbox registrations when the timeline started.
    pub mailboxes_registered_at_setup: (u64, u64),
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub seq: u64,
    pub from: usize,
    pub to: usize,
    pub scheduled_ms: u64,
    pub bytes: usize,
    pub sent: bool,
    pub delivered: bool,
    pub delivered_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub copies: u32,
    /// A group message's delivery to one member: the group's index.
    pub group: Option<usize>,
}

/// How far group setup got before the timeline started.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GroupSetup {
    /// (member, group) pairs where the member held the group and the sender key of every other
    /// member when the timeline started, and how many there are.
    pub members_ready: u64,
    pub members_expected: u64,
    /// Members whose welcome had not arrived (they do not hold their group at all).
    pub members_without_group: u64,
    /// Sender keys of co-members held by the members when the timeline started (a group of n
    /// members needs n × (n − 1)), and how many that is.
    pub sender_keys_held: u64,
    pub sender_keys_expected: u64,
    /// Creating the groups and waiting for every member to be ready.
    pub secs: f64,
}

/// Group-message figures of one size bucket (or of all groups).
#[derive(Debug, Clone, Serialize)]
pub struct GroupBucket {
    /// Member counts, e.g. `10–49`.
    pub sizes: String,
    pub groups: usize,
    /// Group messages sent (each to every other member).
    pub messages: usize,
    /// Planned deliveries: one per message and recipient member.
    pub deliveries_planned: usize,
    pub deliveries_delivered: usize,
    pub delivery_ratio: f64,
    /// Scheduled send → the member's inbox, per delivery.
    pub latency_ms: Option<Percentiles>,
    /// Scheduled send → the last member's inbox, per group message that reached every member.
    pub fanout_ms: Option<Percentiles>,
    pub extra_copies: u64,
}

/// Group conversations (scenarios with `[groups]` only).
#[derive(Debug, Clone, Serialize)]
pub struct GroupFigures {
    pub setup: GroupSetup,
    /// All group messages.
    pub total: GroupBucket,
    pub buckets: Vec<GroupBucket>,
    /// Bytes all nodes sent during the timeline (group messages, receipts, retries, 1:1
    /// traffic if any, and the network's own chatter) ÷ planned group deliveries.
    pub timeline_bytes_out_per_delivery: f64,
}

/// Everything the runner hands to the report.
#[derive(Debug)]
pub struct RawResults {
    pub scenario: Scenario,
    pub plan: Plan,
    pub slots: Vec<Slot>,
    pub nodes: Vec<NodeRow>,
    pub attempts_total: u64,
    pub relay_stats: Option<RelayFigures>,
    pub group_setup: Option<GroupSetup>,
    /// Bytes all nodes sent from the start of the timeline to its end.
    pub timeline_bytes_out: u64,
    pub lagged: bool,
    pub rss_before: Option<(u64, u64)>,
    pub rss_setup: Option<(u64, u64)>,
    pub rss_end: Option<(u64, u64)>,
    pub setup_secs: f64,
    pub timeline_secs: f64,
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub min: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Duplicates {
    /// Inbox copies beyond the first, over all messages (exactly-once delivery: 0).
    pub extra_copies: u64,
    pub per_message: f64,
    pub max_copies: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bytes {
    pub in_mean: f64,
    pub in_p50: u64,
    pub in_max: u64,
    pub out_mean: f64,
    pub out_p50: u64,
    pub out_max: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub rss_before_mib: Option<f64>,
    pub rss_after_setup_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// (RSS after setup − RSS before) / nodes: idle cost of a node with its connections.
    pub per_node_setup_kib: Option<f64>,
    /// (peak RSS − RSS before) / nodes: cost under this scenario's load.
    pub per_node_peak_kib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub nodes: usize,
    pub relays: usize,
    /// Only with relays: how many messages went through mailboxes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_relays: Option<RelayFigures>,
    /// Only with groups: delivery and latency per group size bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupFigures>,
    /// 1:1 messages plus one per group message and recipient member.
    pub messages_planned: usize,
    pub messages_sent: usize,
    pub messages_delivered: usize,
    pub delivery_ratio: f64,
    /// Scheduled send → first copy in the recipient's inbox, delivered messages only.
    pub latency_ms: Option<Percentiles>,
    pub duplicates: Duplicates,
    /// Delivery requests sent by all nodes (messages, retries, handshake replies) per message.
    pub delivery_attempts_per_message: f64,
    pub bytes_per_node: Bytes,
    pub memory: Memory,
    pub setup_secs: f64,
    /// Length of the timeline actually run (until all delivered or the drain deadline).
    pub timeline_secs: f64,
    pub wall_time_secs: f64,
    /// Some inbox events were missed live and recovered from the stores (ms resolution).
    pub events_lagged: bool,
    pub trace_hash: String,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: Summary,
    pub deliveries: Vec<DeliveryRow>,
    pub nodes: Vec<NodeRow>,
    /// (seconds, share of messages scheduled so far that have been delivered).
    pub ratio_over_time: Vec<(f64, f64)>,
    /// One row per group (empty without groups).
    pub groups: Vec<GroupRow>,
}

/// What `groups.csv` holds for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub size: usize,
    pub bucket: usize,
    pub owner: usize,
    pub messages: usize,
    pub deliveries: usize,
    pub delivered: usize,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn pct_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Percentiles {
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: pct_sorted(&v, 50.0),
        p95: pct_sorted(&v, 95.0),
        p99: pct_sorted(&v, 99.0),
        max: v[v.len() - 1],
        min: v[0],
    })
}

/// SHA-256 over the deterministic columns of the delivery trace, in sequence order.
pub fn trace_hash(rows: &[DeliveryRow]) -> String {
    let mut h = Sha256::new();
    let mut line = String::new();
    for r in rows {
        line.clear();
        let _ = write!(
            line,
            "{},{},{},{},{},{},{}",
            r.seq, r.from, r.to, r.scheduled_ms, r.bytes, r.delivered as u8, r.copies
        );
        // Group rows name their group (1:1 rows hash as before groups existed).
        if let Some(g) = r.group {
            let _ = write!(line, ",g{g}");
        }
        line.push('\n');
        h.update(line.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn build(raw: RawResults) -> Outcome {
    let mut deliveries: Vec<DeliveryRow> = raw
        .plan
        .messages
        .iter()
        .map(|m| {
            let s = raw.slots.get(m.seq as usize).cloned().unwrap_or_default();
            DeliveryRow {
                seq: m.seq,
                from: m.from,
                to: m.to,
                scheduled_ms: m.at_ms,
                bytes: m.bytes,
                sent: s.sent,
                delivered: s.delivered_ms.is_some(),
                delivered_ms: s.delivered_ms,
                latency_ms: s.delivered_ms.map(|d| (d - m.at_ms as f64).max(0.0)),
                copies: s.copies,
                group: m.group,
            }
        })
        .collect();
    deliveries.sort_by_key(|r| r.seq);
    let planned = deliveries.len();
    let delivered = deliveries.iter().filter(|r| r.delivered).count();
    let latencies: Vec<f64> = deliveries.iter().filter_map(|r| r.latency_ms).collect();
    let extra: u64 = deliveries
        .iter()
        .map(|r| u64::from(r.copies.saturating_sub(1)))
        .sum();
    let n = raw.nodes.len().max(1);
    let mut ins: Vec<u64> = raw.nodes.iter().map(|r| r.bytes_in).collect();
    let mut outs: Vec<u64> = raw.nodes.iter().map(|r| r.bytes_out).collect();
    ins.sort_unstable();
    outs.sort_unstable();
    let mid = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    let base = raw.rss_before.map(|r| r.0);
    let per_node = |x: Option<u64>| match (x, base) {
        (Some(x), Some(b)) => Some(x.saturating_sub(b) as f64 / 1024.0 / n as f64),
        _ => None,
    };
    let summary = Summary {
        scenario: raw.scenario.name.clone(),
        seed: raw.scenario.seed,
        nodes: raw.scenario.nodes,
        relays: raw.scenario.relays,
        via_relays: raw.relay_stats.clone(),
        groups: raw
            .group_setup
            .map(|setup| group_figures(&raw, setup, &deliveries)),
        messages_planned: planned,
        messages_sent: deliveries.iter().filter(|r| r.sent).count(),
        messages_delivered: delivered,
        delivery_ratio: if planned == 0 {
            1.0
        } else {
            delivered as f64 / planned as f64
        },
        latency_ms: percentiles(latencies),
        duplicates: Duplicates {
            extra_copies: extra,
            per_message: if planned == 0 {
                0.0
            } else {
                extra as f64 / planned as f64
            },
            max_copies: deliveries.iter().map(|r| r.copies).max().unwrap_or(0),
        },
        delivery_attempts_per_message: if planned == 0 {
            0.0
        } else {
            raw.attempts_total as f64 / planned as f64
        },
        bytes_per_node: Bytes {
            in_mean: ins.iter().sum::<u64>() as f64 / n as f64,
            in_p50: mid(&ins),
            in_max: ins.last().copied().unwrap_or(0),
            out_mean: outs.iter().sum::<u64>() as f64 / n as f64,
            out_p50: mid(&outs),
            out_max: outs.last().copied().unwrap_or(0),
            total: outs.iter().sum(),
        },
        memory: Memory {
            rss_before_mib: raw.rss_before.map(|r| mib(r.0)),
            rss_after_setup_mib: raw.rss_setup.map(|r| mib(r.0)),
            rss_end_mib: raw.rss_end.map(|r| mib(r.0)),
            peak_rss_mib: raw.rss_end.map(|r| mib(r.1)),
            per_node_setup_kib: per_node(raw.rss_setup.map(|r| r.0)),
            per_node_peak_kib: per_node(raw.rss_end.map(|r| r.1)),
        },
        setup_secs: raw.setup_secs,
        timeline_secs: raw.timeline_secs,
        wall_time_secs: raw.total_secs,
        events_lagged: raw.lagged,
        trace_hash: trace_hash(&deliveries),
    };
    let ratio_over_time = ratio_over_time(&deliveries, raw.timeline_secs);
    let mut groups: Vec<GroupRow> = raw
        .plan
        .groups
        .iter()
        .map(|g| GroupRow {
            size: g.members.len(),
            bucket: g.bucket,
            owner: g.members[0],
            messages: 0,
            deliveries: 0,
            delivered: 0,
        })
        .collect();
    for send in &raw.plan.group_sends {
        groups[send.group].messages += 1;
    }
    for r in &deliveries {
        if let Some(g) = r.group {
            groups[g].deliveries += 1;
            groups[g].delivered += usize::from(r.delivered);
        }
    }
    Outcome {
        summary,
        deliveries,
        nodes: raw.nodes,
        ratio_over_time,
        groups,
    }
}

/// Delivery ratio, latency and fan-out time of the group messages, per size bucket and over all.
fn group_figures(raw: &RawResults, setup: GroupSetup, rows: &[DeliveryRow]) -> GroupFigures {
    let plan = &raw.plan;
    let g = &raw.scenario.groups;
    let labels = g.bucket_labels();
    let bucket = |label: String, want: &dyn Fn(usize) -> bool| {
        let groups = plan.groups.iter().filter(|p| want(p.bucket)).count();
        let sends: Vec<_> = plan
            .group_sends
            .iter()
            .filter(|s| want(plan.groups[s.group].bucket))
            .collect();
        let mut planned = 0;
        let mut delivered = 0;
        let mut extra = 0;
        let mut latencies = Vec::new();
        let mut fanouts = Vec::new();
        for send in &sends {
            let n = plan.groups[send.group].members.len() - 1;
            let mut slowest = Some(0.0f64);
            for r in &rows[send.first_seq as usize..send.first_seq as usize + n] {
                planned += 1;
                extra += u64::from(r.copies.saturating_sub(1));
                match r.latency_ms {
                    Some(l) => {
                        delivered += 1;
                        latencies.push(l);
                        slowest = slowest.map(|s| s.max(l));
                    }
                    None => slowest = None,
                }
            }
            fanouts.extend(slowest);
        }
        GroupBucket {
            sizes: label,
            groups,
            messages: sends.len(),
            deliveries_planned: planned,
            deliveries_delivered: delivered,
            delivery_ratio: if planned == 0 {
                1.0
            } else {
                delivered as f64 / planned as f64
            },
            latency_ms: percentiles(latencies),
            fanout_ms: percentiles(fanouts),
            extra_copies: extra,
        }
    };
    let total = bucket(format!("{}–{}", g.size[0], g.size[1]), &|_| true);
    let buckets = labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| bucket(label, &|b| b == i))
        .collect();
    GroupFigures {
        setup,
        timeline_bytes_out_per_delivery: raw.timeline_bytes_out as f64
            / total.deliveries_planned.max(1) as f64,
        total,
        buckets,
    }
}

/// Share of the messages scheduled by time t that were delivered by time t.
fn ratio_over_time(rows: &[DeliveryRow], until_secs: f64) -> Vec<(f64, f64)> {
    let mut sched: Vec<f64> = rows.iter().map(|r| r.scheduled_ms as f64).collect();
    let mut done: Vec<f64> = rows.iter().filter_map(|r| r.delivered_ms).collect();
    sched.sort_by(f64::total_cmp);
    done.sort_by(f64::total_cmp);
    let steps = 200;
    let end_ms = until_secs.max(0.001) * 1e3;
    (0..=steps)
        .filter_map(|i| {
            let t = end_ms * i as f64 / steps as f64;
            let s = sched.partition_point(|&x| x <= t);
            let d = done.partition_point(|&x| x <= t);
            (s > 0).then(|| (t / 1e3, (d as f64 / s as f64).min(1.0)))
        })
        .collect()
}

pub fn write(o: &Outcome, dir: &Path) -> Result<(), SimError> {
    let io = |what: &str, e| SimError::Io(format!("{what} in {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("creating the output dir", e))?;
    let json = serde_json::to_string_pretty(&o.summary)?;
    std::fs::write(dir.join("summary.json"), json + "\n").map_err(|e| io("summary.json", e))?;

    let mut csv = String::from(
        "seq,from,to,scheduled_ms,bytes,sent,delivered,delivered_ms,latency_ms,copies,group\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    for r in &o.deliveries {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            r.seq,
            r.from,
            r.to,
            r.scheduled_ms,
            r.bytes,
            r.sent,
            r.delivered,
            opt(r.delivered_ms),
            opt(r.latency_ms),
            r.copies,
            r.group.map(|g| g.to_string()).unwrap_or_default()
        );
    }
    std::fs::write(dir.join("deliveries.csv"), csv).map_err(|e| io("deliveries.csv", e))?;

    let mut csv =
        String::from("node,region,bytes_in,bytes_out,delivery_attempts,offline_windows,relay\n");
    for r in &o.nodes {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            r.node,
            r.region,
            r.bytes_in,
            r.bytes_out,
            r.delivery_attempts,
            r.offline_windows,
            r.relay
        );
    }
    std::fs::write(dir.join("nodes.csv"), csv).map_err(|e| io("nodes.csv", e))?;
    if !o.groups.is_empty() {
        let mut csv = String::from("group,size,bucket,owner,messages,deliveries,delivered\n");
        for (i, g) in o.groups.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{i},{},{},{},{},{},{}",
                g.size, g.bucket, g.owner, g.messages, g.deliveries, g.delivered
            );
        }
        std::fs::write(dir.join("groups.csv"), csv).map_err(|e| io("groups.csv", e))?;
    }
    crate::plots::write_all(o, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, delivered: bool) -> DeliveryRow {
        DeliveryRow {
            seq,
            from: 0,
            to: 1,
            scheduled_ms: seq * 10,
            bytes: 100,
            sent: true,
            delivered,
            delivered_ms: delivered.then_some(seq as f64 * 10.0 + 5.0),
            latency_ms: delivered.then_some(5.0),
            copies: u32::from(delivered),
            group: None,
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect()).expect("non-empty");
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max, p.min),
            (50.0, 95.0, 99.0, 100.0, 1.0)
        );
        assert!(percentiles(vec![]).is_none());
    }

    #[test]
    fn trace_hash_ignores_timings_but_not_outcomes() {
        let a = vec![row(0, true), row(1, true)];
        let mut b = a.clone();
        b[1].latency_ms = Some(99.0);
        b[1].delivered_ms = Some(123.0);
        assert_eq!(trace_hash(&a), trace_hash(&b));
        let c = vec![row(0, true), row(1, false)];
        assert_ne!(trace_hash(&a), trace_hash(&c));
        let mut d = a.clone();
        d[0].copies = 2;
        assert_ne!(trace_hash(&a), trace_hash(&d));
        let mut e = a.clone();
        e[1].group = Some(0);
        assert_ne!(trace_hash(&a), trace_hash(&e));
    }
}
