//! Who may make which change, against a membership state: the one place the permission rules
//! live. The log asks it twice per change: against the state of the change's own history (to
//! admit it at all) and at its place in the total order (whether it takes effect).

use std::collections::BTreeMap;

use super::Role;
use super::change::{Change, ChangeKind, GroupId};
use crate::error::{CryptoError, Result};

/// A group's membership at some point of the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct State {
    pub name: String,
    pub members: BTreeMap<[u8; 32], Role>,
    pub max_members: u32,
    /// Joins that counted, per invite id.
    pub invite_uses: BTreeMap<[u8; 16], u32>,
}

/// What an allowed change does to the state.
#[derive(Debug)]
pub(super) enum Effect {
    Add([u8; 32], Role),
    Remove([u8; 32]),
    SetRole([u8; 32], Role),
    Transfer {
        from: [u8; 32],
        to: [u8; 32],
    },
    Rename(String),
    Join {
        member: [u8; 32],
        invite_id: [u8; 16],
    },
}

/// An allowed change: its effect, and whose rights it rests on (identity key, the role they
/// need), for the log's rule that a concurrent removal or demotion of that person voids it.
#[derive(Debug)]
pub(super) struct Allowed {
    pub effect: Effect,
    pub rests_on: Option<([u8; 32], Role)>,
}

fn deny(reason: &'static str) -> CryptoError {
    CryptoError::GroupNotAllowed(reason)
}

impl State {
    /// The state a genesis makes. `genesis` must be a create (the log checks it first).
    pub fn genesis(genesis: &Change) -> State {
        let mut members = BTreeMap::new();
        let (mut name, mut max_members) = (String::new(), 0);
        if let ChangeKind::Create {
            name: n,
            members: m,
            max_members: max,
            ..
        } = genesis.kind()
        {
            members.extend(m.iter().copied());
            name.clone_from(n);
            max_members = *max;
        }
        members.insert(genesis.author(), Role::Owner);
        State {
            name,
            members,
            max_members,
            invite_uses: BTreeMap::new(),
        }
    }

    fn role(&self, who: &[u8; 32]) -> Option<Role> {
        self.members.get(who).copied()
    }

    fn need(&self, who: &[u8; 32], role: Role, reason: &'static str) -> Result<()> {
        if self.role(who) >= Some(role) {
            Ok(())
        } else {
            Err(deny(reason))
        }
    }

    fn room(&self) -> Result<()> {
        if self.members.len() >= self.max_members as usize {
            return Err(CryptoError::GroupFull {
                max: self.max_members,
            });
        }
        Ok(())
    }

    /// Whether `c` is allowed in this state, and what it does. A change that would do nothing
    /// (add a member, rename to the same name...) is not allowed either.
    pub fn check(&self, group: GroupId, c: &Change) -> Result<Allowed> {
        let a = c.author();
        let rests = |role| Some((a, role));
        let allowed = match c.kind() {
            ChangeKind::Create { .. } => return Err(deny("a group is created only once")),
            ChangeKind::Add { member, role } => {
                let need = if *role == Role::Member {
                    Role::Admin
                } else {
                    Role::Owner
                };
                self.need(&a, need, "admins add members; only the owner adds admins")?;
                if self.members.contains_key(member) {
                    return Err(deny("already a member"));
                }
                self.room()?;
                Allowed {
                    effect: Effect::Add(*member, *role),
                    rests_on: rests(need),
                }
            }
            ChangeKind::Remove { member } => {
                let need = match self.role(member) {
                    None => return Err(deny("not a member")),
                    Some(Role::Owner) => return Err(deny("the owner cannot be removed")),
                    Some(Role::Admin) => Role::Owner,
                    Some(Role::Member) => Role::Admin,
                };
                self.need(
                    &a,
                    need,
                    "admins remove members; only the owner removes admins",
                )?;
                Allowed {
                    effect: Effect::Remove(*member),
                    rests_on: rests(need),
                }
            }
            ChangeKind::SetRole { member, role } => {
                self.need(&a, Role::Owner, "only the owner sets roles")?;
                if *member == a {
                    return Err(deny(
                        "the owner's role changes only by handing ownership over",
                    ));
                }
                match self.role(member) {
                    None => return Err(deny("not a member")),
                    Some(r) if r == *role => return Err(deny("already has that role")),
                    Some(_) => {}
                }
                let effect = if *role == Role::Owner {
                    Effect::Transfer {
                        from: a,
                        to: *member,
                    }
                } else {
                    Effect::SetRole(*member, *role)
                };
                Allowed {
                    effect,
                    rests_on: rests(Role::Owner),
                }
            }
            ChangeKind::Rename { name } => {
                self.need(&a, Role::Admin, "only admins and the owner rename")?;
                if *name == self.name {
                    return Err(deny("the group already has that name"));
                }
                Allowed {
                    effect: Effect::Rename(name.clone()),
                    rests_on: rests(Role::Admin),
                }
            }
            ChangeKind::Leave => {
                match self.role(&a) {
                    None => return Err(deny("not a member")),
                    Some(Role::Owner) if self.members.len() > 1 => {
                        return Err(deny("the owner hands ownership over before leaving"));
                    }
                    Some(_) => {}
                }
                Allowed {
                    effect: Effect::Remove(a),
                    rests_on: None,
                }
            }
            ChangeKind::Join { .. } => {
                let invite = c
                    .invite()
                    .ok_or_else(|| CryptoError::malformed("group change", "join without invite"))?;
                if invite.group() != group {
                    return Err(CryptoError::WrongGroup);
                }
                if c.created_at() > invite.expires_at() {
                    return Err(CryptoError::InviteExpired {
                        expires_at: invite.expires_at(),
                        now: c.created_at(),
                    });
                }
                self.need(
                    &invite.inviter(),
                    Role::Admin,
                    "the invite's maker is not an admin",
                )?;
                if self.members.contains_key(&a) {
                    return Err(deny("already a member"));
                }
                let used = self
                    .invite_uses
                    .get(&invite.invite_id())
                    .copied()
                    .unwrap_or(0);
                if used >= invite.max_uses() {
                    return Err(CryptoError::InviteUsedUp);
                }
                self.room()?;
                Allowed {
                    effect: Effect::Join {
                        member: a,
                        invite_id: invite.invite_id(),
                    },
                    rests_on: Some((invite.inviter(), Role::Admin)),
                }
            }
        };
        Ok(allowed)
    }

    pub fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Add(m, r) | Effect::SetRole(m, r) => {
                self.members.insert(m, r);
            }
            Effect::Remove(m) => {
                self.members.remove(&m);
            }
            Effect::Transfer { from, to } => {
                self.members.insert(from, Role::Admin);
                self.members.insert(to, Role::Owner);
            }
            Effect::Rename(name) => self.name = name,
            Effect::Join { member, invite_id } => {
                self.members.insert(member, Role::Member);
                *self.invite_uses.entry(invite_id).or_insert(0) += 1;
            }
        }
    }
}

/// The role a change leaves `who` with, for every `who` whose role it may lower (`None`: out of
/// the group). Depends on the change alone, so the log indexes it once.
pub(super) fn lowers(c: &Change) -> Vec<([u8; 32], Option<Role>)> {
    match c.kind() {
        ChangeKind::Remove { member } => vec![(*member, None)],
        ChangeKind::Leave => vec![(c.author(), None)],
        ChangeKind::SetRole { member, role } if *role == Role::Owner => {
            vec![(c.author(), Some(Role::Admin))]
        }
        ChangeKind::SetRole { member, role } => vec![(*member, Some(*role))],
        _ => Vec::new(),
    }
}
