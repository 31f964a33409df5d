//! The membership log of one group: a DAG of signed changes, a deterministic total order over
//! it, and the membership state that replaying that order gives (rules in the module docs of
//! [`crate::group`]).

mod change;
mod invite;
mod rules;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use prost::Message as _;
use rand::TryRng as _;

pub use change::{
    CHANGE_VERSION, Change, ChangeKind, DEFAULT_MAX_MEMBERS, GroupId, MAX_CHANGE_BYTES,
    MAX_GROUP_NAME_BYTES, MAX_INITIAL_MEMBERS, MAX_MEMBERS_LIMIT, MAX_PARENTS, Role,
};
pub use invite::{
    INVITE_URI_PREFIX, INVITE_VERSION, Invite, MAX_INVITE_BYTES, MAX_INVITE_URI_BYTES,
    MAX_INVITE_USES,
};

use invite::InviteFields;
use rules::State;

use crate::error::{CryptoError, Result};
use crate::identity::Identity;
use crate::pb;

/// Most changes a log buffers while their parents are unknown.
pub const MAX_PENDING_CHANGES: usize = 256;
/// Most bytes of buffered changes.
pub const MAX_PENDING_BYTES: usize = 1 << 20;
/// Most changes in one log (a group that reaches it cannot change any more).
pub const MAX_LOG_CHANGES: usize = 20_000;
/// Most bytes of changes in one log.
pub const MAX_LOG_BYTES: usize = 32 << 20;
/// How far ahead of the receiver's clock a change's `created_at` may be
/// ([`GroupLog::apply_at`]).
pub const MAX_CLOCK_SKEW_SECS: u64 = 3_600;

const W: &str = "group log";

/// What [`GroupLog::apply`] did with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Applied {
    /// Added to the log (the state may or may not have changed).
    New,
    /// Already in the log.
    Duplicate,
    /// Buffered until its parents arrive ([`GroupLog::missing`] lists them).
    Pending,
}

/// A change that removes someone or sets their role, and the role it leaves them with.
type Lowering = ([u8; 32], Option<Role>);

#[derive(Clone)]
struct Node {
    change: Change,
    /// 0 for the genesis, else 1 + the largest depth of its parents.
    depth: u64,
}

/// A group's membership log and the state derived from it. Sans-IO: the node persists
/// [`GroupLog::to_bytes`] and moves [`Change`]s between members.
#[derive(Clone)]
pub struct GroupLog {
    id: GroupId,
    nodes: HashMap<[u8; 32], Node>,
    /// The total order: by depth, then change id.
    order: BTreeSet<(u64, [u8; 32])>,
    heads: BTreeSet<[u8; 32]>,
    /// Per identity key: the changes in the log that remove it or set its role, with the role
    /// they leave it with (`None`: out).
    lowered: HashMap<[u8; 32], Vec<Lowering>>,
    state: State,
    pending: BTreeMap<[u8; 32], Change>,
    pending_bytes: usize,
    bytes: usize,
}

impl fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLog")
            .field("id", &self.id)
            .field("members", &self.state.members.len())
            .field("changes", &self.nodes.len())
            .field("heads", &self.heads.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut out)
        .map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

impl GroupLog {
    /// Creates a group with `me` as owner and [`DEFAULT_MAX_MEMBERS`] as its limit. Returns the
    /// log and the genesis to send to the members.
    pub fn create(
        me: &Identity,
        name: &str,
        members: &[([u8; 32], Role)],
        now: u64,
    ) -> Result<(GroupLog, Change)> {
        Self::create_with_limit(me, name, members, DEFAULT_MAX_MEMBERS, now)
    }

    /// [`GroupLog::create`] with a member limit of `max_members` (2..=[`MAX_MEMBERS_LIMIT`]),
    /// fixed in the genesis so that every member enforces the same one.
    pub fn create_with_limit(
        me: &Identity,
        name: &str,
        members: &[([u8; 32], Role)],
        max_members: u32,
        now: u64,
    ) -> Result<(GroupLog, Change)> {
        Self::create_with_nonce(me, name, members, max_members, random()?, now)
    }

    /// [`GroupLog::create_with_limit`] with a chosen genesis nonce instead of a random one: for
    /// known-answer vectors and simulations only (the same inputs make the same group id).
    pub fn create_with_nonce(
        me: &Identity,
        name: &str,
        members: &[([u8; 32], Role)],
        max_members: u32,
        nonce: [u8; 16],
        now: u64,
    ) -> Result<(GroupLog, Change)> {
        let kind = ChangeKind::Create {
            name: name.to_owned(),
            members: members.to_vec(),
            max_members,
            nonce,
        };
        let genesis = Change::sign(me, None, Vec::new(), kind, now)?;
        Ok((Self::from_genesis(genesis.clone())?, genesis))
    }

    /// The log of a group known only by its genesis (a new member then applies the rest).
    pub fn from_genesis(genesis: Change) -> Result<GroupLog> {
        if !matches!(genesis.kind(), ChangeKind::Create { .. }) {
            return Err(CryptoError::malformed(
                W,
                "the first change is not a create",
            ));
        }
        let id = genesis.group();
        let state = State::genesis(&genesis);
        let bytes = genesis.encoded_len();
        Ok(GroupLog {
            id,
            nodes: HashMap::from([(
                id.0,
                Node {
                    change: genesis,
                    depth: 0,
                },
            )]),
            order: BTreeSet::from([(0, id.0)]),
            heads: BTreeSet::from([id.0]),
            lowered: HashMap::new(),
            state,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            bytes,
        })
    }

    /// The group id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// Signs a change by `me` naming the current heads, applies it, and returns it to send to
    /// the members. Refused with the reason if `me` may not make it now.
    pub fn propose(&mut self, me: &Identity, kind: ChangeKind, now: u64) -> Result<Change> {
        if matches!(kind, ChangeKind::Create { .. }) {
            return Err(CryptoError::GroupNotAllowed("a group is created only once"));
        }
        let parents: Vec<[u8; 32]> = self.heads.iter().take(MAX_PARENTS).copied().collect();
        let created_at = now.max(self.latest(&parents));
        let change = Change::sign(me, Some(self.id), parents, kind, created_at)?;
        self.apply(change.clone())?;
        Ok(change)
    }

    /// [`GroupLog::apply`] for a change from the network, received at `now`: first refuses a
    /// change dated more than [`MAX_CLOCK_SKEW_SECS`] ahead of `now`, so that nobody can push
    /// the log's clock (which every later change must follow, and which invite expiry is
    /// checked against) into the future. Such a change is refused, not kept: it is accepted
    /// when offered again once the clock has caught up, so members still converge.
    pub fn apply_at(&mut self, change: Change, now: u64) -> Result<Applied> {
        if change.created_at() > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(CryptoError::OutsideTimeWindow {
                timestamp: change.created_at(),
                now,
                window_secs: MAX_CLOCK_SKEW_SECS,
            });
        }
        self.apply(change)
    }

    /// Verifies, authorizes and merges a change. A change whose parents are not all known yet
    /// is buffered (bounded) and admitted once they are. Errors say why a change is refused; a
    /// refused change is not kept. A change that is admitted can still end up without effect
    /// (see the module docs): the state is always the replay of the whole log. No clock check:
    /// use [`GroupLog::apply_at`] for changes from the network.
    pub fn apply(&mut self, change: Change) -> Result<Applied> {
        if change.group() != self.id {
            return Err(CryptoError::WrongGroup);
        }
        let id = change.id();
        if self.nodes.contains_key(&id) {
            return Ok(Applied::Duplicate);
        }
        if self.pending.contains_key(&id) {
            return Ok(Applied::Pending);
        }
        if change.parents().iter().all(|p| self.nodes.contains_key(p)) {
            self.admit(change)?;
            self.drain_pending();
            return Ok(Applied::New);
        }
        let len = change.encoded_len();
        if self.pending.len() >= MAX_PENDING_CHANGES || self.pending_bytes + len > MAX_PENDING_BYTES
        {
            return Err(CryptoError::GroupLimit(
                "too many changes wait for their parents",
            ));
        }
        self.pending_bytes += len;
        self.pending.insert(id, change);
        Ok(Applied::Pending)
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Members and their roles, by identity key.
    pub fn members(&self) -> Vec<([u8; 32], Role)> {
        self.state.members.iter().map(|(k, r)| (*k, *r)).collect()
    }

    /// The role of `who`, if a member.
    pub fn role_of(&self, who: &[u8; 32]) -> Option<Role> {
        self.state.members.get(who).copied()
    }

    /// The group's member limit (fixed at creation).
    pub fn max_members(&self) -> u32 {
        self.state.max_members
    }

    /// Ids of the changes no other change names as parent, ascending.
    pub fn heads(&self) -> Vec<[u8; 32]> {
        self.heads.iter().copied().collect()
    }

    /// Every change of the log in its order (the genesis first): for a new member, or to
    /// persist.
    pub fn changes(&self) -> Vec<Change> {
        self.ordered().cloned().collect()
    }

    /// The changes that are not among `known_heads` or their ancestors, in order: what a member
    /// whose heads are `known_heads` lacks. Unknown ids in `known_heads` are skipped.
    pub fn changes_since(&self, known_heads: &[[u8; 32]]) -> Vec<Change> {
        let known: Vec<[u8; 32]> = known_heads
            .iter()
            .filter(|h| self.nodes.contains_key(*h))
            .copied()
            .collect();
        let have = self.ancestors(&known);
        self.ordered()
            .filter(|c| !have.contains(&c.id()))
            .cloned()
            .collect()
    }

    /// A change of the log by id.
    pub fn change(&self, id: &[u8; 32]) -> Option<&Change> {
        self.nodes.get(id).map(|n| &n.change)
    }

    /// The group's first change.
    pub fn genesis(&self) -> Option<&Change> {
        self.change(&self.id.0)
    }

    /// Number of changes in the log.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: a log holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Number of buffered changes waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Parents that buffered changes wait for: ask the member who sent them.
    pub fn missing(&self) -> Vec<[u8; 32]> {
        let missing: BTreeSet<[u8; 32]> = self
            .pending
            .values()
            .flat_map(|c| c.parents().iter())
            .filter(|p| !self.nodes.contains_key(*p) && !self.pending.contains_key(*p))
            .copied()
            .collect();
        missing.into_iter().collect()
    }

    /// Encoding for storage (`tokenim.v1.GroupLogState`), buffered changes included.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::GroupLogState {
            changes: self.ordered().map(Change::to_bytes).collect(),
            pending: self.pending.values().map(Change::to_bytes).collect(),
        }
        .encode_to_vec()
    }

    /// Reads [`GroupLog::to_bytes`], checking every change again.
    pub fn from_bytes(b: &[u8]) -> Result<GroupLog> {
        if b.len() > MAX_LOG_BYTES + MAX_PENDING_BYTES + (1 << 20) {
            return Err(CryptoError::GroupLimit("stored log too large"));
        }
        let st = pb::GroupLogState::decode(b).map_err(|e| CryptoError::malformed(W, e))?;
        let mut changes = st.changes.iter();
        let first = changes
            .next()
            .ok_or_else(|| CryptoError::malformed(W, "no changes"))?;
        let mut log = Self::from_genesis(Change::from_bytes(first)?)?;
        for raw in changes {
            if log.apply(Change::from_bytes(raw)?)? != Applied::New {
                return Err(CryptoError::malformed(
                    W,
                    "changes repeated or out of order",
                ));
            }
        }
        for raw in &st.pending {
            log.apply(Change::from_bytes(raw)?)?;
        }
        Ok(log)
    }

    /// An invite link signed by `me`, who must be an admin or the owner now. Members count a
    /// join only while `me` is still one (at the join's place in the order).
    pub fn create_invite(&self, me: &Identity, expires_at: u64, max_uses: u32) -> Result<Invite> {
        self.create_invite_with_contact(me, expires_at, max_uses, "")
    }

    /// [`GroupLog::create_invite`] carrying `contact`, a member's contact card URI for the
    /// joiner to send its join to.
    pub fn create_invite_with_contact(
        &self,
        me: &Identity,
        expires_at: u64,
        max_uses: u32,
        contact: &str,
    ) -> Result<Invite> {
        self.create_invite_with_id(me, expires_at, max_uses, contact, random()?)
    }

    /// [`GroupLog::create_invite_with_contact`] with a chosen invite id instead of a random
    /// one: for known-answer vectors and simulations only (invites that share an id share
    /// their uses).
    pub fn create_invite_with_id(
        &self,
        me: &Identity,
        expires_at: u64,
        max_uses: u32,
        contact: &str,
        invite_id: [u8; 16],
    ) -> Result<Invite> {
        if self.role_of(&me.public_ref().identity_key) < Some(Role::Admin) {
            return Err(CryptoError::GroupNotAllowed(
                "only admins and the owner make invites",
            ));
        }
        let heads: Vec<[u8; 32]> = self.heads.iter().take(MAX_PARENTS).copied().collect();
        Invite::sign(
            me,
            InviteFields {
                group: self.id,
                invite_id,
                expires_at,
                max_uses,
                issued_at: self.latest(&heads),
                heads: &heads,
                contact,
            },
        )
    }

    fn ordered(&self) -> impl Iterator<Item = &Change> {
        self.order
            .iter()
            .filter_map(|(_, id)| self.nodes.get(id).map(|n| &n.change))
    }

    /// The largest `created_at` among `ids`.
    fn latest(&self, ids: &[[u8; 32]]) -> u64 {
        ids.iter()
            .filter_map(|p| self.nodes.get(p))
            .map(|n| n.change.created_at())
            .max()
            .unwrap_or(0)
    }

    /// Adds a change whose parents are all in the log, if its author was entitled to it in the
    /// change's own history (the replay of its ancestors): a property of the change alone, so
    /// every member admits the same changes whatever the order they arrive in.
    fn admit(&mut self, change: Change) -> Result<()> {
        let len = change.encoded_len();
        if self.nodes.len() >= MAX_LOG_CHANGES || self.bytes + len > MAX_LOG_BYTES {
            return Err(CryptoError::GroupLimit("the group's log is full"));
        }
        let mut depth = 0;
        for p in change.parents() {
            let parent = self
                .nodes
                .get(p)
                .ok_or_else(|| CryptoError::malformed(W, "unknown parent"))?;
            depth = depth.max(parent.depth + 1);
        }
        if change.created_at() < self.latest(change.parents()) {
            return Err(CryptoError::GroupNotAllowed(
                "created before one of its parents",
            ));
        }
        // The common case, a change made on top of everything we have: its history is the
        // whole log, and it comes last in the order.
        let follows_all = change.parents().iter().eq(self.heads.iter());
        let allowed = {
            let history = if follows_all {
                Cow::Borrowed(&self.state)
            } else {
                Cow::Owned(self.replay(Some(&self.ancestors(change.parents()))))
            };
            history.check(self.id, &change)?
        };
        let id = change.id();
        for (who, role) in rules::lowers(&change) {
            self.lowered.entry(who).or_default().push((id, role));
        }
        for p in change.parents() {
            self.heads.remove(p);
        }
        self.heads.insert(id);
        self.order.insert((depth, id));
        self.bytes += len;
        self.nodes.insert(id, Node { change, depth });
        if follows_all {
            self.state.apply(allowed.effect);
        } else {
            self.state = self.replay(None);
        }
        Ok(())
    }

    fn drain_pending(&mut self) {
        loop {
            let ready = self
                .pending
                .iter()
                .find(|(_, c)| c.parents().iter().all(|p| self.nodes.contains_key(p)))
                .map(|(id, _)| *id);
            let Some(change) = ready.and_then(|id| self.pending.remove(&id)) else {
                break;
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(change.encoded_len());
            // Refused now means refused by every member: drop it.
            let _ = self.admit(change);
        }
    }

    /// The state after the changes of the log in `only` (all if `None`), in order. A change
    /// takes effect if it is allowed at its place and no change outside its own history and
    /// future (concurrent with it) removes or demotes the person whose rights it rests on.
    fn replay(&self, only: Option<&HashSet<[u8; 32]>>) -> State {
        let Some(genesis) = self.genesis() else {
            return self.state.clone();
        };
        let mut state = State::genesis(genesis);
        for (depth, id) in &self.order {
            if *depth == 0 || only.is_some_and(|set| !set.contains(id)) {
                continue;
            }
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            if let Ok(allowed) = state.check(self.id, &node.change)
                && !self.voided(id, allowed.rests_on, only)
            {
                state.apply(allowed.effect);
            }
        }
        state
    }

    /// Whether a change that rests on `rests_on`'s rights is voided by a concurrent change (in
    /// `only`) that leaves that person with less than the role needed.
    fn voided(
        &self,
        id: &[u8; 32],
        rests_on: Option<([u8; 32], Role)>,
        only: Option<&HashSet<[u8; 32]>>,
    ) -> bool {
        let Some((who, need)) = rests_on else {
            return false;
        };
        self.lowered.get(&who).is_some_and(|list| {
            list.iter().any(|(other, left)| {
                other != id
                    && *left < Some(need)
                    && only.is_none_or(|set| set.contains(other))
                    && !self.is_ancestor(other, id)
                    && !self.is_ancestor(id, other)
            })
        })
    }

    /// `ids` and all their ancestors.
    fn ancestors(&self, ids: &[[u8; 32]]) -> HashSet<[u8; 32]> {
        let mut seen = HashSet::new();
        let mut stack: Vec<[u8; 32]> = ids.to_vec();
        while let Some(id) = stack.pop() {
            if seen.insert(id)
                && let Some(n) = self.nodes.get(&id)
            {
                stack.extend_from_slice(n.change.parents());
            }
        }
        seen
    }

    /// Whether `a` is a proper ancestor of `b`.
    fn is_ancestor(&self, a: &[u8; 32], b: &[u8; 32]) -> bool {
        let (Some(na), Some(nb)) = (self.nodes.get(a), self.nodes.get(b)) else {
            return false;
        };
        if na.depth >= nb.depth {
            return false;
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<&[u8; 32]> = nb.change.parents().iter().collect();
        while let Some(x) = stack.pop() {
            if x == a {
                return true;
            }
            if seen.insert(*x)
                && let Some(n) = self.nodes.get(x)
                && n.depth > na.depth
            {
                stack.extend(n.change.parents());
            }
        }
        false
    }
}
