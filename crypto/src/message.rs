//! The inner (end-to-end encrypted) message and its limits.
//!
//! Limits are checked on both `seal` and `open`: a message that breaks them is refused before
//! encryption and rejected after decryption, whoever produced it.

use crate::error::{CryptoError, Result};
use crate::pb::{InnerKind, InnerMessage};
use crate::{MAX_CARD_URI_BYTES, envelope::LARGEST_BUCKET, session::frame};

/// Length of an inner message id (and of each ref id).
pub const INNER_ID_LEN: usize = 16;
/// Most message ids one receipt may refer to.
pub const MAX_REF_IDS: usize = 128;
/// Largest encoded `InnerMessage` that fits an init frame (the frame with the most overhead) of
/// the largest bucket.
pub const MAX_INNER_BYTES: usize =
    LARGEST_BUCKET - frame::INIT_FIXED_OVERHEAD - frame::INIT_PAYLOAD_OVERHEAD;
/// Largest message body (bytes of UTF-8). Any message within all limits (this body, a sender card
/// of up to [`MAX_CARD_URI_BYTES`], up to [`MAX_REF_IDS`] ref ids) fits the largest bucket;
/// `seal` of a bigger body returns [`CryptoError::MessageTooLarge`].
pub const MAX_BODY_BYTES: usize = 56 * 1024;
/// Most files attached to one message.
pub const MAX_ATTACHMENTS: usize = 8;

/// Most bytes of `InnerMessage::payload` (group control messages).
pub const MAX_PAYLOAD_BYTES: usize = 48 * 1024;

/// Worst-case encoded size of an `InnerMessage` whose body is `body` bytes long.
const fn worst_inner_len(body: usize) -> usize {
    const fn field(len: usize) -> usize {
        1 + varint_len(len as u64) + len
    }
    11 // kind: tag + up to 10-byte varint (negative enum values)
        + field(INNER_ID_LEN)
        + 11 // sent_at_ms
        + field(MAX_CARD_URI_BYTES)
        + MAX_REF_IDS * field(INNER_ID_LEN)
        + field(body)
        // The payload's and attachments' own bytes count against the body's room; their tags
        // and lengths do not.
        + 4
        + MAX_ATTACHMENTS * 4
        + field(crate::MAX_GRANT_BYTES)
}

pub(crate) const fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

const _: () = assert!(worst_inner_len(MAX_BODY_BYTES) <= MAX_INNER_BYTES);

/// Checks the limits above.
pub(crate) fn validate(m: &InnerMessage) -> Result<()> {
    if m.body.len() > MAX_BODY_BYTES {
        return Err(CryptoError::MessageTooLarge {
            size: m.body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    if m.id.len() != INNER_ID_LEN {
        return Err(CryptoError::InvalidMessage("id must be 16 bytes"));
    }
    if m.ref_ids.len() > MAX_REF_IDS {
        return Err(CryptoError::InvalidMessage("too many ref ids"));
    }
    if m.ref_ids.iter().any(|r| r.len() != INNER_ID_LEN) {
        return Err(CryptoError::InvalidMessage("ref ids must be 16 bytes"));
    }
    if m.sender_card.len() > MAX_CARD_URI_BYTES {
        return Err(CryptoError::InvalidMessage("sender card too long"));
    }
    // A payload and attachments take the room of a body: together they stay within what one
    // frame holds.
    let attached: usize = m.attachments.iter().map(Vec::len).sum();
    if m.attachments.len() > MAX_ATTACHMENTS {
        return Err(CryptoError::InvalidMessage("too many attachments"));
    }
    if m.payload.len() > MAX_PAYLOAD_BYTES
        || m.payload.len() + m.body.len() + attached > MAX_BODY_BYTES
    {
        return Err(CryptoError::InvalidMessage("payload too long"));
    }
    if m.write_grant.len() > crate::MAX_GRANT_BYTES {
        return Err(CryptoError::InvalidMessage("write grant too long"));
    }
    Ok(())
}

impl InnerMessage {
    /// A text message.
    pub fn text(id: [u8; INNER_ID_LEN], body: impl Into<String>, sent_at_ms: u64) -> Self {
        InnerMessage {
            kind: InnerKind::Text.into(),
            id: id.to_vec(),
            body: body.into(),
            ref_ids: Vec::new(),
            sent_at_ms,
            sender_card: String::new(),
            write_grant: Vec::new(),
            payload: Vec::new(),
            attachments: Vec::new(),
        }
    }

    /// A delivery or read receipt for `ref_ids`.
    pub fn receipt(
        kind: InnerKind,
        id: [u8; INNER_ID_LEN],
        ref_ids: &[[u8; INNER_ID_LEN]],
        sent_at_ms: u64,
    ) -> Self {
        InnerMessage {
            kind: kind.into(),
            id: id.to_vec(),
            body: String::new(),
            ref_ids: ref_ids.iter().map(|r| r.to_vec()).collect(),
            sent_at_ms,
            sender_card: String::new(),
            write_grant: Vec::new(),
            payload: Vec::new(),
            attachments: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn limits() {
        let ok = InnerMessage::text([1; 16], "hi", 0);
        assert!(validate(&ok).is_ok());
        let mut m = ok.clone();
        m.id = vec![1; 15];
        assert!(matches!(validate(&m), Err(CryptoError::InvalidMessage(_))));
        let mut m = ok.clone();
        m.body = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(matches!(
            validate(&m),
            Err(CryptoError::MessageTooLarge { .. })
        ));
        let mut m = ok.clone();
        m.ref_ids = vec![vec![0; 16]; MAX_REF_IDS + 1];
        assert!(matches!(validate(&m), Err(CryptoError::InvalidMessage(_))));
        let mut m = ok;
        m.ref_ids = vec![vec![0; 17]];
        assert!(matches!(validate(&m), Err(CryptoError::InvalidMessage(_))));
    }
}
