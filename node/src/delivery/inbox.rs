//! Taking envelopes in: open, dedupe, persist a whole batch in one synced write (one fsync per
//! batch), and only then answer `accepted`, announce and receipt. On a disk below its free-space
//! reserve nothing is taken: senders are told `STORAGE_FULL` and relays keep the envelopes.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tokenim_crypto::{CryptoError, Envelope, InnerKind, MailboxId, Opened};
use tokenim_store::{ContactState, MessageRecord, MessageState, StoreError, Txn};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::Delivery;
use super::error::DeliveryError;
use super::ids::{IdentityKey, MessageId, OutboxId};
use crate::event::NodeEvent;
use crate::mailbox::{RelayRoute, ack, relay_key_of};
use crate::net::wire::{self, RejectCode, pb};

/// The effects of a batch of inbound frames, written in one transaction.
pub(super) struct Inbound<'s> {
    pub(super) txn: Txn<'s>,
    /// Text messages of this batch, which the store does not know as seen yet.
    pub(super) seen: HashSet<(IdentityKey, MessageId)>,
    /// Peers whose session state the batch advanced.
    peers: HashSet<IdentityKey>,
    /// Sent messages whose state receipts in this batch moved, as they now stand.
    pub(super) outgoing: HashMap<MessageId, MessageRecord>,
    pub(super) events: Vec<NodeEvent>,
    /// Handshake responses owed, by peer (the last init of the batch wins).
    replies: HashMap<IdentityKey, Vec<u8>>,
    /// Delivery receipts owed, by peer (and the group whose cards route them, for a group
    /// message from a co-member who may not be a contact).
    pub(super) receipts: HashMap<(IdentityKey, Option<[u8; 32]>), Vec<MessageId>>,
    /// Members' states of sent group messages that receipts in this batch moved.
    pub(super) member_states: HashMap<(MessageId, IdentityKey), MessageState>,
    /// Peers of this batch that are not contacts: their texts are held as requests.
    pub(super) requesters: HashSet<IdentityKey>,
    /// Requesters of whom this batch holds a text.
    pub(super) held: HashSet<IdentityKey>,
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
            member_states: HashMap::new(),
            requesters: HashSet::new(),
            held: HashSet::new(),
            failed: false,
        }
    }
}

impl Delivery {
    /// A `deliver` request from a peer: a contact's node, or a home relay pushing from this
    /// node's mailbox (which may delete what was stored).
    pub(super) fn on_request(&mut self, peer: PeerId, request: wire::Request) -> wire::Response {
        let d = match request.kind {
            Some(pb::request::Kind::Deliver(d)) => d,
            Some(pb::request::Kind::Link(l)) => return self.on_link(&l.request, &l.device_card),
            _ => return wire::Response::rejected(RejectCode::Malformed, "expected `deliver`"),
        };
        let home = self.home.route(&peer);
        let response = self.on_deliver(peer, &d.envelope, home.is_some());
        if let (Some(relay), Ok(env)) = (home, Envelope::decode_checked(&d.envelope))
            && ackable(&response)
        {
            self.spawn_ack(relay, env.id());
        }
        response
    }

    fn spawn_ack(&self, relay: RelayRoute, id: tokenim_crypto::MessageId) {
        let Some(key) = relay_key_of(&relay.peer) else {
            return;
        };
        let (net, me) = (self.net.clone(), self.me.clone());
        tokio::spawn(async move { ack(&net, &me, &relay, &key, vec![id]).await });
    }

    fn on_deliver(&mut self, from_peer: PeerId, bytes: &[u8], via_relay: bool) -> wire::Response {
        let mut responses =
            self.on_deliver_batch(from_peer, std::slice::from_ref(&bytes), via_relay);
        responses
            .pop()
            .unwrap_or_else(|| wire::Response::rejected(RejectCode::Internal, "no answer"))
    }

    /// A page drained from a home relay: for each envelope, whether the relay may delete it.
    pub(super) fn ingest(&mut self, relay: PeerId, envelopes: &[Vec<u8>]) -> Vec<bool> {
        let responses = self.on_deliver_batch(relay, envelopes, true);
        responses.iter().map(ackable).collect()
    }

    /// Opens and stores a batch of envelopes in one transaction, answering each. When the
    /// batch cannot be written, each envelope is tried alone, so one that can never be stored
    /// (e.g. two senders' messages with the same id) holds back none of the others; it is
    /// answered `MALFORMED`, which lets a relay delete it.
    fn on_deliver_batch(
        &mut self,
        from_peer: PeerId,
        envelopes: &[impl AsRef<[u8]>],
        via_relay: bool,
    ) -> Vec<wire::Response> {
        let (mut responses, result) = self.store_batch(from_peer, envelopes, via_relay);
        let Err(e) = result else {
            return responses;
        };
        if matches!(e, StoreError::StorageFull(_)) {
            // Alone, each would be refused the same way: none of the batch was written.
            warn!(error = %e, "inbound messages refused");
            for r in &mut responses {
                if matches!(r.kind, Some(pb::response::Kind::Accepted(_))) {
                    *r = wire::Response::storage_full();
                }
            }
            return responses;
        }
        if envelopes.len() > 1 {
            debug!(error = %e, envelopes = envelopes.len(), "batch refused; storing each alone");
            return envelopes
                .iter()
                .map(|b| {
                    let alone = std::slice::from_ref(b);
                    let mut answer = self.on_deliver_batch(from_peer, alone, via_relay);
                    answer.pop().unwrap_or_else(|| {
                        wire::Response::rejected(RejectCode::Internal, "no answer")
                    })
                })
                .collect();
        }
        let permanent = matches!(e, StoreError::MessageIdConflict);
        if permanent {
            warn!(error = %e, "dropping an envelope that can never be stored");
            self.metrics.envelopes_dropped.inc();
        } else {
            warn!(error = %e, "storing inbound messages failed");
        }
        // Nothing of the batch was written: none of it may be confirmed.
        for r in &mut responses {
            if matches!(r.kind, Some(pb::response::Kind::Accepted(_))) {
                *r = if permanent {
                    wire::Response::rejected(RejectCode::Malformed, "can never be stored")
                } else {
                    wire::Response::rejected(RejectCode::Internal, "storage error")
                };
            }
        }
        responses
    }

    /// One attempt at a batch in one write: the answers, and whether the write happened.
    fn store_batch(
        &mut self,
        from_peer: PeerId,
        envelopes: &[impl AsRef<[u8]>],
        via_relay: bool,
    ) -> (Vec<wire::Response>, Result<(), StoreError>) {
        let store = self.store.clone();
        let mut inbound = Inbound::new(store.txn());
        let responses = envelopes
            .iter()
            .map(|b| self.open_one(from_peer, b.as_ref(), via_relay, &mut inbound))
            .collect();
        (responses, self.commit_inbound(inbound))
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
        let _span =
            tracing::debug_span!("inbound", envelope = %hex::encode(&envelope.id()[..8])).entered();
        if envelope.mailbox().ok() != Some(self.mailbox) {
            self.metrics.envelopes_rejected.inc();
            return wire::Response::rejected(
                RejectCode::UnknownMailbox,
                "not a mailbox of this node",
            );
        }
        if let Some(group) = self.group_of_frame(&envelope.ciphertext) {
            return self.accept_group_frame(group, &envelope.ciphertext, via_relay, inbound);
        }
        let opened = match self
            .sessions
            .open(&self.me, &envelope.ciphertext, self.clock.now_secs())
        {
            Ok(o) => o,
            // Session state is persisted with what the frame carried, so a replayed frame was
            // already stored: tell the sender it arrived.
            Err(CryptoError::Replay) => return wire::Response::accepted(true),
            Err(e) => {
                debug!(%from_peer, error = %e, "cannot open envelope");
                self.metrics.envelopes_rejected.inc();
                return wire::Response::rejected(RejectCode::Undecryptable, e.to_string());
            }
        };
        match self.accept(opened, via_relay, inbound) {
            Ok(duplicate) => wire::Response::accepted(duplicate),
            Err(DeliveryError::Invalid(e)) => {
                self.metrics.envelopes_rejected.inc();
                wire::Response::rejected(RejectCode::Malformed, e)
            }
            Err(e) => {
                // The frame advanced its session in memory: the whole batch is written or none.
                warn!(error = %e, "storing inbound message failed");
                inbound.failed = true;
                wire::Response::rejected(RejectCode::Internal, "storage error")
            }
        }
    }

    /// Adds what an opened frame carries to `inbound`; returns whether it was a duplicate.
    /// A contact's frames are stored, answered and receipted; a stranger's texts are held as
    /// a message request, and nothing of a stranger's session is kept or answered; a blocked
    /// peer's frames are dropped.
    fn accept(
        &mut self,
        opened: Opened,
        via_relay: bool,
        inbound: &mut Inbound<'_>,
    ) -> Result<bool, DeliveryError> {
        let Opened {
            from,
            inner,
            reply,
            late,
        } = opened;
        let peer = IdentityKey(from.identity_key);
        inbound.peers.insert(peer);
        // Another device of a contact speaks for the contact's account (its list names it):
        // its texts and receipts are the contact's; its session stays its own.
        let account = self.cards.account_of(&peer).filter(|a| self.is_contact(a));
        let who = account.unwrap_or(peer);
        let standing = self.standing(&who)?;
        // Another device of this account: trusted like a contact, never stored as one.
        let own = self.devices.is_own(&peer.0);
        let state = if own {
            Some(ContactState::Accepted)
        } else {
            standing.as_ref().map(|c| c.state)
        };
        if state == Some(ContactState::Blocked) {
            self.sessions.forget_peer(&peer.0);
            self.metrics.from_blocked.inc();
            return Ok(false);
        }
        let contact = state == Some(ContactState::Accepted);
        if !contact {
            inbound.requesters.insert(peer);
        } else if !self.sessions.is_known(&peer.0) {
            self.sessions.set_known(&peer.0, true);
        }
        let store = self.store.clone();
        let mut txn = store.txn();
        let mut duplicate = false;
        let mut sender_card = None;
        if let Some(mut inner) = inner {
            if account.is_some() || own {
                // A device's own card and grant are not its account's.
                inner.sender_card.clear();
                inner.write_grant.clear();
            }
            if account.is_some() {
                inner.payload.clear();
            }
            if !inner.sender_card.is_empty() {
                sender_card = self.learn_card(&from, &inner.sender_card, standing.as_ref());
            }
            let grant = std::mem::take(&mut inner.write_grant);
            if !grant.is_empty() {
                let known = sender_card.clone().or_else(|| standing.clone());
                sender_card = self.learn_grant(known, grant).or(sender_card);
            }
            // A contact's text may carry its other devices' cards.
            if contact && inner.kind == InnerKind::Text as i32 && !inner.payload.is_empty() {
                let payload = std::mem::take(&mut inner.payload);
                let known = sender_card.clone().or_else(|| standing.clone());
                sender_card = self.learn_device_cards(known, &payload).or(sender_card);
            }
            match InnerKind::try_from(inner.kind) {
                Ok(InnerKind::SyncSent) if own => {
                    txn = self.accept_sync_sent(&inner, inbound, txn);
                }
                Ok(InnerKind::SyncRead) if own => {
                    txn = self.accept_sync_read(&inner, inbound, txn);
                }
                Ok(InnerKind::SyncContact) if own => self.accept_sync_contact(&inner),
                // What only the account's first device sends its linked devices.
                Ok(InnerKind::SyncDevices) if self.devices.is_first(&peer.0) => {
                    self.accept_sync_devices(&inner);
                }
                Ok(InnerKind::SyncSenderKeys) if self.devices.is_first(&peer.0) => {
                    self.accept_sync_sender_keys(&inner);
                }
                Ok(InnerKind::SyncHistory) if self.devices.is_first(&peer.0) => {
                    txn = self.accept_sync_history(peer, &inner, inbound, txn);
                }
                Ok(InnerKind::Text) => {
                    let (t, dup) = self.accept_text(who, inner, late, via_relay, inbound, txn)?;
                    (txn, duplicate) = (t, dup);
                }
                Ok(kind @ (InnerKind::DeliveryReceipt | InnerKind::ReadReceipt)) => {
                    txn = self.accept_receipt(who, kind, &inner, inbound, txn);
                }
                Ok(
                    kind @ (InnerKind::GroupWelcome
                    | InnerKind::GroupSenderKey
                    | InnerKind::GroupChange
                    | InnerKind::GroupSync),
                ) => {
                    txn = self.accept_group_control(peer, kind, &inner, contact, txn);
                }
                _ => debug!(kind = inner.kind, "ignoring inner message of unknown kind"),
            }
        }
        if !contact {
            // A request is listed by its record; nothing of a stranger's session is kept (it
            // gets no answer, so it keeps writing inits, and the seen-set dedups them).
            let held = inbound.held.contains(&peer);
            let record = match sender_card {
                Some(card) if standing.is_some() || held => Some(card),
                None if standing.is_none() && held => Some(self.bare_request(&peer)),
                _ => None,
            };
            if let Some(r) = record {
                if standing.is_none() {
                    self.sync_request(&r);
                }
                txn = txn.put_contact(&r);
            }
            self.sessions.forget_peer(&peer.0);
            inbound.txn.append(txn);
            return Ok(duplicate);
        }
        if let Some(card) = &sender_card {
            // A new card may carry a new device list: only devices it lists speak for it.
            self.cards
                .set_devices(who, &super::kinds::other_devices(card));
            txn = txn.put_contact(card);
        }
        if let Some(state) = self.sessions.peer_state(&peer.0) {
            txn = txn.put_session(&peer.0, &state);
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
            if self.owed_room().is_err() {
                debug!("too much owed to contacts; a handshake response waits for the next init");
                break;
            }
            let Some(mailbox) = self.reply_route(&peer) else {
                debug!("no route back to sender for the handshake response");
                continue;
            };
            let ttl = self.settings.message_ttl_secs as u32;
            let envelope = Envelope::new(mailbox, frame, self.clock.now_secs(), ttl);
            let id = OutboxId::random();
            txn = txn.put_outbox(&self.outbox_record(id, peer, None, &envelope));
            outbox.push(id);
        }
        // Durable before anything is answered `accepted`: a power cut cannot take it back.
        if let Err(e) = txn.commit_durable() {
            self.reload_sessions(&peers);
            return Err(e);
        }
        let now = Instant::now();
        for id in outbox {
            self.schedule.add(id, now, false);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        for ev in events {
            self.events.emit(ev);
        }
        for ((peer, group), ids) in receipts {
            for chunk in ids.chunks(tokenim_crypto::MAX_REF_IDS) {
                self.send_receipt(peer, group.as_ref(), InnerKind::DeliveryReceipt, chunk);
            }
        }
        Ok(())
    }

    /// Puts these peers' sessions back to their stored state (after a write that failed), so
    /// that frames opened in memory but never stored open again on the next attempt.
    fn reload_sessions(&mut self, peers: &HashSet<IdentityKey>) {
        for peer in peers {
            match self.store.get_session(&peer.0) {
                Ok(Some(bytes)) if self.sessions.restore_peer(&bytes).is_ok() => {}
                _ => self.sessions.forget_peer(&peer.0),
            }
        }
    }

    fn reply_route(&mut self, peer: &IdentityKey) -> Option<MailboxId> {
        self.cards
            .contact(&self.store, peer)
            .ok()
            .or_else(|| self.cards.device(peer))
            .or_else(|| self.devices.own_card(&peer.0))
            .and_then(|c| c.mailboxes.first().copied())
    }
}

/// Whether a mailbox envelope may be acked (deleted at the relay) after this answer: yes when
/// it was stored, a duplicate, or can never be opened; no when storing failed for now.
fn ackable(response: &wire::Response) -> bool {
    !matches!(
        &response.kind,
        Some(pb::response::Kind::Rejected(r))
            if matches!(
                RejectCode::try_from(r.code),
                Ok(RejectCode::Internal | RejectCode::RateLimited | RejectCode::StorageFull)
            )
    )
}
