//! Frame layout (see `proto/tokenim/v1/session.proto` for the spec) and padding.

use crate::envelope::{BUCKETS, bucket_for};
use crate::error::{CryptoError, Result};
use crate::message::varint_len;

pub(crate) const KIND_INIT: u8 = 1;
pub(crate) const KIND_RESPONSE: u8 = 2;
pub(crate) const KIND_TRANSPORT: u8 = 3;

/// Length of init ids and session ids.
pub(crate) const ID_LEN: usize = 16;
/// kind + id.
pub(crate) const HANDSHAKE_HEADER: usize = 1 + ID_LEN;
/// kind + id + nonce.
pub(crate) const TRANSPORT_HEADER: usize = 1 + ID_LEN + 8;

const DH_LEN: usize = 32;
pub(crate) const TAG_LEN: usize = 16;
/// IK message 1: e, encrypted s, payload tag.
const IK1_OVERHEAD: usize = DH_LEN + DH_LEN + TAG_LEN + TAG_LEN;
/// IK message 2: e, payload tag.
const IK2_OVERHEAD: usize = DH_LEN + TAG_LEN;
/// Length prefix of the padded plaintext.
pub(crate) const LEN_PREFIX: usize = 4;

/// Bytes of an init frame that are not the HandshakePayload.
pub(crate) const INIT_FIXED_OVERHEAD: usize = HANDSHAKE_HEADER + IK1_OVERHEAD + LEN_PREFIX;
/// Bytes of an encoded HandshakePayload that are not the inner message (worst case): init_id,
/// reply_id, created_at, sequence, sender (a PublicIdentity of 134 bytes), and the tag + length
/// (< 2^21) of the inner message field.
pub(crate) const INIT_PAYLOAD_OVERHEAD: usize =
    2 * (1 + 1 + ID_LEN) + 11 + 11 + (1 + varint_len(134) + 134) + (1 + 3);
/// Bytes of a transport frame that are not the InnerMessage.
pub(crate) const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER + LEN_PREFIX + TAG_LEN;
/// Response frames are always the smallest bucket.
pub(crate) const RESPONSE_LEN: usize = BUCKETS[0];
/// Plaintext capacity of a response frame.
pub(crate) const RESPONSE_PLAINTEXT: usize = RESPONSE_LEN - HANDSHAKE_HEADER - IK2_OVERHEAD;

const _: () = assert!(crate::message::MAX_INNER_BYTES < 1 << 21);
// Every Noise message must stay within the Noise maximum.
const _: () = assert!(BUCKETS[BUCKETS.len() - 1] - HANDSHAKE_HEADER <= 65535);

/// Frame length for an init whose HandshakePayload is `payload_len` bytes.
pub(crate) fn init_frame_len(payload_len: usize) -> Option<usize> {
    bucket_for(INIT_FIXED_OVERHEAD + payload_len)
}

/// Plaintext length (padded) inside an init frame of `frame_len`.
pub(crate) fn init_plaintext_len(frame_len: usize) -> usize {
    frame_len - HANDSHAKE_HEADER - IK1_OVERHEAD
}

/// Frame length for a transport frame carrying `payload_len` bytes.
pub(crate) fn transport_frame_len(payload_len: usize) -> Option<usize> {
    bucket_for(TRANSPORT_OVERHEAD + payload_len)
}

/// `len (u32 BE) || payload || zeros`, `total` bytes long.
pub(crate) fn pad(payload: &[u8], total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(total, 0);
    out
}

/// Inverse of [`pad`]; padding must be zero.
pub(crate) fn unpad(plaintext: &[u8]) -> Result<&[u8]> {
    let (len, rest) =
        plaintext
            .split_first_chunk::<LEN_PREFIX>()
            .ok_or(CryptoError::FrameMalformed(
                "plaintext shorter than its length prefix",
            ))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(CryptoError::FrameMalformed(
            "length prefix beyond plaintext",
        ));
    }
    let (payload, padding) = rest.split_at(len);
    // OR-fold instead of `any`: no early exit, so it vectorises (this runs on every frame).
    if padding.iter().fold(0u8, |acc, &b| acc | b) != 0 {
        return Err(CryptoError::FrameMalformed("non-zero padding"));
    }
    Ok(payload)
}

/// Splits `kind || id`; the frame must be a bucket long.
pub(crate) fn header(frame: &[u8]) -> Result<(u8, [u8; ID_LEN])> {
    if !BUCKETS.contains(&frame.len()) {
        return Err(CryptoError::NotABucket { len: frame.len() });
    }
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&frame[1..HANDSHAKE_HEADER]);
    Ok((frame[0], id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pad_unpad() {
        let p = pad(b"hello", 64);
        assert_eq!(p.len(), 64);
        assert_eq!(unpad(&p).unwrap(), b"hello");
        let mut q = p.clone();
        q[63] = 1;
        assert!(unpad(&q).is_err());
        let mut q = p;
        q[3] = 200;
        assert!(unpad(&q).is_err());
        assert!(unpad(&[0, 0]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(INIT_PAYLOAD_OVERHEAD, 2 * 18 + 11 + 11 + 137 + 4);
        assert_eq!(transport_frame_len(1024), Some(2048));
        assert_eq!(init_frame_len(0), Some(512));
    }
}
