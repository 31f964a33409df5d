//! Each member's delivery state of a sent group message: one small row per (message, member),
//! so a receipt from one of 1,000 members rewrites 9 bytes, not the whole list.

use crate::Result;
use crate::backend::Cf;
use crate::error::corrupt;
use crate::keys::{concat, prefix_end};
use crate::records::MessageState;
use crate::store::Store;

/// Where one member stands with one sent group message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberState {
    /// The member's identity key.
    pub member: [u8; 32],
    /// How far the message got with this member.
    pub state: MessageState,
    /// When it got there (local clock, unix ms).
    pub at_ms: u64,
}

pub(crate) fn key(message: &[u8; 16], member: &[u8; 32]) -> Vec<u8> {
    concat(&[message, member])
}

pub(crate) fn value(state: MessageState, at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(state.code() as u8);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v
}

fn decode(key: &[u8], value: &[u8]) -> Result<MemberState> {
    const WHAT: &str = "member state";
    let member = key
        .get(16..48)
        .and_then(|m| <[u8; 32]>::try_from(m).ok())
        .ok_or_else(|| corrupt(WHAT, "key length"))?;
    let (&code, at) = value
        .split_first()
        .ok_or_else(|| corrupt(WHAT, "empty value"))?;
    let state = MessageState::from_code(u32::from(code))
        .ok_or_else(|| corrupt(WHAT, format!("unknown state {code}")))?;
    let at_ms = <[u8; 8]>::try_from(at)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(WHAT, "value length"))?;
    Ok(MemberState {
        member,
        state,
        at_ms,
    })
}

/// The range of one message's rows.
pub(crate) fn range(message: &[u8; 16]) -> (Vec<u8>, Vec<u8>) {
    let end = prefix_end(message).unwrap_or_else(|| vec![0xff; 17]);
    (message.to_vec(), end)
}

impl Store {
    /// One member's state of a sent group message, if any was recorded.
    pub fn member_state(
        &self,
        message: &[u8; 16],
        member: &[u8; 32],
    ) -> Result<Option<MemberState>> {
        let k = key(message, member);
        self.be()
            .get(Cf::MemberStates, &k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    /// Every member's recorded state of a sent group message, by member key.
    pub fn member_states(&self, message: &[u8; 16]) -> Result<Vec<MemberState>> {
        let (lo, hi) = range(message);
        let mut out = Vec::new();
        self.scan_each(Cf::MemberStates, &lo, Some(&hi), |k, v| {
            out.push(decode(&k, &v)?);
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Direction, MessageRecord};

    fn group_message(id: [u8; 16]) -> MessageRecord {
        MessageRecord {
            id,
            conversation: [7; 32],
            direction: Direction::Outgoing,
            from: [1; 32],
            to: [7; 32],
            kind: 1,
            body: "hi".into(),
            sent_at_ms: 10,
            received_at_ms: 10,
            state: MessageState::Queued,
            relays: 0,
            envelope_id: None,
            updated_at_ms: 10,
            held: false,
            group: true,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        }
    }

    #[test]
    fn states_are_kept_per_member_and_go_with_their_message() -> Result<()> {
        let store = Store::in_memory();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let state = |member: u8, state, at_ms| MemberState {
            member: [member; 32],
            state,
            at_ms,
        };
        store
            .txn()
            .put_message(&group_message(a))
            .put_message(&group_message(b))
            .put_member_state(&a, &state(3, MessageState::Stored, 11))
            .put_member_state(&a, &state(4, MessageState::Delivered, 12))
            .put_member_state(&b, &state(3, MessageState::Read, 13))
            .commit()?;
        store
            .txn()
            .put_member_state(&a, &state(3, MessageState::Read, 14))
            .commit()?;
        assert_eq!(
            store.member_states(&a)?,
            vec![
                state(3, MessageState::Read, 14),
                state(4, MessageState::Delivered, 12)
            ]
        );
        assert_eq!(
            store.member_state(&b, &[3; 32])?,
            Some(state(3, MessageState::Read, 13))
        );
        assert_eq!(store.member_state(&b, &[4; 32])?, None);
        store.txn().delete_message(&a).commit()?;
        assert!(store.member_states(&a)?.is_empty());
        assert_eq!(store.member_states(&b)?.len(), 1);
        Ok(())
    }
}
