//! Signed statements between users and relays: custody receipts (relay → sender), mailbox
//! acknowledgements and registrations (mailbox key → relay). Each has its own signing context
//! (see `proto/tokenim/v1/receipt.proto` for the exact signing inputs).

use ed25519_dalek::SigningKey;
use prost::Message as _;

use crate::envelope::MessageId;
use crate::error::{CryptoError, Result};
use crate::identity::MailboxId;
use crate::pb;
use crate::sign::{self, CTX_CUSTODY_RECEIPT, CTX_MAILBOX_ACK, CTX_REGISTRATION};

/// Most message ids one [`MailboxAck`] or [`CustodyReceipt`] may carry.
pub const MAX_BATCH_IDS: usize = 1024;
/// Shortest relay challenge accepted.
pub const MIN_CHALLENGE_BYTES: usize = 16;
/// Longest relay challenge accepted.
pub const MAX_CHALLENGE_BYTES: usize = 64;

pub(crate) fn check_window(timestamp: u64, now: u64, window_secs: u64) -> Result<()> {
    if timestamp.abs_diff(now) > window_secs {
        return Err(CryptoError::OutsideTimeWindow {
            timestamp,
            now,
            window_secs,
        });
    }
    Ok(())
}

fn decode<M: prost::Message + Default>(b: &[u8], what: &'static str) -> Result<M> {
    M::decode(b).map_err(|e| CryptoError::malformed(what, e))
}

/// A relay's signed promise that it stored a batch of envelopes for one mailbox until
/// `expires_at` (one signature for the batch, as with [`MailboxAck`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodyReceipt {
    /// The stored envelopes, 1..=[`MAX_BATCH_IDS`].
    pub message_ids: Vec<MessageId>,
    /// Mailbox they were stored in.
    pub mailbox: MailboxId,
    /// Relay's Ed25519 public key.
    pub relay_key: [u8; 32],
    /// Unix seconds.
    pub stored_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Signature by `relay_key`.
    pub signature: [u8; 64],
}

impl CustodyReceipt {
    const W: &'static str = "custody receipt";

    fn signing_parts(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + 32 + 8 + 8 + 4 + 32 * self.message_ids.len());
        v.extend_from_slice(&self.mailbox.0);
        v.extend_from_slice(&self.relay_key);
        v.extend_from_slice(&self.stored_at.to_be_bytes());
        v.extend_from_slice(&self.expires_at.to_be_bytes());
        v.extend_from_slice(&(self.message_ids.len() as u32).to_be_bytes());
        for id in &self.message_ids {
            v.extend_from_slice(id);
        }
        v
    }

    /// Signs as `relay`. `message_ids` must hold 1..=[`MAX_BATCH_IDS`] ids.
    pub fn sign(
        relay: &SigningKey,
        message_ids: &[MessageId],
        mailbox: MailboxId,
        stored_at: u64,
        expires_at: u64,
    ) -> Self {
        let mut r = CustodyReceipt {
            message_ids: message_ids.to_vec(),
            mailbox,
            relay_key: relay.verifying_key().to_bytes(),
            stored_at,
            expires_at,
            signature: [0; 64],
        };
        r.signature = sign::sign(relay, CTX_CUSTODY_RECEIPT, &[&r.signing_parts()]);
        r
    }

    /// Checks that the receipt is from `expected_relay_key`, covers every one of `expected`
    /// in `expected_mailbox`, and is validly signed.
    pub fn verify(
        &self,
        expected_relay_key: &[u8; 32],
        expected_mailbox: &MailboxId,
        expected: &[MessageId],
    ) -> Result<()> {
        if &self.relay_key != expected_relay_key {
            return Err(CryptoError::WrongRelay);
        }
        if &self.mailbox != expected_mailbox {
            return Err(CryptoError::WrongMailbox);
        }
        if self.message_ids.is_empty() || self.message_ids.len() > MAX_BATCH_IDS {
            return Err(CryptoError::malformed(Self::W, "bad number of message ids"));
        }
        if !expected.iter().all(|id| self.message_ids.contains(id)) {
            return Err(CryptoError::WrongMessage);
        }
        if self.stored_at > self.expires_at {
            return Err(CryptoError::malformed(Self::W, "stored after it expires"));
        }
        sign::verify(
            &self.relay_key,
            &self.signature,
            Self::W,
            CTX_CUSTODY_RECEIPT,
            &[&self.signing_parts()],
        )
    }

    /// Protobuf encoding (`tokenim.v1.CustodyReceipt`).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::CustodyReceipt {
            message_ids: self.message_ids.iter().map(|m| m.to_vec()).collect(),
            mailbox: self.mailbox.0.to_vec(),
            relay_key: self.relay_key.to_vec(),
            stored_at: self.stored_at,
            expires_at: self.expires_at,
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes (lengths and count only; call [`CustodyReceipt::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let p: pb::CustodyReceipt = decode(b, Self::W)?;
        if p.message_ids.len() > MAX_BATCH_IDS {
            return Err(CryptoError::malformed(Self::W, "too many message ids"));
        }
        Ok(CustodyReceipt {
            message_ids: p
                .message_ids
                .iter()
                .map(|m| sign::array(m, Self::W, "message_id"))
                .collect::<Result<_>>()?,
            mailbox: MailboxId(sign::array(&p.mailbox, Self::W, "mailbox")?),
            relay_key: sign::array(&p.relay_key, Self::W, "relay_key")?,
            stored_at: p.stored_at,
            expires_at: p.expires_at,
            signature: sign::array(&p.signature, Self::W, "signature")?,
        })
    }
}

/// The mailbox owner's acknowledgement of a batch of messages (one signature for the batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxAck {
    /// Mailbox (also the signing key).
    pub mailbox: MailboxId,
    /// Acknowledged envelopes.
    pub message_ids: Vec<MessageId>,
    /// The relay this ack is for.
    pub relay_key: [u8; 32],
    /// Unix seconds when signed.
    pub timestamp: u64,
    /// Signature by the mailbox key.
    pub signature: [u8; 64],
}

impl MailboxAck {
    const W: &'static str = "mailbox ack";

    fn signing_parts(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + 32 + 8 + 4 + 32 * self.message_ids.len());
        v.extend_from_slice(&self.mailbox.0);
        v.extend_from_slice(&self.relay_key);
        v.extend_from_slice(&self.timestamp.to_be_bytes());
        v.extend_from_slice(&(self.message_ids.len() as u32).to_be_bytes());
        for id in &self.message_ids {
            v.extend_from_slice(id);
        }
        v
    }

    pub(crate) fn sign(
        key: &SigningKey,
        relay_key: &[u8; 32],
        ids: &[MessageId],
        now: u64,
    ) -> Self {
        let mut a = MailboxAck {
            mailbox: MailboxId(key.verifying_key().to_bytes()),
            message_ids: ids.to_vec(),
            relay_key: *relay_key,
            timestamp: now,
            signature: [0; 64],
        };
        a.signature = sign::sign(key, CTX_MAILBOX_ACK, &[&a.signing_parts()]);
        a
    }

    /// Checks mailbox, relay, batch size, time window (`|timestamp - now| <= window_secs`) and
    /// the mailbox key's signature.
    pub fn verify(
        &self,
        expected_mailbox: &MailboxId,
        expected_relay_key: &[u8; 32],
        now_secs: u64,
        window_secs: u64,
    ) -> Result<()> {
        if &self.mailbox != expected_mailbox {
            return Err(CryptoError::WrongMailbox);
        }
        if &self.relay_key != expected_relay_key {
            return Err(CryptoError::WrongRelay);
        }
        if self.message_ids.is_empty() || self.message_ids.len() > MAX_BATCH_IDS {
            return Err(CryptoError::malformed(Self::W, "bad number of message ids"));
        }
        check_window(self.timestamp, now_secs, window_secs)?;
        sign::verify(
            &self.mailbox.0,
            &self.signature,
            Self::W,
            CTX_MAILBOX_ACK,
            &[&self.signing_parts()],
        )
    }

    /// Protobuf encoding (`tokenim.v1.MailboxAck`).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::MailboxAck {
            mailbox: self.mailbox.0.to_vec(),
            message_ids: self.message_ids.iter().map(|m| m.to_vec()).collect(),
            relay_key: self.relay_key.to_vec(),
            timestamp: self.timestamp,
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes (lengths and count only; call [`MailboxAck::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let p: pb::MailboxAck = decode(b, Self::W)?;
        if p.message_ids.len() > MAX_BATCH_IDS {
            return Err(CryptoError::malformed(Self::W, "too many message ids"));
        }
        Ok(MailboxAck {
            mailbox: MailboxId(sign::array(&p.mailbox, Self::W, "mailbox")?),
            message_ids: p
                .message_ids
                .iter()
                .map(|m| sign::array(m, Self::W, "message_id"))
                .collect::<Result<_>>()?,
            relay_key: sign::array(&p.relay_key, Self::W, "relay_key")?,
            timestamp: p.timestamp,
            signature: sign::array(&p.signature, Self::W, "signature")?,
        })
    }
}

/// Proof of mailbox ownership answering a relay's challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Mailbox (also the signing key).
    pub mailbox: MailboxId,
    /// The relay that issued the challenge.
    pub relay_key: [u8; 32],
    /// The relay's random challenge.
    pub challenge: Vec<u8>,
    /// Unix seconds when signed.
    pub timestamp: u64,
    /// Signature by the mailbox key.
    pub signature: [u8; 64],
}

impl Registration {
    const W: &'static str = "mailbox registration";

    fn signing_parts(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + 32 + 8 + 4 + self.challenge.len());
        v.extend_from_slice(&self.mailbox.0);
        v.extend_from_slice(&self.relay_key);
        v.extend_from_slice(&self.timestamp.to_be_bytes());
        v.extend_from_slice(&(self.challenge.len() as u32).to_be_bytes());
        v.extend_from_slice(&self.challenge);
        v
    }

    pub(crate) fn sign(key: &SigningKey, relay_key: &[u8; 32], challenge: &[u8], now: u64) -> Self {
        let mut r = Registration {
            mailbox: MailboxId(key.verifying_key().to_bytes()),
            relay_key: *relay_key,
            challenge: challenge.to_vec(),
            timestamp: now,
            signature: [0; 64],
        };
        r.signature = sign::sign(key, CTX_REGISTRATION, &[&r.signing_parts()]);
        r
    }

    /// Checks relay, challenge, time window and the mailbox key's signature. On success the
    /// caller knows that the holder of `self.mailbox`'s key answered this challenge.
    pub fn verify(
        &self,
        expected_relay_key: &[u8; 32],
        expected_challenge: &[u8],
        now_secs: u64,
        window_secs: u64,
    ) -> Result<()> {
        if &self.relay_key != expected_relay_key {
            return Err(CryptoError::WrongRelay);
        }
        if !(MIN_CHALLENGE_BYTES..=MAX_CHALLENGE_BYTES).contains(&self.challenge.len()) {
            return Err(CryptoError::malformed(Self::W, "bad challenge length"));
        }
        if self.challenge != expected_challenge {
            return Err(CryptoError::WrongChallenge);
        }
        check_window(self.timestamp, now_secs, window_secs)?;
        sign::verify(
            &self.mailbox.0,
            &self.signature,
            Self::W,
            CTX_REGISTRATION,
            &[&self.signing_parts()],
        )
    }

    /// Protobuf encoding (`tokenim.v1.MailboxRegistration`).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::MailboxRegistration {
            mailbox: self.mailbox.0.to_vec(),
            relay_key: self.relay_key.to_vec(),
            challenge: self.challenge.clone(),
            timestamp: self.timestamp,
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Decodes (lengths only; call [`Registration::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let p: pb::MailboxRegistration = decode(b, Self::W)?;
        if p.challenge.len() > MAX_CHALLENGE_BYTES {
            return Err(CryptoError::malformed(Self::W, "challenge too long"));
        }
        Ok(Registration {
            mailbox: MailboxId(sign::array(&p.mailbox, Self::W, "mailbox")?),
            relay_key: sign::array(&p.relay_key, Self::W, "relay_key")?,
            challenge: p.challenge,
            timestamp: p.timestamp,
            signature: sign::array(&p.signature, Self::W, "signature")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Identity;

    fn relay(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn custody_receipt() {
        let r = relay(1);
        let rk = r.verifying_key().to_bytes();
        let mb = MailboxId([3; 32]);
        let rc = CustodyReceipt::sign(&r, &[[2; 32], [5; 32]], mb, 100, 200);
        rc.verify(&rk, &mb, &[[2; 32]]).unwrap();
        rc.verify(&rk, &mb, &[[5; 32], [2; 32]]).unwrap();
        assert_eq!(CustodyReceipt::from_bytes(&rc.to_bytes()).unwrap(), rc);
        assert!(matches!(
            rc.verify(&[9; 32], &mb, &[[2; 32]]),
            Err(CryptoError::WrongRelay)
        ));
        assert!(matches!(
            rc.verify(&rk, &mb, &[[2; 32], [4; 32]]),
            Err(CryptoError::WrongMessage)
        ));
        assert!(matches!(
            rc.verify(&rk, &MailboxId([4; 32]), &[[2; 32]]),
            Err(CryptoError::WrongMailbox)
        ));
        let mut f = rc.clone();
        f.expires_at = 300;
        assert!(matches!(
            f.verify(&rk, &mb, &[[2; 32]]),
            Err(CryptoError::BadSignature(_))
        ));
        // A forgery by another relay claiming to be `rk`.
        let mut f = CustodyReceipt::sign(&relay(7), &[[2; 32]], mb, 100, 200);
        f.relay_key = rk;
        assert!(matches!(
            f.verify(&rk, &mb, &[[2; 32]]),
            Err(CryptoError::BadSignature(_))
        ));
    }

    #[test]
    fn mailbox_ack() {
        let id = Identity::from_seed([5; 32]);
        let mk = id.mailbox_key(0);
        let rk = relay(1).verifying_key().to_bytes();
        let ack = mk.sign_ack(&rk, &[[1; 32], [2; 32]], 1000);
        ack.verify(&mk.id(), &rk, 1010, 60).unwrap();
        assert_eq!(MailboxAck::from_bytes(&ack.to_bytes()).unwrap(), ack);
        assert!(matches!(
            ack.verify(&id.mailbox_key(1).id(), &rk, 1000, 60),
            Err(CryptoError::WrongMailbox)
        ));
        assert!(matches!(
            ack.verify(&mk.id(), &[0; 32], 1000, 60),
            Err(CryptoError::WrongRelay)
        ));
        assert!(matches!(
            ack.verify(&mk.id(), &rk, 1061, 60),
            Err(CryptoError::OutsideTimeWindow { .. })
        ));
        assert!(matches!(
            ack.verify(&mk.id(), &rk, 939, 60),
            Err(CryptoError::OutsideTimeWindow { .. })
        ));
        let mut f = ack.clone();
        f.message_ids.push([3; 32]);
        assert!(matches!(
            f.verify(&mk.id(), &rk, 1000, 60),
            Err(CryptoError::BadSignature(_))
        ));
        // Signed by another mailbox key, relabelled.
        let mut f = id.mailbox_key(1).sign_ack(&rk, &[[1; 32]], 1000);
        f.mailbox = mk.id();
        assert!(matches!(
            f.verify(&mk.id(), &rk, 1000, 60),
            Err(CryptoError::BadSignature(_))
        ));
        let empty = mk.sign_ack(&rk, &[], 1000);
        assert!(matches!(
            empty.verify(&mk.id(), &rk, 1000, 60),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn registration() {
        let id = Identity::from_seed([5; 32]);
        let mk = id.mailbox_key(0);
        let rk = relay(1).verifying_key().to_bytes();
        let reg = mk.sign_registration(&rk, &[7; 32], 1000);
        reg.verify(&rk, &[7; 32], 1000, 30).unwrap();
        assert_eq!(Registration::from_bytes(&reg.to_bytes()).unwrap(), reg);
        assert!(matches!(
            reg.verify(&[0; 32], &[7; 32], 1000, 30),
            Err(CryptoError::WrongRelay)
        ));
        assert!(matches!(
            reg.verify(&rk, &[8; 32], 1000, 30),
            Err(CryptoError::WrongChallenge)
        ));
        assert!(matches!(
            reg.verify(&rk, &[7; 32], 2000, 30),
            Err(CryptoError::OutsideTimeWindow { .. })
        ));
        let mut f = reg.clone();
        f.timestamp += 1;
        assert!(matches!(
            f.verify(&rk, &[7; 32], 1000, 30),
            Err(CryptoError::BadSignature(_))
        ));
    }

    #[test]
    fn contexts_are_separated() {
        // The same fields signed under one context never verify under another.
        let k = relay(3);
        let pk = k.verifying_key().to_bytes();
        let ctxs = [
            crate::sign::CTX_DH_KEY,
            crate::sign::CTX_CONTACT_CARD,
            CTX_CUSTODY_RECEIPT,
            CTX_MAILBOX_ACK,
            CTX_REGISTRATION,
            crate::sign::CTX_RELAYED_ENVELOPE,
        ];
        for a in ctxs {
            let sig = sign::sign(&k, a, &[b"same fields"]);
            for b in ctxs {
                let ok = sign::verify(&pk, &sig, "t", b, &[b"same fields"]).is_ok();
                assert_eq!(ok, a == b, "{a} vs {b}");
            }
        }
    }
}
