//! Group membership changes: proposing one (add, remove, leave, rename, role) and fanning it
//! out, and taking in the changes members make. After a removal every remaining member forgets
//! the removed one's sender keys and rotates its own, so nothing sent afterwards opens with
//! what the removed member holds.

use tokenim_crypto::group::sender_key::SenderKeyDistribution;
use tokenim_crypto::group::{Applied, Change, ChangeKind, Role};
use tokenim_crypto::pb::GroupWelcome;
use tokenim_crypto::{CryptoError, InnerKind};
use tokenim_store::ContactState;
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::groups::{GroupEdit, is_card_of, member_cards};
use crate::delivery::ids::IdentityKey;
use crate::event::NodeEvent;

/// What taking in a change did.
pub(in crate::delivery) enum Taken {
    /// The group is held and changed (or not): persist it.
    Held([u8; 32]),
    /// This node is no longer a member: forget the group.
    Left([u8; 32]),
}

fn not_allowed(e: CryptoError) -> DeliveryError {
    match e {
        CryptoError::GroupNotAllowed(_) | CryptoError::GroupFull { .. } => {
            DeliveryError::NotAllowed(e.to_string())
        }
        other => DeliveryError::Invalid(other.to_string()),
    }
}

impl Delivery {
    /// Makes the change the user asked for and tells the members.
    pub(in crate::delivery) fn change_group(
        &mut self,
        group: [u8; 32],
        edit: GroupEdit,
    ) -> Result<(), DeliveryError> {
        self.first_device_only()?;
        let me = self.me.public().identity_key;
        let now = self.clock.now_secs();
        let added_card = match &edit {
            GroupEdit::Add(m) => match self.standing(m)? {
                Some(c) if c.state == ContactState::Accepted && !c.card_uri.is_empty() => {
                    Some(c.card_uri)
                }
                Some(_) => return Err(DeliveryError::NotAContact(m.address())),
                None => return Err(DeliveryError::UnknownContact(m.address())),
            },
            _ => None,
        };
        let kind = match &edit {
            GroupEdit::Add(m) => ChangeKind::Add {
                member: m.0,
                role: Role::Member,
            },
            GroupEdit::Remove(m) => ChangeKind::Remove { member: m.0 },
            GroupEdit::SetRole(m, role) => ChangeKind::SetRole {
                member: m.0,
                role: *role,
            },
            GroupEdit::Rename(name) => ChangeKind::Rename { name: name.clone() },
            GroupEdit::Leave => ChangeKind::Leave,
        };
        let g = self
            .groups
            .get_mut(&group)
            .ok_or_else(|| DeliveryError::NotFound(format!("group {}", hex::encode(group))))?;
        let before = g.member_set();
        let change = g.log.propose(&self.me, kind, now).map_err(not_allowed)?;
        if let (GroupEdit::Add(m), Some(card)) = (&edit, &added_card) {
            g.cards.insert(m.0, card.clone());
        }
        // Everyone who was or is a member hears of it (a removed member learns it is out).
        let mut told = before;
        told.extend(g.member_set());
        told.remove(&me);
        let change_bytes = change.to_bytes();
        let welcome = match &edit {
            GroupEdit::Add(_) => Some(self.welcome(&group)?),
            _ => None,
        };
        for member in told {
            match (&edit, &welcome) {
                (GroupEdit::Add(m), Some(parts)) if m.0 == member => {
                    for part in parts {
                        self.send_group_control(
                            &group,
                            *m,
                            InnerKind::GroupWelcome,
                            part.clone(),
                            "",
                        );
                    }
                }
                _ => self.send_group_control(
                    &group,
                    IdentityKey(member),
                    InnerKind::GroupChange,
                    change_bytes.clone(),
                    added_card.as_deref().unwrap_or(""),
                ),
            }
        }
        match edit {
            GroupEdit::Leave => {
                self.groups.remove(&group);
                self.store.txn().delete_group(&group).commit()?;
            }
            GroupEdit::Remove(m) => {
                self.removed(&group, &[m.0]);
                self.persist_group(&group)?;
            }
            _ => self.persist_group(&group)?,
        }
        self.share_group(&group);
        self.events.emit(NodeEvent::GroupUpdated(group));
        Ok(())
    }

    pub(in crate::delivery) fn persist_group(&self, group: &[u8; 32]) -> Result<(), DeliveryError> {
        if let Some(g) = self.groups.get(group) {
            self.store.put_group(&g.record(self.clock.now_secs()))?;
        }
        Ok(())
    }

    /// `gone` left the group: forget their sender keys and cards, rotate ours and hand the
    /// new key to everyone still in.
    fn removed(&mut self, group: &[u8; 32], gone: &[[u8; 32]]) {
        let me = self.me.public().identity_key;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        for m in gone {
            g.cipher.forget_member(m);
            g.cards.remove(m);
        }
        let key = g.cipher.rotate().to_bytes().to_vec();
        let others: Vec<[u8; 32]> = g.others(&me).into_iter().map(|(k, _)| k).collect();
        for m in others {
            self.send_group_control(
                group,
                IdentityKey(m),
                InnerKind::GroupSenderKey,
                key.clone(),
                "",
            );
        }
    }

    /// A change a member made (`card`: the contact card of a member it adds).
    pub(in crate::delivery) fn accept_change(
        &mut self,
        peer: IdentityKey,
        payload: &[u8],
        card: &str,
    ) -> Result<Taken, DeliveryError> {
        let change =
            Change::from_bytes(payload).map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let id = change.group().0;
        let me = self.group_me();
        let now = self.clock.now_secs();
        let g = self
            .groups
            .get_mut(&id)
            .ok_or_else(|| DeliveryError::Invalid("change of a group not held".into()))?;
        // A join comes from the joiner itself (not a member yet), to the member its link names.
        let joining = change.author() == peer.0 && matches!(change.kind(), ChangeKind::Join { .. });
        if g.log.role_of(&peer.0).is_none() && !joining {
            return Err(DeliveryError::Invalid(
                "change relayed by a non-member".into(),
            ));
        }
        if joining && !self.groups.may_take_join(id, tokio::time::Instant::now()) {
            return Err(DeliveryError::NotAllowed(
                "too many joins for this group this minute".into(),
            ));
        }
        let g = self
            .groups
            .get_mut(&id)
            .ok_or_else(|| DeliveryError::Invalid("change of a group not held".into()))?;
        let forward = joining.then(|| change.to_bytes());
        let before = g.member_set();
        if g.log.apply_at(change, now).map_err(not_allowed)? != Applied::New {
            return Ok(Taken::Held(id));
        }
        let after = g.member_set();
        if !after.contains(&me) {
            self.groups.remove(&id);
            self.events.emit(NodeEvent::GroupUpdated(id));
            return Ok(Taken::Left(id));
        }
        let mut welcome_new = Vec::new();
        for added in after.difference(&before) {
            if is_card_of(card, added) {
                g.cards.insert(*added, card.to_owned());
            }
            welcome_new.push(*added);
        }
        let gone: Vec<[u8; 32]> = before.difference(&after).copied().collect();
        // A new member needs every member's sender key, and this node's copy of the log: a
        // change made at the same moment as its add may not have reached the member who
        // welcomed it.
        for m in welcome_new {
            if m != me {
                for part in self.welcome(&id)? {
                    self.send_group_control(&id, IdentityKey(m), InnerKind::GroupWelcome, part, "");
                }
            }
        }
        if !gone.is_empty() {
            self.removed(&id, &gone);
        }
        // The member a joiner wrote to welcomes it and tells everyone else.
        if let Some(change) = forward
            && after.contains(&peer.0)
        {
            for part in self.welcome(&id)? {
                self.send_group_control(&id, peer, InnerKind::GroupWelcome, part, "");
            }
            for m in after.iter().filter(|m| **m != me && **m != peer.0) {
                self.send_group_control(
                    &id,
                    IdentityKey(*m),
                    InnerKind::GroupChange,
                    change.clone(),
                    card,
                );
            }
        }
        self.events.emit(NodeEvent::GroupUpdated(id));
        debug!("group change taken");
        Ok(Taken::Held(id))
    }

    /// A welcome for a group already held (a further part, or a member's copy of its log sent
    /// when it learnt of this node): merges the changes, cards and sender key it carries.
    pub(super) fn sync_group(
        &mut self,
        peer: IdentityKey,
        id: [u8; 32],
        changes: impl Iterator<Item = Change>,
        welcome: &GroupWelcome,
    ) -> Result<[u8; 32], DeliveryError> {
        let now = self.clock.now_secs();
        let Some(held) = self.groups.get_mut(&id) else {
            return Ok(id);
        };
        if held.log.role_of(&peer.0).is_none() {
            return Err(DeliveryError::Invalid(
                "group welcome from a non-member".into(),
            ));
        }
        let before = held.member_set();
        let had_cards: std::collections::BTreeSet<[u8; 32]> = held.cards.keys().copied().collect();
        for change in changes {
            if let Err(e) = held.log.apply_at(change, now) {
                debug!(error = %e, "a change of a member's log does not apply here");
            }
        }
        for (key, card) in member_cards(&welcome.cards, &held.log) {
            held.cards.entry(key).or_insert(card);
        }
        if !welcome.sender_key.is_empty()
            && let Ok(d) = SenderKeyDistribution::from_bytes(&welcome.sender_key)
            && d.sender() == peer.0
            && d.group() == id
            && let Err(e) = held.cipher.add_distribution(d)
        {
            debug!(error = %e, "a member's sender key does not apply");
        }
        // Members learnt from the merged log get this node's sender key.
        let me = self.me.public().identity_key;
        let after = held.member_set();
        let mine = held.cipher.my_distribution().to_bytes().to_vec();
        // Members new to the log, and members this node could not reach before (their card
        // came in this part of a welcome): this node's key went to neither yet.
        let reachable_now = held
            .cards
            .keys()
            .filter(|k| !had_cards.contains(*k) && after.contains(*k));
        let to: std::collections::BTreeSet<[u8; 32]> = after
            .difference(&before)
            .chain(reachable_now)
            .copied()
            .collect();
        for m in to.iter().filter(|m| **m != me) {
            self.send_group_control(
                &id,
                IdentityKey(*m),
                InnerKind::GroupSenderKey,
                mine.clone(),
                "",
            );
        }
        self.events.emit(NodeEvent::GroupUpdated(id));
        Ok(id)
    }
}
