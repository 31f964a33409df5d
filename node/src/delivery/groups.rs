//! The groups this node is a member of, held in memory (loaded from the store at start): each
//! one's membership log, this node's sender-key state, and the members' contact cards, which
//! are how co-members who are not contacts are reached. Owns no I/O.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use tokenim_crypto::group::sender_key::{GroupCipher, KEY_ID_LEN, SenderKeyDistribution};
use tokenim_crypto::group::{GroupLog, Role};
use tokenim_crypto::{ContactCard, CryptoError};
use tokenim_store::GroupRecord;

use super::cards::{ParsedCards, parse_stored_card};
use super::ids::IdentityKey;

/// A change the user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEdit {
    /// Add an accepted contact as a member.
    Add(IdentityKey),
    Remove(IdentityKey),
    SetRole(IdentityKey, Role),
    Rename(String),
    /// Leave the group (it is forgotten here).
    Leave,
}

/// The group a welcome (its payload) is for: its genesis names it.
fn welcome_group(payload: &[u8]) -> Option<[u8; 32]> {
    use prost::Message as _;
    let welcome = tokenim_crypto::pb::GroupWelcome::decode(payload).ok()?;
    let genesis = tokenim_crypto::group::Change::from_bytes(welcome.changes.first()?).ok()?;
    Some(genesis.group().0)
}

/// Whether `uri` is a valid card of `member` (a card a group may keep for it).
pub(super) fn is_card_of(uri: &str, member: &[u8; 32]) -> bool {
    parse_stored_card(uri).is_ok_and(|card| card.identity.identity_key == *member)
}

/// The cards of a welcome that are valid cards of members of `log`.
pub(super) fn member_cards(
    cards: &[tokenim_crypto::pb::GroupMemberCard],
    log: &GroupLog,
) -> Vec<([u8; 32], String)> {
    cards
        .iter()
        .filter_map(|c| {
            let key = <[u8; 32]>::try_from(c.identity_key.as_slice()).ok()?;
            (log.role_of(&key).is_some() && is_card_of(&c.card, &key))
                .then(|| (key, c.card.clone()))
        })
        .collect()
}

/// One group: its log, this node's sender keys for it, and how to reach each member.
pub(super) struct Group {
    pub(super) log: GroupLog,
    pub(super) cipher: GroupCipher,
    pub(super) cards: BTreeMap<[u8; 32], String>,
    pub(super) created_at: u64,
    /// The cards above as parsed.
    parsed: RefCell<ParsedCards>,
}

impl Group {
    pub(super) fn id(&self) -> [u8; 32] {
        self.log.id().0
    }

    pub(super) fn new(
        log: GroupLog,
        cipher: GroupCipher,
        cards: BTreeMap<[u8; 32], String>,
        created_at: u64,
    ) -> Self {
        Self {
            log,
            cipher,
            cards,
            created_at,
            parsed: RefCell::default(),
        }
    }

    pub(super) fn from_record(r: &GroupRecord) -> Result<Self, CryptoError> {
        Ok(Self::new(
            GroupLog::from_bytes(&r.log)?,
            GroupCipher::from_bytes(&r.cipher)?,
            r.member_cards.iter().cloned().collect(),
            r.created_at,
        ))
    }

    /// The record to persist (the cipher state holds secrets: it goes only to the store).
    pub(super) fn record(&self, now: u64) -> GroupRecord {
        GroupRecord {
            id: self.id(),
            log: self.log.to_bytes(),
            cipher: self.cipher.to_bytes().to_vec(),
            member_cards: self.cards.iter().map(|(k, c)| (*k, c.clone())).collect(),
            created_at: self.created_at,
            updated_at: now,
        }
    }

    /// The members' identity keys.
    pub(super) fn member_set(&self) -> std::collections::BTreeSet<[u8; 32]> {
        self.log.members().into_iter().map(|(k, _)| k).collect()
    }

    /// Members other than `me`, with their roles.
    pub(super) fn others(&self, me: &[u8; 32]) -> Vec<([u8; 32], Role)> {
        self.log
            .members()
            .into_iter()
            .filter(|(k, _)| k != me)
            .collect()
    }

    pub(super) fn card(&self, member: &[u8; 32]) -> Option<ContactCard> {
        let uri = self.cards.get(member)?;
        self.parsed.borrow_mut().get(member, uri).ok()
    }
}

/// Sender keys kept for groups not held yet (a member's key can arrive before the welcome).
/// (Up to a whole group's keys can arrive before its welcome: members that got theirs first
/// send keys at once. Some 150 bytes each: 64 groups of 1,000 are about 10 MB at most.)
const MAX_PENDING_GROUPS: usize = 64;
const MAX_PENDING_KEYS: usize = 1_000;
/// Welcome parts kept per group (a 1,000-member group's welcome has about 20), and in bytes
/// across all groups.
const MAX_EARLY_WELCOMES: usize = 32;
const MAX_EARLY_WELCOME_BYTES: usize = 8 << 20;

#[derive(Default)]
pub(super) struct Groups {
    groups: HashMap<[u8; 32], Group>,
    /// Sender keys waiting for their group's welcome, by group.
    pending: HashMap<[u8; 32], Vec<SenderKeyDistribution>>,
    /// Members' copies of a group (welcomes from non-contacts) that arrived before the welcome
    /// that lets this node in, by group.
    early_welcomes: HashMap<[u8; 32], Vec<(IdentityKey, Vec<u8>)>>,
    /// Groups this node asked to join through an invite link, with the card of the member
    /// the link names: the welcome is taken from a member who is not a contact, and the join
    /// is routed by that card.
    joining: HashMap<[u8; 32], ContactCard>,
    /// When this node last asked a member of a group for its log, or answered one: at most one
    /// of each per [`SYNC_INTERVAL`], however many messages name heads this node lacks.
    synced: HashMap<([u8; 32], [u8; 32], Sync), Instant>,
    /// Joins through invite links taken per group in the current minute: a leaked link (or
    /// someone replaying joins with fresh identities) costs at most that many checks.
    joins: HashMap<[u8; 32], (Instant, u32)>,
    /// Group frames this node sent that a member could not be sent yet (its card had not
    /// reached this node), by group: sent once the card arrives. Memory only, bounded.
    unsent: HashMap<[u8; 32], Vec<Unsent>>,
}

/// A group frame waiting for a member's card.
#[derive(Debug, Clone)]
pub(super) struct Unsent {
    pub(super) member: [u8; 32],
    pub(super) message: [u8; 16],
    pub(super) frame: Vec<u8>,
}

/// Frames kept per group for members without a card; the oldest go first.
const MAX_UNSENT: usize = 256;

/// Joins a member takes for one group per minute; beyond, they are dropped (the joiner gets
/// no welcome and may follow the link again later).
const JOINS_PER_MINUTE: u32 = 30;

/// The two halves of a log sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Sync {
    Ask,
    Answer,
}

/// Least time between two syncs of one kind for one group and member.
const SYNC_INTERVAL: Duration = Duration::from_secs(5);
const MAX_SYNC_MARKS: usize = 4096;

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("count", &self.groups.len())
            .finish()
    }
}

impl Groups {
    pub(super) fn insert(&mut self, group: Group) {
        self.joining.remove(&group.id());
        self.groups.insert(group.id(), group);
    }

    pub(super) fn expect_welcome(&mut self, id: [u8; 32], inviter: ContactCard) {
        if self.joining.len() < MAX_PENDING_GROUPS {
            self.joining.insert(id, inviter);
        }
    }

    /// Whether a welcome (its payload) may be taken from someone who is not a contact: it is
    /// for a group this node asked to join, or holds (then it only adds to what is known, from
    /// a member).
    pub(super) fn takes_welcome(&self, payload: &[u8]) -> bool {
        welcome_group(payload)
            .is_some_and(|id| self.joining.contains_key(&id) || self.groups.contains_key(&id))
    }

    pub(super) fn keep_unsent(&mut self, group: [u8; 32], unsent: Unsent) {
        let list = self.unsent.entry(group).or_default();
        if list.len() >= MAX_UNSENT {
            list.remove(0);
        }
        list.push(unsent);
    }

    /// The kept frames of `group` whose member's card is known now (and drops those of
    /// members who left).
    pub(super) fn take_sendable(&mut self, group: &[u8; 32]) -> Vec<(Unsent, ContactCard)> {
        let (Some(list), Some(g)) = (self.unsent.get_mut(group), self.groups.get(group)) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        list.retain(|u| {
            if g.log.role_of(&u.member).is_none() {
                return false;
            }
            match g.card(&u.member) {
                Some(card) => {
                    ready.push((u.clone(), card));
                    false
                }
                None => true,
            }
        });
        ready
    }

    pub(super) fn ids(&self) -> Vec<[u8; 32]> {
        self.groups.keys().copied().collect()
    }

    pub(super) fn remove(&mut self, id: &[u8; 32]) {
        self.groups.remove(id);
    }

    pub(super) fn get(&self, id: &[u8; 32]) -> Option<&Group> {
        self.groups.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &[u8; 32]) -> Option<&mut Group> {
        self.groups.get_mut(id)
    }

    /// Keeps a sender key of a group not held yet (bounded: beyond it, some group's keys make room).
    pub(super) fn keep_pending(&mut self, d: SenderKeyDistribution) {
        if !self.pending.contains_key(&d.group())
            && self.pending.len() >= MAX_PENDING_GROUPS
            && let Some(k) = self.pending.keys().next().copied()
        {
            self.pending.remove(&k);
        }
        let keys = self.pending.entry(d.group()).or_default();
        if keys.len() < MAX_PENDING_KEYS {
            keys.push(d);
        }
    }

    /// Keeps a welcome from a non-contact for a group not held yet (bounded).
    pub(super) fn keep_welcome(&mut self, from: IdentityKey, payload: Vec<u8>) {
        let Some(id) = welcome_group(&payload) else {
            return;
        };
        if !self.early_welcomes.contains_key(&id) && self.early_welcomes.len() >= MAX_PENDING_GROUPS
        {
            return;
        }
        let held: usize = self
            .early_welcomes
            .values()
            .flatten()
            .map(|(_, p)| p.len())
            .sum();
        let kept = self.early_welcomes.entry(id).or_default();
        if kept.len() < MAX_EARLY_WELCOMES && held + payload.len() <= MAX_EARLY_WELCOME_BYTES {
            kept.push((from, payload));
        }
    }

    /// The welcomes from non-contacts that waited for `group`.
    pub(super) fn take_welcomes(&mut self, group: &[u8; 32]) -> Vec<(IdentityKey, Vec<u8>)> {
        self.early_welcomes.remove(group).unwrap_or_default()
    }

    /// The sender keys that waited for `group`.
    pub(super) fn take_pending(&mut self, group: &[u8; 32]) -> Vec<SenderKeyDistribution> {
        self.pending.remove(group).unwrap_or_default()
    }

    /// The group whose sender keys include `key_id` (a group frame's key).
    pub(super) fn holding(&self, key_id: &[u8; KEY_ID_LEN]) -> Option<[u8; 32]> {
        self.groups
            .values()
            .find(|g| g.cipher.holds_key(key_id))
            .map(Group::id)
    }

    /// Whether a sync of `kind` with `peer` about `group` may go now (and marks it gone).
    pub(super) fn may_sync(
        &mut self,
        group: [u8; 32],
        peer: [u8; 32],
        kind: Sync,
        now: Instant,
    ) -> bool {
        if self.synced.len() >= MAX_SYNC_MARKS {
            self.synced
                .retain(|_, at| now.duration_since(*at) < SYNC_INTERVAL);
        }
        let key = (group, peer, kind);
        let due = self
            .synced
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= SYNC_INTERVAL);
        if due && self.synced.len() < MAX_SYNC_MARKS {
            self.synced.insert(key, now);
            return true;
        }
        false
    }

    /// Whether a join for `group` may be looked at now (and counts it).
    pub(super) fn may_take_join(&mut self, group: [u8; 32], now: Instant) -> bool {
        if self.joins.len() >= MAX_PENDING_GROUPS {
            self.joins
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, count) = self.joins.entry(group).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= JOINS_PER_MINUTE
    }

    /// A card of `peer` from any group it is a member of: the route to a co-member who is not
    /// a contact.
    pub(super) fn card_of(&self, peer: &[u8; 32]) -> Option<ContactCard> {
        self.groups.values().find_map(|g| g.card(peer)).or_else(|| {
            self.joining
                .values()
                .find(|c| c.identity.identity_key == *peer)
                .cloned()
        })
    }
}
