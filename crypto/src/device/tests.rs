#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::card::{ContactCard, MAX_CARD_URI_BYTES, RelayInfo};
use crate::error::CryptoError;
use crate::identity::Identity;
use crate::pb;
use crate::sign::{self, CTX_DEVICE_LIST};

fn id(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// The account (seed 1) with devices of seeds 2..2+extra.
fn list_with(extra: u8) -> (Identity, DeviceList) {
    let account = id(1);
    let mut list = DeviceList::genesis(&account, "laptop", 100).unwrap();
    for n in 0..extra {
        list = list
            .with_device(
                &account,
                id(2 + n).public(),
                &format!("d{n}"),
                101 + u64::from(n),
            )
            .unwrap();
    }
    (account, list)
}

/// Signs an arbitrary body as `signer` (for lists that break a rule but carry a good signature).
fn signed(signer: &Identity, body: &pb::DeviceList) -> Vec<u8> {
    let body = body.encode_to_vec();
    let signature = sign::sign(
        signer.signing_key(),
        CTX_DEVICE_LIST,
        &[&DEVICE_LIST_FORMAT.to_be_bytes(), &body],
    );
    pb::SignedDeviceList {
        format: DEVICE_LIST_FORMAT,
        list: body,
        signature: signature.to_vec(),
    }
    .encode_to_vec()
}

fn body_of(list: &DeviceList) -> pb::DeviceList {
    let s = pb::SignedDeviceList::decode(list.to_bytes().as_slice()).unwrap();
    pb::DeviceList::decode(s.list.as_slice()).unwrap()
}

fn entry(i: &Identity, name: &str) -> pb::DeviceEntry {
    pb::DeviceEntry {
        device: Some(i.public_ref().to_pb()),
        name: name.into(),
        added_at: 5,
    }
}

#[test]
fn genesis_and_round_trip() {
    let account = id(1);
    let list = DeviceList::genesis(&account, "laptop", 100).unwrap();
    assert_eq!(list.version(), 1);
    assert_eq!(list.issued_at(), 100);
    assert_eq!(list.account(), account.public_ref().identity_key);
    assert_eq!(list.devices().len(), 1);
    assert_eq!(list.devices()[0].device, account.public());
    assert_eq!(list.devices()[0].name, "laptop");
    assert!(list.contains(&list.account()));
    assert_eq!(DeviceList::from_bytes(&list.to_bytes()).unwrap(), list);

    let phone = id(2);
    let two = list
        .with_device(&account, phone.public(), "phone", 200)
        .unwrap();
    assert_eq!(two.version(), 2);
    assert_eq!(
        two.device(&phone.public_ref().identity_key)
            .unwrap()
            .added_at,
        200
    );
    assert_eq!(DeviceList::from_bytes(&two.to_bytes()).unwrap(), two);
    let back = two
        .without_device(&account, &phone.public_ref().identity_key, 300)
        .unwrap();
    assert_eq!(back.version(), 3);
    assert!(!back.contains(&phone.public_ref().identity_key));
    assert!(format!("{two:?}").contains("version: 2"));
}

#[test]
fn change_errors() {
    let (account, list) = list_with(1);
    let other = id(9);
    let phone = id(2).public();
    assert!(matches!(
        list.with_device(&account, phone.clone(), "again", 1),
        Err(CryptoError::DeviceAlreadyListed)
    ));
    assert!(matches!(
        list.with_device(&other, id(3).public(), "x", 1),
        Err(CryptoError::WrongAccount)
    ));
    assert!(matches!(
        list.without_device(&other, &phone.identity_key, 1),
        Err(CryptoError::WrongAccount)
    ));
    // Removing the primary, removing an unknown device.
    assert!(matches!(
        list.without_device(&account, &list.account(), 1),
        Err(CryptoError::PrimaryDevice)
    ));
    assert!(matches!(
        list.without_device(&account, &[7; 32], 1),
        Err(CryptoError::DeviceNotListed)
    ));
    // A device whose Noise key is not signed by it.
    let mut bad = id(3).public();
    bad.dh_sig[3] ^= 1;
    assert!(matches!(
        list.with_device(&account, bad, "x", 1),
        Err(CryptoError::IdentityInvalid)
    ));
    // Names: too long, control characters; 32 bytes of UTF-8 are fine.
    assert!(matches!(
        list.with_device(
            &account,
            id(3).public(),
            &"x".repeat(MAX_DEVICE_NAME_BYTES + 1),
            1
        ),
        Err(CryptoError::Malformed { .. })
    ));
    assert!(
        list.with_device(&account, id(3).public(), "a\u{1b}[31m", 1)
            .is_err()
    );
    assert!(DeviceList::genesis(&account, &"é".repeat(17), 1).is_err());
    list.with_device(&account, id(3).public(), &"é".repeat(16), 1)
        .unwrap();
}

#[test]
fn at_most_ten_devices() {
    let (account, list) = list_with(9);
    assert_eq!(list.devices().len(), MAX_DEVICES);
    assert_eq!(list.version(), 10);
    assert!(matches!(
        list.with_device(&account, id(50).public(), "eleventh", 1),
        Err(CryptoError::TooManyDevices { max: 10 })
    ));
    // Eleven entries, properly signed, are refused by the reader too.
    let mut body = body_of(&list);
    body.devices.push(entry(&id(50), "eleventh"));
    assert!(matches!(
        DeviceList::from_bytes(&signed(&account, &body)),
        Err(CryptoError::TooManyDevices { max: 10 })
    ));
    // Full lists with the longest names fit the size limit.
    let mut full =
        DeviceList::genesis(&account, &"n".repeat(MAX_DEVICE_NAME_BYTES), u64::MAX).unwrap();
    for n in 0..9 {
        full = full
            .with_device(
                &account,
                id(60 + n).public(),
                &"n".repeat(MAX_DEVICE_NAME_BYTES),
                u64::MAX,
            )
            .unwrap();
    }
    assert!(full.to_bytes().len() < MAX_DEVICE_LIST_BYTES);
}

#[test]
fn tampered_or_forged_lists_are_refused() {
    let (account, list) = list_with(2);
    let bytes = list.to_bytes();
    // Any single flipped bit: an error, never another list.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        if let Ok(l) = DeviceList::from_bytes(&b) {
            assert_eq!(l, list);
        }
    }
    // Signed by another identity than the account it names.
    let other = id(9);
    assert!(matches!(
        DeviceList::from_bytes(&signed(&other, &body_of(&list))),
        Err(CryptoError::BadSignature(_))
    ));
    // The other identity's own list with our account's first entry.
    let mut body = body_of(&list);
    body.account = other.public_ref().identity_key.to_vec();
    assert!(matches!(
        DeviceList::from_bytes(&signed(&other, &body)),
        Err(CryptoError::Malformed { .. })
    ));
    // First entry not the account; duplicate; no entries; version 0; long name.
    let mut body = body_of(&list);
    body.devices.swap(0, 1);
    assert!(DeviceList::from_bytes(&signed(&account, &body)).is_err());
    let mut body = body_of(&list);
    let dup = body.devices[1].clone();
    body.devices.push(dup);
    let err = DeviceList::from_bytes(&signed(&account, &body)).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let mut body = body_of(&list);
    body.devices.clear();
    assert!(DeviceList::from_bytes(&signed(&account, &body)).is_err());
    let mut body = body_of(&list);
    body.version = 0;
    assert!(DeviceList::from_bytes(&signed(&account, &body)).is_err());
    let mut body = body_of(&list);
    body.devices[1].name = "x".repeat(MAX_DEVICE_NAME_BYTES + 1);
    assert!(DeviceList::from_bytes(&signed(&account, &body)).is_err());
    // An entry whose Noise key signature is invalid, in a list the account signed.
    let mut body = body_of(&list);
    body.devices[1].device.as_mut().unwrap().dh_sig[0] ^= 1;
    assert!(matches!(
        DeviceList::from_bytes(&signed(&account, &body)),
        Err(CryptoError::IdentityInvalid)
    ));
    // Format version, non-canonical container, size bound.
    let mut s = pb::SignedDeviceList::decode(bytes.as_slice()).unwrap();
    s.format = 2;
    assert!(matches!(
        DeviceList::from_bytes(&s.encode_to_vec()),
        Err(CryptoError::UnsupportedVersion { version: 2, .. })
    ));
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0x20, 0x01]); // unknown field 4, varint 1
    assert!(DeviceList::from_bytes(&padded).is_err());
    assert!(DeviceList::from_bytes(&vec![0; MAX_DEVICE_LIST_BYTES + 1]).is_err());
    assert!(DeviceList::from_bytes(&[]).is_err());
}

#[test]
fn version_rules() {
    let (account, v2) = list_with(1);
    let v1 = DeviceList::genesis(&account, "laptop", 100).unwrap();
    let v3 = v2
        .with_device(&account, id(3).public(), "tablet", 300)
        .unwrap();
    assert!(DeviceList::supersedes(None, &v1).unwrap());
    assert!(DeviceList::supersedes(Some(&v1), &v2).unwrap());
    assert!(DeviceList::supersedes(Some(&v1), &v3).unwrap());
    assert!(!DeviceList::supersedes(Some(&v2), &v2.clone()).unwrap());
    assert!(matches!(
        DeviceList::supersedes(Some(&v3), &v2),
        Err(CryptoError::DeviceListRollback { held: 3, got: 2 })
    ));
    // Same version, other content: the account signed two lists as version 2.
    let fork = v1
        .with_device(&account, id(4).public(), "other", 200)
        .unwrap();
    assert_eq!(fork.version(), 2);
    assert!(matches!(
        DeviceList::supersedes(Some(&v2), &fork),
        Err(CryptoError::DeviceListEquivocation { version: 2 })
    ));
    // Same devices and version, another time: still equivocation.
    let later = v1.with_device(&account, id(2).public(), "d0", 999).unwrap();
    assert!(matches!(
        DeviceList::supersedes(Some(&v2), &later),
        Err(CryptoError::DeviceListEquivocation { .. })
    ));
    let (_, theirs) = {
        let other = id(9);
        let l = DeviceList::genesis(&other, "x", 1).unwrap();
        (other, l)
    };
    assert!(matches!(
        DeviceList::supersedes(Some(&v1), &theirs),
        Err(CryptoError::WrongAccount)
    ));
}

fn card(account: &Identity) -> ContactCard {
    // Routing lists like the ones a node publishes: one mailbox, two relays with two addresses
    // each, its peer id, two direct addresses, its first-contact grant.
    let mut c = ContactCard::new(account, "Ada Lovelace", 1_000, 30 * 86_400);
    c.mailboxes = vec![account.mailbox_key(0).id()];
    c.home_relays = (0..2)
        .map(|n| RelayInfo {
            peer_id: vec![n; 38],
            addrs: vec![
                "/dns4/relay-number-one.example.org/tcp/4001".into(),
                "/dns4/relay-number-one.example.org/udp/4001/quic-v1".into(),
            ],
        })
        .collect();
    c.node_peer_id = Some(vec![9; 38]);
    c.direct_addrs = vec![
        "/ip4/192.168.100.200/tcp/4001".into(),
        "/ip6/2001:db8::1234:5678/udp/4001/quic-v1".into(),
    ];
    c.intro_grant = account
        .mailbox_key(0)
        .first_contact_grant(1_000 + 30 * 86_400)
        .to_bytes();
    c
}

#[test]
fn cards_carry_the_list() {
    let (account, list) = list_with(1);
    let mut c = card(&account);
    c.device_list = list.to_bytes();
    let uri = c.to_uri(&account).unwrap();
    let back = ContactCard::from_uri(&uri, 2_000).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.devices().unwrap().unwrap(), list);
    assert_eq!(card(&account).devices().unwrap(), None);

    // Another account's list: refused when signing and when reading.
    let other = id(9);
    let theirs = DeviceList::genesis(&other, "x", 1).unwrap();
    let mut c2 = card(&account);
    c2.device_list = theirs.to_bytes();
    assert!(matches!(
        c2.to_uri(&account),
        Err(CryptoError::WrongAccount)
    ));
    let body = {
        let mut p = c2.clone();
        p.device_list = theirs.to_bytes();
        p.to_pb().encode_to_vec()
    };
    let sig = sign::sign(
        account.signing_key(),
        crate::sign::CTX_CONTACT_CARD,
        &[&1u32.to_be_bytes(), &body],
    );
    let s = pb::SignedContactCard {
        version: 1,
        card: body,
        signature: sig.to_vec(),
    };
    let forged = format!("tokenim:{}", URL_SAFE_NO_PAD.encode(s.encode_to_vec()));
    assert!(matches!(
        ContactCard::from_uri(&forged, 2_000),
        Err(CryptoError::WrongAccount)
    ));
    // A damaged list.
    let mut c3 = card(&account);
    c3.device_list = list.to_bytes();
    let last = c3.device_list.len() - 1;
    c3.device_list[last] ^= 1;
    assert!(c3.to_uri(&account).is_err());
}

#[test]
fn a_card_with_ten_devices_fits_its_uri() {
    let account = id(1);
    let mut list =
        DeviceList::genesis(&account, &"n".repeat(MAX_DEVICE_NAME_BYTES), u64::MAX).unwrap();
    for n in 0..9 {
        list = list
            .with_device(&account, id(60 + n).public(), &"é".repeat(16), u64::MAX)
            .unwrap();
    }
    assert_eq!(list.devices().len(), MAX_DEVICES);
    let mut c = card(&account);
    c.display_name = "x".repeat(crate::card::MAX_DISPLAY_NAME_BYTES);
    c.expires_at = u64::MAX;
    c.device_list = list.to_bytes();
    // Longest names, display name and timestamps, routing lists like a node's: about 3,850
    // bytes, so a card keeps room for a few more addresses.
    let uri = c.to_uri(&account).unwrap();
    assert!(uri.len() + 200 <= MAX_CARD_URI_BYTES, "{}", uri.len());
    assert_eq!(ContactCard::from_uri(&uri, 2_000).unwrap(), c);
}

fn offer(now: u64) -> (Identity, LinkOffer) {
    let account = id(1);
    let o = LinkOffer::new(
        account.public(),
        vec![7; 38],
        vec!["/ip4/10.0.0.1/udp/4001/quic-v1".into()],
        300,
        now,
    )
    .unwrap();
    (account, o)
}

#[test]
fn link_offer_round_trip_and_expiry() {
    let (account, o) = offer(1_000);
    assert_eq!(o.expires_at(), 1_300);
    assert_eq!(o.account(), account.public_ref());
    let uri = o.to_uri();
    assert!(uri.starts_with(LINK_URI_PREFIX));
    assert!(uri.len() < 600, "{}", uri.len());
    let back = LinkOffer::from_uri(&uri, 1_300).unwrap();
    assert_eq!(back, o);
    assert_eq!(back.id(), o.id());
    assert_eq!(back.peer_id(), &[7; 38]);
    assert_eq!(
        LinkOffer::from_uri(&format!(" TOKENIM-LINK:{}\n", &uri[13..]), 0).unwrap(),
        o
    );
    assert!(matches!(
        LinkOffer::from_uri(&uri, 1_301),
        Err(CryptoError::LinkExpired {
            expires_at: 1_300,
            now: 1_301
        })
    ));
    // Two offers, two secrets, two ids; the secret never shows in Debug.
    let (_, o2) = offer(1_000);
    assert_ne!(o.id(), o2.id());
    assert_ne!(o, o2);
    let dbg = format!("{o:?}");
    assert!(!dbg.contains(&hex::encode(o.secret())));
    assert!(!dbg.contains(&format!("{:?}", o.secret())));
    // Known answer for the id.
    let k = LinkOffer::with_secret(account.public(), [3; 32], vec![1], vec![], 5).unwrap();
    let mut h = Sha256::new();
    h.update(b"tokenim/v1/link-offer-id\0");
    h.update([3u8; 32]);
    assert_eq!(k.id(), <[u8; 32]>::from(h.finalize()));
}

#[test]
fn link_offer_errors() {
    let account = id(1);
    let mk = |peer: Vec<u8>, addrs: Vec<String>| {
        LinkOffer::with_secret(account.public(), [1; 32], peer, addrs, 10)
    };
    assert!(mk(vec![], vec![]).is_err());
    assert!(mk(vec![1; 65], vec![]).is_err());
    assert!(mk(vec![1], vec!["a".into(); 9]).is_err());
    assert!(mk(vec![1], vec!["a".repeat(257)]).is_err());
    // Within the per-address limits but too long a link for a QR code.
    assert!(mk(vec![1], vec!["a".repeat(250); 8]).is_err());
    let mut bad = account.public();
    bad.dh_sig[0] ^= 1;
    assert!(matches!(
        LinkOffer::with_secret(bad, [1; 32], vec![1], vec![], 10),
        Err(CryptoError::IdentityInvalid)
    ));
    assert!(LinkOffer::from_uri("tokenim:abc", 0).is_err());
    assert!(LinkOffer::from_uri("tokenim-link:!!", 0).is_err());
    assert!(LinkOffer::from_uri(&format!("tokenim-link:{}", "A".repeat(3000)), 0).is_err());
    let o = mk(vec![1], vec![]).unwrap();
    let raw = URL_SAFE_NO_PAD
        .decode(&o.to_uri()[LINK_URI_PREFIX.len()..])
        .unwrap();
    let mut p = pb::LinkOffer::decode(raw.as_slice()).unwrap();
    p.secret.truncate(31);
    let short = format!("tokenim-link:{}", URL_SAFE_NO_PAD.encode(p.encode_to_vec()));
    assert!(matches!(
        LinkOffer::from_uri(&short, 0),
        Err(CryptoError::Malformed { .. })
    ));
    let mut p = pb::LinkOffer::decode(raw.as_slice()).unwrap();
    p.version = 2;
    let v2 = format!("tokenim-link:{}", URL_SAFE_NO_PAD.encode(p.encode_to_vec()));
    assert!(matches!(
        LinkOffer::from_uri(&v2, 0),
        Err(CryptoError::UnsupportedVersion { version: 2, .. })
    ));
}

#[test]
fn link_request_proof() {
    let (_, o) = offer(1_000);
    let laptop = id(2);
    let req = LinkRequest::new(&o, &laptop, "laptop").unwrap();
    assert_eq!(req.offer_id, o.id());
    req.verify(&o, 1_100).unwrap();
    req.verify_secret(o.secret()).unwrap();
    let back = LinkRequest::from_bytes(&req.to_bytes()).unwrap();
    assert_eq!(back, req);
    back.verify(&o, 1_300).unwrap();

    // Expired offer.
    assert!(matches!(
        req.verify(&o, 1_301),
        Err(CryptoError::LinkExpired { .. })
    ));
    // Another offer (another secret).
    let (_, o2) = offer(1_000);
    assert!(matches!(
        req.verify(&o2, 1_100),
        Err(CryptoError::WrongLinkOffer)
    ));
    assert!(matches!(
        req.verify_secret(o2.secret()),
        Err(CryptoError::WrongLinkOffer)
    ));
    // A proof made with a wrong key, or changed fields under the original proof.
    let mut forged = req.clone();
    forged.proof[0] ^= 1;
    assert!(matches!(
        forged.verify(&o, 1_100),
        Err(CryptoError::BadLinkProof)
    ));
    let mut renamed = req.clone();
    renamed.name = "phone".into();
    assert!(matches!(
        renamed.verify(&o, 1_100),
        Err(CryptoError::BadLinkProof)
    ));
    let mut swapped = req.clone();
    swapped.device = id(3).public();
    assert!(matches!(
        swapped.verify(&o, 1_100),
        Err(CryptoError::BadLinkProof)
    ));
    // Someone who saw the request but not the secret cannot make one for another device.
    let guessed = LinkOffer::with_secret(
        o.account().clone(),
        [0; 32],
        o.peer_id().to_vec(),
        o.addrs().to_vec(),
        o.expires_at(),
    )
    .unwrap();
    let mut stolen = LinkRequest::new(&guessed, &id(3), "thief").unwrap();
    stolen.offer_id = o.id();
    assert!(matches!(
        stolen.verify(&o, 1_100),
        Err(CryptoError::BadLinkProof)
    ));
    // An invalid device identity.
    let mut bad = req.clone();
    bad.device.dh_sig[1] ^= 1;
    assert!(matches!(
        bad.verify(&o, 1_100),
        Err(CryptoError::IdentityInvalid)
    ));
    // Names and encodings.
    assert!(LinkRequest::new(&o, &laptop, &"x".repeat(MAX_DEVICE_NAME_BYTES + 1)).is_err());
    assert!(LinkRequest::from_bytes(&[0xff; 10]).is_err());
    assert!(LinkRequest::from_bytes(&vec![0; MAX_LINK_REQUEST_BYTES + 1]).is_err());
}

#[test]
fn reused_offer_keeps_its_id() {
    // The issuer refuses a second use by the offer id: the same URI read twice, or by two
    // devices, names the same offer.
    let (_, o) = offer(1_000);
    let uri = o.to_uri();
    let a = LinkOffer::from_uri(&uri, 1_000).unwrap();
    let b = LinkOffer::from_uri(&uri, 1_200).unwrap();
    assert_eq!(a.id(), o.id());
    assert_eq!(b.id(), o.id());
    let r1 = LinkRequest::new(&a, &id(2), "one").unwrap();
    let r2 = LinkRequest::new(&b, &id(3), "two").unwrap();
    assert_eq!(r1.offer_id, r2.offer_id);
    assert_eq!(o.clone().id(), o.id());
}

#[test]
fn link_accept() {
    let (account, o) = offer(1_000);
    let laptop = id(2);
    let req = LinkRequest::new(&o, &laptop, "laptop").unwrap();
    req.verify(&o, 1_000).unwrap();
    let list = DeviceList::genesis(&account, "phone", 900)
        .unwrap()
        .with_device(&account, req.device.clone(), &req.name, 1_000)
        .unwrap();
    let mut c = card(&account);
    c.device_list = list.to_bytes();
    let accept = LinkAccept {
        device_list: list.clone(),
        account_card: c.to_uri(&account).unwrap(),
    };
    let back = LinkAccept::from_bytes(&accept.to_bytes()).unwrap();
    assert_eq!(back, accept);
    assert_eq!(back.check(&o, laptop.public_ref(), 1_000).unwrap(), c);
    // Not listed; the list of another account; a card without the list.
    assert!(matches!(
        back.check(&o, id(3).public_ref(), 1_000),
        Err(CryptoError::DeviceNotListed)
    ));
    let other = id(9);
    let theirs = DeviceList::genesis(&other, "x", 1)
        .unwrap()
        .with_device(&other, laptop.public(), "laptop", 2)
        .unwrap();
    let wrong = LinkAccept {
        device_list: theirs,
        account_card: accept.account_card.clone(),
    };
    assert!(matches!(
        wrong.check(&o, laptop.public_ref(), 1_000),
        Err(CryptoError::WrongAccount)
    ));
    let stale = LinkAccept {
        device_list: list,
        account_card: card(&account).to_uri(&account).unwrap(),
    };
    assert!(stale.check(&o, laptop.public_ref(), 1_000).is_err());
    // A damaged list inside, a missing card.
    let mut p = pb::LinkAccept::decode(accept.to_bytes().as_slice()).unwrap();
    p.device_list[10] ^= 1;
    assert!(LinkAccept::from_bytes(&p.encode_to_vec()).is_err());
    let mut p = pb::LinkAccept::decode(accept.to_bytes().as_slice()).unwrap();
    p.account_card = "mailto:x".into();
    assert!(LinkAccept::from_bytes(&p.encode_to_vec()).is_err());
}
