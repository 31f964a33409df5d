//! The scenario file (TOML). Every field is documented in `simulations/README.md`; unknown keys
//! are rejected so a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SimError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Everything random (topology, regions, traffic, churn, link jitter) derives from it.
    pub seed: u64,
    /// Personal nodes.
    pub nodes: usize,
    /// Relay nodes (mailboxes for offline recipients). They never churn; every personal node
    /// gets 1–2 of them as home relays.
    #[serde(default)]
    pub relays: usize,
    /// Length of the traffic/churn/partition timeline, in seconds.
    pub duration_secs: f64,
    /// After `duration_secs`, how long to wait at most for outstanding deliveries.
    #[serde(default = "default_drain")]
    pub drain_secs: f64,
    #[serde(default)]
    pub node: NodeSettings,
    #[serde(default)]
    pub regions: Vec<Region>,
    #[serde(default)]
    pub link: LinkSettings,
    #[serde(default)]
    pub topology: Topology,
    pub traffic: Traffic,
    /// Group conversations (none without the section).
    #[serde(default)]
    pub groups: Groups,
    #[serde(default)]
    pub churn: Churn,
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

fn default_drain() -> f64 {
    30.0
}

/// Overrides of the real node's `Config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Upper bound of the delivery engine's retry backoff (`limits.max_retry_backoff_secs`).
    pub max_retry_backoff_secs: u64,
    pub max_connections: u32,
    pub inbound_per_peer_per_sec: u32,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            max_retry_backoff_secs: 4,
            max_connections: 512,
            inbound_per_peer_per_sec: 2_000,
        }
    }
}

/// A named group of nodes sharing link characteristics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    /// Relative share of the nodes placed in this region.
    #[serde(default = "one")]
    pub share: f64,
    /// Per-node access bandwidth in this region, overriding `link.bandwidth_mbps`.
    pub bandwidth_mbps: Option<f64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSettings {
    /// One-way propagation delay.
    pub latency_ms: f64,
    /// Extra one-way delay, uniform in [0, jitter_ms], drawn per chunk written.
    pub jitter_ms: f64,
    /// Per-node access bandwidth, each direction (0 = unlimited).
    pub bandwidth_mbps: f64,
    /// Probability that a chunk is lost and has to be retransmitted (see README: on a reliable
    /// stream loss shows up as retransmission delay, not as missing bytes).
    pub loss: f64,
    /// Retransmission timeout added per loss (doubling on repeated loss).
    pub rto_ms: f64,
    /// Overrides between pairs of regions (both directions).
    pub between: Vec<LinkOverride>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            latency_ms: 20.0,
            jitter_ms: 0.0,
            bandwidth_mbps: 0.0,
            loss: 0.0,
            rto_ms: 200.0,
            between: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    pub a: String,
    pub b: String,
    pub latency_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Each node gets this many random other nodes as bootstrap peers (the node's real
    /// `network.bootstrap` setting), which makes it dial them at start.
    pub bootstrap_peers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Messages per second across the whole network (a Poisson process).
    pub rate_per_sec: f64,
    /// Body size of each message in bytes (the envelope is padded to a size bucket on top).
    pub message_bytes: usize,
    /// Number of 1:1 conversations (sender, recipient); 0 means one per node.
    #[serde(default)]
    pub pairs: usize,
    /// When traffic starts, in seconds from the start of the timeline.
    #[serde(default)]
    pub start_secs: f64,
    /// When traffic stops (default: `duration_secs`).
    pub end_secs: Option<f64>,
    /// Fraction of the recipients that are offline when traffic starts and come back later.
    #[serde(default)]
    pub offline_fraction: f64,
    /// How long each of those recipients stays offline: uniform in [min, max] seconds.
    #[serde(default = "default_offline_secs")]
    pub offline_secs: [f64; 2],
}

fn default_offline_secs() -> [f64; 2] {
    [5.0, 10.0]
}

/// Group conversations: groups of personal nodes, each created by its owner through the node's
/// own group API, and group messages sent by random members over the traffic window
/// (`traffic.start_secs` to `traffic.end_secs`). Members count among the candidates for
/// `traffic.offline_fraction`, and churn picks among all personal nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Groups {
    /// Number of groups.
    pub count: usize,
    /// Members per group (the owner included): uniform in [min, max].
    pub size: [usize; 2],
    /// Group messages per second over all groups (a Poisson process); each goes from a random
    /// member of a random group to every other member.
    pub rate_per_sec: f64,
    /// Body size of each group message in bytes.
    pub message_bytes: usize,
    /// Lower edges of the size buckets the summary reports figures for (a group smaller than
    /// the first edge is counted in the first bucket).
    pub size_buckets: Vec<usize>,
    /// How long setup waits at most for every member to hold its group and every other
    /// member's sender key.
    pub setup_timeout_secs: f64,
}

impl Default for Groups {
    fn default() -> Self {
        Self {
            count: 0,
            size: [3, 10],
            rate_per_sec: 0.0,
            message_bytes: 256,
            size_buckets: vec![10, 50, 100],
            setup_timeout_secs: 120.0,
        }
    }
}

impl Groups {
    /// The bucket a group of `size` members falls in (index into `size_buckets`).
    pub fn bucket_of(&self, size: usize) -> usize {
        self.size_buckets
            .iter()
            .rposition(|&edge| edge <= size)
            .unwrap_or(0)
    }

    /// A label per bucket, e.g. `10–49`, `50–99`, `100–200` (the last one ends at the largest
    /// group size).
    pub fn bucket_labels(&self) -> Vec<String> {
        let edges = &self.size_buckets;
        (0..edges.len())
            .map(|i| {
                let lo = if i == 0 {
                    edges[0].min(self.size[0])
                } else {
                    edges[i]
                };
                let hi = edges
                    .get(i + 1)
                    .map_or(self.size[1], |&e| e.saturating_sub(1));
                if hi < lo {
                    format!("{lo}+")
                } else {
                    format!("{lo}–{hi}")
                }
            })
            .collect()
    }
}

/// Random nodes leaving and coming back (any node, sender or recipient).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// Fraction of all nodes that leave once.
    pub fraction: f64,
    /// When they leave: uniform in [from, to] seconds.
    pub leave_between_secs: [f64; 2],
    /// How long they stay away: uniform in [min, max] seconds.
    pub down_secs: [f64; 2],
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            fraction: 0.0,
            leave_between_secs: [0.0, 0.0],
            down_secs: [5.0, 10.0],
        }
    }
}

/// Regions in different groups cannot reach each other from `start_secs` to `end_secs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub start_secs: f64,
    pub end_secs: f64,
    pub groups: Vec<Vec<String>>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::Io(format!("reading {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| match e {
            SimError::Scenario(m) => SimError::Scenario(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, SimError> {
        let s: Self = toml::from_str(text).map_err(|e| SimError::Scenario(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Scenario(m));
        if self.nodes < 2 {
            return bad("at least 2 nodes are needed".into());
        }
        if !self.duration_secs.is_finite() || self.duration_secs <= 0.0 || self.drain_secs < 0.0 {
            return bad("duration_secs must be > 0 and drain_secs >= 0".into());
        }
        let frac = |x: f64| (0.0..=1.0).contains(&x);
        if !frac(self.link.loss)
            || !frac(self.traffic.offline_fraction)
            || !frac(self.churn.fraction)
        {
            return bad("loss and fractions must be in [0, 1]".into());
        }
        if self.link.loss >= 0.5 {
            return bad("link.loss must be < 0.5 (it is a per-chunk retransmission model)".into());
        }
        if self.traffic.rate_per_sec < 0.0 || self.traffic.message_bytes < 16 {
            return bad("traffic.rate_per_sec >= 0 and traffic.message_bytes >= 16".into());
        }
        if self.traffic.message_bytes > tokenim_crypto::MAX_BODY_BYTES {
            return bad(format!(
                "traffic.message_bytes exceeds the node's limit of {} bytes",
                tokenim_crypto::MAX_BODY_BYTES
            ));
        }
        for o in &self.link.between {
            for r in [&o.a, &o.b] {
                if self.region_index(r).is_none() {
                    return bad(format!("link.between names unknown region {r:?}"));
                }
            }
        }
        for p in &self.partitions {
            if p.end_secs <= p.start_secs {
                return bad("a partition must end after it starts".into());
            }
            for r in p.groups.iter().flatten() {
                if self.region_index(r).is_none() {
                    return bad(format!("partition names unknown region {r:?}"));
                }
            }
        }
        let g = &self.groups;
        if g.count > 0 {
            if g.size[0] < 2 || g.size[1] < g.size[0] || g.size[1] > self.nodes {
                return bad("groups.size must be [min, max] with 2 <= min <= max <= nodes".into());
            }
            if g.rate_per_sec < 0.0
                || g.message_bytes < 16
                || g.message_bytes > tokenim_crypto::MAX_BODY_BYTES
            {
                return bad(format!(
                    "groups.rate_per_sec >= 0 and groups.message_bytes in [16, {}]",
                    tokenim_crypto::MAX_BODY_BYTES
                ));
            }
            if g.size_buckets.is_empty() || g.size_buckets.windows(2).any(|w| w[0] >= w[1]) {
                return bad("groups.size_buckets must be increasing and not empty".into());
            }
            if !g.setup_timeout_secs.is_finite() || g.setup_timeout_secs < 0.0 {
                return bad("groups.setup_timeout_secs must be >= 0".into());
            }
        }
        if self.regions.iter().any(|r| r.share < 0.0) {
            return bad("region shares must be >= 0".into());
        }
        Ok(())
    }

    /// Regions, with one implicit region when the file declares none.
    pub fn region_names(&self) -> Vec<String> {
        if self.regions.is_empty() {
            vec!["default".into()]
        } else {
            self.regions.iter().map(|r| r.name.clone()).collect()
        }
    }

    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.region_names().iter().position(|n| n == name)
    }

    pub fn traffic_end_secs(&self) -> f64 {
        self.traffic.end_secs.unwrap_or(self.duration_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse_and_typos_are_rejected() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).expect("shipped scenario parses");
                n += 1;
            }
        }
        assert!(n >= 3, "expected at least 3 shipped scenarios, found {n}");
        let typo = "name='x'\nseed=1\nnodes=2\nduration_secs=1\nlatency=3\n\
                    [traffic]\nrate_per_sec=1\nmessage_bytes=100\n";
        assert!(Scenario::parse(typo).is_err());
        let relays = "name='x'\nseed=1\nnodes=2\nrelays=1\nduration_secs=1\n\
                      [traffic]\nrate_per_sec=1\nmessage_bytes=100\n";
        let groups = "name='x'\nseed=1\nnodes=20\nduration_secs=1\n\
                      [traffic]\nrate_per_sec=0\nmessage_bytes=100\n\
                      [groups]\ncount=2\nsize=[5,20]\nrate_per_sec=3\nsize_buckets=[5,10]\n";
        let g = Scenario::parse(groups).expect("groups parse").groups;
        assert_eq!((g.bucket_of(4), g.bucket_of(9), g.bucket_of(10)), (0, 0, 1));
        assert_eq!(g.bucket_labels(), vec!["5–9", "10–20"]);
        assert!(Scenario::parse(&groups.replace("[5,20]", "[5,21]")).is_err());
        assert!(Scenario::parse(&groups.replace("size=", "sizes=")).is_err());
        assert_eq!(
            Scenario::parse(relays)
                .expect("relays are supported")
                .relays,
            1
        );
    }
}
