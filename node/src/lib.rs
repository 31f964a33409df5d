//! The TokenIM node: the libp2p swarm task and its handle, the delivery engine, the local API
//! service implementation, configuration and the CLI of the `tokenim` binary.

pub mod circuit;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod home_relays;
pub mod keyfile;
pub mod logging;
pub mod mailbox_client;
pub mod metrics;
pub mod network;
pub mod node;
pub mod relay;
pub mod relay_workers;
pub mod service;
pub mod views;
pub mod wire;

pub use error::NodeError;
