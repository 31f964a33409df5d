//! Write grants: a mailbox owner's signed permission to store into its mailbox (see
//! `WriteGrant` in `proto/tokenim/v1/receipt.proto`). A relay that requires grants stores an
//! envelope only with a valid grant of its mailbox, so a stranger without one cannot fill it.
//! Each contact gets its own grant (its id derived from the mailbox key and the contact, so the
//! owner keeps nothing); the contact card carries one first-contact grant that relays
//! rate-limit. Relays verify grants with the mailbox id alone: it is the signing key.

use ed25519_dalek::SigningKey;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::error::{CryptoError, Result};
use crate::identity::MailboxId;
use crate::pb;
use crate::sign::{self, CTX_WRITE_GRANT};

/// Most bytes of an encoded grant (it is about 130).
pub const MAX_GRANT_BYTES: usize = 256;

/// Whom a grant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantScope {
    /// Anyone holding the owner's contact card: a relay rate-limits these per mailbox.
    FirstContact,
    /// One contact of the owner.
    Contact,
}

impl GrantScope {
    fn code(self) -> u32 {
        match self {
            GrantScope::FirstContact => 1,
            GrantScope::Contact => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(GrantScope::FirstContact),
            2 => Some(GrantScope::Contact),
            _ => None,
        }
    }
}

/// A signed permission to store into `mailbox`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteGrant {
    /// The mailbox (also the key that signed).
    pub mailbox: MailboxId,
    /// Which grant: relays count stores per grant.
    pub grant_id: [u8; 16],
    pub scope: GrantScope,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
    /// Signature by the mailbox key.
    pub signature: [u8; 64],
}

impl WriteGrant {
    const W: &'static str = "write grant";

    fn signing_parts(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + 16 + 4 + 8);
        v.extend_from_slice(&self.mailbox.0);
        v.extend_from_slice(&self.grant_id);
        v.extend_from_slice(&self.scope.code().to_be_bytes());
        v.extend_from_slice(&self.expires_at.to_be_bytes());
        v
    }

    pub(crate) fn sign(
        key: &SigningKey,
        grant_id: [u8; 16],
        scope: GrantScope,
        expires_at: u64,
    ) -> Self {
        let mut g = WriteGrant {
            mailbox: MailboxId(key.verifying_key().to_bytes()),
            grant_id,
            scope,
            expires_at,
            signature: [0; 64],
        };
        g.signature = sign::sign(key, CTX_WRITE_GRANT, &[&g.signing_parts()]);
        g
    }

    /// The grant id of a mailbox key for `who` (a contact's identity key, or a fixed label):
    /// stable, so the owner can hand the same grant out again without storing it, and unlinkable
    /// to `who` without the key.
    pub(crate) fn derive_id(key: &SigningKey, who: &[u8]) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(CTX_WRITE_GRANT.as_bytes())
            .chain_update([0])
            .chain_update(key.to_bytes())
            .chain_update(who)
            .finalize();
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }

    /// Checks the mailbox key's signature and the expiry.
    pub fn verify(&self, now_secs: u64) -> Result<()> {
        if now_secs > self.expires_at {
            return Err(CryptoError::malformed(Self::W, "expired"));
        }
        sign::verify(
            &self.mailbox.0,
            &self.signature,
            Self::W,
            CTX_WRITE_GRANT,
            &[&self.signing_parts()],
        )
    }

    /// Protobuf encoding (`tokenim.v1.WriteGrant`).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::WriteGrant {
            mailbox: self.mailbox.0.to_vec(),
            grant_id: self.grant_id.to_vec(),
            scope: self.scope.code(),
            expires_at: self.expires_at,
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes (lengths only; call [`WriteGrant::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() > MAX_GRANT_BYTES {
            return Err(CryptoError::malformed(Self::W, "too long"));
        }
        let p = pb::WriteGrant::decode(b).map_err(|e| CryptoError::malformed(Self::W, e))?;
        Ok(WriteGrant {
            mailbox: MailboxId(sign::array(&p.mailbox, Self::W, "mailbox")?),
            grant_id: sign::array(&p.grant_id, Self::W, "grant_id")?,
            scope: GrantScope::from_code(p.scope)
                .ok_or_else(|| CryptoError::malformed(Self::W, "unknown scope"))?,
            expires_at: p.expires_at,
            signature: sign::array(&p.signature, Self::W, "signature")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Identity;

    #[test]
    fn grants_verify_round_trip_and_refuse_forgery_and_expiry() {
        let me = Identity::from_seed([1; 32]);
        let mailbox = me.mailbox_key(0);
        let g = mailbox.contact_grant(&[7; 32], 1_000);
        assert_eq!(g.scope, GrantScope::Contact);
        assert_eq!(g.mailbox, mailbox.id());
        g.verify(1_000).unwrap();
        assert_eq!(WriteGrant::from_bytes(&g.to_bytes()).unwrap(), g);
        assert!(g.to_bytes().len() <= MAX_GRANT_BYTES);
        assert!(g.verify(1_001).is_err(), "expired");
        // Stable per contact, distinct between contacts and from the first-contact grant.
        assert_eq!(mailbox.contact_grant(&[7; 32], 5).grant_id, g.grant_id);
        assert_ne!(mailbox.contact_grant(&[8; 32], 5).grant_id, g.grant_id);
        assert_ne!(mailbox.first_contact_grant(5).grant_id, g.grant_id);
        // Another mailbox's key cannot sign for this one; no field can be changed.
        let other = Identity::from_seed([2; 32]).mailbox_key(0);
        let mut forged = other.contact_grant(&[7; 32], 1_000);
        forged.mailbox = mailbox.id();
        assert!(forged.verify(0).is_err());
        for tamper in [
            |g: &mut WriteGrant| g.expires_at += 1,
            |g: &mut WriteGrant| g.grant_id[0] ^= 1,
            |g: &mut WriteGrant| g.scope = GrantScope::FirstContact,
        ] {
            let mut t = g.clone();
            tamper(&mut t);
            assert!(t.verify(0).is_err());
        }
        assert!(WriteGrant::from_bytes(&[0xff; 300]).is_err());
    }
}
