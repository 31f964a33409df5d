//! Welcomes: the group's log, this node's sender key and the members' cards, for a new member
//! (all of it) or a member catching up (what it lacks); and taking one in.

use prost::Message as _;
use tokenim_crypto::InnerKind;
use tokenim_crypto::group::sender_key::{GroupCipher, SenderKeyDistribution};
use tokenim_crypto::group::{Change, ChangeKind, GroupLog};
use tokenim_crypto::pb::{GroupMemberCard, GroupWelcome};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::groups::{Group, member_cards};
use crate::delivery::ids::IdentityKey;
use crate::event::NodeEvent;

/// Bytes of one welcome part (cards beyond go in further parts), well inside a message.
const WELCOME_PART_BYTES: usize = 40 * 1024;

/// The member a change brings in, if any.
fn added_member(c: &Change) -> Option<[u8; 32]> {
    match c.kind() {
        ChangeKind::Add { member, .. } => Some(*member),
        ChangeKind::Join { .. } => Some(c.author()),
        _ => None,
    }
}

impl Delivery {
    /// The welcome for a new member of `id`, in parts that each fit one message: the first
    /// holds the whole log, this node's sender key and the cards that fit; each further part
    /// the genesis (so it names its group) and more cards.
    pub(in crate::delivery) fn welcome(
        &self,
        id: &[u8; 32],
    ) -> Result<Vec<Vec<u8>>, DeliveryError> {
        self.welcome_since(id, None)
    }

    /// A welcome for a member whose log stands at `known` heads (None: a new member): the
    /// genesis and the changes it lacks, with the cards of the members those changes add.
    pub(in crate::delivery) fn welcome_since(
        &self,
        id: &[u8; 32],
        known: Option<&[[u8; 32]]>,
    ) -> Result<Vec<Vec<u8>>, DeliveryError> {
        let group = self
            .groups
            .get(id)
            .ok_or_else(|| DeliveryError::NotFound(format!("group {}", hex::encode(id))))?;
        let genesis = group
            .log
            .genesis()
            .map(Change::to_bytes)
            .unwrap_or_default();
        let (changes, cards): (Vec<Change>, Vec<(&[u8; 32], &String)>) = match known {
            None => (group.log.changes(), group.cards.iter().collect()),
            Some(heads) => {
                let missing = group.log.changes_since(heads);
                let added: std::collections::BTreeSet<[u8; 32]> =
                    missing.iter().filter_map(added_member).collect();
                let cards = group.cards.iter().filter(|(k, _)| added.contains(*k));
                (missing, cards.collect())
            }
        };
        let mut encoded = vec![genesis.clone()];
        encoded.extend(
            changes
                .iter()
                .map(Change::to_bytes)
                .filter(|c| *c != genesis),
        );
        let mut part = GroupWelcome {
            changes: encoded,
            cards: Vec::new(),
            sender_key: group.cipher.my_distribution().to_bytes().to_vec(),
        };
        let mut parts = Vec::new();
        for (k, c) in cards {
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

    pub(super) fn accept_welcome(
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
        // A further part (more cards, no sender key) that overtook the first: it waits for it.
        if welcome.sender_key.is_empty() {
            self.groups.keep_welcome(peer, payload.to_vec());
            return Err(bad(&"a further part waits for the first"));
        }
        let mut log = GroupLog::from_genesis(genesis).map_err(|e| bad(&e))?;
        for change in changes {
            log.apply_at(change, now).map_err(|e| bad(&e))?;
        }
        let me = self.group_me();
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
        // On a linked device the first device's key is the account's own: not taken.
        if sender_key.sender() != me {
            cipher.add_distribution(sender_key).map_err(|e| bad(&e))?;
        }
        for d in self.groups.take_pending(&id) {
            if log.role_of(&d.sender()).is_some()
                && let Err(e) = cipher.add_distribution(d)
            {
                debug!(error = %e, "a waiting sender key does not apply");
            }
        }
        let group = Group::new(log, cipher, cards, now);
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

    pub(super) fn accept_sender_key(
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
}
