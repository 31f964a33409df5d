//! A personal node's home relays: those from the configuration and those added through the
//! API (kept in the store), with the state of this node's mailbox at each.

use std::time::Duration;

use libp2p::PeerId;
use tokenim_api::ServiceError;
use tokenim_api::types::HomeRelayView;
use tokenim_crypto::card::MAX_CARD_LIST;
use tokenim_store::Store;

use crate::mailbox_client::RelayRoute;

/// Store meta key of the relays added through the API (a JSON list of multiaddrs).
const META_KEY: &str = "node.home_relays";
/// First retry after a failed registration or drain; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct HomeRelay {
    pub route: RelayRoute,
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

    fn view(&self) -> HomeRelayView {
        HomeRelayView {
            addr: self.addr.clone(),
            peer_id: self.route.peer.to_string(),
            source: if self.from_config { "config" } else { "api" }.to_owned(),
            registered: self.registered,
            last_sync_at: self.last_sync_ms,
            last_error: self.last_error.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct HomeRelays {
    relays: Vec<HomeRelay>,
}

impl HomeRelays {
    /// The configured relays, then those added through the API in earlier runs.
    pub fn load(configured: &[RelayRoute], store: &Store) -> Self {
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

    pub fn get(&self, peer: &PeerId) -> Option<&RelayRoute> {
        self.relays
            .iter()
            .find(|r| r.route.peer == *peer)
            .map(|r| &r.route)
    }

    pub fn routes(&self) -> impl Iterator<Item = &RelayRoute> {
        self.relays.iter().map(|r| &r.route)
    }

    pub fn views(&self) -> Vec<HomeRelayView> {
        self.relays.iter().map(HomeRelay::view).collect()
    }

    /// Adds (and persists) a relay; the route and whether it is new.
    pub fn add(
        &mut self,
        addr: &str,
        store: &Store,
    ) -> Result<(RelayRoute, HomeRelayView, bool), ServiceError> {
        let route = RelayRoute::parse(addr).ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "{addr:?} is not a multiaddr ending in /p2p/<peer id>"
            ))
        })?;
        if let Some(existing) = self.relays.iter().find(|r| r.route.peer == route.peer) {
            return Ok((existing.route.clone(), existing.view(), false));
        }
        if self.relays.len() >= MAX_CARD_LIST {
            return Err(ServiceError::Conflict(format!(
                "a contact card lists at most {MAX_CARD_LIST} home relays; remove one first"
            )));
        }
        let relay = HomeRelay::new(route.clone(), false);
        let view = relay.view();
        self.relays.push(relay);
        if let Err(e) = self.save(store) {
            self.relays.pop();
            return Err(e);
        }
        Ok((route, view, true))
    }

    /// Removes (and forgets) a relay added through the API; its peer id.
    pub fn remove(&mut self, peer_id: &str, store: &Store) -> Result<PeerId, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("{peer_id} is not a home relay"));
        let peer: PeerId = peer_id.parse().map_err(|_| not_found())?;
        let i = self
            .relays
            .iter()
            .position(|r| r.route.peer == peer)
            .ok_or_else(not_found)?;
        if self.relays[i].from_config {
            return Err(ServiceError::Conflict(format!(
                "{peer_id} is set in the configuration; remove it there"
            )));
        }
        let removed = self.relays.remove(i);
        if let Err(e) = self.save(store) {
            self.relays.insert(i, removed);
            return Err(e);
        }
        Ok(peer)
    }

    fn save(&self, store: &Store) -> Result<(), ServiceError> {
        let added: Vec<&str> = self
            .relays
            .iter()
            .filter(|r| !r.from_config)
            .map(|r| r.addr.as_str())
            .collect();
        let json = serde_json::to_vec(&added).map_err(|e| ServiceError::Internal(e.to_string()))?;
        store
            .put_meta(META_KEY, &json)
            .map_err(|e| ServiceError::Unavailable(format!("saving home relays: {e}")))
    }

    /// Records a sync's outcome; after a failure, how long to wait before the next attempt.
    pub fn sync_done(
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
                let doublings = relay.failures.saturating_sub(1).min(8);
                Some((FIRST_RETRY * 2u32.pow(doublings)).min(MAX_RETRY))
            }
        }
    }
}
