//! Linking a new device: a one-time offer URI, the new device's request, the issuer's answer
//! (see the module docs of [`crate::device`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;
use rand::TryRng as _;
use ring::hmac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use super::{DeviceList, MAX_DEVICE_LIST_BYTES, check_name};
use crate::card::{
    CARD_URI_PREFIX, ContactCard, MAX_CARD_LIST, MAX_CARD_URI_BYTES, MAX_MULTIADDR_BYTES,
    MAX_PEER_ID_BYTES,
};
use crate::error::{CryptoError, Result};
use crate::identity::{Identity, PublicIdentity};
use crate::pb;
use crate::sign;

/// URI scheme prefix of a link offer.
pub const LINK_URI_PREFIX: &str = "tokenim-link:";
/// Longest link offer URI accepted or produced (so that it fits a QR code).
pub const MAX_LINK_URI_BYTES: usize = 2_048;
/// Longest encoded [`LinkRequest`] accepted (one is about 280 bytes).
pub const MAX_LINK_REQUEST_BYTES: usize = 1_024;
/// Longest encoded [`LinkAccept`] accepted: a full device list and a card.
pub const MAX_LINK_ACCEPT_BYTES: usize = MAX_DEVICE_LIST_BYTES + MAX_CARD_URI_BYTES + 16;
/// Format version of `LinkOffer`.
pub const LINK_OFFER_VERSION: u32 = 1;

const CTX_LINK_OFFER_ID: &str = "tokenim/v1/link-offer-id";
const CTX_LINK_REQUEST: &str = "tokenim/v1/link-request";

const W_OFFER: &str = "link offer";
const W_REQUEST: &str = "link request";
const W_ACCEPT: &str = "link accept";

/// A one-time offer to join an account, shown by one of its devices as a `tokenim-link:` URI.
/// It holds a secret (wiped on drop, never in `Debug`): whoever reads the URI may ask to join
/// until it expires or is used.
#[derive(Clone)]
pub struct LinkOffer {
    account: PublicIdentity,
    secret: Zeroizing<[u8; 32]>,
    expires_at: u64,
    peer_id: Vec<u8>,
    addrs: Vec<String>,
}

impl fmt::Debug for LinkOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkOffer")
            .field("account", &self.account.address())
            .field("id", &hex::encode(&self.id()[..4]))
            .field("expires_at", &self.expires_at)
            .field("addrs", &self.addrs.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for LinkOffer {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.secret.ct_eq(&*other.secret))
            && self.account == other.account
            && self.expires_at == other.expires_at
            && self.peer_id == other.peer_id
            && self.addrs == other.addrs
    }
}

impl Eq for LinkOffer {}

impl LinkOffer {
    /// A new offer with a fresh random secret, valid for `ttl_secs` from `now`. `peer_id`
    /// (libp2p, binary) and `addrs` (multiaddrs) say where the issuing node can be dialled.
    pub fn new(
        account: PublicIdentity,
        peer_id: Vec<u8>,
        addrs: Vec<String>,
        ttl_secs: u64,
        now: u64,
    ) -> Result<LinkOffer> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(secret.as_mut())
            .map_err(|_| CryptoError::Rng)?;
        Self::with_secret(
            account,
            *secret,
            peer_id,
            addrs,
            now.saturating_add(ttl_secs),
        )
    }

    /// An offer with a given secret (known-answer tests); use [`LinkOffer::new`] otherwise.
    pub fn with_secret(
        account: PublicIdentity,
        secret: [u8; 32],
        peer_id: Vec<u8>,
        addrs: Vec<String>,
        expires_at: u64,
    ) -> Result<LinkOffer> {
        let offer = LinkOffer {
            account,
            secret: Zeroizing::new(secret),
            expires_at,
            peer_id,
            addrs,
        };
        offer.check()?;
        let len = offer.to_uri().len();
        if len > MAX_LINK_URI_BYTES {
            return Err(CryptoError::malformed(
                W_OFFER,
                format!("link of {len} bytes, max {MAX_LINK_URI_BYTES}"),
            ));
        }
        Ok(offer)
    }

    /// The `tokenim-link:` URI. It carries the secret: show it only to the user who links.
    pub fn to_uri(&self) -> Zeroizing<String> {
        let mut p = pb::LinkOffer {
            version: LINK_OFFER_VERSION,
            account: Some(self.account.to_pb()),
            secret: self.secret.to_vec(),
            expires_at: self.expires_at,
            peer_id: self.peer_id.clone(),
            addrs: self.addrs.clone(),
        };
        let raw = Zeroizing::new(p.encode_to_vec());
        p.secret.zeroize();
        let len = base64::encoded_len(raw.len(), false).unwrap_or(0);
        let mut uri = Zeroizing::new(String::with_capacity(LINK_URI_PREFIX.len() + len));
        uri.push_str(LINK_URI_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&*raw, &mut uri);
        uri
    }

    /// Parses a link (surrounding whitespace ignored, prefix in any case), checks its account
    /// identity and limits, and refuses it once `now` is past its expiry
    /// ([`CryptoError::LinkExpired`]).
    pub fn from_uri(uri: &str, now: u64) -> Result<LinkOffer> {
        let uri = uri.trim();
        if uri.len() > MAX_LINK_URI_BYTES {
            return Err(CryptoError::malformed(W_OFFER, "link too long"));
        }
        let data = uri
            .get(..LINK_URI_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(LINK_URI_PREFIX))
            .map(|_| &uri[LINK_URI_PREFIX.len()..])
            .ok_or_else(|| CryptoError::malformed(W_OFFER, "missing tokenim-link: prefix"))?;
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(data)
                .map_err(|e| CryptoError::malformed(W_OFFER, e))?,
        );
        let mut p = pb::LinkOffer::decode(raw.as_slice())
            .map_err(|e| CryptoError::malformed(W_OFFER, e))?;
        let secret = sign::array::<32>(&p.secret, W_OFFER, "secret").map(Zeroizing::new);
        p.secret.zeroize();
        let secret = secret?;
        if p.version != LINK_OFFER_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: W_OFFER,
                version: p.version,
            });
        }
        let account = p
            .account
            .as_ref()
            .ok_or_else(|| CryptoError::malformed(W_OFFER, "missing account"))?;
        let offer = LinkOffer {
            account: PublicIdentity::from_pb(account)?,
            secret,
            expires_at: p.expires_at,
            peer_id: p.peer_id,
            addrs: p.addrs,
        };
        offer.check()?;
        offer.check_expiry(now)?;
        Ok(offer)
    }

    /// The offer's id: SHA-256(`tokenim/v1/link-offer-id` || 0x00 || secret). Requests name
    /// it; the issuer remembers it to refuse a second use.
    pub fn id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(sign::signing_input(CTX_LINK_OFFER_ID, &[]));
        h.update(self.secret.as_ref());
        h.finalize().into()
    }

    /// The account to join.
    pub fn account(&self) -> &PublicIdentity {
        &self.account
    }

    /// The secret (what the proof of a request is keyed with).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Unix seconds after which the offer is refused.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// libp2p PeerId (binary) of the issuing node.
    pub fn peer_id(&self) -> &[u8] {
        &self.peer_id
    }

    /// Multiaddrs of the issuing node.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// [`CryptoError::LinkExpired`] once `now` is past the expiry.
    pub fn check_expiry(&self, now: u64) -> Result<()> {
        if now > self.expires_at {
            return Err(CryptoError::LinkExpired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        self.account.verify()?;
        if self.peer_id.is_empty() || self.peer_id.len() > MAX_PEER_ID_BYTES {
            return Err(CryptoError::malformed(W_OFFER, "bad peer id"));
        }
        if self.addrs.len() > MAX_CARD_LIST
            || self.addrs.iter().any(|a| a.len() > MAX_MULTIADDR_BYTES)
        {
            return Err(CryptoError::malformed(W_OFFER, "bad address list"));
        }
        Ok(())
    }
}

/// The new device's request to join, proving it read the offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    /// The new device's public identity.
    pub device: PublicIdentity,
    /// Its name; at most [`super::MAX_DEVICE_NAME_BYTES`], no control characters.
    pub name: String,
    /// The offer's [id](LinkOffer::id).
    pub offer_id: [u8; 32],
    /// HMAC-SHA256 keyed with the offer's secret (see `device.proto`).
    pub proof: [u8; 32],
}

impl LinkRequest {
    /// `device`'s request to join through `offer`, named `name`.
    pub fn new(offer: &LinkOffer, device: &Identity, name: &str) -> Result<LinkRequest> {
        check_name(W_REQUEST, name)?;
        let offer_id = offer.id();
        let device = device.public();
        let proof = proof(offer.secret(), &offer_id, &device, name);
        Ok(LinkRequest {
            device,
            name: name.to_owned(),
            offer_id,
            proof,
        })
    }

    /// Checks the request against the issuer's `offer`: it names that offer
    /// ([`CryptoError::WrongLinkOffer`]), the offer has not expired
    /// ([`CryptoError::LinkExpired`]), the device identity is valid and the proof verifies
    /// ([`CryptoError::BadLinkProof`], compared in constant time). Whether the offer was used
    /// already is for the issuer to remember (by [`LinkOffer::id`]).
    pub fn verify(&self, offer: &LinkOffer, now: u64) -> Result<()> {
        if self.offer_id != offer.id() {
            return Err(CryptoError::WrongLinkOffer);
        }
        offer.check_expiry(now)?;
        self.verify_secret(offer.secret())
    }

    /// [`LinkRequest::verify`] for an issuer that kept only the offer's secret: the same
    /// checks but the expiry, which is then the caller's.
    pub fn verify_secret(&self, secret: &[u8; 32]) -> Result<()> {
        let offer_id = {
            let mut h = Sha256::new();
            h.update(sign::signing_input(CTX_LINK_OFFER_ID, &[]));
            h.update(secret);
            <[u8; 32]>::from(h.finalize())
        };
        if !bool::from(self.offer_id.ct_eq(&offer_id)) {
            return Err(CryptoError::WrongLinkOffer);
        }
        check_name(W_REQUEST, &self.name)?;
        self.device.verify()?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::verify(
            &key,
            &proof_input(&self.offer_id, &self.device, &self.name),
            &self.proof,
        )
        .map_err(|_| CryptoError::BadLinkProof)
    }

    /// The `LinkRequest` encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::LinkRequest {
            device: Some(self.device.to_pb()),
            name: self.name.clone(),
            offer_id: self.offer_id.to_vec(),
            proof: self.proof.to_vec(),
        }
        .encode_to_vec()
    }

    /// Reads a `LinkRequest`: size, structure, name limits (not the proof: see
    /// [`LinkRequest::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<LinkRequest> {
        if b.len() > MAX_LINK_REQUEST_BYTES {
            return Err(CryptoError::malformed(
                W_REQUEST,
                format!("{} bytes, max {MAX_LINK_REQUEST_BYTES}", b.len()),
            ));
        }
        let p = pb::LinkRequest::decode(b).map_err(|e| CryptoError::malformed(W_REQUEST, e))?;
        let device = p
            .device
            .as_ref()
            .ok_or_else(|| CryptoError::malformed(W_REQUEST, "missing device"))?;
        check_name(W_REQUEST, &p.name)?;
        Ok(LinkRequest {
            device: PublicIdentity::from_pb(device)?,
            offer_id: sign::array(&p.offer_id, W_REQUEST, "offer_id")?,
            proof: sign::array(&p.proof, W_REQUEST, "proof")?,
            name: p.name,
        })
    }
}

fn proof_input(offer_id: &[u8; 32], device: &PublicIdentity, name: &str) -> Vec<u8> {
    let name_len = u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes();
    sign::signing_input(
        CTX_LINK_REQUEST,
        &[
            offer_id,
            &device.identity_key,
            &device.dh_key,
            &device.dh_sig,
            &name_len,
            name.as_bytes(),
        ],
    )
}

fn proof(secret: &[u8; 32], offer_id: &[u8; 32], device: &PublicIdentity, name: &str) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &proof_input(offer_id, device, name));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The issuer's answer to a request it took: the account's device list with the new device,
/// and the account's contact card carrying that list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkAccept {
    /// The new, signed device list.
    pub device_list: DeviceList,
    /// The account's contact card URI.
    pub account_card: String,
}

impl LinkAccept {
    /// The `LinkAccept` encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::LinkAccept {
            device_list: self.device_list.to_bytes(),
            account_card: self.account_card.clone(),
        }
        .encode_to_vec()
    }

    /// Reads a `LinkAccept`: size, and the device list ([`DeviceList::from_bytes`]: signature
    /// and all). The card is only checked for its size and prefix: see [`LinkAccept::check`].
    pub fn from_bytes(b: &[u8]) -> Result<LinkAccept> {
        if b.len() > MAX_LINK_ACCEPT_BYTES {
            return Err(CryptoError::malformed(
                W_ACCEPT,
                format!("{} bytes, max {MAX_LINK_ACCEPT_BYTES}", b.len()),
            ));
        }
        let p = pb::LinkAccept::decode(b).map_err(|e| CryptoError::malformed(W_ACCEPT, e))?;
        if p.account_card.len() > MAX_CARD_URI_BYTES
            || !p
                .account_card
                .get(..CARD_URI_PREFIX.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(CARD_URI_PREFIX))
        {
            return Err(CryptoError::malformed(W_ACCEPT, "bad account card"));
        }
        Ok(LinkAccept {
            device_list: DeviceList::from_bytes(&p.device_list)?,
            account_card: p.account_card,
        })
    }

    /// What the new device checks before it takes the answer to its request through `offer`:
    /// the list is the offer's account's ([`CryptoError::WrongAccount`]) and lists `device`
    /// with exactly that public identity ([`CryptoError::DeviceNotListed`]); the card is valid
    /// at `now`, is the account's, and carries that list. Returns the card.
    pub fn check(
        &self,
        offer: &LinkOffer,
        device: &PublicIdentity,
        now: u64,
    ) -> Result<ContactCard> {
        if self.device_list.account() != offer.account().identity_key {
            return Err(CryptoError::WrongAccount);
        }
        match self.device_list.device(&device.identity_key) {
            Some(e) if e.device == *device => {}
            _ => return Err(CryptoError::DeviceNotListed),
        }
        let card = ContactCard::from_uri(&self.account_card, now)?;
        if card.identity != *offer.account() {
            return Err(CryptoError::WrongAccount);
        }
        if card.device_list != self.device_list.to_bytes() {
            return Err(CryptoError::malformed(
                W_ACCEPT,
                "the card does not carry the list",
            ));
        }
        Ok(card)
    }
}
