//! Crash safety: a child process commits `Txn`s in a loop and reports each id after `commit`
//! returns; the parent SIGKILLs it at seeded-random points, reopens, and checks that every
//! reported Txn is complete and that no Txn is half-written.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rand::{RngExt, SeedableRng, rngs::StdRng};
use tokenim_store::{
    Cf, Direction, MessageRecord, MessageState, OutboxRecord, Result, Store, StoreOptions,
};

const CHILD_DIR: &str = "TOKENIM_CRASH_CHILD_DIR";
const CHILD_START: &str = "TOKENIM_CRASH_CHILD_START";
const PEER: [u8; 32] = [7; 32];
const SEED: u64 = 0x70ce_11a1;
const ROUNDS: usize = 6;

fn id16(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

fn n_of(id: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id[8..]);
    u64::from_be_bytes(b)
}

fn message(n: u64) -> MessageRecord {
    MessageRecord {
        id: id16(n),
        conversation: PEER,
        direction: Direction::Outgoing,
        from: [1; 32],
        to: PEER,
        kind: 1,
        body: format!("message number {n} ").repeat(20),
        sent_at_ms: n,
        received_at_ms: n,
        state: MessageState::Queued,
        relays: 0,
        envelope_id: None,
        updated_at_ms: n,
        held: false,
        group: false,
        reached: 0,
        delivered_to: 0,
        read_by: 0,
    }
}

fn outbox(n: u64) -> OutboxRecord {
    OutboxRecord {
        id: id16(n),
        peer: PEER,
        message_id: Some(id16(n)),
        // Large enough that a write spans several pages of the WAL.
        envelope: vec![(n % 251) as u8; 8 * 1024],
        attempts: 0,
        next_attempt_ms: n,
        expires_at_ms: u64::MAX,
        created_at_ms: n,
    }
}

/// Child entry: not a test on its own (ignored), run by `crash_recovery` in a subprocess.
#[test]
#[ignore = "child process of crash_recovery"]
fn crash_child() -> Result<()> {
    let (Ok(dir), Ok(start)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_START)) else {
        return Ok(());
    };
    let start: u64 = start.parse().expect("start is a number");
    let store = Store::open(Path::new(&dir), StoreOptions::default())?;
    for n in start.. {
        store
            .txn()
            .put_message(&message(n))
            .put_outbox(&outbox(n))
            .mark_seen(&PEER, &id16(n), u64::MAX)
            .put_session(&PEER, &n.to_be_bytes())
            .commit()?;
        println!("committed {n}");
    }
    Ok(())
}

#[test]
fn crash_recovery() -> Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut reported = BTreeSet::new();
    let mut next = 0u64;
    for round in 0..ROUNDS {
        let kill_after = rng.random_range(1..400usize);
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen_in_round = 0;
        // Wait for `kill_after` commits, then kill while the child keeps writing.
        for line in lines.by_ref() {
            let line = line.expect("read child stdout");
            if let Some(n) = line.strip_prefix("committed ") {
                reported.insert(n.parse::<u64>().expect("id"));
                seen_in_round += 1;
                if seen_in_round == kill_after {
                    break;
                }
            }
        }
        assert_eq!(
            seen_in_round, kill_after,
            "child ended early in round {round}"
        );
        child.kill().expect("SIGKILL child");
        // Lines printed before the kill are commits too.
        for line in lines {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("committed ") {
                reported.insert(n.parse::<u64>().expect("id"));
            }
        }
        let status = child.wait().expect("reap child");
        assert!(!status.success(), "child must have been killed");

        let last = verify(dir.path(), &reported)?;
        eprintln!(
            "round {round}: killed after {kill_after} lines; {} reported in total, last durable id {last}",
            reported.len()
        );
        next = last + 1;
    }
    assert!(reported.len() >= ROUNDS);
    Ok(())
}

/// Every reported Txn is complete, every Txn present is complete; returns the highest id.
fn verify(dir: &Path, reported: &BTreeSet<u64>) -> Result<u64> {
    let store = Store::open(dir, StoreOptions::default())?;
    let (messages, _) = store.list_messages(Some(&PEER), usize::MAX / 2, None)?;
    let msg_ids: BTreeSet<u64> = messages.iter().map(|m| n_of(&m.id)).collect();
    let out_ids: BTreeSet<u64> = store.list_outbox()?.iter().map(|o| n_of(&o.id)).collect();
    assert_eq!(
        msg_ids, out_ids,
        "a Txn was half-written (messages vs outbox)"
    );
    for m in &messages {
        assert_eq!(m, &message(n_of(&m.id)), "message record damaged");
    }
    for n in &out_ids {
        assert_eq!(store.get_outbox(&id16(*n))?, Some(outbox(*n)));
        assert!(store.is_seen(&PEER, &id16(*n))?, "seen id of {n} missing");
    }
    // No seen id without its Txn's message (primary seen keys start with 0x00).
    let seen = store
        .backend()
        .scan(Cf::Seen, &[0], Some(&[1]), usize::MAX, false)?;
    assert_eq!(
        seen.len(),
        msg_ids.len(),
        "seen ids vs messages: a Txn was half-written"
    );
    let missing: Vec<_> = reported.difference(&msg_ids).collect();
    assert!(missing.is_empty(), "reported commits lost: {missing:?}");
    let max = msg_ids.iter().next_back().copied().unwrap_or(0);
    // The session was written by the last Txn present.
    let session = store.get_session(&PEER)?.expect("session written");
    assert_eq!(
        session,
        max.to_be_bytes().to_vec(),
        "session does not match last Txn"
    );
    Ok(max)
}
