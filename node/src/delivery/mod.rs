//! The messaging core: one task owns the Noise session state. A send is seal → persist
//! (outbox + message + session, atomically) → answer the caller → deliver; deliveries retry
//! with backoff until accepted or expired. Inbound envelopes are opened, deduplicated by the
//! sender's message id, persisted, and only then acknowledged.
//!
//! The task ([`Delivery`]) is thin: it owns parts that keep their own state — the schedule
//! ([`outbox`]), the card cache ([`cards`]) — and routes work to the modules that hold each
//! step: [`send`] starts deliveries, [`outcome`] settles them, [`inbox`] takes envelopes in,
//! and [`kinds`] holds one module per kind of inner message.

mod attempt;
mod cards;
mod consent;
mod devices;
mod error;
mod groups;
mod handle;
mod ids;
mod inbox;
mod kinds;
mod learning;
mod linking;
mod outbox;
mod outcome;
mod requests;
mod seal;
mod send;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tokenim_crypto::{Identity, MailboxId, MailboxKey, Sessions};
use tokenim_store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

pub(crate) use cards::{may_replace, parse_stored_card};
pub use devices::HistoryScope;
pub(crate) use devices::account_key;
pub use error::DeliveryError;
pub use groups::GroupEdit;
pub use handle::DeliveryHandle;
use handle::Msg;
use ids::OutboxId;
pub use ids::{IdentityKey, MessageId};
pub use requests::Consent;
pub(crate) use requests::RequestLimits;

use attempt::Attempt;

use crate::event::{Events, NodeEvent};
use crate::mailbox::{HomeRelaysHandle, StoreBatches};
use crate::metrics::Metrics;
use crate::net::{NetEvent, NetworkHandle};
use crate::time::{Backoff, Clock};

/// The first retry of a delivery; later ones double up to the configured cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often expired seen ids are deleted (relays also do it with their mailbox purge).
const PURGE_SEEN_EVERY: Duration = Duration::from_secs(3600);

/// What the delivery core is told at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) display_name: String,
    pub(crate) publish_direct_addrs: bool,
    /// How long an undelivered message is retried before it is marked failed.
    pub(crate) message_ttl_secs: u64,
    pub(crate) max_retry_backoff: Duration,
    pub(crate) max_inflight: usize,
    pub(crate) max_inflight_per_peer: usize,
    /// User messages accepted and not yet confirmed, before sends are refused; receipts and
    /// handshake answers owed to contacts have a bound of their own.
    pub(crate) max_outbox: usize,
    pub(crate) requests: RequestLimits,
    /// Largest file an attachment may offer.
    pub(crate) max_file_bytes: u64,
}

impl Settings {
    /// The wait before the next attempt of an entry tried `attempts` times: none for a fresh
    /// one, then two seconds doubling up to the cap.
    fn retry_delay(&self, attempts: u32) -> Duration {
        match attempts {
            0 => Duration::ZERO,
            n => Backoff::new(FIRST_RETRY, self.max_retry_backoff).delay(n.saturating_add(1)),
        }
    }
}

/// What the delivery task is made of.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) me: Arc<Identity>,
    pub(crate) sessions: Sessions,
    pub(crate) store: Store,
    pub(crate) net: NetworkHandle,
    pub(crate) home: HomeRelaysHandle,
    pub(crate) events: Events,
    pub(crate) metrics: Metrics,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
}

pub(crate) struct Delivery {
    me: Arc<Identity>,
    mailbox: MailboxId,
    /// Signs the write grants this node hands out for its mailbox.
    mailbox_key: MailboxKey,
    sessions: Sessions,
    store: Store,
    net: NetworkHandle,
    home: HomeRelaysHandle,
    events: Events,
    metrics: Metrics,
    settings: Settings,
    clock: Clock,
    cards: cards::Cards,
    requests: requests::Requests,
    groups: groups::Groups,
    devices: devices::Devices,
    schedule: outbox::Schedule,
    /// Where each contact's node is, so a reconnecting peer makes its queue due at once.
    peer_ids: std::collections::HashMap<PeerId, IdentityKey>,
    attempts_tx: mpsc::Sender<Attempt>,
    attempts_rx: mpsc::Receiver<Attempt>,
    /// Envelopes for offline recipients, coalesced per home relay.
    store_batches: Arc<StoreBatches>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("address", &self.me.address())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts {
            me,
            sessions,
            store,
            net,
            home,
            events,
            metrics,
            settings,
            clock,
        } = parts;
        let mailbox_key = me.mailbox_key(0);
        let mailbox = mailbox_key.id();
        // Every attempt in flight reports exactly once, so this depth never blocks a sender.
        let (attempts_tx, attempts_rx) = mpsc::channel(settings.max_inflight.max(1));
        Self {
            me,
            mailbox,
            mailbox_key,
            sessions,
            store,
            net,
            home,
            events,
            metrics,
            schedule: outbox::Schedule::new(settings.max_inflight, settings.max_inflight_per_peer),
            settings,
            clock,
            cards: cards::Cards::default(),
            requests: requests::Requests::default(),
            groups: groups::Groups::default(),
            devices: devices::Devices::default(),
            peer_ids: std::collections::HashMap::new(),
            attempts_tx,
            attempts_rx,
            store_batches: Arc::default(),
        }
    }

    /// Restores the sessions, loads the outbox and spawns the task; returns its handle.
    pub(crate) fn spawn(
        mut self,
        net_events: mpsc::Receiver<NetEvent>,
    ) -> Result<(DeliveryHandle, tokio::task::JoinHandle<()>), StoreError> {
        // Contacts are marked before the sessions are restored, so that no stranger's state
        // can push one out.
        for c in self.store.list_contacts()? {
            if c.state == tokenim_store::ContactState::Accepted {
                self.sessions.set_known(&c.identity_key, true);
            }
        }
        self.load_requests()?;
        self.devices = devices::Devices::load(&self.store)?;
        self.load_device_routes()?;
        for r in self.store.list_groups()? {
            match groups::Group::from_record(&r) {
                Ok(g) => self.groups.insert(g),
                Err(e) => {
                    tracing::warn!(group = %hex::encode(r.id), error = %e, "skipping a group that does not load");
                }
            }
        }
        for (peer, bytes) in self.store.list_sessions()? {
            if let Err(e) = self.sessions.restore_peer(&bytes) {
                tracing::warn!(peer = %hex::encode(peer), error = %e, "dropping unreadable session state");
            }
        }
        let now = Instant::now();
        let now_ms = self.clock.now_ms();
        for entry in self.store.list_outbox()? {
            let delay = Duration::from_millis(entry.next_attempt_ms.saturating_sub(now_ms));
            let own = entry.message_id.is_some();
            self.schedule.add(OutboxId(entry.id), now + delay, own);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        let (tx, rx) = mpsc::channel(256);
        let join = tokio::spawn(self.run(rx, net_events));
        Ok((DeliveryHandle { tx }, join))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Msg>,
        mut net_events: mpsc::Receiver<NetEvent>,
    ) {
        // Dedupe ids of incoming messages expire (the messages stay, and still dedupe).
        let mut purge =
            tokio::time::interval_at(Instant::now() + PURGE_SEEN_EVERY, PURGE_SEEN_EVERY);
        loop {
            self.start_due_deliveries();
            let next_due = self.schedule.next_due();
            tokio::select! {
                _ = purge.tick() => match self.store.purge_seen(self.clock.now_secs()) {
                    Ok(n) => debug!(purged = n, "expired seen ids"),
                    Err(e) => tracing::warn!(error = %e, "purging seen ids"),
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break,
                },
                ev = net_events.recv() => match ev {
                    Some(ev) => self.on_net_event(ev),
                    None => break,
                },
                Some(a) = self.attempts_rx.recv() => self.on_attempt(a),
                () = sleep_until_opt(next_due) => {}
            }
        }
        debug!("delivery task stopped");
    }

    async fn on_command(&mut self, cmd: Msg) {
        match cmd {
            Msg::Send {
                to,
                body,
                attachments,
                reply,
            } => {
                let _ = reply.send(self.send_text(to, body, attachments).await);
            }
            Msg::MarkRead { id, reply } => {
                let _ = reply.send(self.mark_read(id));
            }
            Msg::Consent {
                peer,
                consent,
                reply,
            } => {
                let _ = reply.send(self.consent(peer, consent));
            }
            Msg::CreateGroup {
                name,
                members,
                reply,
            } => {
                let _ = reply.send(self.create_group(name, members).await);
            }
            Msg::ChangeGroup { group, edit, reply } => {
                let _ = reply.send(self.change_group(group, edit));
            }
            Msg::CreateInvite {
                group,
                expires_at,
                max_uses,
                reply,
            } => {
                let _ = reply.send(self.create_invite(group, expires_at, max_uses).await);
            }
            Msg::JoinGroup { uri, reply } => {
                let _ = reply.send(self.join_group(uri).await);
            }
            Msg::SendGroup {
                group,
                body,
                attachments,
                reply,
            } => {
                let _ = reply.send(self.send_group(group, body, attachments));
            }
            Msg::MyCard { reply } => {
                let _ = reply.send(self.my_card().await);
            }
            Msg::Devices { reply } => {
                let _ = reply.send(self.device_list());
            }
            Msg::LinkDevice {
                ttl_secs,
                history,
                reply,
            } => {
                let _ = reply.send(self.issue_link(ttl_secs, history).await);
            }
            // Waits for the linking device's answer: a node joins an account once, new.
            Msg::JoinAccount { uri, name, reply } => {
                let _ = reply.send(self.join_account(&uri, &name).await);
            }
            Msg::RevokeDevice { device, reply } => {
                let _ = reply.send(self.revoke_device(device));
            }
            Msg::Ingest {
                relay,
                envelopes,
                reply,
            } => {
                let _ = reply.send(self.ingest(relay, &envelopes));
            }
        }
    }

    fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Request {
                peer,
                request,
                reply,
            } => {
                let _ = reply.send(self.on_request(peer, request));
            }
            NetEvent::PeerConnected(peer) => {
                // A peer that just came back gets its queue now rather than at its backoff.
                if let Some(identity) = self.peer_ids.get(&peer).copied() {
                    self.make_due_now(identity);
                }
                self.home.peer_connected(peer);
                self.events.emit(NodeEvent::PeerConnected(peer));
            }
            NetEvent::PeerDisconnected(peer) => {
                self.events.emit(NodeEvent::PeerDisconnected(peer));
            }
            NetEvent::ListenAddrs(addrs) => self.cards.set_listen_addrs(addrs),
        }
    }

    /// This node's contact card, rebuilt when it is old or what it lists changed.
    async fn my_card(&mut self) -> Result<String, DeliveryError> {
        let now = self.clock.now_secs();
        if self.home.changed() {
            self.cards.invalidate_mine(); // the card lists home relays
        }
        if let Some(uri) = self.cards.mine_fresh(now) {
            return Ok(uri.to_owned());
        }
        let info = self
            .net
            .info()
            .await
            .map_err(|_| DeliveryError::ShuttingDown)?;
        self.cards.set_listen_addrs(info.listen_addrs);
        self.build_card(now)
    }

    /// This node's card from what it knows now (the addresses last heard of). The account's
    /// first device lists the account's devices in it.
    fn build_card(&mut self, now: u64) -> Result<String, DeliveryError> {
        let home_relays = self.home.routes();
        let inputs = cards::CardInputs {
            me: &self.me,
            display_name: &self.settings.display_name,
            mailbox: &self.mailbox_key,
            home_relays: &home_relays,
            node: self.net.peer_id(),
            publish_direct: self.settings.publish_direct_addrs,
            device_list: self.devices.list().filter(|_| !self.devices.is_linked()),
        };
        self.cards.build_mine(&inputs, now)
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
