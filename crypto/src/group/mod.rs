//! Groups, beside the 1:1 session code (as libsignal keeps its group cipher next to its
//! sessions). This module holds the membership log; [`sender_key`] the sender keys (one
//! encryption per message, Signal-style).
//!
//! # Membership log
//!
//! A group's membership is a DAG of signed [`Change`]s (`proto/tokenim/v1/group.proto`). The
//! first, the **genesis**, is a create signed by the owner; the **group id** is its id,
//! SHA-256 of its `SignedGroupChange` encoding. Every other change names the group and the
//! **heads** its author saw (its parents), and is signed by its author's identity key
//! (context `tokenim/v1/group-change`). The log is a hash-linked history: nobody can insert a
//! change into another member's past.
//!
//! **Order.** All changes are ordered by (depth, id), depth being 0 for the genesis and one
//! more than the deepest parent otherwise: a topological order that every member computes the
//! same from the same set of changes. The state (members, roles, name) is the replay of that
//! order from the genesis; a change takes effect when, at its place:
//!
//! * its author may make it: admins and the owner add members and rename; only the owner adds
//!   admins, removes admins and sets roles (role owner hands ownership over, the old owner
//!   becomes an admin); admins remove members, nobody removes the owner; anyone leaves, but the
//!   owner hands ownership over first unless alone. A change that would do nothing (adding a
//!   member, renaming to the same name) is not allowed either;
//! * it would not break a limit: the member limit fixed in the genesis
//!   ([`DEFAULT_MAX_MEMBERS`] by default, at most [`MAX_MEMBERS_LIMIT`]);
//! * for a join: the invite is of this group, signed by someone who is an admin or the owner
//!   *at that place*, the join's `created_at` is not after the invite's expiry, and fewer than
//!   `max_uses` joins through it took effect earlier in the order;
//! * no **concurrent** change (neither an ancestor nor a descendant of it) removes or demotes
//!   the person whose rights it rests on (its author; for a join, the inviter) below the role
//!   needed. So an admin removed by the owner cannot slip changes in "beside" the removal by
//!   naming old heads: a removal voids what the removed did concurrently, whatever the order.
//!
//! **Admission.** A change is only kept if its author was entitled to it in its own history
//! (the replay of its ancestors), and its `created_at` is not before its parents'. Both depend
//! on the change alone, so every member keeps the same changes; a change admitted that way can
//! still be without effect in the full order (a concurrent removal). Changes whose parents are
//! unknown wait in a bounded buffer ([`MAX_PENDING_CHANGES`]) until their parents arrive.
//!
//! **Convergence.** The state is a function of the set of admitted changes, which is a function
//! of the set of changes received: members that received the same changes, in any order, have
//! the same members, roles, name and heads (a property test checks this with random
//! interleavings and concurrent changes by several admins).
//!
//! **Invites.** An [`Invite`] (`tokenim-group:` link) is signed by an admin and carries the
//! log's heads, an expiry, a use limit and a random id; a joiner signs a join naming those
//! heads ([`Invite::join`]) and sends it to any member. No admin needs to be online. Expiry is
//! checked against the join's own `created_at`: it cannot be before the invite's heads, but a
//! joiner can backdate it within the invite's lifetime.
//!
//! **Clocks.** A change's `created_at` is at least its parents' ([`GroupLog::propose`] takes
//! care of that). Changes from the network go through [`GroupLog::apply_at`], which refuses one
//! dated more than [`MAX_CLOCK_SKEW_SECS`] ahead of the receiver's clock (it is accepted when
//! offered again later), so nobody can drag the log's time into the future and expire every
//! invite.
//!
//! **Bounds.** [`MAX_CHANGE_BYTES`] per change, [`MAX_GROUP_NAME_BYTES`] per name,
//! [`MAX_PARENTS`] parents, [`MAX_INITIAL_MEMBERS`] in the genesis, [`MAX_LOG_CHANGES`] and
//! [`MAX_LOG_BYTES`] per log, [`MAX_PENDING_CHANGES`] and [`MAX_PENDING_BYTES`] buffered.

mod log;
pub mod sender_key;

pub use log::*;
