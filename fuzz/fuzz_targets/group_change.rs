//! Group membership logs. Raw bytes go to `Change::from_bytes` (a change with a made-up
//! signature is never accepted), `GroupLog::from_bytes` and `Invite::from_uri`; then the bytes
//! drive a small group of fixed identities (properly signed changes, two replicas that diverge
//! and merge, invites and joins) through `GroupLog::apply`: it never panics, and a fresh log
//! that gets all changes in reverse order ends in the same state.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tokenim_crypto::group::{Change, ChangeKind, GroupLog, Invite, Role};
use tokenim_crypto::{Identity, pb};

const PARTIES: usize = 6;

fn party(n: usize) -> Identity {
    Identity::from_seed([n as u8 + 1; 32])
}

fn key(i: &Identity) -> [u8; 32] {
    i.public_ref().identity_key
}

fn kind(what: u8, target: &Identity, step: usize) -> ChangeKind {
    let member = key(target);
    let role = [Role::Member, Role::Admin, Role::Owner][usize::from(what >> 4) % 3];
    match what % 8 {
        0 | 1 => ChangeKind::Add {
            member,
            role: role.min(Role::Admin),
        },
        2 => ChangeKind::Remove { member },
        3 => ChangeKind::SetRole { member, role },
        4 => ChangeKind::Rename {
            name: format!("g{}", step % 3),
        },
        _ => ChangeKind::Leave,
    }
}

fn raw(data: &[u8]) {
    if let Ok(c) = Change::from_bytes(data) {
        assert_eq!(c.to_bytes(), data, "accepted changes re-encode identically");
        if let Ok(mut log) = GroupLog::from_genesis(c.clone()) {
            let _ = log.apply(c);
        }
    }
    if let Ok(log) = GroupLog::from_bytes(data) {
        let _ = GroupLog::from_bytes(&log.to_bytes()).expect("a read log reads again");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Invite::from_uri(s, 0);
    }
    let _ = Invite::from_uri(
        &format!("tokenim-group:{}", URL_SAFE_NO_PAD.encode(data)),
        0,
    );
    let forged = pb::SignedGroupChange {
        version: 1,
        change: data.to_vec(),
        signature: vec![0; 64],
    };
    assert!(Change::from_bytes(&forged.encode_to_vec()).is_err());
}

fn scenario(data: &[u8]) {
    let ids: Vec<Identity> = (0..PARTIES).map(party).collect();
    let initial = [(key(&ids[1]), Role::Admin), (key(&ids[2]), Role::Member)];
    let Ok((log, genesis)) = GroupLog::create_with_limit(&ids[0], "f", &initial, 5, 1) else {
        return;
    };
    let mut logs = [log.clone(), log];
    let mut all: Vec<Change> = Vec::new();
    let mut invites: Vec<Invite> = Vec::new();
    for (step, op) in data.chunks_exact(3).take(64).enumerate() {
        let (actor, what, target) = (usize::from(op[0]) % PARTIES, op[1], usize::from(op[2]));
        let side = usize::from(op[0] >> 7);
        let now = 10 + step as u64;
        let made = match op[0] % 16 {
            0..=9 => logs[side]
                .propose(&ids[actor], kind(what, &ids[target % PARTIES], step), now)
                .ok(),
            10 | 11 => {
                for c in logs[1 - side].changes() {
                    let _ = logs[side].apply(c);
                }
                None
            }
            12 => {
                if let Ok(i) =
                    logs[side].create_invite(&ids[actor], now + 5, 1 + u32::from(what % 3))
                {
                    invites.push(i);
                }
                None
            }
            13 if !invites.is_empty() => {
                invites[target % invites.len()].join(&ids[actor], now).ok()
            }
            _ => Change::from_bytes(&data[step * 3..]).ok(),
        };
        if let Some(c) = made {
            let _ = logs[side].apply(c.clone());
            all.push(c);
        }
    }
    let mut forward = GroupLog::from_genesis(genesis.clone()).expect("genesis");
    for c in &all {
        let _ = forward.apply(c.clone());
    }
    let mut backward = GroupLog::from_genesis(genesis).expect("genesis");
    for c in all.iter().rev() {
        let _ = backward.apply(c.clone());
    }
    assert_eq!(forward.members(), backward.members());
    assert_eq!(forward.name(), backward.name());
    assert_eq!(forward.heads(), backward.heads());
    assert!(forward.members().len() <= 5);
}

fuzz_target!(|data: &[u8]| {
    raw(data);
    if data.first().is_some_and(|b| b & 1 == 1) {
        scenario(&data[1..]);
    }
});
