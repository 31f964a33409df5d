//! The delivery engine: the one task that owns the Noise session state. A send is
//! seal → persist (outbox + message + session, atomically) → answer the caller → deliver;
//! deliveries retry with backoff until accepted or expired. Inbound envelopes are opened,
//! deduplicated by the sender's message id, persisted, and only then acknowledged.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::{Multiaddr, PeerId};
use tokenim_api::ServiceError;
use tokenim_api::types::HomeRelayView;
use tokenim_crypto::{
    ContactCard, Envelope, Identity, InnerKind, InnerMessage, MailboxId, Opened, PublicIdentity,
    Sessions,
};
use tokenim_store::{
    ContactRecord, Direction, MessageRecord, MessageState, OutboxRecord, Store, StoreError, Txn,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Limits;
use crate::home_relays::HomeRelays;
use crate::mailbox_client::{self, RelayRoute, StoreBatches};
use crate::metrics::Metrics;
use crate::network::{DeliverError, NetEvent, NetworkHandle, is_circuit, is_dialable};
use crate::relay::relay_key_of;
use crate::relay_workers::{RelayHandle, Work};
use crate::views;
use crate::wire::{self, RejectCode};

/// How long a message id stays in the dedup set after it was first seen.
const SEEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Late frames (behind the replay window) must be this much younger than the seen-id memory.
const SEEN_MARGIN_SECS: u64 = 24 * 3600;
/// Lifetime of the contact card this node hands out.
pub const CARD_TTL_SECS: u64 = 30 * 24 * 3600;
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Parsed contact cards kept in memory.
const CARD_CACHE: usize = 10_000;
/// How often this node drains its mailboxes at its home relays besides being pushed to.
const RESYNC_EVERY: Duration = Duration::from_secs(300);

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug)]
enum Msg {
    Send {
        to: [u8; 32],
        body: String,
        reply: oneshot::Sender<Result<MessageRecord, ServiceError>>,
    },
    MarkRead {
        id: [u8; 16],
        reply: oneshot::Sender<Result<MessageRecord, ServiceError>>,
    },
    MyCard {
        reply: oneshot::Sender<Result<String, ServiceError>>,
    },
    /// A page fetched from a home relay's mailbox; the reply says which envelopes to ack.
    Ingest {
        relay: PeerId,
        envelopes: Vec<Vec<u8>>,
        reply: oneshot::Sender<Vec<bool>>,
    },
    SyncDone {
        relay: PeerId,
        result: Result<usize, String>,
    },
    /// Time to retry a failed sync.
    Resync { relay: PeerId },
    HomeRelays {
        reply: oneshot::Sender<Result<Vec<HomeRelayView>, ServiceError>>,
    },
    AddHomeRelay {
        addr: String,
        reply: oneshot::Sender<Result<(HomeRelayView, bool), ServiceError>>,
    },
    RemoveHomeRelay {
        peer_id: String,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
}

/// Cloneable handle to the engine task.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
}

impl EngineHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ServiceError>>) -> Msg,
    ) -> Result<T, ServiceError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }

    pub async fn send(&self, to: [u8; 32], body: String) -> Result<MessageRecord, ServiceError> {
        self.call(|reply| Msg::Send { to, body, reply }).await
    }

    pub async fn mark_read(&self, id: [u8; 16]) -> Result<MessageRecord, ServiceError> {
        self.call(|reply| Msg::MarkRead { id, reply }).await
    }

    /// Processes envelopes fetched from a home relay, in one transaction. For each, true when
    /// it may be acked (stored, duplicate, or permanently unreadable); false when the relay
    /// should keep it.
    pub async fn ingest(&self, relay: PeerId, envelopes: Vec<Vec<u8>>) -> Vec<bool> {
        let n = envelopes.len();
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Ingest {
            relay,
            envelopes,
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return vec![false; n];
        }
        rx.await.unwrap_or_else(|_| vec![false; n])
    }

    pub async fn home_relays(&self) -> Result<Vec<HomeRelayView>, ServiceError> {
        self.call(|reply| Msg::HomeRelays { reply }).await
    }

    pub async fn add_home_relay(
        &self,
        addr: String,
    ) -> Result<(HomeRelayView, bool), ServiceError> {
        self.call(|reply| Msg::AddHomeRelay { addr, reply }).await
    }

    pub async fn remove_home_relay(&self, peer_id: String) -> Result<(), ServiceError> {
        self.call(|reply| Msg::RemoveHomeRelay { peer_id, reply })
            .await
    }

    /// This node's current contact card as a `tokenim:` URI.
    pub async fn my_card(&self) -> Result<String, ServiceError> {
        self.call(|reply| Msg::MyCard { reply }).await
    }
}

fn unavailable() -> ServiceError {
    ServiceError::Unavailable("the node is shutting down".into())
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// Static inputs of the engine.
#[derive(Debug)]
pub struct EngineConfig {
    pub display_name: String,
    pub limits: Limits,
    pub publish_direct_addrs: bool,
    /// Relays that keep this node's mailbox.
    pub home_relays: Vec<RelayRoute>,
}

struct Delivery {
    outbox_id: [u8; 16],
    peer: [u8; 32],
    outcome: Outcome,
}

enum Outcome {
    /// The recipient's node answered (or could not be reached and it has no relays).
    Direct(Result<wire::Response, DeliverError>),
    /// The recipient's node was unreachable; these home relays signed for the envelope.
    Relayed(Vec<tokenim_crypto::CustodyReceipt>),
}

pub struct Engine {
    me: Arc<Identity>,
    mailbox: MailboxId,
    sessions: Sessions,
    store: Store,
    net: NetworkHandle,
    events: broadcast::Sender<tokenim_api::types::Event>,
    metrics: Metrics,
    cfg: EngineConfig,
    listen_addrs: Vec<Multiaddr>,
    card: Option<(String, u64)>,
    /// Outbox entries not in flight, by due time.
    due: BTreeSet<(Instant, [u8; 16])>,
    scheduled: HashMap<[u8; 16], Instant>,
    in_flight: HashMap<[u8; 32], usize>,
    in_flight_total: usize,
    /// Where each contact's node is, so a reconnecting peer makes its queue due at once.
    peer_ids: HashMap<PeerId, [u8; 32]>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries_rx: mpsc::Receiver<Delivery>,
    relay: Option<RelayHandle>,
    /// Envelopes for offline recipients, coalesced per home relay.
    store_batches: Arc<StoreBatches>,
    /// Parsed contact cards by the URI they came from: verifying a card costs two signature
    /// checks, too much to repeat for every delivery.
    cards: std::cell::RefCell<HashMap<[u8; 32], (String, ContactCard)>>,
    /// This node's home relays (configured and added through the API).
    home: HomeRelays,
    /// Home relays currently being synced (one sync per relay at a time).
    syncing: HashSet<PeerId>,
    /// To hand sync tasks a handle without keeping the engine alive forever.
    self_tx: Option<mpsc::WeakSender<Msg>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("address", &self.me.address())
            .finish_non_exhaustive()
    }
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: Arc<Identity>,
        sessions: Sessions,
        store: Store,
        net: NetworkHandle,
        events: broadcast::Sender<tokenim_api::types::Event>,
        metrics: Metrics,
        cfg: EngineConfig,
    ) -> Self {
        let mailbox = me.mailbox_key(0).id();
        // Every in-flight delivery reports exactly once, so this depth never blocks a sender.
        let (deliveries_tx, deliveries_rx) =
            mpsc::channel(cfg.limits.max_inflight_deliveries.max(1));
        Self {
            me,
            mailbox,
            sessions,
            store,
            net,
            events,
            metrics,
            cfg,
            listen_addrs: Vec::new(),
            card: None,
            due: BTreeSet::new(),
            scheduled: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_total: 0,
            peer_ids: HashMap::new(),
            deliveries_tx,
            deliveries_rx,
            relay: None,
            store_batches: Arc::default(),
            cards: Default::default(),
            home: HomeRelays::default(),
            syncing: HashSet::new(),
            self_tx: None,
        }
    }

    /// Makes this node a relay: it hosts mailboxes and answers relay requests.
    pub fn with_relay(mut self, relay: RelayHandle) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Spawns the engine; returns its handle.
    pub fn spawn(
        mut self,
        net_events: mpsc::Receiver<NetEvent>,
    ) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), StoreError> {
        let now = Instant::now();
        let now_ms = now_ms();
        for entry in self.store.list_outbox()? {
            let delay = Duration::from_millis(entry.next_attempt_ms.saturating_sub(now_ms));
            self.schedule(entry.id, now + delay);
        }
        self.metrics.outbox_depth.set(self.scheduled.len() as i64);
        let (tx, rx) = mpsc::channel(256);
        self.self_tx = Some(tx.downgrade());
        self.home = HomeRelays::load(&self.cfg.home_relays, &self.store);
        let join = tokio::spawn(self.run(rx, net_events));
        Ok((EngineHandle { tx }, join))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Msg>,
        mut net_events: mpsc::Receiver<NetEvent>,
    ) {
        let routes: Vec<_> = self.home.routes().cloned().collect();
        for route in routes {
            Self::listen_via(&self.net, &route).await;
            self.start_sync(route);
        }
        let mut purge = tokio::time::interval(Duration::from_secs(60));
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Relays push new envelopes, but a push can be skipped or fail: a periodic drain
        // fetches whatever is left. The first tick is at once; start-up already synced.
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            self.start_due_deliveries();
            let next_due = self.next_startable_due();
            tokio::select! {
                _ = purge.tick(), if self.relay.is_some() => {
                    if let Some(relay) = &self.relay {
                        relay.submit(Work::Purge);
                    }
                }
                _ = resync.tick() => {
                    let routes: Vec<_> = self.home.routes().cloned().collect();
                    for route in routes {
                        self.start_sync(route);
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break,
                },
                ev = net_events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev).await,
                    None => break,
                },
                Some(d) = self.deliveries_rx.recv() => self.on_delivery(d),
                () = sleep_until_opt(next_due) => {}
            }
        }
        debug!("engine stopped");
    }

    /// Reachable through the relay's circuit too, for peers that cannot dial this node.
    async fn listen_via(net: &NetworkHandle, relay: &RelayRoute) {
        if let Some(addr) = relay.addrs.first() {
            net.listen_via(relay.peer, addr.clone()).await;
        }
    }

    // ---- commands from the API ------------------------------------------------------------

    async fn on_command(&mut self, cmd: Msg) {
        match cmd {
            Msg::Send { to, body, reply } => {
                let _ = reply.send(self.send_text(to, body).await);
            }
            Msg::MarkRead { id, reply } => {
                let _ = reply.send(self.mark_read(id).await);
            }
            Msg::MyCard { reply } => {
                let _ = reply.send(self.my_card().await);
            }
            Msg::Ingest {
                relay,
                envelopes,
                reply,
            } => {
                let responses = self.on_deliver_batch(relay, &envelopes, true);
                let _ = reply.send(responses.iter().map(ackable).collect());
            }
            Msg::SyncDone { relay, result } => {
                self.syncing.remove(&relay);
                if let Ok(drained) = &result {
                    let _ = self.events.send(tokenim_api::types::Event::MailboxSynced {
                        relay_peer_id: relay.to_string(),
                        drained: *drained as u64,
                    });
                }
                if let Some(delay) = self.home.sync_done(&relay, result, now_ms())
                    && let Some(weak) = self.self_tx.clone()
                {
                    // Weak while it sleeps: a pending retry must not keep the engine alive.
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if let Some(tx) = weak.upgrade() {
                            let _ = tx.send(Msg::Resync { relay }).await;
                        }
                    });
                }
            }
            Msg::Resync { relay } => {
                if let Some(route) = self.home.get(&relay).cloned() {
                    self.start_sync(route);
                }
            }
            Msg::HomeRelays { reply } => {
                let _ = reply.send(Ok(self.home.views()));
            }
            Msg::AddHomeRelay { addr, reply } => {
                let result = self.home.add(&addr, &self.store);
                if let Ok((route, _, true)) = &result {
                    self.card = None; // the card lists home relays
                    Self::listen_via(&self.net, route).await;
                    self.start_sync(route.clone());
                }
                let _ = reply.send(result.map(|(_, view, added)| (view, added)));
            }
            Msg::RemoveHomeRelay { peer_id, reply } => {
                let result = self.home.remove(&peer_id, &self.store);
                if let Ok(peer) = &result {
                    self.card = None;
                    self.net.stop_listen_via(*peer).await;
                }
                let _ = reply.send(result.map(drop));
            }
        }
    }

    async fn my_card(&mut self) -> Result<String, ServiceError> {
        let now = now_secs();
        if let Some((uri, made)) = &self.card
            && now.saturating_sub(*made) < 3600
        {
            return Ok(uri.clone());
        }
        let info = self.net.info().await.map_err(|_| unavailable())?;
        self.listen_addrs = info.listen_addrs;
        self.rebuild_card(now)
    }

    fn rebuild_card(&mut self, now: u64) -> Result<String, ServiceError> {
        let direct_addrs = card_addrs(&self.listen_addrs, self.cfg.publish_direct_addrs);
        let card = ContactCard {
            identity: self.me.public(),
            display_name: self.cfg.display_name.clone(),
            mailboxes: vec![self.mailbox],
            home_relays: self
                .home
                .routes()
                .take(tokenim_crypto::card::MAX_CARD_LIST)
                .map(|r| tokenim_crypto::RelayInfo {
                    peer_id: r.peer.to_bytes(),
                    addrs: r.addrs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            node_peer_id: Some(self.net.peer_id().to_bytes()),
            direct_addrs,
            created_at: now,
            expires_at: now + CARD_TTL_SECS,
        };
        let uri = card.to_uri(&self.me).map_err(internal)?;
        self.card = Some((uri.clone(), now));
        Ok(uri)
    }

    async fn send_text(
        &mut self,
        to: [u8; 32],
        body: String,
    ) -> Result<MessageRecord, ServiceError> {
        if self.scheduled.len() >= self.cfg.limits.max_outbox {
            return Err(ServiceError::Unavailable(format!(
                "outbox is full ({} undelivered messages); retry later",
                self.scheduled.len()
            )));
        }
        let contact = self.contact_card(&to)?;
        let id: [u8; 16] = rand::random();
        let sent_at_ms = now_ms();
        let inner = InnerMessage {
            kind: InnerKind::Text as i32,
            id: id.to_vec(),
            body: body.clone(),
            ref_ids: Vec::new(),
            sent_at_ms,
            // The recipient learns our card from the first messages of a session; after that it
            // only costs bytes.
            sender_card: if self.sessions.has_send_session(&to) {
                String::new()
            } else {
                self.my_card().await?
            },
        };
        let envelope = self.seal(&contact, &inner)?;
        let record = MessageRecord {
            id,
            conversation: to,
            direction: Direction::Outgoing,
            from: self.me.public().identity_key,
            to,
            kind: InnerKind::Text as u32,
            body,
            sent_at_ms,
            received_at_ms: sent_at_ms,
            state: MessageState::Queued,
            relays: 0,
            envelope_id: Some(envelope.id()),
            updated_at_ms: sent_at_ms,
        };
        let outbox = self.outbox_record(id, to, Some(id), &envelope);
        let session = self.session_bytes(&to)?;
        self.store
            .txn()
            .put_message(&record)
            .put_outbox(&outbox)
            .put_session(&to, &session)
            .commit()
            .map_err(store_error)?;
        self.metrics.messages_sent.inc();
        self.schedule(id, Instant::now());
        let _ = self.events.send(views::message_event(&record));
        Ok(record)
    }

    async fn mark_read(&mut self, id: [u8; 16]) -> Result<MessageRecord, ServiceError> {
        let record = self
            .store
            .get_message(&id)
            .map_err(store_error)?
            .ok_or_else(|| ServiceError::NotFound(format!("message {}", hex::encode(id))))?;
        if record.direction != Direction::Incoming || record.state == MessageState::Read {
            return Ok(record);
        }
        let peer = record.from;
        let updated = self
            .store
            .set_message_state(&id, MessageState::Read, None)
            .map_err(store_error)?
            .unwrap_or(record);
        let _ = self.events.send(views::state_event(&updated));
        self.send_receipt(peer, InnerKind::ReadReceipt, &[id]);
        Ok(updated)
    }

    /// Queues a delivery or read receipt for message `id` to `peer`. Best effort: without the
    /// peer's card there is no route back, and a lost receipt only leaves a state behind.
    fn send_receipt(&mut self, peer: [u8; 32], kind: InnerKind, ids: &[[u8; 16]]) {
        let receipt = InnerMessage::receipt(kind, rand::random(), ids, now_ms());
        let queued = self
            .contact_card(&peer)
            .and_then(|c| self.queue_control(&c, &receipt));
        if let Err(e) = queued {
            debug!("cannot queue a receipt: {e}");
        }
    }

    /// Seals a receipt or other control message and queues it; it is not a conversation entry.
    fn queue_control(
        &mut self,
        contact: &ContactCard,
        inner: &InnerMessage,
    ) -> Result<(), ServiceError> {
        let envelope = self.seal(contact, inner)?;
        let peer = contact.identity.identity_key;
        let outbox_id: [u8; 16] = rand::random();
        let outbox = self.outbox_record(outbox_id, peer, None, &envelope);
        let session = self.session_bytes(&peer)?;
        self.store
            .txn()
            .put_outbox(&outbox)
            .put_session(&peer, &session)
            .commit()
            .map_err(store_error)?;
        self.schedule(outbox_id, Instant::now());
        Ok(())
    }

    fn seal(
        &mut self,
        contact: &ContactCard,
        inner: &InnerMessage,
    ) -> Result<Envelope, ServiceError> {
        let mailbox = *contact
            .mailboxes
            .first()
            .ok_or_else(|| ServiceError::InvalidCard("contact card lists no mailbox".into()))?;
        let frame = self
            .sessions
            .seal(&self.me, &contact.identity, inner, now_secs())
            .map_err(|e| match e {
                tokenim_crypto::CryptoError::MessageTooLarge { size, max } => {
                    ServiceError::MessageTooLarge { size, max }
                }
                other => internal(other),
            })?;
        Ok(Envelope::new(
            mailbox,
            frame,
            now_secs(),
            self.cfg.limits.message_ttl_secs as u32,
        ))
    }

    fn outbox_record(
        &self,
        id: [u8; 16],
        peer: [u8; 32],
        message_id: Option<[u8; 16]>,
        envelope: &Envelope,
    ) -> OutboxRecord {
        let now = now_ms();
        OutboxRecord {
            id,
            peer,
            message_id,
            envelope: prost::Message::encode_to_vec(envelope),
            attempts: 0,
            next_attempt_ms: now,
            expires_at_ms: now + self.cfg.limits.message_ttl_secs * 1000,
            created_at_ms: now,
        }
    }

    fn session_bytes(&self, peer: &[u8; 32]) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        self.sessions
            .peer_state(peer)
            .ok_or_else(|| internal("session state missing after seal/open"))
    }

    fn contact_card(&self, identity_key: &[u8; 32]) -> Result<ContactCard, ServiceError> {
        let record = self
            .store
            .get_contact(identity_key)
            .map_err(store_error)?
            .ok_or_else(|| ServiceError::UnknownContact(views::address_of(identity_key)))?;
        let mut cache = self.cards.borrow_mut();
        if let Some((uri, card)) = cache.get(identity_key)
            && *uri == record.card_uri
        {
            return Ok(card.clone());
        }
        let card = parse_stored_card(&record.card_uri)
            .map_err(|e| ServiceError::InvalidCard(format!("stored card for contact: {e}")))?;
        if cache.len() >= CARD_CACHE {
            cache.clear();
        }
        cache.insert(*identity_key, (record.card_uri, card.clone()));
        Ok(card)
    }

    // ---- outbox scheduling ----------------------------------------------------------------

    fn schedule(&mut self, id: [u8; 16], at: Instant) {
        if let Some(old) = self.scheduled.insert(id, at) {
            self.due.remove(&(old, id));
        }
        self.due.insert((at, id));
    }

    fn unschedule(&mut self, id: &[u8; 16]) {
        if let Some(at) = self.scheduled.remove(id) {
            self.due.remove(&(at, *id));
        }
        self.metrics.outbox_depth.set(self.scheduled.len() as i64);
    }

    fn next_startable_due(&self) -> Option<Instant> {
        if self.in_flight_total >= self.cfg.limits.max_inflight_deliveries {
            return None; // a delivery result will wake us
        }
        self.due.iter().next().map(|(at, _)| *at)
    }

    fn start_due_deliveries(&mut self) {
        let now = Instant::now();
        let mut deferred = Vec::new();
        while self.in_flight_total < self.cfg.limits.max_inflight_deliveries {
            let Some(&(at, id)) = self.due.iter().next() else {
                break;
            };
            if at > now {
                break;
            }
            self.due.remove(&(at, id));
            match self.start_delivery(id) {
                Ok(true) => {}
                Ok(false) => deferred.push(id),
                Err(e) => {
                    warn!(id = %hex::encode(id), "cannot start delivery: {e}");
                    deferred.push(id);
                }
            }
        }
        // Entries held back by the per-peer limit wait for that peer's next result.
        for id in deferred {
            let at = now + FIRST_RETRY;
            self.scheduled.insert(id, at);
            self.due.insert((at, id));
        }
    }

    /// Returns Ok(false) when the peer's in-flight limit defers the entry.
    fn start_delivery(&mut self, id: [u8; 16]) -> Result<bool, ServiceError> {
        let Some(entry) = self.store.get_outbox(&id).map_err(store_error)? else {
            self.scheduled.remove(&id);
            return Ok(true);
        };
        if entry.expires_at_ms <= now_ms() {
            self.expire(&entry);
            return Ok(true);
        }
        if self.in_flight.get(&entry.peer).copied().unwrap_or(0)
            >= self.cfg.limits.max_inflight_per_peer
        {
            return Ok(false);
        }
        let card = match self.contact_card(&entry.peer) {
            Ok(card) => card,
            Err(e) => {
                // E.g. the contact was deleted: back off until the message expires.
                debug!(id = %hex::encode(id), "no card to deliver to: {e}");
                self.retry_later(entry);
                return Ok(true);
            }
        };
        let direct = route_of(&card);
        let relays: Vec<RelayRoute> = card
            .home_relays
            .iter()
            .filter_map(|r| {
                let peer = PeerId::from_bytes(&r.peer_id).ok()?;
                let addrs = r.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some(RelayRoute { peer, addrs })
            })
            .collect();
        if direct.is_none() && relays.is_empty() {
            // A newer card (learnt from the contact's messages) may bring a route.
            warn!("contact's card names neither a node nor a home relay; will retry");
            self.retry_later(entry);
            return Ok(true);
        }
        *self.in_flight.entry(entry.peer).or_default() += 1;
        self.in_flight_total += 1;
        self.scheduled.remove(&id);
        if let Some((peer_id, _)) = &direct {
            self.peer_ids.insert(*peer_id, entry.peer);
        }
        self.metrics.delivery_attempts.inc();
        let net = self.net.clone();
        let batches = self.store_batches.clone();
        let tx = self.deliveries_tx.clone();
        let peer = entry.peer;
        tokio::spawn(async move {
            let outcome = deliver(&net, &batches, direct, &relays, entry.envelope).await;
            let _ = tx
                .send(Delivery {
                    outbox_id: id,
                    peer,
                    outcome,
                })
                .await;
        });
        Ok(true)
    }

    fn on_delivery(&mut self, d: Delivery) {
        self.in_flight_total = self.in_flight_total.saturating_sub(1);
        if let Some(n) = self.in_flight.get_mut(&d.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&d.peer);
            }
        }
        let Ok(Some(entry)) = self.store.get_outbox(&d.outbox_id) else {
            return;
        };
        let result = match d.outcome {
            Outcome::Relayed(receipts) if !receipts.is_empty() => {
                self.stored(&entry, receipts.len() as u32);
                return;
            }
            Outcome::Relayed(_) => Err(DeliverError::Unreachable("no relay stored it".into())),
            Outcome::Direct(result) => result,
        };
        let rejected = match result {
            Ok(wire::Response {
                kind: Some(wire::pb::response::Kind::Accepted(_)),
            }) => {
                self.delivered(&entry);
                return;
            }
            Ok(wire::Response {
                kind: Some(wire::pb::response::Kind::Rejected(r)),
            }) => Some(r),
            // An answer that does not belong to `deliver`: treat like no answer.
            Ok(_) => None,
            Err(DeliverError::ShuttingDown) => return,
            Err(DeliverError::Unreachable(reason)) => {
                debug!(%reason, "peer unreachable; will retry");
                None
            }
        };
        if let Some(r) = &rejected {
            let code = RejectCode::try_from(r.code).unwrap_or(RejectCode::Unspecified);
            match code {
                RejectCode::Undecryptable => {
                    self.reseal(entry, &r.detail);
                    return;
                }
                RejectCode::Malformed | RejectCode::TooLarge | RejectCode::UnknownMailbox => {
                    warn!(code = ?code, detail = %r.detail, "delivery rejected permanently");
                    self.fail(&entry);
                    return;
                }
                _ => {}
            }
        }
        self.retry_later(entry);
    }

    /// The recipient could not open the frame: the session it was sealed on is gone at its end
    /// (it dropped old receive sessions, or lost its state). Start a fresh handshake and seal
    /// the message again with the same inner id, so the recipient still shows it once.
    fn reseal(&mut self, mut entry: OutboxRecord, detail: &str) {
        let message = entry
            .message_id
            .and_then(|id| self.store.get_message(&id).ok().flatten());
        let Some(message) = message else {
            // Receipts and handshake responses keep no plaintext to reseal: give up on this one,
            // but make the next frame to this peer start a fresh handshake.
            debug!(detail, "frame undecryptable at the peer; given up");
            self.sessions.reset_send(&entry.peer);
            self.fail(&entry);
            return;
        };
        self.sessions.reset_send(&entry.peer);
        let inner = InnerMessage {
            kind: message.kind as i32,
            id: message.id.to_vec(),
            body: message.body.clone(),
            ref_ids: Vec::new(),
            sent_at_ms: message.sent_at_ms,
            sender_card: self
                .card
                .as_ref()
                .map(|(uri, _)| uri.clone())
                .unwrap_or_default(),
        };
        let sealed = self
            .contact_card(&entry.peer)
            .and_then(|c| self.seal(&c, &inner));
        let session = self.session_bytes(&entry.peer);
        match (sealed, session) {
            (Ok(envelope), Ok(session)) => {
                entry.envelope = prost::Message::encode_to_vec(&envelope);
                entry.attempts += 1;
                let mut updated = message;
                updated.envelope_id = Some(envelope.id());
                let committed = self
                    .store
                    .txn()
                    .put_outbox(&entry)
                    .put_message(&updated)
                    .put_session(&entry.peer, &session)
                    .commit();
                match committed {
                    // Paced like any retry (at once for a fresh entry), so a peer that keeps
                    // refusing fresh handshakes gets one per backoff until the message expires.
                    Ok(()) => {
                        let delay =
                            retry_backoff(entry.attempts.saturating_sub(1), &self.cfg.limits);
                        self.schedule(entry.id, Instant::now() + delay);
                    }
                    Err(e) => warn!("persisting a resealed message: {e}"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!("cannot reseal an undecryptable message: {e}");
                self.fail(&entry);
            }
        }
    }

    fn retry_later(&mut self, mut entry: OutboxRecord) {
        entry.attempts += 1;
        let backoff = retry_backoff(entry.attempts, &self.cfg.limits);
        entry.next_attempt_ms = now_ms() + backoff.as_millis() as u64;
        if entry.next_attempt_ms >= entry.expires_at_ms {
            self.expire(&entry);
            return;
        }
        if let Err(e) = self.store.txn().put_outbox(&entry).commit() {
            warn!("persisting retry state: {e}");
        }
        self.schedule(entry.id, Instant::now() + backoff);
    }

    /// Custody moved to `relays` home relays: the outbox entry is done; the recipient's
    /// delivery receipt will say when it arrived.
    fn stored(&mut self, entry: &OutboxRecord, relays: u32) {
        self.finish(entry, MessageState::Stored, relays);
    }

    fn delivered(&mut self, entry: &OutboxRecord) {
        self.finish(entry, MessageState::Delivered, 0);
        self.metrics.messages_delivered.inc();
    }

    fn fail(&mut self, entry: &OutboxRecord) {
        self.finish(entry, MessageState::Failed, 0);
        self.metrics.messages_failed.inc();
    }

    fn expire(&mut self, entry: &OutboxRecord) {
        info!(id = %hex::encode(entry.id), "undelivered message expired");
        self.fail(entry);
    }

    fn finish(&mut self, entry: &OutboxRecord, state: MessageState, relays: u32) {
        let mut txn = self.store.txn().delete_outbox(&entry.id);
        let mut changed = None;
        if let Some(mid) = entry.message_id {
            match self.store.get_message(&mid) {
                Ok(Some(mut m)) if state_rank(m.state) < state_rank(state) => {
                    m.state = state;
                    m.relays = m.relays.max(relays);
                    m.updated_at_ms = now_ms();
                    txn = txn.put_message(&m);
                    changed = Some(m);
                }
                _ => {}
            }
        }
        if let Err(e) = txn.commit() {
            warn!("persisting delivery outcome: {e}");
            return;
        }
        self.unschedule(&entry.id);
        if let Some(m) = changed {
            let _ = self.events.send(views::state_event(&m));
        }
    }

    // ---- inbound --------------------------------------------------------------------------

    async fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Request {
                peer,
                request,
                reply,
            } => {
                let response = match request.kind {
                    Some(wire::pb::request::Kind::Deliver(d)) => {
                        let home = self.home.get(&peer).cloned();
                        let response = self.on_deliver(peer, &d.envelope, home.is_some());
                        // A home relay pushed this from our mailbox: it may delete it now.
                        if let (Some(relay), Ok(env)) =
                            (home, Envelope::decode_checked(&d.envelope))
                            && ackable(&response)
                        {
                            self.spawn_ack(relay, env.id());
                        }
                        response
                    }
                    Some(kind) => match &self.relay {
                        Some(relay) => {
                            relay.submit(Work::Request { peer, kind, reply });
                            return;
                        }
                        None => wire::Response::rejected(
                            RejectCode::UnknownMailbox,
                            "this node is not a relay",
                        ),
                    },
                    None => wire::Response::rejected(RejectCode::Malformed, "empty request"),
                };
                let _ = reply.send(response);
            }
            NetEvent::Gossip { data, .. } => {
                if let Some(relay) = &self.relay {
                    relay.submit(Work::Gossip(data));
                }
            }
            NetEvent::PeerConnected(peer) => {
                // A peer that just came back gets its queue now rather than at its backoff.
                if let Some(identity) = self.peer_ids.get(&peer).copied() {
                    let now = Instant::now();
                    let ids: Vec<_> = self
                        .scheduled
                        .keys()
                        .copied()
                        .filter(|id| {
                            self.store
                                .get_outbox(id)
                                .ok()
                                .flatten()
                                .is_some_and(|e| e.peer == identity)
                        })
                        .collect();
                    for id in ids {
                        self.schedule(id, now);
                    }
                }
                if let Some(relay) = self.home.get(&peer).cloned() {
                    self.start_sync(relay);
                }
                let _ = self.events.send(views::peer_event(&peer, true));
            }
            NetEvent::PeerDisconnected(peer) => {
                if let Some(relay) = &self.relay {
                    relay.peer_disconnected(&peer);
                }
                let _ = self.events.send(views::peer_event(&peer, false));
            }
            NetEvent::ListenAddrs(addrs) => {
                self.listen_addrs = addrs;
                self.card = None;
            }
        }
    }

    /// Drains this node's mailbox at `relay` in a task (one at a time per relay).
    fn start_sync(&mut self, relay: RelayRoute) {
        let Some(tx) = self.self_tx.as_ref().and_then(|w| w.upgrade()) else {
            return;
        };
        if !self.syncing.insert(relay.peer) {
            return;
        }
        let (net, me) = (self.net.clone(), self.me.clone());
        tokio::spawn(async move {
            let peer = relay.peer;
            let handle = EngineHandle { tx: tx.clone() };
            let result = mailbox_client::sync_mailbox(net, handle, me, relay).await;
            if let Err(e) = &result {
                warn!(relay = %peer, "mailbox sync failed (will retry): {e}");
            }
            let _ = tx
                .send(Msg::SyncDone {
                    relay: peer,
                    result,
                })
                .await;
        });
    }

    fn spawn_ack(&self, relay: RelayRoute, id: tokenim_crypto::MessageId) {
        let Some(key) = relay_key_of(&relay.peer) else {
            return;
        };
        let (net, me) = (self.net.clone(), self.me.clone());
        tokio::spawn(async move { mailbox_client::ack(&net, &me, &relay, &key, vec![id]).await });
    }

    fn on_deliver(&mut self, from_peer: PeerId, bytes: &[u8], via_relay: bool) -> wire::Response {
        let mut responses =
            self.on_deliver_batch(from_peer, std::slice::from_ref(&bytes), via_relay);
        responses
            .pop()
            .unwrap_or_else(|| wire::Response::rejected(RejectCode::Internal, "no answer"))
    }

    /// Opens and stores a batch of envelopes in one transaction, answering each.
    fn on_deliver_batch(
        &mut self,
        from_peer: PeerId,
        envelopes: &[impl AsRef<[u8]>],
        via_relay: bool,
    ) -> Vec<wire::Response> {
        let store = self.store.clone();
        let mut inbound = Inbound::new(store.txn());
        let mut responses: Vec<_> = envelopes
            .iter()
            .map(|b| self.open_one(from_peer, b.as_ref(), via_relay, &mut inbound))
            .collect();
        if let Err(e) = self.commit_inbound(inbound) {
            warn!("storing inbound messages failed: {e}");
            // Nothing of the batch was written: none of it may be confirmed.
            for r in &mut responses {
                if matches!(r.kind, Some(wire::pb::response::Kind::Accepted(_))) {
                    *r = wire::Response::rejected(RejectCode::Internal, "storage error");
                }
            }
        }
        responses
    }

    fn open_one(
        &mut self,
        from_peer: PeerId,
        bytes: &[u8],
        via_relay: bool,
        inbound: &mut Inbound<'_>,
    ) -> wire::Response {
        self.metrics.envelopes_in.inc();
        let envelope = match Envelope::decode_checked(bytes) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.envelopes_rejected.inc();
                return wire::Response::rejected(RejectCode::Malformed, e.to_string());
            }
        };
        if envelope.mailbox().ok() != Some(self.mailbox) {
            self.metrics.envelopes_rejected.inc();
            return wire::Response::rejected(
                RejectCode::UnknownMailbox,
                "not a mailbox of this node",
            );
        }
        let opened = match self
            .sessions
            .open(&self.me, &envelope.ciphertext, now_secs())
        {
            Ok(o) => o,
            // Session state is persisted with what the frame carried, so a replayed frame was
            // already stored: tell the sender it arrived.
            Err(tokenim_crypto::CryptoError::Replay) => return wire::Response::accepted(true),
            Err(e) => {
                debug!(%from_peer, "cannot open envelope: {e}");
                self.metrics.envelopes_rejected.inc();
                return wire::Response::rejected(RejectCode::Undecryptable, e.to_string());
            }
        };
        match self.accept(opened, via_relay, inbound) {
            Ok(duplicate) => wire::Response::accepted(duplicate),
            Err(ServiceError::BadRequest(e)) => {
                self.metrics.envelopes_rejected.inc();
                wire::Response::rejected(RejectCode::Malformed, e)
            }
            Err(e) => {
                // The frame advanced its session in memory: the whole batch is written or none.
                warn!("storing inbound message failed: {e}");
                inbound.failed = true;
                wire::Response::rejected(RejectCode::Internal, "storage error")
            }
        }
    }

    /// Adds what an opened frame carries to `inbound`; returns whether it was a duplicate.
    fn accept(
        &mut self,
        opened: Opened,
        via_relay: bool,
        inbound: &mut Inbound<'_>,
    ) -> Result<bool, ServiceError> {
        let Opened {
            from,
            inner,
            reply,
            late,
        } = opened;
        let peer = from.identity_key;
        inbound.peers.insert(peer);
        let mut txn = self.store.txn();
        let mut duplicate = false;
        let mut sender_card = None;
        if let Some(inner) = inner {
            if !inner.sender_card.is_empty() {
                sender_card = self.learn_card(&from, &inner.sender_card);
            }
            match InnerKind::try_from(inner.kind) {
                Ok(InnerKind::Text) => {
                    let id: [u8; 16] = inner.id.as_slice().try_into().map_err(|_| {
                        ServiceError::BadRequest("message id must be 16 bytes".into())
                    })?;
                    // A late frame escaped the replay window: its inner id is the only dedup,
                    // so it must be younger than the seen-id memory.
                    let too_old = late
                        && inner.sent_at_ms / 1000 + SEEN_TTL_SECS < now_secs() + SEEN_MARGIN_SECS;
                    if too_old
                        || inbound.seen.contains(&(peer, id))
                        || self.store.is_seen(&peer, &id).map_err(store_error)?
                    {
                        duplicate = true;
                    } else {
                        let now = now_ms();
                        let record = MessageRecord {
                            id,
                            conversation: peer,
                            direction: Direction::Incoming,
                            from: peer,
                            to: self.me.public().identity_key,
                            kind: InnerKind::Text as u32,
                            body: inner.body,
                            sent_at_ms: inner.sent_at_ms,
                            received_at_ms: now,
                            state: MessageState::Received,
                            relays: 0,
                            envelope_id: None,
                            updated_at_ms: now,
                        };
                        txn = txn.put_message(&record).mark_seen(
                            &peer,
                            &id,
                            now_secs() + SEEN_TTL_SECS,
                        );
                        inbound.seen.insert((peer, id));
                        self.metrics.messages_received.inc();
                        // Events are for apps listening; a drain with none builds no views.
                        if self.events.receiver_count() > 0 {
                            inbound.events.push(views::message_event(&record));
                        }
                        // A message that came through a relay gets an end-to-end delivery
                        // receipt.
                        if via_relay {
                            inbound.receipts.entry(peer).or_default().push(id);
                        }
                    }
                }
                Ok(kind @ (InnerKind::DeliveryReceipt | InnerKind::ReadReceipt)) => {
                    let state = if kind == InnerKind::ReadReceipt {
                        MessageState::Read
                    } else {
                        MessageState::Delivered
                    };
                    for rid in &inner.ref_ids {
                        let Ok(rid) = <[u8; 16]>::try_from(rid.as_slice()) else {
                            continue;
                        };
                        // A receipt earlier in this batch may have moved it already.
                        let current = match inbound.outgoing.get(&rid) {
                            Some(m) => Some(m.clone()),
                            None => self.store.get_message(&rid).ok().flatten(),
                        };
                        // Only the recipient of a message may report on it.
                        if let Some(mut m) = current
                            && m.direction == Direction::Outgoing
                            && m.to == peer
                            && state_rank(m.state) < state_rank(state)
                        {
                            m.state = state;
                            m.updated_at_ms = now_ms();
                            txn = txn.put_message(&m);
                            inbound.events.push(views::state_event(&m));
                            inbound.outgoing.insert(rid, m);
                        }
                    }
                }
                _ => debug!(kind = inner.kind, "ignoring inner message of unknown kind"),
            }
        }
        if let Some(card) = &sender_card {
            txn = txn.put_contact(card);
        }
        if let Some(state) = self.sessions.peer_state(&peer) {
            txn = txn.put_session(&peer, &state);
        }
        // The handshake response must reach the sender for its session to complete. Of a
        // batch's inits from one peer (a re-handshake drained from a mailbox), only the last
        // is answered: the sender needs one session, and the others are dropped first.
        if let Some(frame) = reply {
            inbound.replies.insert(peer, frame);
        }
        inbound.txn.append(txn);
        Ok(duplicate)
    }

    /// Writes a batch of inbound frames' effects; only then are they announced and receipted.
    /// If the write fails, the sessions go back to their stored state, so that the frames
    /// open again when the sender (or relay) retries.
    fn commit_inbound(&mut self, inbound: Inbound<'_>) -> Result<(), StoreError> {
        let Inbound {
            mut txn,
            peers,
            events,
            replies,
            receipts,
            failed,
            ..
        } = inbound;
        if failed {
            self.reload_sessions(&peers);
            return Err(StoreError::InvalidInput(
                "a frame of the batch failed".into(),
            ));
        }
        let mut outbox = Vec::new();
        for (peer, frame) in replies {
            let Some(mailbox) = self.reply_route(&peer) else {
                debug!("no route back to sender for the handshake response");
                continue;
            };
            let ttl = self.cfg.limits.message_ttl_secs as u32;
            let envelope = Envelope::new(mailbox, frame, now_secs(), ttl);
            let id: [u8; 16] = rand::random();
            txn = txn.put_outbox(&self.outbox_record(id, peer, None, &envelope));
            outbox.push(id);
        }
        if let Err(e) = txn.commit() {
            self.reload_sessions(&peers);
            return Err(e);
        }
        let now = Instant::now();
        for id in outbox {
            self.schedule(id, now);
        }
        for ev in events {
            let _ = self.events.send(ev);
        }
        for (peer, ids) in receipts {
            for chunk in ids.chunks(tokenim_crypto::MAX_REF_IDS) {
                self.send_receipt(peer, InnerKind::DeliveryReceipt, chunk);
            }
        }
        Ok(())
    }

    /// Puts these peers' sessions back to their stored state (after a write that failed), so
    /// that frames opened in memory but never stored open again on the next attempt.
    fn reload_sessions(&mut self, peers: &HashSet<[u8; 32]>) {
        for peer in peers {
            match self.store.get_session(peer) {
                Ok(Some(bytes)) if self.sessions.restore_peer(&bytes).is_ok() => {}
                _ => self.sessions.forget_peer(peer),
            }
        }
    }

    fn reply_route(&self, peer: &[u8; 32]) -> Option<MailboxId> {
        self.contact_card(peer)
            .ok()
            .and_then(|c| c.mailboxes.first().copied())
    }

    /// Keeps the newest valid card a peer sent about itself, without touching the name the
    /// user gave it.
    fn learn_card(&self, from: &PublicIdentity, uri: &str) -> Option<ContactRecord> {
        let existing = self.store.get_contact(&from.identity_key).ok().flatten();
        if existing.as_ref().is_some_and(|old| old.card_uri == uri) {
            return None; // the usual case, and it needs no signature check
        }
        let card = ContactCard::from_uri(uri, now_secs()).ok()?;
        if card.identity != *from {
            warn!("peer sent a card of another identity; ignored");
            return None;
        }
        if existing.is_some()
            && let Ok(old_card) = self.contact_card(&from.identity_key)
            && old_card.created_at > card.created_at
        {
            return None;
        }
        let now = now_secs();
        Some(ContactRecord {
            identity_key: from.identity_key,
            name: existing.as_ref().and_then(|c| c.name.clone()),
            card_uri: uri.to_string(),
            added_at: existing.as_ref().map_or(now, |c| c.added_at),
            updated_at: now,
        })
    }
}

/// The effects of a batch of inbound frames, written in one transaction.
struct Inbound<'s> {
    txn: Txn<'s>,
    /// Text messages of this batch, which the store does not know as seen yet.
    seen: HashSet<([u8; 32], [u8; 16])>,
    /// Peers whose session state the batch advanced.
    peers: HashSet<[u8; 32]>,
    /// Sent messages whose state receipts in this batch moved, as they now stand.
    outgoing: HashMap<[u8; 16], MessageRecord>,
    events: Vec<tokenim_api::types::Event>,
    /// Handshake responses owed, by peer (the last init of the batch wins).
    replies: HashMap<[u8; 32], Vec<u8>>,
    /// Delivery receipts owed, by peer.
    receipts: HashMap<[u8; 32], Vec<[u8; 16]>>,
    /// A frame could not be stored: nothing of the batch may be written.
    failed: bool,
}

impl<'s> Inbound<'s> {
    fn new(txn: Txn<'s>) -> Self {
        Self {
            txn,
            seen: HashSet::new(),
            peers: HashSet::new(),
            outgoing: HashMap::new(),
            events: Vec::new(),
            replies: HashMap::new(),
            receipts: HashMap::new(),
            failed: false,
        }
    }
}

/// Whether a mailbox envelope may be acked (deleted at the relay) after this answer: yes when
/// it was stored, a duplicate, or can never be opened; no when storing failed for now.
fn ackable(response: &wire::Response) -> bool {
    !matches!(
        &response.kind,
        Some(wire::pb::response::Kind::Rejected(r))
            if matches!(RejectCode::try_from(r.code), Ok(RejectCode::Internal | RejectCode::RateLimited))
    )
}

/// Exponential backoff from one second, capped by the configuration; zero before any attempt.
fn retry_backoff(attempts: u32, limits: &Limits) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    FIRST_RETRY
        .saturating_mul(1u32 << attempts.min(16))
        .min(Duration::from_secs(limits.max_retry_backoff_secs))
}

/// A stored card was verified when it was added; expiry only means it is getting old, and
/// fresher cards arrive with every conversation, so routing keeps using it.
pub fn parse_stored_card(uri: &str) -> Result<ContactCard, tokenim_crypto::CryptoError> {
    ContactCard::from_uri(uri, 0)
}

/// Direct delivery first; if the recipient's node cannot be reached, its home relays.
async fn deliver(
    net: &NetworkHandle,
    batches: &StoreBatches,
    direct: Option<(PeerId, Vec<Multiaddr>)>,
    relays: &[RelayRoute],
    envelope: Vec<u8>,
) -> Outcome {
    if let Some((peer, addrs)) = direct {
        let result = net
            .request(peer, addrs, wire::Request::deliver(envelope.clone()))
            .await;
        if relays.is_empty() || !matches!(result, Err(DeliverError::Unreachable(_))) {
            return Outcome::Direct(result);
        }
    }
    Outcome::Relayed(mailbox_client::store_at_relays(net, batches, relays, &envelope).await)
}

fn route_of(card: &ContactCard) -> Option<(PeerId, Vec<Multiaddr>)> {
    let peer = PeerId::from_bytes(card.node_peer_id.as_deref()?).ok()?;
    let addrs = card
        .direct_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    Some((peer, addrs))
}

/// The addresses a contact card lists, at most `MAX_CARD_LIST`: direct ones (when published)
/// and those through home relays' circuits, which reveal the relay, not this node. Circuit
/// addresses keep at least half of the places, as direct ones fail behind NAT.
fn card_addrs(listen: &[Multiaddr], publish_direct: bool) -> Vec<String> {
    use tokenim_crypto::card::MAX_CARD_LIST;
    let (circuit, direct): (Vec<_>, Vec<_>) = listen
        .iter()
        .filter(|a| is_dialable(a))
        .partition(|a| is_circuit(a));
    let direct = if publish_direct { direct } else { Vec::new() };
    let direct_room = MAX_CARD_LIST - circuit.len().min(MAX_CARD_LIST / 2);
    direct
        .into_iter()
        .take(direct_room)
        .chain(circuit)
        .take(MAX_CARD_LIST)
        .map(ToString::to_string)
        .collect()
}

/// States only move forward: a late "delivered" never overwrites "read", and a message that
/// reached its peer is never marked failed by an expiring retry.
fn state_rank(s: MessageState) -> u8 {
    match s {
        MessageState::Queued | MessageState::Received => 0,
        MessageState::Failed => 1,
        MessageState::Sent => 2,
        MessageState::Stored => 3,
        MessageState::Delivered => 4,
        MessageState::Read => 5,
    }
}

fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::QuotaExceeded { .. } => ServiceError::Unavailable(e.to_string()),
        other => internal(other),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
