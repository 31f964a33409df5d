//! The deterministic part of a run, computed from the scenario alone before any node starts:
//! node keys and regions, bootstrap peers, conversations, groups, the message schedule, offline
//! windows and partitions. Same scenario (and seed) → same plan, bit for bit.

use crate::rng::SimRng;
use crate::scenario::Scenario;

/// Memory-transport ports are `PORT_BASE + node index` (relays follow the personal nodes).
pub const PORT_BASE: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct NodePlan {
    pub region: usize,
    pub identity_seed: [u8; 32],
    pub key_seed: [u8; 32],
    pub bootstrap: Vec<usize>,
    /// Offline windows `[down_ms, up_ms)`, sorted and disjoint. Always empty for relays.
    pub offline: Vec<(u64, u64)>,
    /// This node is a relay (hosts mailboxes); relays have indices `nodes..nodes + relays`.
    pub relay: bool,
    /// Node indices of this personal node's home relays (1–2 when the scenario has relays).
    pub home_relays: Vec<usize>,
}

impl NodePlan {
    pub fn port(index: usize) -> u64 {
        PORT_BASE + index as u64
    }

    pub fn online_at(&self, t_ms: u64) -> bool {
        !self.offline.iter().any(|&(d, u)| d <= t_ms && t_ms < u)
    }

    /// The first moment at or after `t_ms` when the node is online.
    pub fn next_online(&self, t_ms: u64) -> u64 {
        let mut t = t_ms;
        for &(d, u) in &self.offline {
            if d <= t && t < u {
                t = u;
            }
        }
        t
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMessage {
    pub seq: u64,
    pub from: usize,
    pub to: usize,
    /// When the sender's app hands it to its node, ms from the start of the timeline. A message
    /// planned while its sender is offline is moved to when the sender is back.
    pub at_ms: u64,
    pub bytes: usize,
    /// A group message's delivery to one member (`to`): the group's index. One group message
    /// is one row per member other than its sender.
    pub group: Option<usize>,
}

/// A group: its members, the owner (who creates it) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub members: Vec<usize>,
    /// Its size bucket (index into `groups.size_buckets`).
    pub bucket: usize,
}

/// One group message: sent once by `from`, delivered to every other member. Its deliveries are
/// the planned messages `first_seq ..` in the order of the group's members (sender skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSend {
    /// Number of the group message (carried in its body).
    pub index: u64,
    pub group: usize,
    pub from: usize,
    pub at_ms: u64,
    pub bytes: usize,
    pub first_seq: u64,
}

/// Which group each region belongs to during one partition (`None`: not cut off).
#[derive(Debug, Clone)]
pub struct PartitionWindow {
    pub start_ms: u64,
    pub end_ms: u64,
    pub group_of_region: Vec<Option<usize>>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub regions: Vec<String>,
    pub nodes: Vec<NodePlan>,
    pub pairs: Vec<(usize, usize)>,
    pub groups: Vec<GroupPlan>,
    /// Planned messages: 1:1 messages, then one row per group message and recipient.
    pub messages: Vec<PlannedMessage>,
    pub group_sends: Vec<GroupSend>,
    pub partitions: Vec<PartitionWindow>,
}

fn ms(secs: f64) -> u64 {
    (secs.max(0.0) * 1000.0).round() as u64
}

impl Plan {
    pub fn new(s: &Scenario) -> Self {
        let regions = s.region_names();
        let n = s.nodes;
        let nodes_region = assign_regions(s, n);
        let mut nodes: Vec<NodePlan> = (0..n)
            .map(|i| {
                let mut r = SimRng::derive(s.seed, "node-keys", i as u64);
                let mut b = SimRng::derive(s.seed, "bootstrap", i as u64);
                let k = s.topology.bootstrap_peers.min(n - 1);
                let mut bootstrap = Vec::with_capacity(k);
                while bootstrap.len() < k {
                    let p = b.below(n as u64) as usize;
                    if p != i && !bootstrap.contains(&p) {
                        bootstrap.push(p);
                    }
                }
                NodePlan {
                    region: nodes_region[i],
                    identity_seed: r.bytes32(),
                    key_seed: r.bytes32(),
                    bootstrap,
                    offline: Vec::new(),
                    relay: false,
                    home_relays: home_relays(s, i),
                }
            })
            .collect();
        nodes.extend(relay_plans(s));

        // Conversations: distinct (sender, recipient) pairs (none without 1:1 traffic).
        let mut r = SimRng::derive(s.seed, "pairs", 0);
        let want = if s.traffic.rate_per_sec <= 0.0 {
            0
        } else if s.traffic.pairs == 0 {
            n
        } else {
            s.traffic.pairs
        }
        .min(n * (n - 1));
        let mut pairs = Vec::with_capacity(want);
        let mut seen = std::collections::HashSet::new();
        while pairs.len() < want {
            // With one pair per node, every node sends exactly once: a random derangement-like
            // choice keeps load even; beyond that, pairs are uniform.
            let from = if s.traffic.pairs == 0 {
                pairs.len()
            } else {
                r.below(n as u64) as usize
            };
            let to = r.below(n as u64) as usize;
            if from != to && seen.insert((from, to)) {
                pairs.push((from, to));
            }
        }

        // Groups: members drawn uniformly from the personal nodes, each group from its own
        // stream; the first member is the owner.
        let groups: Vec<GroupPlan> = (0..s.groups.count)
            .map(|g| {
                let mut r = SimRng::derive(s.seed, "groups", g as u64);
                let [lo, hi] = s.groups.size;
                let size = lo + r.below((hi - lo + 1) as u64) as usize;
                let mut members = Vec::with_capacity(size);
                let mut seen = std::collections::HashSet::new();
                while members.len() < size {
                    let m = r.below(n as u64) as usize;
                    if seen.insert(m) {
                        members.push(m);
                    }
                }
                GroupPlan {
                    members,
                    bucket: s.groups.bucket_of(size),
                }
            })
            .collect();

        // Recipients (of 1:1 conversations and group members) offline at the start of
        // traffic, back after a while.
        let t_start = ms(s.traffic.start_secs);
        let mut r = SimRng::derive(s.seed, "offline-recipients", 0);
        let mut recipients: Vec<usize> = pairs
            .iter()
            .map(|p| p.1)
            .chain(groups.iter().flat_map(|g| g.members.iter().copied()))
            .collect();
        recipients.sort_unstable();
        recipients.dedup();
        r.shuffle(&mut recipients);
        let k = (recipients.len() as f64 * s.traffic.offline_fraction).round() as usize;
        for &node in recipients.iter().take(k) {
            let down = ms(r.between(s.traffic.offline_secs[0], s.traffic.offline_secs[1]));
            nodes[node].offline.push((t_start, t_start + down.max(1)));
        }

        // Churn: any node, once.
        let mut r = SimRng::derive(s.seed, "churn", 0);
        let mut all: Vec<usize> = (0..n).collect();
        r.shuffle(&mut all);
        let k = (n as f64 * s.churn.fraction).round() as usize;
        for &node in all.iter().take(k) {
            let leave = ms(r.between(s.churn.leave_between_secs[0], s.churn.leave_between_secs[1]));
            let down = ms(r.between(s.churn.down_secs[0], s.churn.down_secs[1]));
            add_window(&mut nodes[node].offline, (leave, leave + down.max(1)));
        }

        // Traffic: a Poisson process over [start, end).
        let mut messages = Vec::new();
        if s.traffic.rate_per_sec > 0.0 && !pairs.is_empty() {
            let mut r = SimRng::derive(s.seed, "traffic", 0);
            let end = s.traffic_end_secs();
            let mut t = s.traffic.start_secs;
            let mut seq = 0;
            loop {
                t += r.exp(1.0 / s.traffic.rate_per_sec);
                if t >= end {
                    break;
                }
                let (from, to) = pairs[r.below(pairs.len() as u64) as usize];
                let at_ms = nodes[from].next_online(ms(t));
                messages.push(PlannedMessage {
                    seq,
                    from,
                    to,
                    at_ms,
                    bytes: s.traffic.message_bytes,
                    group: None,
                });
                seq += 1;
            }
        }

        // Group traffic: a Poisson process over the same window, from a random member of a
        // random group; one planned delivery per other member.
        let mut group_sends = Vec::new();
        if s.groups.rate_per_sec > 0.0 && !groups.is_empty() {
            let mut r = SimRng::derive(s.seed, "group-traffic", 0);
            let end = s.traffic_end_secs();
            let mut t = s.traffic.start_secs;
            let mut seq = messages.len() as u64;
            loop {
                t += r.exp(1.0 / s.groups.rate_per_sec);
                if t >= end {
                    break;
                }
                let group = r.below(groups.len() as u64) as usize;
                let members = &groups[group].members;
                let from = members[r.below(members.len() as u64) as usize];
                let at_ms = nodes[from].next_online(ms(t));
                let send = GroupSend {
                    index: group_sends.len() as u64,
                    group,
                    from,
                    at_ms,
                    bytes: s.groups.message_bytes,
                    first_seq: seq,
                };
                for &to in members.iter().filter(|&&m| m != from) {
                    messages.push(PlannedMessage {
                        seq,
                        from,
                        to,
                        at_ms,
                        bytes: send.bytes,
                        group: Some(group),
                    });
                    seq += 1;
                }
                group_sends.push(send);
            }
        }
        messages.sort_by_key(|m| (m.at_ms, m.seq));

        let partitions = s
            .partitions
            .iter()
            .map(|p| {
                let mut group_of_region = vec![None; regions.len()];
                for (g, names) in p.groups.iter().enumerate() {
                    for name in names {
                        if let Some(i) = regions.iter().position(|r| r == name) {
                            group_of_region[i] = Some(g);
                        }
                    }
                }
                PartitionWindow {
                    start_ms: ms(p.start_secs),
                    end_ms: ms(p.end_secs),
                    group_of_region,
                }
            })
            .collect();

        Self {
            regions,
            nodes,
            pairs,
            groups,
            messages,
            group_sends,
            partitions,
        }
    }
}

/// 1–2 distinct home relays of personal node `i` (node indices), from its own random stream.
fn home_relays(s: &Scenario, i: usize) -> Vec<usize> {
    if s.relays == 0 {
        return Vec::new();
    }
    let mut r = SimRng::derive(s.seed, "home-relays", i as u64);
    let want = (1 + r.below(2) as usize).min(s.relays);
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let relay = s.nodes + r.below(s.relays as u64) as usize;
        if !out.contains(&relay) {
            out.push(relay);
        }
    }
    out
}

/// Relays, spread round-robin over the regions that hold nodes. Each relay bootstraps to the
/// relays before it, so the relays are connected; the runner lists all of them in each relay's
/// `[relay] mesh`, so they form one mesh for mailbox gossip.
fn relay_plans(s: &Scenario) -> impl Iterator<Item = NodePlan> + '_ {
    let mut regions: Vec<usize> = (0..s.regions.len())
        .filter(|&i| s.regions[i].share > 0.0)
        .collect();
    if regions.is_empty() {
        regions = vec![s.region_names().len() - 1];
    }
    (0..s.relays).map(move |j| {
        let index = s.nodes + j;
        let mut r = SimRng::derive(s.seed, "node-keys", index as u64);
        NodePlan {
            region: regions[j % regions.len()],
            identity_seed: r.bytes32(),
            key_seed: r.bytes32(),
            bootstrap: (s.nodes..index).collect(),
            offline: Vec::new(),
            relay: true,
            home_relays: Vec::new(),
        }
    })
}

/// Places nodes into regions in proportion to their shares, then shuffles the assignment.
fn assign_regions(s: &Scenario, n: usize) -> Vec<usize> {
    if s.regions.is_empty() {
        return vec![0; n];
    }
    let total: f64 = s.regions.iter().map(|r| r.share).sum();
    let mut out = Vec::with_capacity(n);
    let mut acc = 0.0;
    for (i, r) in s.regions.iter().enumerate() {
        acc += if total > 0.0 { r.share / total } else { 0.0 };
        let upto = if i + 1 == s.regions.len() {
            n
        } else {
            ((acc * n as f64).round() as usize).min(n)
        };
        while out.len() < upto {
            out.push(i);
        }
    }
    SimRng::derive(s.seed, "regions", 0).shuffle(&mut out);
    out
}

/// Merges a window into a sorted list of disjoint windows.
fn add_window(list: &mut Vec<(u64, u64)>, w: (u64, u64)) {
    list.push(w);
    list.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
    for &(d, u) in list.iter() {
        match merged.last_mut() {
            Some(last) if d <= last.1 => last.1 = last.1.max(u),
            _ => merged.push((d, u)),
        }
    }
    *list = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(seed: u64) -> Scenario {
        Scenario::parse(&format!(
            "name='t'\nseed={seed}\nnodes=50\nduration_secs=10\n\
             [[regions]]\nname='a'\nshare=1\n[[regions]]\nname='b'\nshare=3\n\
             [topology]\nbootstrap_peers=2\n\
             [traffic]\nrate_per_sec=30\nmessage_bytes=100\npairs=40\noffline_fraction=0.1\n\
             [churn]\nfraction=0.2\nleave_between_secs=[1,5]\ndown_secs=[1,3]\n"
        ))
        .expect("scenario")
    }

    #[test]
    fn same_seed_same_plan_other_seed_other_plan() {
        let a = Plan::new(&scenario(1));
        let b = Plan::new(&scenario(1));
        let c = Plan::new(&scenario(2));
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.pairs, b.pairs);
        assert_eq!(
            a.nodes
                .iter()
                .map(|n| n.offline.clone())
                .collect::<Vec<_>>(),
            b.nodes
                .iter()
                .map(|n| n.offline.clone())
                .collect::<Vec<_>>()
        );
        assert_ne!(a.messages, c.messages);
        assert!(a.messages.len() > 100, "about 300 messages expected");
        // Shares 1:3 over 50 nodes.
        let in_a = a.nodes.iter().filter(|n| n.region == 0).count();
        assert!((12..=13).contains(&in_a), "{in_a}");
        // No message is handed to an offline sender.
        for m in &a.messages {
            assert!(a.nodes[m.from].online_at(m.at_ms));
            assert_ne!(m.from, m.to);
        }
        assert!(a.nodes.iter().all(|n| n.bootstrap.len() == 2));
    }

    #[test]
    fn relays_follow_the_nodes_never_churn_and_are_home_to_everyone() {
        let mut sc = scenario(3);
        sc.relays = 3;
        let a = Plan::new(&sc);
        let b = Plan::new(&sc);
        assert_eq!(a.nodes.len(), 53);
        // Relays do not move the personal nodes' plan.
        assert_eq!(a.messages, Plan::new(&scenario(3)).messages);
        let homes = |p: &Plan| {
            p.nodes
                .iter()
                .map(|n| n.home_relays.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(homes(&a), homes(&b));
        let mut counts = [0usize; 2];
        for (i, n) in a.nodes.iter().enumerate() {
            if i < 50 {
                assert!(!n.relay);
                assert!((1..=2).contains(&n.home_relays.len()), "{i}");
                assert!(n.home_relays.iter().all(|&r| (50..53).contains(&r)));
                counts[n.home_relays.len() - 1] += 1;
            } else {
                assert!(n.relay && n.offline.is_empty() && n.home_relays.is_empty());
                assert_eq!(n.bootstrap, (50..i).collect::<Vec<_>>());
            }
        }
        assert!(counts[0] > 10 && counts[1] > 10, "{counts:?}");
        assert!(a.messages.iter().all(|m| m.from < 50 && m.to < 50));
        assert_eq!(
            homes(&Plan::new(&scenario(3))).concat(),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn groups_have_their_own_streams_and_one_row_per_recipient() {
        let base = scenario(4);
        let mut sc = base.clone();
        sc.groups.count = 5;
        sc.groups.size = [3, 12];
        sc.groups.rate_per_sec = 10.0;
        sc.groups.size_buckets = vec![3, 8];
        let a = Plan::new(&sc);
        let b = Plan::new(&sc);
        assert_eq!(a.groups, b.groups);
        assert_eq!(a.group_sends, b.group_sends);
        // Groups do not move the 1:1 traffic.
        let one_to_one: Vec<_> = a.messages.iter().filter(|m| m.group.is_none()).collect();
        assert_eq!(one_to_one.len(), Plan::new(&base).messages.len());
        assert_eq!(a.groups.len(), 5);
        for g in &a.groups {
            assert!((3..=12).contains(&g.members.len()));
            let mut m = g.members.clone();
            m.sort_unstable();
            m.dedup();
            assert_eq!(m.len(), g.members.len(), "members are distinct");
            assert_eq!(g.bucket, usize::from(g.members.len() >= 8));
        }
        assert!(
            a.group_sends.len() > 50,
            "about 100 group messages expected"
        );
        let mut seqs: Vec<u64> = a.messages.iter().map(|m| m.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..a.messages.len() as u64).collect::<Vec<_>>());
        for send in &a.group_sends {
            let g = &a.groups[send.group];
            assert!(g.members.contains(&send.from));
            assert!(a.nodes[send.from].online_at(send.at_ms));
            let rows: Vec<_> = a
                .messages
                .iter()
                .filter(|m| {
                    (send.first_seq..send.first_seq + g.members.len() as u64 - 1).contains(&m.seq)
                })
                .collect();
            assert_eq!(rows.len(), g.members.len() - 1);
            assert!(rows.iter().all(|m| m.group == Some(send.group)
                && m.from == send.from
                && m.to != send.from
                && m.at_ms == send.at_ms));
        }
    }

    #[test]
    fn windows_merge() {
        let mut w = vec![(0, 10)];
        add_window(&mut w, (5, 20));
        add_window(&mut w, (30, 40));
        assert_eq!(w, vec![(0, 20), (30, 40)]);
        let n = NodePlan {
            region: 0,
            identity_seed: [0; 32],
            key_seed: [0; 32],
            bootstrap: vec![],
            offline: w,
            relay: false,
            home_relays: vec![],
        };
        assert_eq!(n.next_online(3), 20);
        assert_eq!(n.next_online(25), 25);
        assert!(!n.online_at(35));
    }
}
