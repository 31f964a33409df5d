//! Settings of the HTTP layer (not of the node).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Extra `Host` names accepted besides loopback (`localhost`, `127.0.0.0/8`, `[::1]`), e.g.
    /// a hostname when the API is deliberately exposed behind a reverse proxy. Compared
    /// case-insensitively, without the port.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted besides loopback ones, exactly as browsers send them
    /// (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted (413 `payload_too_large` above it).
    pub body_limit: usize,
    /// Time limit of one HTTP request (not of a WebSocket once upgraded).
    pub request_timeout: Duration,
    /// How long a WebSocket client without an `Authorization` header has to send its auth frame.
    pub ws_auth_timeout: Duration,
    /// A WebSocket client that does not take a frame within this time is disconnected.
    pub ws_send_timeout: Duration,
    /// Concurrent authenticated `/v1/events` streams; more get 503 `unavailable`. A stream
    /// takes its slot only once its token is checked.
    pub max_event_streams: usize,
    /// `/v1/events` connections without an `Authorization` header that may wait for their auth
    /// frame at once (at least 1); they hold no stream slot. One more closes the connection
    /// that has waited longest, with `unavailable`.
    pub max_pending_event_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            body_limit: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            ws_auth_timeout: Duration::from_secs(10),
            ws_send_timeout: Duration::from_secs(30),
            max_event_streams: 64,
            max_pending_event_streams: 64,
        }
    }
}
