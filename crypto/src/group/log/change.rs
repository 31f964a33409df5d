//! Group ids, roles, and the signed change: its encoding, structural limits and the author's
//! signature. Whether the author may make a change is decided by the log (`rules.rs`).

use std::fmt;
use std::str::FromStr;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::invite::Invite;
use crate::error::{CryptoError, Result};
use crate::identity::Identity;
use crate::pb;
use crate::sign::{self, CTX_GROUP_CHANGE};

/// Longest encoded change (`SignedGroupChange`) accepted or made.
pub const MAX_CHANGE_BYTES: usize = 65_536;
/// Longest group name, in bytes of UTF-8.
pub const MAX_GROUP_NAME_BYTES: usize = 128;
/// Most parents a change names (a log with more heads is merged over several changes).
pub const MAX_PARENTS: usize = 16;
/// Member limit of a group created with [`super::GroupLog::create`].
pub const DEFAULT_MAX_MEMBERS: u32 = 1_000;
/// Highest member limit a group can be created with.
pub const MAX_MEMBERS_LIMIT: u32 = 10_000;
/// Most initial members (besides the creator) in the genesis; more are added afterwards.
pub const MAX_INITIAL_MEMBERS: usize = 1_000;
/// Format version of `SignedGroupChange`.
pub const CHANGE_VERSION: u32 = 1;

const W: &str = "group change";

/// A group id: SHA-256 of the group's signed genesis change ([`Change::id`] of the create).
/// Text form: 64 lowercase hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub struct GroupId(pub [u8; 32]);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}

impl FromStr for GroupId {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| CryptoError::malformed("group id", "expected 64 hex digits"))?;
        Ok(GroupId(out))
    }
}

impl serde::Serialize for GroupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GroupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A member's role; `Member < Admin < Owner`.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes; can only leave.
    Member,
    /// Adds and removes members, renames, makes invites.
    Admin,
    /// One per group: also adds and removes admins and sets roles.
    Owner,
}

impl Role {
    /// Lowercase name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub(crate) fn code(self) -> i32 {
        match self {
            Role::Member => pb::GroupRole::Member as i32,
            Role::Admin => pb::GroupRole::Admin as i32,
            Role::Owner => pb::GroupRole::Owner as i32,
        }
    }

    pub(crate) fn from_code(code: i32) -> Result<Self> {
        match pb::GroupRole::try_from(code) {
            Ok(pb::GroupRole::Member) => Ok(Role::Member),
            Ok(pb::GroupRole::Admin) => Ok(Role::Admin),
            Ok(pb::GroupRole::Owner) => Ok(Role::Owner),
            _ => Err(CryptoError::malformed(W, "unknown role")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(CryptoError::malformed(
                "role",
                "expected member, admin or owner",
            )),
        }
    }
}

/// What a change does.
#[derive(Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The genesis: makes the group; its author is the owner, `members` the others.
    Create {
        /// Group name.
        name: String,
        /// Initial members besides the author (roles member or admin).
        members: Vec<([u8; 32], Role)>,
        /// The group's member limit (creator included), fixed for its life.
        max_members: u32,
        /// Random bytes that make the group id unique.
        nonce: [u8; 16],
    },
    /// Adds `member` (role member: an admin; role admin: the owner).
    Add {
        /// Identity key.
        member: [u8; 32],
        /// Member or admin.
        role: Role,
    },
    /// Removes a member of lower rank than the author.
    Remove {
        /// Identity key.
        member: [u8; 32],
    },
    /// Owner only; role owner hands ownership over.
    SetRole {
        /// Identity key.
        member: [u8; 32],
        /// The new role.
        role: Role,
    },
    /// Admins and the owner.
    Rename {
        /// The new name.
        name: String,
    },
    /// The author leaves.
    Leave,
    /// The author joins through an invite (an encoded [`Invite`]).
    Join {
        /// [`Invite::to_bytes`].
        invite: Vec<u8>,
    },
}

impl fmt::Debug for ChangeKind {
    // Names are user content: only their length is printed; keys as short hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |k: &[u8; 32]| hex::encode(&k[..4]);
        match self {
            ChangeKind::Create {
                name,
                members,
                max_members,
                ..
            } => write!(
                f,
                "Create {{ name_len: {}, members: {}, max_members: {max_members} }}",
                name.len(),
                members.len()
            ),
            ChangeKind::Add { member, role } => write!(f, "Add({}, {role})", short(member)),
            ChangeKind::Remove { member } => write!(f, "Remove({})", short(member)),
            ChangeKind::SetRole { member, role } => {
                write!(f, "SetRole({}, {role})", short(member))
            }
            ChangeKind::Rename { name } => write!(f, "Rename {{ name_len: {} }}", name.len()),
            ChangeKind::Leave => f.write_str("Leave"),
            ChangeKind::Join { invite } => write!(f, "Join {{ invite_len: {} }}", invite.len()),
        }
    }
}

/// Checks a group name: 1..=128 bytes, no control characters.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
        return Err(CryptoError::malformed(
            "group name",
            format!("must be 1..={MAX_GROUP_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CryptoError::malformed(
            "group name",
            "control character in name",
        ));
    }
    Ok(())
}

/// A member key must be a usable identity key: a valid, non-weak Ed25519 point.
fn member_key(bytes: &[u8]) -> Result<[u8; 32]> {
    let key: [u8; 32] = sign::array(bytes, W, "member")?;
    sign::verifying_key(&key, "group member")?;
    Ok(key)
}

/// One signed change of a group's membership log. Only exists verified: made by signing, or
/// read by [`Change::from_bytes`], which checks the structure and the author's signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Change {
    id: [u8; 32],
    group: Option<GroupId>,
    parents: Vec<[u8; 32]>,
    author: [u8; 32],
    created_at: u64,
    kind: ChangeKind,
    /// The parsed invite of a join (checked once, here).
    invite: Option<Invite>,
    /// The signed bytes (an encoded `GroupChange`), kept as they were signed.
    body: Vec<u8>,
    signature: [u8; 64],
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("id", &hex::encode(&self.id[..8]))
            .field("author", &hex::encode(&self.author[..4]))
            .field("parents", &self.parents.len())
            .field("created_at", &self.created_at)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Change {
    /// Signs a new change. `group` is `None` exactly for a genesis (which has no parents).
    pub(crate) fn sign(
        me: &Identity,
        group: Option<GroupId>,
        mut parents: Vec<[u8; 32]>,
        kind: ChangeKind,
        created_at: u64,
    ) -> Result<Change> {
        parents.sort_unstable();
        parents.dedup();
        let p = pb::GroupChange {
            group: group.map(|g| g.0.to_vec()).unwrap_or_default(),
            parents: parents.iter().map(|p| p.to_vec()).collect(),
            author: me.public_ref().identity_key.to_vec(),
            created_at,
            kind: Some(kind_to_pb(&kind)),
        };
        let body = p.encode_to_vec();
        let signature = sign::sign(
            me.signing_key(),
            CTX_GROUP_CHANGE,
            &[&CHANGE_VERSION.to_be_bytes(), &body],
        );
        let change = Self::parse(body, signature)?;
        let len = change.encoded_len();
        if len > MAX_CHANGE_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{len} bytes, max {MAX_CHANGE_BYTES}"),
            ));
        }
        Ok(change)
    }

    /// Reads a `SignedGroupChange`: size, canonical encoding, version, structure, limits and
    /// the author's signature. Says nothing about whether the author may make the change.
    pub fn from_bytes(b: &[u8]) -> Result<Change> {
        if b.len() > MAX_CHANGE_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{} bytes, max {MAX_CHANGE_BYTES}", b.len()),
            ));
        }
        let signed = pb::SignedGroupChange::decode(b).map_err(|e| CryptoError::malformed(W, e))?;
        if signed.version != CHANGE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: signed.version,
            });
        }
        // One change, one encoding, one id.
        if signed.encode_to_vec() != b {
            return Err(CryptoError::malformed(W, "non-canonical encoding"));
        }
        let signature: [u8; 64] = sign::array(&signed.signature, W, "signature")?;
        let change = Self::parse(signed.change, signature)?;
        sign::verify(
            &change.author,
            &change.signature,
            W,
            CTX_GROUP_CHANGE,
            &[&CHANGE_VERSION.to_be_bytes(), &change.body],
        )?;
        Ok(change)
    }

    /// The `SignedGroupChange` encoding (what [`Change::from_bytes`] reads).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed_pb().encode_to_vec()
    }

    fn signed_pb(&self) -> pb::SignedGroupChange {
        pb::SignedGroupChange {
            version: CHANGE_VERSION,
            change: self.body.clone(),
            signature: self.signature.to_vec(),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.signed_pb().encoded_len()
    }

    /// SHA-256 of [`Change::to_bytes`].
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// The author's identity key (which signed).
    pub fn author(&self) -> [u8; 32] {
        self.author
    }

    /// The group; a genesis names no group, its own id is the group id.
    pub fn group(&self) -> GroupId {
        self.group.unwrap_or(GroupId(self.id))
    }

    /// The heads its author saw (ascending; empty for the genesis).
    pub fn parents(&self) -> &[[u8; 32]] {
        &self.parents
    }

    /// The author's clock, Unix seconds (never earlier than a parent's).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// What it does.
    pub fn kind(&self) -> &ChangeKind {
        &self.kind
    }

    /// The invite of a join.
    pub(crate) fn invite(&self) -> Option<&Invite> {
        self.invite.as_ref()
    }

    /// Structure and limits of a body (not the signature).
    fn parse(body: Vec<u8>, signature: [u8; 64]) -> Result<Change> {
        let p =
            pb::GroupChange::decode(body.as_slice()).map_err(|e| CryptoError::malformed(W, e))?;
        let author: [u8; 32] = sign::array(&p.author, W, "author")?;
        if p.parents.len() > MAX_PARENTS {
            return Err(CryptoError::malformed(W, "too many parents"));
        }
        let parents = p
            .parents
            .iter()
            .map(|x| sign::array::<32>(x, W, "parent"))
            .collect::<Result<Vec<_>>>()?;
        if parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CryptoError::malformed(W, "parents not strictly ascending"));
        }
        let group = if p.group.is_empty() {
            None
        } else {
            Some(GroupId(sign::array(&p.group, W, "group")?))
        };
        let kind = kind_from_pb(p.kind.ok_or_else(|| CryptoError::malformed(W, "no kind"))?)?;
        let genesis = matches!(kind, ChangeKind::Create { .. });
        if genesis != parents.is_empty() || genesis != group.is_none() {
            return Err(CryptoError::malformed(
                W,
                "a create, and only a create, has no group and no parents",
            ));
        }
        if let ChangeKind::Create { members, .. } = &kind
            && members.iter().any(|(m, _)| *m == author)
        {
            return Err(CryptoError::malformed(
                W,
                "the creator is listed as a member",
            ));
        }
        let invite = match &kind {
            ChangeKind::Join { invite } => {
                let inv = Invite::from_bytes(invite)?;
                if Some(inv.group()) != group {
                    return Err(CryptoError::WrongGroup);
                }
                Some(inv)
            }
            _ => None,
        };
        let signed = pb::SignedGroupChange {
            version: CHANGE_VERSION,
            change: body,
            signature: signature.to_vec(),
        };
        let id: [u8; 32] = Sha256::digest(signed.encode_to_vec()).into();
        Ok(Change {
            id,
            group,
            parents,
            author,
            created_at: p.created_at,
            kind,
            invite,
            body: signed.change,
            signature,
        })
    }
}

fn kind_to_pb(kind: &ChangeKind) -> pb::group_change::Kind {
    use pb::group_change::Kind;
    let member = |k: &[u8; 32], r: Role| pb::GroupMember {
        identity_key: k.to_vec(),
        role: r.code(),
    };
    match kind {
        ChangeKind::Create {
            name,
            members,
            max_members,
            nonce,
        } => Kind::Create(pb::GroupChangeCreate {
            name: name.clone(),
            members: members.iter().map(|(k, r)| member(k, *r)).collect(),
            max_members: *max_members,
            nonce: nonce.to_vec(),
        }),
        ChangeKind::Add { member, role } => Kind::Add(pb::GroupChangeAdd {
            member: member.to_vec(),
            role: role.code(),
        }),
        ChangeKind::Remove { member } => Kind::Remove(pb::GroupChangeRemove {
            member: member.to_vec(),
        }),
        ChangeKind::SetRole { member, role } => Kind::SetRole(pb::GroupChangeSetRole {
            member: member.to_vec(),
            role: role.code(),
        }),
        ChangeKind::Rename { name } => Kind::Rename(pb::GroupChangeRename { name: name.clone() }),
        ChangeKind::Leave => Kind::Leave(pb::GroupChangeLeave {}),
        ChangeKind::Join { invite } => Kind::Join(pb::GroupChangeJoin {
            invite: invite.clone(),
        }),
    }
}

fn kind_from_pb(kind: pb::group_change::Kind) -> Result<ChangeKind> {
    use pb::group_change::Kind;
    Ok(match kind {
        Kind::Create(c) => {
            check_name(&c.name)?;
            if !(2..=MAX_MEMBERS_LIMIT).contains(&c.max_members) {
                return Err(CryptoError::malformed(
                    W,
                    format!("member limit must be 2..={MAX_MEMBERS_LIMIT}"),
                ));
            }
            if c.members.len() >= c.max_members as usize {
                return Err(CryptoError::GroupFull { max: c.max_members });
            }
            if c.members.len() > MAX_INITIAL_MEMBERS {
                return Err(CryptoError::malformed(
                    W,
                    format!("more than {MAX_INITIAL_MEMBERS} initial members"),
                ));
            }
            let mut members = Vec::with_capacity(c.members.len());
            for m in &c.members {
                let role = Role::from_code(m.role)?;
                if role == Role::Owner {
                    return Err(CryptoError::malformed(
                        W,
                        "an initial member cannot be owner",
                    ));
                }
                members.push((member_key(&m.identity_key)?, role));
            }
            let mut keys: Vec<_> = members.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(CryptoError::malformed(W, "duplicate member"));
            }
            ChangeKind::Create {
                name: c.name,
                members,
                max_members: c.max_members,
                nonce: sign::array(&c.nonce, W, "nonce")?,
            }
        }
        Kind::Add(a) => {
            let role = Role::from_code(a.role)?;
            if role == Role::Owner {
                return Err(CryptoError::malformed(
                    W,
                    "add as owner (hand ownership over with a role change)",
                ));
            }
            ChangeKind::Add {
                member: member_key(&a.member)?,
                role,
            }
        }
        Kind::Remove(r) => ChangeKind::Remove {
            member: sign::array(&r.member, W, "member")?,
        },
        Kind::SetRole(s) => ChangeKind::SetRole {
            member: sign::array(&s.member, W, "member")?,
            role: Role::from_code(s.role)?,
        },
        Kind::Rename(r) => {
            check_name(&r.name)?;
            ChangeKind::Rename { name: r.name }
        }
        Kind::Leave(_) => ChangeKind::Leave,
        Kind::Join(j) => ChangeKind::Join { invite: j.invite },
    })
}
