//! [`Txn`]: several typed changes committed as one atomic batch.

use std::collections::HashMap;
use std::fmt;

use crate::backend::{Backend, Batch, Cf};
use crate::files::{self, FileRecord};
use crate::keys::{
    self, MESSAGE_KEY_LEN, message_key, message_time_key, seen_expiry_key, seen_key,
};
use crate::member_states::{self, MemberState};
use crate::records::{
    ContactRecord, Direction, GroupRecord, MessageRecord, MessageState, OutboxRecord, Record,
    TokenRecord,
};
use crate::store::{Store, StoreOptions, lock, meta_key_checked, now_ms};
use crate::{Result, StoreError};

enum Op {
    PutContact(ContactRecord),
    DeleteContact([u8; 32]),
    PutMessage(MessageRecord),
    SetMessageState {
        id: [u8; 16],
        state: MessageState,
        relays: Option<u32>,
    },
    DeleteMessage([u8; 16]),
    PutOutbox(OutboxRecord),
    DeleteOutbox([u8; 16]),
    PutSession([u8; 32], Vec<u8>),
    DeleteSession([u8; 32]),
    MarkSeen {
        peer: [u8; 32],
        inner_id: [u8; 16],
        expires_at: u64,
    },
    PutMeta(String, Vec<u8>),
    DeleteMeta(String),
    PutToken(TokenRecord),
    DeleteToken(String),
    PutGroup(GroupRecord),
    DeleteGroup([u8; 32]),
    PutMemberState([u8; 16], [u8; 32], MessageState, u64),
    PutFile(Box<FileRecord>),
    DeleteFile(Box<FileRecord>),
}

/// A builder of typed changes that [`commit`](Txn::commit) writes as one atomic batch: after
/// a crash either all of them are on disk or none.
///
/// ```
/// # use tokenim_store::*;
/// # fn f(store: &Store, msg: &MessageRecord, out: &OutboxRecord) -> Result<()> {
/// store.txn().put_message(msg).put_outbox(out).put_session(&msg.to, b"state").commit()?;
/// # Ok(()) }
/// ```
///
/// Operations apply in order and see the earlier ones of the same `Txn` (e.g. `put_message`
/// then `set_message_state` on it). Commits of different `Txn`s are serialised, so the
/// read-modify-write steps (message index, seen ids) cannot interleave.
#[must_use = "a Txn does nothing until commit()"]
pub struct Txn<'a> {
    store: &'a Store,
    ops: Vec<Op>,
}

impl fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Txn").field("ops", &self.ops.len()).finish()
    }
}

impl Store {
    /// Start a transaction.
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            store: self,
            ops: Vec::new(),
        }
    }

    /// Insert or replace a message (see [`Txn::put_message`]).
    pub fn put_message(&self, m: &MessageRecord) -> Result<()> {
        self.txn().put_message(m).commit()
    }

    /// Remove a message; whether it existed. Its seen id (if incoming) stays until it expires.
    pub fn delete_message(&self, id: &[u8; 16]) -> Result<bool> {
        let _guard = lock(&self.inner.txn_lock);
        let mut r = Resolver::new(self.be(), &self.inner.opts);
        let existed = r.delete_message(id)?;
        self.write(r.batch, false)?;
        Ok(existed)
    }

    /// Update a message's delivery state (and relay count if given); `updated_at_ms` becomes
    /// the wall clock (never earlier than before). Returns the updated record, or None if no
    /// message has that id.
    pub fn set_message_state(
        &self,
        id: &[u8; 16],
        state: MessageState,
        relays: Option<u32>,
    ) -> Result<Option<MessageRecord>> {
        let _guard = lock(&self.inner.txn_lock);
        let mut r = Resolver::new(self.be(), &self.inner.opts);
        let updated = r.set_message_state(id, state, relays)?;
        if !r.batch.is_empty() {
            self.write(r.batch, false)?;
        }
        Ok(updated)
    }

    /// A message by id.
    pub fn get_message(&self, id: &[u8; 16]) -> Result<Option<MessageRecord>> {
        read_message(self.be(), id)
    }
}

/// Look a message up through `message_index`.
pub(crate) fn read_message(backend: &dyn Backend, id: &[u8; 16]) -> Result<Option<MessageRecord>> {
    let Some(key) = backend.get(Cf::MessageIndex, id)? else {
        return Ok(None);
    };
    keys::expect_len("message index value", &key, MESSAGE_KEY_LEN)?;
    match backend.get(Cf::Messages, &key)? {
        Some(v) => MessageRecord::from_bytes(&v).map(Some),
        None => Err(StoreError::Corrupt {
            what: "message index",
            reason: "points at a missing message".into(),
        }),
    }
}

impl<'a> Txn<'a> {
    fn op(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Insert or replace a contact.
    pub fn put_contact(self, c: &ContactRecord) -> Self {
        self.op(Op::PutContact(c.clone()))
    }

    /// Remove a contact.
    pub fn delete_contact(self, identity_key: &[u8; 32]) -> Self {
        self.op(Op::DeleteContact(*identity_key))
    }

    /// Insert or replace a message and its indexes. An incoming message's id is also marked
    /// seen for `StoreOptions::seen_ttl_secs` after `received_at_ms`. Replacing keeps the
    /// message where `received_at_ms` puts it; replacing a message of another conversation,
    /// direction or sender fails the commit with [`StoreError::MessageIdConflict`].
    pub fn put_message(self, m: &MessageRecord) -> Self {
        self.op(Op::PutMessage(m.clone()))
    }

    /// Update a message's state (see [`Store::set_message_state`]); no-op if it is absent.
    pub fn set_message_state(
        self,
        id: &[u8; 16],
        state: MessageState,
        relays: Option<u32>,
    ) -> Self {
        self.op(Op::SetMessageState {
            id: *id,
            state,
            relays,
        })
    }

    /// Remove a message and its indexes.
    pub fn delete_message(self, id: &[u8; 16]) -> Self {
        self.op(Op::DeleteMessage(*id))
    }

    /// Insert or replace an outbox entry.
    pub fn put_outbox(self, o: &OutboxRecord) -> Self {
        self.op(Op::PutOutbox(o.clone()))
    }

    /// Remove an outbox entry.
    pub fn delete_outbox(self, id: &[u8; 16]) -> Self {
        self.op(Op::DeleteOutbox(*id))
    }

    /// Store a peer's session state.
    pub fn put_session(self, peer: &[u8; 32], state: &[u8]) -> Self {
        self.op(Op::PutSession(*peer, state.to_vec()))
    }

    /// Remove a peer's session state.
    pub fn delete_session(self, peer: &[u8; 32]) -> Self {
        self.op(Op::DeleteSession(*peer))
    }

    /// Record `inner_id` from `peer` as processed until `expires_at` (unix seconds).
    pub fn mark_seen(self, peer: &[u8; 32], inner_id: &[u8; 16], expires_at: u64) -> Self {
        self.op(Op::MarkSeen {
            peer: *peer,
            inner_id: *inner_id,
            expires_at,
        })
    }

    /// Set a `meta` value (`store.*` keys fail the commit).
    pub fn put_meta(self, key: &str, value: &[u8]) -> Self {
        self.op(Op::PutMeta(key.to_owned(), value.to_vec()))
    }

    /// Remove a `meta` value (`store.*` keys fail the commit).
    pub fn delete_meta(self, key: &str) -> Self {
        self.op(Op::DeleteMeta(key.to_owned()))
    }

    /// Insert or replace an API token.
    pub fn put_token(self, t: &TokenRecord) -> Self {
        self.op(Op::PutToken(t.clone()))
    }

    /// Remove an API token.
    pub fn delete_token(self, id: &str) -> Self {
        self.op(Op::DeleteToken(id.to_owned()))
    }

    /// Insert or replace a group.
    pub fn put_group(self, g: &GroupRecord) -> Self {
        self.op(Op::PutGroup(g.clone()))
    }

    /// Remove a group (its messages stay).
    pub fn delete_group(self, id: &[u8; 32]) -> Self {
        self.op(Op::DeleteGroup(*id))
    }

    /// Record how far a sent group message got with one member.
    pub fn put_member_state(self, message: &[u8; 16], s: &MemberState) -> Self {
        self.op(Op::PutMemberState(*message, s.member, s.state, s.at_ms))
    }

    /// Insert or replace a file record (and its attachment and root rows).
    pub fn put_file(self, f: &FileRecord) -> Self {
        self.op(Op::PutFile(Box::new(f.clone())))
    }

    /// Remove a file record and its rows.
    pub fn delete_file(self, f: &FileRecord) -> Self {
        self.op(Op::DeleteFile(Box::new(f.clone())))
    }

    /// Moves `other`'s operations to the end of this transaction.
    pub fn append(&mut self, other: Txn<'_>) {
        self.ops.extend(other.ops);
    }

    /// Number of queued operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Write everything as one atomic batch. On error nothing is written.
    pub fn commit(self) -> Result<()> {
        self.commit_as(false)
    }

    /// [`commit`](Txn::commit) for what the node is about to promise (an `accepted` answer, a
    /// send the app is told is queued): refused with [`StoreError::StorageFull`] if it would
    /// leave less than the free-space reserve, and fsynced before it returns, so a power cut
    /// cannot take it back. Concurrent durable commits share one fsync.
    pub fn commit_durable(self) -> Result<()> {
        self.commit_as(true)
    }

    fn commit_as(self, durable: bool) -> Result<()> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let store = self.store;
        let inner = &store.inner;
        let _guard = lock(&inner.txn_lock);
        let mut r = Resolver::new(inner.backend.as_ref(), &inner.opts);
        for op in self.ops {
            r.apply(op)?;
        }
        if durable {
            store.ensure_space(r.batch.bytes())?;
        }
        store.write(r.batch, durable)
    }
}

/// Turns typed operations into raw batch operations, reading current state where needed and
/// remembering what this batch already changed.
struct Resolver<'s> {
    backend: &'s dyn Backend,
    opts: &'s StoreOptions,
    batch: Batch,
    messages: HashMap<[u8; 16], Option<MessageRecord>>,
    seen: HashMap<([u8; 32], [u8; 16]), Option<u64>>,
}

impl<'s> Resolver<'s> {
    fn new(backend: &'s dyn Backend, opts: &'s StoreOptions) -> Self {
        Self {
            backend,
            opts,
            batch: Batch::new(),
            messages: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    fn apply(&mut self, op: Op) -> Result<()> {
        match op {
            Op::PutContact(c) => {
                self.batch.put(Cf::Contacts, c.identity_key, c.to_bytes());
            }
            Op::DeleteContact(k) => {
                self.batch.delete(Cf::Contacts, k);
            }
            Op::PutMessage(m) => self.put_message(m)?,
            Op::SetMessageState { id, state, relays } => {
                self.set_message_state(&id, state, relays)?;
            }
            Op::DeleteMessage(id) => {
                self.delete_message(&id)?;
            }
            Op::PutOutbox(o) => {
                self.batch.put(Cf::Outbox, o.id, o.to_bytes());
            }
            Op::DeleteOutbox(id) => {
                self.batch.delete(Cf::Outbox, id);
            }
            Op::PutSession(peer, state) => {
                self.batch.put(Cf::Sessions, peer, state);
            }
            Op::DeleteSession(peer) => {
                self.batch.delete(Cf::Sessions, peer);
            }
            Op::MarkSeen {
                peer,
                inner_id,
                expires_at,
            } => self.mark_seen(&peer, &inner_id, expires_at)?,
            Op::PutMeta(k, v) => {
                self.batch.put(Cf::Meta, meta_key_checked(&k)?, v);
            }
            Op::DeleteMeta(k) => {
                self.batch.delete(Cf::Meta, meta_key_checked(&k)?);
            }
            Op::PutToken(t) => {
                self.batch.put(Cf::Tokens, t.id.as_bytes(), t.to_bytes());
            }
            Op::DeleteToken(id) => {
                self.batch.delete(Cf::Tokens, id.as_bytes());
            }
            Op::PutGroup(g) => {
                self.batch.put(Cf::Groups, g.id, g.to_bytes());
            }
            Op::DeleteGroup(id) => {
                self.batch.delete(Cf::Groups, id);
            }
            Op::PutFile(f) => {
                for (k, v) in files::rows(&f) {
                    self.batch.put(Cf::Files, k, v);
                }
            }
            Op::DeleteFile(f) => {
                for k in files::keys(&f) {
                    self.batch.delete(Cf::Files, k);
                }
            }
            Op::PutMemberState(message, member, state, at_ms) => {
                self.batch.put(
                    Cf::MemberStates,
                    member_states::key(&message, &member),
                    member_states::value(state, at_ms),
                );
            }
        }
        Ok(())
    }

    fn load_message(&mut self, id: &[u8; 16]) -> Result<Option<MessageRecord>> {
        if let Some(m) = self.messages.get(id) {
            return Ok(m.clone());
        }
        let m = read_message(self.backend, id)?;
        self.messages.insert(*id, m.clone());
        Ok(m)
    }

    fn write_message(&mut self, m: &MessageRecord) {
        let key = message_key(&m.conversation, m.received_at_ms, &m.id);
        self.batch.put(Cf::Messages, key.clone(), m.to_bytes());
        self.batch.put(Cf::MessageIndex, m.id, key);
        let time_key = message_time_key(m.received_at_ms, &m.id);
        if m.held {
            self.batch.delete(Cf::MessageTime, time_key);
        } else {
            self.batch.put(Cf::MessageTime, time_key, m.conversation);
        }
        self.messages.insert(m.id, Some(m.clone()));
    }

    fn remove_message_keys(&mut self, m: &MessageRecord) {
        self.batch.delete(
            Cf::Messages,
            message_key(&m.conversation, m.received_at_ms, &m.id),
        );
        self.batch
            .delete(Cf::MessageTime, message_time_key(m.received_at_ms, &m.id));
    }

    fn put_message(&mut self, m: MessageRecord) -> Result<()> {
        if let Some(old) = self.load_message(&m.id)? {
            if old.conversation != m.conversation
                || old.direction != m.direction
                || old.from != m.from
            {
                return Err(StoreError::MessageIdConflict);
            }
            if old.received_at_ms != m.received_at_ms {
                self.remove_message_keys(&old);
            }
        }
        self.write_message(&m);
        if m.direction == Direction::Incoming {
            let expires_at = (m.received_at_ms / 1000).saturating_add(self.opts.seen_ttl_secs);
            self.mark_seen(&m.from, &m.id, expires_at)?;
        }
        Ok(())
    }

    fn set_message_state(
        &mut self,
        id: &[u8; 16],
        state: MessageState,
        relays: Option<u32>,
    ) -> Result<Option<MessageRecord>> {
        let Some(mut m) = self.load_message(id)? else {
            return Ok(None);
        };
        m.state = state;
        if let Some(r) = relays {
            m.relays = r;
        }
        m.updated_at_ms = now_ms().max(m.updated_at_ms);
        self.batch.put(
            Cf::Messages,
            message_key(&m.conversation, m.received_at_ms, &m.id),
            m.to_bytes(),
        );
        self.messages.insert(*id, Some(m.clone()));
        Ok(Some(m))
    }

    fn delete_message(&mut self, id: &[u8; 16]) -> Result<bool> {
        let Some(old) = self.load_message(id)? else {
            return Ok(false);
        };
        self.remove_message_keys(&old);
        self.batch.delete(Cf::MessageIndex, id);
        if old.group {
            let (lo, hi) = member_states::range(id);
            self.batch.delete_range(Cf::MemberStates, lo, hi);
        }
        self.messages.insert(*id, None);
        Ok(true)
    }

    fn mark_seen(&mut self, peer: &[u8; 32], inner_id: &[u8; 16], expires_at: u64) -> Result<()> {
        let slot = (*peer, *inner_id);
        let old = match self.seen.get(&slot) {
            Some(v) => *v,
            None => self
                .backend
                .get(Cf::Seen, &seen_key(peer, inner_id))?
                .map(|v| {
                    keys::expect_len("seen value", &v, 8)
                        .and_then(|()| keys::u64_at("seen value", &v, 0))
                })
                .transpose()?,
        };
        if let Some(old) = old {
            if old >= expires_at {
                return Ok(());
            }
            self.batch
                .delete(Cf::Seen, seen_expiry_key(old, peer, inner_id));
        }
        self.batch
            .put(Cf::Seen, seen_key(peer, inner_id), expires_at.to_be_bytes());
        self.batch.put(
            Cf::Seen,
            seen_expiry_key(expires_at, peer, inner_id),
            Vec::new(),
        );
        self.seen.insert(slot, Some(expires_at));
        Ok(())
    }
}
