//! Runs a scenario: starts every node (the real `tokenim-node` code) on the link model, hands
//! out contact cards, creates the groups, plays the traffic, churn and partition timeline in real
//! time, and records what each recipient's inbox saw.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use tokenim_api::NodeService;
use tokenim_api::types::{Direction, Event};
use tokenim_crypto::Identity;
use tokenim_node::{
    Config, DeliveryHandle, IdentityKey, NodeParts, RunningNode, Transport, launch,
};
use tokenim_store::Store;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::SimError;

/// Wall-clock milliseconds, as the nodes stamp messages.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
use crate::link::{LinkParams, NetModel, Network, transport_factory};
use crate::plan::{NodePlan, Plan};
use crate::report::{self, GroupSetup, NodeRow, Outcome, RawResults, RelayFigures, Slot};
use crate::scenario::Scenario;

/// How the runner reports while it works.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where to write summary.json, deliveries.csv, nodes.csv and the plots (none: don't write).
    pub out: Option<PathBuf>,
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// What the inboxes saw, indexed by message sequence number.
struct Collector {
    t0: OnceLock<(Instant, u64)>,
    slots: Mutex<Vec<Slot>>,
    /// (group message, recipient node) → sequence number of that planned delivery.
    group_rows: HashMap<(u64, usize), u64>,
    delivered: AtomicUsize,
    lagged: AtomicBool,
}

impl Collector {
    fn new(plan: &Plan) -> Self {
        let mut group_rows = HashMap::new();
        for send in &plan.group_sends {
            let others = plan.groups[send.group]
                .members
                .iter()
                .filter(|&&m| m != send.from);
            for (i, &to) in others.enumerate() {
                group_rows.insert((send.index, to), send.first_seq + i as u64);
            }
        }
        Self {
            t0: OnceLock::new(),
            slots: Mutex::new(vec![Slot::default(); plan.messages.len()]),
            group_rows,
            delivered: AtomicUsize::new(0),
            lagged: AtomicBool::new(false),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of message `seq` reached its recipient's inbox `ms` after the timeline started.
    fn delivered_at(&self, seq: u64, ms: f64, counts_as_copy: bool) {
        let mut slots = self.slots();
        let Some(s) = slots.get_mut(seq as usize) else {
            return;
        };
        if counts_as_copy {
            s.copies += 1;
        }
        if s.delivered_ms.is_none() {
            s.delivered_ms = Some(ms);
            if !counts_as_copy {
                s.copies = s.copies.max(1);
            }
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The planned message a body received by node `at` stands for: a 1:1 message's sequence
    /// number is in its body, a group message's row is found by its number and the recipient.
    fn seq_of(&self, body: &str, at: usize) -> Option<u64> {
        match parse_group_index(body) {
            Some(index) => self.group_rows.get(&(index, at)).copied(),
            None => parse_seq(body),
        }
    }

    fn since_t0_ms(&self, now: Instant) -> f64 {
        self.t0.get().map_or(0.0, |(t0, _)| {
            now.saturating_duration_since(*t0).as_secs_f64() * 1e3
        })
    }
}

/// One simulated personal node across its incarnations (it keeps its store when it restarts).
struct SimNode {
    index: usize,
    plan: NodePlan,
    peer_id: PeerId,
    identity_key: [u8; 32],
    store: Store,
    running: tokio::sync::Mutex<Option<RunningNode>>,
    engine: watch::Sender<Option<DeliveryHandle>>,
    /// Delivery attempts counted by incarnations that have stopped.
    attempts: AtomicU64,
}

struct Sim {
    scenario: Scenario,
    net: Arc<Network>,
    nodes: Vec<Arc<SimNode>>,
    collector: Arc<Collector>,
    /// Group ids, by the plan's group index (set once the owners created them).
    group_ids: OnceLock<Vec<[u8; 32]>>,
}

/// A body tagged `prefix:n:`, padded with `x` to `bytes`: what the inbox event is matched by.
fn tagged_body(prefix: &str, n: u64, bytes: usize) -> String {
    let mut body = format!("{prefix}:{n}:");
    while body.len() < bytes {
        body.push('x');
    }
    body
}

fn parse_tagged(body: &str, prefix: &str) -> Option<u64> {
    body.strip_prefix(prefix)?
        .strip_prefix(':')?
        .split_once(':')?
        .0
        .parse()
        .ok()
}

pub fn message_body(seq: u64, bytes: usize) -> String {
    tagged_body("sim", seq, bytes)
}

fn parse_seq(body: &str) -> Option<u64> {
    parse_tagged(body, "sim")
}

/// The body of group message `index` (one body for every member).
pub fn group_message_body(index: u64, bytes: usize) -> String {
    tagged_body("simg", index, bytes)
}

fn parse_group_index(body: &str) -> Option<u64> {
    parse_tagged(body, "simg")
}

fn net_model(s: &Scenario, plan: &Plan) -> NetModel {
    let d = Duration::from_secs_f64;
    let default = LinkParams {
        latency: d(s.link.latency_ms / 1e3),
        jitter: d(s.link.jitter_ms / 1e3),
        loss: s.link.loss,
        rto: d(s.link.rto_ms / 1e3),
    };
    let mut between = HashMap::new();
    for o in &s.link.between {
        if let (Some(a), Some(b)) = (s.region_index(&o.a), s.region_index(&o.b)) {
            between.insert(
                (a.min(b), a.max(b)),
                LinkParams {
                    latency: o.latency_ms.map_or(default.latency, |x| d(x / 1e3)),
                    jitter: o.jitter_ms.map_or(default.jitter, |x| d(x / 1e3)),
                    loss: o.loss.unwrap_or(default.loss),
                    rto: default.rto,
                },
            );
        }
    }
    let region_bps: Vec<f64> = plan
        .regions
        .iter()
        .map(|name| {
            s.regions
                .iter()
                .find(|r| &r.name == name)
                .and_then(|r| r.bandwidth_mbps)
                .unwrap_or(s.link.bandwidth_mbps)
                * 1e6
        })
        .collect();
    NetModel {
        seed: s.seed,
        default,
        between,
        node_region: plan.nodes.iter().map(|n| n.region).collect(),
        node_bps: plan.nodes.iter().map(|n| region_bps[n.region]).collect(),
        partitions: plan.partitions.clone(),
    }
}

fn node_keypair(plan: &NodePlan) -> Result<Keypair, SimError> {
    Keypair::ed25519_from_bytes(plan.key_seed).map_err(|e| SimError::Scenario(e.to_string()))
}

fn progress(enabled: bool, len: u64, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

/// Runs `scenario` to completion (every message delivered, or the drain deadline).
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<Outcome, SimError> {
    scenario.validate()?;
    let started = std::time::Instant::now();
    let plan = Plan::new(scenario);
    let net = Network::new(net_model(scenario, &plan));
    let rss_before = crate::memory::rss();

    let nodes = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let key = node_keypair(p)?;
            Ok(Arc::new(SimNode {
                index,
                plan: p.clone(),
                peer_id: key.public().to_peer_id(),
                identity_key: Identity::from_seed(p.identity_seed).public().identity_key,
                store: Store::in_memory(),
                running: tokio::sync::Mutex::new(None),
                engine: watch::Sender::new(None),
                attempts: AtomicU64::new(0),
            }))
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let sim = Arc::new(Sim {
        scenario: scenario.clone(),
        net: net.clone(),
        nodes,
        collector: Arc::new(Collector::new(&plan)),
        group_ids: OnceLock::new(),
    });

    // Start every node: relays first, so personal nodes register their mailboxes at start.
    let bar = progress(opts.progress, sim.nodes.len() as u64, "starting");
    let (relays, personal): (Vec<_>, Vec<_>) = sim.nodes.iter().partition(|n| n.plan.relay);
    for node in relays.iter().chain(&personal) {
        sim.start(node).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let registered = sim.wait_for_mailboxes(&relays).await?;

    // Both sides of each pair add the other's card, as users who talk do: a card a node never
    // added is a stranger's, whose messages wait as a request and get no receipt. A group's
    // owner and each of its members are contacts too: the owner can only add accepted
    // contacts, and a member takes a welcome only from a contact.
    let owner_links = plan.groups.iter().flat_map(|g| {
        let owner = g.members[0];
        g.members[1..]
            .iter()
            .flat_map(move |&m| [(owner, m), (m, owner)])
    });
    let mut links: Vec<(usize, usize)> = plan
        .pairs
        .iter()
        .flat_map(|&(from, to)| [(from, to), (to, from)])
        .chain(owner_links)
        .collect();
    links.sort_unstable();
    links.dedup();
    let bar = progress(opts.progress, links.len() as u64, "contacts");
    let mut cards: HashMap<usize, String> = HashMap::new();
    for &(from, to) in &links {
        let card = match cards.get(&to) {
            Some(c) => c.clone(),
            None => {
                let (engine, _) = sim.handles(to).await?;
                let card = engine.my_card().await.map_err(|e| SimError::Service {
                    index: to,
                    message: e.to_string(),
                })?;
                cards.insert(to, card.clone());
                card
            }
        };
        let (_, service) = sim.handles(from).await?;
        service
            .add_contact(card, None)
            .await
            .map_err(|e| SimError::Service {
                index: from,
                message: e.to_string(),
            })?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    tracing::info!(
        "setup: {} contact cards added after {:.0} s",
        links.len(),
        started.elapsed().as_secs_f64()
    );
    let group_setup = if plan.groups.is_empty() {
        None
    } else {
        Some(sim.create_groups(&plan, opts.progress).await?)
    };
    let rss_setup = crate::memory::rss();
    let setup_secs = started.elapsed().as_secs_f64();

    // The timeline.
    let t0 = Instant::now();
    let wall0 = now_ms();
    let _ = sim.collector.t0.set((t0, wall0));
    net.start_clock(t0);
    let bytes_out_at_t0 = sim.bytes_out_total();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for node in &sim.nodes {
        if !node.plan.offline.is_empty() {
            tasks.push(tokio::spawn(sim.clone().churn(node.clone(), t0)));
        }
    }
    tasks.push(tokio::spawn(sim.clone().traffic(plan.clone(), t0)));
    tasks.push(tokio::spawn(sim.clone().group_traffic(plan.clone(), t0)));

    let total = plan.messages.len();
    let last_send = plan.messages.last().map_or(0, |m| m.at_ms);
    let deadline = t0 + Duration::from_secs_f64(scenario.duration_secs + scenario.drain_secs);
    let bar = progress(opts.progress, total as u64, "delivered");
    loop {
        let delivered = sim.collector.delivered.load(Ordering::Relaxed);
        bar.set_position(delivered as u64);
        let now = Instant::now();
        bar.set_message(format!(
            "t={:.1}s",
            now.saturating_duration_since(t0).as_secs_f64()
        ));
        let all_sent = now >= t0 + Duration::from_millis(last_send);
        if (delivered >= total && all_sent) || now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let timeline_secs = t0.elapsed().as_secs_f64();
    let timeline_bytes_out = sim.bytes_out_total().saturating_sub(bytes_out_at_t0);
    for t in &tasks {
        t.abort();
    }

    // Whatever the event stream missed (a lagging subscriber) is still in the stores.
    sim.reconcile_from_stores(&plan);
    let rss_end = crate::memory::rss();
    let relay_stats = if scenario.relays > 0 {
        let mut stored = 0;
        for node in &relays {
            if let Some(r) = node.running.lock().await.as_ref() {
                stored += metric(r, "tokenim_relay_stored_total").await;
            }
        }
        Some(RelayFigures {
            envelopes_stored: stored,
            messages_via_relays: sim.messages_via_relays(&plan),
            mailboxes_registered_at_setup: registered,
        })
    } else {
        None
    };
    let mut node_rows = Vec::with_capacity(sim.nodes.len());
    let mut attempts_total = 0;
    for node in &sim.nodes {
        let attempts = node.attempts.load(Ordering::Relaxed)
            + match node.running.lock().await.as_ref() {
                Some(r) => delivery_attempts(r).await,
                None => 0,
            };
        attempts_total += attempts;
        let (bytes_in, bytes_out) = net.bytes(node.index);
        node_rows.push(NodeRow {
            node: node.index,
            region: plan.regions[node.plan.region].clone(),
            bytes_in,
            bytes_out,
            delivery_attempts: attempts,
            offline_windows: node.plan.offline.len(),
            relay: node.plan.relay,
        });
    }

    let bar = progress(opts.progress, sim.nodes.len() as u64, "stopping");
    let stops = sim.nodes.iter().map(|n| {
        let bar = bar.clone();
        async move {
            if let Some(r) = n.running.lock().await.take() {
                r.shutdown().await;
            }
            bar.inc(1);
        }
    });
    futures::future::join_all(stops).await;
    bar.finish_and_clear();

    let raw = RawResults {
        scenario: scenario.clone(),
        plan,
        slots: sim.collector.slots().clone(),
        nodes: node_rows,
        attempts_total,
        relay_stats,
        group_setup,
        timeline_bytes_out,
        lagged: sim.collector.lagged.load(Ordering::Relaxed),
        rss_before,
        rss_setup,
        rss_end,
        setup_secs,
        timeline_secs,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let outcome = report::build(raw);
    if let Some(dir) = &opts.out {
        report::write(&outcome, dir)?;
    }
    Ok(outcome)
}

/// `tokenim_delivery_attempts_total` from a node's metrics.
async fn delivery_attempts(r: &RunningNode) -> u64 {
    metric(r, "tokenim_delivery_attempts_total").await
}

/// A counter from a node's metrics text (0 when absent).
async fn metric(r: &RunningNode, name: &str) -> u64 {
    let text = r.service.metrics_text().await.unwrap_or_default();
    counter_value(&text, name)
}

fn counter_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// How long setup waits for every personal node to register its mailbox at its home relays.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How many of the members in `others` `store` holds the sender key of for group `id` (`None`:
/// the group is not held yet).
fn sender_keys_held(store: &Store, id: &[u8; 32], others: &[[u8; 32]]) -> Option<usize> {
    let record = store.get_group(id).ok()??;
    let cipher = tokenim_crypto::group::sender_key::GroupCipher::from_bytes(&record.cipher).ok()?;
    let senders: std::collections::HashSet<&[u8; 32]> = cipher.senders().collect();
    Some(others.iter().filter(|k| senders.contains(k)).count())
}

impl Sim {
    /// Bytes all nodes have sent so far.
    fn bytes_out_total(&self) -> u64 {
        self.nodes.iter().map(|n| self.net.bytes(n.index).1).sum()
    }

    /// Each group's owner creates it through its node's service (as the local API does), with
    /// the other members as members; then waits until every member holds the group and the
    /// sender key of every other member (each member sends its own to the others when it is
    /// welcomed), at most `groups.setup_timeout_secs`. After the timeout the run goes on (group
    /// frames a member cannot open yet are retried by their senders) and the summary says how
    /// many members were ready.
    async fn create_groups(
        &self,
        plan: &Plan,
        progress_bars: bool,
    ) -> Result<GroupSetup, SimError> {
        let started = Instant::now();
        let bar = progress(progress_bars, plan.groups.len() as u64, "groups");
        let mut ids = Vec::with_capacity(plan.groups.len());
        for (i, g) in plan.groups.iter().enumerate() {
            let owner = g.members[0];
            let members = g.members[1..]
                .iter()
                .map(|&m| IdentityKey(self.nodes[m].identity_key).address())
                .collect();
            let (_, service) = self.handles(owner).await?;
            let err = |message: String| SimError::Service {
                index: owner,
                message,
            };
            let view = service
                .create_group(format!("g{i}"), members)
                .await
                .map_err(|e| err(e.to_string()))?;
            let mut id = [0u8; 32];
            hex::decode_to_slice(&view.id, &mut id).map_err(|e| err(e.to_string()))?;
            ids.push(id);
            bar.inc(1);
            tracing::info!(
                "groups: {} of {} created after {:.0} s",
                i + 1,
                plan.groups.len(),
                started.elapsed().as_secs_f64()
            );
        }
        bar.finish_and_clear();
        let _ = self.group_ids.set(ids.clone());

        // (group, member) pairs still waiting for the group or a sender key.
        let keys = |g: usize| -> Vec<[u8; 32]> {
            plan.groups[g]
                .members
                .iter()
                .map(|&m| self.nodes[m].identity_key)
                .collect()
        };
        let mut waiting: Vec<(usize, usize, Vec<[u8; 32]>)> = Vec::new();
        for (g, group) in plan.groups.iter().enumerate() {
            let all = keys(g);
            for &m in &group.members {
                let me = self.nodes[m].identity_key;
                let others = all.iter().filter(|k| **k != me).copied().collect();
                waiting.push((g, m, others));
            }
        }
        let expected = waiting.len() as u64;
        let keys_expected: u64 = waiting.iter().map(|w| w.2.len() as u64).sum();
        let mut keys_held: u64;
        let mut without_group: u64;
        let bar = progress(progress_bars, expected, "group keys");
        let deadline = started + Duration::from_secs_f64(self.scenario.groups.setup_timeout_secs);
        let mut next_report = Instant::now() + Duration::from_secs(10);
        loop {
            let mut held_by_waiting = 0;
            without_group = 0;
            waiting.retain(|(g, m, others)| {
                let held = sender_keys_held(&self.nodes[*m].store, &ids[*g], others);
                let ready = held == Some(others.len());
                if !ready {
                    held_by_waiting += held.unwrap_or(0) as u64;
                    without_group += u64::from(held.is_none());
                }
                !ready
            });
            let waiting_keys: u64 = waiting.iter().map(|w| w.2.len() as u64).sum();
            keys_held = keys_expected - waiting_keys + held_by_waiting;
            bar.set_position(expected - waiting.len() as u64);
            if waiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= next_report {
                tracing::info!(
                    "groups: {} of {expected} members ready ({without_group} without their \
                     group), {keys_held} of {keys_expected} sender keys held after {:.0} s",
                    expected - waiting.len() as u64,
                    started.elapsed().as_secs_f64()
                );
                next_report += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
        if !waiting.is_empty() {
            tracing::warn!(
                "groups: {} of {expected} members did not hold their group with every sender \
                 key in time",
                waiting.len()
            );
        }
        Ok(GroupSetup {
            members_ready: expected - waiting.len() as u64,
            members_expected: expected,
            members_without_group: without_group,
            sender_keys_held: keys_held,
            sender_keys_expected: keys_expected,
            secs: started.elapsed().as_secs_f64(),
        })
    }

    /// Starts (or restarts) a node with its identity, key and store.
    async fn start(self: &Arc<Self>, node: &Arc<SimNode>) -> Result<(), SimError> {
        let s = &self.scenario;
        let mut cfg = Config {
            display_name: format!("n{}", node.index),
            ..Config::default()
        };
        cfg.network.listen = vec![format!("/memory/{}", NodePlan::port(node.index))];
        cfg.network.bootstrap = node
            .plan
            .bootstrap
            .iter()
            .map(|&p| {
                format!(
                    "/memory/{}/p2p/{}",
                    NodePlan::port(p),
                    self.nodes[p].peer_id
                )
            })
            .collect();
        cfg.network.max_connections = s.node.max_connections;
        let addr = |p: usize| {
            format!(
                "/memory/{}/p2p/{}",
                NodePlan::port(p),
                self.nodes[p].peer_id
            )
        };
        cfg.network.home_relays = node.plan.home_relays.iter().map(|&p| addr(p)).collect();
        if node.plan.relay {
            cfg.relay.enabled = true;
            // All relays of the scenario form one mesh (gossip between them is mutual).
            cfg.relay.mesh = self
                .nodes
                .iter()
                .filter(|n| n.plan.relay && n.index != node.index)
                .map(|n| n.peer_id.to_string())
                .collect();
            // Every personal node registers its mailbox within the first seconds, which a real
            // relay's admission limit (new mailboxes per minute) would spread over minutes.
            cfg.relay.new_mailboxes_per_minute = cfg
                .relay
                .new_mailboxes_per_minute
                .max(u32::try_from(2 * self.nodes.len()).unwrap_or(u32::MAX));
            // Every personal node may hold a connection to its home relay.
            cfg.network.max_connections = cfg
                .network
                .max_connections
                .max(u32::try_from(2 * self.nodes.len()).unwrap_or(u32::MAX));
        }
        cfg.limits.max_retry_backoff_secs = s.node.max_retry_backoff_secs;
        cfg.limits.inbound_per_peer_per_sec = s.node.inbound_per_peer_per_sec;
        let mut last_err = None;
        // A restart may race the previous incarnation's listener being released.
        for _ in 0..50 {
            let parts = NodeParts {
                identity: Identity::from_seed(node.plan.identity_seed),
                node_key: node_keypair(&node.plan)?,
                store: node.store.clone(),
                config: cfg.clone(),
                transport: Transport::Custom(transport_factory(self.net.clone(), node.index)),
                serve_api: false,
                files_dir: None,
            };
            match launch(parts).await {
                Ok(running) => {
                    tokio::spawn(
                        self.clone()
                            .observe(node.index, running.service.subscribe_events()),
                    );
                    node.engine.send_replace(Some(running.delivery.clone()));
                    *node.running.lock().await = Some(running);
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(SimError::Node {
            index: node.index,
            source: last_err.unwrap_or(tokenim_node::NodeError::ShuttingDown),
        })
    }

    /// Waits until each relay hosts the mailbox of every personal node that names it, so that
    /// recipients going offline at the start of traffic already have a mailbox. Returns
    /// (registered, expected): a registration that failed is retried by the node only on its
    /// next reconnect, so after the timeout the run goes on and the summary says so.
    async fn wait_for_mailboxes(&self, relays: &[&Arc<SimNode>]) -> Result<(u64, u64), SimError> {
        let deadline = Instant::now() + REGISTRATION_TIMEOUT;
        let (mut registered, mut expected) = (0, 0);
        for relay in relays {
            let want = self
                .nodes
                .iter()
                .filter(|n| n.plan.home_relays.contains(&relay.index))
                .count() as u64;
            let (_, service) = self.handles(relay.index).await?;
            loop {
                let have = service
                    .relay_stats()
                    .await
                    .map_err(|e| SimError::Service {
                        index: relay.index,
                        message: e.to_string(),
                    })?
                    .mailboxes;
                if have >= want || Instant::now() >= deadline {
                    if have < want {
                        tracing::warn!(
                            "relay {}: only {have} of {want} mailboxes registered in time",
                            relay.index
                        );
                    }
                    registered += have.min(want);
                    expected += want;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok((registered, expected))
    }

    /// Planned messages whose sender holds a custody receipt from at least one relay (the
    /// recipient could not be reached directly when the sender tried).
    fn messages_via_relays(&self, plan: &Plan) -> usize {
        let mut via = std::collections::HashSet::new();
        for node in self.nodes.iter().filter(|n| !n.plan.relay) {
            let mut cursor = None;
            while let Ok((page, next)) = node.store.list_messages(None, 512, cursor.as_ref()) {
                for m in &page {
                    if m.direction == tokenim_store::Direction::Outgoing
                        && m.relays > 0
                        && let Some(seq) = parse_seq(&m.body)
                        && (seq as usize) < plan.messages.len()
                    {
                        via.insert(seq);
                    }
                }
                match next {
                    Some(c) if !page.is_empty() => cursor = Some(c),
                    _ => break,
                }
            }
        }
        via.len()
    }

    async fn stop(&self, node: &SimNode) {
        node.engine.send_replace(None);
        let running = node.running.lock().await.take();
        if let Some(r) = running {
            node.attempts
                .fetch_add(delivery_attempts(&r).await, Ordering::Relaxed);
            r.shutdown().await;
        }
    }

    async fn handles(
        &self,
        index: usize,
    ) -> Result<(DeliveryHandle, Arc<tokenim_node::Service>), SimError> {
        let guard = self.nodes[index].running.lock().await;
        let r = guard.as_ref().ok_or_else(|| SimError::Service {
            index,
            message: "not running".into(),
        })?;
        Ok((r.delivery.clone(), r.service.clone()))
    }

    /// Records every incoming simulator message this incarnation's inbox (of node `at`)
    /// reports.
    async fn observe(self: Arc<Self>, at: usize, mut events: broadcast::Receiver<Event>) {
        loop {
            match events.recv().await {
                Ok(Event::Message { message }) if message.direction == Direction::Incoming => {
                    if let Some(seq) = self.collector.seq_of(&message.body, at) {
                        let ms = self.collector.since_t0_ms(Instant::now());
                        self.collector.delivered_at(seq, ms, true);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.collector.lagged.store(true, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// Takes a node offline and back as its plan says.
    async fn churn(self: Arc<Self>, node: Arc<SimNode>, t0: Instant) {
        for &(down, up) in &node.plan.offline {
            tokio::time::sleep_until(t0 + Duration::from_millis(down)).await;
            self.stop(&node).await;
            tokio::time::sleep_until(t0 + Duration::from_millis(up)).await;
            if let Err(e) = self.start(&node).await {
                tracing::warn!("restarting node {}: {e}", node.index);
            }
        }
    }

    /// Hands each planned group message to its sender's node at its time (one send; its rows
    /// count as sent once the node accepted it).
    async fn group_traffic(self: Arc<Self>, plan: Plan, t0: Instant) {
        let Some(ids) = self.group_ids.get().cloned() else {
            return;
        };
        for send in plan.group_sends {
            tokio::time::sleep_until(t0 + Duration::from_millis(send.at_ms)).await;
            let sender = self.nodes[send.from].clone();
            let group = ids[send.group];
            let rows = plan.groups[send.group].members.len() as u64 - 1;
            let collector = self.collector.clone();
            tokio::spawn(async move {
                let body = group_message_body(send.index, send.bytes);
                let mut online = sender.engine.subscribe();
                for _ in 0..20 {
                    let engine = match online.wait_for(Option::is_some).await {
                        Ok(e) => e.clone(),
                        Err(_) => return,
                    };
                    let Some(engine) = engine else { return };
                    match engine.send_group(group, body.clone()).await {
                        Ok(_) => {
                            let mut slots = collector.slots();
                            for seq in send.first_seq..send.first_seq + rows {
                                if let Some(s) = slots.get_mut(seq as usize) {
                                    s.sent = true;
                                }
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(index = send.index, "group send refused: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
    }

    /// Hands each planned 1:1 message to its sender's node at its time.
    async fn traffic(self: Arc<Self>, plan: Plan, t0: Instant) {
        for m in plan.messages.into_iter().filter(|m| m.group.is_none()) {
            tokio::time::sleep_until(t0 + Duration::from_millis(m.at_ms)).await;
            let sender = self.nodes[m.from].clone();
            let to = self.nodes[m.to].identity_key;
            let collector = self.collector.clone();
            tokio::spawn(async move {
                let body = message_body(m.seq, m.bytes);
                let mut online = sender.engine.subscribe();
                // If the sender just went down, the app hands the message over once it is back.
                for _ in 0..20 {
                    let engine = match online.wait_for(Option::is_some).await {
                        Ok(e) => e.clone(),
                        Err(_) => return,
                    };
                    let Some(engine) = engine else { return };
                    match engine.send(IdentityKey(to), body.clone()).await {
                        Ok(_) => {
                            if let Some(s) = collector.slots().get_mut(m.seq as usize) {
                                s.sent = true;
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(seq = m.seq, "send refused: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
    }

    /// Fills in deliveries the event stream did not report, from each node's inbox.
    fn reconcile_from_stores(&self, plan: &Plan) {
        let wall0 = self.collector.t0.get().map_or(0, |(_, w)| *w);
        for node in &self.nodes {
            let mut cursor = None;
            while let Ok((page, next)) = node.store.list_messages(None, 512, cursor.as_ref()) {
                for m in &page {
                    if m.direction != tokenim_store::Direction::Incoming {
                        continue;
                    }
                    let Some(seq) = self.collector.seq_of(&m.body, node.index) else {
                        continue;
                    };
                    if seq as usize >= plan.messages.len() {
                        continue;
                    }
                    let ms = m.received_at_ms.saturating_sub(wall0) as f64;
                    self.collector.delivered_at(seq, ms, false);
                }
                match next {
                    Some(c) if !page.is_empty() => cursor = Some(c),
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_sequence_number_and_size() {
        let b = message_body(42, 100);
        assert_eq!(b.len(), 100);
        assert_eq!(parse_seq(&b), Some(42));
        assert_eq!(parse_seq("hello"), None);
        assert_eq!(parse_seq(&message_body(7, 1)), Some(7));
        let g = group_message_body(42, 100);
        assert_eq!(g.len(), 100);
        assert_eq!((parse_group_index(&g), parse_seq(&g)), (Some(42), None));
    }

    #[test]
    fn counters_are_read_by_exact_name() {
        let text = "# TYPE tokenim_relay_stored counter\n\
                    tokenim_relay_stored_total 17\n\
                    tokenim_relay_stored_total_x 3\n";
        assert_eq!(counter_value(text, "tokenim_relay_stored_total"), 17);
        assert_eq!(counter_value(text, "tokenim_relay_acked_total"), 0);
    }
}
