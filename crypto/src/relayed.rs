//! What relays sign for each other: an envelope one relay of a mesh took custody of, as it
//! publishes it on the mailbox's gossipsub shard topic (see `RelayedEnvelope` in
//! `proto/tokenim/v1/receipt.proto`). Any libp2p peer can publish on a topic; only a relay's
//! key can sign a copy, so the mesh's other relays store only what one of them vouched for.

use ed25519_dalek::SigningKey;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::envelope::MAX_ENVELOPE_BYTES;
use crate::error::{CryptoError, Result};
use crate::pb;
use crate::receipt::check_window;
use crate::sign::{self, CTX_RELAYED_ENVELOPE};

/// An envelope signed by the relay that stored it, for the other relays of its mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedEnvelope {
    /// The serialised envelope, exactly as stored (check it with `Envelope::decode_checked`).
    pub envelope: Vec<u8>,
    /// The signing relay's Ed25519 public key (the key behind its PeerId).
    pub relay_key: [u8; 32],
    /// Unix seconds when the relay stored and signed it.
    pub stored_at: u64,
    /// Signature by `relay_key`.
    pub signature: [u8; 64],
}

impl RelayedEnvelope {
    const W: &'static str = "relayed envelope";

    /// `relay_key || stored_at || SHA-256(envelope)`: fixed length, and it covers every byte
    /// of the envelope (its TTL and time too, which its id does not).
    fn signing_parts(relay_key: &[u8; 32], stored_at: u64, envelope: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + 8 + 32);
        v.extend_from_slice(relay_key);
        v.extend_from_slice(&stored_at.to_be_bytes());
        v.extend_from_slice(&Sha256::digest(envelope));
        v
    }

    /// Signs `envelope` (serialised) as `relay`, stored at `stored_at`.
    pub fn sign(relay: &SigningKey, envelope: Vec<u8>, stored_at: u64) -> Self {
        let relay_key = relay.verifying_key().to_bytes();
        let parts = Self::signing_parts(&relay_key, stored_at, &envelope);
        RelayedEnvelope {
            signature: sign::sign(relay, CTX_RELAYED_ENVELOPE, &[&parts]),
            envelope,
            relay_key,
            stored_at,
        }
    }

    /// Checks the time window (`|stored_at - now| <= window_secs`) and `relay_key`'s
    /// signature. Whether `relay_key` is a relay to trust, and whether the envelope checks,
    /// is the caller's to decide.
    pub fn verify(&self, now_secs: u64, window_secs: u64) -> Result<()> {
        check_window(self.stored_at, now_secs, window_secs)?;
        let parts = Self::signing_parts(&self.relay_key, self.stored_at, &self.envelope);
        sign::verify(
            &self.relay_key,
            &self.signature,
            Self::W,
            CTX_RELAYED_ENVELOPE,
            &[&parts],
        )
    }

    /// Protobuf encoding (`tokenim.v1.RelayedEnvelope`).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::RelayedEnvelope {
            envelope: self.envelope.clone(),
            relay_key: self.relay_key.to_vec(),
            stored_at: self.stored_at,
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes (lengths only; call [`RelayedEnvelope::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() > MAX_ENVELOPE_BYTES + 256 {
            return Err(CryptoError::malformed(Self::W, "too large"));
        }
        let p = pb::RelayedEnvelope::decode(b).map_err(|e| CryptoError::malformed(Self::W, e))?;
        Ok(RelayedEnvelope {
            envelope: p.envelope,
            relay_key: sign::array(&p.relay_key, Self::W, "relay_key")?,
            stored_at: p.stored_at,
            signature: sign::array(&p.signature, Self::W, "signature")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relayed_envelope() {
        let relay = SigningKey::from_bytes(&[1; 32]);
        let copy = RelayedEnvelope::sign(&relay, vec![5; 600], 1000);
        copy.verify(1000, 60).unwrap();
        copy.verify(1060, 60).unwrap();
        assert_eq!(RelayedEnvelope::from_bytes(&copy.to_bytes()).unwrap(), copy);
        assert!(matches!(
            copy.verify(1061, 60),
            Err(CryptoError::OutsideTimeWindow { .. })
        ));
        assert!(matches!(
            copy.verify(939, 60),
            Err(CryptoError::OutsideTimeWindow { .. })
        ));
        // Any byte of the envelope, the time or the key changed: the signature fails.
        let mut f = copy.clone();
        f.envelope[599] ^= 1;
        assert!(matches!(
            f.verify(1000, 60),
            Err(CryptoError::BadSignature(_))
        ));
        let mut f = copy.clone();
        f.stored_at += 1;
        assert!(matches!(
            f.verify(1000, 60),
            Err(CryptoError::BadSignature(_))
        ));
        // Signed by one relay, relabelled as another.
        let mut f = RelayedEnvelope::sign(&SigningKey::from_bytes(&[2; 32]), vec![5; 600], 1000);
        f.relay_key = copy.relay_key;
        assert!(matches!(
            f.verify(1000, 60),
            Err(CryptoError::BadSignature(_))
        ));
        assert!(RelayedEnvelope::from_bytes(&[0xff; 3]).is_err());
        let short = pb::RelayedEnvelope {
            relay_key: vec![1; 31],
            ..Default::default()
        };
        assert!(RelayedEnvelope::from_bytes(&short.encode_to_vec()).is_err());
    }
}
