//! The list of this node's home relays: those from the configuration and those added through
//! the API (kept in the store), with the state of this node's mailbox at each.

use std::time::Duration;

use libp2p::PeerId;
use tokenim_crypto::card::MAX_CARD_LIST;
use tokenim_store::Store;

use super::protocol::RelayRoute;
use crate::time::Backoff;

/// Store meta key of the relays added through the API (a JSON list of multiaddrs).
const META_KEY: &str = "node.home_relays";
/// Retries after a failed registration or drain.
const RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

/// Why a change to the home relays was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HomeRelayError {
    #[error("{0:?} is not a multiaddr ending in /p2p/<peer id>")]
    BadAddress(String),
    #[error("{0} is not a home relay")]
    NotFound(String),
    #[error("a contact card lists at most {MAX_CARD_LIST} home relays; remove one first")]
    Full,
    #[error("{0} is set in the configuration; remove it there")]
    Configured(String),
    #[error("saving home relays: {0}")]
    Store(#[from] tokenim_store::StoreError),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// A home relay and how this node's mailbox there stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HomeRelayStatus {
    /// The multiaddr it was given as, ending in `/p2p/<peer id>`.
    pub(crate) addr: String,
    pub(crate) peer: PeerId,
    pub(crate) from_config: bool,
    pub(crate) registered: bool,
    pub(crate) last_sync_ms: Option<u64>,
    pub(crate) last_error: Option<String>,
}

#[derive(Debug, Clone)]
struct HomeRelay {
    route: RelayRoute,
    addr: String,
    from_config: bool,
    registered: bool,
    last_sync_ms: Option<u64>,
    last_error: Option<String>,
    failures: u32,
}

impl HomeRelay {
    fn new(route: RelayRoute, from_config: bool) -> Self {
        let addr = route
            .addrs
            .first()
            .map(|a| format!("{a}/p2p/{}", route.peer))
            .unwrap_or_else(|| format!("/p2p/{}", route.peer));
        Self {
            route,
            addr,
            from_config,
            registered: false,
            last_sync_ms: None,
            last_error: None,
            failures: 0,
        }
    }

    fn status(&self) -> HomeRelayStatus {
        HomeRelayStatus {
            addr: self.addr.clone(),
            peer: self.route.peer,
            from_config: self.from_config,
            registered: self.registered,
            last_sync_ms: self.last_sync_ms,
            last_error: self.last_error.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    relays: Vec<HomeRelay>,
}

impl Registry {
    /// The configured relays, then those added through the API in earlier runs.
    pub(crate) fn load(configured: &[RelayRoute], store: &Store) -> Self {
        let mut home = Self::default();
        for route in configured {
            home.insert(HomeRelay::new(route.clone(), true));
        }
        let saved: Vec<String> = store
            .get_meta(META_KEY)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        for route in saved.iter().filter_map(|a| RelayRoute::parse(a)) {
            home.insert(HomeRelay::new(route, false));
        }
        home
    }

    fn insert(&mut self, relay: HomeRelay) -> bool {
        if self.get(&relay.route.peer).is_some() {
            return false;
        }
        self.relays.push(relay);
        true
    }

    pub(crate) fn get(&self, peer: &PeerId) -> Option<&RelayRoute> {
        self.relays
            .iter()
            .find(|r| r.route.peer == *peer)
            .map(|r| &r.route)
    }

    pub(crate) fn routes(&self) -> Vec<RelayRoute> {
        self.relays.iter().map(|r| r.route.clone()).collect()
    }

    pub(crate) fn statuses(&self) -> Vec<HomeRelayStatus> {
        self.relays.iter().map(HomeRelay::status).collect()
    }

    /// Adds (and persists) a relay; the route and whether it is new.
    pub(crate) fn add(
        &mut self,
        addr: &str,
        store: &Store,
    ) -> Result<(RelayRoute, HomeRelayStatus, bool), HomeRelayError> {
        let route =
            RelayRoute::parse(addr).ok_or_else(|| HomeRelayError::BadAddress(addr.to_owned()))?;
        if let Some(existing) = self.relays.iter().find(|r| r.route.peer == route.peer) {
            return Ok((existing.route.clone(), existing.status(), false));
        }
        if self.relays.len() >= MAX_CARD_LIST {
            return Err(HomeRelayError::Full);
        }
        let relay = HomeRelay::new(route.clone(), false);
        let view = relay.status();
        self.relays.push(relay);
        if let Err(e) = self.save(store) {
            self.relays.pop();
            return Err(e);
        }
        Ok((route, view, true))
    }

    /// Removes (and forgets) a relay added through the API; its peer id.
    pub(crate) fn remove(
        &mut self,
        peer_id: &str,
        store: &Store,
    ) -> Result<PeerId, HomeRelayError> {
        let not_found = || HomeRelayError::NotFound(peer_id.to_owned());
        let peer: PeerId = peer_id.parse().map_err(|_| not_found())?;
        let i = self
            .relays
            .iter()
            .position(|r| r.route.peer == peer)
            .ok_or_else(not_found)?;
        if self.relays[i].from_config {
            return Err(HomeRelayError::Configured(peer_id.to_owned()));
        }
        let removed = self.relays.remove(i);
        if let Err(e) = self.save(store) {
            self.relays.insert(i, removed);
            return Err(e);
        }
        Ok(peer)
    }

    fn save(&self, store: &Store) -> Result<(), HomeRelayError> {
        let added: Vec<&str> = self
            .relays
            .iter()
            .filter(|r| !r.from_config)
            .map(|r| r.addr.as_str())
            .collect();
        // A list of strings always serialises.
        let json = serde_json::to_vec(&added).unwrap_or_default();
        Ok(store.put_meta(META_KEY, &json)?)
    }

    /// Records a sync's outcome; after a failure, how long to wait before the next attempt.
    pub(crate) fn sync_done(
        &mut self,
        peer: &PeerId,
        result: Result<usize, String>,
        now_ms: u64,
    ) -> Option<Duration> {
        let relay = self.relays.iter_mut().find(|r| r.route.peer == *peer)?;
        match result {
            Ok(_) => {
                relay.registered = true;
                relay.last_sync_ms = Some(now_ms);
                relay.last_error = None;
                relay.failures = 0;
                None
            }
            Err(e) => {
                relay.last_error = Some(e);
                relay.failures = relay.failures.saturating_add(1);
                Some(RETRY.delay(relay.failures))
            }
        }
    }
}
