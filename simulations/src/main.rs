//! `tokenim-sim`: run a scenario file and write its results.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

// Same allocator as the `tokenim` binary, so memory figures match a real node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tokenim-sim",
    version,
    about = "Run many real TokenIM nodes in one process"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario and write summary.json, deliveries.csv, nodes.csv and SVG plots.
    Run {
        scenario: PathBuf,
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// Tokio worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Parse a scenario and print its plan (nodes, pairs, messages, offline windows).
    Check { scenario: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Check { scenario } => {
            let s = tokenim_sim::Scenario::load(&scenario)?;
            let plan = tokenim_sim::Plan::new(&s);
            let offline = plan.nodes.iter().filter(|n| !n.offline.is_empty()).count();
            println!(
                "{}: {} nodes in {} regions, {} pairs, {} messages, {} nodes with offline windows, {} partitions",
                s.name,
                plan.nodes.len(),
                plan.regions.len(),
                plan.pairs.len(),
                plan.messages.len(),
                offline,
                plan.partitions.len()
            );
            if !plan.groups.is_empty() {
                let members: usize = plan.groups.iter().map(|g| g.members.len()).sum();
                let keys: usize = plan
                    .groups
                    .iter()
                    .map(|g| g.members.len() * (g.members.len() - 1))
                    .sum();
                println!(
                    "groups: {} with {members} members in all, {} group messages ({} deliveries \
                     planned), {keys} sender keys to hand out at setup; sizes {:?}",
                    plan.groups.len(),
                    plan.group_sends.len(),
                    plan.messages.iter().filter(|m| m.group.is_some()).count(),
                    plan.groups
                        .iter()
                        .map(|g| g.members.len())
                        .collect::<Vec<_>>()
                );
            }
            Ok(())
        }
        Cmd::Run {
            scenario,
            out,
            seed,
            quiet,
            threads,
        } => {
            let mut s = tokenim_sim::Scenario::load(&scenario)?;
            if let Some(seed) = seed {
                s.seed = seed;
            }
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            rt.enable_all();
            if let Some(n) = threads {
                rt.worker_threads(n.max(1));
            }
            let rt = rt.build().context("starting the tokio runtime")?;
            let opts = tokenim_sim::RunOptions {
                out: Some(out.clone()),
                progress: !quiet,
            };
            let outcome = rt.block_on(tokenim_sim::run(&s, &opts))?;
            let m = &outcome.summary;
            println!(
                "{}: {} nodes, {}/{} delivered (ratio {:.4}), duplicates {}",
                m.scenario,
                m.nodes,
                m.messages_delivered,
                m.messages_planned,
                m.delivery_ratio,
                m.duplicates.extra_copies
            );
            if let Some(l) = &m.latency_ms {
                println!(
                    "latency ms: mean {:.1} p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
                    l.mean, l.p50, l.p95, l.p99, l.max
                );
            }
            if let Some(g) = &m.groups {
                println!(
                    "groups: {}/{} members ready ({} without their group), {}/{} sender keys \
                     held after {:.1} s of group setup",
                    g.setup.members_ready,
                    g.setup.members_expected,
                    g.setup.members_without_group,
                    g.setup.sender_keys_held,
                    g.setup.sender_keys_expected,
                    g.setup.secs
                );
                for b in std::iter::once(&g.total).chain(&g.buckets) {
                    let p = |x: &Option<tokenim_sim::report::Percentiles>| {
                        x.as_ref().map_or("-".into(), |l| {
                            format!(
                                "p50 {:.0} p95 {:.0} p99 {:.0} max {:.0}",
                                l.p50, l.p95, l.p99, l.max
                            )
                        })
                    };
                    println!(
                        "  {} members: {} groups, {} messages, {}/{} delivered ({:.4}); latency {}; fan-out {}",
                        b.sizes,
                        b.groups,
                        b.messages,
                        b.deliveries_delivered,
                        b.deliveries_planned,
                        b.delivery_ratio,
                        p(&b.latency_ms),
                        p(&b.fanout_ms)
                    );
                }
            }
            if let Some(v) = &m.via_relays {
                println!(
                    "relays: {} ({} messages stored at relays, {} envelopes stored in mailboxes)",
                    m.relays, v.messages_via_relays, v.envelopes_stored
                );
            }
            if let (Some(a), Some(b)) = (m.memory.per_node_setup_kib, m.memory.peak_rss_mib) {
                println!("memory: {a:.0} KiB per node after setup, peak RSS {b:.0} MiB");
            }
            println!(
                "wall time {:.1} s (setup {:.1} s, timeline {:.1} s); results in {}",
                m.wall_time_secs,
                m.setup_secs,
                m.timeline_secs,
                out.display()
            );
            println!("trace hash {}", m.trace_hash);
            // Thousands of node tasks wind down on their own; don't wait for them.
            rt.shutdown_background();
            Ok(())
        }
    }
}
