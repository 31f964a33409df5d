//! Property: paging through any set of messages returns each exactly once, in order, in
//! both directions, per conversation and across conversations, on both backends.

mod common;

use common::{Fixture, Kind, id16, id32, message, newest_first};
use proptest::prelude::*;
use tokenim_store::{Cursor, MessageRecord, Result, Store};

fn walk(
    s: &Store,
    conv: Option<&[u8; 32]>,
    limit: usize,
    start: Option<Cursor>,
) -> Result<Vec<MessageRecord>> {
    let mut out: Vec<MessageRecord> = Vec::new();
    let mut cursor = start;
    for _ in 0..10_000 {
        let (page, next) = s.list_messages(conv, limit, cursor.as_ref())?;
        if cursor.is_some_and(|c| c.is_newer()) {
            out.splice(0..0, page);
        } else {
            out.extend(page);
        }
        match next {
            Some(n) => cursor = Some(n.to_string().parse()?),
            None => return Ok(out),
        }
    }
    panic!("pagination did not terminate");
}

/// (conversation, received_at_ms, incoming) per message; ids are the index (shuffled by a
/// multiplier so id order differs from insertion order).
fn inserts() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
    proptest::collection::vec((0u64..4, 0u64..50, any::<bool>()), 0..120)
}

fn check(kind: Kind, rows: Vec<(u64, u64, bool)>, limit: usize) -> Result<()> {
    let f = Fixture::new(kind);
    let s = f.store();
    let mut all = Vec::new();
    for (i, (conv, ts, incoming)) in rows.into_iter().enumerate() {
        let id = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = message(id16(id), id32(conv), ts, incoming);
        s.put_message(&m)?;
        all.push(m);
    }
    let want = newest_first(all.clone());
    assert_eq!(walk(s, None, limit, None)?, want);
    if let Some(oldest) = want.last() {
        assert_eq!(
            walk(s, None, limit, Some(Cursor::newer_than(oldest)))?,
            want[..want.len() - 1]
        );
    }
    for conv in 0..4 {
        let c = id32(conv);
        let want = newest_first(
            all.iter()
                .filter(|m| m.conversation == c)
                .cloned()
                .collect(),
        );
        assert_eq!(walk(s, Some(&c), limit, None)?, want);
        if let Some(oldest) = want.last() {
            assert_eq!(
                walk(s, Some(&c), limit, Some(Cursor::newer_than(oldest)))?,
                want[..want.len() - 1]
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn pagination_exactly_once_in_order_mem(rows in inserts(), limit in 1usize..12) {
        check(Kind::Mem, rows, limit).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn pagination_exactly_once_in_order_rocks(rows in inserts(), limit in 1usize..12) {
        check(Kind::Rocks, rows, limit).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}
