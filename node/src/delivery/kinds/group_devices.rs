//! Groups on an account with several devices. Membership is by account, and the account's
//! first device speaks for it in its groups: it passes every group it holds to the linked
//! devices (the welcome, and the members' sender keys it holds), passes on each group frame it
//! takes (the same sealed frame, in an envelope to each device's mailbox), and sends what a
//! linked device writes to a group. Linked devices never speak to group members themselves.

use prost::Message as _;
use tokenim_crypto::group::sender_key::SenderKeyDistribution;
use tokenim_crypto::pb::SyncSenderKeys;
use tokenim_crypto::{Envelope, InnerKind, InnerMessage};
use tokenim_store::{Direction, MessageRecord, MessageState};
use tokio::time::Instant;
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::{IdentityKey, MessageId, OutboxId};
use crate::event::NodeEvent;

/// Sender keys per sync message (about 150 bytes each encoded).
const KEYS_PER_MESSAGE: usize = 200;

impl Delivery {
    /// Who this node is in groups: the account (on a linked device, the first device's key).
    pub(in crate::delivery) fn group_me(&self) -> [u8; 32] {
        match self.devices.list() {
            Some(l) if self.devices.is_linked() => l.account(),
            _ => self.me.public().identity_key,
        }
    }

    /// Refuses what only the account's first device does in groups.
    pub(in crate::delivery) fn first_device_only(&self) -> Result<(), DeliveryError> {
        if self.devices.is_linked() {
            return Err(DeliveryError::NotAllowed(
                "group membership changes are made on the account's first device".into(),
            ));
        }
        Ok(())
    }

    /// On the first device: gives every linked device `group` as held here (its log and
    /// cards as a welcome, and the members' sender keys).
    pub(in crate::delivery) fn share_group(&mut self, group: &[u8; 32]) {
        if self.devices.is_linked() || self.devices.own_devices().is_empty() {
            return;
        }
        let parts = match self.welcome(group) {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "cannot share a group with the other devices");
                return;
            }
        };
        for part in parts {
            self.tell_own_devices(InnerKind::GroupWelcome, part);
        }
        let keys: Vec<Vec<u8>> = self.groups.get(group).map_or_else(Vec::new, |g| {
            g.cipher
                .held_distributions()
                .iter()
                .map(|d| d.to_bytes().to_vec())
                .collect()
        });
        for chunk in keys.chunks(KEYS_PER_MESSAGE) {
            let payload = SyncSenderKeys {
                distributions: chunk.to_vec(),
            };
            self.tell_own_devices(InnerKind::SyncSenderKeys, payload.encode_to_vec());
        }
    }

    /// On the first device: every group, for a device just linked.
    pub(in crate::delivery) fn share_groups(&mut self) {
        for id in self.groups.ids() {
            self.share_group(&id);
        }
    }

    /// On the first device: a member's sender key it just took, for the linked devices.
    pub(in crate::delivery) fn share_sender_key(&mut self, distribution: &[u8]) {
        if self.devices.is_linked() {
            return;
        }
        let payload = SyncSenderKeys {
            distributions: vec![distribution.to_vec()],
        };
        self.tell_own_devices(InnerKind::SyncSenderKeys, payload.encode_to_vec());
    }

    /// On a linked device: members' sender keys from the first device.
    pub(in crate::delivery) fn accept_sync_sender_keys(&mut self, inner: &InnerMessage) {
        let Ok(sync) = SyncSenderKeys::decode(inner.payload.as_slice()) else {
            debug!("a sender key sync does not decode");
            return;
        };
        let me = self.group_me();
        let now = self.clock.now_secs();
        let mut changed = std::collections::BTreeSet::new();
        for bytes in sync.distributions.iter().take(KEYS_PER_MESSAGE) {
            let Ok(d) = SenderKeyDistribution::from_bytes(bytes) else {
                continue;
            };
            let group = d.group();
            match self.groups.get_mut(&group) {
                Some(g) if d.sender() != me && g.log.role_of(&d.sender()).is_some() => {
                    match g.cipher.add_distribution(d) {
                        Ok(()) => {
                            changed.insert(group);
                        }
                        Err(e) => debug!(error = %e, "a synced sender key does not apply"),
                    }
                }
                Some(_) => {}
                None => self.groups.keep_pending(d),
            }
        }
        for group in changed {
            if let Some(g) = self.groups.get(&group)
                && let Err(e) = self.store.put_group(&g.record(now))
            {
                debug!(error = %e, "cannot keep a synced sender key");
            }
        }
    }

    /// On the first device: passes a group frame it took to each linked device.
    pub(in crate::delivery) fn pass_on_frame(&mut self, frame: &[u8]) {
        if self.devices.is_linked() {
            return;
        }
        let now = self.clock.now_secs();
        let ttl = self.settings.message_ttl_secs as u32;
        let mut txn = self.store.txn();
        let mut queued = Vec::new();
        for card in self.devices.own_devices() {
            let Some(mailbox) = card.mailboxes.first().copied() else {
                continue;
            };
            let envelope = Envelope::new(mailbox, frame.to_vec(), now, ttl);
            let id = OutboxId::random();
            let peer = IdentityKey(card.identity.identity_key);
            txn = txn.put_outbox(&self.outbox_record(id, peer, None, &envelope));
            queued.push(id);
        }
        if queued.is_empty() {
            return;
        }
        if let Err(e) = txn.commit() {
            debug!(error = %e, "cannot pass a group frame to the other devices");
            return;
        }
        for id in queued {
            self.schedule.add(id, Instant::now(), false);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
    }

    /// On a linked device: a group text goes out through the account's first device. Kept
    /// here as sent once the first device has it queued.
    pub(in crate::delivery) fn relay_group_text(
        &mut self,
        group: [u8; 32],
        body: String,
    ) -> Result<MessageRecord, DeliveryError> {
        if self.groups.get(&group).is_none() {
            return Err(DeliveryError::NotFound(format!(
                "group {}",
                hex::encode(group)
            )));
        }
        if body.len() > tokenim_crypto::MAX_BODY_BYTES {
            return Err(DeliveryError::MessageTooLarge {
                size: body.len(),
                max: tokenim_crypto::MAX_BODY_BYTES,
            });
        }
        self.own_room()?;
        let now = self.clock.now_ms();
        let record = MessageRecord {
            id: MessageId::random().0,
            conversation: group,
            direction: Direction::Outgoing,
            from: self.group_me(),
            to: group,
            kind: InnerKind::Text as u32,
            body,
            sent_at_ms: now,
            received_at_ms: now,
            state: MessageState::Sent,
            relays: 0,
            envelope_id: None,
            updated_at_ms: now,
            held: false,
            group: true,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        self.store.txn().put_message(&record).commit_durable()?;
        self.sync_sent(&record, true);
        self.events.emit(NodeEvent::Message(record.clone()));
        Ok(record)
    }
}
