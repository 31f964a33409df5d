//! Invite links: an admin's signed permission to join, usable without an admin online. Text
//! form: `tokenim-group:` + base64url (no padding) of a `SignedGroupInvite`.
//!
//! The invite carries the log's heads when it was made, so a joiner signs its join without
//! holding the log; any member who has those heads can check and spread it. Whether the join
//! counts (inviter still an admin, not expired, uses left) is decided by the log.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use super::change::{Change, ChangeKind, GroupId, MAX_PARENTS};
use crate::card::MAX_CARD_URI_BYTES;
use crate::error::{CryptoError, Result};
use crate::identity::Identity;
use crate::pb;
use crate::sign::{self, CTX_GROUP_INVITE};

/// URI scheme prefix of an invite.
pub const INVITE_URI_PREFIX: &str = "tokenim-group:";
/// Longest invite URI accepted or produced.
pub const MAX_INVITE_URI_BYTES: usize = 8_192;
/// Longest encoded invite (`SignedGroupInvite`), so that the URI fits.
pub const MAX_INVITE_BYTES: usize = 6_000;
/// Highest use limit of an invite.
pub const MAX_INVITE_USES: u32 = 10_000;
/// Format version of `SignedGroupInvite`.
pub const INVITE_VERSION: u32 = 1;

const W: &str = "group invite";

/// A verified invite link.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    group: GroupId,
    inviter: [u8; 32],
    invite_id: [u8; 16],
    expires_at: u64,
    max_uses: u32,
    heads: Vec<[u8; 32]>,
    issued_at: u64,
    contact: String,
    body: Vec<u8>,
    signature: [u8; 64],
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("group", &self.group)
            .field("inviter", &hex::encode(&self.inviter[..4]))
            .field("invite_id", &hex::encode(self.invite_id))
            .field("expires_at", &self.expires_at)
            .field("max_uses", &self.max_uses)
            .finish_non_exhaustive()
    }
}

/// What an invite says, before it is signed.
pub(crate) struct InviteFields<'a> {
    pub group: GroupId,
    pub invite_id: [u8; 16],
    pub expires_at: u64,
    pub max_uses: u32,
    pub heads: &'a [[u8; 32]],
    pub issued_at: u64,
    pub contact: &'a str,
}

impl Invite {
    /// Signs an invite with `me` as the inviter (the log checks that `me` is an admin).
    pub(crate) fn sign(me: &Identity, f: InviteFields<'_>) -> Result<Invite> {
        let body = pb::GroupInvite {
            group: f.group.0.to_vec(),
            inviter: me.public_ref().identity_key.to_vec(),
            invite_id: f.invite_id.to_vec(),
            expires_at: f.expires_at,
            max_uses: f.max_uses,
            heads: f.heads.iter().map(|h| h.to_vec()).collect(),
            issued_at: f.issued_at,
            contact: f.contact.to_owned(),
        }
        .encode_to_vec();
        let signature = sign::sign(
            me.signing_key(),
            CTX_GROUP_INVITE,
            &[&INVITE_VERSION.to_be_bytes(), &body],
        );
        let invite = Self::parse(body, signature)?;
        let len = invite.to_bytes().len();
        if len > MAX_INVITE_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{len} bytes, max {MAX_INVITE_BYTES}"),
            ));
        }
        Ok(invite)
    }

    /// Reads a `SignedGroupInvite` and checks its structure and signature (not its expiry).
    pub fn from_bytes(b: &[u8]) -> Result<Invite> {
        if b.len() > MAX_INVITE_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{} bytes, max {MAX_INVITE_BYTES}", b.len()),
            ));
        }
        let signed = pb::SignedGroupInvite::decode(b).map_err(|e| CryptoError::malformed(W, e))?;
        if signed.version != INVITE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: signed.version,
            });
        }
        let signature: [u8; 64] = sign::array(&signed.signature, W, "signature")?;
        let invite = Self::parse(signed.invite, signature)?;
        sign::verify(
            &invite.inviter,
            &invite.signature,
            W,
            CTX_GROUP_INVITE,
            &[&INVITE_VERSION.to_be_bytes(), &invite.body],
        )?;
        Ok(invite)
    }

    /// The `SignedGroupInvite` encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::SignedGroupInvite {
            version: INVITE_VERSION,
            invite: self.body.clone(),
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// The `tokenim-group:` link.
    pub fn to_uri(&self) -> String {
        format!(
            "{INVITE_URI_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(self.to_bytes())
        )
    }

    /// Parses a link (surrounding whitespace ignored, prefix in any case), checks the
    /// signature, and refuses it once `now_secs` is past its expiry.
    pub fn from_uri(uri: &str, now_secs: u64) -> Result<Invite> {
        let uri = uri.trim();
        if uri.len() > MAX_INVITE_URI_BYTES {
            return Err(CryptoError::malformed(W, "link too long"));
        }
        let data = uri
            .get(..INVITE_URI_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(INVITE_URI_PREFIX))
            .map(|_| &uri[INVITE_URI_PREFIX.len()..])
            .ok_or_else(|| CryptoError::malformed(W, "missing tokenim-group: prefix"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|e| CryptoError::malformed(W, e))?;
        let invite = Self::from_bytes(&raw)?;
        invite.check_expiry(now_secs)?;
        Ok(invite)
    }

    fn check_expiry(&self, now: u64) -> Result<()> {
        if now > self.expires_at {
            return Err(CryptoError::InviteExpired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// The joiner's change: a join naming the invite's heads as parents, so the joiner needs
    /// nothing but the invite. Send it to a member (e.g. [`Invite::contact`]); the members'
    /// logs decide whether it counts.
    pub fn join(&self, me: &Identity, now: u64) -> Result<Change> {
        let created_at = now.max(self.issued_at);
        self.check_expiry(created_at)?;
        Change::sign(
            me,
            Some(self.group),
            self.heads.clone(),
            ChangeKind::Join {
                invite: self.to_bytes(),
            },
            created_at,
        )
    }

    /// The group it lets one join.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Identity key of the admin who signed it.
    pub fn inviter(&self) -> [u8; 32] {
        self.inviter
    }

    /// Joins are counted per invite id.
    pub fn invite_id(&self) -> [u8; 16] {
        self.invite_id
    }

    /// Unix seconds; joins created later do not count.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// How many joins through it count.
    pub fn max_uses(&self) -> u32 {
        self.max_uses
    }

    /// The log's heads when it was made.
    pub fn heads(&self) -> &[[u8; 32]] {
        &self.heads
    }

    /// The largest `created_at` among those heads.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// A member's contact card URI to send the join to (unverified here), or empty.
    pub fn contact(&self) -> &str {
        &self.contact
    }

    fn parse(body: Vec<u8>, signature: [u8; 64]) -> Result<Invite> {
        let p =
            pb::GroupInvite::decode(body.as_slice()).map_err(|e| CryptoError::malformed(W, e))?;
        if p.heads.is_empty() || p.heads.len() > MAX_PARENTS {
            return Err(CryptoError::malformed(
                W,
                format!("needs 1..={MAX_PARENTS} heads"),
            ));
        }
        let mut heads = p
            .heads
            .iter()
            .map(|h| sign::array::<32>(h, W, "head"))
            .collect::<Result<Vec<_>>>()?;
        heads.sort_unstable();
        heads.dedup();
        if !(1..=MAX_INVITE_USES).contains(&p.max_uses) {
            return Err(CryptoError::malformed(
                W,
                format!("use limit must be 1..={MAX_INVITE_USES}"),
            ));
        }
        if p.contact.len() > MAX_CARD_URI_BYTES {
            return Err(CryptoError::malformed(W, "contact too long"));
        }
        Ok(Invite {
            group: GroupId(sign::array(&p.group, W, "group")?),
            inviter: sign::array(&p.inviter, W, "inviter")?,
            invite_id: sign::array(&p.invite_id, W, "invite_id")?,
            expires_at: p.expires_at,
            max_uses: p.max_uses,
            heads,
            issued_at: p.issued_at,
            contact: p.contact,
            body,
            signature,
        })
    }
}
