//! Catching up on membership changes a member missed (a change that expired in an outbox, or
//! one made beside its own add): every group text carries its sender's log heads. A member
//! that sees heads it lacks asks the sender with its own heads (`GroupSync`); a member that
//! sees a sender lacking changes it holds sends them. The changes travel as a welcome holding
//! only what the other lacks. Each direction goes at most once per 5 s per group and member,
//! so a burst of messages costs one exchange.

use prost::Message as _;
use tokenim_crypto::InnerKind;
use tokenim_crypto::pb::GroupHeads;
use tokio::time::Instant;
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::groups::Sync;
use crate::delivery::ids::IdentityKey;

/// Most heads one message names (more are dropped: the next exchange carries them).
const MAX_HEADS: usize = 16;

/// `group`'s heads as a payload.
pub(super) fn heads_payload(group: &[u8; 32], heads: &[[u8; 32]]) -> Vec<u8> {
    GroupHeads {
        group: group.to_vec(),
        heads: heads.iter().take(MAX_HEADS).map(|h| h.to_vec()).collect(),
    }
    .encode_to_vec()
}

fn decode_heads(payload: &[u8]) -> Option<([u8; 32], Vec<[u8; 32]>)> {
    let pb = GroupHeads::decode(payload).ok()?;
    if pb.heads.len() > MAX_HEADS {
        return None;
    }
    let heads = pb
        .heads
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((<[u8; 32]>::try_from(pb.group.as_slice()).ok()?, heads))
}

impl Delivery {
    /// `group`'s heads as this node holds them, for a text it sends.
    pub(super) fn my_heads(&self, group: &[u8; 32]) -> Vec<u8> {
        self.groups
            .get(group)
            .map(|g| heads_payload(group, &g.log.heads()))
            .unwrap_or_default()
    }

    /// A member's group text named `payload` heads: ask for what this node lacks, or send
    /// what the member lacks.
    pub(super) fn compare_heads(&mut self, group: [u8; 32], member: IdentityKey, payload: &[u8]) {
        let Some((named, heads)) = decode_heads(payload) else {
            return;
        };
        if named == group {
            self.sync_with(group, member, &heads, false);
        }
    }

    /// A member's `GroupSync`: its heads.
    pub(super) fn accept_sync(
        &mut self,
        peer: IdentityKey,
        payload: &[u8],
    ) -> Result<[u8; 32], DeliveryError> {
        let (group, heads) = decode_heads(payload)
            .ok_or_else(|| DeliveryError::Invalid("group sync: malformed heads".into()))?;
        let member = self
            .groups
            .get(&group)
            .is_some_and(|g| g.log.role_of(&peer.0).is_some());
        if !member {
            return Err(DeliveryError::Invalid(
                "group sync from a non-member".into(),
            ));
        }
        self.sync_with(group, peer, &heads, true);
        Ok(group)
    }

    /// Asks `member` for what this node lacks, and sends what it lacks. Unasked (`asked`
    /// false: heads seen on a text), only a member all of whose heads are known here is sent
    /// anything; one that asked is answered even then (diverged logs: the changes after the
    /// heads known here, the whole log when none is).
    fn sync_with(
        &mut self,
        group: [u8; 32],
        member: IdentityKey,
        theirs: &[[u8; 32]],
        asked: bool,
    ) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        let mine = g.log.heads();
        if mine.as_slice() == theirs {
            return;
        }
        let unknown = theirs.iter().any(|h| g.log.change(h).is_none());
        let lacking = (asked || !unknown) && !g.log.changes_since(theirs).is_empty();
        let now = Instant::now();
        if unknown && self.groups.may_sync(group, member.0, Sync::Ask, now) {
            let payload = heads_payload(&group, &mine);
            self.send_group_control(&group, member, InnerKind::GroupSync, payload, "");
        }
        if !lacking || !self.groups.may_sync(group, member.0, Sync::Answer, now) {
            return;
        }
        match self.welcome_since(&group, Some(theirs)) {
            Ok(parts) => {
                for part in parts {
                    self.send_group_control(&group, member, InnerKind::GroupWelcome, part, "");
                }
            }
            Err(e) => debug!(error = %e, "cannot build a group sync"),
        }
    }
}
