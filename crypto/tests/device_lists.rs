//! Property tests of device lists: random sequences of adds and removes follow a simple model,
//! produce lists that decode to themselves with strictly increasing versions; damaged encodings
//! never decode to another list.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use proptest::prelude::*;
use tokenim_crypto::{CryptoError, DeviceList, Identity, MAX_DEVICES};

/// Identity 0 is the account; 1.. are devices it may add.
static IDS: LazyLock<Vec<Identity>> = LazyLock::new(|| {
    (0..16u8)
        .map(|n| Identity::from_seed([n + 1; 32]))
        .collect()
});

fn key(n: usize) -> [u8; 32] {
    IDS[n].public_ref().identity_key
}

/// Applies one mutation: flip bits in a byte, truncate, or insert a byte.
fn mutate(mut v: Vec<u8>, op: u8, pos: usize, val: u8) -> Vec<u8> {
    if v.is_empty() {
        return vec![val];
    }
    let pos = pos % v.len();
    match op % 3 {
        0 => v[pos] ^= val.max(1),
        1 => v.truncate(pos),
        _ => v.insert(pos, val),
    }
    v
}

/// Runs `ops` (add or remove, which identity) from the genesis; returns every list made.
fn run(ops: &[(bool, usize)]) -> Vec<DeviceList> {
    let account = &IDS[0];
    let mut lists = vec![DeviceList::genesis(account, "first", 1).unwrap()];
    // The model: which identities are listed, in order.
    let mut model: Vec<usize> = vec![0];
    for (step, &(add, n)) in ops.iter().enumerate() {
        let cur = lists.last().unwrap();
        let now = 2 + step as u64;
        let listed = model.contains(&n);
        if add {
            match cur.with_device(account, IDS[n].public(), &format!("d{n}"), now) {
                Ok(next) => {
                    assert!(!listed && model.len() < MAX_DEVICES);
                    model.push(n);
                    lists.push(next);
                }
                Err(CryptoError::DeviceAlreadyListed) => assert!(listed),
                Err(CryptoError::TooManyDevices { max }) => {
                    assert!(!listed && model.len() == max);
                }
                Err(e) => panic!("unexpected {e}"),
            }
        } else {
            match cur.without_device(account, &key(n), now) {
                Ok(next) => {
                    assert!(listed && n != 0);
                    model.retain(|&m| m != n);
                    lists.push(next);
                }
                Err(CryptoError::PrimaryDevice) => assert_eq!(n, 0),
                Err(CryptoError::DeviceNotListed) => assert!(!listed),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let last = lists.last().unwrap();
        let keys: Vec<[u8; 32]> = last
            .devices()
            .iter()
            .map(|e| e.device.identity_key)
            .collect();
        let expected: Vec<[u8; 32]> = model.iter().map(|&m| key(m)).collect();
        assert_eq!(keys, expected);
    }
    lists
}

fn ops() -> impl Strategy<Value = Vec<(bool, usize)>> {
    prop::collection::vec((prop::bool::weighted(0.7), 0usize..16), 0..40)
}

proptest! {
    #[test]
    fn changes_round_trip_and_versions_increase(ops in ops()) {
        let lists = run(&ops);
        for (i, l) in lists.iter().enumerate() {
            prop_assert_eq!(l.version(), i as u64 + 1);
            let back = DeviceList::from_bytes(&l.to_bytes()).unwrap();
            prop_assert_eq!(&back, l);
            prop_assert_eq!(back.to_bytes(), l.to_bytes());
            prop_assert!(!DeviceList::supersedes(Some(l), &back).unwrap());
            prop_assert!(l.devices().len() <= MAX_DEVICES);
            prop_assert_eq!(l.devices()[0].device.identity_key, key(0));
        }
        for w in lists.windows(2) {
            prop_assert!(w[1].version() > w[0].version());
            prop_assert!(DeviceList::supersedes(Some(&w[0]), &w[1]).unwrap());
            let rollback = matches!(
                DeviceList::supersedes(Some(&w[1]), &w[0]),
                Err(CryptoError::DeviceListRollback { .. })
            );
            prop_assert!(rollback);
        }
    }

    #[test]
    fn damaged_lists_never_decode_to_another_list(
        ops in prop::collection::vec((prop::bool::weighted(0.8), 0usize..16), 0..12),
        muts in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4),
    ) {
        let lists = run(&ops);
        let original = lists.last().unwrap();
        let mut bytes = original.to_bytes();
        for (op, pos, val) in muts {
            bytes = mutate(bytes, op, pos, val);
        }
        if let Ok(l) = DeviceList::from_bytes(&bytes) {
            prop_assert_eq!(&l, original);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = DeviceList::from_bytes(&bytes);
    }
}
