//! TokenIM simulator: many **real** TokenIM nodes (crypto, delivery engine, libp2p swarm with
//! gossipsub and request-response) in one process, connected by an in-memory transport with a
//! link model (latency, jitter, bandwidth, loss, partitions), driven by a TOML scenario.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenim_sim::SimError> {
//! let scenario = tokenim_sim::Scenario::load("simulations/scenarios/ci-small.toml".as_ref())?;
//! let outcome = tokenim_sim::run(&scenario, &tokenim_sim::RunOptions::default()).await?;
//! println!("{} {}", outcome.summary.delivery_ratio, outcome.summary.trace_hash);
//! # Ok(()) }
//! ```

pub mod error;
pub mod link;
pub mod memory;
pub mod plan;
pub mod plots;
pub mod report;
pub mod rng;
pub mod runner;
pub mod scenario;

pub use error::SimError;
pub use plan::Plan;
pub use report::{Outcome, Summary};
pub use runner::{RunOptions, run};
pub use scenario::Scenario;
