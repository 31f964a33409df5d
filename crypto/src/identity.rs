//! User identities: one 32-byte secret seed from which every key of the user is derived.
//!
//! Derivation (domain separated, so the keys are independent):
//! `key(label, extra) = SHA-256("tokenim/v1/derive" || 0x00 || label || 0x00 || extra || seed)`
//! with labels `identity-ed25519`, `identity-x25519` and `mailbox-ed25519` (extra = mailbox
//! index, u32 big-endian). Keeping only the seed means one small secret file and deterministic
//! known-answer tests.
//!
//! Secret encoding ([`Identity::to_bytes`]), 37 bytes:
//! `version (0x01) || seed (32) || SHA-256("tokenim/v1/identity-secret" || 0x00 || version || seed)[..4]`
//! The checksum catches a truncated or damaged file before it silently becomes another identity.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::SigningKey;
use prost::Message as _;
use rand::TryRng as _;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::MessageId;
use crate::address::Address;
use crate::error::{CryptoError, Result};
use crate::grant::{GrantScope, WriteGrant};
use crate::pb;
use crate::receipt::{MailboxAck, Registration};
use crate::sign::{self, CTX_DH_KEY};

const SECRET_VERSION: u8 = 1;
const SECRET_LEN: usize = 1 + 32 + 4;

fn derive(seed: &[u8; 32], label: &str, extra: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/derive\0");
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(extra);
    h.update(seed);
    Zeroizing::new(h.finalize().into())
}

fn secret_checksum(version: u8, seed: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/identity-secret\0");
    h.update([version]);
    h.update(seed);
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// A user's secret identity: an Ed25519 signing key and an X25519 (Noise) static secret, both
/// derived from one seed. Wiped from memory on drop; `Debug` shows only the address.
pub struct Identity {
    seed: Zeroizing<[u8; 32]>,
    signing: SigningKey,
    dh: StaticSecret,
    public: PublicIdentity,
}

impl Identity {
    /// A new identity from operating-system randomness.
    ///
    /// # Panics
    /// If the OS random number generator fails (nothing sensible can continue then).
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(seed.as_mut())
            .expect("OS random number generator failed");
        Self::from_seed(*seed)
    }

    /// The identity derived deterministically from `seed` (known-answer tests, backups).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        let signing = SigningKey::from_bytes(&derive(&seed, "identity-ed25519", &[]));
        let dh = StaticSecret::from(*derive(&seed, "identity-x25519", &[]));
        let identity_key = signing.verifying_key().to_bytes();
        let dh_key = XPublicKey::from(&dh).to_bytes();
        let dh_sig = sign::sign(&signing, CTX_DH_KEY, &[&identity_key, &dh_key]);
        Identity {
            seed,
            signing,
            dh,
            public: PublicIdentity {
                identity_key,
                dh_key,
                dh_sig,
            },
        }
    }

    /// Versioned secret encoding (see module docs). Keep it like a private key (0600 file).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRET_LEN));
        out.push(SECRET_VERSION);
        out.extend_from_slice(self.seed.as_ref());
        out.extend_from_slice(&secret_checksum(SECRET_VERSION, &self.seed));
        out
    }

    /// Reads what [`Identity::to_bytes`] wrote.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let (&version, rest) = b.split_first().ok_or(CryptoError::InvalidSecret("empty"))?;
        if version != SECRET_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: "identity secret",
                version: version.into(),
            });
        }
        if b.len() != SECRET_LEN {
            return Err(CryptoError::InvalidSecret("wrong length"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&rest[..32]);
        if rest[32..] != secret_checksum(version, &seed) {
            return Err(CryptoError::InvalidSecret("checksum mismatch"));
        }
        Ok(Self::from_seed(*seed))
    }

    /// The shareable public half.
    pub fn public(&self) -> PublicIdentity {
        self.public.clone()
    }

    /// Borrowing form of [`Identity::public`].
    pub fn public_ref(&self) -> &PublicIdentity {
        &self.public
    }

    /// The user's address.
    pub fn address(&self) -> Address {
        Address::from_identity_key(self.public.identity_key)
    }

    /// The key of mailbox number `index` (deterministic, so a restored identity finds its
    /// mailboxes again).
    pub fn mailbox_key(&self, index: u32) -> MailboxKey {
        let secret = derive(&self.seed, "mailbox-ed25519", &index.to_be_bytes());
        MailboxKey {
            index,
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The Ed25519 identity signing key.
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.signing
    }

    /// The X25519 static secret, as Noise wants it.
    pub(crate) fn dh_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.dh.to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

/// The public half of an identity. Only trust one after [`PublicIdentity::verify`] (which
/// `from_bytes`, contact cards and sessions all do).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicIdentity {
    /// Ed25519 public key; the address encodes it.
    pub identity_key: [u8; 32],
    /// X25519 Noise static public key.
    pub dh_key: [u8; 32],
    /// Signature by `identity_key` over `dh_key` (context `tokenim/v1/dh-key`).
    pub dh_sig: [u8; 64],
}

impl PublicIdentity {
    /// Checks that the identity key is a valid, non-weak Ed25519 key, that it signed the
    /// X25519 key and that the X25519 key is not a small-order point.
    pub fn verify(&self) -> Result<()> {
        sign::verify(
            &self.identity_key,
            &self.dh_sig,
            "identity",
            CTX_DH_KEY,
            &[&self.identity_key, &self.dh_key],
        )
        .map_err(|e| match e {
            CryptoError::BadSignature(_) => CryptoError::IdentityInvalid,
            other => other,
        })?;
        // A clamped scalar is a multiple of the cofactor, so it maps every small-order point
        // (and only those) to zero: such a key would make Noise DH outputs predictable.
        if x25519_dalek::x25519([0x42; 32], self.dh_key) == [0u8; 32] {
            return Err(CryptoError::IdentityInvalid);
        }
        Ok(())
    }

    /// The address of this identity.
    pub fn address(&self) -> Address {
        Address::from_identity_key(self.identity_key)
    }

    /// Protobuf encoding (`tokenim.v1.PublicIdentity`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }

    /// Decodes and [verifies](PublicIdentity::verify).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let p = pb::PublicIdentity::decode(b)
            .map_err(|e| CryptoError::malformed("public identity", e))?;
        let id = Self::from_pb(&p)?;
        id.verify()?;
        Ok(id)
    }

    pub(crate) fn to_pb(&self) -> pb::PublicIdentity {
        pb::PublicIdentity {
            identity_key: self.identity_key.to_vec(),
            dh_key: self.dh_key.to_vec(),
            dh_sig: self.dh_sig.to_vec(),
        }
    }

    /// Lengths only; no signature check.
    pub(crate) fn from_pb(p: &pb::PublicIdentity) -> Result<Self> {
        const W: &str = "public identity";
        Ok(PublicIdentity {
            identity_key: sign::array(&p.identity_key, W, "identity_key")?,
            dh_key: sign::array(&p.dh_key, W, "dh_key")?,
            dh_sig: sign::array(&p.dh_sig, W, "dh_sig")?,
        })
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("address", &self.address())
            .field("dh_key", &hex::encode(self.dh_key))
            .finish_non_exhaustive()
    }
}

/// The Ed25519 key of one mailbox. Its public key *is* the mailbox id, so relays verify acks and
/// registrations without learning the user's identity key. Wiped on drop.
pub struct MailboxKey {
    index: u32,
    key: SigningKey,
}

impl MailboxKey {
    /// The mailbox id (the public key).
    pub fn id(&self) -> MailboxId {
        MailboxId(self.key.verifying_key().to_bytes())
    }

    /// The derivation index this key was made with.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Acknowledges a batch of messages to `relay_key` (one signature for the batch). At most
    /// [`crate::MAX_BATCH_IDS`] ids are accepted by [`MailboxAck::verify`]: chunk larger batches.
    pub fn sign_ack(
        &self,
        relay_key: &[u8; 32],
        message_ids: &[MessageId],
        now: u64,
    ) -> MailboxAck {
        MailboxAck::sign(&self.key, relay_key, message_ids, now)
    }

    /// The grant that lets the contact `contact_identity_key` store into this mailbox at
    /// relays that require one; the same grant id every time for that contact.
    pub fn contact_grant(&self, contact_identity_key: &[u8; 32], expires_at: u64) -> WriteGrant {
        let id = WriteGrant::derive_id(&self.key, contact_identity_key);
        WriteGrant::sign(&self.key, id, GrantScope::Contact, expires_at)
    }

    /// The first-contact grant a contact card carries.
    pub fn first_contact_grant(&self, expires_at: u64) -> WriteGrant {
        let id = WriteGrant::derive_id(&self.key, b"first contact");
        WriteGrant::sign(&self.key, id, GrantScope::FirstContact, expires_at)
    }

    /// Proves ownership of the mailbox to the relay `relay_key` that sent `challenge`.
    pub fn sign_registration(
        &self,
        relay_key: &[u8; 32],
        challenge: &[u8],
        now: u64,
    ) -> Registration {
        Registration::sign(&self.key, relay_key, challenge, now)
    }
}

impl fmt::Debug for MailboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxKey")
            .field("index", &self.index)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// A mailbox id: the 32-byte public key of a [`MailboxKey`]. Text form: 64 lowercase hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub struct MailboxId(pub [u8; 32]);

impl MailboxId {
    /// From a byte slice of exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        b.try_into()
            .map(MailboxId)
            .map_err(|_| CryptoError::MailboxIdMalformed)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxId({self})")
    }
}

impl FromStr for MailboxId {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| CryptoError::MailboxIdMalformed)?;
        Ok(MailboxId(out))
    }
}

impl serde::Serialize for MailboxId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MailboxId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trip_and_damage() {
        let id = Identity::from_seed([7; 32]);
        let bytes = id.to_bytes();
        let back = Identity::from_bytes(&bytes).unwrap();
        assert_eq!(back.public(), id.public());
        let mut bad = bytes.to_vec();
        bad[5] ^= 1;
        assert!(matches!(
            Identity::from_bytes(&bad),
            Err(CryptoError::InvalidSecret(_))
        ));
        bad = bytes.to_vec();
        bad[0] = 2;
        assert!(matches!(
            Identity::from_bytes(&bad),
            Err(CryptoError::UnsupportedVersion { .. })
        ));
        assert!(Identity::from_bytes(&bytes[..36]).is_err());
        assert!(Identity::from_bytes(&[]).is_err());
    }

    #[test]
    fn keys_are_independent_and_deterministic() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([1; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.mailbox_key(0).id(), a.mailbox_key(1).id());
        assert_eq!(a.mailbox_key(3).id(), b.mailbox_key(3).id());
        assert_ne!(a.mailbox_key(0).id().0, a.public().identity_key);
        assert_ne!(Identity::generate().public(), Identity::generate().public());
    }

    #[test]
    fn public_identity_verify_rejects_tampering() {
        let p = Identity::from_seed([2; 32]).public();
        p.verify().unwrap();
        let mut q = p.clone();
        q.dh_key[0] ^= 1;
        assert!(matches!(q.verify(), Err(CryptoError::IdentityInvalid)));
        let mut q = p.clone();
        q.dh_sig[10] ^= 1;
        assert!(matches!(q.verify(), Err(CryptoError::IdentityInvalid)));
        // A small-order Noise key, even when properly signed, is refused.
        let id = Identity::from_seed([2; 32]);
        let mut weak = p.clone();
        weak.dh_key = [0; 32];
        weak.dh_sig = sign::sign(
            id.signing_key(),
            CTX_DH_KEY,
            &[&weak.identity_key, &weak.dh_key],
        );
        assert!(matches!(weak.verify(), Err(CryptoError::IdentityInvalid)));
        assert_eq!(PublicIdentity::from_bytes(&p.to_bytes()).unwrap(), p);
        assert!(PublicIdentity::from_bytes(&q.to_bytes()).is_err());
    }

    #[test]
    fn mailbox_id_text() {
        let id = MailboxId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(32));
        assert_eq!(s.parse::<MailboxId>().unwrap(), id);
        assert!("ab".parse::<MailboxId>().is_err());
        assert!("zz".repeat(32).parse::<MailboxId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<MailboxId>(&json).unwrap(), id);
    }

    #[test]
    fn debug_is_redacted() {
        let id = Identity::from_seed([9; 32]);
        let dbg = format!("{id:?} {:?}", id.mailbox_key(0));
        assert!(!dbg.contains(&hex::encode(*id.seed)));
        assert!(!dbg.contains(&hex::encode(id.signing.to_bytes())));
        assert!(dbg.contains("tim1"));
    }
}
