//! Group conversations: creating a group (its log and welcome), sending one sealed frame to
//! every member, taking in welcomes, sender keys and group frames.
//!
//! A welcome is taken only from a contact (consent: a stranger cannot put the user into a
//! group). Sender keys are taken from members of a group this node holds, contacts or not, and
//! co-members who are not contacts are reached through the cards the group keeps.

use std::collections::BTreeMap;

use prost::Message as _;
use tokenim_crypto::group::sender_key::{GroupCipher, frame_key_id};
use tokenim_crypto::group::{GroupLog, Role};
use tokenim_crypto::{Envelope, InnerKind, InnerMessage};
use tokenim_store::{ContactState, Direction, MemberState, MessageRecord, MessageState, Txn};
use tokio::time::Instant;
use tracing::debug;

use super::group_changes::Taken;
use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::groups::{Group, Unsent};
use crate::delivery::ids::{IdentityKey, MessageId, OutboxId};
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;
use crate::net::wire;

/// How long a seen group message id is remembered (as for 1:1 texts).
const SEEN_TTL_SECS: u64 = 30 * 24 * 3600;

pub(super) fn control(kind: InnerKind, payload: Vec<u8>, body: &str, now_ms: u64) -> InnerMessage {
    InnerMessage {
        kind: kind as i32,
        id: rand::random::<[u8; 16]>().to_vec(),
        body: body.to_owned(),
        sent_at_ms: now_ms,
        payload,
        ..InnerMessage::default()
    }
}

impl Delivery {
    /// Creates a group with `members` (accepted contacts) and welcomes each of them.
    pub(in crate::delivery) async fn create_group(
        &mut self,
        name: String,
        members: Vec<IdentityKey>,
    ) -> Result<[u8; 32], DeliveryError> {
        self.first_device_only()?;
        let me = self.me.public().identity_key;
        let mut cards = BTreeMap::new();
        cards.insert(me, self.my_card().await?);
        for m in &members {
            match self.standing(m)? {
                Some(c) if c.state == ContactState::Accepted && !c.card_uri.is_empty() => {
                    cards.insert(m.0, c.card_uri);
                }
                Some(_) => {
                    return Err(DeliveryError::NotAContact(format!(
                        "{} is not an accepted contact",
                        m.address()
                    )));
                }
                None => return Err(DeliveryError::UnknownContact(m.address())),
            }
        }
        let roles: Vec<([u8; 32], Role)> = members.iter().map(|m| (m.0, Role::Member)).collect();
        let now = self.clock.now_secs();
        let (log, genesis) = GroupLog::create(&self.me, &name, &roles, now)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let cipher = GroupCipher::new(log.id().0, me);
        let group = Group::new(log, cipher, cards, now);
        let id = group.id();
        debug_assert_eq!(genesis.group().0, id);
        self.store.put_group(&group.record(now))?;
        self.groups.insert(group);
        let welcome = self.welcome(&id)?;
        for m in members {
            for part in &welcome {
                self.send_group_control(&id, m, InnerKind::GroupWelcome, part.clone(), "");
            }
        }
        self.share_group(&id);
        Ok(id)
    }

    /// Queues a group control message to `member` over its 1:1 session, by the contact's card
    /// or else the group's. Best effort, like receipts: a member that misses it is sent the
    /// next one.
    pub(in crate::delivery) fn send_group_control(
        &mut self,
        group: &[u8; 32],
        member: IdentityKey,
        kind: InnerKind,
        payload: Vec<u8>,
        body: &str,
    ) {
        if self.devices.is_linked() {
            return; // the account's first device speaks in its groups
        }
        let Some(card) = self.route_card(&member, Some(group)) else {
            debug!("no card for a group member; control message not sent");
            return;
        };
        let inner = control(kind, payload, body, self.clock.now_ms());
        if let Err(e) = self.queue_control(&card, &inner) {
            debug!(error = %e, "cannot queue a group control message");
        }
    }

    /// The card that reaches `peer`: the contact's, or else the one `group` keeps for it.
    pub(in crate::delivery) fn route_card(
        &mut self,
        peer: &IdentityKey,
        group: Option<&[u8; 32]>,
    ) -> Option<tokenim_crypto::ContactCard> {
        self.cards.contact(&self.store, peer).ok().or_else(|| {
            group
                .and_then(|g| self.groups.get(g))
                .and_then(|g| g.card(&peer.0))
        })
    }

    /// Seals `body` once and queues one envelope per member; answered once stored. On a
    /// linked device, the account's first device sends it.
    pub(in crate::delivery) fn send_group(
        &mut self,
        group: [u8; 32],
        body: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<MessageRecord, DeliveryError> {
        if self.devices.is_linked() {
            if !attachments.is_empty() {
                return Err(DeliveryError::NotAllowed(
                    "files go to groups from the account's first device".into(),
                ));
            }
            return self.relay_group_text(group, body);
        }
        let now = self.clock.now_ms();
        self.send_group_as(group, body, MessageId::random(), now, attachments)
    }

    /// Sends text `id` to `group` (written here, or on a linked device).
    pub(in crate::delivery) fn send_group_as(
        &mut self,
        group: [u8; 32],
        body: String,
        id: MessageId,
        sent_at_ms: u64,
        attachments: Vec<Vec<u8>>,
    ) -> Result<MessageRecord, DeliveryError> {
        self.own_room()?;
        self.store.ensure_space(body.len() as u64)?;
        let me = self.me.public().identity_key;
        // The log's heads ride along, so a member that missed a change notices.
        let heads = self.my_heads(&group);
        let inner = InnerMessage {
            kind: InnerKind::Text as i32,
            id: id.0.to_vec(),
            body: body.clone(),
            sent_at_ms,
            payload: if body.len() + heads.len() + attachments.iter().map(Vec::len).sum::<usize>()
                <= tokenim_crypto::MAX_BODY_BYTES
            {
                heads
            } else {
                Vec::new()
            },
            attachments,
            ..InnerMessage::default()
        };
        let now = self.clock.now_secs();
        let ttl = self.settings.message_ttl_secs as u32;
        let g = self
            .groups
            .get_mut(&group)
            .ok_or_else(|| DeliveryError::NotFound(format!("group {}", hex::encode(group))))?;
        let frame = g.cipher.seal(&inner.encode_to_vec()).map_err(|e| match e {
            tokenim_crypto::CryptoError::MessageTooLarge { size, max } => {
                DeliveryError::MessageTooLarge { size, max }
            }
            other => DeliveryError::internal(other),
        })?;
        let mut targets = Vec::new();
        let mut cardless = Vec::new();
        for (member, _) in g.others(&me) {
            let Some(mailbox) = g.card(&member).and_then(|c| c.mailboxes.first().copied()) else {
                cardless.push(member);
                continue;
            };
            targets.push((member, Envelope::new(mailbox, frame.clone(), now, ttl)));
        }
        let record = MessageRecord {
            id: id.0,
            conversation: group,
            direction: Direction::Outgoing,
            from: me,
            to: group,
            kind: InnerKind::Text as u32,
            body,
            sent_at_ms,
            received_at_ms: sent_at_ms,
            state: MessageState::Queued,
            relays: 0,
            envelope_id: targets.first().map(|(_, e)| e.id()),
            updated_at_ms: sent_at_ms,
            held: false,
            group: true,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        let group_record = g.record(now);
        let mut txn = self
            .store
            .txn()
            .put_message(&record)
            .put_group(&group_record);
        let mut ids = Vec::new();
        for (member, envelope) in &targets {
            let outbox_id;
            (txn, outbox_id) = self.queue_member_copy(txn, *member, id, envelope, sent_at_ms);
            ids.push(outbox_id);
        }
        txn.commit_durable()?;
        let at = Instant::now();
        for outbox_id in ids {
            self.schedule.add(outbox_id, at, true);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        for member in cardless {
            let unsent = Unsent {
                member,
                message: id.0,
                frame: frame.clone(),
            };
            self.groups.keep_unsent(group, unsent);
        }
        self.metrics.messages_sent.inc();
        self.sync_sent(&record, false);
        self.events.emit(NodeEvent::Message(record.clone()));
        Ok(record)
    }

    /// Adds to `txn` one member's copy of group message `id`: its outbox entry, and the
    /// member's state `queued`.
    fn queue_member_copy<'s>(
        &self,
        txn: Txn<'s>,
        member: [u8; 32],
        id: MessageId,
        envelope: &Envelope,
        at_ms: u64,
    ) -> (Txn<'s>, OutboxId) {
        let queued = MemberState {
            member,
            state: MessageState::Queued,
            at_ms,
        };
        let outbox_id = OutboxId::random();
        let entry = self.outbox_record(outbox_id, IdentityKey(member), Some(id), envelope);
        (
            txn.put_member_state(&id.0, &queued).put_outbox(&entry),
            outbox_id,
        )
    }

    /// Sends the frames kept for members whose card has arrived since.
    fn send_unsent(&mut self, group: &[u8; 32]) {
        let ready = self.groups.take_sendable(group);
        if ready.is_empty() {
            return;
        }
        let now = self.clock.now_secs();
        let ttl = self.settings.message_ttl_secs as u32;
        let at_ms = self.clock.now_ms();
        let mut txn = self.store.txn();
        let mut ids = Vec::new();
        for (u, card) in ready {
            let Some(mailbox) = card.mailboxes.first().copied() else {
                continue;
            };
            let envelope = Envelope::new(mailbox, u.frame, now, ttl);
            let outbox_id;
            (txn, outbox_id) =
                self.queue_member_copy(txn, u.member, MessageId(u.message), &envelope, at_ms);
            ids.push(outbox_id);
        }
        if let Err(e) = txn.commit() {
            debug!(error = %e, "cannot queue kept group frames");
            return;
        }
        for id in ids {
            self.schedule.add(id, Instant::now(), true);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
    }

    /// A group control message from `peer`: a welcome (from a contact) or a sender key (from a
    /// member of a group this node holds).
    pub(in crate::delivery) fn accept_group_control<'s>(
        &mut self,
        peer: IdentityKey,
        kind: InnerKind,
        inner: &InnerMessage,
        contact: bool,
        txn: Txn<'s>,
    ) -> Txn<'s> {
        let result = match kind {
            InnerKind::GroupWelcome if contact || self.groups.takes_welcome(&inner.payload) => {
                self.accept_welcome(peer, &inner.payload).map(Taken::Held)
            }
            InnerKind::GroupWelcome => {
                // A member's copy of a group this node is about to be welcomed into (by a
                // contact): kept until then.
                self.groups.keep_welcome(peer, inner.payload.clone());
                return txn;
            }
            InnerKind::GroupSenderKey => self
                .accept_sender_key(peer, &inner.payload)
                .map(Taken::Held),
            InnerKind::GroupChange => self.accept_change(peer, &inner.payload, &inner.body),
            InnerKind::GroupSync => self.accept_sync(peer, &inner.payload).map(Taken::Held),
            _ => {
                debug!(?kind, "group control message not taken from this peer");
                return txn;
            }
        };
        match result {
            Ok(Taken::Held(group)) => {
                self.send_unsent(&group);
                if kind == InnerKind::GroupSenderKey {
                    self.share_sender_key(&inner.payload);
                } else {
                    self.share_group(&group);
                }
                let now = self.clock.now_secs();
                match self.groups.get(&group) {
                    Some(g) => txn.put_group(&g.record(now)),
                    None => txn,
                }
            }
            Ok(Taken::Left(group)) => txn.delete_group(&group),
            Err(e) => {
                debug!(error = %e, "group control message refused");
                txn
            }
        }
    }

    /// The group whose sender keys open this envelope's ciphertext, if any.
    pub(in crate::delivery) fn group_of_frame(&self, ciphertext: &[u8]) -> Option<[u8; 32]> {
        frame_key_id(ciphertext).and_then(|k| self.groups.holding(&k))
    }

    /// Opens a group frame and stores the text it carries; the answer to its sender.
    pub(in crate::delivery) fn accept_group_frame(
        &mut self,
        group: [u8; 32],
        ciphertext: &[u8],
        via_relay: bool,
        inbound: &mut Inbound<'_>,
    ) -> wire::Response {
        let rejected = |e: &dyn std::fmt::Display| {
            wire::Response::rejected(wire::RejectCode::Undecryptable, e.to_string())
        };
        let Some(g) = self.groups.get_mut(&group) else {
            return rejected(&"group not held");
        };
        let (sender, plaintext) = match g.cipher.open(ciphertext) {
            Ok(o) => o,
            Err(tokenim_crypto::CryptoError::Replay) => return wire::Response::accepted(true),
            Err(e) => return rejected(&e),
        };
        if g.log.role_of(&sender).is_none() {
            return rejected(&"not a member");
        }
        let Ok(mut inner) = InnerMessage::decode(plaintext.as_slice()) else {
            return wire::Response::rejected(wire::RejectCode::Malformed, "group message");
        };
        let payload = std::mem::take(&mut inner.payload);
        let attachments = std::mem::take(&mut inner.attachments);
        let Ok(id) = <[u8; 16]>::try_from(inner.id.as_slice()) else {
            return wire::Response::rejected(wire::RejectCode::Malformed, "message id");
        };
        let now_ms = self.clock.now_ms();
        let group_record = g.record(now_ms / 1000);
        let peer = IdentityKey(sender);
        let store = self.store.clone();
        let mut txn = store.txn().put_group(&group_record);
        let seen = inbound.seen.contains(&(peer, MessageId(id)))
            || self.store.is_seen(&sender, &id).unwrap_or(false);
        let inner_is_text = inner.kind == InnerKind::Text as i32;
        if !seen && inner_is_text {
            let record = MessageRecord {
                id,
                conversation: group,
                direction: Direction::Incoming,
                from: sender,
                to: self.group_me(),
                kind: InnerKind::Text as u32,
                body: inner.body,
                sent_at_ms: inner.sent_at_ms,
                received_at_ms: now_ms,
                state: MessageState::Received,
                relays: 0,
                envelope_id: None,
                updated_at_ms: now_ms,
                held: false,
                group: true,
                reached: 0,
                delivered_to: 0,
                read_by: 0,
            };
            txn = txn
                .put_message(&record)
                .mark_seen(&sender, &id, now_ms / 1000 + SEEN_TTL_SECS);
            txn = self.offer_files(peer, Some(&group), id, &attachments, inbound, txn);
            inbound.seen.insert((peer, MessageId(id)));
            self.metrics.messages_received.inc();
            inbound.events.push(NodeEvent::Message(record));
            // As for 1:1 texts: what came through a relay is receipted end to end (by the
            // account's first device).
            if via_relay && !self.devices.is_linked() {
                let owed = inbound.receipts.entry((peer, Some(group))).or_default();
                owed.push(MessageId(id));
            }
        }
        inbound.txn.append(txn);
        if !seen && inner_is_text {
            self.pass_on_frame(ciphertext);
        }
        if !payload.is_empty() && !self.devices.is_linked() {
            self.compare_heads(group, peer, &payload);
        }
        wire::Response::accepted(seen)
    }
}
