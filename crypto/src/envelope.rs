//! Envelopes: the only view of a message that relays and the network get.
//!
//! A relay learns the mailbox, a size class (the ciphertext is exactly one bucket long), a
//! minute-granular timestamp and the TTL; never the sender or the recipient's identity.

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::error::{CryptoError, Result};
use crate::identity::MailboxId;
pub use crate::pb::Envelope;

/// An envelope id: SHA-256 of its ciphertext.
pub type MessageId = [u8; 32];

/// The only allowed frame (ciphertext) lengths. Smallest first.
pub const BUCKETS: [usize; 5] = [512, 2048, 8192, 32768, 65536];
/// The largest bucket.
pub const LARGEST_BUCKET: usize = BUCKETS[BUCKETS.len() - 1];
/// Upper bound of an encoded envelope (largest bucket plus field overhead, with room to spare).
pub const MAX_ENVELOPE_BYTES: usize = LARGEST_BUCKET + 128;
/// Envelope format version.
pub const ENVELOPE_VERSION: u32 = 1;
/// Envelope timestamps are floored to a multiple of this.
pub const TIMESTAMP_GRANULARITY_SECS: u64 = 60;

/// The smallest bucket that holds `len` bytes.
pub fn bucket_for(len: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| b >= len)
}

/// SHA-256 of a ciphertext: the message id.
pub fn message_id(ciphertext: &[u8]) -> MessageId {
    Sha256::digest(ciphertext).into()
}

impl Envelope {
    /// Wraps a session frame for `mailbox`. The timestamp is coarsened; the id is the hash of
    /// `frame`.
    pub fn new(mailbox: MailboxId, frame: Vec<u8>, now_secs: u64, ttl_secs: u32) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            mailbox_id: mailbox.0.to_vec(),
            message_id: message_id(&frame).to_vec(),
            timestamp: now_secs - now_secs % TIMESTAMP_GRANULARITY_SECS,
            ttl_secs,
            ciphertext: frame,
        }
    }

    /// Decodes an envelope from the network and checks everything that can be checked without
    /// keys: size, version, field lengths, bucket, coarse timestamp and id == hash(ciphertext).
    pub fn decode_checked(bytes: &[u8]) -> Result<Envelope> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(CryptoError::EnvelopeTooLarge { len: bytes.len() });
        }
        let env = Envelope::decode(bytes).map_err(|e| CryptoError::malformed("envelope", e))?;
        if env.version != ENVELOPE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "envelope",
                version: env.version,
            });
        }
        if env.mailbox_id.len() != 32 {
            return Err(CryptoError::malformed(
                "envelope",
                "mailbox id is not 32 bytes",
            ));
        }
        if env.message_id.len() != 32 {
            return Err(CryptoError::malformed(
                "envelope",
                "message id is not 32 bytes",
            ));
        }
        if !BUCKETS.contains(&env.ciphertext.len()) {
            return Err(CryptoError::NotABucket {
                len: env.ciphertext.len(),
            });
        }
        if env.timestamp % TIMESTAMP_GRANULARITY_SECS != 0 {
            return Err(CryptoError::TimestampNotCoarse);
        }
        if env.message_id[..] != message_id(&env.ciphertext)[..] {
            return Err(CryptoError::MessageIdMismatch);
        }
        Ok(env)
    }

    /// The message id (as stored; `decode_checked` guarantees it is the ciphertext hash).
    pub fn id(&self) -> MessageId {
        self.message_id
            .as_slice()
            .try_into()
            .unwrap_or_else(|_| message_id(&self.ciphertext))
    }

    /// The recipient mailbox.
    pub fn mailbox(&self) -> Result<MailboxId> {
        MailboxId::from_slice(&self.mailbox_id)
    }

    /// When relays may drop it (timestamp + ttl).
    pub fn expires_at(&self) -> u64 {
        self.timestamp.saturating_add(self.ttl_secs.into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope::new(MailboxId([5; 32]), vec![9; 2048], 1_700_000_123, 3600)
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(e.timestamp, 1_700_000_100);
        let bytes = e.encode_to_vec();
        assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
        let d = Envelope::decode_checked(&bytes).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.id(), message_id(&[9; 2048]));
        assert_eq!(d.mailbox().unwrap(), MailboxId([5; 32]));
        let big = Envelope::new(
            MailboxId([5; 32]),
            vec![0; LARGEST_BUCKET],
            u64::MAX,
            u32::MAX,
        );
        assert!(big.encode_to_vec().len() <= MAX_ENVELOPE_BYTES);
        Envelope::decode_checked(&big.encode_to_vec()).unwrap();
    }

    #[test]
    fn distinct_errors() {
        let e = sample();
        let mut x = e.clone();
        x.ciphertext[0] ^= 1;
        assert!(matches!(
            Envelope::decode_checked(&x.encode_to_vec()),
            Err(CryptoError::MessageIdMismatch)
        ));
        let mut x = e.clone();
        x.version = 2;
        assert!(matches!(
            Envelope::decode_checked(&x.encode_to_vec()),
            Err(CryptoError::UnsupportedVersion { version: 2, .. })
        ));
        let x = Envelope::new(MailboxId([5; 32]), vec![1; 1000], 60, 1);
        assert!(matches!(
            Envelope::decode_checked(&x.encode_to_vec()),
            Err(CryptoError::NotABucket { len: 1000 })
        ));
        let mut x = e.clone();
        x.timestamp += 1;
        assert!(matches!(
            Envelope::decode_checked(&x.encode_to_vec()),
            Err(CryptoError::TimestampNotCoarse)
        ));
        let mut x = e.clone();
        x.mailbox_id.pop();
        assert!(matches!(
            Envelope::decode_checked(&x.encode_to_vec()),
            Err(CryptoError::Malformed { .. })
        ));
        assert!(matches!(
            Envelope::decode_checked(&vec![0; MAX_ENVELOPE_BYTES + 1]),
            Err(CryptoError::EnvelopeTooLarge { .. })
        ));
        assert!(matches!(
            Envelope::decode_checked(&[0xff, 0xff]),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_for(0), Some(512));
        assert_eq!(bucket_for(512), Some(512));
        assert_eq!(bucket_for(513), Some(2048));
        assert_eq!(bucket_for(65536), Some(65536));
        assert_eq!(bucket_for(65537), None);
    }
}
