//! Key layouts: the on-disk schema, together with the record messages in [`crate::records`].
//!
//! Integers in keys are big-endian so that byte order equals numeric order. Times in
//! `*_ms` are unix milliseconds, other times unix seconds.
//!
//! | column family    | key                                            | value                                   |
//! |------------------|------------------------------------------------|-----------------------------------------|
//! | `meta`           | utf-8 name (`store.*` reserved)                | bytes                                   |
//! | `contacts`       | identity key (32)                              | `ContactPb`                             |
//! | `sessions`       | peer identity key (32)                         | opaque session bytes                    |
//! | `outbox`         | outbox id (16)                                 | `OutboxPb`                              |
//! | `messages`       | conversation (32) · received_at_ms (8) · id (16) | `MessagePb`                           |
//! | `message_index`  | id (16)                                        | the `messages` key (56)                 |
//! | `message_time`   | received_at_ms (8) · id (16), not held ones    | conversation (32)                       |
//! | `mailboxes`      | mailbox (32) · seq (8)                         | `StoredEnvelopePb`                      |
//! | `mailbox_meta`   | mailbox (32)                                   | `MailboxMetaPb`                         |
//! | `mailbox_index`  | mailbox (32) · message id (32)                 | seq (8) · expires_at (8) · size (8)     |
//! | `mailbox_expiry` | expires_at (8) · mailbox (32) · seq (8)        | message id (32) · size (8)              |
//! | `tokens`         | token id (utf-8)                               | `TokenPb`                               |
//! | `groups`         | group id (32)                                  | `GroupPb`                               |
//! | `member_states`  | message id (16) · member (32)                  | state (1) · at_ms (8)                   |
//! | `files`          | `f` · file id (16)                             | `FilePb`                                |
//! | `files`          | `m` · message id (16) · file id (16)           | empty (a message's attachments)         |
//! | `files`          | `r` · chunk-list root (32) · file id (16)      | empty (an upload by root)               |
//! | `seen`           | `0x00` · peer (32) · inner id (16)             | expires_at (8)                          |
//! | `seen`           | `0x01` · expires_at (8) · peer (32) · inner id (16) | empty (expiry order for purges)    |
//!
//! Index values are fixed-width tuples rather than protobuf: they are on the hot path, have no
//! optional parts, and a schema version bump covers any change to them.

use crate::Result;
use crate::error::corrupt;

pub(crate) const MESSAGE_KEY_LEN: usize = 56;
pub(crate) const SEEN_PRIMARY: u8 = 0x00;
pub(crate) const SEEN_EXPIRY: u8 = 0x01;

/// The smallest key greater than every key that starts with `prefix`, or None if there is
/// none (prefix all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The smallest key strictly greater than `key` (append a zero byte).
pub(crate) fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

pub(crate) fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

pub(crate) fn message_key(conversation: &[u8; 32], received_at_ms: u64, id: &[u8; 16]) -> Vec<u8> {
    concat(&[conversation, &received_at_ms.to_be_bytes(), id])
}

pub(crate) fn message_time_key(received_at_ms: u64, id: &[u8; 16]) -> Vec<u8> {
    concat(&[&received_at_ms.to_be_bytes(), id])
}

pub(crate) fn mailbox_msg_key(mailbox: &[u8; 32], seq: u64) -> Vec<u8> {
    concat(&[mailbox, &seq.to_be_bytes()])
}

pub(crate) fn mailbox_index_key(mailbox: &[u8; 32], message_id: &[u8; 32]) -> Vec<u8> {
    concat(&[mailbox, message_id])
}

pub(crate) fn mailbox_expiry_key(expires_at: u64, mailbox: &[u8; 32], seq: u64) -> Vec<u8> {
    concat(&[&expires_at.to_be_bytes(), mailbox, &seq.to_be_bytes()])
}

pub(crate) fn seen_key(peer: &[u8; 32], inner_id: &[u8; 16]) -> Vec<u8> {
    concat(&[&[SEEN_PRIMARY], peer, inner_id])
}

pub(crate) fn seen_expiry_key(expires_at: u64, peer: &[u8; 32], inner_id: &[u8; 16]) -> Vec<u8> {
    concat(&[&[SEEN_EXPIRY], &expires_at.to_be_bytes(), peer, inner_id])
}

/// Fixed-size array at `bytes[at..at + N]`, or a corruption error.
pub(crate) fn array<const N: usize>(
    what: &'static str,
    bytes: &[u8],
    at: usize,
) -> Result<[u8; N]> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| {
            corrupt(
                what,
                format!("expected {N} bytes at offset {at}, have {}", bytes.len()),
            )
        })
}

pub(crate) fn u64_at(what: &'static str, bytes: &[u8], at: usize) -> Result<u64> {
    array::<8>(what, bytes, at).map(u64::from_be_bytes)
}

/// `bytes` must be exactly `len` long.
pub(crate) fn expect_len(what: &'static str, bytes: &[u8], len: usize) -> Result<()> {
    if bytes.len() == len {
        Ok(())
    } else {
        Err(corrupt(
            what,
            format!("expected {len} bytes, have {}", bytes.len()),
        ))
    }
}

/// Value of a `mailbox_index` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MailboxIndexValue {
    pub seq: u64,
    pub expires_at: u64,
    pub size: u64,
}

impl MailboxIndexValue {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.expires_at.to_be_bytes());
        out[16..].copy_from_slice(&self.size.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "mailbox index value";
        expect_len(WHAT, bytes, 24)?;
        Ok(Self {
            seq: u64_at(WHAT, bytes, 0)?,
            expires_at: u64_at(WHAT, bytes, 8)?,
            size: u64_at(WHAT, bytes, 16)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_and_carries() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn successor_is_next_key() {
        let k = [5u8, 6];
        let s = successor(&k);
        assert!(s.as_slice() > k.as_slice());
        assert!(s.as_slice() < [5u8, 6, 0, 0].as_slice());
    }

    #[test]
    fn index_value_round_trip_and_rejects_bad_length() {
        let v = MailboxIndexValue {
            seq: 7,
            expires_at: 99,
            size: 1024,
        };
        assert_eq!(MailboxIndexValue::decode(&v.encode()).ok(), Some(v));
        assert!(MailboxIndexValue::decode(&[0; 23]).is_err());
    }
}
