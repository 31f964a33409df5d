//! Domain-separated Ed25519 signing: every signed type has its own context string (which names
//! the protocol version), so a signature made for one purpose can never be replayed as another.
//!
//! Signing input = context || 0x00 || fields; contexts contain no 0x00, so the split is
//! unambiguous, and every field list is fixed-length or length-prefixed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{CryptoError, Result};

pub(crate) const CTX_DH_KEY: &str = "tokenim/v1/dh-key";
pub(crate) const CTX_CONTACT_CARD: &str = "tokenim/v1/contact-card";
pub(crate) const CTX_CUSTODY_RECEIPT: &str = "tokenim/v1/custody-receipt";
pub(crate) const CTX_MAILBOX_ACK: &str = "tokenim/v1/mailbox-ack";
pub(crate) const CTX_REGISTRATION: &str = "tokenim/v1/mailbox-registration";
pub(crate) const CTX_RELAYED_ENVELOPE: &str = "tokenim/v1/relayed-envelope";
pub(crate) const CTX_WRITE_GRANT: &str = "tokenim/v1/write-grant";
pub(crate) const CTX_GROUP_FRAME: &str = "tokenim/v1/group-frame";
pub(crate) const CTX_GROUP_CHANGE: &str = "tokenim/v1/group-change";
pub(crate) const CTX_GROUP_INVITE: &str = "tokenim/v1/group-invite";
pub(crate) const CTX_DEVICE_LIST: &str = "tokenim/v1/device-list";

/// Builds `context || 0x00 || parts...`.
pub(crate) fn signing_input(context: &str, parts: &[&[u8]]) -> Vec<u8> {
    let len = context.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

pub(crate) fn sign(key: &SigningKey, context: &str, parts: &[&[u8]]) -> [u8; 64] {
    key.sign(&signing_input(context, parts)).to_bytes()
}

/// Parses an Ed25519 public key, refusing small-order ("weak") keys for which signatures would
/// not bind the signer.
pub(crate) fn verifying_key(bytes: &[u8; 32], what: &'static str) -> Result<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidPublicKey(what))?;
    if key.is_weak() {
        return Err(CryptoError::InvalidPublicKey(what));
    }
    Ok(key)
}

/// Strict verification (canonical encodings only, no weak keys).
pub(crate) fn verify(
    key: &[u8; 32],
    signature: &[u8; 64],
    what: &'static str,
    context: &str,
    parts: &[&[u8]],
) -> Result<()> {
    let key = verifying_key(key, what)?;
    let sig = Signature::from_bytes(signature);
    key.verify_strict(&signing_input(context, parts), &sig)
        .map_err(|_| CryptoError::BadSignature(what))
}

/// Copies a slice into an array, with a `Malformed` error naming the field.
pub(crate) fn array<const N: usize>(
    bytes: &[u8],
    what: &'static str,
    field: &'static str,
) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| {
        CryptoError::malformed(
            what,
            format!("{field} is {} bytes, expected {N}", bytes.len()),
        )
    })
}
