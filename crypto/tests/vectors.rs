//! Known-answer vectors from fixed seeds, checked into `tests/vectors/*.json`.
//!
//! Each test regenerates its vectors and compares them with the stored file, then also
//! *consumes* the stored values (parses, verifies, decrypts them), so a change to the wire
//! format fails here. After an intentional format change, rewrite the files with
//! `TOKENIM_REGEN_VECTORS=1 cargo test -p tokenim-crypto --test vectors` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use prost::Message as _;
use serde_json::{Value, json};
use tokenim_crypto::group::sender_key::{GroupCipher, SenderKeyDistribution};
use tokenim_crypto::group::{Change, ChangeKind, GroupLog, Invite, Role};
use tokenim_crypto::{
    Address, ContactCard, CustodyReceipt, DeviceList, Envelope, Identity, InnerKind, InnerMessage,
    LinkOffer, LinkRequest, MailboxAck, MailboxId, PublicIdentity, Registration, RelayInfo,
    RelayedEnvelope, SessionPolicy, Sessions,
};

fn seed(first: u8) -> [u8; 32] {
    std::array::from_fn(|i| first.wrapping_add(i as u8))
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(format!("{name}.json"))
}

/// Lists the JSON paths at which `a` and `b` differ.
fn diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = format!("{prefix}.{k}");
                diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{prefix}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Compares with (or, with TOKENIM_REGEN_VECTORS=1, rewrites) the stored file; returns the
/// stored vectors.
fn check(name: &str, generated: Value) -> Value {
    let p = path(name);
    if std::env::var("TOKENIM_REGEN_VECTORS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(&p, text).unwrap();
        return generated;
    }
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run with TOKENIM_REGEN_VECTORS=1", p.display())),
    )
    .unwrap();
    let mut d = Vec::new();
    diff(name, &stored, &generated, &mut d);
    assert!(
        d.is_empty(),
        "known-answer vectors changed (wire format change?) at: {d:?}"
    );
    stored
}

fn h(b: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(b))
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn identity_vectors() {
    let id = Identity::from_seed(seed(0));
    let p = id.public();
    let generated = json!({
        "seed": h(seed(0)),
        "secret_encoding": h(&*id.to_bytes()),
        "identity_key": h(p.identity_key),
        "dh_key": h(p.dh_key),
        "dh_sig": h(p.dh_sig),
        "public_identity": h(p.to_bytes()),
        "address": id.address().to_string(),
        "mailbox_ids": (0..3).map(|i| id.mailbox_key(i).id().to_string()).collect::<Vec<_>>(),
    });
    let v = check("identity", generated);
    // Consume: the stored encodings decode to the same identity.
    let from_secret = Identity::from_bytes(&unhex(&v["secret_encoding"])).unwrap();
    assert_eq!(from_secret.public(), p);
    let pubid = PublicIdentity::from_bytes(&unhex(&v["public_identity"])).unwrap();
    assert_eq!(pubid, p);
    let addr: Address = v["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(addr.identity_key().to_vec(), unhex(&v["identity_key"]));
    let mb: MailboxId = v["mailbox_ids"][2].as_str().unwrap().parse().unwrap();
    assert_eq!(mb, id.mailbox_key(2).id());
}

fn sample_card(id: &Identity) -> ContactCard {
    let mut c = ContactCard::new(id, "Ada Lovelace", 1_700_000_000, 30 * 86_400);
    c.mailboxes = vec![id.mailbox_key(0).id(), id.mailbox_key(1).id()];
    c.home_relays = vec![RelayInfo {
        peer_id: seed(0x40)[..].to_vec(),
        addrs: vec![
            "/dns4/relay.example/tcp/4001".into(),
            "/ip6/::1/udp/4001/quic-v1".into(),
        ],
    }];
    c.node_peer_id = Some(seed(0x60).to_vec());
    c.direct_addrs = vec!["/ip4/192.0.2.7/tcp/4001".into()];
    c
}

#[test]
fn card_vectors() {
    let id = Identity::from_seed(seed(0));
    let card = sample_card(&id);
    let uri = card.to_uri(&id).unwrap();
    let v = check(
        "card",
        json!({ "seed": h(seed(0)), "now": 1_700_000_000u64, "uri": uri }),
    );
    let parsed = ContactCard::from_uri(v["uri"].as_str().unwrap(), 1_700_000_000).unwrap();
    assert_eq!(parsed, card);
}

#[test]
fn envelope_vectors() {
    let id = Identity::from_seed(seed(0));
    let frame: Vec<u8> = (0..512u32).map(|i| (i % 251) as u8).collect();
    let env = Envelope::new(id.mailbox_key(0).id(), frame, 1_700_000_123, 7 * 86_400);
    let v = check(
        "envelope",
        json!({
            "mailbox": id.mailbox_key(0).id().to_string(),
            "now": 1_700_000_123u64,
            "ttl_secs": 7 * 86_400,
            "ciphertext": h(&env.ciphertext),
            "encoded": h(env.encode_to_vec()),
            "message_id": h(env.id()),
        }),
    );
    let d = Envelope::decode_checked(&unhex(&v["encoded"])).unwrap();
    assert_eq!(d.id().to_vec(), unhex(&v["message_id"]));
    assert_eq!(d.timestamp, 1_700_000_100);
}

#[test]
fn receipt_vectors() {
    let id = Identity::from_seed(seed(0));
    let relay = SigningKey::from_bytes(&seed(0x80));
    let rk = relay.verifying_key().to_bytes();
    let mk = id.mailbox_key(0);
    let mid = seed(0xa0);
    let rc = CustodyReceipt::sign(
        &relay,
        &[mid, seed(0xb0)],
        mk.id(),
        1_700_000_000,
        1_700_604_800,
    );
    let ack = mk.sign_ack(&rk, &[mid, seed(0xc0)], 1_700_000_500);
    let reg = mk.sign_registration(&rk, &seed(0xe0), 1_700_000_010);
    let copy = RelayedEnvelope::sign(&relay, seed(0xf0).to_vec(), 1_700_000_020);
    let v = check(
        "receipts",
        json!({
            "relay_seed": h(seed(0x80)),
            "custody_receipt": h(rc.to_bytes()),
            "mailbox_ack": h(ack.to_bytes()),
            "registration": h(reg.to_bytes()),
            "relayed_envelope": h(copy.to_bytes()),
        }),
    );
    CustodyReceipt::from_bytes(&unhex(&v["custody_receipt"]))
        .unwrap()
        .verify(&rk, &mk.id(), &[mid, seed(0xb0)])
        .unwrap();
    MailboxAck::from_bytes(&unhex(&v["mailbox_ack"]))
        .unwrap()
        .verify(&mk.id(), &rk, 1_700_000_500, 60)
        .unwrap();
    Registration::from_bytes(&unhex(&v["registration"]))
        .unwrap()
        .verify(&rk, &seed(0xe0), 1_700_000_010, 60)
        .unwrap();
    let copy = RelayedEnvelope::from_bytes(&unhex(&v["relayed_envelope"])).unwrap();
    copy.verify(1_700_000_020, 60).unwrap();
    assert_eq!((copy.relay_key, copy.envelope), (rk, seed(0xf0).to_vec()));
}

/// A group's membership log: genesis (owner, one admin, one member), the admin adds someone,
/// the owner renames and makes an invite, an outsider joins through it.
#[test]
fn group_vectors() {
    let (owner, admin, member) = (
        Identity::from_seed(seed(0)),
        Identity::from_seed(seed(0x10)),
        Identity::from_seed(seed(0x20)),
    );
    let (added, joiner) = (
        Identity::from_seed(seed(0x30)),
        Identity::from_seed(seed(0x40)),
    );
    let key = |i: &Identity| i.public_ref().identity_key;
    let initial = [(key(&admin), Role::Admin), (key(&member), Role::Member)];
    let (mut log, genesis) =
        GroupLog::create_with_nonce(&owner, "Book club", &initial, 1_000, [7; 16], 1_700_000_000)
            .unwrap();
    let add = ChangeKind::Add {
        member: key(&added),
        role: Role::Member,
    };
    let add = log.propose(&admin, add, 1_700_000_060).unwrap();
    let rename = ChangeKind::Rename {
        name: "Book club 2".into(),
    };
    let rename = log.propose(&owner, rename, 1_700_000_120).unwrap();
    let invite = log
        .create_invite_with_id(&owner, 1_700_086_400, 5, "", [9; 16])
        .unwrap();
    let join = invite.join(&joiner, 1_700_000_180).unwrap();
    log.apply(join.clone()).unwrap();
    let members: Vec<Value> = log
        .members()
        .iter()
        .map(|(k, r)| json!([h(k), r.as_str()]))
        .collect();
    let v = check(
        "group",
        json!({
            "seeds": [h(seed(0)), h(seed(0x10)), h(seed(0x20)), h(seed(0x30)), h(seed(0x40))],
            "group_id": log.id().to_string(),
            "changes": [h(genesis.to_bytes()), h(add.to_bytes()), h(rename.to_bytes()), h(join.to_bytes())],
            "change_ids": [h(genesis.id()), h(add.id()), h(rename.id()), h(join.id())],
            "invite_uri": invite.to_uri(),
            "name": log.name(),
            "members": members,
            "heads": log.heads().iter().map(h).collect::<Vec<_>>(),
        }),
    );
    // Consume: a member reading the stored changes ends in the stored state.
    let changes: Vec<Change> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Change::from_bytes(&unhex(c)).unwrap())
        .collect();
    for (c, id) in changes.iter().zip(v["change_ids"].as_array().unwrap()) {
        assert_eq!(c.id().to_vec(), unhex(id));
    }
    let mut read = GroupLog::from_genesis(changes[0].clone()).unwrap();
    for c in &changes[1..] {
        read.apply(c.clone()).unwrap();
    }
    assert_eq!(read.id().to_string(), v["group_id"].as_str().unwrap());
    assert_eq!(read.name(), v["name"].as_str().unwrap());
    assert_eq!(read.members(), log.members());
    assert_eq!(read.role_of(&key(&joiner)), Some(Role::Member));
    let stored_invite = Invite::from_uri(v["invite_uri"].as_str().unwrap(), 1_700_000_000).unwrap();
    assert_eq!(stored_invite, invite);
}

fn msg(n: u8, body: &str) -> InnerMessage {
    InnerMessage::text([n; 16], body, 1_700_000_000_000 + u64::from(n))
}

/// A full transcript: A writes to offline B (init), B answers, A continues on transport
/// frames, B acknowledges with a read receipt on its own session.
#[test]
fn session_vectors() {
    const T: u64 = 1_700_000_000;
    let (a, b) = (
        Identity::from_seed(seed(0)),
        Identity::from_seed(seed(0x20)),
    );
    let mut sa = Sessions::with_seed(SessionPolicy::default(), seed(0x55));
    let mut sb = Sessions::with_seed(SessionPolicy::default(), seed(0x66));
    let m1 = msg(1, "hello, B");
    let m2 = msg(2, "second");
    let m3 = msg(3, "third");
    let receipt = InnerMessage::receipt(InnerKind::ReadReceipt, [4; 16], &[[1; 16], [2; 16]], 0);
    let init = sa.seal(&a, &b.public(), &m1, T).unwrap();
    let response = sb.open(&b, &init, T + 5).unwrap().reply.unwrap();
    sa.open(&a, &response, T + 6).unwrap();
    let t2 = sa.seal(&a, &b.public(), &m2, T + 7).unwrap();
    let t3 = sa.seal(&a, &b.public(), &m3, T + 8).unwrap();
    let back = sb.seal(&b, &a.public(), &receipt, T + 9).unwrap();
    let state_a = sa.peer_state(&b.public().identity_key).unwrap();
    let generated = json!({
        "protocol": tokenim_crypto::NOISE_PROTOCOL,
        "seed_a": h(seed(0)), "seed_b": h(seed(0x20)),
        "rng_seed_a": h(seed(0x55)), "rng_seed_b": h(seed(0x66)),
        "frames": [
            { "dir": "a->b", "kind": "init", "frame": h(&init), "inner": h(m1.encode_to_vec()) },
            { "dir": "b->a", "kind": "response", "frame": h(&response) },
            { "dir": "a->b", "kind": "transport", "frame": h(&t2), "inner": h(m2.encode_to_vec()) },
            { "dir": "a->b", "kind": "transport", "frame": h(&t3), "inner": h(m3.encode_to_vec()) },
            { "dir": "b->a", "kind": "init", "frame": h(&back), "inner": h(receipt.encode_to_vec()) },
        ],
        "peer_state_a": h(&*state_a),
    });
    let v = check("session", generated);
    // Consume the stored frames with fresh state (B with its seed answers identically).
    let mut sb = Sessions::with_seed(SessionPolicy::default(), seed(0x66));
    let mut sa = Sessions::with_seed(SessionPolicy::default(), seed(0x77));
    let frames = v["frames"].as_array().unwrap();
    let o = sb.open(&b, &unhex(&frames[0]["frame"]), T + 5).unwrap();
    assert_eq!(o.inner.unwrap().encode_to_vec(), unhex(&frames[0]["inner"]));
    assert_eq!(o.reply.unwrap(), unhex(&frames[1]["frame"]));
    for f in &frames[2..4] {
        let o = sb.open(&b, &unhex(&f["frame"]), T + 8).unwrap();
        assert_eq!(o.from, a.public());
        assert_eq!(o.inner.unwrap().encode_to_vec(), unhex(&f["inner"]));
    }
    let o = sa.open(&a, &unhex(&frames[4]["frame"]), T + 9).unwrap();
    assert_eq!(o.inner.unwrap().encode_to_vec(), unhex(&frames[4]["inner"]));
    // The stored sender state continues the session with the next nonce.
    let mut sa2 = Sessions::with_seed(SessionPolicy::default(), seed(0x88));
    sa2.restore_peer(&unhex(&v["peer_state_a"])).unwrap();
    let t4 = sa2
        .seal(&a, &b.public(), &msg(5, "after restore"), T + 10)
        .unwrap();
    assert_eq!(&t4[17..25], &2u64.to_be_bytes());
    assert_eq!(
        sb.open(&b, &t4, T + 10).unwrap().inner.unwrap(),
        msg(5, "after restore")
    );
}

/// Group sender keys: A's distribution, two frames, a rotation and a frame on the new epoch;
/// B's state after reading them.
#[test]
fn sender_key_vectors() {
    let (group, a_id, b_id) = (seed(0x90), seed(0xa0), seed(0xb0));
    let mut a = GroupCipher::with_seed(group, a_id, seed(0x31));
    let mut b = GroupCipher::with_seed(group, b_id, seed(0x32));
    let d0 = a.my_distribution();
    b.add_distribution(d0.clone()).unwrap();
    let f0 = a.seal(b"hello, group").unwrap();
    let f1 = a.seal(&[0x5a; 600]).unwrap();
    let d1 = a.rotate();
    b.add_distribution(d1.clone()).unwrap();
    let f2 = a.seal(b"new epoch").unwrap();
    for f in [&f0, &f1, &f2] {
        b.open(f).unwrap();
    }
    let generated = json!({
        "group": h(group), "a": h(a_id), "b": h(b_id),
        "rng_seed_a": h(seed(0x31)), "rng_seed_b": h(seed(0x32)),
        "distribution_epoch0": h(&*d0.to_bytes()),
        "distribution_epoch1": h(&*d1.to_bytes()),
        "frames": [
            { "epoch": 0, "iteration": 0, "plaintext": h(b"hello, group"), "frame": h(&f0) },
            { "epoch": 0, "iteration": 1, "plaintext": h([0x5a; 600]), "frame": h(&f1) },
            { "epoch": 1, "iteration": 0, "plaintext": h(b"new epoch"), "frame": h(&f2) },
        ],
        "state_b": h(&*b.to_bytes()),
    });
    let v = check("sender_keys", generated);
    // Consume the stored bytes with a member who has only them.
    let mut c = GroupCipher::with_seed(group, seed(0xc0), seed(0x33));
    for k in ["distribution_epoch0", "distribution_epoch1"] {
        let d = SenderKeyDistribution::from_bytes(&unhex(&v[k])).unwrap();
        assert_eq!((d.group(), d.sender()), (group, a_id));
        c.add_distribution(d).unwrap();
    }
    for f in v["frames"].as_array().unwrap() {
        let frame = unhex(&f["frame"]);
        assert_eq!(
            &frame[17..25],
            &f["iteration"].as_u64().unwrap().to_be_bytes()
        );
        assert_eq!(c.open(&frame).unwrap(), (a_id, unhex(&f["plaintext"])));
    }
    // The stored receiver state has consumed them all.
    let mut b2 = GroupCipher::from_bytes(&unhex(&v["state_b"])).unwrap();
    for f in v["frames"].as_array().unwrap() {
        assert!(b2.open(&unhex(&f["frame"])).is_err());
    }
}

#[test]
fn device_vectors() {
    let account = Identity::from_seed(seed(0));
    let phone = Identity::from_seed(seed(0x20));
    let genesis = DeviceList::genesis(&account, "laptop", 1_700_000_000).unwrap();
    let list = genesis
        .with_device(&account, phone.public(), "phone", 1_700_000_100)
        .unwrap();
    let offer = LinkOffer::with_secret(
        account.public(),
        seed(0x80),
        seed(0x60).to_vec(),
        vec!["/ip4/192.0.2.7/udp/4001/quic-v1".into()],
        1_700_000_300,
    )
    .unwrap();
    let request = LinkRequest::new(&offer, &phone, "phone").unwrap();
    let v = check(
        "device",
        json!({
            "account_seed": h(seed(0)),
            "device_seed": h(seed(0x20)),
            "genesis": h(genesis.to_bytes()),
            "list": h(list.to_bytes()),
            "offer_uri": offer.to_uri().as_str(),
            "offer_id": h(offer.id()),
            "request": h(request.to_bytes()),
        }),
    );
    let read = DeviceList::from_bytes(&unhex(&v["list"])).unwrap();
    assert_eq!(read, list);
    assert_eq!(read.version(), 2);
    assert!(read.contains(&phone.public_ref().identity_key));
    let g = DeviceList::from_bytes(&unhex(&v["genesis"])).unwrap();
    assert!(DeviceList::supersedes(Some(&g), &read).unwrap());
    let o = LinkOffer::from_uri(v["offer_uri"].as_str().unwrap(), 1_700_000_000).unwrap();
    assert_eq!(o.id().to_vec(), unhex(&v["offer_id"]));
    let r = LinkRequest::from_bytes(&unhex(&v["request"])).unwrap();
    r.verify(&o, 1_700_000_000).unwrap();
}

#[test]
fn file_vectors() {
    use tokenim_crypto::file::{
        ChunkList, FileKey, FileManifest, FileOpener, FileSealer, chunk_id, open_chunk, seal_chunk,
    };
    let key = FileKey::from_bytes(seed(0x90));
    let cs = 64 * 1024;
    // One full chunk and a last one of 100 bytes.
    let plain: Vec<u8> = (0..cs as usize + 100).map(|i| (i % 251) as u8).collect();
    let mut s = FileSealer::with_key(cs, key.clone()).unwrap();
    let (id0, c0) = s.push(&plain[..cs as usize]).unwrap();
    let (id1, c1) = s.push(&plain[cs as usize..]).unwrap();
    let (m, l) = s.finish("notes.txt", "text/plain").unwrap();
    let m = m.with_thumbnail(b"thumb".to_vec()).unwrap();
    let v = check(
        "file",
        json!({
            "key": h(key.as_bytes()),
            "chunk_size": cs,
            "plaintext": "byte i is i % 251, 65,636 bytes",
            "chunk_ids": [id0.to_string(), id1.to_string()],
            "last_chunk": h(&c1),
            "list": h(l.to_bytes()),
            "root": h(l.root()),
            "manifest": h(m.to_bytes().as_slice()),
            "chunk_7_hello": h(seal_chunk(&key, 7, false, b"hello").unwrap()),
        }),
    );
    let m = FileManifest::from_bytes(&unhex(&v["manifest"]), 1 << 20).unwrap();
    assert_eq!(
        (m.name(), m.mime(), m.size()),
        ("notes.txt", "text/plain", plain.len() as u64)
    );
    assert_eq!(m.key(), &key);
    assert_eq!(m.thumbnail(), b"thumb");
    let l = ChunkList::from_bytes(&unhex(&v["list"])).unwrap();
    m.verify_list(&l).unwrap();
    assert_eq!(l.root().to_vec(), unhex(&v["root"]));
    let last = unhex(&v["last_chunk"]);
    assert_eq!(chunk_id(&last), l.ids()[1]);
    assert_eq!(
        open_chunk(&key, 1, true, &last).unwrap(),
        plain[cs as usize..]
    );
    let mut o = FileOpener::new(&m, l).unwrap();
    o.push(&c0).unwrap();
    o.push(&last).unwrap();
    o.finish().unwrap();
    let hello = open_chunk(&key, 7, false, &unhex(&v["chunk_7_hello"])).unwrap();
    assert_eq!(hello, b"hello");
}
