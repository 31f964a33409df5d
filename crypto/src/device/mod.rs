//! One account on several devices (sans-IO: the node moves the bytes).
//!
//! An **account** is a user [`Identity`](crate::Identity); its identity key is the address. The
//! first device uses the account identity itself. Every further device generates its own full
//! identity (own Ed25519 key, own Noise static key signed by it, own mailbox keys), and the
//! account certifies it in a signed, versioned [`DeviceList`] that the account's contact card
//! carries. Sessions stay keyed by the peer's identity key: a secondary device is reached, and
//! authenticated, by its own device identity key.
//!
//! **The account secret is never copied.** Only the first device can sign a new list, so a
//! revoked device (which never held the account secret) cannot sign a list that puts itself
//! back or removes the others; revoking means signing a list without it, with a higher version.
//!
//! # Device lists
//!
//! A `SignedDeviceList` (`proto/tokenim/v1/device.proto`) carries the account key, a version
//! (1 for the [genesis](DeviceList::genesis), + 1 per change), the time it was signed and
//! 1..=[`MAX_DEVICES`] entries (public identity, name, time added), the account's own entry
//! first; signed by the account key with context `tokenim/v1/device-list`. Readers
//! ([`DeviceList::from_bytes`]) accept only the canonical encoding (one list, one encoding),
//! at most [`MAX_DEVICE_LIST_BYTES`], with a valid signature, every entry's Noise-key signature
//! valid, no identity key twice and names of at most [`MAX_DEVICE_NAME_BYTES`] without control
//! characters.
//!
//! **Versions** ([`DeviceList::supersedes`]): a holder takes a list of a higher version than
//! the one it holds, ignores the same list again, and refuses a lower version (rollback: a
//! revoked device would be back) and a different list with the same version (equivocation:
//! only the account can sign, so that is proof of a misbehaving or compromised account key).
//!
//! # Linking
//!
//! 1. The existing device makes a [`LinkOffer`] and shows it as a `tokenim-link:` URI (or QR
//!    code): the account's public identity, 32 random secret bytes, an expiry (minutes), and
//!    the libp2p peer id and addresses at which its node can be dialled. The issuer remembers
//!    the offer until it expires, and its [id](LinkOffer::id) (a hash of the secret) to refuse
//!    a second use.
//! 2. The new device generates its own identity, dials the issuer and sends a [`LinkRequest`]:
//!    its public identity, a name, the offer id, and an HMAC-SHA256 proof keyed with the
//!    secret, so only whoever read the URI can ask.
//! 3. The issuer [verifies](LinkRequest::verify) it, signs a new list with the device
//!    ([`DeviceList::with_device`]) and answers a [`LinkAccept`]: the signed list and the
//!    account's new contact card.

mod link;
mod list;

pub use link::{
    LINK_OFFER_VERSION, LINK_URI_PREFIX, LinkAccept, LinkOffer, LinkRequest, MAX_LINK_ACCEPT_BYTES,
    MAX_LINK_REQUEST_BYTES, MAX_LINK_URI_BYTES,
};
pub use list::{DeviceEntry, DeviceList};

/// Most devices of one account, the account's own included.
pub const MAX_DEVICES: usize = 10;
/// Longest device name, in bytes of UTF-8. Short enough that a card carrying a full list of
/// devices still fits [`crate::MAX_CARD_URI_BYTES`] with room for its routing lists.
pub const MAX_DEVICE_NAME_BYTES: usize = 32;
/// Longest encoded `SignedDeviceList` accepted (a full list is at most about 2,000 bytes).
pub const MAX_DEVICE_LIST_BYTES: usize = 4_096;
/// Format version of `SignedDeviceList`.
pub const DEVICE_LIST_FORMAT: u32 = 1;

/// Checks a device name: at most [`MAX_DEVICE_NAME_BYTES`], no control characters.
fn check_name(what: &'static str, name: &str) -> crate::Result<()> {
    if name.len() > MAX_DEVICE_NAME_BYTES {
        return Err(crate::CryptoError::malformed(
            what,
            format!(
                "device name of {} bytes, max {MAX_DEVICE_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::CryptoError::malformed(
            what,
            "control character in device name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
