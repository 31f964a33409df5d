//! Node configuration: `DIR/config.toml`, overridden by `TOKENIM_*` environment variables and
//! command-line flags (clap applies both, in that order of precedence).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::NodeError;

pub const CONFIG_FILE: &str = "config.toml";
pub const TOKEN_FILE: &str = "api.token";
pub const API_ADDR_FILE: &str = "api.addr";
pub const IDENTITY_FILE: &str = "identity.key";
pub const NODE_KEY_FILE: &str = "node.key";
pub const DB_DIR: &str = "db";
/// Where file transfers keep their chunks, beside the database.
pub const FILES_DIR: &str = "files";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name shown to contacts in this node's contact card.
    pub display_name: String,
    pub network: NetworkConfig,
    pub api: ApiConfig,
    pub limits: Limits,
    pub relay: RelayConfig,
    pub log: LogConfig,
}

/// The relay role: mailboxes for other users' offline messages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Run as a relay: host mailboxes, answer the DHT.
    pub enabled: bool,
    /// Longest a relay keeps an unacknowledged envelope.
    pub retention_secs: u64,
    pub mailbox_max_messages: u64,
    pub mailbox_max_bytes: u64,
    /// Disk budget for all mailboxes together.
    pub total_max_bytes: u64,
    /// fsync every write. What the node promises is synced whatever this says (a relay's
    /// stores before it signs a custody receipt, inbound messages before `accepted`, sends
    /// before the API answers); this also syncs the rest (acks, read states, contacts,
    /// tokens), at one disk flush per write. Applies to personal nodes too.
    pub sync_writes: bool,
    /// Free bytes to keep on the database's disk (at most a quarter of it): below, stores and
    /// new messages are refused (`STORAGE_FULL`, `/v1/health` says `disk_full`) so that what
    /// frees space, owners' acks and expiry, keeps working. 0 turns the check off. Applies
    /// to personal nodes too.
    pub disk_reserve_bytes: u64,
    /// Bytes of files senders may leave for one mailbox (for a recipient who was offline).
    pub file_quota_bytes: u64,
    /// How long a left file is kept if its recipient does not release it.
    pub file_retention_secs: u64,
    /// Threads that store, sign and page for the relay; 0 means two per CPU core (a page read
    /// that misses the cache waits for the disk, so one per core leaves cores idle).
    pub threads: usize,
    /// The other relays of this relay's mesh, as peer ids (or multiaddrs ending in
    /// `/p2p/<peer id>`): the only peers it gossips with on the mailbox shard topics, and the
    /// only relays whose signed envelopes it takes from there. The relation must be mutual
    /// (each lists the other). Empty: no gossip; senders still hand envelopes to every home
    /// relay of a card directly.
    pub mesh: Vec<String>,
    /// Store only what carries a write grant of the mailbox's owner (each contact has its own;
    /// the contact card carries a first-contact grant), so no stranger can fill a mailbox.
    pub require_write_grants: bool,
    /// Envelopes the first-contact grant of a card may add to one mailbox between two drains
    /// of its owner (all strangers share it).
    pub first_contact_per_mailbox: u32,
    /// Envelopes one contact may add to one mailbox between two drains of its owner.
    pub per_sender_per_mailbox: u32,
    /// Who may open a mailbox here: `open` (anyone) or `allowlist` (`allowed_mailboxes`).
    pub registration: Registration,
    /// Mailbox ids (64 hex digits, as `tokenim id` prints them) an `allowlist` relay hosts.
    pub allowed_mailboxes: Vec<String>,
    /// Distinct mailboxes one connection may register.
    pub registrations_per_connection: usize,
    /// Mailboxes new to this relay per minute, all peers together.
    pub new_mailboxes_per_minute: u32,
    /// Who gets a circuit relay reservation (to be reached through this relay while behind
    /// NAT): `owners`, peers that registered a mailbox here; `open`, anyone; `off`, no one.
    pub circuit: CircuitMode,
}

/// Who may open a mailbox at a relay.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    #[default]
    Open,
    Allowlist,
}

/// `[relay] circuit`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CircuitMode {
    #[default]
    Owners,
    Open,
    Off,
}

impl RelayConfig {
    /// The registration policy of the relay role; a bad mailbox id is a config error.
    pub(crate) fn registration_policy(
        &self,
    ) -> Result<crate::mailbox::RegistrationPolicy, NodeError> {
        let allowed = match self.registration {
            Registration::Open => None,
            Registration::Allowlist => Some(
                self.allowed_mailboxes
                    .iter()
                    .map(|m| {
                        m.parse::<tokenim_crypto::MailboxId>().map_err(|e| {
                            NodeError::Config(format!("relay.allowed_mailboxes: {m:?}: {e}"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(crate::mailbox::RegistrationPolicy {
            allowed,
            per_connection: self.registrations_per_connection,
            new_per_minute: self.new_mailboxes_per_minute,
        })
    }

    /// The write-grant policy of the relay role.
    pub(crate) fn grant_policy(&self) -> crate::mailbox::GrantPolicy {
        crate::mailbox::GrantPolicy {
            required: self.require_write_grants,
            first_contact_max: self.first_contact_per_mailbox,
            per_grant_max: self.per_sender_per_mailbox,
        }
    }

    /// [`RelayConfig::threads`], with 0 resolved.
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| 2 * n.get())
                .min(16),
            n => n,
        }
    }

    /// [`RelayConfig::mesh`], parsed; every entry must name an Ed25519 peer id (relays sign
    /// with that key).
    pub fn mesh_peers(&self) -> Result<Vec<libp2p::PeerId>, NodeError> {
        self.mesh
            .iter()
            .map(|entry| {
                let peer = entry.parse().ok().or_else(|| {
                    let addr: libp2p::Multiaddr = entry.parse().ok()?;
                    crate::net::peer_of(&addr)
                });
                peer.filter(|p| crate::mailbox::relay_key_of(p).is_some())
                    .ok_or_else(|| {
                        NodeError::Config(format!(
                            "[relay] mesh entry {entry:?} must be an Ed25519 peer id or a \
                             multiaddr ending in /p2p/<peer id>"
                        ))
                    })
            })
            .collect()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            retention_secs: 14 * 24 * 3600,
            mailbox_max_messages: 10_000,
            mailbox_max_bytes: 256 * 1024 * 1024,
            total_max_bytes: 10 * 1024 * 1024 * 1024,
            sync_writes: false,
            disk_reserve_bytes: 256 * 1024 * 1024,
            file_quota_bytes: 1024 * 1024 * 1024,
            file_retention_secs: 7 * 24 * 3600,
            threads: 0,
            mesh: Vec::new(),
            require_write_grants: true,
            first_contact_per_mailbox: 200,
            per_sender_per_mailbox: 2_000,
            registration: Registration::Open,
            allowed_mailboxes: Vec::new(),
            registrations_per_connection: 4,
            new_mailboxes_per_minute: 120,
            circuit: CircuitMode::Owners,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// libp2p listen addresses (TCP and QUIC).
    pub listen: Vec<String>,
    /// Kademlia bootstrap peers, as multiaddrs ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Relays that keep this node's mailbox while it is offline, as multiaddrs ending in
    /// `/p2p/<peer id>`. They are listed in the contact card.
    pub home_relays: Vec<String>,
    /// Public addresses of this node, e.g. a relay's `/ip4/203.0.113.7/tcp/4001`. A relay
    /// hands them to NAT-ed nodes in circuit reservations; left empty, a relay offers its
    /// concrete listen addresses.
    pub external_addrs: Vec<String>,
    /// Discover peers on the LAN with mDNS. Off by default: it announces the node.
    pub mdns: bool,
    /// Put this node's listen addresses into its contact card so contacts can dial it directly.
    /// Turn off to reveal only addresses through home relays (`…/p2p-circuit`).
    pub publish_direct_addrs: bool,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Inbound connections from one address (an IPv6 /64 counts as one), and separately
    /// handshakes in progress from it: peer ids cost nothing, addresses do.
    pub max_connections_per_ip: u32,
    /// The same per prefix: an IPv4 /24 or an IPv6 /48.
    pub max_connections_per_prefix: u32,
    /// Leave connections from loopback (this machine) out of the per-IP caps and rate limit.
    /// A node reached through a local proxy (e.g. a Tor onion service) sees everyone at
    /// loopback; if it turns this off it should raise the caps.
    pub exempt_loopback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Loopback address of the local HTTP API; port 0 picks a free one (see `api.addr`).
    pub listen: SocketAddr,
    /// Extra `Host` header values accepted besides loopback names (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Serve the API on an address beyond this machine. Off: `listen` must be a loopback
    /// address, so a typo cannot put the API (tokens, message bodies) on the network.
    pub allow_remote: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// How long an undelivered message is retried before it is marked failed.
    pub message_ttl_secs: u64,
    /// Upper bound of the retry backoff.
    pub max_retry_backoff_secs: u64,
    /// Deliveries in flight at once across all peers.
    pub max_inflight_deliveries: usize,
    /// Deliveries in flight at once to one peer (kept well below yamux's stream limit).
    pub max_inflight_per_peer: usize,
    /// Messages accepted into the outbox and not yet confirmed, before sends are refused.
    pub max_outbox: usize,
    /// Inbound envelopes per second accepted from one peer before `rate_limited` answers.
    pub inbound_per_peer_per_sec: u32,
    /// The same for all peers at one address together (an IPv6 /64 counts as one).
    pub inbound_per_ip_per_sec: u32,
    /// Strangers whose message requests are kept; a new one beyond this pushes out the least
    /// recent.
    pub max_message_requests: usize,
    /// Messages kept per message request (at most 64 KiB of text); later ones are dropped
    /// until the request is accepted.
    pub max_request_messages: u32,
    /// Largest file uploaded here or accepted from a contact (default 2 GiB).
    pub max_file_bytes: u64,
    /// Files contacts send up to this size are fetched at once; larger ones when an app asks
    /// (`POST /v1/files/{id}/download`).
    pub auto_download_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            home_relays: Vec::new(),
            external_addrs: Vec::new(),
            mdns: false,
            publish_direct_addrs: true,
            max_connections: 512,
            max_connections_per_peer: 2,
            max_connections_per_ip: 16,
            max_connections_per_prefix: 64,
            exempt_loopback: true,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7733)),
            allowed_hosts: Vec::new(),
            allow_remote: false,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_ttl_secs: 14 * 24 * 3600,
            max_retry_backoff_secs: 300,
            max_inflight_deliveries: 256,
            max_inflight_per_peer: 32,
            max_outbox: 100_000,
            inbound_per_peer_per_sec: 2_000,
            inbound_per_ip_per_sec: 4_000,
            max_message_requests: 256,
            max_request_messages: 20,
            max_file_bytes: tokenim_crypto::file::DEFAULT_MAX_FILE_SIZE,
            auto_download_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl ApiConfig {
    /// Refuses a listen address beyond this machine unless `allow_remote` says so.
    pub fn check_listen(&self) -> Result<(), NodeError> {
        if self.listen.ip().is_loopback() || self.allow_remote {
            return Ok(());
        }
        Err(NodeError::Config(format!(
            "the API would listen on {}, reachable from other machines; use a loopback \
             address, or set allow_remote = true under [api] if that is meant",
            self.listen
        )))
    }
}

impl Config {
    /// Reads `DIR/config.toml`; a missing file means defaults.
    pub fn load(data_dir: &Path) -> Result<Self, NodeError> {
        let path = data_dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| NodeError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(NodeError::Io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The default data directory: `$XDG_DATA_HOME/tokenim` (or the platform equivalent).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "tokenim")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".tokenim"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml_and_unknown_keys_are_rejected() {
        let cfg = Config::default();
        let back: Config = toml::from_str(&cfg.to_toml()).expect("parse");
        assert_eq!(back, cfg);
        let err = toml::from_str::<Config>("nonsense = 1").expect_err("unknown key");
        assert!(err.to_string().contains("nonsense"));
        let partial: Config = toml::from_str("[api]\nlisten = \"127.0.0.1:0\"").expect("partial");
        assert_eq!(partial.api.listen.port(), 0);
        assert_eq!(partial.limits, Limits::default());
    }

    #[test]
    fn the_api_stays_on_loopback_unless_remote_is_allowed() {
        let mut api = ApiConfig::default();
        assert!(api.check_listen().is_ok());
        api.listen = "[::1]:0".parse().expect("addr");
        assert!(api.check_listen().is_ok());
        api.listen = "0.0.0.0:7733".parse().expect("addr");
        let err = api.check_listen().expect_err("all interfaces").to_string();
        assert!(err.contains("allow_remote"), "{err}");
        api.allow_remote = true;
        assert!(api.check_listen().is_ok());
    }
}
