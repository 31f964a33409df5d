//! End-to-end tests: real `tokenim` processes (the binary this test build made) talking over
//! loopback, driven through their local HTTP APIs and CLI.

mod harness;

mod api;
mod circuit;
mod cli;
mod consent;
mod data_dir;
mod device_sync;
mod devices;
mod files;
mod full_disk;
mod grants;
mod groups;
mod hostile_apps;
mod mesh;
mod messaging;
mod relay;
mod stalled_peers;
mod sybils;
