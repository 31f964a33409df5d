//! End-to-end tests: real `tokenim` processes (the binary this test build made) talking over
//! loopback, driven through their local HTTP APIs and CLI.

mod harness;

mod api;
mod cli;
mod data_dir;
mod full_disk;
mod hostile_apps;
mod messaging;
mod relay;
mod stalled_peers;
