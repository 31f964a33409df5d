//! Creating a node's data directory (`init`) and running a node (`start`, `launch`): identity,
//! store, network, mailbox roles, delivery core and local API wired together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, identity::Keypair};
use prometheus_client::registry::Registry;
use tokenim_crypto::{Address, Identity, SessionPolicy, Sessions};
use tokenim_store::{Store, StoreOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::config::{self, Config};
use super::event_sink::{ApiEvents, EVENT_BUFFER, OFFER_BUFFER};
use super::keyfile;
use super::service::Service;
use crate::delivery::{self, Delivery, DeliveryHandle};
use crate::error::NodeError;
use crate::event::Events;
use crate::mailbox::{self, Relay, RelayHandle, RelayRoute, SyncContext};
use crate::metrics::Metrics;
use crate::net::{self, MailboxSink, NetworkHandle};
use crate::time::Clock;

#[derive(Debug)]
pub struct InitReport {
    pub address: Address,
    pub token_path: PathBuf,
}

/// Creates identity, node key, config and a first admin API token in `data_dir`.
/// Refuses to touch a directory that already holds an identity.
pub fn init(data_dir: &Path, display_name: Option<&str>) -> Result<InitReport, NodeError> {
    let identity_path = data_dir.join(config::IDENTITY_FILE);
    if identity_path.exists() {
        return Err(NodeError::AlreadyInitialised(
            identity_path.display().to_string(),
        ));
    }
    create_private_dir(data_dir)?;
    let identity = Identity::generate();
    keyfile::write_secret(&identity_path, &identity.to_bytes())?;
    let node_key = Keypair::generate_ed25519();
    let node_key_bytes = node_key
        .to_protobuf_encoding()
        .map(zeroize::Zeroizing::new)
        .map_err(|e| NodeError::Network(format!("encoding node key: {e}")))?;
    keyfile::write_secret(&data_dir.join(config::NODE_KEY_FILE), &node_key_bytes)?;
    let config_path = data_dir.join(config::CONFIG_FILE);
    if !config_path.exists() {
        let cfg = Config {
            display_name: display_name.unwrap_or_default().to_string(),
            ..Config::default()
        };
        std::fs::write(&config_path, cfg.to_toml())
            .map_err(|e| NodeError::Io(format!("writing {}", config_path.display()), e))?;
    }
    let store = Store::open(&data_dir.join(config::DB_DIR), StoreOptions::default())?;
    let (token, record) = tokenim_api::generate_token("cli", &[tokenim_api::Scope::Admin]);
    store.put_token(&super::tokens::token_to_store(&record))?;
    let token_path = data_dir.join(config::TOKEN_FILE);
    keyfile::write_secret(&token_path, token.expose().as_bytes())?;
    Ok(InitReport {
        address: identity.address(),
        token_path,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| NodeError::Io(format!("creating {}", dir.display()), e))?;
    secure_data_dir(dir, None)
}

/// The data directory holds the identity and the database: refuses one that others can write
/// to or that belongs to another user than `owner` (the owner of the key files), and makes one
/// that others can read private.
fn secure_data_dir(dir: &Path, owner: Option<u32>) -> Result<(), NodeError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bad = |reason: String| NodeError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(dir)
        .map_err(|e| NodeError::Io(format!("reading {}", dir.display()), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(bad(format!(
            "others can write to it (mode {mode:o}); run `chmod 700 {}` if it is yours",
            dir.display()
        )));
    }
    if let Some(uid) = owner
        && meta.uid() != uid
    {
        return Err(bad(format!(
            "it belongs to user {}, its keys to user {uid}",
            meta.uid()
        )));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| NodeError::Io(format!("making {} private", dir.display()), e))?;
        warn!(dir = %dir.display(), "data directory was readable by others; now mode 700");
    }
    Ok(())
}

/// A running node. Dropping it does not stop it; call [`RunningNode::shutdown`].
#[derive(Debug)]
pub struct RunningNode {
    /// Where the local API listens, when it is served.
    pub api_addr: Option<SocketAddr>,
    pub peer_id: PeerId,
    pub address: Address,
    /// Sends and marks read in process, as the API does.
    pub delivery: DeliveryHandle,
    /// The same service the HTTP API calls, for in-process use.
    pub service: Arc<Service>,
    pub store: Store,
    net: NetworkHandle,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    api_task: Option<JoinHandle<()>>,
    /// The delivery, home relays and swarm tasks, in the order they end.
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// Stops accepting API requests, then stops the engine and the swarm, and waits for them.
    pub async fn shutdown(self) {
        let Self {
            shutdown_tx,
            net,
            delivery,
            service,
            store,
            api_task,
            tasks,
            ..
        } = self;
        let _ = shutdown_tx.send(true);
        // The API task goes first (it holds the service, which holds the delivery and home
        // relay handles), then the delivery core ends once no handle is left, the home relays
        // with it, then the swarm. Open event streams do not hold a shutdown up for more than
        // the grace period.
        if let Some(api) = api_task {
            finish(api).await;
        }
        // Downloads hold the store: they stop (and resume at the next start).
        service.stop_files();
        drop((service, delivery));
        net.shutdown().await;
        for t in tasks {
            finish(t).await;
        }
        if let Err(e) = store.flush() {
            warn!(error = %e, "flushing store");
        }
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        Ok(self.net.info().await?.listen_addrs)
    }
}

/// Everything a node is made of, for embedding it without a data directory (the simulator,
/// in-process tests): identity, libp2p key, store, transport and config.
#[derive(Debug)]
pub struct NodeParts {
    pub identity: Identity,
    pub node_key: Keypair,
    pub store: Store,
    pub config: Config,
    pub transport: net::Transport,
    /// Serve the local HTTP API on `config.api.listen`.
    pub serve_api: bool,
    /// Where file transfers keep their chunks (`<data dir>/files`); `None`: no files.
    pub files_dir: Option<std::path::PathBuf>,
}

/// Waits for a task to end, aborting it after a grace period.
async fn finish(mut task: JoinHandle<()>) {
    if tokio::time::timeout(Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
        let _ = task.await;
    }
}

/// Starts a node from an initialised data directory, serving the local API and writing its
/// address to `DIR/api.addr`.
pub async fn start(data_dir: &Path, cfg: Config) -> Result<RunningNode, NodeError> {
    let identity_path = data_dir.join(config::IDENTITY_FILE);
    let owner = std::fs::metadata(&identity_path)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok();
    secure_data_dir(data_dir, owner)?;
    let identity = Identity::from_bytes(&keyfile::read_secret(
        &data_dir.join(config::IDENTITY_FILE),
    )?)?;
    let node_key = Keypair::from_protobuf_encoding(&keyfile::read_secret(
        &data_dir.join(config::NODE_KEY_FILE),
    )?)
    .map_err(|e| NodeError::KeyFile {
        path: config::NODE_KEY_FILE.into(),
        reason: e.to_string(),
    })?;
    let store = Store::open(&data_dir.join(config::DB_DIR), store_options(&cfg))?;
    let node = launch(NodeParts {
        identity,
        node_key,
        store,
        config: cfg,
        transport: net::Transport::TcpQuic,
        serve_api: true,
        files_dir: Some(data_dir.join(config::FILES_DIR)),
    })
    .await?;
    if let Some(api) = node.api_addr {
        write_atomically(
            &data_dir.join(config::API_ADDR_FILE),
            api.to_string().as_bytes(),
        )?;
    }
    Ok(node)
}

/// Starts a node from its parts: the network, then the relay role's threads (on relays), the
/// delivery core and home relays (on personal nodes too), then the API.
pub async fn launch(parts: NodeParts) -> Result<RunningNode, NodeError> {
    let NodeParts {
        identity,
        node_key,
        store,
        config: cfg,
        transport,
        serve_api,
        files_dir,
    } = parts;
    let identity = Arc::new(identity);
    let sessions = Sessions::new(session_policy());

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mesh = cfg.relay.mesh_peers()?;
    let net_cfg = net::NetworkConfig {
        listen: parse_addrs(&cfg.network.listen)?,
        bootstrap: parse_addrs(&cfg.network.bootstrap)?,
        mdns: cfg.network.mdns,
        max_connections: cfg.network.max_connections,
        max_connections_per_peer: cfg.network.max_connections_per_peer,
        ip_limits: net::IpLimits {
            per_ip: cfg.network.max_connections_per_ip,
            per_prefix: cfg.network.max_connections_per_prefix,
            exempt_loopback: cfg.network.exempt_loopback,
        },
        inbound_per_peer_per_sec: cfg.limits.inbound_per_peer_per_sec,
        inbound_per_ip_per_sec: cfg.limits.inbound_per_ip_per_sec,
        relay_role: cfg.relay.enabled,
        circuit: match cfg.relay.circuit {
            config::CircuitMode::Owners => net::CircuitAccess::Owners,
            config::CircuitMode::Open => net::CircuitAccess::Open,
            config::CircuitMode::Off => net::CircuitAccess::Off,
        },
        external: parse_addrs(&cfg.network.external_addrs)?,
        topics: if cfg.relay.enabled {
            mailbox::all_topics()
        } else {
            Vec::new()
        },
        request_timeout: Duration::from_secs(20),
        // A relay gossips with its mesh only.
        gossip_peers: cfg.relay.enabled.then(|| mesh.iter().copied().collect()),
    };
    let relay = if cfg.relay.enabled {
        let server = Relay::new(
            store.clone(),
            relay_signing_key(&node_key)?,
            cfg.relay.retention_secs,
            metrics.clone(),
        )
        .with_mesh(mesh.iter().filter_map(mailbox::relay_key_of).collect())
        .with_grants(cfg.relay.grant_policy())
        .with_registration(cfg.relay.registration_policy()?);
        Some(RelayHandle::new(server, metrics.clone()))
    } else {
        None
    };
    let sink = relay
        .as_ref()
        .map(|(handle, _)| Arc::new(handle.clone()) as Arc<dyn MailboxSink>);
    let (net, net_events, net_task) =
        net::spawn(node_key, net_cfg, transport, &mut registry, sink).await?;
    if let Some((handle, idle)) = relay {
        handle.start(idle, Some(net.clone()), cfg.relay.worker_threads());
    }

    let (api_events, _) = broadcast::channel(EVENT_BUFFER);
    let (offers, offered) = tokio::sync::mpsc::channel(OFFER_BUFFER);
    let events = Events::new(ApiEvents {
        api: api_events.clone(),
        offers,
        store: store.clone(),
    });
    let configured_relays = cfg
        .network
        .home_relays
        .iter()
        .map(|a| {
            RelayRoute::parse(a).ok_or_else(|| {
                NodeError::Config(format!(
                    "home relay {a:?} must be a multiaddr ending in /p2p/<peer id>"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (home, home_task) = mailbox::home_relays(&configured_relays, &store);
    let delivery = Delivery::new(delivery::Parts {
        me: identity.clone(),
        sessions,
        store: store.clone(),
        net: net.clone(),
        home: home.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        settings: delivery_settings(&cfg),
        clock: Clock::System,
    });
    let (delivery, delivery_task) = delivery.spawn(net_events)?;
    if store.skipped_corrupt() > 0 {
        warn!(
            records = store.skipped_corrupt(),
            "skipped records that do not decode; they stay on disk untouched"
        );
    }
    let home_task = home_task.spawn(SyncContext {
        net: net.clone(),
        identity: identity.clone(),
        ingest: delivery.ingest_weak(),
        events: events.clone(),
    });
    let files = match files_dir {
        Some(dir) => Some(super::files::start(
            &cfg,
            store.clone(),
            dir,
            &net,
            &events,
            &metrics,
            offered,
        )?),
        None => None,
    };
    let tasks = vec![delivery_task, home_task, net_task];
    let service = Arc::new(Service {
        identity: identity.clone(),
        store: store.clone(),
        delivery: delivery.clone(),
        home,
        net: net.clone(),
        events: api_events,
        registry: Arc::new(registry),
        is_relay: cfg.relay.enabled,
        files,
    });

    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let mut api_task = None;
    let mut api_addr = None;
    if serve_api {
        cfg.api.check_listen()?;
        let api_cfg = tokenim_api::ApiConfig {
            allowed_hosts: cfg.api.allowed_hosts.clone(),
            ..tokenim_api::ApiConfig::default()
        };
        let router = tokenim_api::router(service.clone(), api_cfg);
        let listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .map_err(|e| NodeError::Io(format!("binding the API to {}", cfg.api.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| NodeError::Io("API address".into(), e))?;
        api_task = Some(tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = tokenim_api::serve(listener, router, stop).await {
                warn!(error = %e, "API server stopped");
            }
        }));
        api_addr = Some(addr);
    }
    let peer_id = net.peer_id();
    info!(api = ?api_addr, %peer_id, address = %identity.address(), "node started");
    Ok(RunningNode {
        api_addr,
        peer_id,
        address: identity.address(),
        delivery,
        service,
        store,
        net,
        shutdown_tx,
        api_task,
        tasks,
    })
}

fn delivery_settings(cfg: &Config) -> delivery::Settings {
    delivery::Settings {
        display_name: cfg.display_name.clone(),
        publish_direct_addrs: cfg.network.publish_direct_addrs,
        message_ttl_secs: cfg.limits.message_ttl_secs,
        max_retry_backoff: Duration::from_secs(cfg.limits.max_retry_backoff_secs),
        max_inflight: cfg.limits.max_inflight_deliveries,
        max_inflight_per_peer: cfg.limits.max_inflight_per_peer,
        max_outbox: cfg.limits.max_outbox,
        requests: delivery::RequestLimits {
            max_requests: cfg.limits.max_message_requests,
            max_messages: cfg.limits.max_request_messages,
            ..Default::default()
        },
        max_file_bytes: cfg.limits.max_file_bytes,
    }
}

/// The receiver keeps as many sessions per peer as the sender may have handshakes pending, so
/// the session a sender settles on after a burst of inits is always one the receiver still
/// holds (otherwise frames on it would be undecryptable until resealed).
pub(crate) fn session_policy() -> SessionPolicy {
    let default = SessionPolicy::default();
    SessionPolicy {
        max_inbound: default.max_inbound.max(default.max_pending),
        ..default
    }
}

/// Storage limits come from the relay settings (personal nodes use the same defaults).
pub(crate) fn store_options(cfg: &Config) -> StoreOptions {
    StoreOptions {
        sync_writes: cfg.relay.sync_writes,
        disk_reserve_bytes: cfg.relay.disk_reserve_bytes,
        mailbox_max_messages: cfg.relay.mailbox_max_messages,
        mailbox_max_bytes: cfg.relay.mailbox_max_bytes,
        total_max_bytes: cfg.relay.total_max_bytes,
        mailbox_max_ttl_secs: cfg.relay.retention_secs,
        ..StoreOptions::default()
    }
}

fn parse_addrs(list: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    list.iter()
        .map(|a| {
            a.parse()
                .map_err(|e| NodeError::Config(format!("bad multiaddr {a:?}: {e}")))
        })
        .collect()
}

/// Relays sign custody receipts with their libp2p key, so a receipt is checked against the
/// PeerId the sender dialed.
fn relay_signing_key(
    node_key: &Keypair,
) -> Result<tokenim_crypto::ed25519_dalek::SigningKey, NodeError> {
    let ed = node_key
        .clone()
        .try_into_ed25519()
        .map_err(|_| NodeError::KeyFile {
            path: config::NODE_KEY_FILE.into(),
            reason: "node key is not Ed25519".into(),
        })?;
    // Both copies of the secret are wiped when they go (libp2p's `SecretKey` wipes itself).
    let secret =
        zeroize::Zeroizing::new(<[u8; 32]>::try_from(ed.secret().as_ref()).map_err(|_| {
            NodeError::KeyFile {
                path: config::NODE_KEY_FILE.into(),
                reason: "bad Ed25519 secret".into(),
            }
        })?);
    Ok(tokenim_crypto::ed25519_dalek::SigningKey::from_bytes(
        &secret,
    ))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| NodeError::Io(format!("writing {}", path.display()), e))
}
