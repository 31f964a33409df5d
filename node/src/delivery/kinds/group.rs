//! Group conversations: creating a group (its log and welcome), sending one sealed frame to
//! every member, taking in welcomes, sender keys and group frames.
//!
//! A welcome is taken only from a contact (consent: a stranger cannot put the user into a
//! group). Sender keys are taken from members of a group this node holds, contacts or not, and
//! co-members who are not contacts are reached through the cards the group keeps.

use std::collections::BTreeMap;

use prost::Message as _;
use tokenim_crypto::group::sender_key::{GroupCipher, SenderKeyDistribution, frame_key_id};
use tokenim_crypto::group::{Change, GroupLog, Role};
use tokenim_crypto::pb::{GroupMemberCard, GroupWelcome};
use tokenim_crypto::{Envelope, InnerKind, InnerMessage};
use tokenim_store::{ContactState, Direction, MessageRecord, MessageState, Txn};
use tokio::time::Instant;
use tracing::debug;

use super::group_changes::Taken;
use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::groups::{Group, member_cards};
use crate::delivery::ids::{IdentityKey, MessageId, OutboxId};
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;
use crate::net::wire;

/// Bytes of one welcome part (cards beyond go in further parts), well inside a message.
const WELCOME_PART_BYTES: usize = 40 * 1024;

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
        let group = Group {
            cipher: GroupCipher::new(log.id().0, me),
            log,
            cards,
            created_at: now,
        };
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
        Ok(id)
    }

    /// The welcome for a new member of `id`, in parts that each fit one message: the first
    /// holds the whole log, this node's sender key and the cards that fit; each further part
    /// the genesis (so it names its group) and more cards.
    pub(in crate::delivery) fn welcome(
        &self,
        id: &[u8; 32],
    ) -> Result<Vec<Vec<u8>>, DeliveryError> {
        let group = self
            .groups
            .get(id)
            .ok_or_else(|| DeliveryError::NotFound(format!("group {}", hex::encode(id))))?;
        let changes: Vec<Vec<u8>> = group.log.changes().iter().map(Change::to_bytes).collect();
        let genesis = changes.first().cloned().unwrap_or_default();
        let mut part = GroupWelcome {
            changes,
            cards: Vec::new(),
            sender_key: group.cipher.my_distribution().to_bytes().to_vec(),
        };
        let mut parts = Vec::new();
        for (k, c) in &group.cards {
            let card = GroupMemberCard {
                identity_key: k.to_vec(),
                card: c.clone(),
            };
            if !part.cards.is_empty()
                && part.encoded_len() + card.encoded_len() + 8 > WELCOME_PART_BYTES
            {
                let next = GroupWelcome {
                    changes: vec![genesis.clone()],
                    cards: Vec::new(),
                    sender_key: Vec::new(),
                };
                parts.push(std::mem::replace(&mut part, next).encode_to_vec());
            }
            part.cards.push(card);
        }
        parts.push(part.encode_to_vec());
        if parts
            .iter()
            .any(|p| p.len() > tokenim_crypto::MAX_PAYLOAD_BYTES)
        {
            return Err(DeliveryError::Invalid(
                "the group's log no longer fits a welcome".into(),
            ));
        }
        Ok(parts)
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
        let card = self
            .cards
            .contact(&self.store, &member)
            .ok()
            .or_else(|| self.groups.get(group).and_then(|g| g.card(&member.0)));
        let Some(card) = card else {
            debug!("no card for a group member; control message not sent");
            return;
        };
        let inner = control(kind, payload, body, self.clock.now_ms());
        if let Err(e) = self.queue_control(&card, &inner) {
            debug!(error = %e, "cannot queue a group control message");
        }
    }

    /// Seals `body` once and queues one envelope per member; answered once stored.
    pub(in crate::delivery) fn send_group(
        &mut self,
        group: [u8; 32],
        body: String,
    ) -> Result<MessageRecord, DeliveryError> {
        self.own_room()?;
        self.store.ensure_space(body.len() as u64)?;
        let me = self.me.public().identity_key;
        let id = MessageId::random();
        let sent_at_ms = self.clock.now_ms();
        let inner = InnerMessage {
            kind: InnerKind::Text as i32,
            id: id.0.to_vec(),
            body: body.clone(),
            sent_at_ms,
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
        for (member, _) in g.others(&me) {
            let Some(mailbox) = g.card(&member).and_then(|c| c.mailboxes.first().copied()) else {
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
        };
        let group_record = g.record(now);
        let mut txn = self
            .store
            .txn()
            .put_message(&record)
            .put_group(&group_record);
        let mut ids = Vec::new();
        for (member, envelope) in &targets {
            let outbox_id = OutboxId::random();
            txn = txn.put_outbox(&self.outbox_record(
                outbox_id,
                IdentityKey(*member),
                Some(id),
                envelope,
            ));
            ids.push(outbox_id);
        }
        txn.commit_durable()?;
        let at = Instant::now();
        for outbox_id in ids {
            self.schedule.add(outbox_id, at, true);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        self.metrics.messages_sent.inc();
        self.events.emit(NodeEvent::Message(record.clone()));
        Ok(record)
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
            _ => {
                debug!(?kind, "group control message not taken from this peer");
                return txn;
            }
        };
        match result {
            Ok(Taken::Held(group)) => {
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

    fn accept_welcome(
        &mut self,
        peer: IdentityKey,
        payload: &[u8],
    ) -> Result<[u8; 32], DeliveryError> {
        let bad = |e: &dyn std::fmt::Display| DeliveryError::Invalid(format!("group welcome: {e}"));
        let welcome = GroupWelcome::decode(payload).map_err(|e| bad(&e))?;
        let changes = welcome
            .changes
            .iter()
            .map(|c| Change::from_bytes(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let mut changes = changes.into_iter();
        let genesis = changes.next().ok_or_else(|| bad(&"no changes"))?;
        let now = self.clock.now_secs();
        if self.groups.get(&genesis.group().0).is_some() {
            return self.sync_group(peer, genesis.group().0, changes, &welcome);
        }
        let mut log = GroupLog::from_genesis(genesis).map_err(|e| bad(&e))?;
        for change in changes {
            log.apply_at(change, now).map_err(|e| bad(&e))?;
        }
        let me = self.me.public().identity_key;
        if log.role_of(&me).is_none() || log.role_of(&peer.0).is_none() {
            return Err(bad(&"sender or this node is not a member"));
        }
        let id = log.id().0;
        let cards = member_cards(&welcome.cards, &log).into_iter().collect();
        let mut cipher = GroupCipher::new(id, me);
        let sender_key =
            SenderKeyDistribution::from_bytes(&welcome.sender_key).map_err(|e| bad(&e))?;
        if sender_key.sender() != peer.0 || sender_key.group() != id {
            return Err(bad(&"sender key of someone else"));
        }
        cipher.add_distribution(sender_key).map_err(|e| bad(&e))?;
        for d in self.groups.take_pending(&id) {
            if log.role_of(&d.sender()).is_some()
                && let Err(e) = cipher.add_distribution(d)
            {
                debug!(error = %e, "a waiting sender key does not apply");
            }
        }
        let group = Group {
            log,
            cipher,
            cards,
            created_at: now,
        };
        let mine = group.cipher.my_distribution().to_bytes().to_vec();
        let others = group.others(&me);
        self.groups.insert(group);
        for (member, _) in others {
            self.send_group_control(
                &id,
                IdentityKey(member),
                InnerKind::GroupSenderKey,
                mine.clone(),
                "",
            );
        }
        for (from, payload) in self.groups.take_welcomes(&id) {
            if let Err(e) = self.accept_welcome(from, &payload) {
                debug!(error = %e, "a member's kept copy of the group does not apply");
            }
        }
        self.events.emit(NodeEvent::GroupUpdated(id));
        Ok(id)
    }

    fn accept_sender_key(
        &mut self,
        peer: IdentityKey,
        payload: &[u8],
    ) -> Result<[u8; 32], DeliveryError> {
        let d = SenderKeyDistribution::from_bytes(payload)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let id = d.group();
        if d.sender() != peer.0 {
            return Err(DeliveryError::Invalid("sender key of someone else".into()));
        }
        let Some(g) = self.groups.get_mut(&id) else {
            // Its welcome may still be on its way: keep it until then.
            self.groups.keep_pending(d);
            return Err(DeliveryError::Invalid(
                "sender key of a group not held yet".into(),
            ));
        };
        if g.log.role_of(&peer.0).is_none() {
            return Err(DeliveryError::Invalid(
                "sender key from a non-member".into(),
            ));
        }
        g.cipher
            .add_distribution(d)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        Ok(id)
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
        let Ok(inner) = InnerMessage::decode(plaintext.as_slice()) else {
            return wire::Response::rejected(wire::RejectCode::Malformed, "group message");
        };
        let Ok(id) = <[u8; 16]>::try_from(inner.id.as_slice()) else {
            return wire::Response::rejected(wire::RejectCode::Malformed, "message id");
        };
        let now_ms = self.clock.now_ms();
        let group_record = g.record(now_ms / 1000);
        let peer = IdentityKey(sender);
        let mut txn = self.store.txn().put_group(&group_record);
        let seen = inbound.seen.contains(&(peer, MessageId(id)))
            || self.store.is_seen(&sender, &id).unwrap_or(false);
        if !seen && inner.kind == InnerKind::Text as i32 {
            let record = MessageRecord {
                id,
                conversation: group,
                direction: Direction::Incoming,
                from: sender,
                to: self.me.public().identity_key,
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
            };
            txn = txn
                .put_message(&record)
                .mark_seen(&sender, &id, now_ms / 1000 + SEEN_TTL_SECS);
            inbound.seen.insert((peer, MessageId(id)));
            self.metrics.messages_received.inc();
            inbound.events.push(NodeEvent::Message(record));
        }
        inbound.txn.append(txn);
        wire::Response::accepted(seen)
    }
}
