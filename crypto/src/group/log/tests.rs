//! Membership log tests: encoding, permissions, concurrency, invites, limits, persistence, and
//! the convergence property (same changes in any order, same state).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use prost::Message as _;
use sha2::{Digest, Sha256};

use super::*;
use crate::sign::{self, CTX_GROUP_CHANGE};

fn party(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

fn key(i: &Identity) -> [u8; 32] {
    i.public_ref().identity_key
}

/// Owner (1), admins A (2) and B (3), member M (4); outsiders are 5 and up.
struct Group {
    owner: Identity,
    a: Identity,
    b: Identity,
    m: Identity,
    log: GroupLog,
    genesis: Change,
}

fn group() -> Group {
    let (owner, a, b, m) = (party(1), party(2), party(3), party(4));
    let (log, genesis) = GroupLog::create(
        &owner,
        "friends",
        &[
            (key(&a), Role::Admin),
            (key(&b), Role::Admin),
            (key(&m), Role::Member),
        ],
        1_000,
    )
    .unwrap();
    Group {
        owner,
        a,
        b,
        m,
        log,
        genesis,
    }
}

/// A fresh member's log from the genesis with `changes` applied in that order.
fn replay(genesis: &Change, changes: &[Change]) -> GroupLog {
    let mut log = GroupLog::from_genesis(genesis.clone()).unwrap();
    for c in changes {
        let _ = log.apply(c.clone());
    }
    log
}

/// What must converge: members and roles, name, heads, number of changes kept.
type View = (Vec<([u8; 32], Role)>, String, Vec<[u8; 32]>, usize);

fn view(log: &GroupLog) -> View {
    (log.members(), log.name().to_owned(), log.heads(), log.len())
}

fn add(who: &Identity, role: Role) -> ChangeKind {
    ChangeKind::Add {
        member: key(who),
        role,
    }
}

fn remove(who: &Identity) -> ChangeKind {
    ChangeKind::Remove { member: key(who) }
}

fn not_allowed<T: fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(CryptoError::GroupNotAllowed(_)))
}

#[test]
fn create_names_the_group_after_its_genesis() {
    let g = group();
    let id = g.log.id();
    assert_eq!(id.0, <[u8; 32]>::from(Sha256::digest(g.genesis.to_bytes())));
    assert_eq!(g.genesis.id(), id.0);
    assert_eq!(g.genesis.group(), id);
    assert_eq!(g.log.name(), "friends");
    assert_eq!(g.log.role_of(&key(&g.owner)), Some(Role::Owner));
    assert_eq!(g.log.role_of(&key(&g.a)), Some(Role::Admin));
    assert_eq!(g.log.role_of(&key(&g.m)), Some(Role::Member));
    assert_eq!(g.log.role_of(&key(&party(9))), None);
    assert_eq!(g.log.members().len(), 4);
    assert_eq!(g.log.heads(), vec![id.0]);
    assert_eq!(g.log.max_members(), DEFAULT_MAX_MEMBERS);
    assert_eq!(g.log.changes(), vec![g.genesis.clone()]);
    let text = id.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<GroupId>().unwrap(), id);
    assert!("xyz".parse::<GroupId>().is_err());
    assert_eq!(
        serde_json::from_str::<GroupId>(&serde_json::to_string(&id).unwrap()).unwrap(),
        id
    );
    assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
    assert_eq!(serde_json::to_string(&Role::Owner).unwrap(), "\"owner\"");
    // Same inputs, another group: the genesis nonce.
    let (other, _) = GroupLog::create(&g.owner, "friends", &[], 1_000).unwrap();
    assert_ne!(other.id(), id);
    // A member learning the group from its genesis sees the same.
    let member = GroupLog::from_genesis(Change::from_bytes(&g.genesis.to_bytes()).unwrap());
    assert_eq!(view(&member.unwrap()), view(&g.log));
}

#[test]
fn change_encoding_is_strict() {
    let mut g = group();
    let c = g
        .log
        .propose(&g.a, add(&party(5), Role::Member), 1_001)
        .unwrap();
    let bytes = c.to_bytes();
    assert_eq!(Change::from_bytes(&bytes).unwrap(), c);
    assert_eq!(c.author(), key(&g.a));
    assert_eq!(c.group(), g.log.id());
    assert_eq!(c.parents(), &[g.genesis.id()]);
    // Any flipped bit in the signed body or the signature is refused.
    let signed = pb::SignedGroupChange::decode(bytes.as_slice()).unwrap();
    for i in 0..signed.change.len() {
        let mut s = signed.clone();
        s.change[i] ^= 0x01;
        assert!(Change::from_bytes(&s.encode_to_vec()).is_err(), "byte {i}");
    }
    let mut s = signed.clone();
    s.signature[7] ^= 0x80;
    assert!(matches!(
        Change::from_bytes(&s.encode_to_vec()),
        Err(CryptoError::BadSignature(_))
    ));
    // Another encoding of the same change (an unknown field appended) would be another id.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0x20, 0x01]);
    assert!(matches!(
        Change::from_bytes(&longer),
        Err(CryptoError::Malformed { .. })
    ));
    let mut v2 = signed.clone();
    v2.version = 2;
    assert!(matches!(
        Change::from_bytes(&v2.encode_to_vec()),
        Err(CryptoError::UnsupportedVersion { version: 2, .. })
    ));
    assert!(Change::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Change::from_bytes(&vec![0; MAX_CHANGE_BYTES + 1]).is_err());
    assert!(Change::from_bytes(&[]).is_err());
}

/// Signs an arbitrary body as `who` (to build changes `Change::sign` would refuse).
fn sign_raw(who: &Identity, body: &pb::GroupChange) -> Vec<u8> {
    let body = body.encode_to_vec();
    let sig = sign::sign(
        who.signing_key(),
        CTX_GROUP_CHANGE,
        &[&CHANGE_VERSION.to_be_bytes(), &body],
    );
    pb::SignedGroupChange {
        version: CHANGE_VERSION,
        change: body,
        signature: sig.to_vec(),
    }
    .encode_to_vec()
}

#[test]
fn change_structure_is_checked() {
    let g = group();
    let me = &g.a;
    let base = pb::GroupChange {
        group: g.log.id().0.to_vec(),
        parents: vec![g.genesis.id().to_vec()],
        author: key(me).to_vec(),
        created_at: 5,
        kind: Some(pb::group_change::Kind::Leave(pb::GroupChangeLeave {})),
    };
    assert!(Change::from_bytes(&sign_raw(me, &base)).is_ok());
    let malformed = |body: &pb::GroupChange| {
        matches!(
            Change::from_bytes(&sign_raw(me, body)),
            Err(CryptoError::Malformed { .. })
        )
    };
    let mut b = base.clone();
    b.parents.clear();
    assert!(malformed(&b), "no parents");
    let mut b = base.clone();
    b.group.clear();
    assert!(malformed(&b), "no group");
    let mut b = base.clone();
    b.parents = vec![vec![2; 32], vec![1; 32]];
    assert!(malformed(&b), "unsorted parents");
    let mut b = base.clone();
    b.parents = vec![vec![1; 32]; 2];
    assert!(malformed(&b), "repeated parent");
    let mut b = base.clone();
    b.parents = (0..=MAX_PARENTS as u8).map(|i| vec![i; 32]).collect();
    assert!(malformed(&b), "too many parents");
    let mut b = base.clone();
    b.kind = None;
    assert!(malformed(&b), "no kind");
    let mut b = base.clone();
    b.kind = Some(pb::group_change::Kind::Add(pb::GroupChangeAdd {
        member: key(&party(5)).to_vec(),
        role: Role::Owner.code(),
    }));
    assert!(malformed(&b), "add as owner");
    let mut b = base.clone();
    b.kind = Some(pb::group_change::Kind::SetRole(pb::GroupChangeSetRole {
        member: key(&party(5)).to_vec(),
        role: 0,
    }));
    assert!(malformed(&b), "unspecified role");
    let mut b = base.clone();
    b.kind = Some(pb::group_change::Kind::Rename(pb::GroupChangeRename {
        name: "x".repeat(MAX_GROUP_NAME_BYTES + 1),
    }));
    assert!(malformed(&b), "long name");
    let mut b = base.clone();
    b.kind = Some(pb::group_change::Kind::Add(pb::GroupChangeAdd {
        member: [0u8; 32].to_vec(), // a small-order point: never a usable identity
        role: Role::Member.code(),
    }));
    assert!(matches!(
        Change::from_bytes(&sign_raw(me, &b)),
        Err(CryptoError::InvalidPublicKey(_))
    ));
    // A create with parents.
    let mut b = base.clone();
    b.kind = Some(pb::group_change::Kind::Create(pb::GroupChangeCreate {
        name: "g".into(),
        members: vec![],
        max_members: 10,
        nonce: vec![0; 16],
    }));
    assert!(malformed(&b), "create with parents");
    // Signed by someone else than the author it names.
    assert!(matches!(
        Change::from_bytes(&sign_raw(&g.b, &base)),
        Err(CryptoError::BadSignature(_))
    ));
}

#[test]
fn who_may_do_what() {
    let mut g = group();
    let (x, y) = (party(5), party(6));
    // A member may only leave.
    assert!(not_allowed(g.log.propose(
        &g.m,
        add(&x, Role::Member),
        1_001
    )));
    assert!(not_allowed(g.log.propose(&g.m, remove(&g.a), 1_001)));
    let rename = |n: &str| ChangeKind::Rename { name: n.into() };
    assert!(not_allowed(g.log.propose(&g.m, rename("mine"), 1_001)));
    assert!(not_allowed(g.log.create_invite(&g.m, 2_000, 1)));
    // An outsider nothing.
    assert!(not_allowed(g.log.propose(&x, add(&y, Role::Member), 1_001)));
    assert!(not_allowed(g.log.propose(&x, ChangeKind::Leave, 1_001)));
    // Admins add members, not admins; remove members, not admins; rename; set no roles.
    g.log.propose(&g.a, add(&x, Role::Member), 1_002).unwrap();
    assert!(not_allowed(g.log.propose(
        &g.a,
        add(&y, Role::Admin),
        1_002
    )));
    assert!(not_allowed(g.log.propose(
        &g.a,
        add(&x, Role::Member),
        1_002
    )));
    assert!(not_allowed(g.log.propose(&g.a, remove(&g.b), 1_002)));
    assert!(not_allowed(g.log.propose(&g.a, remove(&g.owner), 1_002)));
    let promote = ChangeKind::SetRole {
        member: key(&x),
        role: Role::Admin,
    };
    assert!(not_allowed(g.log.propose(&g.a, promote.clone(), 1_002)));
    g.log.propose(&g.a, rename("best friends"), 1_003).unwrap();
    assert!(not_allowed(g.log.propose(
        &g.b,
        rename("best friends"),
        1_003
    )));
    g.log.propose(&g.b, remove(&x), 1_004).unwrap();
    assert_eq!(g.log.role_of(&key(&x)), None);
    assert!(not_allowed(g.log.propose(&g.b, remove(&x), 1_004)));
    // The owner adds admins, removes admins, sets roles.
    g.log
        .propose(&g.owner, add(&y, Role::Admin), 1_005)
        .unwrap();
    g.log.propose(&g.owner, remove(&g.b), 1_006).unwrap();
    let demote = ChangeKind::SetRole {
        member: key(&g.a),
        role: Role::Member,
    };
    g.log.propose(&g.owner, demote.clone(), 1_007).unwrap();
    assert!(not_allowed(g.log.propose(&g.owner, demote, 1_007)));
    assert!(not_allowed(g.log.propose(&g.a, rename("a's now"), 1_008)));
    // Anyone leaves, but the owner only after handing ownership over.
    g.log.propose(&g.m, ChangeKind::Leave, 1_009).unwrap();
    assert!(not_allowed(g.log.propose(&g.m, ChangeKind::Leave, 1_009)));
    assert!(not_allowed(g.log.propose(
        &g.owner,
        ChangeKind::Leave,
        1_009
    )));
    let own_role = ChangeKind::SetRole {
        member: key(&g.owner),
        role: Role::Admin,
    };
    assert!(not_allowed(g.log.propose(&g.owner, own_role, 1_009)));
    let hand_over = ChangeKind::SetRole {
        member: key(&y),
        role: Role::Owner,
    };
    g.log.propose(&g.owner, hand_over, 1_010).unwrap();
    assert_eq!(g.log.role_of(&key(&y)), Some(Role::Owner));
    assert_eq!(g.log.role_of(&key(&g.owner)), Some(Role::Admin));
    assert!(not_allowed(g.log.propose(&g.owner, promote, 1_011)));
    g.log.propose(&g.owner, ChangeKind::Leave, 1_011).unwrap();
    let owners = g
        .log
        .members()
        .iter()
        .filter(|(_, r)| *r == Role::Owner)
        .count();
    assert_eq!(owners, 1);
    assert!(not_allowed(g.log.propose(
        &g.owner,
        ChangeKind::Create {
            name: "again".into(),
            members: vec![],
            max_members: 10,
            nonce: [0; 16],
        },
        1_012
    )));
    // Every member that gets the changes agrees.
    assert_eq!(view(&replay(&g.genesis, &g.log.changes())), view(&g.log));
}

#[test]
fn changes_by_non_admins_and_removed_admins_are_rejected_everywhere() {
    let mut g = group();
    let x = party(5);
    let parents = g.log.heads();
    // A member forges an add (signed by themselves, with the right parents).
    let forged = Change::sign(
        &g.m,
        Some(g.log.id()),
        parents.clone(),
        add(&x, Role::Member),
        1_001,
    )
    .unwrap();
    assert!(not_allowed(g.log.apply(forged.clone())));
    // A stranger too.
    let stranger =
        Change::sign(&x, Some(g.log.id()), parents, add(&x, Role::Member), 1_001).unwrap();
    assert!(not_allowed(g.log.apply(stranger)));
    // The owner removes admin A; A's next change, made after seeing that, is rejected.
    let r = g.log.propose(&g.owner, remove(&g.a), 1_002).unwrap();
    let mut seen = g.log.clone();
    assert!(not_allowed(seen.propose(
        &g.a,
        add(&x, Role::Member),
        1_003
    )));
    let late = Change::sign(
        &g.a,
        Some(g.log.id()),
        vec![r.id()],
        add(&x, Role::Member),
        1_003,
    )
    .unwrap();
    for order in [vec![r.clone(), late.clone()], vec![late.clone(), r.clone()]] {
        let mut log = GroupLog::from_genesis(g.genesis.clone()).unwrap();
        for c in order {
            let _ = log.apply(c);
        }
        assert!(log.change(&late.id()).is_none());
        assert_eq!(log.pending_len(), 0);
        assert_eq!(log.role_of(&key(&x)), None);
        assert_eq!(log.heads(), vec![r.id()]);
    }
    // A change of another group.
    let (mut other, _) = GroupLog::create(&g.owner, "other", &[], 1_000).unwrap();
    assert!(matches!(
        other.apply(r.clone()),
        Err(CryptoError::WrongGroup)
    ));
    assert!(matches!(
        g.log.apply(other.genesis().unwrap().clone()),
        Err(CryptoError::WrongGroup)
    ));
    // Nor into the future: a change dated ahead of the receiver's clock waits until it is not.
    let ahead = Change::sign(
        &g.owner,
        Some(g.log.id()),
        vec![r.id()],
        add(&x, Role::Member),
        9_000,
    )
    .unwrap();
    assert!(matches!(
        g.log
            .clone()
            .apply_at(ahead.clone(), 9_000 - MAX_CLOCK_SKEW_SECS - 1),
        Err(CryptoError::OutsideTimeWindow { .. })
    ));
    assert_eq!(
        g.log
            .clone()
            .apply_at(ahead, 9_000 - MAX_CLOCK_SKEW_SECS)
            .unwrap(),
        Applied::New
    );
    // Time never runs backwards along the log.
    let early = Change::sign(
        &g.owner,
        Some(g.log.id()),
        vec![r.id()],
        add(&x, Role::Member),
        999,
    )
    .unwrap();
    assert!(not_allowed(g.log.apply(early)));
}

#[test]
fn a_removal_voids_what_the_removed_admin_did_concurrently() {
    let g = group();
    let (x, y) = (party(5), party(6));
    // The owner's replica: two renames, then removes admin A (depth 3).
    let mut owner = g.log.clone();
    owner
        .propose(&g.owner, ChangeKind::Rename { name: "one".into() }, 1_001)
        .unwrap();
    owner
        .propose(&g.owner, ChangeKind::Rename { name: "two".into() }, 1_002)
        .unwrap();
    let r = owner.propose(&g.owner, remove(&g.a), 1_003).unwrap();
    // A, not having seen any of it, adds X (depth 1: before the removal in the order).
    let mut a = g.log.clone();
    let x_in = a.propose(&g.a, add(&x, Role::Member), 1_004).unwrap();
    // And later, having seen the removal, backdates: names the genesis as its only parent.
    let backdated = Change::sign(
        &g.a,
        Some(g.log.id()),
        vec![g.genesis.id()],
        add(&y, Role::Member),
        1_005,
    )
    .unwrap();
    let mut all = owner.changes();
    all.push(x_in);
    all.push(backdated);
    let forward = replay(&g.genesis, &all);
    all.reverse();
    let backward = replay(&g.genesis, &all);
    for log in [&forward, &backward] {
        assert_eq!(
            log.len(),
            6,
            "A's changes are kept (A was entitled in their history)"
        );
        assert_eq!(log.role_of(&key(&g.a)), None);
        assert_eq!(
            log.role_of(&key(&x)),
            None,
            "voided by the concurrent removal"
        );
        assert_eq!(
            log.role_of(&key(&y)),
            None,
            "voided by the concurrent removal"
        );
        assert_eq!(log.name(), "two");
    }
    assert_eq!(view(&forward), view(&backward));
    assert_eq!(forward.heads().len(), 3);
    assert!(forward.heads().contains(&r.id()));
}

#[test]
fn a_demotion_voids_the_demoted_admins_concurrent_changes_and_invites() {
    let g = group();
    let (x, y) = (party(5), party(6));
    let invite = g.log.create_invite(&g.a, 5_000, 10).unwrap();
    let mut owner = g.log.clone();
    let d = owner
        .propose(
            &g.owner,
            ChangeKind::SetRole {
                member: key(&g.a),
                role: Role::Member,
            },
            1_001,
        )
        .unwrap();
    let mut a = g.log.clone();
    let rename = a
        .propose(&g.a, ChangeKind::Rename { name: "a's".into() }, 1_002)
        .unwrap();
    let add_x = a.propose(&g.a, add(&x, Role::Member), 1_003).unwrap();
    // Y joins through A's invite without having seen the demotion (its parents: the invite's).
    let join = invite.join(&y, 1_004).unwrap();
    let all = [d.clone(), rename, add_x, join.clone()];
    let mut views = Vec::new();
    for rot in 0..all.len() {
        let mut order = all.to_vec();
        order.rotate_left(rot);
        let log = replay(&g.genesis, &order);
        assert_eq!(log.len(), 5);
        assert_eq!(log.name(), "friends");
        assert_eq!(log.role_of(&key(&x)), None);
        assert_eq!(log.role_of(&key(&y)), None);
        assert_eq!(log.role_of(&key(&g.a)), Some(Role::Member));
        views.push(view(&log));
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]));
    // A join made after the demotion is refused outright.
    let mut log = replay(&g.genesis, &all);
    let late_join = log.propose(
        &party(7),
        ChangeKind::Join {
            invite: invite.to_bytes(),
        },
        1_005,
    );
    assert!(not_allowed(late_join));
}

#[test]
fn concurrent_adds_and_removes_by_two_admins_converge() {
    let g = group();
    let (x, y, z) = (party(5), party(6), party(7));
    let mut a = g.log.clone();
    let mut b = g.log.clone();
    let mut changes = vec![
        a.propose(&g.a, add(&x, Role::Member), 1_001).unwrap(),
        a.propose(&g.a, remove(&g.m), 1_002).unwrap(),
        b.propose(&g.b, add(&x, Role::Member), 1_001).unwrap(),
        b.propose(&g.b, add(&y, Role::Member), 1_002).unwrap(),
        b.propose(&g.b, remove(&g.m), 1_003).unwrap(),
        b.propose(&g.b, ChangeKind::Rename { name: "b".into() }, 1_004)
            .unwrap(),
    ];
    // A removes Y in A's view after merging B's first two.
    for c in &changes[2..4] {
        a.apply(c.clone()).unwrap();
    }
    changes.push(a.propose(&g.a, remove(&y), 1_005).unwrap());
    changes.push(a.propose(&g.a, add(&z, Role::Member), 1_006).unwrap());
    changes.push(
        a.propose(&g.a, ChangeKind::Rename { name: "a".into() }, 1_007)
            .unwrap(),
    );
    let reference = view(&replay(&g.genesis, &changes));
    let mut seed = 0x1234_5678_u64;
    for _ in 0..20 {
        shuffle(&mut changes, &mut seed);
        assert_eq!(view(&replay(&g.genesis, &changes)), reference);
    }
    let log = replay(&g.genesis, &changes);
    assert_eq!(log.role_of(&key(&x)), Some(Role::Member));
    assert_eq!(log.role_of(&key(&y)), None);
    assert_eq!(log.role_of(&key(&z)), Some(Role::Member));
    assert_eq!(log.role_of(&key(&g.m)), None);
    assert_eq!(log.len(), 1 + changes.len());
    // Both renames are concurrent: the later in the order wins.
    assert!(log.name() == "a" || log.name() == "b");
}

/// Fisher–Yates with a xorshift generator (deterministic).
fn shuffle<T>(v: &mut [T], state: &mut u64) {
    for i in (1..v.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (*state % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[test]
fn changes_wait_for_their_parents() {
    let mut g = group();
    let xs: Vec<Identity> = (5..9).map(party).collect();
    let chain: Vec<Change> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            g.log
                .propose(&g.a, add(x, Role::Member), 1_001 + i as u64)
                .unwrap()
        })
        .collect();
    let mut log = GroupLog::from_genesis(g.genesis.clone()).unwrap();
    assert_eq!(log.apply(chain[3].clone()).unwrap(), Applied::Pending);
    assert_eq!(log.apply(chain[2].clone()).unwrap(), Applied::Pending);
    assert_eq!(log.apply(chain[2].clone()).unwrap(), Applied::Pending);
    assert_eq!(log.pending_len(), 2);
    assert_eq!(log.missing(), vec![chain[1].id()]);
    assert_eq!(log.changes_since(&[]).len(), 1);
    // Persisted while waiting: nothing accepted is lost.
    let stored = GroupLog::from_bytes(&log.to_bytes()).unwrap();
    assert_eq!(stored.pending_len(), 2);
    assert_eq!(log.apply(chain[0].clone()).unwrap(), Applied::New);
    assert_eq!(log.missing(), vec![chain[1].id()]);
    assert_eq!(log.apply(chain[1].clone()).unwrap(), Applied::New);
    assert_eq!(log.pending_len(), 0);
    assert_eq!(view(&log), view(&g.log));
    assert_eq!(log.apply(chain[1].clone()).unwrap(), Applied::Duplicate);
    assert_eq!(log.apply(g.genesis.clone()).unwrap(), Applied::Duplicate);
    // What a member at chain[1] lacks.
    let since = g.log.changes_since(&[chain[1].id(), [9; 32]]);
    assert_eq!(since, chain[2..].to_vec());
}

#[test]
fn the_wait_buffer_is_bounded() {
    let g = group();
    let mut log = g.log.clone();
    let x = party(5);
    let mut refused = None;
    for n in 0..=MAX_PENDING_CHANGES as u32 {
        let mut parent = [0u8; 32];
        parent[..4].copy_from_slice(&n.to_be_bytes());
        let orphan =
            Change::sign(&x, Some(g.log.id()), vec![parent], ChangeKind::Leave, 1).unwrap();
        if let Err(e) = log.apply(orphan) {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.unwrap();
    assert_eq!(n as usize, MAX_PENDING_CHANGES);
    assert!(matches!(e, CryptoError::GroupLimit(_)));
    assert_eq!(log.pending_len(), MAX_PENDING_CHANGES);
    assert_eq!(log.missing().len(), MAX_PENDING_CHANGES);
}

#[test]
fn invites_let_outsiders_join_within_their_limits() {
    let g = group();
    let (x, y, z) = (party(5), party(6), party(7));
    let invite = g
        .log
        .create_invite_with_contact(&g.a, 2_000, 2, "tokenim:card")
        .unwrap();
    let uri = invite.to_uri();
    assert!(uri.starts_with(INVITE_URI_PREFIX));
    let read = Invite::from_uri(&format!(" {uri}\n"), 1_500).unwrap();
    assert_eq!(read, invite);
    assert_eq!(read.group(), g.log.id());
    assert_eq!(read.inviter(), key(&g.a));
    assert_eq!(read.max_uses(), 2);
    assert_eq!(read.heads(), g.log.heads().as_slice());
    assert_eq!(read.contact(), "tokenim:card");
    assert!(matches!(
        Invite::from_uri(&uri, 2_001),
        Err(CryptoError::InviteExpired { .. })
    ));
    assert!(Invite::from_uri("tokenim-group:!!", 0).is_err());
    assert!(Invite::from_uri("tokenim:abc", 0).is_err());
    let raw = b64_decode(&uri[INVITE_URI_PREFIX.len()..]);
    let mut signed = pb::SignedGroupInvite::decode(raw.as_slice()).unwrap();
    signed.invite[3] ^= 1;
    assert!(Invite::from_bytes(&signed.encode_to_vec()).is_err());

    // Three outsiders join at once through a two-use invite: two count, the same two
    // everywhere.
    let joins: Vec<Change> = [&x, &y, &z]
        .iter()
        .map(|p| invite.join(p, 1_100).unwrap())
        .collect();
    let mut members = Vec::new();
    for rot in 0..3 {
        let mut order = joins.clone();
        order.rotate_left(rot);
        let log = replay(&g.genesis, &order);
        assert_eq!(log.len(), 4, "all joins are kept");
        let joined: Vec<bool> = [&x, &y, &z]
            .iter()
            .map(|p| log.role_of(&key(p)) == Some(Role::Member))
            .collect();
        assert_eq!(joined.iter().filter(|j| **j).count(), 2);
        members.push(view(&log));
    }
    assert!(members.windows(2).all(|w| w[0] == w[1]));
    // A fourth, who sees the log, is told the invite is used up.
    let mut log = replay(&g.genesis, &joins);
    let w = party(8);
    assert!(matches!(
        log.propose(
            &w,
            ChangeKind::Join {
                invite: invite.to_bytes()
            },
            1_200
        ),
        Err(CryptoError::InviteUsedUp)
    ));
    // Expired: refused when made, and when forged with a late time.
    assert!(matches!(
        invite.join(&w, 2_001),
        Err(CryptoError::InviteExpired { .. })
    ));
    let late = Change::sign(
        &w,
        Some(g.log.id()),
        invite.heads().to_vec(),
        ChangeKind::Join {
            invite: invite.to_bytes(),
        },
        2_001,
    )
    .unwrap();
    assert!(matches!(
        g.log.clone().apply(late),
        Err(CryptoError::InviteExpired { .. })
    ));
    // An invite signed by a plain member is worth nothing.
    let forged = Invite::sign(
        &g.m,
        invite::InviteFields {
            group: g.log.id(),
            invite_id: [1; 16],
            expires_at: 5_000,
            max_uses: 5,
            heads: &g.log.heads(),
            issued_at: 1_000,
            contact: "",
        },
    )
    .unwrap();
    assert!(not_allowed(
        g.log.clone().apply(forged.join(&w, 1_300).unwrap())
    ));
    // An invite of another group cannot be used here.
    let (other, _) = GroupLog::create(&g.owner, "other", &[], 1_000).unwrap();
    let elsewhere = other.create_invite(&g.owner, 5_000, 1).unwrap();
    assert!(matches!(
        g.log.clone().apply(elsewhere.join(&w, 1_300).unwrap()),
        Err(CryptoError::WrongGroup)
    ));
    assert!(matches!(
        g.log.clone().propose(
            &w,
            ChangeKind::Join {
                invite: elsewhere.to_bytes()
            },
            1_300
        ),
        Err(CryptoError::WrongGroup)
    ));
    assert!(g.log.create_invite(&g.a, 2_000, 0).is_err());
    assert!(
        g.log
            .create_invite(&g.a, 2_000, MAX_INVITE_USES + 1)
            .is_err()
    );
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn limits_give_clear_errors() {
    let owner = party(1);
    let (x, y, z) = (party(5), party(6), party(7));
    let (mut log, _) =
        GroupLog::create_with_limit(&owner, "small", &[(key(&x), Role::Member)], 3, 1).unwrap();
    log.propose(&owner, add(&y, Role::Member), 2).unwrap();
    assert!(matches!(
        log.propose(&owner, add(&z, Role::Member), 3),
        Err(CryptoError::GroupFull { max: 3 })
    ));
    let invite = log.create_invite(&owner, 100, 5).unwrap();
    assert!(matches!(
        log.clone().apply(invite.join(&z, 4).unwrap()),
        Err(CryptoError::GroupFull { max: 3 })
    ));
    log.propose(&y, ChangeKind::Leave, 4).unwrap();
    log.propose(&owner, add(&z, Role::Member), 5).unwrap();
    assert_eq!(log.members().len(), 3);
    // At creation.
    let members = [
        (key(&x), Role::Member),
        (key(&y), Role::Member),
        (key(&z), Role::Admin),
    ];
    assert!(matches!(
        GroupLog::create_with_limit(&owner, "g", &members, 3, 1),
        Err(CryptoError::GroupFull { max: 3 })
    ));
    for limit in [0, 1, MAX_MEMBERS_LIMIT + 1] {
        assert!(GroupLog::create_with_limit(&owner, "g", &[], limit, 1).is_err());
    }
    for name in ["", "a\nb", &"n".repeat(MAX_GROUP_NAME_BYTES + 1)] {
        assert!(matches!(
            GroupLog::create(&owner, name, &[], 1),
            Err(CryptoError::Malformed { .. })
        ));
    }
    assert!(GroupLog::create(&owner, &"n".repeat(MAX_GROUP_NAME_BYTES), &[], 1).is_ok());
    let dup = [(key(&x), Role::Member), (key(&x), Role::Admin)];
    assert!(GroupLog::create(&owner, "g", &dup, 1).is_err());
    assert!(GroupLog::create(&owner, "g", &[(key(&owner), Role::Admin)], 1).is_err());
    assert!(GroupLog::create(&owner, "g", &[(key(&x), Role::Owner)], 1).is_err());
    assert!(matches!(
        GroupLog::create(&owner, "g", &[([0; 32], Role::Member)], 1),
        Err(CryptoError::InvalidPublicKey(_))
    ));
    // A full-size group: 1,000 members in the genesis, then full.
    let many: Vec<([u8; 32], Role)> = (0..999u32)
        .map(|i| {
            let mut seed = [0x77; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            (key(&Identity::from_seed(seed)), Role::Member)
        })
        .collect();
    let (mut big, genesis) = GroupLog::create(&owner, "big", &many, 1).unwrap();
    assert!(genesis.to_bytes().len() <= MAX_CHANGE_BYTES);
    assert_eq!(big.members().len(), 1_000);
    assert!(matches!(
        big.propose(&owner, add(&x, Role::Member), 2),
        Err(CryptoError::GroupFull { max: 1_000 })
    ));
}

#[test]
fn the_log_survives_storage() {
    let mut g = group();
    let x = party(5);
    g.log.propose(&g.a, add(&x, Role::Member), 1_001).unwrap();
    let mut b = GroupLog::from_genesis(g.genesis.clone()).unwrap();
    b.propose(&g.b, ChangeKind::Rename { name: "b".into() }, 1_002)
        .unwrap();
    for c in b.changes() {
        g.log.apply(c).unwrap();
    }
    let orphan = Change::sign(
        &g.m,
        Some(g.log.id()),
        vec![[3; 32]],
        ChangeKind::Leave,
        1_003,
    )
    .unwrap();
    g.log.apply(orphan).unwrap();
    let bytes = g.log.to_bytes();
    let back = GroupLog::from_bytes(&bytes).unwrap();
    assert_eq!(view(&back), view(&g.log));
    assert_eq!(back.changes(), g.log.changes());
    assert_eq!(back.pending_len(), 1);
    assert_eq!(back.id(), g.log.id());
    assert!(GroupLog::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    assert!(GroupLog::from_bytes(&[]).is_err());
    // A stored log whose changes were tampered with is refused.
    let mut st = pb::GroupLogState::decode(bytes.as_slice()).unwrap();
    st.changes.swap(1, 2);
    st.changes.swap(0, 1);
    assert!(GroupLog::from_bytes(&st.encode_to_vec()).is_err());
}

#[test]
fn debug_output_hides_names() {
    let g = group();
    let mut log = g.log.clone();
    let c = log
        .propose(
            &g.a,
            ChangeKind::Rename {
                name: "secret plans".into(),
            },
            1_001,
        )
        .unwrap();
    let out = format!(
        "{c:?} {:?} {log:?} {:?}",
        g.genesis,
        g.log.create_invite(&g.a, 9, 1).unwrap()
    );
    assert!(!out.contains("secret") && !out.contains("friends"), "{out}");
    assert!(out.contains("name_len: 12"));
}

// --- convergence ---

const PARTIES: usize = 8;

/// What a party does in a convergence scenario.
#[derive(Clone, Debug)]
enum Op {
    /// Propose through the party's own log (refused proposals change nothing).
    Act {
        actor: usize,
        what: u8,
        target: usize,
    },
    /// Sign the change anyway, naming the party's heads (unauthorized attempts included).
    Force {
        actor: usize,
        what: u8,
        target: usize,
    },
    /// Sign the change naming one older change of the party's log as the only parent.
    Backdate {
        actor: usize,
        what: u8,
        target: usize,
        pick: usize,
    },
    /// Party `from` sends its whole log to `to`.
    Sync { from: usize, to: usize },
    /// Every party sends its log to every other.
    SyncAll,
    /// The party makes an invite with 1..=3 uses.
    Invite { actor: usize, uses: u8 },
    /// The party joins through one of the invites made so far.
    Join { actor: usize, pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PARTIES;
    // Mostly the owner and the admins act.
    let actor = prop_oneof![3 => 0..3usize, 1 => 0..PARTIES];
    prop_oneof![
        6 => (actor, any::<u8>(), p.clone())
            .prop_map(|(actor, what, target)| Op::Act { actor, what, target }),
        1 => (p.clone(), any::<u8>(), p.clone())
            .prop_map(|(actor, what, target)| Op::Force { actor, what, target }),
        1 => (p.clone(), any::<u8>(), p.clone(), any::<usize>())
            .prop_map(|(actor, what, target, pick)| Op::Backdate { actor, what, target, pick }),
        4 => (p.clone(), p.clone()).prop_map(|(from, to)| Op::Sync { from, to }),
        1 => Just(Op::SyncAll),
        1 => (p.clone(), 1u8..=3).prop_map(|(actor, uses)| Op::Invite { actor, uses }),
        1 => (p, any::<usize>()).prop_map(|(actor, pick)| Op::Join { actor, pick }),
    ]
}

fn kind(what: u8, target: &Identity, step: u64) -> ChangeKind {
    let member = key(target);
    let role = [Role::Member, Role::Admin, Role::Owner][usize::from(what / 10) % 3];
    match what % 10 {
        0..=2 => ChangeKind::Add {
            member,
            role: role.min(Role::Admin),
        },
        3 | 4 => ChangeKind::Remove { member },
        5 | 6 => ChangeKind::SetRole { member, role },
        7 | 8 => ChangeKind::Rename {
            name: format!("name {}", step % 4),
        },
        _ => ChangeKind::Leave,
    }
}

/// Party 0 owns the group; 1 and 2 are admins, 3 and 4 members, 5..8 outsiders.
fn scenario(ops: &[Op]) -> (Change, Vec<Change>, GroupLog) {
    let ids: Vec<Identity> = (0..PARTIES as u8).map(|n| party(n + 20)).collect();
    let initial = [
        (key(&ids[1]), Role::Admin),
        (key(&ids[2]), Role::Admin),
        (key(&ids[3]), Role::Member),
        (key(&ids[4]), Role::Member),
    ];
    let (log, genesis) = GroupLog::create_with_limit(&ids[0], "start", &initial, 7, 1).unwrap();
    let mut logs = vec![log; PARTIES];
    let mut all = Vec::new();
    let mut invites: Vec<Invite> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = 10 + step as u64;
        let made = match op {
            Op::Act {
                actor,
                what,
                target,
            } => {
                // A change that makes sense in the actor's (possibly stale) view.
                let view = &logs[*actor];
                let (ins, outs): (Vec<usize>, Vec<usize>) =
                    (0..PARTIES).partition(|i| view.role_of(&key(&ids[*i])).is_some());
                let adding = what % 10 <= 2;
                let pool = if adding { outs } else { ins };
                let target = pool
                    .get(target % pool.len().max(1))
                    .copied()
                    .unwrap_or(*target);
                let r = logs[*actor].propose(&ids[*actor], kind(*what, &ids[target], now), now);
                r.ok()
            }
            Op::Force {
                actor,
                what,
                target,
            } => {
                let parents = logs[*actor].heads();
                Change::sign(
                    &ids[*actor],
                    Some(genesis.group()),
                    parents,
                    kind(*what, &ids[*target], now),
                    now,
                )
                .ok()
            }
            Op::Backdate {
                actor,
                what,
                target,
                pick,
            } => {
                let known = logs[*actor].changes();
                let parent = known[pick % known.len()].id();
                Change::sign(
                    &ids[*actor],
                    Some(genesis.group()),
                    vec![parent],
                    kind(*what, &ids[*target], now),
                    now,
                )
                .ok()
            }
            Op::Sync { from, to } => {
                for c in logs[*from].changes() {
                    let _ = logs[*to].apply(c);
                }
                None
            }
            Op::SyncAll => {
                for c in &all {
                    for log in &mut logs {
                        let _ = log.apply(Change::clone(c));
                    }
                }
                None
            }
            Op::Invite { actor, uses } => {
                if let Ok(i) = logs[*actor].create_invite(&ids[*actor], now + 20, u32::from(*uses))
                {
                    invites.push(i);
                }
                None
            }
            Op::Join { actor, pick } if !invites.is_empty() => {
                invites[pick % invites.len()].join(&ids[*actor], now).ok()
            }
            Op::Join { .. } => None,
        };
        if let Some(c) = made {
            let _ = logs[op_actor(op)].apply(c.clone());
            all.push(c);
        }
    }
    // One party that received everything, in the order it was made.
    let mut everything = logs.swap_remove(0);
    for c in &all {
        let _ = everything.apply(c.clone());
    }
    (genesis, all, everything)
}

fn op_actor(op: &Op) -> usize {
    match op {
        Op::Act { actor, .. }
        | Op::Force { actor, .. }
        | Op::Backdate { actor, .. }
        | Op::Invite { actor, .. }
        | Op::Join { actor, .. } => *actor,
        Op::Sync { to, .. } => *to,
        Op::SyncAll => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x67_12_0b),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Parties change the group from their own, diverging views (concurrent adds and removes
    /// by two admins, unauthorized and backdated changes, joins through invites); then members
    /// receive the union of all changes in random orders. All end with the same members,
    /// roles, name, heads and log, one owner, and no more members than the limit.
    #[test]
    fn members_converge_whatever_the_order(
        ops in prop::collection::vec(op(), 1..100),
        seed in any::<u64>(),
    ) {
        let (genesis, mut all, everything) = scenario(&ops);
        let reference = view(&everything);
        let mut state = seed | 1;
        for _ in 0..4 {
            shuffle(&mut all, &mut state);
            let log = replay(&genesis, &all);
            prop_assert_eq!(view(&log), reference.clone());
            prop_assert_eq!(log.changes(), everything.changes());
            prop_assert_eq!(log.pending_len(), everything.pending_len());
        }
        let owners = everything.members().iter().filter(|(_, r)| *r == Role::Owner).count();
        // One owner, unless the owner left alone and the group is empty.
        prop_assert!(owners == 1 || everything.members().is_empty());
        prop_assert!(everything.members().len() <= 7);
        let stored = GroupLog::from_bytes(&everything.to_bytes()).unwrap();
        prop_assert_eq!(view(&stored), reference);
    }
}
