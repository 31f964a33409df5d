//! Device lists and link messages. Raw bytes go to `DeviceList::from_bytes` (an accepted list
//! re-encodes identically; a body with a made-up signature is never accepted),
//! `LinkOffer::from_uri` (an accepted offer reads again with the same id),
//! `LinkRequest::from_bytes` and `verify`, and `LinkAccept::from_bytes` and `check`. When the first byte is odd,
//! the bytes are a script of adds and removes by a fixed account on two branches: versions
//! strictly increase, every list reads back as itself, and the branches' lists of one version
//! are either equal or an equivocation.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tokenim_crypto::{CryptoError, DeviceList, Identity, LinkAccept, LinkOffer, LinkRequest, pb};

const PARTIES: usize = 14;

fn party(n: usize) -> Identity {
    Identity::from_seed([n as u8 + 1; 32])
}

fn raw(data: &[u8]) {
    if let Ok(l) = DeviceList::from_bytes(data) {
        assert_eq!(l.to_bytes(), data, "accepted lists re-encode identically");
        assert!(!DeviceList::supersedes(Some(&l), &l).expect("same list"));
    }
    let forged = pb::SignedDeviceList {
        format: 1,
        list: data.to_vec(),
        signature: vec![0; 64],
    };
    assert!(DeviceList::from_bytes(&forged.encode_to_vec()).is_err());
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = LinkOffer::from_uri(s, 0);
    }
    if let Ok(o) = LinkOffer::from_uri(&format!("tokenim-link:{}", URL_SAFE_NO_PAD.encode(data)), 0)
    {
        let again = LinkOffer::from_uri(&o.to_uri(), 0).expect("a read offer reads again");
        assert_eq!(again.id(), o.id());
    }
    let account = party(0);
    let offer =
        LinkOffer::with_secret(account.public(), [9; 32], vec![1; 38], vec![], 100).expect("offer");
    if let Ok(r) = LinkRequest::from_bytes(data) {
        assert_eq!(
            LinkRequest::from_bytes(&r.to_bytes()).expect("reads again"),
            r
        );
        if r.verify(&offer, 0).is_ok() {
            assert_eq!(r.offer_id, offer.id());
        }
        let _ = r.verify_secret(&[0; 32]);
    }
    if let Ok(a) = LinkAccept::from_bytes(data) {
        let _ = a.check(&offer, party(1).public_ref(), 0);
    }
}

fn scenario(data: &[u8]) {
    let ids: Vec<Identity> = (0..PARTIES).map(party).collect();
    let genesis = DeviceList::genesis(&ids[0], "first", 1).expect("genesis");
    let mut branches = [vec![genesis.clone()], vec![genesis]];
    for (step, op) in data.chunks_exact(2).take(64).enumerate() {
        let side = usize::from(op[0] & 1);
        let target = usize::from(op[1]) % PARTIES;
        let now = 2 + step as u64;
        let cur = branches[side].last().expect("one list at least");
        let next = match (op[0] >> 1) % 4 {
            0 | 1 => cur.with_device(&ids[0], ids[target].public(), "d", now),
            2 => cur.without_device(&ids[0], &ids[target].public_ref().identity_key, now),
            _ => cur.with_device(&ids[target], ids[1].public(), "x", now),
        };
        match next {
            Ok(l) => {
                assert_eq!(l.version(), cur.version() + 1);
                assert!(DeviceList::supersedes(Some(cur), &l).expect("newer"));
                assert!(matches!(
                    DeviceList::supersedes(Some(&l), cur),
                    Err(CryptoError::DeviceListRollback { .. })
                ));
                assert_eq!(DeviceList::from_bytes(&l.to_bytes()).expect("reads"), l);
                assert!(l.devices().len() <= 10);
                branches[side].push(l);
            }
            Err(
                CryptoError::DeviceAlreadyListed
                | CryptoError::DeviceNotListed
                | CryptoError::PrimaryDevice
                | CryptoError::TooManyDevices { .. }
                | CryptoError::WrongAccount,
            ) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    for (a, b) in branches[0].iter().zip(&branches[1]) {
        match DeviceList::supersedes(Some(a), b) {
            Ok(false) => assert_eq!(a, b),
            Err(CryptoError::DeviceListEquivocation { .. }) => assert_ne!(a, b),
            other => panic!("same versions: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    raw(data);
    if data.first().is_some_and(|b| b & 1 == 1) {
        scenario(&data[1..]);
    }
});
