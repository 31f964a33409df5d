//! The node as its embedders see it: start-up and shutdown, configuration and key files, the
//! local API's [`NodeService`](tokenim_api::NodeService) implementation with the one mapping
//! of the layers' errors to API errors, and the views of records and events. The only layer
//! that names `tokenim_api`.

mod client;
mod client_files;
mod client_groups;
pub mod config;
mod contacts;
mod devices;
mod errors;
mod event_sink;
mod files;
mod groups;
mod keyfile;
mod launch;
pub mod logging;
mod overview;
mod service;
mod tokens;
mod views;

pub use client::{Client, short};
pub use launch::{InitReport, NodeParts, RunningNode, init, launch, start};
pub use service::Service;
