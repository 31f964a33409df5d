//! Contact cards: what a user shares so that others can write to them, signed by the identity
//! key and expiring. Text form: `tokenim:` + base64url (no padding) of a `SignedContactCard`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use crate::address::Address;
use crate::device::{DeviceList, MAX_DEVICE_LIST_BYTES};
use crate::error::{CryptoError, Result};
use crate::identity::{Identity, MailboxId, PublicIdentity};
use crate::pb;
use crate::sign::{self, CTX_CONTACT_CARD};

/// URI scheme prefix of a card.
pub const CARD_URI_PREFIX: &str = "tokenim:";
/// Longest card URI accepted or produced.
pub const MAX_CARD_URI_BYTES: usize = 4096;
/// Card format version.
pub const CARD_VERSION: u32 = 1;
/// Longest display name, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 128;
/// Most mailboxes, home relays, and addresses (per list) on a card.
pub const MAX_CARD_LIST: usize = 8;
/// Longest multiaddr string.
pub const MAX_MULTIADDR_BYTES: usize = 256;
/// Longest libp2p PeerId (binary).
pub const MAX_PEER_ID_BYTES: usize = 64;

const W: &str = "contact card";

/// A relay that keeps mailboxes for a card's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayInfo {
    /// libp2p PeerId bytes.
    pub peer_id: Vec<u8>,
    /// Multiaddr strings.
    pub addrs: Vec<String>,
}

/// A verified (or to-be-signed) contact card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactCard {
    /// The owner.
    pub identity: PublicIdentity,
    /// Name chosen by the owner; not verified by anyone.
    pub display_name: String,
    /// Mailboxes to deliver to when the owner is offline.
    pub mailboxes: Vec<MailboxId>,
    /// Relays that hold those mailboxes.
    pub home_relays: Vec<RelayInfo>,
    /// libp2p PeerId bytes of the owner's node, for direct delivery.
    pub node_peer_id: Option<Vec<u8>>,
    /// Multiaddr strings of the owner's node.
    pub direct_addrs: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the card is refused after this.
    pub expires_at: u64,
    /// An encoded first-contact [`crate::WriteGrant`] for the first mailbox; empty if none.
    pub intro_grant: Vec<u8>,
    /// The owner's signed [`DeviceList`] ([`DeviceList::to_bytes`]), whose account is
    /// `identity`; empty when the owner uses one device.
    pub device_list: Vec<u8>,
}

impl ContactCard {
    /// A card for `identity` with empty routing lists, valid for `valid_secs` from `now`.
    pub fn new(
        identity: &Identity,
        display_name: impl Into<String>,
        now: u64,
        valid_secs: u64,
    ) -> Self {
        ContactCard {
            identity: identity.public(),
            display_name: display_name.into(),
            mailboxes: Vec::new(),
            home_relays: Vec::new(),
            node_peer_id: None,
            direct_addrs: Vec::new(),
            created_at: now,
            expires_at: now.saturating_add(valid_secs),
            intro_grant: Vec::new(),
            device_list: Vec::new(),
        }
    }

    /// The owner's address.
    pub fn address(&self) -> Address {
        self.identity.address()
    }

    /// The owner's device list, if the card carries one (checked by [`ContactCard::from_uri`]
    /// and [`ContactCard::to_uri`] already; this decodes it again).
    pub fn devices(&self) -> Result<Option<DeviceList>> {
        if self.device_list.is_empty() {
            return Ok(None);
        }
        let list = DeviceList::from_bytes(&self.device_list)?;
        match list.devices().first() {
            Some(own) if own.device == self.identity => Ok(Some(list)),
            _ => Err(CryptoError::WrongAccount),
        }
    }

    /// Signs the card and encodes it as a `tokenim:` URI. `signer` must be the card's identity,
    /// and the device list, if any, the signer's.
    pub fn to_uri(&self, signer: &Identity) -> Result<String> {
        if signer.public_ref() != &self.identity {
            return Err(CryptoError::SignerMismatch);
        }
        self.check_limits()?;
        self.devices()?;
        let body = self.to_pb().encode_to_vec();
        let signature = sign::sign(
            signer.signing_key(),
            CTX_CONTACT_CARD,
            &[&CARD_VERSION.to_be_bytes(), &body],
        );
        let signed = pb::SignedContactCard {
            version: CARD_VERSION,
            card: body,
            signature: signature.to_vec(),
        };
        let uri = format!(
            "{CARD_URI_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(signed.encode_to_vec())
        );
        if uri.len() > MAX_CARD_URI_BYTES {
            return Err(CryptoError::CardTooLarge {
                len: uri.len(),
                max: MAX_CARD_URI_BYTES,
            });
        }
        Ok(uri)
    }

    /// Parses and fully verifies a card URI: format, version, limits, the identity's Noise-key
    /// signature, the card signature, expiry, and the device list if there is one (its
    /// signature and entries, and that its account is the card's identity), in that order.
    pub fn from_uri(uri: &str, now_secs: u64) -> Result<ContactCard> {
        let uri = uri.trim();
        if uri.len() > MAX_CARD_URI_BYTES {
            return Err(CryptoError::CardTooLarge {
                len: uri.len(),
                max: MAX_CARD_URI_BYTES,
            });
        }
        let data = uri
            .get(..CARD_URI_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(CARD_URI_PREFIX))
            .map(|_| &uri[CARD_URI_PREFIX.len()..])
            .ok_or_else(|| CryptoError::malformed(W, "missing tokenim: prefix"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|e| CryptoError::malformed(W, e))?;
        let signed = pb::SignedContactCard::decode(raw.as_slice())
            .map_err(|e| CryptoError::malformed(W, e))?;
        if signed.version != CARD_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: signed.version,
            });
        }
        let body = pb::ContactCard::decode(signed.card.as_slice())
            .map_err(|e| CryptoError::malformed(W, e))?;
        let card = ContactCard::from_pb(body)?;
        card.check_limits()?;
        card.identity.verify()?;
        let signature: [u8; 64] = sign::array(&signed.signature, W, "signature")?;
        sign::verify(
            &card.identity.identity_key,
            &signature,
            W,
            CTX_CONTACT_CARD,
            &[&signed.version.to_be_bytes(), &signed.card],
        )?;
        if now_secs > card.expires_at {
            return Err(CryptoError::CardExpired {
                expires_at: card.expires_at,
                now: now_secs,
            });
        }
        card.devices()?;
        Ok(card)
    }

    fn check_limits(&self) -> Result<()> {
        let bad = |reason: &str| Err(CryptoError::malformed(W, reason));
        if self.display_name.len() > MAX_DISPLAY_NAME_BYTES {
            return bad("display name too long");
        }
        if self.display_name.chars().any(char::is_control) {
            return bad("control character in display name");
        }
        if self.mailboxes.len() > MAX_CARD_LIST
            || self.home_relays.len() > MAX_CARD_LIST
            || self.direct_addrs.len() > MAX_CARD_LIST
        {
            return bad("too many entries");
        }
        let addrs_ok = |addrs: &[String]| {
            addrs.len() <= MAX_CARD_LIST && addrs.iter().all(|a| a.len() <= MAX_MULTIADDR_BYTES)
        };
        if !addrs_ok(&self.direct_addrs) {
            return bad("bad direct address");
        }
        for r in &self.home_relays {
            if r.peer_id.is_empty() || r.peer_id.len() > MAX_PEER_ID_BYTES || !addrs_ok(&r.addrs) {
                return bad("bad relay entry");
            }
        }
        if let Some(p) = &self.node_peer_id
            && (p.is_empty() || p.len() > MAX_PEER_ID_BYTES)
        {
            return bad("bad node peer id");
        }
        if self.created_at > self.expires_at {
            return bad("created after it expires");
        }
        if self.intro_grant.len() > crate::MAX_GRANT_BYTES {
            return bad("intro grant too long");
        }
        if self.device_list.len() > MAX_DEVICE_LIST_BYTES {
            return bad("device list too long");
        }
        Ok(())
    }

    pub(crate) fn to_pb(&self) -> pb::ContactCard {
        pb::ContactCard {
            identity: Some(self.identity.to_pb()),
            display_name: self.display_name.clone(),
            mailboxes: self.mailboxes.iter().map(|m| m.0.to_vec()).collect(),
            home_relays: self
                .home_relays
                .iter()
                .map(|r| pb::RelayInfo {
                    peer_id: r.peer_id.clone(),
                    addrs: r.addrs.clone(),
                })
                .collect(),
            node_peer_id: self.node_peer_id.clone(),
            direct_addrs: self.direct_addrs.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            intro_grant: self.intro_grant.clone(),
            device_list: self.device_list.clone(),
        }
    }

    fn from_pb(p: pb::ContactCard) -> Result<Self> {
        let identity = p
            .identity
            .as_ref()
            .ok_or_else(|| CryptoError::malformed(W, "missing identity"))?;
        if p.mailboxes.len() > MAX_CARD_LIST {
            return Err(CryptoError::malformed(W, "too many entries"));
        }
        let mailboxes = p
            .mailboxes
            .iter()
            .map(|m| {
                MailboxId::from_slice(m).map_err(|_| CryptoError::malformed(W, "bad mailbox id"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ContactCard {
            identity: PublicIdentity::from_pb(identity)?,
            display_name: p.display_name,
            mailboxes,
            home_relays: p
                .home_relays
                .into_iter()
                .map(|r| RelayInfo {
                    peer_id: r.peer_id,
                    addrs: r.addrs,
                })
                .collect(),
            node_peer_id: p.node_peer_id,
            direct_addrs: p.direct_addrs,
            created_at: p.created_at,
            expires_at: p.expires_at,
            intro_grant: p.intro_grant,
            device_list: p.device_list,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn card(id: &Identity) -> ContactCard {
        let mut c = ContactCard::new(id, "Alice", 1_000, 86_400);
        c.mailboxes = vec![id.mailbox_key(0).id()];
        c.home_relays = vec![RelayInfo {
            peer_id: vec![1; 38],
            addrs: vec!["/ip4/1.2.3.4/tcp/4001".into()],
        }];
        c.node_peer_id = Some(vec![2; 38]);
        c.direct_addrs = vec!["/ip4/10.0.0.1/udp/4001/quic-v1".into()];
        c
    }

    #[test]
    fn round_trip() {
        let id = Identity::from_seed([1; 32]);
        let c = card(&id);
        let uri = c.to_uri(&id).unwrap();
        assert!(uri.starts_with("tokenim:"));
        assert_eq!(ContactCard::from_uri(&uri, 2_000).unwrap(), c);
        assert_eq!(
            ContactCard::from_uri(&format!(" {uri}\n"), 2_000).unwrap(),
            c
        );
        assert_eq!(c.address(), id.address());
    }

    #[test]
    fn distinct_errors() {
        let id = Identity::from_seed([1; 32]);
        let other = Identity::from_seed([2; 32]);
        let c = card(&id);
        assert!(matches!(c.to_uri(&other), Err(CryptoError::SignerMismatch)));
        let uri = c.to_uri(&id).unwrap();
        assert!(matches!(
            ContactCard::from_uri(&uri, 1_000 + 86_401),
            Err(CryptoError::CardExpired { .. })
        ));
        assert!(matches!(
            ContactCard::from_uri("tokenim:!!!", 0),
            Err(CryptoError::Malformed { .. })
        ));
        assert!(matches!(
            ContactCard::from_uri("mailto:x", 0),
            Err(CryptoError::Malformed { .. })
        ));
        // Tamper with the signed body: flip a bit in the display name.
        let raw = URL_SAFE_NO_PAD.decode(&uri[8..]).unwrap();
        let mut signed = pb::SignedContactCard::decode(raw.as_slice()).unwrap();
        let pos = signed.card.windows(5).position(|w| w == b"Alice").unwrap();
        signed.card[pos] = b'E';
        let tampered = format!("tokenim:{}", URL_SAFE_NO_PAD.encode(signed.encode_to_vec()));
        assert!(matches!(
            ContactCard::from_uri(&tampered, 2_000),
            Err(CryptoError::BadSignature(_))
        ));
        // Unsupported version.
        let mut v2 = pb::SignedContactCard::decode(raw.as_slice()).unwrap();
        v2.version = 2;
        let v2 = format!("tokenim:{}", URL_SAFE_NO_PAD.encode(v2.encode_to_vec()));
        assert!(matches!(
            ContactCard::from_uri(&v2, 2_000),
            Err(CryptoError::UnsupportedVersion { version: 2, .. })
        ));
        // Identity whose Noise key signature is invalid (card re-signed by its identity key).
        let mut bad = c.clone();
        bad.identity.dh_sig[0] ^= 1;
        let body = bad.to_pb().encode_to_vec();
        let sig = sign::sign(
            id.signing_key(),
            CTX_CONTACT_CARD,
            &[&1u32.to_be_bytes(), &body],
        );
        let s = pb::SignedContactCard {
            version: 1,
            card: body,
            signature: sig.to_vec(),
        };
        let bad_uri = format!("tokenim:{}", URL_SAFE_NO_PAD.encode(s.encode_to_vec()));
        assert!(matches!(
            ContactCard::from_uri(&bad_uri, 2_000),
            Err(CryptoError::IdentityInvalid)
        ));
    }

    #[test]
    fn limits_enforced() {
        let id = Identity::from_seed([1; 32]);
        let mut c = card(&id);
        c.display_name = "x".repeat(MAX_DISPLAY_NAME_BYTES + 1);
        assert!(matches!(c.to_uri(&id), Err(CryptoError::Malformed { .. })));
        let mut c = card(&id);
        c.display_name = "a\u{1b}[31m".into();
        assert!(c.to_uri(&id).is_err());
        let mut c = card(&id);
        c.direct_addrs = vec!["a".repeat(200); 8];
        c.home_relays = vec![
            RelayInfo {
                peer_id: vec![1; 38],
                addrs: vec!["b".repeat(250); 8]
            };
            8
        ];
        assert!(matches!(
            c.to_uri(&id),
            Err(CryptoError::CardTooLarge { .. })
        ));
        let mut c = card(&id);
        c.expires_at = c.created_at - 1;
        assert!(c.to_uri(&id).is_err());
    }
}
